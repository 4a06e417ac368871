-- jit-provision schema, version 1 (SQLite).
CREATE TABLE jit_users (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    username     TEXT    NOT NULL UNIQUE,
    email        TEXT,
    display_name TEXT,
    groups_json  TEXT    NOT NULL DEFAULT '[]',
    attrs_json   TEXT    NOT NULL DEFAULT '{}',
    locked       INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);

-- One row per external identity; the primary key is the identity key, never an email.
CREATE TABLE jit_identities (
    provider   TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    issuer     TEXT    NOT NULL,
    user_id    INTEGER NOT NULL REFERENCES jit_users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (provider, subject)
);

CREATE INDEX jit_identities_user ON jit_identities(user_id);
