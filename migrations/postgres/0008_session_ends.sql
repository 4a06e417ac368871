-- The last time all sessions of a user were ended (log out everywhere, admin end-sessions,
-- lock, deprovision): a session cookie of an earlier release (which has no record in
-- jit_sessions) issued at or before it is not adopted, so it cannot outlive that end.
CREATE TABLE jit_session_ends (
    domain   TEXT    NOT NULL,
    user_id  TEXT    NOT NULL,
    ended_at BIGINT NOT NULL,
    PRIMARY KEY (domain, user_id)
);
