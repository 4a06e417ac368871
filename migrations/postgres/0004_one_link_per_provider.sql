-- A user has at most one identity per provider: a second concurrent link fails here
-- (`link_conflict`) instead of passing a check made before the insert. Fails on a database
-- where a user is already linked twice at one provider: the store then names them, and an
-- administrator decides which link is legitimate.
CREATE UNIQUE INDEX jit_identities_user_provider ON jit_identities(user_id, provider);
