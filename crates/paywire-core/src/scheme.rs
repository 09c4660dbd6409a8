//! Plugin traits for payment schemes and the registry that looks them up by
//! (scheme, network). Chains and schemes live in their own crates and are
//! registered at start-up; nothing here knows any chain.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::amount::{AtomicAmount, Money};
use crate::chain::{ChainId, ChainIdPattern};
use crate::extensions::Extensions;
use crate::reason::ErrorReason;
use crate::types::{
    JsonObject, PaymentPayload, PaymentRequirements, ResourceInfo, SettleResponse, SupportedKind,
    VerifyResponse,
};

/// A boxed, sendable future; keeps the plugin traits object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An error raised by a scheme plugin outside the normal "payment invalid"
/// outcomes (those are reported in [`VerifyResponse`] / [`SettleResponse`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemeError {
    /// The plugin does not handle this network or asset.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The price or requirements cannot be turned into a payment.
    #[error("invalid requirements: {0}")]
    InvalidRequirements(String),
    /// Signing failed (wallet locked, remote signer down, …).
    #[error("signing failed: {0}")]
    Signing(String),
    /// Talking to the chain failed.
    #[error("chain access failed: {0}")]
    Chain(String),
    /// The requirements need data only the facilitator's `/supported` entry
    /// gives (e.g. a Solana fee payer), and none was passed in
    /// [`RequirementsRequest::facilitator_kind`]. Configuration checks that
    /// run before any facilitator is asked accept this answer; at request
    /// time it means the facilitator does not offer the payment option.
    #[error("needs the facilitator's data: {0}")]
    NeedsFacilitatorData(String),
}

/// A price as written in configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Price {
    /// A money amount (`"$0.01"`); the scheme picks the network's default
    /// stablecoin and converts with its decimals.
    Money(Money),
    /// An exact amount of a specific asset.
    Atomic {
        /// Amount in atomic units.
        amount: AtomicAmount,
        /// Asset address or code.
        asset: String,
        /// Scheme-specific extra data (e.g. EIP-712 name/version).
        extra: Option<JsonObject>,
    },
}

/// What a server-side scheme needs to produce one `PaymentRequirements`.
#[derive(Debug, Clone, Copy)]
pub struct RequirementsRequest<'a> {
    /// Network to be paid on.
    pub network: &'a ChainId,
    /// Price to charge.
    pub price: &'a Price,
    /// Recipient address, already resolved.
    pub pay_to: &'a str,
    /// Time allowed for the payment.
    pub max_timeout_seconds: u64,
    /// The facilitator's `/supported` entry for this scheme and network, for
    /// schemes that need facilitator data (e.g. a Solana fee payer).
    pub facilitator_kind: Option<&'a SupportedKind>,
}

/// Resource-server side of a scheme: turns prices into requirements.
pub trait SchemeServer: Send + Sync {
    /// Scheme identifier, e.g. `exact`.
    fn scheme(&self) -> &str;

    /// Builds the requirements for one accepted payment option.
    fn requirements(
        &self,
        request: &RequirementsRequest<'_>,
    ) -> Result<PaymentRequirements, SchemeError>;

    /// Whether a settlement refused with `reason` proves that the payload
    /// could never move funds, whenever it was tried (a defect of the
    /// signed payload itself: wrong amount or recipient, not valid yet).
    /// A server that kept a payment whose first settlement had an unknown
    /// outcome frees it only then. Generic payload defects
    /// ([`ErrorReason::is_payload_defect`]) count without asking; the
    /// default adds nothing.
    fn refusal_proves_unchargeable(&self, reason: &ErrorReason) -> bool {
        let _ = reason;
        false
    }

    /// Whether a settlement refused with `reason` says the payment's
    /// authorization was already spent (e.g. a used nonce): a server that
    /// resumed a payment whose first settlement had an unknown outcome then
    /// tells the payer it appears settled. The default knows no such code.
    fn refusal_means_spent(&self, reason: &ErrorReason) -> bool {
        let _ = reason;
        false
    }

    /// Whether this scheme charges by usage (`upto`): the requirements'
    /// `amount` is then the most the payer authorizes, and the server
    /// settles the amount its handler reports after it ran (at most that
    /// maximum, possibly zero). Such options need settlement after the
    /// handler.
    fn usage_based(&self) -> bool {
        false
    }

