//! A made-up chain family, `toy`, as a paywire plugin: the proof that a new
//! chain (or rail) is one crate plus one registration line.
//!
//! The "chain" is an in-memory ledger of accounts shared by the parties of a
//! test. A payment is a note `{from, to, amount, nonce, signature}` signed
//! with the payer's secret (`signature = sha256(secret ‖ from ‖ to ‖ amount ‖
//! nonce)`, a stand-in for a real signature scheme: the ledger knows every
//! account's secret). Settling applies the note once: the nonce is then used.
//! Nothing here is an edit to the core, the facilitator, the server, the
//! gateway or the client; they learn about `toy` from [`ToyPlugin`] alone.
#![forbid(unsafe_code)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use paywire_core::{
    AssetInfo, AtomicAmount, BoxFuture, ChainId, ChainIdPattern, ChainPlugin, ChainProbe,
    ErrorReason, FacilitatorConfig, FacilitatorParts, JsonObject, NetworkClass, NetworkInfo,
    PaymentPayload, PaymentRequirements, PluginError, Price, Registration, RequirementsRequest,
    SchemeClient, SchemeError, SchemeFacilitator, SchemeServer, ServerAsset, ServerConfig,
    ServerParts, SettleResponse, SignerBalance, U256, VerifyResponse, WalletConfig, WalletParts,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The namespace.
pub const NAMESPACE: &str = "toy";
/// The one network: `toy:ledger`, named `toy-ledger`.
pub const NETWORK: &str = "toy:ledger";
/// Its friendly name.
pub const NETWORK_NAME: &str = "toy-ledger";
/// The asset every price is in (two decimals).
pub const ASSET: &str = "TOY";
/// The scheme.
pub const SCHEME: &str = "exact";

/// A note whose amount differs from the requirement.
pub const AMOUNT_MISMATCH: ErrorReason = ErrorReason::from_static("invalid_toy_amount_mismatch");
/// A note paying someone else than `payTo`.
pub const RECIPIENT_MISMATCH: ErrorReason =
    ErrorReason::from_static("invalid_toy_recipient_mismatch");
/// A note whose signature is not the payer's.
pub const BAD_SIGNATURE: ErrorReason = ErrorReason::from_static("invalid_toy_signature");
/// A note whose nonce was already used.
pub const NONCE_USED: ErrorReason = ErrorReason::from_static("invalid_toy_nonce_used");

fn network() -> ChainId {
    ChainId::parse(NETWORK).unwrap_or_else(|_| unreachable!("a valid CAIP-2 constant"))
}

#[derive(Debug, Default)]
struct LedgerState {
    secrets: HashMap<String, String>,
    balances: HashMap<String, u128>,
    used: HashSet<(String, String)>,
    transactions: u64,
}

/// The shared ledger: accounts, their secrets and balances, used nonces.
#[derive(Debug, Clone, Default)]
pub struct ToyLedger(Arc<Mutex<LedgerState>>);

impl ToyLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LedgerState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens `account` with `secret` and `balance` (in cents of TOY).
    pub fn open(&self, account: &str, secret: &str, balance: u128) {
        let mut state = self.state();
        state.secrets.insert(account.into(), secret.into());
        state.balances.insert(account.into(), balance);
    }

    /// The balance of `account`.
    pub fn balance(&self, account: &str) -> u128 {
        self.state().balances.get(account).copied().unwrap_or(0)
    }

    /// How many transfers were applied.
    pub fn transactions(&self) -> u64 {
        self.state().transactions
    }
}

/// A signed note, as carried in `PaymentPayload.payload`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
struct Note {
    from: String,
    to: String,
    amount: String,
    nonce: String,
    signature: String,
}

