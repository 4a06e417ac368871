-- The canonical form (NFKC + full case folding, computed in Rust: SQLite cannot) of the
-- username, unique, and of the email, for lookups. Existing rows are filled in by the store
-- right after migrating (`backfill_canonical`), which refuses to start when two existing
-- usernames fold to one.
ALTER TABLE jit_users ADD COLUMN username_key TEXT;
ALTER TABLE jit_users ADD COLUMN email_key TEXT;
CREATE UNIQUE INDEX jit_users_canonical_username ON jit_users(username_key);
CREATE INDEX jit_users_canonical_email ON jit_users(email_key);
DROP INDEX jit_users_email;