    /// Extension declarations this scheme adds to a 402 that offers
    /// `requirements` (e.g. `eip2612GasSponsoring` for an EVM Permit2
    /// option), given the extension identifiers the facilitator lists in its
    /// `/supported` answer. Keys are extension identifiers, values their
    /// `{info, schema}` envelopes. The default adds none.
    fn payment_required_extensions(
        &self,
        requirements: &PaymentRequirements,
        facilitator_extensions: &[String],
    ) -> JsonObject {
        let _ = (requirements, facilitator_extensions);
        JsonObject::new()
    }
}

/// A signed payment as a scheme client produced it: the scheme-specific
/// `payload` and the extension data it adds to the `PaymentPayload` (e.g. an
/// EIP-2612 permit for gas-sponsored approval).
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct CreatedPayment {
    /// The `PaymentPayload.payload` object.
    pub payload: JsonObject,
    /// Entries for `PaymentPayload.extensions` (identifier → `{info, …}`).
    pub extensions: JsonObject,
}

impl CreatedPayment {
    /// A payment without extension data.
    pub fn new(payload: JsonObject) -> Self {
        Self {
            payload,
            extensions: JsonObject::new(),
        }
    }

    /// Adds extension data under `identifier`.
    pub fn with_extension(
        mut self,
        identifier: impl Into<String>,
        value: serde_json::Value,
    ) -> Self {
        self.extensions.insert(identifier.into(), value);
        self
    }
}

/// Client side of a scheme: signs a payment for chosen requirements.
pub trait SchemeClient: Send + Sync {
    /// Scheme identifier, e.g. `exact`.
    fn scheme(&self) -> &str;

    /// The address that will pay on `network`, if this client can pay there.
    fn payer(&self, network: &ChainId) -> Option<String>;

    /// Produces the scheme-specific `payload` object for `requirements`.
    fn create_payload<'a>(
        &'a self,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<JsonObject, SchemeError>>;

    /// Produces the payment for `requirements`, seeing the extensions the
    /// 402 declared (`offered`), so that a scheme can add extension data the
    /// server accepts (e.g. a gas-sponsoring permit). The default signs with
    /// [`SchemeClient::create_payload`] and adds no extension data.
    fn create_payment<'a>(
        &'a self,
        requirements: &'a PaymentRequirements,
        offered: Option<&'a Extensions>,
    ) -> BoxFuture<'a, Result<CreatedPayment, SchemeError>> {
        let _ = offered;
        Box::pin(async move {
            self.create_payload(requirements)
                .await
                .map(CreatedPayment::new)
        })
    }

    /// [`SchemeClient::create_payment`] for the resource the 402 described
    /// (`resource`, the `PaymentRequired.resource` the payment will echo):
    /// the paying client calls this one. A scheme whose authorization names
    /// the resource (the `credit` binding's attestation is bound to the
    /// resource URL) overrides it; the default ignores the resource.
    fn create_payment_for<'a>(
        &'a self,
        requirements: &'a PaymentRequirements,
        offered: Option<&'a Extensions>,
        resource: &'a ResourceInfo,
    ) -> BoxFuture<'a, Result<CreatedPayment, SchemeError>> {
        let _ = resource;
        self.create_payment(requirements, offered)
    }
}

/// What the chain says about the authorization inside a payment payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpendState {
    /// Executed on chain: the payment was settled.
    Spent,
    /// Not executed, and it never can be any more: its validity window has
    /// closed and the chain reports it unused.
    Unspent,
    /// Not decided: still valid and unused, a payload this probe does not
    /// know, or the chain could not be read. The budget keeps counting it.
    Unknown,
}

/// A chain-specific check of payment payloads (one implementation per
/// scheme family, e.g. ``paywire_evm::exact::ExactEvmSpendProbe`` for EIP-3009).
///
/// The budget only releases an authorization on [`SpendState::Unspent`], so
/// an implementation must answer it only when the authorization can provably
/// never be executed; when in doubt it answers [`SpendState::Unknown`].
pub trait SpendProbe: Send + Sync {
    /// Whether `payload`'s authorization was spent.
    fn probe<'a>(&'a self, payload: &'a PaymentPayload) -> BoxFuture<'a, SpendState>;

    /// The amount the mined, successful transaction `transaction` moved
    /// under `payload`'s authorization, read from the chain: the truth
    /// about what a usage-based payment was charged, whatever the server's
    /// receipt claims. `None` whenever the chain does not prove it (an
    /// unknown, pending or reverted transaction, one that settled another
    /// authorization, a payload this probe does not know, an RPC failure);
    /// the caller then counts the authorized maximum. The default knows no
    /// payload.
    fn settled_amount<'a>(
        &'a self,
        _payload: &'a PaymentPayload,
        _transaction: &'a str,
    ) -> BoxFuture<'a, Option<AtomicAmount>> {
        Box::pin(async { None })
    }
}

