//! The authority's ledger: bundles, credentials, holds, charges, purchases,
//! collections, payouts and returns, in SQLite or PostgreSQL.
//!
//! Every method is one atomic operation (one transaction): the
//! authority's correctness under concurrency, and across instances on one
//! PostgreSQL, rests on these methods alone (no read-then-act outside
//! them). Amounts are minor units (`u64`, at most
//! [`crate::money::MAX_MINOR`] each); times are Unix seconds.

use std::fmt;
#[cfg(feature = "authority")]
use std::sync::Arc;

use paywire_core::BoxFuture;

use crate::money::Currency;

#[cfg(feature = "authority")]
pub mod postgres;
#[cfg(feature = "authority")]
pub mod sqlite;

/// A store failure. Texts never quote bank details, credentials or the
/// database URL's password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed.
    #[error("bank store: {0}")]
    Database(String),
    /// A stored row is not what this version wrote.
    #[error("bank store: corrupt row: {0}")]
    Corrupt(String),
}

impl From<paywire_store::StoreError> for StoreError {
    fn from(error: paywire_store::StoreError) -> Self {
        Self::Database(error.to_string())
    }
}

/// A store answer.
pub type StoreFuture<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

/// Whether a bundle may authorize.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleStatus {
    /// Authorizations allowed.
    Active,
    /// Frozen: `/authorize` answers `bundle_revoked`.
    Frozen,
}

/// A bundle as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// `bdl_` and 24 hex digits.
    pub id: String,
    /// Its currency.
    pub currency: Currency,
    /// Spendable credits.
    pub balance: u64,
    /// Bought credits not yet spendable (waiting for their collection).
    pub pending: u64,
    /// Credits reserved by open holds.
    pub held: u64,
    /// Active or frozen.
    pub status: BundleStatus,
    /// Why it was frozen (`returned_debit`, `principal`, ...).
    pub frozen_reason: Option<String>,
    /// Credits expire then, if ever.
    pub expires_at: Option<u64>,
    /// Created at.
    pub created_at: u64,
}

/// A new bundle with its first credential.
#[derive(Clone, PartialEq, Eq)]
pub struct NewBundle {
    /// Its id.
    pub id: String,
    /// Its currency.
    pub currency: Currency,
    /// SHA-256 of the bundle credential (the secret itself is never stored).
    pub credential_digest: [u8; 32],
    /// Credits expire then, if ever.
    pub expires_at: Option<u64>,
    /// Now.
    pub now: u64,
}

impl fmt::Debug for NewBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewBundle")
            .field("id", &self.id)
            .field("currency", &self.currency)
            .finish_non_exhaustive()
    }
}

/// One `/authorize`, with the attestation minted for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewHold {
    /// The bundle.
    pub bundle_id: String,
    /// The client's idempotency key.
    pub idempotency_key: String,
    /// SHA-256 over every parameter affecting the authorization (amount,
    /// asset, resource, audience): same key + other digest = conflict.
    pub params_digest: [u8; 32],
    /// The attestation's `jti`.
    pub jti: String,
    /// Authorized maximum.
    pub amount: u64,
    /// Its currency (must be the bundle's).
    pub currency: Currency,
    /// The attestation's `aud`.
    pub audience: String,
    /// The compact JWS returned to the client (and to every retry).
    pub attestation: String,
    /// Settlement window end.
    pub hold_exp: u64,
    /// Now.
    pub now: u64,
}

/// What [`AuthorityStore::authorize`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeOutcome {
    /// Decremented; the hold is open.
    Created,
    /// The key was already bound to identical parameters: nothing
    /// decremented, here is the first attestation.
    Replayed {
        /// The attestation minted by the first call.
        attestation: String,
    },
    /// The key was bound to other parameters: nothing decremented.
    Conflict,
    /// Not enough spendable credits: nothing decremented.
    Insufficient {
        /// The spendable balance seen.
        balance: u64,
    },
    /// No such bundle.
    NotFound,
    /// The bundle is frozen.
    Frozen,
    /// The bundle's currency is not the request's.
    CurrencyMismatch,
}

