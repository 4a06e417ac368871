-- An application with its own users table (`AppUsers`): each crate row names the
-- application's user by its id, as text. NULL for the ready-made stores' own users.
ALTER TABLE jit_users ADD COLUMN app_id TEXT;
CREATE UNIQUE INDEX jit_users_app_id ON jit_users(app_id);
