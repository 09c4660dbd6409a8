//! `--scale-out`: two facilitator processes and two gateway processes on one
//! PostgreSQL, in front of one counting upstream, under a load that includes
//! the same signed payment sent to both gateways at once and to one gateway
//! twice; PostgreSQL is restarted mid-load (unless `--no-db-restart`). The
//! verdict comes from the chain (the token's `AuthorizationUsed` logs and the
//! mined `transferWithAuthorization` transactions) and from the upstream's
//! own count of what it served, never from our ledgers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, U256, keccak256};
use paywire_core::codec::{PAYMENT_REQUIRED_HEADER, decode_header, encode_header};
use paywire_core::{FacilitatorRequest, PaymentPayload, PaymentRequired, PaymentRequirements};
use paywire_evm::LocalSigner;
use paywire_evm::exact::ExactEvmClient;
use paywire_testkit::Devnet;
use paywire_testkit::postgres::PgCluster;
use serde_json::{Value, json};

/// The request header that tags a paid request with its payment (the
/// authorization nonce), so the upstream can count serves per payment.
const TAG: &str = "x-bench-payment";

/// What one scale-out run does.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Distinct signed payments.
    pub payments: usize,
    /// Payments in flight at once.
    pub concurrency: usize,
    /// Restart PostgreSQL mid-load.
    pub db_restart: bool,
    /// Fraction of the payments finished before the restart.
    pub restart_at: f64,
    /// Retries of a retryable answer, with the same payload.
    pub retries: u32,
    /// Both facilitators sign with one key (else one key each).
    pub shared_signer: bool,
    /// Gateways keep reservations in memory, not in PostgreSQL (to prove
    /// the verdict catches it).
    pub unshared_reservations: bool,
    /// The `paywire` binary.
    pub paywire: PathBuf,
}

/// How a payment is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Once, to one gateway.
    Single(usize),
    /// The same payload to both gateways at once.
    BothGateways,
    /// The same payload twice at once to one gateway.
    Twice(usize),
}

fn kind(index: usize) -> Kind {
    match index % 4 {
        1 => Kind::BothGateways,
        3 => Kind::Twice(index / 4 % 2),
        other => Kind::Single(other / 2),
    }
}

/// One child process (facilitator or gateway), its log file and URL.
pub(crate) struct Instance {
    name: String,
    pub(crate) url: String,
    log: PathBuf,
    pub(crate) child: tokio::process::Child,
}