/// A hold's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldStatus {
    /// Reserved, not settled.
    Open,
    /// Settled (charged, possibly 0).
    Settled,
    /// Lapsed at `hold_exp`, released.
    Expired,
    /// Revoked, released.
    Revoked,
}

/// A hold (one attestation) as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// The `jti`.
    pub jti: String,
    /// Its bundle.
    pub bundle_id: String,
    /// Authorized maximum.
    pub amount: u64,
    /// Currency.
    pub currency: Currency,
    /// `aud`.
    pub audience: String,
    /// Settlement window end.
    pub hold_exp: u64,
    /// State.
    pub status: HoldStatus,
    /// The charge, once settled.
    pub charged: Option<u64>,
    /// Digest of the settle parameters that committed, once settled.
    pub settle_digest: Option<[u8; 32]>,
    /// Bundle balance right after the settlement committed.
    pub balance_after: Option<u64>,
    /// When it was settled.
    pub settled_at: Option<u64>,
}

/// One `/settle` of an attestation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettleCharge {
    /// The `jti`.
    pub jti: String,
    /// The actual charge (≤ the hold's amount; 0 releases everything).
    pub charge: u64,
    /// SHA-256 over the settle parameters (charge and requirements): an
    /// identical repeat has the same digest.
    pub params_digest: [u8; 32],
    /// Now.
    pub now: u64,
}

/// What [`AuthorityStore::settle`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettleOutcome {
    /// Committed now: charged, the rest re-credited.
    Settled(Hold),
    /// Already committed with the same digest: the same result.
    Repeated(Hold),
    /// Already committed with another digest: `settle_conflict`.
    Conflict,
    /// Past `hold_exp` (the hold is released if it was not yet).
    HoldExpired,
    /// Revoked.
    Revoked,
    /// The charge is above the hold.
    OverHold,
    /// No hold with this `jti`.
    Unknown,
}

/// A purchase of credits, charged to a mandate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPurchase {
    /// `pur_` and 24 hex digits; also the collection's end-to-end id.
    pub id: String,
    /// The bundle credited.
    pub bundle_id: String,
    /// The mandate to collect from.
    pub mandate_id: String,
    /// Credits granted.
    pub credits: u64,
    /// Price collected (what the debit file carries).
    pub price: u64,
    /// Currency of both.
    pub currency: Currency,
    /// Credits spendable at once (the operator's risk policy), the rest
    /// when [`AuthorityStore::mature_purchases`] passes `spendable_at`.
    pub spendable_now: u64,
    /// When the rest becomes spendable.
    pub spendable_at: u64,
    /// Now.
    pub now: u64,
}

/// A stored debit mandate. `details` is the rail's JSON (IBAN, BIC,
/// mandate reference and signature date, or routing number, account and
/// type): bank details, never logged; its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Mandate {
    /// `mdt_` and 24 hex digits.
    pub id: String,
    /// The bundle it funds.
    pub bundle_id: String,
    /// `sepa` or `ach`.
    pub rail: String,
    /// The rail's details (JSON text).
    pub details: String,
    /// Whether the principal allowed off-session top-ups.
    pub off_session: bool,
    /// Created at.
    pub created_at: u64,
}

impl fmt::Debug for Mandate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mandate")
            .field("id", &self.id)
            .field("bundle_id", &self.bundle_id)
            .field("rail", &self.rail)
            .finish_non_exhaustive()
    }
}

/// One purchase claimed into a collection file.
#[derive(Clone, PartialEq, Eq)]
pub struct CollectionEntry {
    /// The purchase id (the file's end-to-end id).
    pub purchase_id: String,
    /// Its bundle.
    pub bundle_id: String,
    /// Price to collect.
    pub price: u64,
    /// Currency.
    pub currency: Currency,
    /// The mandate (with its details).
    pub mandate: Mandate,
}

impl fmt::Debug for CollectionEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CollectionEntry")
            .field("purchase_id", &self.purchase_id)
            .field("price", &self.price)
            .finish_non_exhaustive()
    }
}

