-- Server-side sessions (issue 14): the record is the truth about a session. `id_hash` is the
-- SHA-256 (URL-safe base64) of the secret the cookie carries, never the secret itself.
CREATE TABLE jit_sessions (
    id_hash           TEXT    PRIMARY KEY,
    domain            TEXT    NOT NULL,
    user_id           TEXT    NOT NULL,
    provider          TEXT    NOT NULL,
    subject           TEXT    NOT NULL,
    idp_session       TEXT,
    created_at        INTEGER NOT NULL,
    last_seen         INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    idle_timeout_secs INTEGER,
    ended_at          INTEGER,
    end_reason        TEXT,
    tokens            TEXT
);
CREATE INDEX jit_sessions_idp ON jit_sessions(provider, idp_session);
CREATE INDEX jit_sessions_user ON jit_sessions(domain, user_id);
CREATE INDEX jit_sessions_expiry ON jit_sessions(expires_at);