fn sign(secret: &str, from: &str, to: &str, amount: &str, nonce: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [secret, from, to, amount, nonce] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Why a note cannot be paid, or `Ok` with its payer.
fn judge(
    ledger: &LedgerState,
    note: &Note,
    requirements: &PaymentRequirements,
) -> Result<(), ErrorReason> {
    let expected = ledger
        .secrets
        .get(&note.from)
        .map(|secret| sign(secret, &note.from, &note.to, &note.amount, &note.nonce));
    if expected.as_deref() != Some(note.signature.as_str()) {
        return Err(BAD_SIGNATURE);
    }
    if note.to != requirements.pay_to {
        return Err(RECIPIENT_MISMATCH);
    }
    if note.amount != requirements.amount.to_string() {
        return Err(AMOUNT_MISMATCH);
    }
    if ledger
        .used
        .contains(&(note.from.clone(), note.nonce.clone()))
    {
        return Err(NONCE_USED);
    }
    let amount: u128 = note
        .amount
        .parse()
        .map_err(|_| ErrorReason::INVALID_PAYLOAD)?;
    if ledger.balances.get(&note.from).copied().unwrap_or(0) < amount {
        return Err(ErrorReason::INSUFFICIENT_FUNDS);
    }
    Ok(())
}

fn read_note(payload: &PaymentPayload) -> Option<Note> {
    serde_json::from_value(serde_json::Value::Object(payload.payload.clone())).ok()
}

/// The `exact` scheme on the toy ledger: server, facilitator and client.
#[derive(Debug, Clone)]
pub struct ToyScheme {
    ledger: ToyLedger,
}

impl SchemeServer for ToyScheme {
    fn scheme(&self) -> &str {
        SCHEME
    }

    fn requirements(
        &self,
        request: &RequirementsRequest<'_>,
    ) -> Result<PaymentRequirements, SchemeError> {
        let amount = match request.price {
            Price::Money(money) => money
                .to_atomic(2)
                .map_err(|e| SchemeError::InvalidRequirements(e.to_string()))?,
            Price::Atomic { amount, asset, .. } if asset == ASSET => *amount,
            Price::Atomic { asset, .. } => {
                return Err(SchemeError::InvalidRequirements(format!(
                    "the toy ledger has no asset {asset:?}"
                )));
            }
            other => {
                return Err(SchemeError::Unsupported(format!(
                    "the toy chain cannot price {other:?}"
                )));
            }
        };
        Ok(PaymentRequirements {
            scheme: SCHEME.into(),
            network: request.network.clone(),
            amount,
            asset: ASSET.into(),
            pay_to: request.pay_to.into(),
            max_timeout_seconds: request.max_timeout_seconds,
            extra: None,
        })
    }

    fn refusal_proves_unchargeable(&self, reason: &ErrorReason) -> bool {
        *reason == AMOUNT_MISMATCH || *reason == RECIPIENT_MISMATCH
    }

    fn refusal_means_spent(&self, reason: &ErrorReason) -> bool {
        *reason == NONCE_USED
    }
}

impl SchemeFacilitator for ToyScheme {
    fn scheme(&self) -> &str {
        SCHEME
    }

    fn networks(&self) -> Vec<ChainId> {
        vec![network()]
    }

    fn signers(&self, _network: &ChainId) -> Vec<String> {
        vec!["toy-operator".into()]
    }

    fn verify<'a>(
        &'a self,
        payload: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<VerifyResponse, SchemeError>> {
        Box::pin(async move {
            let Some(note) = read_note(payload) else {
                return Ok(VerifyResponse::invalid(ErrorReason::INVALID_PAYLOAD, None));
            };
            let verdict = judge(&self.ledger.state(), &note, requirements);
            Ok(match verdict {
                Ok(()) => VerifyResponse::valid(note.from),
                Err(reason) => VerifyResponse::invalid(reason, None),
            })
        })
    }

    fn settle<'a>(
        &'a self,
        payload: &'a PaymentPayload,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<SettleResponse, SchemeError>> {
        Box::pin(async move {
            let network = requirements.network.clone();
            let Some(note) = read_note(payload) else {
                return Ok(SettleResponse::failed(
                    network,
                    ErrorReason::INVALID_PAYLOAD,
                    None,
                    "",
                ));
            };
            let mut ledger = self.ledger.state();
            if let Err(reason) = judge(&ledger, &note, requirements) {
                return Ok(SettleResponse::failed(network, reason, None, ""));
            }
            let amount: u128 = note.amount.parse().unwrap_or(0);
            *ledger.balances.entry(note.from.clone()).or_default() -= amount;
            *ledger.balances.entry(note.to.clone()).or_default() += amount;
            ledger.used.insert((note.from.clone(), note.nonce.clone()));
            ledger.transactions += 1;
            let transaction = format!("toy-tx-{}", ledger.transactions);
            let mut response = SettleResponse::settled(network, transaction, Some(note.from));
            response.amount = Some(requirements.amount);
            Ok(response)
        })
    }

    fn replay_reason(&self) -> ErrorReason {
        NONCE_USED
    }

    fn spend_key(
        &self,
        payload: &PaymentPayload,
        _requirements: &PaymentRequirements,
    ) -> Option<String> {
        read_note(payload).map(|note| format!("toy:{}:{}", note.from, note.nonce))
    }
}

/// A payer on the toy ledger.
#[derive(Debug)]
pub struct ToyWallet {
    account: String,
    secret: String,
    nonces: Mutex<u64>,
}

impl SchemeClient for ToyWallet {
    fn scheme(&self) -> &str {
        SCHEME
    }

    fn payer(&self, network: &ChainId) -> Option<String> {
        (network.namespace() == NAMESPACE).then(|| self.account.clone())
    }

