-- jit-provision schema, version 1 (PostgreSQL).
CREATE TABLE jit_users (
    id           BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username     TEXT    NOT NULL UNIQUE,
    email        TEXT,
    display_name TEXT,
    groups       JSONB   NOT NULL DEFAULT '[]',
    attributes   JSONB   NOT NULL DEFAULT '{}',
    locked       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL
);

-- One row per external identity; the primary key is the identity key, never an email.
CREATE TABLE jit_identities (
    provider   TEXT   NOT NULL,
    subject    TEXT   NOT NULL,
    issuer     TEXT   NOT NULL,
    user_id    BIGINT NOT NULL REFERENCES jit_users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX jit_identities_user ON jit_identities(user_id);

-- One-time values (OIDC state, SAML assertion ids) shared by every app instance.
CREATE TABLE jit_one_time (
    key        TEXT   PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX jit_one_time_expiry ON jit_one_time(expires_at);
