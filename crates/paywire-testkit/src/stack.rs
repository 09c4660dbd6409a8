//! [`Stack`] (feature `stack`): the whole paying setup of an integration test in one call: a
//! [`Devnet`], a funded facilitator signer and payer, and the paywire facilitator service
//! (the `paywire-facilitator` crate with the EVM plugin, a ledger of its own) listening on
//! `127.0.0.1:0`.
//!
//! Only integration tests (`tests/*.rs`) may use it: the kit depends on `paywire-facilitator`
//! and `paywire-evm`, so a unit test of those crates would see a second copy of their types.
//!
//! ```no_run
//! # async fn demo() -> Result<(), paywire_testkit::stack::StackError> {
//! use paywire_testkit::stack::Stack;
//!
//! let stack = Stack::start().await?;
//! let requirements = stack.requirements(10_000); // $0.01 of devnet USDC to `stack.pay_to()`
//! let payment = stack.pay(&requirements).await?; // signed by `stack.payer()`
//! let verify_url = stack.url("/verify");
//! # let _ = (payment, verify_url);
//! stack.stop().await;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use alloy_primitives::Address;
use paywire_core::{PaymentPayload, PaymentRequirements, PluginRegistry};
use paywire_devnet::{DevAccount, DevnetError, DevnetOptions};
use paywire_evm::LocalSigner;
use paywire_evm::exact::ExactEvmClient;
use paywire_facilitator::{AppState, ConfigError, FacilitatorConfig, SetupError};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::Devnet;
use crate::postgres::{PgCluster, PgClusterError};

/// The environment variable the configuration of [`config_text`] reads the settling key from.
pub const SIGNER_KEY_VARIABLE: &str = "TEST_SIGNER_KEY";

/// The devnet payer a [`Stack`] pays from unless told otherwise (dev account #1).
pub const DEFAULT_PAYER: usize = 1;

