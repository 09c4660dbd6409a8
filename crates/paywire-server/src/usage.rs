//! Usage-based prices: what a handler reports it used, and what the gate
//! charges when it reports nothing.
//!
//! On an option whose scheme charges by usage
//! ([`paywire_core::SchemeServer::usage_based`], e.g. `upto`), the payer
//! authorizes a maximum (the requirements' `amount`); the gate verifies that
//! maximum, runs the handler, and settles what the handler reports
//! ([`Usage`]), clamped to the maximum.

use paywire_core::{AmountError, AtomicAmount, Money};

/// What one request used, as its handler reports it: an amount of the paid
/// option's asset in atomic units, or a money amount converted with the
/// paid option's asset decimals.
///
/// A money amount follows the rules of prices: it must be exact in the
/// asset's decimals (`$0.0000001` on a 6-decimal token is not a charge); a
/// report that cannot be converted counts as no report (the route's
/// [`MissingUsage`] policy applies, with a warning). Nothing is rounded.
///
/// Over HTTP, a handler behind [`crate::PaymentLayer`] reports by inserting
/// it into its response's extensions:
///
/// ```
/// use axum::response::IntoResponse;
/// use paywire_server::Usage;
///
/// async fn completion() -> axum::response::Response {
///     let tokens_used = 1858u64;
///     let mut response = "…the answer…".into_response();
///     // 1858 atomic units of the paid asset (or `Usage::money(...)`).
///     response.extensions_mut().insert(Usage::atomic(tokens_used));
///     response
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Usage {
    /// Atomic units of the paid asset.
    Atomic(AtomicAmount),
    /// A money amount (`$0.0021`), converted like a price.
    Money(Money),
}

impl Usage {
    /// `amount` atomic units of the paid asset.
    pub fn atomic(amount: impl Into<AtomicAmount>) -> Self {
        Self::Atomic(amount.into())
    }

    /// A money amount, converted with the paid asset's decimals.
    pub fn money(amount: Money) -> Self {
        Self::Money(amount)
    }

    /// Parses a usage report strictly: canonical atomic units (`1858`, `0`)
    /// or dollars with a leading `$` (`$0.0021`). No whitespace, sign,
    /// exponent or other unit is accepted.
    pub fn parse(text: &str) -> Result<Self, UsageError> {
        let invalid = || UsageError::Malformed(text.chars().take(64).collect());
        if text.is_empty() || text.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(invalid());
        }
        if text.bytes().all(|b| b.is_ascii_digit()) {
            return AtomicAmount::parse(text)
                .map(Self::Atomic)
                .map_err(|_| invalid());
        }
        if !text.starts_with('$') {
            return Err(invalid());
        }
        Money::parse(text).map(Self::Money).map_err(|_| invalid())
    }
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Atomic(amount) => write!(f, "{amount}"),
            Self::Money(money) => write!(f, "{money}"),
        }
    }
}

impl From<AtomicAmount> for Usage {
    fn from(amount: AtomicAmount) -> Self {
        Self::Atomic(amount)
    }
}

/// Why a usage report was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    /// Not atomic units nor `$` money.
    #[error("malformed usage {0:?}: expected atomic units (1858) or dollars ($0.0021)")]
    Malformed(String),
    /// A money amount the paid asset cannot represent.
    #[error("usage cannot be converted to the paid asset: {0}")]
    Conversion(String),
}

impl From<AmountError> for UsageError {
    fn from(error: AmountError) -> Self {
        Self::Conversion(error.to_string())
    }
}

/// What a route charges a usage-based payment whose handler reported no
/// usage (or an unusable one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MissingUsage {
    /// Settle the authorized maximum, with a warning (default: a handler
    /// that forgets to report cannot serve for free).
    #[default]
    ChargeMaximum,
    /// Settle zero (the authorization is consumed, nothing moves) and serve.
    ChargeNothing,
    /// Answer `500 usage_missing` withholding the reply, and settle nothing:
    /// the payment stays usable.
    Refuse,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strictly() {
        assert_eq!(Usage::parse("1858"), Ok(Usage::atomic(1858u64)));
        assert_eq!(Usage::parse("0"), Ok(Usage::atomic(0u64)));
        assert!(matches!(Usage::parse("$0.0021"), Ok(Usage::Money(_))));
        for bad in [
            "", " 1", "1 ", "01", "-1", "1e3", "0x10", "1.5", "$", "$-1", "$ 1", "1 USDC", "$1.",
            "abc", "$1,5",
        ] {
            assert!(Usage::parse(bad).is_err(), "{bad:?}");
        }
    }
}