impl Instance {
    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

pub(crate) fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

async fn spawn(
    paywire: &Path,
    dir: &Path,
    name: &str,
    subcommand: Option<&str>,
    config: &str,
    env: &[(&str, String)],
) -> Result<(tokio::process::Child, PathBuf), String> {
    let config_path = dir.join(format!("{name}.toml"));
    std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
    let log = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let mut command = tokio::process::Command::new(paywire);
    command
        .args(subcommand)
        .arg("--config")
        .arg(&config_path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(file)
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    let child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", paywire.display()))?;
    Ok((child, log))
}

/// Waits (up to 60 s: two shared cores can be slow) until `ready`; the
/// error carries the end of the instance's log.
async fn wait_until(
    what: &str,
    child: &mut tokio::process::Child,
    log: &Path,
    mut ready: impl AsyncFnMut() -> bool,
) -> Result<(), String> {
    for _ in 0..600 {
        if ready().await {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("{what} exited ({status}):\n{text}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(20).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(format!(
        "{what} did not become ready in 60 s; its log ends:\n{}",
        tail.join("\n")
    ))
}

async fn start_facilitator(
    options: &Options,
    devnet: &Devnet,
    dir: &Path,
    index: usize,
    store: &str,
    signer_key: &str,
) -> Result<Instance, String> {
    let port = free_port()?;
    let config = crate::facilitator_config(port, store, 20, devnet);
    let name = format!("facilitator-{index}");
    let env = [("BENCH_SIGNER_KEY", signer_key.to_owned())];
    let (mut child, log) = spawn(
        &options.paywire,
        dir,
        &name,
        Some("facilitator"),
        &config,
        &env,
    )
    .await?;
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let health = format!("{url}/health");
    wait_until(&name, &mut child, &log, async || {
        http.get(&health)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await?;
    Ok(Instance {
        name,
        url,
        log,
        child,
    })
}

/// The public origin both gateways share: they stand behind one name, so a
/// payment signed for one is valid at the other.
const ORIGIN: &str = "https://api.bench.example";

#[allow(clippy::too_many_arguments)]
async fn start_gateway(
    options: &Options,
    dir: &Path,
    index: usize,
    store: &str,
    usdc: Address,
    pay_to: Address,
    upstream: &str,
    facilitators: [&str; 2],
) -> Result<Instance, String> {
    let port = free_port()?;
    let reservations = (!options.unshared_reservations).then_some(store);
    let config = gateway_config(port, upstream, reservations, &facilitators, usdc, pay_to);
    let binary = (options.paywire.clone(), Some("gateway"));
    launch_gateway(&binary, dir, &format!("gateway-{index}"), port, &config).await
}

/// A gateway configuration: `GET /paid` for $0.001 USDC on the devnet, in
/// front of `upstream`, behind [`ORIGIN`], with the facilitators in order
/// and reservations in `reservations` (a PostgreSQL URL; `None`: memory).
pub(crate) fn gateway_config(
    port: u16,
    upstream: &str,
    reservations: Option<&str>,
    facilitators: &[&str],
    usdc: Address,
    pay_to: Address,
) -> String {
    let reservations = reservations
        .map(|store| format!("reservations = \"{store}\"\n"))
        .unwrap_or_default();
    let facilitators: String = facilitators
        .iter()
        .map(|url| format!("\n[[facilitators]]\nurl = \"{url}\"\n"))
        .collect();
    format!(
        r#"listen = "127.0.0.1:{port}"
public_origin = "{ORIGIN}"
upstream = "{upstream}"
{reservations}{facilitators}
[[networks]]
network = "eip155:31337"
name = "Anvil"
asset = {{ address = "{usdc}", symbol = "USDC", decimals = 6, eip712_name = "USD Coin", eip712_version = "2", usd_stable = true }}

[[routes]]
method = "GET"
path = "/paid"
max_timeout_seconds = 300

[[routes.accepts]]
network = "eip155:31337"
price = "$0.001"
pay_to = "{pay_to}"
"#
    )
}

/// Starts a gateway (`binary` with its optional subcommand) with `config`
/// listening on `port`; ready once `GET /paid` answers 402.
pub(crate) async fn launch_gateway(
    (binary, subcommand): &(PathBuf, Option<&'static str>),
    dir: &Path,
    name: &str,
    port: u16,
    config: &str,
) -> Result<Instance, String> {
    let (mut child, log) = spawn(binary, dir, name, *subcommand, config, &[]).await?;
    let url = format!("http://127.0.0.1:{port}/paid");
    let http = reqwest::Client::new();
    wait_until(name, &mut child, &log, async || {
        http.get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status() == reqwest::StatusCode::PAYMENT_REQUIRED)
    })
    .await?;
    Ok(Instance {
        name: name.to_owned(),
        url,
        log,
        child,
    })
}

/// What the upstream saw of one payment.
#[derive(Debug, Default, Clone, Copy)]
struct Runs {
    /// Times it ran.
    total: u32,
    /// Runs in progress now.
    active: u32,
    /// Runs that began while another run of the same payment was in
    /// progress: two instances held the payment at once.
    overlapping: u32,
}

/// The upstream: counts, per payment tag, how often it served `/paid`.
type Serves = Arc<Mutex<HashMap<String, Runs>>>;

/// How long the upstream works on a request: long enough that two copies
/// of one payment let through at once overlap.
const UPSTREAM_WORK: Duration = Duration::from_millis(20);

async fn serve_paid(serves: Serves, headers: axum::http::HeaderMap) -> String {
    let tag = headers
        .get(TAG)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("untagged")
        .to_owned();
    if let Ok(mut serves) = serves.lock() {
        let runs = serves.entry(tag.clone()).or_default();
        runs.overlapping += u32::from(runs.active > 0);
        runs.total += 1;
        runs.active += 1;
    }
    tokio::time::sleep(UPSTREAM_WORK).await;
    if let Ok(mut serves) = serves.lock() {
        let runs = serves.entry(tag.clone()).or_default();
        runs.active = runs.active.saturating_sub(1);
    }
    format!("served {tag}")
}

async fn start_upstream() -> Result<(String, Serves), String> {
    let serves: Serves = Arc::default();
    let counter = Arc::clone(&serves);
    let app = axum::Router::new().route(
        "/paid",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            serve_paid(Arc::clone(&counter), headers)
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let url = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, serves))
}

/// One signed payment, ready to send.
struct Payment {
    tag: String,
    header: String,
    payer: Address,
    nonce: B256,
    payload: PaymentPayload,
}

async fn sign(
    devnet: &Devnet,
    required: &PaymentRequired,
    count: usize,
    first_payer: usize,
) -> Result<Vec<Payment>, String> {
    let accepted = required.accepts.first().ok_or("the 402 offers nothing")?;
    let clients: Vec<_> = (1..=8)
        .map(|i| ExactEvmClient::new(LocalSigner::new(devnet.payer(i).signer())))
        .collect();
    let mut payments = Vec::with_capacity(count);
    for i in 0..count {
        let exact = clients[(first_payer + i) % 8]
            .sign(accepted)
            .await
            .map_err(|e| e.to_string())?;
        let payload = PaymentPayload {
            x402_version: 2,
            payload: exact.to_json(),
            extensions: None,
            resource: Some(required.resource.clone()),
            accepted: accepted.clone(),
        };
        payments.push(Payment {
            tag: exact.authorization.nonce.to_string(),
            header: encode_header(&payload),
            payer: exact.authorization.from,
            nonce: exact.authorization.nonce,
            payload,
        });
    }
    Ok(payments)
}

/// What a client saw sending one payment to one gateway (with retries).
#[derive(Debug, Default, Clone)]
struct Send {
    gateway: usize,
    served: bool,
    attempts: u32,
    last_status: Option<u16>,
    finished: Option<Instant>,
}

/// A refusal a real client retries with the same payload: 5xx, a 402 with a
/// pending receipt, or no answer at all.
fn retryable(response: &reqwest::Response) -> bool {
    let status = response.status();
    status.is_server_error()
        || (status == reqwest::StatusCode::PAYMENT_REQUIRED
            && response.headers().contains_key("payment-response"))
}

async fn send(
    http: &reqwest::Client,
    url: &str,
    payment: &Payment,
    gateway: usize,
    retries: u32,
) -> Send {
    let mut outcome = Send {
        gateway,
        ..Send::default()
    };
    let mut pause = Duration::from_millis(100);
    loop {
        outcome.attempts += 1;
        let answer = http
            .get(url)
            .header("PAYMENT-SIGNATURE", &payment.header)
            .header(TAG, &payment.tag)
            .send()
            .await;
        let again = match answer {
            Ok(response) => {
                outcome.last_status = Some(response.status().as_u16());
                let again = retryable(&response);
                if response.status().is_success() {
                    let body = response.text().await.unwrap_or_default();
                    outcome.served = body.contains(&payment.tag);
                    outcome.finished = Some(Instant::now());
                    return outcome;
                }
                again
            }
            Err(_) => true,
        };
        if !again || outcome.attempts > retries {
            outcome.finished = Some(Instant::now());
            return outcome;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// Everything the clients saw about one payment.
#[derive(Debug, Default, Clone)]
struct Outcome {
    sends: Vec<Send>,
    began: Option<Instant>,
}

async fn pay(
    http: &reqwest::Client,
    gateways: &[String; 2],
    payment: &Payment,
    kind: Kind,
    retries: u32,
) -> Outcome {
    let began = Instant::now();
    let sends = match kind {
        Kind::Single(g) => vec![send(http, &gateways[g], payment, g, retries).await],
        Kind::BothGateways => {
            let (a, b) = tokio::join!(
                send(http, &gateways[0], payment, 0, retries),
                send(http, &gateways[1], payment, 1, retries)
            );
            vec![a, b]
        }
        Kind::Twice(g) => {
            let (a, b) = tokio::join!(
                send(http, &gateways[g], payment, g, retries),
                send(http, &gateways[g], payment, g, retries)
            );
            vec![a, b]
        }
    };
    Outcome {
        sends,
        began: Some(began),
    }
}

/// When the database restart ran.
#[derive(Debug, Clone, Copy)]
struct Restart {
    began: Instant,
    done: Instant,
}

/// Drives every payment through the gateways; restarts the database once
/// `restart_after` payments are done (if given).
async fn drive_load(
    options: &Options,
    gateways: [String; 2],
    payments: Arc<Vec<Payment>>,
    cluster: &PgCluster,
    restart_after: Option<usize>,
    restarted: tokio::sync::oneshot::Sender<Instant>,
) -> Result<(Vec<Outcome>, f64, Option<Restart>), String> {
    let http = reqwest::Client::new();
    let gateways = Arc::new(gateways);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let results = Arc::new(Mutex::new(vec![Outcome::default(); payments.len()]));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..options.concurrency.max(1) {
        let (http, gateways, payments) =
            (http.clone(), Arc::clone(&gateways), Arc::clone(&payments));
        let (next, done, results, retries) = (
            Arc::clone(&next),
            Arc::clone(&done),
            Arc::clone(&results),
            options.retries,
        );
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(payment) = payments.get(i) else {
                    break;
                };
                let outcome = pay(&http, &gateways, payment, kind(i), retries).await;
                if let Ok(mut results) = results.lock() {
                    results[i] = outcome;
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut restart = None;
    if let Some(after) = restart_after {
        while done.load(Ordering::Relaxed) < after {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        eprintln!("    restarting PostgreSQL (pg_ctl restart -m fast) ...");
        let began = Instant::now();
        cluster
            .restart()
            .await
            .map_err(|e| format!("pg_ctl restart: {e}"))?;
        restart = Some(Restart {
            began,
            done: Instant::now(),
        });
        let _ = restarted.send(began);
    }
    for worker in workers {
        worker.await.map_err(|e| e.to_string())?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let results = results.lock().map_err(|e| e.to_string())?.clone();
    Ok((results, seconds, restart))
}

/// After the restart: settles one fresh payment directly at each
/// facilitator (both at once), retrying with the same body, and times the
/// first success from `since`.
async fn probe_facilitators(
    facilitators: &[Instance],
    probes: &[Payment],
    requirements: &PaymentRequirements,
    since: Instant,
) -> Vec<Option<f64>> {
    let body = |probe: &Payment| {
        serde_json::to_value(FacilitatorRequest::new(
            probe.payload.clone(),
            requirements.clone(),
        ))
        .unwrap_or_default()
    };
    let (first, second) = tokio::join!(
        probe_one(&facilitators[0].url, body(&probes[0]), since),
        probe_one(&facilitators[1].url, body(&probes[1]), since)
    );
    vec![first, second]
}

async fn probe_one(facilitator: &str, body: Value, since: Instant) -> Option<f64> {
    let http = reqwest::Client::new();
    let url = format!("{facilitator}/settle");
    for _ in 0..120 {
        let settled = match http.post(&url).json(&body).send().await {
            Ok(response) => response
                .json::<Value>()
                .await
                .is_ok_and(|v| v["success"] == Value::Bool(true)),
            Err(_) => false,
        };
        if settled {
            return Some(since.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

/// The chain's view of every authorization nonce of the token.
#[derive(Debug, Default)]
struct ChainTruth {
    /// `AuthorizationUsed` events per (payer, nonce).
    used: HashMap<(Address, B256), u32>,
    /// Mined `transferWithAuthorization` transactions per nonce (reverted
    /// ones included: a second broadcast of one payment).
    mined: HashMap<B256, u32>,
}

async fn chain_truth(devnet: &Devnet) -> Result<ChainTruth, String> {
    let mut truth = ChainTruth::default();
    let topic = keccak256("AuthorizationUsed(address,bytes32)");
    let logs = devnet
        .rpc(
            "eth_getLogs",
            json!([{"fromBlock": "0x0", "toBlock": "latest", "address": devnet.usdc(), "topics": [topic]}]),
        )
        .await
        .map_err(|e| e.to_string())?;
    for log in logs.as_array().into_iter().flatten() {
        let topics: Vec<B256> = log["topics"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str()?.parse().ok())
            .collect();
        if let [_, payer, nonce] = topics[..] {
            let payer = Address::from_word(payer);
            *truth.used.entry((payer, nonce)).or_default() += 1;
        }
    }
    // Both overloads of transferWithAuthorization carry the nonce as their
    // sixth 32-byte argument.
    let selectors = [
        <paywire_evm::contracts::IEip3009Token::transferWithAuthorization_0Call as alloy_sol_types::SolCall>::SELECTOR,
        <paywire_evm::contracts::IEip3009Token::transferWithAuthorization_1Call as alloy_sol_types::SolCall>::SELECTOR,
    ];
    let latest = devnet.block_number().await.map_err(|e| e.to_string())?;
    for number in 0..=latest {
        let block = devnet
            .rpc(
                "eth_getBlockByNumber",
                json!([format!("{number:#x}"), true]),
            )
            .await
            .map_err(|e| e.to_string())?;
        for tx in block["transactions"].as_array().into_iter().flatten() {
            let to = tx["to"].as_str().and_then(|t| t.parse::<Address>().ok());
            let input = tx["input"].as_str().unwrap_or_default();
            let Ok(input) = alloy_primitives::hex::decode(input) else {
                continue;
            };
            if to != Some(devnet.usdc())
                || input.len() < 196
                || !selectors.iter().any(|s| input[..4] == s[..])
            {
                continue;
            }
            *truth
                .mined
                .entry(B256::from_slice(&input[164..196]))
                .or_default() += 1;
        }
    }
    Ok(truth)
}

/// Time from the restart to the first success completed after it, per gateway.
fn gateway_recovery(outcomes: &[Outcome], restart: &Restart) -> [Option<f64>; 2] {
    let mut first = [None, None];
    for send in outcomes.iter().flat_map(|o| &o.sends) {
        let Some(finished) = send.finished.filter(|f| send.served && *f > restart.done) else {
            continue;
        };
        let seconds = finished.duration_since(restart.began).as_secs_f64();
        let slot: &mut Option<f64> = &mut first[send.gateway];
        if slot.is_none_or(|s| seconds < s) {
            *slot = Some(seconds);
        }
    }
    first
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The verdict: counts per payment, from the chain and the upstream.
fn verdict(
    payments: &[Payment],
    outcomes: &[Outcome],
    serves: &HashMap<String, Runs>,
    truth: &ChainTruth,
    probes: &[Payment],
) -> Value {
    let (mut served, mut settled, mut double_settled, mut double_broadcast) = (0, 0, 0, 0);
    let (mut double_served, mut lost, mut unsettled, mut ran_unserved) = (0, 0, 0, 0);
    let mut reruns = 0;
    let mut latencies = Vec::new();
    let mut examples: Vec<Value> = Vec::new();
    for (payment, outcome) in payments.iter().zip(outcomes) {
        let used = truth
            .used
            .get(&(payment.payer, payment.nonce))
            .copied()
            .unwrap_or(0);
        let mined = truth.mined.get(&payment.nonce).copied().unwrap_or(0);
        let runs = serves.get(&payment.tag).copied().unwrap_or_default();
        let deliveries = outcome.sends.iter().filter(|s| s.served).count();
        let delivered = deliveries > 0;
        let mut wrong = Vec::new();
        served += usize::from(delivered);
        settled += usize::from(used > 0);
        if used > 1 {
            double_settled += 1;
            wrong.push("double settlement");
        }
        if mined > 1 {
            double_broadcast += 1;
            wrong.push("broadcast twice");
        }
        // Two copies let through at once, or two answers given out. A run
        // again after a failed settlement (withheld, not charged) is a
        // re-run, counted apart.
        if runs.overlapping > 0 || deliveries > 1 {
            double_served += 1;
            wrong.push("served twice");
        }
        if used > 0 && !delivered {
            lost += 1;
            wrong.push("settled, never served");
        }
        if delivered && used == 0 {
            unsettled += 1;
            wrong.push("served, never settled");
        }
        if runs.total > 0 && !delivered {
            ran_unserved += 1;
        }
        reruns += usize::from(runs.total > 1 && runs.overlapping == 0);
        if let (Some(began), Some(finished)) = (
            outcome.began,
            outcome
                .sends
                .iter()
                .filter(|s| s.served)
                .filter_map(|s| s.finished)
                .min(),
        ) {
            latencies.push(finished.duration_since(began).as_secs_f64() * 1000.0);
        }
        if !wrong.is_empty() && examples.len() < 10 {
            examples.push(json!({
                "nonce": payment.tag,
                "problems": wrong,
                "authorization_used_logs": used,
                "mined_transactions": mined,
                "upstream_runs": runs.total,
                "upstream_overlapping_runs": runs.overlapping,
                "sends": outcome.sends.iter().map(|s| json!({
                    "gateway": s.gateway, "served": s.served,
                    "attempts": s.attempts, "last_status": s.last_status,
                })).collect::<Vec<_>>(),
            }));
        }
    }
    let probe_double = probes
        .iter()
        .filter(|p| truth.mined.get(&p.nonce).copied().unwrap_or(0) > 1)
        .count();
    latencies.sort_by(f64::total_cmp);
    json!({
        "payments_attempted": payments.len(),
        "served": served,
        "refused": payments.len() - served,
        "settled_on_chain": settled,
        "double_settlements": double_settled,
        "double_broadcasts": double_broadcast + probe_double,
        "double_serves": double_served,
        "lost_payments": lost,
        "served_but_unsettled": unsettled,
        "upstream_ran_but_not_served": ran_unserved,
        "upstream_reruns_after_failed_settlement": reruns,
        "p50_ms": percentile(&latencies, 0.50),
        "p99_ms": percentile(&latencies, 0.99),
        "violations": examples,
    })
}

/// Runs the whole scale-out proof; the report's `ok` says whether every
/// invariant held.
pub(crate) async fn run(options: Options) -> Result<Value, String> {
    eprintln!("[1/5] devnet, PostgreSQL ...");
    let devnet = Devnet::start().await.map_err(|e| e.to_string())?;
    let cluster = PgCluster::start().await.map_err(|e| e.to_string())?;
    let dir = crate::temp_dir().map_err(|e| e.to_string())?;
    let keys = signer_keys(&devnet, options.shared_signer).await?;

    eprintln!("[2/5] two facilitators, one upstream, two gateways ...");
    let mut facilitators = Vec::new();
    for (index, key) in keys.iter().enumerate() {
        facilitators.push(
            start_facilitator(&options, &devnet, dir.path(), index, cluster.url(), key).await?,
        );
    }
    let (upstream, serves) = start_upstream().await?;
    let pay_to = Address::random();
    let mut gateways = Vec::new();
    for index in 0..2 {
        let order = [
            facilitators[index].url.as_str(),
            facilitators[1 - index].url.as_str(),
        ];
        gateways.push(
            start_gateway(
                &options,
                dir.path(),
                index,
                cluster.url(),
                devnet.usdc(),
                pay_to,
                &upstream,
                order,
            )
            .await?,
        );
    }
    let required = offer(&gateways[0].url).await?;

    eprintln!("[3/5] signing {} payments ...", options.payments);
    let payments = Arc::new(sign(&devnet, &required, options.payments, 0).await?);
    let probes = sign(&devnet, &required, 2, 3).await?;

    eprintln!("[4/5] load through both gateways ...");
    let restart_after = options
        .db_restart
        .then(|| ((options.payments as f64 * options.restart_at) as usize).min(options.payments));
    let urls = [gateways[0].url.clone(), gateways[1].url.clone()];
    // Each facilitator is probed directly as soon as the restart is done,
    // while the load goes on through the gateways.
    let (restarted, restart_seen) = tokio::sync::oneshot::channel();
    let probe = async {
        match restart_seen.await {
            Ok(began) => {
                probe_facilitators(&facilitators, &probes, &required.accepts[0], began).await
            }
            Err(_) => Vec::new(),
        }
    };
    let load = drive_load(
        &options,
        urls,
        Arc::clone(&payments),
        &cluster,
        restart_after,
        restarted,
    );
    let (load, facilitator_recovery) = tokio::join!(load, probe);
    let (outcomes, seconds, restart) = load?;

    eprintln!("[5/5] reading the truth from the chain ...");
    // Let settlements still in flight at the node land before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let truth = chain_truth(&devnet).await?;
    let serves = serves.lock().map_err(|e| e.to_string())?.clone();
    let mut report = verdict(&payments, &outcomes, &serves, &truth, &probes);
    let served = report["served"].as_u64().unwrap_or_default();
    report["seconds"] = json!(seconds);
    report["served_per_second"] = json!(served as f64 / seconds.max(f64::EPSILON));
    report["concurrency"] = json!(options.concurrency);
    report["shared_signer"] = json!(options.shared_signer);
    report["shared_reservations"] = json!(!options.unshared_reservations);
    report["restart"] = restart_report(restart, &outcomes, &facilitator_recovery);
    let ok = invariants_hold(&report);
    report["ok"] = json!(ok);
    if !ok {
        for instance in facilitators.iter().chain(&gateways) {
            eprintln!(
                "--- {} (last lines of its log) ---\n{}",
                instance.name,
                instance.log_tail(15)
            );
        }
    }
    Ok(report)
}

fn restart_report(
    restart: Option<Restart>,
    outcomes: &[Outcome],
    facilitators: &[Option<f64>],
) -> Value {
    let Some(restart) = restart else {
        return Value::Null;
    };
    let gateways = gateway_recovery(outcomes, &restart);
    json!({
        "pg_ctl_restart_seconds": restart.done.duration_since(restart.began).as_secs_f64(),
        "gateway_first_success_seconds": gateways,
        "facilitator_first_settle_seconds": facilitators,
    })
}

/// Every invariant, and every instance recovered after a restart.
fn invariants_hold(report: &Value) -> bool {
    let zero = |key: &str| report[key].as_u64() == Some(0);
    let counts = [
        "double_settlements",
        "double_broadcasts",
        "double_serves",
        "lost_payments",
        "served_but_unsettled",
    ]
    .iter()
    .all(|key| zero(key));
    let restart = &report["restart"];
    let recovered = restart.is_null()
        || [
            "gateway_first_success_seconds",
            "facilitator_first_settle_seconds",
        ]
        .iter()
        .all(|key| {
            restart[key]
                .as_array()
                .is_some_and(|a| a.iter().all(Value::is_number))
        });
    counts && recovered && report["served"].as_u64().is_some_and(|s| s > 0)
}

async fn signer_keys(devnet: &Devnet, shared: bool) -> Result<Vec<String>, String> {
    let mut keys: Vec<String> = Vec::new();
    for index in 0..2 {
        if shared && index == 1 {
            keys.push(keys[0].clone());
            continue;
        }
        let key = B256::random().to_string();
        let signer = LocalSigner::from_hex(&key).map_err(|e| e.to_string())?;
        devnet
            .set_eth_balance(signer.address(), U256::from(10u128.pow(22)))
            .await
            .map_err(|e| e.to_string())?;
        keys.push(key);
    }
    Ok(keys)
}

/// The gateway's 402 offer for `/paid`.
async fn offer(url: &str) -> Result<PaymentRequired, String> {
    let response = reqwest::get(url).await.map_err(|e| e.to_string())?;
    let header = response
        .headers()
        .get(PAYMENT_REQUIRED_HEADER)
        .ok_or("the gateway's 402 has no PAYMENT-REQUIRED header")?;
    decode_header(header.as_bytes()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_load_mixes_single_and_hostile_sends_over_both_gateways() {
        let kinds: Vec<Kind> = (0..8).map(kind).collect();
        assert_eq!(
            kinds,
            [
                Kind::Single(0),
                Kind::BothGateways,
                Kind::Single(1),
                Kind::Twice(0),
                Kind::Single(0),
                Kind::BothGateways,
                Kind::Single(1),
                Kind::Twice(1),
            ]
        );
    }

    #[test]
    fn any_violation_fails_the_run() {
        let good = json!({
            "served": 10, "double_settlements": 0, "double_broadcasts": 0, "double_serves": 0,
            "lost_payments": 0, "served_but_unsettled": 0, "restart": null,
        });
        assert!(invariants_hold(&good));
        for key in [
            "double_settlements",
            "double_broadcasts",
            "double_serves",
            "lost_payments",
            "served_but_unsettled",
        ] {
            let mut bad = good.clone();
            bad[key] = json!(1);
            assert!(!invariants_hold(&bad), "{key}");
        }
        let mut nothing = good.clone();
        nothing["served"] = json!(0);
        assert!(!invariants_hold(&nothing));
        let mut stuck = good;
        stuck["restart"] = json!({
            "gateway_first_success_seconds": [1.0, null],
            "facilitator_first_settle_seconds": [1.0, 2.0],
        });
        assert!(!invariants_hold(&stuck));
    }
}