/// What [`AuthorityStore::record_return`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReturnOutcome {
    /// Recorded: the bundle is frozen and the unrecovered amount booked as
    /// the authority's loss.
    Recorded {
        /// The frozen bundle.
        bundle_id: String,
        /// Price not collected.
        returned: u64,
        /// Part of it already spent (authorized or charged) and so lost by
        /// the authority; the rest was taken back from the bundle.
        loss: u64,
    },
    /// This purchase's return was already recorded.
    AlreadyReturned,
    /// No collected purchase with this id.
    Unknown,
}

/// One settled charge claimed into a payout file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutCharge {
    /// The attestation `jti`.
    pub jti: String,
    /// The resource server (`aud`) paid.
    pub audience: String,
    /// The charge.
    pub charged: u64,
    /// Currency.
    pub currency: Currency,
    /// When it was settled.
    pub settled_at: u64,
}

/// The authority's ledger. Implementations: [`sqlite::SqliteAuthorityStore`]
/// and [`postgres::PgAuthorityStore`].
pub trait AuthorityStore: Send + Sync {
    /// Creates a bundle and binds its credential digest.
    fn create_bundle(&self, bundle: NewBundle) -> StoreFuture<'_, ()>;

    /// The bundle a credential digest opens, if any.
    fn bundle_by_credential(&self, digest: [u8; 32]) -> StoreFuture<'_, Option<Bundle>>;

    /// A bundle by id.
    fn bundle(&self, id: &str) -> StoreFuture<'_, Option<Bundle>>;

    /// Atomically: binds `(bundle, idempotency key)` to the hold's
    /// parameters and decrements the spendable balance by `amount` into a
    /// new open hold, or answers what stopped it. At most one decrement per
    /// key, whatever the concurrency and whatever the number of instances;
    /// key bindings are kept for ever (never reused as new).
    fn authorize(&self, hold: NewHold) -> StoreFuture<'_, AuthorizeOutcome>;

    /// A hold by `jti`.
    fn hold(&self, jti: &str) -> StoreFuture<'_, Option<Hold>>;

    /// Atomically settles a hold (see [`SettleOutcome`]): at most one
    /// terminal result per `jti`; an open hold past `hold_exp` is released
    /// and answered [`SettleOutcome::HoldExpired`].
    fn settle(&self, charge: SettleCharge) -> StoreFuture<'_, SettleOutcome>;

    /// Releases every open hold whose `hold_exp` is ≤ `now` back to its
    /// bundle; returns how many.
    fn release_expired(&self, now: u64) -> StoreFuture<'_, u64>;

    /// Revokes an open hold (released to its bundle). `false` when it is
    /// not open (settled holds are disputes, not revocations).
    fn revoke(&self, jti: &str, now: u64) -> StoreFuture<'_, bool>;

    /// Freezes a bundle with `reason`; `false` when unknown.
    fn freeze(&self, bundle_id: &str, reason: &str, now: u64) -> StoreFuture<'_, bool>;

    /// Stores a mandate.
    fn save_mandate(&self, mandate: Mandate) -> StoreFuture<'_, ()>;

    /// A mandate by id.
    fn mandate(&self, id: &str) -> StoreFuture<'_, Option<Mandate>>;

    /// Records a purchase and credits `spendable_now` at once, the rest as
    /// pending. Refused (`Ok(false)`) when the bundle is frozen or unknown.
    fn purchase(&self, purchase: NewPurchase) -> StoreFuture<'_, bool>;

    /// Makes pending credits of purchases with `spendable_at ≤ now` whose
    /// collection file was written ([`Self::collection_written`]: a debit
    /// never sent can never be returned, so its due date proves nothing)
    /// and that were not returned spendable; returns how many purchases
    /// matured.
    fn mature_purchases(&self, now: u64) -> StoreFuture<'_, u64>;

