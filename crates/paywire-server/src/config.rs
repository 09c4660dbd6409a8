//! Per-route configuration: patterns, payment options, prices and pay-to.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use paywire_core::{BoxFuture, ChainId, Money, Price};

use crate::context::RequestContext;
use crate::error::{ConfigError, PricingError};
use crate::path::{NormalizedPath, canonical_segment, normalize_path};
use crate::usage::MissingUsage;

/// Parses a money price such as `"$0.01"` or `"0.5 USDC"`.
pub fn money(text: &str) -> Result<Price, ConfigError> {
    Money::parse(text)
        .map(Price::Money)
        .map_err(|_| ConfigError::Price(text.to_owned()))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    /// `*` in the middle: exactly one segment.
    Any,
    /// `*` at the end: zero or more segments.
    Rest,
}

/// A method filter and a path pattern: `"GET /weather"`, `"/files/*"`,
/// `"POST /tenants/:tenant/jobs"`. Without a method, any method matches.
/// `:name` matches one segment and captures it; `*` matches one segment, or
/// everything that follows when it is the last segment. Empty segments are
/// ignored, so `/a//b/` matches like `/a/b`. Requests are matched on their
/// normalized path ([`crate::normalize_path`]) segment by segment after
/// percent-decoding, so `/%70aid` matches `/paid`; literal segments of the
/// pattern are decoded the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    text: String,
    /// Upper case; `None`: any method.
    method: Option<String>,
    segments: Vec<Segment>,
    template: Option<String>,
}

impl RoutePattern {
    /// Parses a pattern.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let err = |reason: &str| ConfigError::Pattern {
            pattern: text.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = text.trim();
        let (method, path) = match trimmed.split_once(char::is_whitespace) {
            Some((method, path)) => {
                let method = if method == "*" || method.eq_ignore_ascii_case("ANY") {
                    None
                } else if is_token(method) {
                    Some(method.to_ascii_uppercase())
                } else {
                    return Err(err("invalid HTTP method"));
                };
                (method, path.trim())
            }
            None => (None, trimmed),
        };
        if !path.starts_with('/') {
            return Err(err("path must start with '/'"));
        }
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut segments = Vec::with_capacity(parts.len());
        for (index, part) in parts.iter().enumerate() {
            let segment = if *part == "*" {
                if index + 1 == parts.len() {
                    Segment::Rest
                } else {
                    Segment::Any
                }
            } else if let Some(name) = part.strip_prefix(':') {
                if name.is_empty() {
                    return Err(err("parameter without a name"));
                }
                Segment::Param(name.to_owned())
            } else {
                let literal = canonical_segment(part).map_err(|e| err(&e.to_string()))?;
                if matches!(literal.decoded.as_str(), "." | "..") {
                    return Err(err("dot segments ('.', '..') cannot be matched"));
                }
                Segment::Literal(literal.decoded)
            };
            segments.push(segment);
        }
        let template = template_of(&segments);
        Ok(Self {
            text: trimmed.to_owned(),
            method,
            segments,
            template,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The path with its `:name` parameters (`/users/:id`), when the pattern
    /// has parameters and no wildcard: the catalog key of a dynamic route.
    pub fn template(&self) -> Option<&str> {
        self.template.as_deref()
    }

    /// Matches a request (`method` upper case, as an HTTP method); returns
    /// the captured parameters. The path is normalized first
    /// ([`crate::normalize_path`]); a refused path matches nothing. Matching
    /// is case-sensitive.
    pub fn matches(&self, method: &str, path: &str) -> Option<HashMap<String, String>> {
        self.matches_normalized(method, &normalize_path(path).ok()?, PathMatching::default())
    }

    /// Matches a normalized path; parameters capture the normalized
    /// (still percent-encoded) segment.
    pub(crate) fn matches_normalized(
        &self,
        method: &str,
        path: &NormalizedPath,
        options: PathMatching,
    ) -> Option<HashMap<String, String>> {
        if let Some(expected) = &self.method {
            // HEAD is served by GET handlers in most frameworks: price it too.
            let head_as_get = expected == "GET" && method == "HEAD";
            if expected != method && !head_as_get {
                return None;
            }
        }
        let parts = path.segments();
        let same = |literal: &str, decoded: &str| {
            if options.case_insensitive {
                literal
                    .chars()
                    .flat_map(char::to_lowercase)
                    .eq(decoded.chars().flat_map(char::to_lowercase))
            } else {
                literal == decoded
            }
        };
        let last = self.segments.len().checked_sub(1);
        let mut params = HashMap::new();
        let mut index = 0;
        for segment in &self.segments {
            match segment {
                Segment::Rest => return Some(params),
                Segment::Literal(literal) => {
                    let decoded = &parts.get(index)?.decoded;
                    let with_suffix = options.format_suffixes && Some(index) == last;
                    let stem = if with_suffix {
                        strip_format_suffix(decoded)
                    } else {
                        decoded
                    };
                    if !same(literal, decoded) && !same(literal, stem) {
                        return None;
                    }
                }
                Segment::Any => {
                    parts.get(index)?;
                }
                Segment::Param(name) => {
                    params.insert(name.clone(), parts.get(index)?.canonical.clone());
                }
            }
            index += 1;
        }
        (index == parts.len()).then_some(params)
    }
}

/// Whether `text` is an RFC 9110 token (what a method name may be).
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// How request paths are compared with route patterns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PathMatching {
    /// ASCII letters match ignoring case.
    pub(crate) case_insensitive: bool,
    /// A final literal also matches with a format suffix (`/paid.json`).
    pub(crate) format_suffixes: bool,
}

/// `name` without a trailing `.ext` (ASCII letters and digits), the format
/// suffix Rails and older Spring MVC strip before routing.
fn strip_format_suffix(name: &str) -> &str {
    match name.rsplit_once('.') {
        Some((stem, ext))
            if !stem.is_empty()
                && !ext.is_empty()
                && ext.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            stem
        }
        _ => name,
    }
}

