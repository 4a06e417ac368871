//! Entry points for the fuzz targets under `fuzz/` (not a public API: hidden, unstable).
//! Each feeds untrusted bytes to one parser the layer exposes to the internet and must
//! never panic.

use crate::session::{CookieCodec, SessionKey};

/// A fixed key, so sealed inputs in the corpus stay valid across runs.
fn codec() -> CookieCodec {
    CookieCodec::new(
        &SessionKey::from_bytes(&[42u8; 64]).expect("64 bytes is a key"),
        &[],
        true,
    )
}

/// Seals `value` as the session cookie would be (for building corpora).
pub fn seal_session(value: &str) -> String {
    codec().seal("__Host-jit_session", value)
}

/// The session cookie decoder: open, then parse the payload.
pub fn session_cookie(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(json) = codec().open("__Host-jit_session", text) {
        let _ = serde_json::from_str::<crate::session::SessionData>(&json);
    }
    let _ = serde_json::from_str::<crate::session::SessionData>(text);
}

/// The pending-login cookie decoder.
pub fn pending_cookie(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(json) = codec().open("__Secure-jit_login_0123456789abcdef", text) {
        let _ = serde_json::from_str::<crate::session::PendingLogin>(&json);
    }
    let _ = serde_json::from_str::<crate::session::PendingLogin>(text);
    let mut headers = http::HeaderMap::new();
    if let Ok(value) = http::HeaderValue::from_bytes(data) {
        headers.insert(http::header::COOKIE, value);
        let _ = crate::session::cookies_named(&headers, "jit_session").count();
    }
}

/// Callback query / form parsing, and the `return_to` check.
pub fn callback_params(data: &[u8]) {
    let _ = crate::endpoints::parse_params(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::session::check_return_to(text);
    }
}

/// JWT header and claims parsing as the bearer, ID-token and logout-token paths do before
/// any signature check.
pub fn jwt(data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let _ = jsonwebtoken::decode_header(token);
    let _ = jsonwebtoken::dangerous::insecure_decode_claims::<
        serde_json::Map<String, serde_json::Value>,
    >(token);
    let validator = crate::oidc::IdTokenValidator::new(&crate::ProviderConfig::new(
        "https://idp.example",
        "app",
    ))
    .expect("static config");
    let keys = crate::oidc::IdTokenKeys::from_json(br#"{"keys":[]}"#).expect("static JWKS");
    let _ = validator.validate(token, &keys, "nonce");
    let logout = crate::oidc::LogoutTokenValidator::new("https://idp.example", "app", 60);
    let keys: openidconnect::core::CoreJsonWebKeySet =
        serde_json::from_str(r#"{"keys":[]}"#).expect("static JWKS");
    let _ = logout.check(token, &keys, 1_900_000_000);
}

/// Mapping templates: parse, then render against claims made of the same bytes.
pub fn template(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (source, claims) = text.split_once('\n').unwrap_or((text, "{}"));
    if let Ok(template) = source.parse::<crate::mapping::Template>()
        && let Ok(serde_json::Value::Object(map)) = serde_json::from_str(claims)
    {
        let _ = template.render(&crate::Claims(map));
    }
}

/// The SAML response parser and verifier, on an SP with a throwaway IdP certificate.
#[cfg(feature = "saml")]
pub fn saml_response(data: &[u8]) {
    use std::sync::OnceLock;
    static SP: OnceLock<Option<crate::saml::SamlServiceProvider>> = OnceLock::new();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let sp = SP.get_or_init(|| {
        let config = crate::saml::SamlConfig::inline(
            "https://idp.example/metadata",
            "https://idp.example/sso",
            vec![include_str!("idp-cert.pem").to_owned()],
        );
        crate::saml::SamlServiceProvider::new(
            "corp",
            config,
            "https://app.example/auth/corp/acs",
            "https://app.example/auth/corp/metadata",
        )
        .ok()
    });
    if let Some(sp) = sp {
        let _ = sp.verify_response(text, Some("id-1"), 1_900_000_000);
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD.encode(data);
        let _ = sp.verify_response(&encoded, None, 1_900_000_000);
    }
}