    fn create_payload<'a>(
        &'a self,
        requirements: &'a PaymentRequirements,
    ) -> BoxFuture<'a, Result<JsonObject, SchemeError>> {
        Box::pin(async move {
            let nonce = {
                let mut next = self.nonces.lock().unwrap_or_else(PoisonError::into_inner);
                *next += 1;
                format!("n{next}")
            };
            let amount = requirements.amount.to_string();
            let note = Note {
                signature: sign(
                    &self.secret,
                    &self.account,
                    &requirements.pay_to,
                    &amount,
                    &nonce,
                ),
                from: self.account.clone(),
                to: requirements.pay_to.clone(),
                amount,
                nonce,
            };
            match serde_json::to_value(note) {
                Ok(serde_json::Value::Object(object)) => Ok(object),
                _ => Err(SchemeError::Signing("note did not serialize".into())),
            }
        })
    }
}

/// `/ready` and balances of the toy ledger.
#[derive(Debug)]
struct ToyProbe {
    network: ChainId,
    ledger: ToyLedger,
}

impl ChainProbe for ToyProbe {
    fn network(&self) -> &ChainId {
        &self.network
    }

    fn ready(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }

    fn signer_balances(&self) -> BoxFuture<'_, Vec<SignerBalance>> {
        Box::pin(async move {
            let balance = self.ledger.balance("toy-operator");
            vec![SignerBalance::new("toy-operator", U256::from(balance))]
        })
    }

    fn balance_unit(&self) -> &'static str {
        "toycent"
    }
}

/// A facilitator's `[[chains]]` entry for the toy ledger.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChainEntry {
    #[allow(dead_code)]
    network: String,
    /// The facilitator's operator account (receives nothing; for `/metrics`).
    #[allow(dead_code)]
    operator: String,
}

/// The `toy` chain family as a plugin. Register it with
/// `registry.register(Arc::new(ToyPlugin::new(ledger)))`.
#[derive(Debug, Clone)]
pub struct ToyPlugin {
    ledger: ToyLedger,
}

impl ToyPlugin {
    /// The plugin over `ledger`.
    pub fn new(ledger: ToyLedger) -> Self {
        Self { ledger }
    }

    fn scheme(&self) -> Arc<ToyScheme> {
        Arc::new(ToyScheme {
            ledger: self.ledger.clone(),
        })
    }
}

fn all_toy() -> Result<ChainIdPattern, PluginError> {
    ChainIdPattern::namespace(NAMESPACE).map_err(PluginError::from)
}

impl ChainPlugin for ToyPlugin {
    fn namespace(&self) -> &str {
        NAMESPACE
    }

    fn networks(&self) -> Vec<NetworkInfo> {
        vec![NetworkInfo::new(
            network(),
            NETWORK_NAME,
            NetworkClass::Testnet,
        )]
    }

    fn server(&self, _config: &ServerConfig) -> Result<ServerParts, PluginError> {
        let mut parts = ServerParts::default();
        let scheme: Arc<dyn SchemeServer> = self.scheme();
        parts.schemes.push(Registration::new(all_toy()?, scheme));
        let info = AssetInfo {
            symbol: ASSET.into(),
            decimals: 2,
            usd_stable: true,
        };
        parts.assets.push(ServerAsset::new(network(), ASSET, info));
        Ok(parts)
    }

    fn facilitator<'a>(
        &'a self,
        config: &'a FacilitatorConfig,
    ) -> BoxFuture<'a, Result<FacilitatorParts, PluginError>> {
        Box::pin(async move {
            for entry in &config.entries {
                serde_json::from_value::<ChainEntry>(entry.table.clone())
                    .map_err(|e| PluginError::config(&entry.at, e.to_string()))?;
            }
            let mut parts = FacilitatorParts::default();
            let scheme: Arc<dyn SchemeFacilitator> = self.scheme();
            parts.schemes.push(scheme);
            parts.probes.push(Arc::new(ToyProbe {
                network: network(),
                ledger: self.ledger.clone(),
            }));
            Ok(parts)
        })
    }

    fn wallet(&self, config: &WalletConfig) -> Result<WalletParts, PluginError> {
        let Some((account, secret)) = config.key.expose().split_once(':') else {
            return Err(PluginError::config("key", "expected ACCOUNT:SECRET"));
        };
        let mut parts = WalletParts::default();
        parts.addresses.push(account.into());
        let wallet: Arc<dyn SchemeClient> = Arc::new(ToyWallet {
            account: account.into(),
            secret: secret.into(),
            nonces: Mutex::new(0),
        });
        parts.schemes.push(Registration::new(all_toy()?, wallet));
        Ok(parts)
    }
}

/// The price of one unit, for tests: `amount` cents of TOY.
pub fn price(cents: u64) -> Price {
    Price::Atomic {
        amount: AtomicAmount::from(cents),
        asset: ASSET.into(),
        extra: None,
    }
}