    /// Atomically claims every purchase of `rail` and `currency` not yet in
    /// a collection file into batch `batch_id` (each purchase in exactly
    /// one batch) and returns them.
    fn claim_collection(
        &self,
        batch_id: &str,
        rail: &str,
        currency: Currency,
        now: u64,
    ) -> StoreFuture<'_, Vec<CollectionEntry>>;

    /// Records that batch `batch_id`'s collection file was written (its
    /// debits went to the bank), and moves its purchases' maturity to no
    /// earlier than `spendable_at` (the policy's date counted from the
    /// collection, not from the purchase). Returns how many purchases it
    /// marked; a batch already marked is left as it is.
    fn collection_written(
        &self,
        batch_id: &str,
        spendable_at: u64,
        now: u64,
    ) -> StoreFuture<'_, u64>;

    /// Records that the bank returned purchase `purchase_id`'s debit:
    /// freezes its bundle, takes the uncollected credits back as far as
    /// they are unspent and books the rest as the authority's loss (never
    /// a seller's: their charges stay payable).
    ///
    /// Precisely: the bundle is frozen (reason `returned_debit`, unless it
    /// was frozen already); all the purchase's credits are owed back, first
    /// from the purchase's own credits still pending (not matured), then
    /// from the bundle's spendable balance; the part neither covers (credits
    /// already reserved by open holds or charged) is booked as the
    /// authority's loss in [`ReturnOutcome::Recorded::loss`] and
    /// [`AuthorityStore::losses`]. Only a purchase claimed into a collection
    /// file can be returned ([`ReturnOutcome::Unknown`] otherwise); a second
    /// return of it changes nothing ([`ReturnOutcome::AlreadyReturned`]).
    fn record_return(
        &self,
        purchase_id: &str,
        reason: &str,
        now: u64,
    ) -> StoreFuture<'_, ReturnOutcome>;

    /// Atomically claims every settled, unpaid charge above zero in
    /// `currency` settled at or before `cutoff` into payout batch
    /// `batch_id` (each charge in exactly one batch, ever) and returns them.
    fn claim_payout(
        &self,
        batch_id: &str,
        currency: Currency,
        cutoff: u64,
        now: u64,
    ) -> StoreFuture<'_, Vec<PayoutCharge>>;

    /// The authority's booked losses from returned debits, per currency.
    fn losses(&self) -> StoreFuture<'_, Vec<(Currency, u64)>>;
}

/// Opens the ledger at `location` (the facilitator's `ledger` setting) and
/// migrates it: `postgres://…` or `postgresql://…` is a PostgreSQL URL
/// ([`postgres::PgAuthorityStore`]), `:memory:` (or `memory`) an in-memory
/// SQLite database (tests), anything else an SQLite file path, optionally
/// written `sqlite://path` as in the facilitator's `store`
/// ([`sqlite::SqliteAuthorityStore`]). Another `scheme://` is refused.
/// Errors never quote the URL.
#[cfg(feature = "authority")]
pub async fn open(location: &str) -> Result<Arc<dyn AuthorityStore>, StoreError> {
    let location = location.trim();
    if location.starts_with("postgres://") || location.starts_with("postgresql://") {
        return Ok(Arc::new(
            postgres::PgAuthorityStore::connect(location).await?,
        ));
    }
    let path = location.strip_prefix("sqlite://").unwrap_or(location);
    if path == ":memory:" || path == "memory" {
        return Ok(Arc::new(
            sqlite::SqliteAuthorityStore::open_in_memory().await?,
        ));
    }
    if path.is_empty() {
        return Err(StoreError::Database("empty ledger location".into()));
    }
    if let Some((scheme, _)) = path.split_once("://") {
        let scheme: String = scheme.chars().take(16).collect();
        return Err(StoreError::Database(format!(
            "unsupported ledger URL scheme {scheme:?}: use an SQLite path or a postgres:// URL"
        )));
    }
    Ok(Arc::new(sqlite::SqliteAuthorityStore::open(path).await?))
}

// Shared by both backends: how values are spelled in the database.