/// Watches the side effects of one settlement, so that a durable ledger can
/// record each one *before* it happens (a crash then never forgets a
/// transaction that may land).
pub trait SettlementObserver: Send + Sync {
    /// A transaction with hash `transaction` is signed and about to be
    /// broadcast on `network`. An `Err` aborts the broadcast.
    fn before_broadcast<'a>(
        &'a self,
        network: &'a ChainId,
        transaction: &'a str,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// An observer that records nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl SettlementObserver for NoObserver {
    fn before_broadcast<'a>(
        &'a self,
        _network: &'a ChainId,
        _transaction: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

/// What the chain says about one payment, read without sending anything
/// (see [`SchemeFacilitator::lookup_settlement`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SettlementLookup {
    /// The payment was executed exactly as required: the answer to record
    /// (`success: true`, with the transaction that executed it).
    Settled(SettleResponse),
    /// Not executed yet, and it still can be.
    Open,
    /// Not executed, and it never can be any more (expired, or its
    /// authorization was consumed another way): the failure to record.
    Unsettleable(SettleResponse),
}

/// Facilitator side of a scheme: verifies and settles payments.
///
/// An invalid payment is a normal outcome and is returned as a response with
/// `isValid: false` / `success: false`; `Err` is reserved for infrastructure
/// failures (RPC unreachable, signer unavailable).
pub trait SchemeFacilitator: Send + Sync {
    /// Scheme identifier, e.g. `exact`.
    fn scheme(&self) -> &str;

    /// The concrete networks served, listed in `/supported`.
    fn networks(&self) -> Vec<ChainId>;

    /// Extra data for the `/supported` kind of `network`.
    fn kind_extra(&self, _network: &ChainId) -> Option<JsonObject> {
        None
    }

    /// Addresses that sign settlement transactions on `network`.
    fn signers(&self, network: &ChainId) -> Vec<String>;

    /// Checks a payment against the server's requirements without moving funds.
    fn verify<'a>(
        &'a self,
        payload: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<VerifyResponse, SchemeError>>;

    /// Re-verifies and executes a payment.
    fn settle<'a>(
        &'a self,
        payload: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<SettleResponse, SchemeError>>;

