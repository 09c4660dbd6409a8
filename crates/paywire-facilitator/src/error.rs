//! Error types: the JSON error body every non-200 answer carries, and the
//! startup error.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::config::ConfigError;
use crate::ledger::LedgerError;

/// An HTTP error answer: `{"error": "<code>", "message": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Short machine-readable code.
    pub code: &'static str,
    /// Human-readable detail.
    pub message: String,
}

/// The JSON body of an [`ApiError`].
#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

impl ApiError {
    /// An error with any status.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code,
            message: &self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<LedgerError> for ApiError {
    fn from(error: LedgerError) -> Self {
        if let LedgerError::LockTimeout(_) = error {
            tracing::warn!(%error, "settlement lock not obtained");
            return Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "settlement_busy",
                "this payment is being settled by another facilitator instance; retry shortly",
            );
        }
        tracing::error!(%error, "ledger failure");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ledger_unavailable",
            error.to_string(),
        )
    }
}

/// Why the facilitator could not be built or started.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The ledger could not be opened.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A chain could not be set up (bad key, RPC client).
    #[error("chain {network}: {message}")]
    Chain {
        /// The chain.
        network: String,
        /// What went wrong.
        message: String,
    },
    /// The bazaar catalog could not be opened.
    #[error("bazaar catalog: {0}")]
    Catalog(String),
    /// Binding or serving failed.
    #[error("server I/O error: {0}")]
    Io(#[from] std::io::Error),
}
