-- One-time values (OIDC state, SAML assertion ids) shared by every process on this file.
CREATE TABLE jit_one_time (
    key        TEXT    PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE INDEX jit_one_time_expiry ON jit_one_time(expires_at);
