-- The stamp (microseconds) of the last login whose update was applied to the identity's
-- user: an older update arriving later (a delayed background retry) is dropped.
ALTER TABLE jit_identities ADD COLUMN synced_at INTEGER;
