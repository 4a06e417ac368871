//! One way to answer a failure: every error type the layer answers with implements
//! [`Failure`] (its status and code), and [`render`] turns status, code and message into the
//! response body, JSON or HTML by `Accept` ([`render_as`] for a rejection, which kept what its
//! request accepted). A leaf: it uses nothing else of the crate.

use http::{HeaderMap, HeaderValue, StatusCode, header};

/// An error the layer answers a request with. Private: the public types keep their inherent
/// `status()` / `code()` methods, which forward here.
pub(crate) trait Failure: std::fmt::Display {
    /// The HTTP status it answers with.
    fn status(&self) -> StatusCode;

    /// The short machine-readable code, the `error` field of JSON bodies.
    fn code(&self) -> &str;

    /// The response for a request with these headers: [`render`] of status, code and the
    /// `Display` message.
    fn to_response(&self, request_headers: &HeaderMap) -> http::Response<axum::body::Body> {
        render(
            self.status(),
            self.code(),
            &self.to_string(),
            request_headers,
        )
    }
}

/// True when the client prefers HTML (a browser navigation).
pub(crate) fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// The one error body: `{"error": code, "message": message}`, or for a browser
/// ([`wants_html`] of the request's headers) a small HTML page with the message and the code;
/// never cached.
pub(crate) fn render(
    status: StatusCode,
    code: &str,
    message: &str,
    request_headers: &HeaderMap,
) -> http::Response<axum::body::Body> {
    render_as(status, code, message, wants_html(request_headers))
}

/// [`render`] for a client whose preference was read before: the one way a rejection (of an
/// extractor, whose `IntoResponse` no longer sees the request) answers, keeping the
/// [`wants_html`] of the request it refused. Extra headers (a `WWW-Authenticate` challenge)
/// go on the response it returns.
pub(crate) fn render_as(
    status: StatusCode,
    code: &str,
    message: &str,
    html: bool,
) -> http::Response<axum::body::Body> {
    let (content_type, body) = if html {
        let title = status.canonical_reason().unwrap_or("Error");
        (
            "text/html; charset=utf-8",
            format!(
                "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
                 <body><h1>{title}</h1><p>{}</p><p><code>{code}</code></p>\
                 <p><a href=\"/\">Home</a></p></body></html>",
                escape_html(message)
            ),
        )
    } else {
        (
            "application/json",
            serde_json::json!({ "error": code, "message": message }).to_string(),
        )
    };
    let mut response = http::Response::new(axum::body::Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
