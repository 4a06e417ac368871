//! Refreshing a session's tokens at the provider's token endpoint (RFC 6749 §6), with the
//! client and HTTP client of the login, and the checks OpenID Connect Core §12.2 asks of the
//! ID token a refresh answers.

use openidconnect::{OAuth2TokenResponse, RefreshToken};
use serde_json::{Map, Value};

use super::{
    ExpectedNonce, IdTokenError, OidcError, OidcProvider, check_token_type, expiry,
    token_request_error,
};
use crate::session::SessionTokens;

/// What a refresh answered.
#[derive(Debug)]
pub(crate) struct Refreshed {
    /// The session's tokens after the refresh: the new access token and expiry, the rotated
    /// refresh token (the old one when none came), the new ID token (the old one when none
    /// came).
    pub tokens: SessionTokens,
    /// The claims read again, when asked for: the refresh's ID token's (with userinfo's when
    /// the provider has `userinfo`), else userinfo's. A userinfo failure is an `Err` here,
    /// not of the refresh: the provider has rotated the tokens already, so they are kept.
    pub claims: Option<Result<Map<String, Value>, OidcError>>,
}

impl OidcProvider {
    /// Spends `refresh_token` (of `tokens`, the session of `subject`) at the token
    /// endpoint. An ID token in the answer is validated as at login (signature, `iss`,
    /// `aud`, `azp`, times), must name `subject`, and carries no nonce or the login's.
    /// Once it holds, the refresh succeeded: reading the claims again afterwards (userinfo)
    /// is a separate step whose failure is in [`Refreshed::claims`].
    pub(crate) async fn refresh(
        &self,
        tokens: &SessionTokens,
        refresh_token: &str,
        subject: &str,
        read_claims: bool,
    ) -> Result<Refreshed, OidcError> {
        let d = self.discovered().await?;
        let response = d
            .client
            .exchange_refresh_token(&RefreshToken::new(refresh_token.to_owned()))
            .map_err(|e| OidcError::Discovery(e.to_string()))?
            .request_async(&self.http)
            .await
            .map_err(token_request_error)?;
        check_token_type(response.token_type())?;
        let id_token = match &response.id_token {
            None | Some(Value::Null) => None,
            Some(Value::String(raw)) => Some(raw.clone()),
            Some(_) => return Err(IdTokenError::Malformed.into()),
        };
        let mut claims = None;
        if let Some(raw) = &id_token {
            let nonce = ExpectedNonce::AbsentOr(tokens.nonce.as_deref());
            let verified = self.verify_id_token(&d, raw, nonce).await?;
            if verified.get("sub").and_then(Value::as_str) != Some(subject) {
                return Err(IdTokenError::Subject.into());
            }
            claims = Some(verified);
        }
        let access_token = response.access_token();
        let claims = match (read_claims, claims) {
            (false, _) => None,
            (true, Some(mut claims)) => Some(
                self.add_userinfo(&d, &mut claims, access_token, subject)
                    .await
                    .map(|()| claims),
            ),
            (true, None) => Some(self.userinfo(&d, access_token.clone(), subject).await),
        };
        let now = crate::store::now_unix();
        let tokens = SessionTokens {
            id_token: id_token.or_else(|| tokens.id_token.clone()),
            access_token: Some(access_token.secret().clone()),
            refresh_token: response
                .refresh_token()
                .map(|t| t.secret().clone())
                .or_else(|| tokens.refresh_token.clone()),
            expires_at: response.expires_in.map(|e| expiry(now, e)),
            obtained_at: Some(now),
            ..tokens.clone()
        };
        Ok(Refreshed { tokens, claims })
    }
}
