//! A remote facilitator over HTTP.

use std::time::Duration;

use paywire_core::{
    BoxFuture, Facilitator, FacilitatorError, FacilitatorRequest, SettleResponse,
    SupportedResponse, VerifyResponse,
};
use serde::de::DeserializeOwned;

/// Prefix of [`FacilitatorError::Transport`] messages for failures that
/// certainly happened before the request was sent (connection refused, DNS,
/// TLS handshake). See [`request_not_sent`].
const NOT_SENT: &str = "request not sent: ";

/// Longest error body kept in [`FacilitatorError::Http`].
const MAX_ERROR_BODY: usize = 512;

/// Largest facilitator answer read (verify, settle and `/supported` answers
/// are a few KB): a broken or hostile facilitator cannot make us buffer more.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Default whole-request timeout. It must exceed the facilitator's own wait
/// for a receipt (30 s at most by default, 25 s for ours) so that the
/// facilitator answers `pending` with the transaction hash before we give up;
/// a timeout here leaves the settlement outcome unknown.
pub const DEFAULT_FACILITATOR_TIMEOUT: Duration = Duration::from_secs(45);

/// Whether `error` proves that the request never reached the facilitator, so
/// retrying it elsewhere cannot settle a payment twice.
pub fn request_not_sent(error: &FacilitatorError) -> bool {
    matches!(error, FacilitatorError::Transport(message) if message.starts_with(NOT_SENT))
}

/// A facilitator reached at `{base}/verify`, `{base}/settle`, `{base}/supported`.
#[derive(Debug, Clone)]
pub struct HttpFacilitator {
    base: String,
    client: reqwest::Client,
    token: Option<String>,
}

/// Builder of [`HttpFacilitator`].
#[derive(Debug)]
pub struct HttpFacilitatorBuilder {
    base: String,
    timeout: Duration,
    connect_timeout: Duration,
    token: Option<String>,
    client: Option<reqwest::Client>,
}

impl HttpFacilitatorBuilder {
    /// Whole-request timeout (default [`DEFAULT_FACILITATOR_TIMEOUT`], 45 s).
    /// Keep it above the facilitator's receipt wait: a settle call that times
    /// out leaves the payment's outcome unknown (kept for the payer's retry
    /// with the same payload) where a `pending` answer would carry the
    /// transaction hash.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connect timeout (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sends `Authorization: Bearer {token}`.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Uses a preconfigured client (timeouts set here are then ignored).
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Builds the facilitator client.
    pub fn build(self) -> Result<HttpFacilitator, FacilitatorError> {
        let client = if let Some(client) = self.client {
            client
        } else {
            let mut builder = reqwest::Client::builder()
                .timeout(self.timeout)
                .connect_timeout(self.connect_timeout);
            if self.base.starts_with("http://") {
                // Plain HTTP never verifies a certificate: skip loading
                // the system's root store (some 600 KB resident).
                builder = builder.tls_certs_only(Vec::new());
            }
            builder
                .build()
                .map_err(|e| FacilitatorError::Transport(e.to_string()))?
        };
        Ok(HttpFacilitator {
            base: self.base.trim_end_matches('/').to_owned(),
            client,
            token: self.token,
        })
    }
}

impl HttpFacilitator {
    /// A builder for the facilitator at `base_url`.
    pub fn builder(base_url: impl Into<String>) -> HttpFacilitatorBuilder {
        HttpFacilitatorBuilder {
            base: base_url.into(),
            timeout: DEFAULT_FACILITATOR_TIMEOUT,
            connect_timeout: Duration::from_secs(5),
            token: None,
            client: None,
        }
    }

    /// The facilitator at `base_url` with default settings.
    pub fn new(base_url: impl Into<String>) -> Result<Self, FacilitatorError> {
        Self::builder(base_url).build()
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, FacilitatorError> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        // Error texts reach clients: never the facilitator's URL (it may
        // carry a key).
        let response = request.send().await.map_err(|e| {
            let e = e.without_url();
            if e.is_connect() {
                FacilitatorError::Transport(format!("{NOT_SENT}{e}"))
            } else {
                FacilitatorError::Transport(e.to_string())
            }
        })?;
        let status = response.status();
        let (body, truncated) = read_bounded(response).await?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            let mut end = text.len().min(MAX_ERROR_BODY);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            return Err(FacilitatorError::Http {
                status: status.as_u16(),
                body: text[..end].to_owned(),
            });
        }
        if truncated {
            return Err(FacilitatorError::Decode(format!(
                "the facilitator's answer is larger than {MAX_ANSWER_BYTES} bytes"
            )));
        }
        serde_json::from_slice(&body).map_err(|e| FacilitatorError::Decode(e.to_string()))
    }
}

/// Reads at most [`MAX_ANSWER_BYTES`] of an answer; `true` when there was
/// more (the rest is not read).
async fn read_bounded(
    mut response: reqwest::Response,
) -> Result<(Vec<u8>, bool), FacilitatorError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| FacilitatorError::Transport(e.without_url().to_string()))?
    {
        let room = MAX_ANSWER_BYTES - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

impl Facilitator for HttpFacilitator {
    fn verify<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        Box::pin(async move {
            let url = format!("{}/verify", self.base);
            tracing::debug!(%url, "facilitator verify");
            self.send(self.client.post(url).json(request)).await
        })
    }

    fn settle<'a>(
        &'a self,
        request: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        Box::pin(async move {
            let url = format!("{}/settle", self.base);
            tracing::debug!(%url, "facilitator settle");
            self.send(self.client.post(url).json(request)).await
        })
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        Box::pin(async move {
            let url = format!("{}/supported", self.base);
            self.send(self.client.get(url)).await
        })
    }
}