    /// What `payload` spends, independent of how it is spelled (for EVM
    /// `exact`: token, payer and nonce of the authorization): two payloads
    /// with the same key can never both be settled, so a facilitator
    /// serializes their settlements on it, across processes too. `None`
    /// when the payload is unreadable or the scheme has no such identity.
    fn spend_key(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Option<String> {
        let _ = (payload, requirements);
        None
    }

    /// The reason a replayed settlement (an already settled payment asked
    /// again) is refused with: the scheme's "already used" code, so that
    /// clients of other implementations recognise it.
    fn replay_reason(&self) -> ErrorReason {
        ErrorReason::DUPLICATE_SETTLEMENT
    }

    /// Whether `caller` may verify or settle this payment: `caller` is the
    /// id of the API key the HTTP caller presented (never the key), `None`
    /// when it presented none. Checked when a `/verify` or `/settle` is
    /// admitted, before anything is recorded; an `Err` refuses it with that
    /// reason. The default admits everyone (the facilitator's API keys
    /// already decide who may call it); a scheme whose payments are bound to one
    /// audience (the `credit` binding's `aud`) checks it here.
    fn admit_caller(
        &self,
        caller: Option<&str>,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<(), ErrorReason> {
        let _ = (caller, payload, requirements);
        Ok(())
    }

    /// Whether an identical repeat of a settled payment gets the recorded
    /// answer again rather than a replay refusal. `false` (the default) for
    /// schemes whose success lets a server serve: a replayed payload must
    /// not buy a second response. A scheme answers `true` only when its
    /// specification requires idempotent settlement and its verification
    /// refuses an already settled payment, so a replay is stopped before
    /// anything is served (the `credit` binding's `jti`).
    fn idempotent_settle(&self) -> bool {
        false
    }

    /// The payer, when a local check (no chain access) proves they signed
    /// the payload; see [`crate::Facilitator::authenticated_payer`].
    fn authenticated_payer(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Option<String> {
        let _ = (payload, requirements);
        None
    }

    /// Looks up on chain, without sending anything, what became of this
    /// payment: a facilitator restarting after a broadcast, or rechecking a
    /// `pending` settlement, must learn that a transaction landed even when
    /// the authorization's time window has passed since (re-running
    /// [`SchemeFacilitator::settle`] would then refuse it as expired).
    /// `known_transaction` is the hash the facilitator recorded before its
    /// last broadcast, if any. `Ok(None)` (the default): this scheme cannot
    /// tell, and the facilitator falls back to re-running the settlement.
    fn lookup_settlement<'a>(
        &'a self,
        payload: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
        known_transaction: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<SettlementLookup>, SchemeError>> {
        let _ = (payload, requirements, known_transaction);
        Box::pin(async { Ok(None) })
    }

    /// [`SchemeFacilitator::settle`], reporting each broadcast to `observer`
    /// first. Schemes that broadcast transactions should override it; the
    /// default ignores the observer.
    fn settle_observed<'a>(
        &'a self,
        payload: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
        observer: &'a dyn SettlementObserver,
    ) -> BoxFuture<'a, Result<SettleResponse, SchemeError>> {
        let _ = observer;
        self.settle(payload, requirements)
    }
}

struct RegistryEntry<T: ?Sized> {
    scheme: String,
    networks: ChainIdPattern,
    handler: Arc<T>,
}

/// Handlers keyed by (scheme, network pattern).
///
/// Lookup picks the most specific matching pattern (exact chain over a set
/// over a whole namespace); among equals, the one registered last wins, so an
/// application can override a default plugin.
pub struct SchemeRegistry<T: ?Sized> {
    entries: Vec<RegistryEntry<T>>,
}

impl<T: ?Sized> Default for SchemeRegistry<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<T: ?Sized> Clone for SchemeRegistry<T> {
    fn clone(&self) -> Self {
        Self {
            entries: self
                .entries
                .iter()
                .map(|e| RegistryEntry {
                    scheme: e.scheme.clone(),
                    networks: e.networks.clone(),
                    handler: Arc::clone(&e.handler),
                })
                .collect(),
        }
    }
}

impl<T: ?Sized> std::fmt::Debug for SchemeRegistry<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.entries
                    .iter()
                    .map(|e| format!("{} @ {}", e.scheme, e.networks)),
            )
            .finish()
    }
}

impl<T: ?Sized> SchemeRegistry<T> {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `handler` for `scheme` on `networks`.
    pub fn register(
        &mut self,
        scheme: impl Into<String>,
        networks: ChainIdPattern,
        handler: Arc<T>,
    ) -> &mut Self {
        self.entries.push(RegistryEntry {
            scheme: scheme.into(),
            networks,
            handler,
        });
        self
    }

    /// The handler for `scheme` on `network`, if any.
    pub fn find(&self, scheme: &str, network: &ChainId) -> Option<&Arc<T>> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.scheme == scheme && e.networks.matches(network))
            .max_by_key(|(index, e)| (e.networks.specificity(), *index))
            .map(|(_, e)| &e.handler)
    }

    /// Whether any handler serves `scheme` on `network`.
    pub fn supports(&self, scheme: &str, network: &ChainId) -> bool {
        self.find(scheme, network).is_some()
    }

    /// All registrations, in registration order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ChainIdPattern, &Arc<T>)> {
        self.entries
            .iter()
            .map(|e| (e.scheme.as_str(), &e.networks, &e.handler))
    }

    /// Number of registrations.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Named(&'static str);

    #[test]
    fn most_specific_then_latest_wins() {
        let mut registry: SchemeRegistry<Named> = SchemeRegistry::new();
        registry
            .register(
                "exact",
                ChainIdPattern::parse("eip155:*").unwrap(),
                Arc::new(Named("any-evm")),
            )
            .register(
                "exact",
                ChainIdPattern::parse("eip155:8453").unwrap(),
                Arc::new(Named("base")),
            )
            .register(
                "exact",
                ChainIdPattern::parse("eip155:*").unwrap(),
                Arc::new(Named("evm-override")),
            );
        let find = |scheme: &str, chain: ChainId| registry.find(scheme, &chain).map(|h| h.0);
        assert_eq!(
            find("exact", ChainId::parse("eip155:8453").unwrap()),
            Some("base")
        );
        assert_eq!(
            find("exact", ChainId::parse("eip155:1").unwrap()),
            Some("evm-override")
        );
        assert_eq!(find("upto", ChainId::parse("eip155:1").unwrap()), None);
        assert_eq!(find("exact", ChainId::parse("solana:abc").unwrap()), None);
        assert_eq!(registry.len(), 3);
    }
}
