//! `reqwest-middleware` integration: any `ClientWithMiddleware` pays 402s.

use std::sync::Arc;

use reqwest_middleware::{Middleware, Next};

use crate::client::{Transport, X402Client};

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

#[async_trait::async_trait]
impl Middleware for X402Middleware {
    async fn handle(
        &self,
        request: reqwest::Request,
        extensions: &mut http::Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let extensions = std::sync::Mutex::new(extensions);
        self.client
            .pay_flow(
                request,
                |request| {
                    let next = next.clone();
                    let extensions = &extensions;
                    async move {
                        let mut scratch =
                            extensions.lock().map(|e| (*e).clone()).unwrap_or_default();
                        next.run(request, &mut scratch)
                            .await
                            .map_err(|e| Transport {
                                retryable: match &e {
                                    reqwest_middleware::Error::Reqwest(e) => {
                                        e.is_connect() || e.is_timeout()
                                    }
                                    reqwest_middleware::Error::Middleware(_) => false,
                                },
                                message: e.to_string(),
                            })
                    }
                },
                |request| self.client.execute_paid(request),
            )
            .await
            .map_err(reqwest_middleware::Error::middleware)
    }
}
