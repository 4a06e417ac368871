//! Response rendering (a leaf module): the error page or JSON body of a refusal, content
//! negotiation and HTML escaping.

use http::{HeaderMap, HeaderValue, StatusCode, header};

/// True when the client prefers HTML (a browser navigation).
pub(crate) fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

pub(crate) fn render(
    status: StatusCode,
    code: &str,
    message: &str,
    request_headers: &HeaderMap,
) -> http::Response<axum::body::Body> {
    let (content_type, body) = if wants_html(request_headers) {
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