fn template_of(segments: &[Segment]) -> Option<String> {
    let mut has_param = false;
    let mut template = String::new();
    for segment in segments {
        template.push('/');
        match segment {
            Segment::Literal(literal) => template.push_str(literal),
            Segment::Param(name) => {
                has_param = true;
                template.push(':');
                template.push_str(name);
            }
            Segment::Any | Segment::Rest => return None,
        }
    }
    has_param.then_some(template)
}

/// A recipient: an address, or a role resolved per request by the
/// [`PayToResolver`] (e.g. `"merchant"`, `"tenant:acme"`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PayTo {
    /// A chain address.
    Address(String),
    /// A role name resolved at request time.
    Role(String),
}

impl PayTo {
    /// A fixed address.
    pub fn address(address: impl Into<String>) -> Self {
        Self::Address(address.into())
    }

    /// A role.
    pub fn role(role: impl Into<String>) -> Self {
        Self::Role(role.into())
    }
}

/// Computes a price from the request.
pub trait DynamicPrice: Send + Sync {
    /// The price of this request.
    fn price<'a>(&'a self, ctx: &'a RequestContext) -> BoxFuture<'a, Result<Price, PricingError>>;
}

impl<F, Fut> DynamicPrice for F
where
    F: Fn(&RequestContext) -> Fut + Send + Sync,
    Fut: Future<Output = Result<Price, PricingError>> + Send + 'static,
{
    fn price<'a>(&'a self, ctx: &'a RequestContext) -> BoxFuture<'a, Result<Price, PricingError>> {
        Box::pin(self(ctx))
    }
}

/// Computes a recipient from the request.
pub trait DynamicPayTo: Send + Sync {
    /// The recipient (address or role) of this request.
    fn pay_to<'a>(&'a self, ctx: &'a RequestContext) -> BoxFuture<'a, Result<PayTo, PricingError>>;
}

impl<F, Fut> DynamicPayTo for F
where
    F: Fn(&RequestContext) -> Fut + Send + Sync,
    Fut: Future<Output = Result<PayTo, PricingError>> + Send + 'static,
{
    fn pay_to<'a>(&'a self, ctx: &'a RequestContext) -> BoxFuture<'a, Result<PayTo, PricingError>> {
        Box::pin(self(ctx))
    }
}

/// Resolves pay-to roles to addresses (seller-provided).
pub trait PayToResolver: Send + Sync {
    /// The address for `role` on `network` for this request.
    fn resolve<'a>(
        &'a self,
        role: &'a str,
        network: &'a ChainId,
        ctx: &'a RequestContext,
    ) -> BoxFuture<'a, Result<String, PricingError>>;
}

