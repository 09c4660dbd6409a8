//! `paywire-bench`: measures the devnet node's ceiling and our components against
//! it in one run. See the crate README.
#![forbid(unsafe_code)]
// Statistics over request counts and durations: far inside f64's exact range.
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

use paywire_evm::Eip155ChainId;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, Bytes, TxKind, U256};
use clap::Parser;
use paywire_client::{PaymentStatus, X402Client};
use paywire_core::{
    ChainId, ChainIdPattern, Facilitator, FacilitatorRequest, PaymentPayload, PaymentRequirements,
    Price, RequirementsRequest, SchemeServer,
};
use paywire_evm::exact::{ExactEvmClient, ExactEvmServer};
use paywire_evm::rpc::RpcClient;
use paywire_evm::{EvmNetwork, EvmNetworks, LocalSigner};
use paywire_server::{HttpFacilitator, PayTo, PaymentLayer, PaymentOption, Route, money};
use paywire_testkit::Devnet;
use serde_json::{Value, json};

/// Load tool for the x402 stack on a local devnet.
#[derive(Parser, Debug)]
#[command(name = "paywire-bench", version)]
#[allow(clippy::struct_excessive_bools)] // command-line switches
pub(crate) struct Args {
    /// Concurrent workers for throughput phases.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Seconds per time-boxed phase (eth_call ceiling, /verify).
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// Payments settled in the /settle phase (and transactions in each of the
    /// node's send-and-mine ceilings).
    #[arg(long, default_value_t = 400)]
    settlements: usize,
    /// Paid requests end to end (concurrency 1).
    #[arg(long, default_value_t = 50)]
    paid_requests: usize,
    /// Path of a `paywire` binary to run `paywire facilitator` from (default: the
    /// `paywire-facilitator` binary next to this one, else `paywire` there).
    #[arg(long)]
    paywire: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Instead of the phases above: the scale-out proof (two facilitator and
    /// two gateway processes on one PostgreSQL, hostile duplicate sends, a
    /// database restart mid-load); exits 1 if an invariant is violated.
    #[arg(long)]
    scale_out: bool,
    /// Scale-out: distinct signed payments.
    #[arg(long, default_value_t = 200)]
    payments: usize,
    /// Scale-out: do not restart PostgreSQL mid-load.
    #[arg(long)]
    no_db_restart: bool,
    /// Scale-out: fraction of the payments done when PostgreSQL restarts.
    #[arg(long, default_value_t = 0.4)]
    restart_at: f64,
    /// Scale-out: how often a client retries a retryable answer (5xx, a
    /// pending 402, no answer) with the same payment.
    #[arg(long, default_value_t = 8)]
    retries: u32,
    /// Scale-out: both facilitators sign with one key (default: one each).
    #[arg(long)]
    shared_signer: bool,
    /// Scale-out: gateways keep reservations in memory instead of sharing
    /// them in PostgreSQL (shows what the verdict catches).
    #[arg(long)]
    unshared_reservations: bool,
    /// Skip the official TypeScript stack's legs (they need Node.js and npm;
    /// without this switch a missing Node fails the run).
    #[arg(long)]
    no_ts: bool,
    /// Instead of the phases above: `/verify` and `/settle` throughput and
    /// p99 at each `--sweep-concurrency` (one signer), and `/settle` at
    /// `--sweep-signers-concurrency` with each `--sweep-signers` count.
    #[arg(long)]
    sweep: bool,
    /// Sweep: the concurrency levels.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64,256")]
    sweep_concurrency: Vec<usize>,
    /// Sweep: the signer counts of the `/settle` signer series.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    sweep_signers: Vec<usize>,
    /// Sweep: the concurrency of the `/settle` signer series.
    #[arg(long, default_value_t = 64)]
    sweep_signers_concurrency: usize,
    /// Sweep: seconds per `/verify` point.
    #[arg(long, default_value_t = 2)]
    sweep_duration: u64,
    /// Sweep: payments settled per worker at each `/settle` point (at least 20 per point).
    #[arg(long, default_value_t = 4)]
    sweep_settlements_per_worker: usize,
    /// Sweep: write an SVG plot of throughput and p99 against concurrency here.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Internal: run only the resource server (`paid` with the payment
    /// layer, `plain` without) in this process, for its memory figure.
    #[arg(long, hide = true, requires = "usdc")]
    serve: Option<ServeMode>,
    /// Internal: the facilitator the `--serve paid` server uses.
    #[arg(long, hide = true)]
    facilitator_url: Option<String>,
    /// Internal: the devnet's USDC address for `--serve`.
    #[arg(long, hide = true)]
    usdc: Option<Address>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum ServeMode {
    Paid,
    Plain,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Stats {
    count: usize,
    errors: usize,
    seconds: f64,
    latencies_us: Vec<u64>,
    /// The first failure seen, for the report (why requests failed matters
    /// as much as how many did).
    first_error: Option<String>,
}

impl Stats {
    pub(crate) fn throughput(&self) -> f64 {
        if self.seconds > 0.0 {
            self.count as f64 / self.seconds
        } else {
            0.0
        }
    }

    pub(crate) fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[index.min(sorted.len() - 1)] as f64 / 1000.0
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "count": self.count,
            "errors": self.errors,
            "seconds": self.seconds,
            "per_second": self.throughput(),
            "p50_ms": self.percentile(0.50),
            "p90_ms": self.percentile(0.90),
            "p99_ms": self.percentile(0.99),
            "first_error": self.first_error,
        })
    }
}

