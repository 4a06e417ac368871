//! A request body that must not be read: the early `Content-Length` refusal (`413`) is
//! decided on the headers alone. Reading it fails (so a reader that tried would answer
//! something else than `413`) and records that it was read.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;

/// Flags `read` when polled, and fails.
pub struct UnreadBody {
    pub read: Arc<AtomicBool>,
}

impl UnreadBody {
    /// The body, and the flag that tells whether anything polled it.
    pub fn new() -> (Self, Arc<AtomicBool>) {
        let read = Arc::new(AtomicBool::new(false));
        (Self { read: read.clone() }, read)
    }
}

impl http_body::Body for UnreadBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.read.store(true, Ordering::SeqCst);
        Poll::Ready(Some(Err(std::io::Error::other("the body was read"))))
    }
}

/// A form `POST` to `path` declaring `length` bytes, whose body is never sent.
pub fn declared_post(
    path: &str,
    length: usize,
) -> (http::Request<axum::body::Body>, Arc<AtomicBool>) {
    let (body, read) = UnreadBody::new();
    let request = http::Request::post(path)
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(http::header::CONTENT_LENGTH, length.to_string())
        .header(http::header::ORIGIN, "https://app.example.com")
        .body(axum::body::Body::new(body))
        .unwrap();
    (request, read)
}