impl<F, Fut> PayToResolver for F
where
    F: Fn(&str, &ChainId, &RequestContext) -> Fut + Send + Sync,
    Fut: Future<Output = Result<String, PricingError>> + Send + 'static,
{
    fn resolve<'a>(
        &'a self,
        role: &'a str,
        network: &'a ChainId,
        ctx: &'a RequestContext,
    ) -> BoxFuture<'a, Result<String, PricingError>> {
        Box::pin(self(role, network, ctx))
    }
}

/// A fixed or computed price.
#[derive(Clone)]
#[non_exhaustive]
pub enum PriceSpec {
    /// The same price for every request.
    Fixed(Price),
    /// Computed per request (the 402 and the paid retry use the same call).
    Dynamic(Arc<dyn DynamicPrice>),
}

impl PriceSpec {
    /// A computed price.
    pub fn dynamic(f: impl DynamicPrice + 'static) -> Self {
        Self::Dynamic(Arc::new(f))
    }
}

impl From<Price> for PriceSpec {
    fn from(price: Price) -> Self {
        Self::Fixed(price)
    }
}

impl std::fmt::Debug for PriceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fixed(price) => f.debug_tuple("Fixed").field(price).finish(),
            Self::Dynamic(_) => f.write_str("Dynamic"),
        }
    }
}

/// A fixed or computed recipient.
#[derive(Clone)]
#[non_exhaustive]
pub enum PayToSpec {
    /// The same recipient (address or role) for every request.
    Fixed(PayTo),
    /// Computed per request.
    Dynamic(Arc<dyn DynamicPayTo>),
}

impl PayToSpec {
    /// A computed recipient.
    pub fn dynamic(f: impl DynamicPayTo + 'static) -> Self {
        Self::Dynamic(Arc::new(f))
    }
}

impl From<PayTo> for PayToSpec {
    fn from(pay_to: PayTo) -> Self {
        Self::Fixed(pay_to)
    }
}

impl std::fmt::Debug for PayToSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fixed(pay_to) => f.debug_tuple("Fixed").field(pay_to).finish(),
            Self::Dynamic(_) => f.write_str("Dynamic"),
        }
    }
}

/// One accepted way to pay for a route.
#[derive(Debug, Clone)]
pub struct PaymentOption {
    pub(crate) scheme: String,
    pub(crate) network: ChainId,
    pub(crate) price: PriceSpec,
    pub(crate) pay_to: PayToSpec,
    pub(crate) max_timeout_seconds: Option<u64>,
    pub(crate) expected_price: Option<Price>,
}

impl PaymentOption {
    /// An option for `scheme` on `network`.
    pub fn new(
        scheme: impl Into<String>,
        network: ChainId,
        price: impl Into<PriceSpec>,
        pay_to: impl Into<PayToSpec>,
    ) -> Self {
        Self {
            scheme: scheme.into(),
            network,
            price: price.into(),
            pay_to: pay_to.into(),
            max_timeout_seconds: None,
            expected_price: None,
        }
    }

    /// An `exact` option.
    pub fn exact(
        network: ChainId,
        price: impl Into<PriceSpec>,
        pay_to: impl Into<PayToSpec>,
    ) -> Self {
        Self::new("exact", network, price, pay_to)
    }

    /// Overrides the route's `maxTimeoutSeconds` for this option.
    pub fn max_timeout_seconds(mut self, seconds: u64) -> Self {
        self.max_timeout_seconds = Some(seconds);
        self
    }

    /// For a usage-based option (`upto`): what a typical request costs,
    /// converted like the price and stated in the requirements'
    /// `extra.expectedAmount` (atomic units), so that clients can compare it
    /// with other options by its likely cost rather than its maximum. Left
    /// out (with a warning) when it is above the maximum or in another
    /// asset; refused at build on an option that does not charge by usage.
    pub fn expected_price(mut self, price: Price) -> Self {
        self.expected_price = Some(price);
        self
    }
}

/// When settlement happens relative to the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SettleMode {
    /// Run the handler, buffer its response, settle unless it returned
    /// 4xx/5xx (a 3xx redirect is settled like content), serve only if
    /// settlement succeeded (default). A `101 Switching Protocols` cannot be
    /// held back and is refused with a 500: upgrades need
    /// [`SettleMode::BeforeHandler`].
    #[default]
    AfterHandler,
    /// Settle first; run the handler only after a successful settlement (for
    /// handlers with side effects).
    BeforeHandler,
}