/// A `u64` amount or time as the databases' signed 64-bit integer,
/// refusing anything over [`crate::money::MAX_MINOR`] (no amount is larger,
/// and Unix times are far smaller), so that sums never overflow.
#[cfg(feature = "authority")]
fn to_db(value: u64) -> Result<i64, StoreError> {
    if value > crate::money::MAX_MINOR {
        return Err(StoreError::Database("amount or time out of range".into()));
    }
    i64::try_from(value).map_err(|_| StoreError::Database("amount or time out of range".into()))
}

/// Refuses a request carrying an amount or time [`to_db`] refuses, before
/// anything is read: bad input is an error whatever the ledger's state.
#[cfg(feature = "authority")]
fn in_range(values: &[u64]) -> Result<(), StoreError> {
    values.iter().try_for_each(|&value| to_db(value).map(drop))
}

/// A stored non-negative integer back as `u64`.
#[cfg(feature = "authority")]
fn from_db(value: i64, column: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative {column}")))
}

/// An optional stored non-negative integer.
#[cfg(feature = "authority")]
fn from_db_opt(value: Option<i64>, column: &str) -> Result<Option<u64>, StoreError> {
    value.map(|v| from_db(v, column)).transpose()
}

/// An optional `u64` for the database.
#[cfg(feature = "authority")]
fn to_db_opt(value: Option<u64>) -> Result<Option<i64>, StoreError> {
    value.map(to_db).transpose()
}

/// A stored currency code.
#[cfg(feature = "authority")]
fn currency_from_db(code: &str) -> Result<Currency, StoreError> {
    Currency::from_code(code).map_err(|_| StoreError::Corrupt("unknown currency".into()))
}

/// A stored 32-byte digest.
#[cfg(feature = "authority")]
fn digest_from_db(bytes: &[u8]) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(bytes).map_err(|_| StoreError::Corrupt("digest length".into()))
}

#[cfg(feature = "authority")]
impl BundleStatus {
    fn from_db(text: &str) -> Result<Self, StoreError> {
        match text {
            "active" => Ok(Self::Active),
            "frozen" => Ok(Self::Frozen),
            _ => Err(StoreError::Corrupt("bundle status".into())),
        }
    }
}

#[cfg(feature = "authority")]
impl HoldStatus {
    fn as_db(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Settled => "settled",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }

    fn from_db(text: &str) -> Result<Self, StoreError> {
        match text {
            "open" => Ok(Self::Open),
            "settled" => Ok(Self::Settled),
            "expired" => Ok(Self::Expired),
            "revoked" => Ok(Self::Revoked),
            _ => Err(StoreError::Corrupt("hold status".into())),
        }
    }
}

/// The reason a bundle is frozen with when one of its debits comes back.
#[cfg(feature = "authority")]
const RETURNED_DEBIT: &str = "returned_debit";

/// How a returned purchase's credits are taken back (see
/// [`AuthorityStore::record_return`]): all `credits` of the purchase are
/// owed back. They come first from the purchase's own still-pending credits
/// (`purchase_pending`, never more than the bundle's `pending`), then from
/// the bundle's spendable `balance`. Whatever cannot be taken back was
/// already held by an open hold or charged to a seller: it is the
/// authority's loss (sellers keep their charges). Returns
/// `(from_pending, from_balance, loss)`, summing to `credits`.
#[cfg(feature = "authority")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TakeBack {
    from_pending: u64,
    from_balance: u64,
    loss: u64,
}

#[cfg(feature = "authority")]
fn take_back(credits: u64, purchase_pending: u64, bundle_pending: u64, balance: u64) -> TakeBack {
    let from_pending = credits.min(purchase_pending).min(bundle_pending);
    let from_balance = (credits - from_pending).min(balance);
    TakeBack {
        from_pending,
        from_balance,
        loss: credits - from_pending - from_balance,
    }
}

/// Bounded retries of a PostgreSQL transaction that lost a race
/// (serialization failure, deadlock, a unique key taken concurrently).
#[cfg(feature = "authority")]
const RETRIES: u32 = 8;
