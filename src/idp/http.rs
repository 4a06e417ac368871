//! The HTTP client the layer talks to identity providers with: never follows redirects,
//! bounded in time and in response size.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};

/// Largest response body accepted from an identity provider.
pub(crate) const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// A transport failure talking to an identity provider.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    /// Connecting, sending or receiving failed, or the time limit passed.
    #[error("request to the identity provider failed: {0}")]
    Transport(String),
    /// The response body was larger than the limit.
    #[error("response from the identity provider exceeds {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
}

/// reqwest with redirects off, a connect and a total time limit, and a body size limit.
#[derive(Clone, Debug)]
pub(crate) struct HttpClient {
    inner: reqwest::Client,
}

#[cfg(test)]
thread_local! {
    /// How many clients this thread built (tests check that a layer builds one).
    pub(crate) static BUILT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl HttpClient {
    /// Builds a client whose requests time out after `timeout` (connecting: at most 5 s).
    /// A layer builds one and hands clones (cheap: one shared connection pool) to every user.
    pub(crate) fn new(timeout: Duration) -> Self {
        #[cfg(test)]
        BUILT.with(|n| n.set(n.get() + 1));
        let inner = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .timeout(timeout)
            .user_agent(concat!("jit-provision/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a reqwest client with these settings always builds");
        Self { inner }
    }

    /// The underlying reqwest client, for requests with their own time limit (per-request
    /// `timeout` overrides the client's).
    #[cfg(feature = "saml")]
    pub(crate) fn reqwest(&self) -> &reqwest::Client {
        &self.inner
    }

    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = request.into_parts();
        let mut req = self
            .inner
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers);
        if !body.is_empty() {
            req = req.body(body);
        }
        let mut response = req
            .send()
            .await
            .map_err(|e| HttpError::Transport(e.without_url().to_string()))?;
        if response
            .content_length()
            .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
        {
            return Err(HttpError::TooLarge);
        }
        let mut builder = http::Response::builder().status(response.status());
        if let Some(headers) = builder.headers_mut() {
            *headers = std::mem::take(response.headers_mut());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| HttpError::Transport(e.without_url().to_string()))?
        {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(HttpError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        builder
            .body(body)
            .map_err(|e| HttpError::Transport(e.to_string()))
    }
}

impl<'c> AsyncHttpClient<'c> for HttpClient {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

impl HttpClient {
    /// `GET` a JSON document (bounded in time and size, no redirects).
    pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
    ) -> Result<T, String> {
        let request = http::Request::get(url)
            .header(http::header::ACCEPT, "application/json")
            .body(Vec::new())
            .map_err(|e| e.to_string())?;
        let response = self.send(request).await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        serde_json::from_slice(response.body()).map_err(|e| format!("unparsable JSON: {e}"))
    }
}