/// What to do when the facilitator reports a broadcast-but-unconfirmed
/// (`settlement_pending`) settlement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PendingPolicy {
    /// Answer 402 withholding the body, with the pending receipt in
    /// `PAYMENT-RESPONSE` and a `Retry-After` (default).
    #[default]
    Refuse,
    /// Serve the response with the pending receipt in `PAYMENT-RESPONSE`.
    Serve,
}

/// A priced route.
#[derive(Debug, Clone)]
pub struct Route {
    pub(crate) pattern: RoutePattern,
    pub(crate) options: Vec<PaymentOption>,
    pub(crate) description: Option<String>,
    pub(crate) mime_type: Option<String>,
    pub(crate) max_timeout_seconds: u64,
    pub(crate) resource: Option<String>,
    pub(crate) body_limit: Option<usize>,
    pub(crate) settle_mode: SettleMode,
    pub(crate) pending: PendingPolicy,
    pub(crate) missing_usage: MissingUsage,
    pub(crate) service_name: Option<String>,
    pub(crate) tags: Option<Vec<String>>,
    pub(crate) icon_url: Option<String>,
    pub(crate) extensions: Option<paywire_core::Extensions>,
}

impl Route {
    /// A route for `pattern` (see [`RoutePattern`]) with no options yet.
    pub fn new(pattern: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            pattern: RoutePattern::parse(pattern)?,
            options: Vec::new(),
            description: None,
            mime_type: None,
            max_timeout_seconds: 60,
            resource: None,
            body_limit: None,
            settle_mode: SettleMode::default(),
            pending: PendingPolicy::default(),
            missing_usage: MissingUsage::default(),
            service_name: None,
            tags: None,
            icon_url: None,
            extensions: None,
        })
    }

    /// Service metadata for discovery catalogs: the service's name (printable
    /// ASCII, at most 32 characters), up to five topical tags, and an icon
    /// URL. Facilitators drop values that break those rules.
    pub fn service(
        mut self,
        name: impl Into<String>,
        tags: impl IntoIterator<Item = impl Into<String>>,
        icon_url: Option<String>,
    ) -> Self {
        self.service_name = Some(name.into());
        let tags: Vec<String> = tags.into_iter().map(Into::into).collect();
        self.tags = (!tags.is_empty()).then_some(tags);
        self.icon_url = icon_url;
        self
    }

    /// Adds an extension to every 402 answer of the route, e.g. a `bazaar`
    /// declaration (`paywire_bazaar::Declaration::into_extension`). For a
    /// route with `:name` parameters, a `bazaar` declaration also gets the
    /// route template and the request's parameter values, so catalogs keep
    /// one entry for all of the route's URLs.
    pub fn extension(mut self, key: impl Into<String>, value: serde_json::Value) -> Self {
        self.extensions
            .get_or_insert_with(paywire_core::Extensions::new)
            .0
            .insert(key.into(), value);
        self
    }

    /// Adds an accepted payment option.
    pub fn accept(mut self, option: PaymentOption) -> Self {
        self.options.push(option);
        self
    }

    /// Human-readable description of the resource.
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = Some(text.into());
        self
    }

    /// MIME type of the response.
    pub fn mime_type(mut self, mime: impl Into<String>) -> Self {
        self.mime_type = Some(mime.into());
        self
    }

    /// `maxTimeoutSeconds` of the route's options (default 60).
    pub fn max_timeout_seconds(mut self, seconds: u64) -> Self {
        self.max_timeout_seconds = seconds;
        self
    }

    /// A fixed resource URL instead of public origin + path.
    pub fn resource(mut self, url: impl Into<String>) -> Self {
        self.resource = Some(url.into());
        self
    }

    /// Buffers the request body (at most `limit` bytes, else 413) so pricing
    /// callbacks can read it.
    pub fn with_body(mut self, limit: usize) -> Self {
        self.body_limit = Some(limit);
        self
    }

    /// Settles before the handler runs: for handlers with side effects,
    /// streamed responses, and protocol upgrades (WebSocket), which cannot be
    /// held back until settlement.
    pub fn settle_before_handler(mut self) -> Self {
        self.settle_mode = SettleMode::BeforeHandler;
        self
    }

    /// What to do with a pending settlement.
    pub fn on_pending(mut self, policy: PendingPolicy) -> Self {
        self.pending = policy;
        self
    }

    /// What a usage-based payment is charged when the handler reports no
    /// usage, or one that cannot be converted (default
    /// [`MissingUsage::ChargeMaximum`]).
    pub fn on_missing_usage(mut self, policy: MissingUsage) -> Self {
        self.missing_usage = policy;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_of_parameterised_routes() {
        let template = |p: &str| {
            RoutePattern::parse(p)
                .unwrap()
                .template()
                .map(str::to_owned)
        };
        assert_eq!(template("GET /users/:id").as_deref(), Some("/users/:id"));
        assert_eq!(
            template("/w/:country/:city"),
            Some("/w/:country/:city".into())
        );
        assert_eq!(
            template("GET /weather"),
            None,
            "static: the concrete URL is the key"
        );
        assert_eq!(template("/files/:id/*"), None, "a wildcard has no template");
    }

    #[test]
    fn patterns() {
        let p = RoutePattern::parse("GET /tenants/:tenant/jobs").unwrap();
        let params = p.matches("GET", "/tenants/acme/jobs").unwrap();
        assert_eq!(params.get("tenant").map(String::as_str), Some("acme"));
        assert!(p.matches("HEAD", "/tenants/acme/jobs").is_some());
        assert!(p.matches("POST", "/tenants/acme/jobs").is_none());
        assert!(p.matches("GET", "/tenants/acme").is_none());
        assert!(p.matches("GET", "/tenants/acme/jobs/1").is_none());
        let rest = RoutePattern::parse("/files/*").unwrap();
        assert!(rest.matches("PUT", "/files/a/b/c").is_some());
        assert!(rest.matches("PUT", "/files").is_some());
        assert!(rest.matches("PUT", "/other").is_none());
        let mid = RoutePattern::parse("ANY /a/*/c").unwrap();
        assert!(mid.matches("GET", "/a/b/c").is_some());
        assert!(mid.matches("GET", "/a/c").is_none());
        assert!(RoutePattern::parse("GET nope").is_err());
        assert!(RoutePattern::parse("/x/:").is_err());
        assert!(
            RoutePattern::parse("/cheap")
                .unwrap()
                .matches("GET", "//cheap/")
                .is_some()
        );
    }

    #[test]
    fn patterns_match_normalized_decoded_paths() {
        let paid = RoutePattern::parse("GET /paid").unwrap();
        for path in ["/x/../paid", "/%70aid", "/./paid", "/x/%2E%2e/paid"] {
            assert!(paid.matches("GET", path).is_some(), "{path}");
        }
        assert!(paid.matches("GET", "/../paid").is_none(), "refused");
        assert!(paid.matches("GET", "/PAID").is_none(), "case-sensitive");
        let ignoring_case = PathMatching {
            case_insensitive: true,
            ..PathMatching::default()
        };
        let upper = normalize_path("/P%41iD").unwrap();
        assert!(
            paid.matches_normalized("GET", &upper, ignoring_case)
                .is_some()
        );
        assert!(
            paid.matches_normalized("GET", &upper, PathMatching::default())
                .is_none()
        );
        let unicode = RoutePattern::parse("/caf%C3%A9/:id").unwrap();
        let params = unicode.matches("GET", "/café/a%2d%3f").unwrap();
        assert_eq!(params["id"], "a-%3F", "captures the normalized segment");
        let accented = normalize_path("/CAFÉ/1").unwrap();
        assert!(
            unicode
                .matches_normalized("GET", &accented, ignoring_case)
                .is_some()
        );
        let suffixes = PathMatching {
            format_suffixes: true,
            ..PathMatching::default()
        };
        for (path, priced) in [
            ("/paid.json", true),
            ("/paid.tar", true),
            ("/paid.", false),
            ("/paid.j-s", false),
            ("/.paid", false),
            ("/paid.json/x", false),
        ] {
            let Ok(normalized) = normalize_path(path) else {
                assert!(!priced, "{path}");
                continue;
            };
            let matched = paid.matches_normalized("GET", &normalized, suffixes);
            assert_eq!(matched.is_some(), priced, "{path}");
            let plain = paid.matches_normalized("GET", &normalized, PathMatching::default());
            assert!(plain.is_none(), "{path} without the option");
        }
        assert!(RoutePattern::parse("/a/../b").is_err());
        assert!(RoutePattern::parse("/a%2fb").is_err());
        assert!(RoutePattern::parse("/a;b").is_err());
    }
}
