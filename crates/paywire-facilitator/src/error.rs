//! Error types: the JSON error body every non-200 answer carries, and the
//! startup error.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use paywire_core::{FacilitatorError, PluginError, SchemeError};

use crate::config::ConfigError;
use crate::ledger::LedgerError;
use crate::settlement::SettlementError;

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

impl From<SettlementError> for ApiError {
    fn from(error: SettlementError) -> Self {
        match error {
            SettlementError::InvalidPaymentId(message) => {
                Self::bad_request("invalid_payment_identifier", message)
            }
            error @ SettlementError::PaymentIdConflict(_) => Self::new(
                StatusCode::CONFLICT,
                "payment_identifier_conflict",
                error.to_string(),
            ),
            SettlementError::Ledger(error) => error.into(),
            SettlementError::Facilitator(error) => facilitator_error(error),
        }
    }
}

/// The HTTP answer to a failure of the decorated facilitator: 400 for
/// requirements no scheme can take, 502 when the chain (or an upstream
/// facilitator) failed.
pub(crate) fn facilitator_error(error: FacilitatorError) -> ApiError {
    match error {
        FacilitatorError::BadRequest(message) => ApiError::bad_request("bad_request", message),
        FacilitatorError::Scheme(
            error @ (SchemeError::InvalidRequirements(_) | SchemeError::Unsupported(_)),
        ) => ApiError::bad_request("invalid_payment_requirements", error.to_string()),
        FacilitatorError::Scheme(error) => {
            tracing::warn!(%error, "scheme failure");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "chain_unavailable",
                error.to_string(),
            )
        }
        other => {
            tracing::warn!(error = %other, "upstream failure");
            ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", other.to_string())
        }
    }
}

/// Why the facilitator could not be built or started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The ledger could not be opened.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A `[[chains]]` entry names a network no registered plugin serves,
    /// or its plugin refused it (bad key, RPC URL, unknown setting).
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// The bazaar catalog could not be opened.
    #[error("bazaar catalog: {0}")]
    Catalog(String),
    /// Binding or serving failed.
    #[error("server I/O error: {0}")]
    Io(#[from] std::io::Error),
}