/// Runs `work(i)` for i in 0..total with `concurrency` workers (or until
/// `deadline`), timing each successful call and keeping the first error.
async fn drive<F, Fut>(
    concurrency: usize,
    total: Option<usize>,
    deadline: Option<Duration>,
    work: F,
) -> Stats
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let work = Arc::new(work);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (work, next) = (Arc::clone(&work), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            let mut first_error = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if total.is_some_and(|t| i >= t) || deadline.is_some_and(|d| start.elapsed() >= d) {
                    break;
                }
                let began = Instant::now();
                match work(i).await {
                    Ok(()) => latencies.push(began.elapsed().as_micros() as u64),
                    Err(error) => {
                        errors += 1;
                        first_error.get_or_insert(error);
                    }
                }
            }
            (latencies, errors, first_error)
        }));
    }
    let mut stats = Stats::default();
    for task in tasks {
        if let Ok((latencies, errors, first_error)) = task.await {
            stats.count += latencies.len();
            stats.latencies_us.extend(latencies);
            stats.errors += errors;
            stats.first_error = stats.first_error.or(first_error);
        }
    }
    stats.seconds = start.elapsed().as_secs_f64();
    stats
}

pub(crate) fn requirements(usdc: Address, pay_to: Address) -> PaymentRequirements {
    let mut table = EvmNetworks::empty();
    table.insert(EvmNetwork::anvil(usdc));
    let chain = ChainId::eip155(31337);
    let price = Price::Money(paywire_core::Money::parse("$0.001").expect("price"));
    ExactEvmServer::new(table)
        .requirements(&RequirementsRequest {
            network: &chain,
            price: &price,
            pay_to: &pay_to.to_string(),
            max_timeout_seconds: 600,
            facilitator_kind: None,
        })
        .expect("requirements")
}

pub(crate) async fn sign_payments(
    devnet: &Devnet,
    requirements: &PaymentRequirements,
    count: usize,
) -> Vec<PaymentPayload> {
    let clients: Vec<_> = (1..=8)
        .map(|i| ExactEvmClient::new(LocalSigner::new(devnet.payer(i).signer())))
        .collect();
    let mut payloads = Vec::with_capacity(count);
    for i in 0..count {
        let exact = clients[i % 8].sign(requirements).await.expect("sign");
        payloads.push(PaymentPayload {
            x402_version: 2,
            payload: exact.to_json(),
            extensions: None,
            resource: None,
            accepted: requirements.clone(),
        });
    }
    payloads
}

