//! The settlement ledger: one row per settlement attempt key (fingerprint).
//! It records which caller was told each outcome (so a replay can be
//! refused and an idempotent retry answered without touching the chain),
//! binds `payment-identifier` ids to the first payload seen and
//! transactions to the one payload they pay for, and keeps an audit trail
//! (states `received → submitted → confirmed | failed | pending`) that
//! recovery jobs can scan with [`Ledger::unresolved`].
//!
//! [`Ledger`] is a cheap handle on a [`LedgerStore`]: [`SqliteStore`] (the
//! default, one file) or [`PostgresStore`] (several facilitator instances
//! sharing one database; its [`LedgerStore::lock`] takes a Postgres advisory
//! lock so that a settlement is run by one process at a time).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use paywire_core::{FacilitatorRequest, PaymentRequirements, SettleResponse};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use crate::postgres::PostgresStore;
pub use crate::sqlite::SqliteStore;
pub use crate::store::{
    Delivery, HeldLock, LedgerError, LedgerStore, PaymentIdClaim, PoolStatus, SettlementRecord,
    SettlementState, StoreFuture, StoreLock,
};

/// SHA-256 (hex) of the canonical JSON (keys sorted, no whitespace) of the
/// scheme payload and the requirements: identical payments map to the same
/// key however their JSON members were ordered.
pub fn fingerprint(
    payload: &paywire_core::JsonObject,
    requirements: &PaymentRequirements,
) -> String {
    let mut text = String::new();
    text.push_str("{\"payload\":");
    canonical(&Value::Object(payload.clone()), &mut text);
    text.push_str(",\"requirements\":");
    // Serialising our own wire type cannot fail (string keys only).
    let requirements = serde_json::to_value(requirements).unwrap_or(Value::Null);
    canonical(&requirements, &mut text);
    text.push('}');
    let digest = Sha256::digest(text.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (n, key) in keys.into_iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(item) = map.get(key) {
                    canonical(item, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The settlement ledger: a cheap handle on a [`LedgerStore`].
#[derive(Clone)]
pub struct Ledger {
    store: Arc<dyn LedgerStore>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("store", &self.store.kind())
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// A ledger on any store.
    pub fn from_store(store: Arc<dyn LedgerStore>) -> Self {
        Self { store }
    }

    /// Opens (creating if needed) a SQLite database file and applies migrations.
    pub async fn open(path: &Path) -> Result<Self, LedgerError> {
        Ok(Self::from_store(Arc::new(SqliteStore::open(path).await?)))
    }

    /// An in-memory SQLite ledger (tests, ephemeral deployments).
    pub async fn in_memory() -> Result<Self, LedgerError> {
        Ok(Self::from_store(Arc::new(SqliteStore::in_memory().await?)))
    }

    /// Connects to a PostgreSQL database (`postgres://user@host:port/db`,
    /// with paywire-store's `sslmode`, `sslrootcert` and pool parameters)
    /// and applies migrations.
    pub async fn connect_postgres(url: &str) -> Result<Self, LedgerError> {
        Ok(Self::from_store(Arc::new(
            PostgresStore::connect(url).await?,
        )))
    }

    /// The backend's short name (`sqlite`, `postgres`).
    pub fn kind(&self) -> &'static str {
        self.store.kind()
    }

    /// The record for `fingerprint`, if any.
    pub async fn get(&self, fingerprint: &str) -> Result<Option<SettlementRecord>, LedgerError> {
        self.store.get(fingerprint).await
    }

    /// Records that do not have a final outcome (`received`, `submitted`,
    /// `pending`): the work list of a recovery job.
    pub async fn unresolved(&self) -> Result<Vec<SettlementRecord>, LedgerError> {
        self.store.unresolved().await
    }

    /// How many records are in each state (`None`: the store cannot count
    /// cheaply); see [`LedgerStore::state_counts`].
    pub async fn state_counts(&self) -> Result<Option<Vec<(SettlementState, u64)>>, LedgerError> {
        self.store.state_counts().await
    }

    /// The use of the store's connection pool, if it has one.
    pub fn pool_status(&self) -> Option<PoolStatus> {
        self.store.pool_status()
    }

    /// The record whose transaction hash is `transaction`, if any: the one
    /// the transaction is claimed by when several name it (a re-spelled
    /// payload refused as a replay keeps the transaction it was refused for).
    pub async fn find_by_transaction(
        &self,
        transaction: &str,
    ) -> Result<Option<SettlementRecord>, LedgerError> {
        self.store.find_by_transaction(transaction).await
    }

    /// The fingerprint `id` is bound to, if any.
    pub async fn payment_id_binding(&self, id: &str) -> Result<Option<String>, LedgerError> {
        self.store.payment_id_binding(id).await
    }

    /// Binds `id` to `fingerprint` unless it is already bound (atomically).
    pub async fn claim_payment_id(
        &self,
        id: &str,
        fingerprint: &str,
    ) -> Result<PaymentIdClaim, LedgerError> {
        self.store.claim_payment_id(id, fingerprint).await
    }

    /// Records (or re-records) that the scheme is about to be called, with
    /// the request (so that recovery can re-run it). A row already
    /// `submitted` or `pending` keeps that state: a transaction may be out.
    pub async fn mark_received(
        &self,
        fingerprint: &str,
        request: &FacilitatorRequest,
        payment_id: Option<&str>,
    ) -> Result<(), LedgerError> {
        self.store
            .mark_received(fingerprint, request, payment_id)
            .await
    }

    /// Records that transaction `transaction` is about to be broadcast for
    /// `fingerprint` (state `submitted`). Written before the broadcast: if
    /// this fails, nothing is sent.
    pub async fn mark_submitted(
        &self,
        fingerprint: &str,
        transaction: &str,
    ) -> Result<(), LedgerError> {
        self.store.mark_submitted(fingerprint, transaction).await
    }

    /// Stores the scheme's answer and the state it implies.
    pub async fn record_outcome(
        &self,
        fingerprint: &str,
        response: &SettleResponse,
    ) -> Result<SettlementState, LedgerError> {
        self.store.record_outcome(fingerprint, response).await
    }

    /// Stores an infrastructure error; the record stays `received` so that a
    /// retry calls the scheme again (on-chain idempotency makes that safe).
    pub async fn record_error(&self, fingerprint: &str, error: &str) -> Result<(), LedgerError> {
        self.store.record_error(fingerprint, error).await
    }

    /// Records that `delivery` (a caller, the state it was told) received
    /// an answer for `fingerprint`: the replay rules key on it.
    pub async fn mark_delivered(
        &self,
        fingerprint: &str,
        delivery: &Delivery,
    ) -> Result<(), LedgerError> {
        self.store.mark_delivered(fingerprint, delivery).await
    }

    /// Binds `transaction` to `fingerprint` unless it is already bound
    /// (atomically, across processes sharing the store): one on-chain payment
    /// answers success to one payload only, however it was re-spelled. A
    /// transaction this facilitator sends is claimed before its broadcast;
    /// one found on chain (sent by someone else) when an answer first names it.
    pub async fn claim_transaction(
        &self,
        transaction: &str,
        fingerprint: &str,
    ) -> Result<PaymentIdClaim, LedgerError> {
        self.store.claim_transaction(transaction, fingerprint).await
    }

    /// Claims `transaction` for `fingerprint` and, when the claim holds,
    /// records the settlement `submitted` with it: what
    /// [`Self::claim_transaction`] then [`Self::mark_submitted`] do, in one
    /// store call, right before a broadcast. A conflicting claim changes
    /// nothing and is answered as such.
    pub async fn claim_and_mark_submitted(
        &self,
        transaction: &str,
        fingerprint: &str,
    ) -> Result<PaymentIdClaim, LedgerError> {
        self.store
            .claim_and_mark_submitted(transaction, fingerprint)
            .await
    }

    /// Takes the store-wide lock of the settlements keyed `key` (see
    /// [`LedgerStore::lock`]).
    pub async fn lock(&self, key: &str) -> Result<StoreLock, LedgerError> {
        self.store.lock(key).await
    }

    /// Deletes the settlements that failed before any transaction was sent
    /// (no transaction hash recorded, never answered success) and last
    /// changed before unix time `before`, with their payment-identifier
    /// bindings, and the bindings that never got a settlement among those
    /// created between the previous run's `before` (a cursor kept in the
    /// store) and this one's, so that no run visits every old binding.
    /// Returns how many settlements were deleted.
    ///
    /// Nothing the replay guard needs goes: a refusal before sending may be
    /// retried anyway, and every row that names a transaction (confirmed,
    /// reverted, pending, submitted) and every transaction claim is kept.
    pub async fn purge_unsent_failures(&self, before: u64) -> Result<u64, LedgerError> {
        let before = i64::try_from(before).unwrap_or(i64::MAX);
        self.store.purge_unsent_failures(before).await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::now;
    use paywire_core::{ChainId, ErrorReason};
    use serde_json::json;

    pub(crate) fn requirements() -> PaymentRequirements {
        serde_json::from_value(json!({
            "scheme": "exact", "network": "eip155:1", "amount": "1", "asset": "0xa",
            "payTo": "0xb", "maxTimeoutSeconds": 5
        }))
        .expect("valid requirements")
    }

    pub(crate) fn request() -> FacilitatorRequest {
        serde_json::from_value(json!({
            "x402Version": 2,
            "paymentPayload": {
                "x402Version": 2,
                "payload": {"signature": "0x01"},
                "accepted": serde_json::to_value(requirements()).unwrap_or_default(),
            },
            "paymentRequirements": serde_json::to_value(requirements()).unwrap_or_default(),
        }))
        .expect("valid request")
    }

    #[test]
    fn fingerprint_ignores_member_order() {
        let a: paywire_core::JsonObject =
            serde_json::from_value(json!({"x": 1, "y": {"b": [1, 2], "a": "s"}})).expect("obj");
        let b: paywire_core::JsonObject =
            serde_json::from_value(json!({"y": {"a": "s", "b": [1, 2]}, "x": 1})).expect("obj");
        let c: paywire_core::JsonObject =
            serde_json::from_value(json!({"y": {"a": "s", "b": [2, 1]}, "x": 1})).expect("obj");
        assert_eq!(
            fingerprint(&a, &requirements()),
            fingerprint(&b, &requirements())
        );
        assert_ne!(
            fingerprint(&a, &requirements()),
            fingerprint(&c, &requirements())
        );
        assert_eq!(fingerprint(&a, &requirements()).len(), 64);
    }

    #[tokio::test]
    async fn state_machine_and_payment_ids() -> Result<(), LedgerError> {
        state_machine_checks(&Ledger::in_memory().await?).await
    }

    /// The store-independent checks (also run against Postgres). Each step
    /// starts from the rows the previous ones left.
    pub(crate) async fn state_machine_checks(ledger: &Ledger) -> Result<(), LedgerError> {
        received_then_submitted(ledger).await?;
        outcomes_recorded(ledger).await?;
        payment_id_bound_once(ledger).await?;
        delivery_recorded(ledger).await?;
        transaction_claimed_once(ledger).await?;
        claimed_and_submitted_together(ledger).await?;
        failure_keeps_its_transaction(ledger).await
    }

    async fn claimed_and_submitted_together(ledger: &Ledger) -> Result<(), LedgerError> {
        ledger.mark_received("cs1", &request(), None).await?;
        ledger.mark_received("cs2", &request(), None).await?;
        assert_eq!(
            ledger.claim_and_mark_submitted("0xcs", "cs1").await?,
            PaymentIdClaim::Bound
        );
        let record = stored_record(ledger, "cs1").await?;
        assert_eq!(record.state, SettlementState::Submitted);
        assert_eq!(record.transaction.as_deref(), Some("0xcs"));
        // Another payload naming the same transaction: refused, unchanged.
        assert_eq!(
            ledger.claim_and_mark_submitted("0xcs", "cs2").await?,
            PaymentIdClaim::Conflict {
                fingerprint: "cs1".into()
            }
        );
        let other = stored_record(ledger, "cs2").await?;
        assert_eq!(other.state, SettlementState::Received);
        assert_eq!(other.transaction, None);
        // The same broadcast again (a re-sign after a restart): still bound.
        assert_eq!(
            ledger.claim_and_mark_submitted("0xcs", "cs1").await?,
            PaymentIdClaim::Bound
        );
        // No settlement to mark: an error, nothing claimed.
        assert!(
            ledger
                .claim_and_mark_submitted("0xnone", "unknown")
                .await
                .is_err()
        );
        assert_eq!(
            ledger.claim_transaction("0xnone", "cs2").await?,
            PaymentIdClaim::Bound
        );
        Ok(())
    }

    async fn stored_record(
        ledger: &Ledger,
        fingerprint: &str,
    ) -> Result<SettlementRecord, LedgerError> {
        ledger
            .get(fingerprint)
            .await?
            .ok_or(LedgerError::Task("missing".into()))
    }

    fn eip155_1() -> ChainId {
        ChainId::parse("eip155:1").unwrap()
    }

    async fn received_then_submitted(ledger: &Ledger) -> Result<(), LedgerError> {
        assert!(ledger.get("f1").await?.is_none());
        ledger.mark_received("f1", &request(), Some("id")).await?;
        let record = stored_record(ledger, "f1").await?;
        assert_eq!(record.state, SettlementState::Received);
        assert_eq!(record.network, "eip155:1");
        assert_eq!(record.request, Some(request()));
        assert_eq!(ledger.unresolved().await?.len(), 1);

        ledger.mark_submitted("f1", "0x1").await?;
        // A retry does not forget that a transaction may be out.
        ledger.mark_received("f1", &request(), None).await?;
        let record = stored_record(ledger, "f1").await?;
        assert_eq!(record.state, SettlementState::Submitted);
        assert_eq!(record.transaction.as_deref(), Some("0x1"));
        assert!(ledger.mark_submitted("nope", "0x2").await.is_err());
        Ok(())
    }

    async fn outcomes_recorded(ledger: &Ledger) -> Result<(), LedgerError> {
        let pending =
            SettleResponse::failed(eip155_1(), ErrorReason::TRANSACTION_PENDING, None, "0x1");
        assert_eq!(
            ledger.record_outcome("f1", &pending).await?,
            SettlementState::Pending
        );
        let settled = SettleResponse::settled(eip155_1(), "0x1", None);
        ledger.mark_received("f1", &request(), None).await?;
        assert_eq!(
            ledger.record_outcome("f1", &settled).await?,
            SettlementState::Confirmed
        );
        let record = stored_record(ledger, "f1").await?;
        assert_eq!(record.attempts, 3);
        assert_eq!(record.payment_id.as_deref(), Some("id"));
        assert_eq!(record.transaction.as_deref(), Some("0x1"));
        assert_eq!(record.response, Some(settled));
        // Nobody has been told yet.
        assert_eq!(record.delivery, None);
        assert!(ledger.unresolved().await?.is_empty());
        Ok(())
    }

    async fn payment_id_bound_once(ledger: &Ledger) -> Result<(), LedgerError> {
        assert_eq!(
            ledger.claim_payment_id("id", "f1").await?,
            PaymentIdClaim::Bound
        );
        assert_eq!(
            ledger.claim_payment_id("id", "f1").await?,
            PaymentIdClaim::Bound
        );
        assert_eq!(
            ledger.claim_payment_id("id", "f2").await?,
            PaymentIdClaim::Conflict {
                fingerprint: "f1".into()
            }
        );
        assert_eq!(
            ledger.payment_id_binding("id").await?.as_deref(),
            Some("f1")
        );
        assert_eq!(
            ledger
                .find_by_transaction("0x1")
                .await?
                .map(|r| r.fingerprint),
            Some("f1".to_owned())
        );
        assert!(ledger.find_by_transaction("0x2").await?.is_none());
        Ok(())
    }

    /// Who was told what.
    async fn delivery_recorded(ledger: &Ledger) -> Result<(), LedgerError> {
        let delivery = Delivery {
            state: SettlementState::Confirmed,
            caller: Some("shop-a".into()),
            payment_id: Some("id".into()),
            at: 1234,
        };
        ledger.mark_delivered("f1", &delivery).await?;
        assert_eq!(stored_record(ledger, "f1").await?.delivery, Some(delivery));
        Ok(())
    }

    /// One settled transaction, one payload.
    async fn transaction_claimed_once(ledger: &Ledger) -> Result<(), LedgerError> {
        assert_eq!(
            ledger.claim_transaction("0x1", "f1").await?,
            PaymentIdClaim::Bound
        );
        assert_eq!(
            ledger.claim_transaction("0x1", "f1").await?,
            PaymentIdClaim::Bound
        );
        assert_eq!(
            ledger.claim_transaction("0x1", "f2").await?,
            PaymentIdClaim::Conflict {
                fingerprint: "f1".into()
            }
        );
        // Another payload refused for that transaction names it too; the
        // transaction still leads to the payload that claimed it.
        ledger.mark_received("f2", &request(), None).await?;
        let refused = SettleResponse::failed(
            eip155_1(),
            ErrorReason::from_static("invalid_exact_evm_nonce_already_used"),
            None,
            "0x1",
        );
        ledger.record_outcome("f2", &refused).await?;
        assert_eq!(
            ledger
                .find_by_transaction("0x1")
                .await?
                .map(|r| r.fingerprint),
            Some("f1".to_owned())
        );
        Ok(())
    }

    /// A failure keeps the transaction it names in the ledger (it makes the
    /// failure final), though the wire never carries it.
    async fn failure_keeps_its_transaction(ledger: &Ledger) -> Result<(), LedgerError> {
        let reverted = SettleResponse::failed(
            eip155_1(),
            ErrorReason::INVALID_TRANSACTION_STATE,
            None,
            "0x3",
        );
        ledger.mark_received("f3", &request(), None).await?;
        ledger.record_outcome("f3", &reverted).await?;
        let record = stored_record(ledger, "f3").await?;
        assert_eq!(record.response.map(|r| r.transaction), Some("0x3".into()));
        Ok(())
    }

    #[tokio::test]
    async fn purge_deletes_only_old_unsent_failures() -> Result<(), LedgerError> {
        purge_checks(&Ledger::in_memory().await?).await
    }

    /// What the retention purge deletes and keeps (also run against Postgres).
    pub(crate) async fn purge_checks(ledger: &Ledger) -> Result<(), LedgerError> {
        let network = ChainId::parse("eip155:1").unwrap();
        let refused =
            SettleResponse::failed(network.clone(), ErrorReason::INSUFFICIENT_FUNDS, None, "");
        let reverted = SettleResponse::failed(
            network.clone(),
            ErrorReason::INVALID_TRANSACTION_STATE,
            None,
            "0xr",
        );
        let settled = SettleResponse::settled(network.clone(), "0xs", None);
        let pending =
            SettleResponse::failed(network, ErrorReason::TRANSACTION_PENDING, None, "0xp");
        for (key, outcome) in [
            ("unsent", Some(&refused)),
            ("reverted", Some(&reverted)),
            ("settled", Some(&settled)),
            ("pending", Some(&pending)),
            ("received", None),
        ] {
            ledger
                .mark_received(key, &request(), Some(&format!("pay_id_of_{key}_0000")))
                .await?;
            if let Some(outcome) = outcome {
                ledger.record_outcome(key, outcome).await?;
            }
            ledger
                .claim_payment_id(&format!("pay_id_of_{key}_0000"), key)
                .await?;
        }
        // Refused, then retried and settled: it names a transaction.
        ledger.mark_received("retried", &request(), None).await?;
        ledger.record_outcome("retried", &refused).await?;
        ledger.mark_submitted("retried", "0xt").await?;
        ledger.record_outcome("retried", &refused).await?;
        ledger
            .claim_payment_id("pay_orphan_00000000", "never-written")
            .await?;
        ledger.claim_transaction("0xs", "settled").await?;

        // Nothing is old enough yet.
        let now = u64::try_from(now()).unwrap_or(0);
        assert_eq!(
            ledger.purge_unsent_failures(now.saturating_sub(60)).await?,
            0
        );
        assert!(ledger.get("unsent").await?.is_some());
        // Everything is, from an hour on.
        assert_eq!(ledger.purge_unsent_failures(now + 3600).await?, 1);
        assert!(ledger.get("unsent").await?.is_none());
        assert_eq!(
            ledger.payment_id_binding("pay_id_of_unsent_0000").await?,
            None
        );
        assert_eq!(
            ledger.payment_id_binding("pay_orphan_00000000").await?,
            None
        );
        for kept in ["reverted", "settled", "pending", "received"] {
            assert!(ledger.get(kept).await?.is_some(), "{kept} was purged");
            let id = format!("pay_id_of_{kept}_0000");
            assert_eq!(ledger.payment_id_binding(&id).await?.as_deref(), Some(kept));
        }
        assert!(ledger.get("retried").await?.is_some(), "retried was purged");
        assert_eq!(
            ledger.claim_transaction("0xs", "other").await?,
            PaymentIdClaim::Conflict {
                fingerprint: "settled".into()
            }
        );
        assert_eq!(ledger.purge_unsent_failures(now + 3600).await?, 0);

        // Later runs look for never-settled bindings only among those
        // created since the last run's cutoff (the cursor, now + 3600): one
        // created behind it (a clock set back) is never looked at; it only
        // takes space...
        ledger
            .claim_payment_id("pay_late_orphan_000", "never-written-either")
            .await?;
        // ...while a purged settlement's bindings go with it, however old.
        ledger
            .mark_received("unsent-later", &request(), Some("pay_id_unsent_later"))
            .await?;
        ledger.record_outcome("unsent-later", &refused).await?;
        ledger
            .claim_payment_id("pay_id_unsent_later", "unsent-later")
            .await?;
        assert_eq!(ledger.purge_unsent_failures(now + 7200).await?, 1);
        assert_eq!(
            ledger.payment_id_binding("pay_id_unsent_later").await?,
            None
        );
        assert_eq!(
            ledger
                .payment_id_binding("pay_late_orphan_000")
                .await?
                .as_deref(),
            Some("never-written-either")
        );
        Ok(())
    }
}