/// What can go wrong starting a [`Stack`] or signing with it.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// The devnet did not start.
    #[error("devnet: {0}")]
    Devnet(#[from] DevnetError),
    /// The PostgreSQL ledger did not start.
    #[error("postgres ledger: {0}")]
    Postgres(#[from] PgClusterError),
    /// A temporary directory or the listening socket could not be made.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The facilitator configuration was refused.
    #[error("facilitator configuration: {0}")]
    Config(#[from] ConfigError),
    /// The facilitator did not build.
    #[error("facilitator setup: {0}")]
    Setup(#[from] SetupError),
    /// The payer could not sign the payment.
    #[error("signing the payment: {0}")]
    Sign(String),
}

/// Where a facilitator's ledger lives: a SQLite file in a temporary directory, or a throwaway
/// PostgreSQL cluster. Both are removed on drop.
#[derive(Debug)]
pub enum Ledger {
    /// `ledger.sqlite` inside this directory.
    Sqlite(tempfile::TempDir),
    /// The cluster's database.
    Postgres(PgCluster),
}

impl Ledger {
    /// A SQLite ledger in a fresh temporary directory.
    pub fn sqlite() -> std::io::Result<Self> {
        Ok(Self::Sqlite(tempfile::tempdir()?))
    }

    /// A fresh PostgreSQL cluster; `None` (after a loud notice) only when PostgreSQL is
    /// missing and `PAYWIRE_SKIP_POSTGRES=1` is set (see [`PgCluster::start_or_skip`]).
    pub async fn postgres() -> Result<Option<Self>, PgClusterError> {
        Ok(PgCluster::start_or_skip().await?.map(Self::Postgres))
    }

    /// The `store` setting: the SQLite file path or the PostgreSQL URL.
    pub fn location(&self) -> PathBuf {
        match self {
            Self::Sqlite(dir) => dir.path().join("ledger.sqlite"),
            Self::Postgres(cluster) => PathBuf::from(cluster.url()),
        }
    }
}

/// A facilitator configuration for `network` served by `rpc`, with the devnet's USDC as its
/// asset when `usdc` is set, the ledger at `store`, settling with the key in
/// `${TEST_SIGNER_KEY}` ([`SIGNER_KEY_VARIABLE`]), listening on `127.0.0.1:0`.
pub fn config_text(network: &str, rpc: &str, usdc: Option<Address>, store: &Path) -> String {
    let mut text = format!(
        r#"
listen = "127.0.0.1:0"
store = "{}"
receipt_timeout_seconds = 20
rpc_timeout_seconds = 2

[[chains]]
network = "{network}"
rpc_urls = ["{rpc}"]
signer_private_keys = ["${{{SIGNER_KEY_VARIABLE}}}"]
gas_limit = 300000
max_fee_per_gas_gwei = 100
"#,
        store.display()
    );
    if let Some(usdc) = usdc {
        text.push_str(&format!(
            r#"
[[chains.assets]]
address = "{usdc}"
symbol = "USDC"
decimals = 6
eip712_name = "USD Coin"
eip712_version = "2"
"#
        ));
    }
    text
}

/// `[[chains.assets]]` entries accepting the devnet's two test tokens, paid through Permit2
/// (`exact` with `assetTransferMethod: "permit2"`, and `upto`); append after
/// [`config_text`]'s chain.
pub fn permit2_assets_text(devnet: &Devnet) -> String {
    let tokens = devnet.test_tokens();
    format!(
        r#"
[[chains.assets]]
address = "{plain}"
symbol = "{plain_symbol}"
decimals = {decimals}
usd_stable = true
transfer_method = "permit2"

[[chains.assets]]
address = "{permit}"
symbol = "{permit_symbol}"
decimals = {decimals}
usd_stable = true
transfer_method = "permit2"
eip2612 = true
eip712_name = "{permit_name}"
eip712_version = "{permit_version}"
"#,
        plain = tokens.plain,
        plain_symbol = paywire_devnet::PLAIN_TOKEN_SYMBOL,
        permit = tokens.permit,
        permit_symbol = paywire_devnet::PERMIT_TOKEN_SYMBOL,
        permit_name = paywire_devnet::PERMIT_TOKEN_NAME,
        permit_version = paywire_devnet::PERMIT_TOKEN_VERSION,
        decimals = paywire_devnet::TEST_TOKEN_DECIMALS,
    )
}

/// The chain plugins a [`Stack`]'s facilitator settles with: EVM.
pub fn plugins() -> PluginRegistry {
    PluginRegistry::new().with(Arc::new(paywire_evm::EvmPlugin))
}

/// `exact` requirements for `amount` (atomic units) of the devnet USDC on `devnet`, paid to
/// `pay_to`, with the USDC EIP-712 domain in `extra` and a 60 s timeout.
///
/// # Panics
/// Never in practice: the JSON is built here with the fields the type needs.
pub fn exact_requirements(devnet: &Devnet, amount: u64, pay_to: Address) -> PaymentRequirements {
    serde_json::from_value(json!({
        "scheme": "exact",
        "network": devnet.network(),
        "amount": amount.to_string(),
        "asset": devnet.usdc().to_string(),
        "payTo": pay_to.to_string(),
        "maxTimeoutSeconds": 60,
        "extra": {"name": crate::USDC_NAME, "version": crate::USDC_VERSION}
    }))
    .expect("the requirements literal is well formed")
}

/// An `exact` payment of `requirements` signed by `payer` (no extensions, no resource).
pub async fn sign_exact(
    payer: &DevAccount,
    requirements: &PaymentRequirements,
) -> Result<PaymentPayload, StackError> {
    let client = ExactEvmClient::new(LocalSigner::new(payer.signer()));
    let exact = client
        .sign(requirements)
        .await
        .map_err(|error| StackError::Sign(error.to_string()))?;
    Ok(PaymentPayload {
        x402_version: 2,
        payload: exact.to_json(),
        extensions: None,
        resource: None,
        accepted: requirements.clone(),
    })
}

/// A running paywire facilitator service. Stopped by [`stop`](Self::stop) (graceful) or on
/// drop (aborted).
#[derive(Debug)]
pub struct FacilitatorServer {
    /// The base URL, `http://127.0.0.1:<port>`.
    pub base: String,
    /// The facilitator's state (ledger, metrics) as built.
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl FacilitatorServer {
    /// Builds the facilitator of configuration `text` (its `${TEST_SIGNER_KEY}` is
    /// `signer_key`, other variables are unset) with the EVM [`plugins`] and serves it on
    /// `127.0.0.1:0`.
    pub async fn start(text: &str, signer_key: &str) -> Result<Self, StackError> {
        let config = FacilitatorConfig::parse_with_env(text, |name| {
            (name == SIGNER_KEY_VARIABLE).then(|| signer_key.to_owned())
        })?;
        let state = paywire_facilitator::build(&config, &plugins()).await?;
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (shutdown, stopped) = oneshot::channel::<()>();
        let served = state.clone();
        let handle = tokio::spawn(async move {
            // A serve error ends the task; the test sees it as refused connections.
            let _ = paywire_facilitator::serve(listener, served, async {
                let _ = stopped.await;
            })
            .await;
        });
        Ok(Self {
            base,
            state,
            shutdown: Some(shutdown),
            handle: Some(handle),
        })
    }

    /// `path` (e.g. `/verify`) on this facilitator.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the service gracefully and waits for it.
    pub async fn stop(mut self) {
        self.shut_down().await;
    }

    async fn shut_down(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(handle) = self.handle.take() {
            let _ = handle.await;
        }
    }
}

impl Drop for FacilitatorServer {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}

/// What a [`Stack`] varies: the devnet's options, the ledger, more facilitator configuration.
#[derive(Debug, Default)]
pub struct StackOptions {
    devnet: DevnetOptions,
    ledger: Option<Ledger>,
    extra_config: String,
    payer: Option<usize>,
}

impl StackOptions {
    /// Starts the devnet with `options` (e.g. manual mining).
    pub fn devnet(mut self, options: DevnetOptions) -> Self {
        self.devnet = options;
        self
    }

    /// Keeps the ledger in `ledger` (default: a fresh SQLite file).
    pub fn ledger(mut self, ledger: Ledger) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// Appends TOML `text` (top-level keys before any table, or `[section]`s) to the
    /// facilitator configuration.
    pub fn config(mut self, text: &str) -> Self {
        self.extra_config.push('\n');
        self.extra_config.push_str(text);
        self
    }

    /// Pays from devnet payer `index` (default [`DEFAULT_PAYER`]).
    pub fn payer(mut self, index: usize) -> Self {
        self.payer = Some(index);
        self
    }
}

/// A devnet, a funded facilitator signer (dev account #0, which also owns USDC), a funded
/// payer (dev account #1 unless [`StackOptions::payer`] says otherwise), a fresh `pay_to`
/// address and the paywire facilitator service settling on the devnet. Dropping it stops the
/// facilitator, removes the ledger and stops anvil, in that order.
#[derive(Debug)]
pub struct Stack {
    // Drop order is declaration order: the service goes before its ledger and chain.
    facilitator: FacilitatorServer,
    ledger: Ledger,
    devnet: Devnet,
    config: String,
    payer: usize,
    pay_to: Address,
}

impl Stack {
    /// Starts a stack with the default [`StackOptions`].
    pub async fn start() -> Result<Self, StackError> {
        Self::start_with(StackOptions::default()).await
    }

    /// Starts a stack with `options`.
    pub async fn start_with(options: StackOptions) -> Result<Self, StackError> {
        let devnet = Devnet::start_with(options.devnet).await?;
        let ledger = match options.ledger {
            Some(ledger) => ledger,
            None => Ledger::sqlite()?,
        };
        let mut text = config_text(
            devnet.network(),
            devnet.rpc_url(),
            Some(devnet.usdc()),
            &ledger.location(),
        );
        text.push_str(&permit2_assets_text(&devnet));
        text.push_str(&options.extra_config);
        let signer_key = devnet.usdc_owner().private_key_hex();
        let facilitator = FacilitatorServer::start(&text, &signer_key).await?;
        Ok(Self {
            facilitator,
            ledger,
            devnet,
            config: text,
            payer: options.payer.unwrap_or(DEFAULT_PAYER),
            pay_to: Address::random(),
        })
    }

    /// The facilitator's base URL, `http://127.0.0.1:<port>`.
    pub fn facilitator_url(&self) -> &str {
        &self.facilitator.base
    }

    /// `path` (e.g. `/settle`) on the facilitator.
    pub fn url(&self, path: &str) -> String {
        self.facilitator.url(path)
    }

    /// The running facilitator service.
    pub fn facilitator(&self) -> &FacilitatorServer {
        &self.facilitator
    }

    /// The devnet the facilitator settles on.
    pub fn devnet(&self) -> &Devnet {
        &self.devnet
    }

    /// The facilitator's ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The account the facilitator settles with (dev account #0, funded with ETH).
    pub fn facilitator_signer(&self) -> &DevAccount {
        self.devnet.usdc_owner()
    }

    /// The paying account (funded with ETH and USDC).
    pub fn payer(&self) -> &DevAccount {
        self.devnet.payer(self.payer)
    }

    /// The recipient of [`requirements`](Self::requirements): a fresh address, so its USDC
    /// balance is exactly what the test paid it.
    pub fn pay_to(&self) -> Address {
        self.pay_to
    }

    /// Valid `exact` requirements for `amount` (atomic units) of the devnet USDC to
    /// [`pay_to`](Self::pay_to).
    pub fn requirements(&self, amount: u64) -> PaymentRequirements {
        exact_requirements(&self.devnet, amount, self.pay_to)
    }

    /// A payment of `requirements` signed by the [`payer`](Self::payer).
    pub async fn pay(
        &self,
        requirements: &PaymentRequirements,
    ) -> Result<PaymentPayload, StackError> {
        sign_exact(self.payer(), requirements).await
    }

    /// The facilitator's configuration text (`${TEST_SIGNER_KEY}` unresolved).
    pub fn config_text(&self) -> &str {
        &self.config
    }

    /// Stops the facilitator gracefully and starts it again with the same configuration and
    /// ledger (on another port: read [`facilitator_url`](Self::facilitator_url) again).
    pub async fn restart_facilitator(&mut self) -> Result<(), StackError> {
        // Stop first: the old instance must not hold the ledger while the new one opens it.
        self.facilitator.shut_down().await;
        let signer_key = self.facilitator_signer().private_key_hex();
        self.facilitator = FacilitatorServer::start(&self.config, &signer_key).await?;
        Ok(())
    }

    /// Stops the facilitator gracefully, then the rest.
    pub async fn stop(self) {
        let Self {
            facilitator,
            ledger,
            devnet,
            ..
        } = self;
        facilitator.stop().await;
        drop(ledger);
        drop(devnet);
    }
}
