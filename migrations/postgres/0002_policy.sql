-- Group provenance, provider-managed fields, login times.
ALTER TABLE jit_users ADD COLUMN idp_groups JSONB NOT NULL DEFAULT '{}';
ALTER TABLE jit_users ADD COLUMN idp_attributes JSONB NOT NULL DEFAULT '[]';
ALTER TABLE jit_identities ADD COLUMN last_login_at BIGINT;
CREATE INDEX jit_users_email ON jit_users(lower(email));
CREATE INDEX jit_identities_provider ON jit_identities(provider, created_at);
