//! The application's own refusals: a store that enforces a constraint of its own (an email
//! held by a password account, a closed sign-up) answers [`StoreError::Refused`] with a
//! [`Refusal`], and the login (or bearer request) is answered `409` or `403` with the
//! application's code instead of a `503`.

use http::StatusCode;

use super::StoreError;

/// What kind of refusal a [`Refusal`] is, and so its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RefusalKind {
    /// The write conflicts with data the application holds (an email already in use by
    /// another account): `409 Conflict`.
    Conflict,
    /// The application does not allow it (sign-ups closed for this group, an account
    /// pending review): `403 Forbidden`.
    Forbidden,
}

impl RefusalKind {
    /// The HTTP status of this kind.
    pub fn status(self) -> StatusCode {
        match self {
            Self::Conflict => StatusCode::CONFLICT,
            Self::Forbidden => StatusCode::FORBIDDEN,
        }
    }
}

/// The code a [`Refusal`] with an invalid code answers with.
const FALLBACK_CODE: &str = "refused";
/// The longest code kept.
const MAX_CODE: usize = 64;

/// An application's store refusing a write with its own answer: a kind (`409` or `403`),
/// the field concerned, a machine-readable code and a message for the user.
///
/// The login is refused with that status, code (the `error` field of JSON bodies) and
/// message, in JSON or HTML like the layer's other errors; no session is issued. The store
/// must have written nothing (as for any failed `create`). A code must be 1 to 64 characters
/// of `[a-z0-9_]`: another code is replaced by `refused` (and a warning logged), so an
/// answer never carries what a store did not mean to show. The message is shown to the user
/// as is: keep secrets out of it.
///
/// ```
/// use jit_provision::store::{Refusal, RefusalKind, StoreError};
///
/// let refusal = Refusal::conflict(
///     "email",
///     "email_in_use",
///     "this email belongs to an account with a password: log in with it and link SSO",
/// );
/// assert_eq!(refusal.status(), 409);
/// assert_eq!(refusal.code(), "email_in_use");
/// assert_eq!(refusal.field(), Some("email"));
/// let err = StoreError::from(refusal);
/// assert!(matches!(err, StoreError::Refused(ref r) if r.kind() == RefusalKind::Conflict));
///
/// // Codes are checked: this one is not `[a-z0-9_]`.
/// assert_eq!(Refusal::forbidden("email", "Not Allowed!", "no").code(), "refused");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct Refusal {
    kind: RefusalKind,
    field: Option<String>,
    code: String,
    message: String,
}

impl Refusal {
    /// A refusal of `kind` with `code` and `message`, about no field in particular.
    pub fn new(kind: RefusalKind, code: impl Into<String>, message: impl Into<String>) -> Self {
        let code = code.into();
        let code = if valid_code(&code) {
            code
        } else {
            tracing::warn!(
                length = code.len(),
                "a store refusal's code is not 1-64 characters of [a-z0-9_]: answering `refused`"
            );
            FALLBACK_CODE.to_owned()
        };
        Self {
            kind,
            field: None,
            code,
            message: message.into(),
        }
    }

    /// A `409 Conflict` about `field`.
    pub fn conflict(
        field: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(RefusalKind::Conflict, code, message).with_field(field)
    }

    /// A `403 Forbidden` about `field`.
    pub fn forbidden(
        field: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(RefusalKind::Forbidden, code, message).with_field(field)
    }

    /// The same refusal about `field` (a profile field: `email`, `username`, ...).
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Conflict or forbidden.
    pub fn kind(&self) -> RefusalKind {
        self.kind
    }

    /// The HTTP status: `409` or `403`.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// The field concerned, if the store named one.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// The machine-readable code (`[a-z0-9_]`, at most 64 characters).
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The message for the user.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<Refusal> for StoreError {
    fn from(refusal: Refusal) -> Self {
        Self::Refused(refusal)
    }
}

fn valid_code(code: &str) -> bool {
    (1..=MAX_CODE).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_checked_and_statuses_follow_the_kind() {
        assert_eq!(
            Refusal::conflict("email", "email_in_use", "m").code(),
            "email_in_use"
        );
        assert_eq!(Refusal::conflict("email", "a1_b", "m").status(), 409);
        assert_eq!(Refusal::forbidden("email", "closed", "m").status(), 403);
        for bad in [
            "",
            "Email",
            "email-in-use",
            "e mail",
            "émail",
            &"a".repeat(65),
        ] {
            assert_eq!(
                Refusal::new(RefusalKind::Conflict, bad, "m").code(),
                "refused",
                "{bad:?}"
            );
        }
        assert_eq!(
            Refusal::new(RefusalKind::Conflict, "a".repeat(64), "m")
                .code()
                .len(),
            64
        );
        let plain = Refusal::new(RefusalKind::Forbidden, "closed", "sign-ups are closed");
        assert_eq!(
            (plain.field(), plain.to_string().as_str()),
            (None, "sign-ups are closed")
        );
    }
}
