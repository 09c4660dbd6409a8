//! Error types of the middleware configuration and of price evaluation.

/// A configuration mistake found while building a [`crate::PaymentLayer`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A route pattern could not be parsed.
    #[error("invalid route pattern {pattern:?}: {reason}")]
    Pattern {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A price could not be parsed.
    #[error("invalid price {0:?}")]
    Price(String),
    /// A route accepts no payment option.
    #[error("route {0} has no payment option")]
    NoOptions(String),
    /// A scheme has no registered `SchemeServer`.
    #[error("no scheme server registered for {scheme} on {network}")]
    UnknownScheme {
        /// Scheme identifier.
        scheme: String,
        /// CAIP-2 network.
        network: String,
    },
    /// The public origin is not an absolute http(s) origin.
    #[error("invalid public origin {0:?}: expected e.g. https://api.example.com")]
    Origin(String),
    /// A pay-to role is used but no resolver is configured.
    #[error("route {0} uses a pay-to role but no role resolver is configured")]
    NoResolver(String),
    /// A usage-based option on a route that settles before its handler:
    /// the charge is only known after the handler ran.
    #[error(
        "route {route} accepts {scheme}, which charges by usage: it must settle after its \
         handler (remove settle_before_handler)"
    )]
    UsageBeforeHandler {
        /// The route pattern.
        route: String,
        /// The usage-based scheme.
        scheme: String,
    },
    /// An expected price on an option whose scheme does not charge by usage.
    #[error("route {route}: an expected price needs a usage-based scheme, not {scheme}")]
    ExpectedPriceNotUsageBased {
        /// The route pattern.
        route: String,
        /// The option's scheme.
        scheme: String,
    },
}

/// Why the price, pay-to or requirements of a request could not be computed.
/// Answered with HTTP 500 (nothing is served, nothing is charged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PricingError {
    /// A dynamic price or pay-to callback failed.
    #[error("pricing failed: {0}")]
    Callback(String),
    /// A pay-to role could not be resolved.
    #[error("pay-to role {0:?} could not be resolved")]
    UnknownRole(String),
    /// The scheme refused to build requirements.
    #[error("requirements could not be built: {0}")]
    Scheme(String),
}