/// Node ceiling 1: raw `eth_call` of `transferWithAuthorization`.
async fn node_eth_call(devnet: &Devnet, requirements: &PaymentRequirements, args: &Args) -> Stats {
    let payload = sign_payments(devnet, requirements, 1).await.remove(0);
    let data = transfer_calldata(&payload);
    let rpc = Arc::new(
        RpcClient::new(vec![devnet.rpc_url().to_owned()], Duration::from_secs(10)).expect("rpc"),
    );
    let usdc = devnet.usdc();
    drive(
        args.concurrency,
        None,
        Some(Duration::from_secs(args.duration)),
        move |_| {
            let (rpc, data) = (Arc::clone(&rpc), data.clone());
            async move {
                rpc.call(None, usdc, &data)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        },
    )
    .await
}

/// The `transferWithAuthorization` call settling `payload` (an EOA's: no EIP-6492 wrapper), as
/// our facilitator builds it.
fn transfer_calldata(payload: &PaymentPayload) -> Bytes {
    paywire_evm::exact::ExactEvmPayload::from_json(&payload.payload)
        .expect("payload")
        .transfer_calldata()
        .into()
}

/// The gas limit of a settlement transaction: our facilitator's default.
const SETTLEMENT_GAS_LIMIT: u64 = 250_000;

/// One transaction of a send-and-mine ceiling: target, calldata, value, gas.
type NodeCall = (Address, Bytes, U256, u64);

/// Node ceiling 2: raw send-and-mine of simple transfers.
async fn node_send_and_mine(devnet: &Devnet, args: &Args) -> Stats {
    let calls = (0..args.settlements)
        .map(|_| (Address::random(), Bytes::new(), U256::from(1), 21_000))
        .collect();
    send_and_mine(devnet, args.concurrency, calls).await
}

/// Node ceiling 3: raw send-and-mine of the settlement transactions
/// themselves (`transferWithAuthorization` of distinct signed payments, as
/// `/settle` sends them, without its checks and ledger).
async fn node_settlement_send_and_mine(
    devnet: &Devnet,
    requirements: &PaymentRequirements,
    args: &Args,
) -> Stats {
    let usdc = devnet.usdc();
    let calls = sign_payments(devnet, requirements, args.settlements)
        .await
        .iter()
        .map(|payload| {
            (
                usdc,
                transfer_calldata(payload),
                U256::ZERO,
                SETTLEMENT_GAS_LIMIT,
            )
        })
        .collect();
    send_and_mine(devnet, args.concurrency, calls).await
}

/// Sends `calls` from `workers` fresh keys, one key per worker, each waiting
/// for a transaction's receipt before sending its next (sequential nonces
/// per key, so no nonce manager is involved).
async fn send_and_mine(devnet: &Devnet, workers: usize, calls: Vec<NodeCall>) -> Stats {
    let rpc = Arc::new(
        RpcClient::new(vec![devnet.rpc_url().to_owned()], Duration::from_secs(10)).expect("rpc"),
    );
    let gas_price = rpc.gas_price().await.expect("gas price");
    let workers = workers.max(1);
    let mut shares: Vec<Vec<NodeCall>> = vec![Vec::new(); workers];
    for (index, call) in calls.into_iter().enumerate() {
        shares[index % workers].push(call);
    }
    let mut keys = Vec::new();
    for _ in 0..workers {
        let key = LocalSigner::random();
        devnet
            .set_eth_balance(key.address(), U256::from(10u128.pow(22)))
            .await
            .expect("fund");
        keys.push(key);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (key, share) in keys.into_iter().zip(shares) {
        let rpc = Arc::clone(&rpc);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            let mut first_error = None;
            for (nonce, (to, input, value, gas_limit)) in (0u64..).zip(share) {
                let tx = TxEip1559 {
                    chain_id: 31337,
                    nonce,
                    gas_limit,
                    max_fee_per_gas: gas_price * 2,
                    max_priority_fee_per_gas: 1,
                    to: TxKind::Call(to),
                    value,
                    access_list: Default::default(),
                    input,
                };
                let began = Instant::now();
                let sent = match key.sign_hash_sync(&tx.signature_hash()) {
                    Ok(signature) => {
                        let raw = TxEnvelope::from(tx.into_signed(signature)).encoded_2718();
                        rpc.send_raw_transaction(&raw)
                            .await
                            .map_err(|e| e.to_string())
                    }
                    Err(error) => Err(error.to_string()),
                };
                let failure = match sent {
                    Ok(hash) if wait_receipt(&rpc, hash).await => {
                        latencies.push(began.elapsed().as_micros() as u64);
                        continue;
                    }
                    Ok(hash) => format!("transaction {hash} reverted or was not mined"),
                    Err(error) => error,
                };
                errors += 1;
                first_error.get_or_insert(failure);
                // Its nonce may be unused: later ones would wait behind it.
                break;
            }
            (latencies, errors, first_error)
        }));
    }
    let mut stats = Stats::default();
    for task in tasks {
        if let Ok((latencies, errors, first_error)) = task.await {
            stats.count += latencies.len();
            stats.latencies_us.extend(latencies);
            stats.errors += errors;
            if stats.first_error.is_none() {
                stats.first_error = first_error;
            }
        }
    }
    stats.seconds = start.elapsed().as_secs_f64();
    stats
}

