//! `reqwest-middleware` integration: any `ClientWithMiddleware` pays 402s.

use std::sync::Arc;

use paywire_core::BoxFuture;
use reqwest_middleware::{Middleware, Next};

use crate::client::X402Client;
use crate::flow::TransportError;
use crate::http::SendHttp;

/// Middleware that answers `402 Payment Required` by paying with an
/// [`X402Client`] and retrying. The response's extensions carry a
/// [`crate::PaymentOutcome`] when a payment was made.
///
/// Requests carrying the payment are sent by the client's paid-request
/// client ([`crate::X402ClientBuilder::paid_request_client`]), not by the
/// rest of the chain: an HTTP client forwards `PAYMENT-SIGNATURE` along
/// redirects to any origin, so paid requests are sent without following
/// redirects and the flow follows them itself (see [`X402Client::send`]).
/// Everything else, redirects followed without the payment included, goes
/// through the rest of the chain.
#[derive(Debug, Clone)]
pub struct X402Middleware {
    client: Arc<X402Client>,
}

impl X402Middleware {
    /// Wraps a client.
    pub fn new(client: Arc<X402Client>) -> Self {
        Self { client }
    }
}

/// The rest of the middleware chain, for requests without a payment. Each
/// request gets its own copy of the chain's extensions.
struct RestOfChain<'a> {
    next: Next<'a>,
    extensions: &'a http::Extensions,
}

impl SendHttp for RestOfChain<'_> {
    fn execute(
        &self,
        request: reqwest::Request,
    ) -> BoxFuture<'_, Result<reqwest::Response, TransportError>> {
        let next = self.next.clone();
        let mut scratch = self.extensions.clone();
        Box::pin(async move {
            next.run(request, &mut scratch).await.map_err(|error| {
                let retryable = match &error {
                    reqwest_middleware::Error::Reqwest(e) => e.is_connect() || e.is_timeout(),
                    reqwest_middleware::Error::Middleware(_) => false,
                };
                if retryable {
                    TransportError::retryable(error.to_string())
                } else {
                    TransportError::fatal(error.to_string())
                }
            })
        })
    }
}

// `async_trait` only because reqwest-middleware's trait is declared with it.
#[async_trait::async_trait]
impl Middleware for X402Middleware {
    async fn handle(
        &self,
        request: reqwest::Request,
        extensions: &mut http::Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let rest = RestOfChain {
            next,
            extensions: &*extensions,
        };
        self.client
            .send_through(rest, request)
            .await
            .map_err(reqwest_middleware::Error::middleware)
    }
}
