-- A logout by subject (an IdP's back-channel logout token with `sub` only, a SAML
-- LogoutRequest without SessionIndex) selects the sessions by provider and subject.
CREATE INDEX jit_sessions_subject ON jit_sessions(provider, subject);