async fn wait_receipt(rpc: &RpcClient, hash: B256) -> bool {
    let mut pause = Duration::from_micros(500);
    for _ in 0..200 {
        if let Ok(Some(receipt)) = rpc.receipt(hash).await {
            return receipt.succeeded();
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
    false
}

pub(crate) struct FacilitatorProcess {
    child: tokio::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

mod gateway;
mod plot;
mod scale;
mod sweep;
mod ts;

/// A temporary folder removed on drop, named after the tool.
fn temp_dir() -> std::io::Result<tempfile::TempDir> {
    tempfile::Builder::new().prefix("paywire-bench-").tempdir()
}

/// How to start the facilitator: the dedicated `paywire-facilitator` binary
/// next to this one when it was built (what an operator deploys), else
/// `paywire facilitator`; `--paywire` forces the latter with that path.
pub(crate) fn facilitator_command(args: &Args) -> Result<(PathBuf, Option<&'static str>), String> {
    if let Some(path) = &args.paywire {
        return Ok((path.clone(), Some("facilitator")));
    }
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let dedicated = me.with_file_name("paywire-facilitator");
    if dedicated.exists() {
        return Ok((dedicated, None));
    }
    let sibling = me.with_file_name("paywire");
    if sibling.exists() {
        Ok((sibling, Some("facilitator")))
    } else {
        Err(format!(
            "no facilitator binary next to {}; build one (cargo build --release -p paywire-cli) or pass --paywire",
            me.display()
        ))
    }
}

/// A `paywire facilitator` configuration for the devnet's chain and USDC,
/// with the signer key read from `BENCH_SIGNER_KEY`.
pub(crate) fn facilitator_config(
    port: u16,
    store: &str,
    receipt_timeout_seconds: u64,
    devnet: &Devnet,
) -> String {
    facilitator_config_with_signers(port, store, receipt_timeout_seconds, devnet, 1)
}

/// The environment variable holding signer key `index`: `BENCH_SIGNER_KEY`,
/// then `BENCH_SIGNER_KEY_1`, `BENCH_SIGNER_KEY_2`, ... (keys stay out of
/// the configuration file).
fn signer_key_variable(index: usize) -> String {
    if index == 0 {
        "BENCH_SIGNER_KEY".to_owned()
    } else {
        format!("BENCH_SIGNER_KEY_{index}")
    }
}

/// [`facilitator_config`] with `signers` keys (see [`signer_key_variable`]).
fn facilitator_config_with_signers(
    port: u16,
    store: &str,
    receipt_timeout_seconds: u64,
    devnet: &Devnet,
    signers: usize,
) -> String {
    let keys: Vec<String> = (0..signers.max(1))
        .map(|i| format!("\"${{{}}}\"", signer_key_variable(i)))
        .collect();
    format!(
        r#"listen = "127.0.0.1:{port}"
store = "{store}"
receipt_timeout_seconds = {receipt_timeout_seconds}

[[chains]]
network = "eip155:31337"
rpc_urls = ["{rpc}"]
signer_private_keys = [{keys}]
max_fee_per_gas_gwei = 1000

[[chains.assets]]
address = "{usdc}"
symbol = "USDC"
decimals = 6
eip712_name = "USD Coin"
eip712_version = "2"
"#,
        rpc = devnet.rpc_url(),
        usdc = devnet.usdc(),
        keys = keys.join(", "),
    )
}

/// A fresh key holding plenty of devnet ETH for gas.
pub(crate) async fn funded_key(devnet: &Devnet) -> Result<B256, String> {
    let key = B256::random();
    let signer = LocalSigner::from_hex(&key.to_string()).map_err(|e| e.to_string())?;
    devnet
        .set_eth_balance(signer.address(), U256::from(10u128.pow(22)))
        .await
        .map_err(|e| e.to_string())?;
    Ok(key)
}

/// Starts our facilitator (SQLite store) with one signer.
async fn start_facilitator(
    devnet: &Devnet,
    binary: &(PathBuf, Option<&'static str>),
) -> Result<FacilitatorProcess, String> {
    start_facilitator_with_signers(devnet, binary, 1).await
}

/// Starts our facilitator (SQLite store) settling from `signers` fresh,
/// funded keys.
pub(crate) async fn start_facilitator_with_signers(
    devnet: &Devnet,
    (binary, subcommand): &(PathBuf, Option<&'static str>),
    signers: usize,
) -> Result<FacilitatorProcess, String> {
    let dir = temp_dir().map_err(|e| e.to_string())?;
    let mut keys = Vec::new();
    for index in 0..signers.max(1) {
        keys.push((
            signer_key_variable(index),
            funded_key(devnet).await?.to_string(),
        ));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let store = dir.path().join("ledger.sqlite");
    let config =
        facilitator_config_with_signers(port, &store.display().to_string(), 30, devnet, signers);
    let config_path = dir.path().join("facilitator.toml");
    std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
    let child = tokio::process::Command::new(binary)
        .args(subcommand)
        .arg("--config")
        .arg(&config_path)
        .envs(keys)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..400 {
        if http
            .get(format!("{url}/health"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(FacilitatorProcess {
                child,
                url,
                _dir: dir,
            });
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Err("the facilitator did not become healthy".into())
}

/// Peak resident set size of a process, in KiB (Linux `VmHWM`).
pub(crate) fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Posts `body` and expects a JSON answer with `key` true; an error says
/// what came back instead (shortened).
async fn post_json(
    http: &reqwest::Client,
    url: &str,
    body: &Value,
    key: &str,
) -> Result<(), String> {
    let response = http
        .post(url)
        .json(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let text = response.text().await.map_err(|e| e.to_string())?;
    let answer: Value = serde_json::from_str(&text).unwrap_or_default();
    if status.is_success() && answer.get(key) == Some(&Value::Bool(true)) {
        return Ok(());
    }
    let shown: String = text.chars().take(300).collect();
    Err(format!("{status}: {shown}"))
}

/// The seller's app: `GET /paid` behind `PaymentLayer` (or, for the memory
/// baseline, the same route without it).
fn seller_app(
    mode: ServeMode,
    usdc: Address,
    facilitator_url: &str,
) -> Result<axum::Router, String> {
    let app = axum::Router::new().route("/paid", axum::routing::get(|| async { "ok" }));
    if mode == ServeMode::Plain {
        return Ok(app);
    }
    let mut table = EvmNetworks::empty();
    table.insert(EvmNetwork::anvil(usdc));
    let facilitator: Arc<dyn Facilitator> =
        Arc::new(HttpFacilitator::new(facilitator_url).map_err(|e| e.to_string())?);
    let layer =
        PaymentLayer::builder(facilitator)
            .scheme(
                ChainIdPattern::namespace("eip155").map_err(|e| e.to_string())?,
                Arc::new(ExactEvmServer::new(table)),
            )
            .public_origin("https://bench.example")
            .route(Route::new("GET /paid").map_err(|e| e.to_string())?.accept(
                PaymentOption::exact(
                    ChainId::eip155(31337),
                    money("$0.001").map_err(|e| e.to_string())?,
                    PayTo::address(Address::random().to_string()),
                ),
            ))
            .build()
            .map_err(|e| e.to_string())?;
    Ok(app.layer(layer))
}

/// `--serve`: serves the seller's app and prints its address on stdout.
async fn serve(args: Args) -> Result<(), String> {
    let (Some(mode), Some(usdc)) = (args.serve, args.usdc) else {
        return Err("--serve needs --usdc".into());
    };
    let app = seller_app(mode, usdc, args.facilitator_url.as_deref().unwrap_or(""))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "http://{}/paid",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    axum::serve(listener, app).await.map_err(|e| e.to_string())
}

/// A seller's server in its own process, so its memory can be read.
struct ServerProcess {
    child: tokio::process::Child,
    url: String,
}

async fn start_server(
    mode: ServeMode,
    usdc: Address,
    facilitator_url: &str,
) -> Result<ServerProcess, String> {
    use tokio::io::AsyncBufReadExt;
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = tokio::process::Command::new(me)
        .arg("--serve")
        .arg(match mode {
            ServeMode::Paid => "paid",
            ServeMode::Plain => "plain",
        })
        .arg("--usdc")
        .arg(usdc.to_string())
        .arg("--facilitator-url")
        .arg(facilitator_url)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the seller server: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(20),
        tokio::io::BufReader::new(stdout).read_line(&mut line),
    )
    .await
    .map_err(|_| "the seller server did not start".to_string())?
    .map_err(|e| e.to_string())?;
    Ok(ServerProcess {
        child,
        url: line.trim().to_owned(),
    })
}

/// Our Rust buyer: `X402Client` with the exact EVM scheme, paying from
/// devnet payer `payer`.
fn rust_client(devnet: &Devnet, payer: usize) -> Result<Arc<X402Client>, String> {
    let mut table = EvmNetworks::empty();
    table.insert(EvmNetwork::anvil(devnet.usdc()));
    Ok(Arc::new(
        X402Client::builder()
            .wallet(
                ChainIdPattern::namespace("eip155").map_err(|e| e.to_string())?,
                Arc::new(ExactEvmClient::new(LocalSigner::new(
                    devnet.payer(payer).signer(),
                ))),
            )
            .catalog(Arc::new(table))
            .build(),
    ))
}

/// `count` paid `GET url` requests at `concurrency` with our Rust client; a
/// request counts when the client reports it paid.
pub(crate) async fn pay_requests(
    client: Arc<X402Client>,
    url: &str,
    count: usize,
    concurrency: usize,
) -> Stats {
    let http = reqwest::Client::new();
    let url = url.to_owned();
    drive(concurrency, Some(count), None, move |_| {
        let (client, http, url) = (Arc::clone(&client), http.clone(), url.clone());
        async move {
            let request = http.get(&url).build().map_err(|e| e.to_string())?;
            let response = client
                .send(&http, request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let outcome = response
                .extensions()
                .get::<paywire_client::PaymentOutcome>()
                .map(|o| o.status);
            match outcome {
                Some(PaymentStatus::Paid) => Ok(()),
                outcome => Err(format!("{status}, payment status {outcome:?}")),
            }
        }
    })
    .await
}

/// Paid requests against a seller server process: at concurrency 1, then
/// (after its peak RSS was read) at `--concurrency`.
async fn paid_requests(
    devnet: &Devnet,
    facilitator_url: &str,
    args: &Args,
) -> Result<(Stats, Stats, Option<u64>), String> {
    let server = start_server(ServeMode::Paid, devnet.usdc(), facilitator_url).await?;
    let client = rust_client(devnet, 8)?;
    let serial = pay_requests(Arc::clone(&client), &server.url, args.paid_requests, 1).await;
    let rss = server.child.id().and_then(peak_rss_kib);
    let concurrent = pay_requests(client, &server.url, args.paid_requests, args.concurrency).await;
    Ok((serial, concurrent, rss))
}

/// The memory baseline: the same server without the payment layer, under
/// the same number of (free) requests.
async fn plain_requests(usdc: Address, args: &Args) -> Result<Option<u64>, String> {
    let server = start_server(ServeMode::Plain, usdc, "").await?;
    let http = reqwest::Client::new();
    let url = server.url.clone();
    drive(1, Some(args.paid_requests), None, move |_| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            match http.get(&url).send().await {
                Ok(response) if response.status().is_success() => Ok(()),
                Ok(response) => Err(response.status().to_string()),
                Err(error) => Err(error.to_string()),
            }
        }
    })
    .await;
    Ok(server.child.id().and_then(peak_rss_kib))
}

/// Longest wait for one facilitator answer: above any receipt timeout a
/// facilitator is configured with here, so that a stuck request counts as an
/// error instead of hanging the run.
const FACILITATOR_ANSWER_TIMEOUT: Duration = Duration::from_secs(90);

/// The HTTP client of the facilitator phases (ours and the TS one).
fn facilitator_http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(FACILITATOR_ANSWER_TIMEOUT)
        .build()
        .unwrap_or_default()
}

/// `/verify` for `duration` at `concurrency`, cycling through `payloads`.
pub(crate) async fn measure_verify(
    facilitator_url: &str,
    requirements: &PaymentRequirements,
    payloads: Arc<Vec<PaymentPayload>>,
    concurrency: usize,
    duration: Duration,
) -> Stats {
    let http = facilitator_http();
    let url = format!("{facilitator_url}/verify");
    let requirements = requirements.clone();
    drive(concurrency, None, Some(duration), move |i| {
        let body = serde_json::to_value(FacilitatorRequest::new(
            payloads[i % payloads.len()].clone(),
            requirements.clone(),
        ))
        .unwrap_or_default();
        let (http, url) = (http.clone(), url.clone());
        async move { post_json(&http, &url, &body, "isValid").await }
    })
    .await
}

/// Requests sent to a freshly started facilitator before it is measured, so
/// that lazy start-up work (first RPC connections, Node's module loading and
/// JIT) is not counted as the first points' latency; same for ours and TS.
const WARM_UP_VERIFIES: usize = 32;

/// Sends [`WARM_UP_VERIFIES`] unmeasured `/verify` requests at concurrency 8.
pub(crate) async fn warm_up(
    facilitator_url: &str,
    requirements: &PaymentRequirements,
    payloads: &Arc<Vec<PaymentPayload>>,
) {
    let http = facilitator_http();
    let url = format!("{facilitator_url}/verify");
    let (requirements, payloads) = (requirements.clone(), Arc::clone(payloads));
    drive(8, Some(WARM_UP_VERIFIES), None, move |i| {
        let body = serde_json::to_value(FacilitatorRequest::new(
            payloads[i % payloads.len()].clone(),
            requirements.clone(),
        ))
        .unwrap_or_default();
        let (http, url) = (http.clone(), url.clone());
        async move { post_json(&http, &url, &body, "isValid").await }
    })
    .await;
}

/// `/settle` of every one of `payloads` (distinct payments) at `concurrency`.
pub(crate) async fn measure_settle(
    facilitator_url: &str,
    requirements: &PaymentRequirements,
    payloads: Vec<PaymentPayload>,
    concurrency: usize,
) -> Stats {
    let http = facilitator_http();
    let url = format!("{facilitator_url}/settle");
    let requirements = requirements.clone();
    let count = payloads.len();
    let payloads = Arc::new(payloads);
    drive(concurrency, Some(count), None, move |i| {
        let body = serde_json::to_value(FacilitatorRequest::new(
            payloads[i].clone(),
            requirements.clone(),
        ))
        .unwrap_or_default();
        let (http, url) = (http.clone(), url.clone());
        async move { post_json(&http, &url, &body, "success").await }
    })
    .await
}

/// Our facilitator's figures: `/verify` and `/settle` at `--concurrency`,
/// with one signer.
async fn our_facilitator(
    devnet: &Devnet,
    facilitator: &FacilitatorProcess,
    requirements: &PaymentRequirements,
    verify_payloads: &Arc<Vec<PaymentPayload>>,
    args: &Args,
) -> (Stats, Stats) {
    eprintln!("[3/8] facilitator: /verify ...");
    warm_up(&facilitator.url, requirements, verify_payloads).await;
    let verify = measure_verify(
        &facilitator.url,
        requirements,
        Arc::clone(verify_payloads),
        args.concurrency,
        Duration::from_secs(args.duration),
    )
    .await;
    eprintln!("[4/8] facilitator: /settle ...");
    let payloads = sign_payments(devnet, requirements, args.settlements).await;
    let settle = measure_settle(&facilitator.url, requirements, payloads, args.concurrency).await;
    (verify, settle)
}

async fn run(args: Args) -> Result<Value, String> {
    let binary = facilitator_command(&args)?;
    let gateway_binary = gateway::command(&args)?;
    if !args.no_ts {
        ts::ensure_node().await?;
    }
    // anvil mines more slowly as its chain grows: the node's ceilings get a
    // devnet of their own, so that our /settle starts from as short a chain
    // as the node's send-and-mine did.
    let node_devnet = Devnet::start().await.map_err(|e| e.to_string())?;
    let requirements = requirements(node_devnet.usdc(), Address::random());
    eprintln!("[1/8] node: eth_call of transferWithAuthorization ...");
    let node_call = node_eth_call(&node_devnet, &requirements, &args).await;
    eprintln!("[2/8] node: send-and-mine (plain transfers, then settlement transactions) ...");
    let node_send = node_send_and_mine(&node_devnet, &args).await;
    drop(node_devnet);
    let node_devnet = Devnet::start().await.map_err(|e| e.to_string())?;
    let node_settlements = node_settlement_send_and_mine(&node_devnet, &requirements, &args).await;
    drop(node_devnet);
    let devnet = Devnet::start().await.map_err(|e| e.to_string())?;

    let facilitator = start_facilitator(&devnet, &binary).await?;
    let verify_payloads = Arc::new(sign_payments(&devnet, &requirements, 256).await);
    let (verify, settle) = our_facilitator(
        &devnet,
        &facilitator,
        &requirements,
        &verify_payloads,
        &args,
    )
    .await;

    eprintln!(
        "[5/8] paid requests end to end (concurrency 1, then {}) ...",
        args.concurrency
    );
    let (paid, paid_concurrent, server_rss) =
        paid_requests(&devnet, &facilitator.url, &args).await?;
    let plain_rss = plain_requests(devnet.usdc(), &args).await?;
    eprintln!(
        "[6/8] gateway: paid requests (concurrency {}) ...",
        args.concurrency
    );
    let gateway = gateway::measure(&devnet, &gateway_binary, &facilitator.url, &args).await?;
    let rss = facilitator.child.id().and_then(peak_rss_kib);
    let ts = if args.no_ts {
        eprintln!("[7-8/8] the TypeScript stack: skipped (--no-ts)");
        Value::Null
    } else {
        // A devnet of its own: on ours the chain has grown by every leg above.
        let ts_devnet = Devnet::start().await.map_err(|e| e.to_string())?;
        ts::measure(&ts_devnet, &requirements, &verify_payloads, &args).await?
    };

    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let mut report = json!({
        "concurrency": args.concurrency,
        "facilitator_binary": binary.0.file_name().map(|n| n.to_string_lossy().into_owned()),
        "node": {
            "eth_call": node_call.to_json(),
            "send_and_mine": node_send.to_json(),
            "settlement_send_and_mine": node_settlements.to_json(),
        },
        "facilitator": {
            "verify": verify.to_json(),
            "settle": settle.to_json(),
            "peak_rss_kib": rss,
        },
        "paid_request": paid.to_json(),
        "paid_request_concurrent": paid_concurrent.to_json(),
        "server": {
            "peak_rss_kib_with_layer": server_rss,
            "peak_rss_kib_without_layer": plain_rss,
            "layer_rss_kib": server_rss.zip(plain_rss).map(|(with, without)| with as i64 - without as i64),
        },
        "gateway": gateway,
        "ts": ts,
        "ratios": {
            "verify_per_second_vs_node_eth_call": ratio(verify.throughput(), node_call.throughput()),
            "settle_per_second_vs_node_send_and_mine": ratio(settle.throughput(), node_send.throughput()),
            "settle_per_second_vs_node_settlement_send_and_mine": ratio(settle.throughput(), node_settlements.throughput()),
            "paid_request_p50_vs_node_send_p50": ratio(paid.percentile(0.5), node_send.percentile(0.5)),
        },
    });
    ts::add_ratios(&mut report);
    Ok(report)
}

/// The legs of a run that failed, so that a broken stack cannot pass as a
/// slow one: each of ours must answer every request; the TS SDK's must have
/// answered at least once where it can (its `/settle` through one signer
/// collides nonces under concurrency by itself, so errors there and in its
/// concurrent paid requests are figures, not failures).
fn failed_legs(report: &Value) -> Vec<String> {
    let ours = [
        ("node eth_call", &report["node"]["eth_call"]),
        ("node send-and-mine", &report["node"]["send_and_mine"]),
        (
            "node settlement send-and-mine",
            &report["node"]["settlement_send_and_mine"],
        ),
        ("facilitator /verify", &report["facilitator"]["verify"]),
        ("facilitator /settle", &report["facilitator"]["settle"]),
        ("paid request (concurrency 1)", &report["paid_request"]),
        (
            "paid request (concurrent)",
            &report["paid_request_concurrent"],
        ),
        ("paid via gateway", &report["gateway"]["paid"]),
    ];
    let count = |stats: &Value| stats["count"].as_u64().unwrap_or(0);
    let mut failed = Vec::new();
    for (name, stats) in ours {
        let errors = stats["errors"].as_u64().unwrap_or(0);
        if count(stats) == 0 || errors > 0 {
            failed.push(format!("{name}: {} ok, {errors} errors", count(stats)));
        }
    }
    let ts = &report["ts"];
    if !ts.is_null() {
        let theirs = [
            ("TS facilitator /verify", &ts["facilitator"]["verify"]),
            ("TS paid request (concurrency 1)", &ts["paid_request"]),
        ];
        for (name, stats) in theirs {
            if count(stats) == 0 {
                failed.push(format!("{name}: nothing succeeded"));
            }
        }
    }
    failed
}

/// One table row of a [`Stats::to_json`] object.
pub(crate) fn print_row(name: &str, stats: &Value) {
    println!(
        "{name:<40} {:>9.1}/s  p50 {:>8.2} ms  p90 {:>8.2} ms  p99 {:>8.2} ms  ({} ok, {} errors)",
        stats["per_second"].as_f64().unwrap_or_default(),
        stats["p50_ms"].as_f64().unwrap_or_default(),
        stats["p90_ms"].as_f64().unwrap_or_default(),
        stats["p99_ms"].as_f64().unwrap_or_default(),
        stats["count"],
        stats["errors"],
    );
    if let Some(error) = stats["first_error"].as_str() {
        println!("{:<40} first error: {error}", "");
    }
}

fn print_table(report: &Value) {
    let c = &report["concurrency"];
    println!(
        "concurrency {c}, facilitator binary {}, gateway binary {}",
        report["facilitator_binary"], report["gateway"]["binary"]
    );
    print_row(
        "node eth_call(transferWithAuth)",
        &report["node"]["eth_call"],
    );
    print_row("node send-and-mine", &report["node"]["send_and_mine"]);
    print_row(
        "node settlement send-and-mine",
        &report["node"]["settlement_send_and_mine"],
    );
    print_row("facilitator /verify", &report["facilitator"]["verify"]);
    print_row("facilitator /settle", &report["facilitator"]["settle"]);
    print_row("paid request e2e (concurrency 1)", &report["paid_request"]);
    print_row(
        &format!("paid request e2e (concurrency {c})"),
        &report["paid_request_concurrent"],
    );
    print_row(
        &format!("paid via gateway (concurrency {c})"),
        &report["gateway"]["paid"],
    );
    ts::print_rows(report);
    println!(
        "facilitator peak RSS: {} KiB; gateway peak RSS: {} KiB",
        report["facilitator"]["peak_rss_kib"], report["gateway"]["peak_rss_kib"]
    );
    println!(
        "seller server peak RSS: {} KiB with the payment layer, {} KiB without (layer adds {} KiB)",
        report["server"]["peak_rss_kib_with_layer"],
        report["server"]["peak_rss_kib_without_layer"],
        report["server"]["layer_rss_kib"],
    );
    for (name, value) in report["ratios"].as_object().into_iter().flatten() {
        println!("{name}: {:.3}", value.as_f64().unwrap_or_default());
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if args.serve.is_some() {
        return match serve(args).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error}");
                std::process::ExitCode::from(2)
            }
        };
    }
    if args.scale_out {
        return scale_out(args).await;
    }
    if args.sweep {
        return sweep::main(args).await;
    }
    let json = args.json;
    match run(args).await {
        Ok(report) => {
            if json {
                println!("{report}");
            } else {
                print_table(&report);
            }
            let failed = failed_legs(&report);
            if failed.is_empty() {
                return std::process::ExitCode::SUCCESS;
            }
            for leg in failed {
                eprintln!("failed: {leg}");
            }
            std::process::ExitCode::from(1)
        }
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::from(2)
        }
    }
}

/// `--scale-out`: runs the proof, prints its report, exits 1 on a violated
/// invariant (2 when it could not run).
async fn scale_out(args: Args) -> std::process::ExitCode {
    let paywire = match paywire_binary(&args) {
        Ok(path) => path,
        Err(error) => {
            eprintln!("error: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let options = scale::Options {
        payments: args.payments,
        concurrency: args.concurrency,
        db_restart: !args.no_db_restart,
        restart_at: args.restart_at.clamp(0.0, 1.0),
        retries: args.retries,
        shared_signer: args.shared_signer,
        unshared_reservations: args.unshared_reservations,
        paywire,
    };
    match scale::run(options).await {
        Ok(report) => {
            if args.json {
                println!("{report}");
            } else {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            }
            if report["ok"] == Value::Bool(true) {
                std::process::ExitCode::SUCCESS
            } else {
                eprintln!("scale-out: an invariant was violated (see the report)");
                std::process::ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::from(2)
        }
    }
}

/// The all-in-one `paywire` binary (it runs both `facilitator` and
/// `gateway`): `--paywire`, else next to this one.
fn paywire_binary(args: &Args) -> Result<PathBuf, String> {
    if let Some(path) = &args.paywire {
        return Ok(path.clone());
    }
    let sibling = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .with_file_name("paywire");
    if sibling.exists() {
        Ok(sibling)
    } else {
        Err(format!(
            "no paywire binary at {}; build it (cargo build -p paywire-cli) or pass --paywire",
            sibling.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leg(count: u64, errors: u64) -> Value {
        json!({ "count": count, "errors": errors })
    }

    fn healthy() -> Value {
        json!({
            "node": {
                "eth_call": leg(10, 0),
                "send_and_mine": leg(10, 0),
                "settlement_send_and_mine": leg(10, 0),
            },
            "facilitator": { "verify": leg(10, 0), "settle": leg(10, 0) },
            "paid_request": leg(5, 0),
            "paid_request_concurrent": leg(5, 0),
            "gateway": { "paid": leg(5, 0) },
            "ts": {
                "facilitator": { "verify": leg(10, 0), "settle": leg(3, 7) },
                "paid_request": leg(5, 0),
                "paid_request_concurrent": leg(2, 3),
            },
        })
    }

    #[test]
    fn a_run_fails_on_our_errors_not_on_the_ts_sdks_nonce_collisions() {
        assert!(failed_legs(&healthy()).is_empty());
        let mut settle_errors = healthy();
        settle_errors["facilitator"]["settle"] = leg(9, 1);
        assert_eq!(failed_legs(&settle_errors).len(), 1);
        let mut settlement_ceiling_fails = healthy();
        settlement_ceiling_fails["node"]["settlement_send_and_mine"] = leg(9, 1);
        assert_eq!(failed_legs(&settlement_ceiling_fails).len(), 1);
        let mut no_gateway = healthy();
        no_gateway["gateway"]["paid"] = leg(0, 0);
        assert_eq!(failed_legs(&no_gateway).len(), 1);
        let mut ts_refuses = healthy();
        ts_refuses["ts"]["facilitator"]["verify"] = leg(0, 10);
        assert_eq!(failed_legs(&ts_refuses).len(), 1);
        let mut no_ts = healthy();
        no_ts["ts"] = Value::Null;
        assert!(failed_legs(&no_ts).is_empty());
    }
}
