//! `/settle` through the real service: a `paywire-facilitator` process on a
//! given ledger, against the devnet, driven with freshly signed payments (the
//! approach of `paywire-bench`'s `/settle` phase).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, U256};
use paywire_core::{
    ChainId, FacilitatorRequest, PaymentPayload, PaymentRequirements, Price, RequirementsRequest,
    SchemeServer,
};
use paywire_evm::exact::{ExactEvmClient, ExactEvmServer};
use paywire_evm::{Eip155ChainId, EvmNetwork, EvmNetworks, LocalSigner};
use paywire_testkit::Devnet;
use serde_json::{Value, json};

/// Latencies of one timed phase.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub count: usize,
    pub errors: usize,
    pub seconds: f64,
    pub latencies_us: Vec<u64>,
}

impl Stats {
    pub fn throughput(&self) -> f64 {
        if self.seconds > 0.0 {
            self.count as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// The `p` quantile in milliseconds (nearest rank).
    pub fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[index.min(sorted.len() - 1)] as f64 / 1000.0
    }

    pub fn to_json(&self) -> Value {
        json!({
            "count": self.count,
            "errors": self.errors,
            "seconds": self.seconds,
            "per_second": self.throughput(),
            "p50_ms": self.percentile(0.50),
            "p90_ms": self.percentile(0.90),
            "p99_ms": self.percentile(0.99),
        })
    }
}

/// Runs `work(i)` for i in 0..total with `concurrency` workers, timing each.
async fn drive<F, Fut>(concurrency: usize, total: usize, work: F) -> Stats
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let work = Arc::new(work);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (work, next) = (Arc::clone(&work), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let began = Instant::now();
                if work(i).await {
                    latencies.push(began.elapsed().as_micros() as u64);
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut stats = Stats::default();
    for task in tasks {
        if let Ok((latencies, errors)) = task.await {
            stats.count += latencies.len();
            stats.latencies_us.extend(latencies);
            stats.errors += errors;
        }
    }
    stats.seconds = start.elapsed().as_secs_f64();
    stats
}

/// The devnet's USDC on anvil, `$0.001` to `pay_to`.
pub fn requirements(usdc: Address, pay_to: Address) -> Result<PaymentRequirements, String> {
    let mut table = EvmNetworks::empty();
    table.insert(EvmNetwork::anvil(usdc));
    let price = Price::Money(paywire_core::Money::parse("$0.001").map_err(|e| e.to_string())?);
    ExactEvmServer::new(table)
        .requirements(&RequirementsRequest {
            network: &ChainId::eip155(31337),
            price: &price,
            pay_to: &pay_to.to_string(),
            max_timeout_seconds: 600,
            facilitator_kind: None,
        })
        .map_err(|e| e.to_string())
}

/// `count` fresh payments, signed in turn by the devnet's eight USDC payers.
pub async fn sign_payments(
    devnet: &Devnet,
    requirements: &PaymentRequirements,
    count: usize,
) -> Result<Vec<FacilitatorRequest>, String> {
    let clients: Vec<_> = (1..=8)
        .map(|i| ExactEvmClient::new(LocalSigner::new(devnet.payer(i).signer())))
        .collect();
    let mut requests = Vec::with_capacity(count);
    for i in 0..count {
        let exact = clients[i % clients.len()]
            .sign(requirements)
            .await
            .map_err(|e| e.to_string())?;
        let payload = PaymentPayload {
            x402_version: 2,
            payload: exact.to_json(),
            extensions: None,
            resource: None,
            accepted: requirements.clone(),
        };
        requests.push(FacilitatorRequest::new(payload, requirements.clone()));
    }
    Ok(requests)
}

/// A running facilitator process (killed on drop).
pub struct FacilitatorProcess {
    child: tokio::process::Child,
    pub url: String,
    /// How long the process took to answer `/health` on this ledger.
    pub startup: Duration,
}

impl FacilitatorProcess {
    /// Stops the process and waits for it to exit, so that the ledger is
    /// free for the next step.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// How to start the facilitator: `--facilitator` (a `paywire-facilitator`
/// binary), else `--paywire` (`paywire facilitator`), else the
/// `paywire-facilitator` binary next to this one, else `paywire` there.
pub fn facilitator_command(
    facilitator: Option<&Path>,
    paywire: Option<&Path>,
) -> Result<(PathBuf, Option<&'static str>), String> {
    if let Some(path) = facilitator {
        return Ok((path.to_path_buf(), None));
    }
    if let Some(path) = paywire {
        return Ok((path.to_path_buf(), Some("facilitator")));
    }
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let dedicated = me.with_file_name("paywire-facilitator");
    if dedicated.exists() {
        return Ok((dedicated, None));
    }
    let sibling = me.with_file_name("paywire");
    if sibling.exists() {
        return Ok((sibling, Some("facilitator")));
    }
    Err(format!(
        "no facilitator binary next to {}; build one (cargo build --release -p paywire-cli) or pass --paywire",
        me.display()
    ))
}

fn facilitator_config(port: u16, store: &str, devnet: &Devnet) -> String {
    format!(
        r#"listen = "127.0.0.1:{port}"
store = "{store}"
receipt_timeout_seconds = 30

[[chains]]
network = "eip155:31337"
rpc_urls = ["{rpc}"]
signer_private_keys = ["${{BENCH_SIGNER_KEY}}"]
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
    )
}

/// Starts the facilitator on the ledger `store` (a SQLite path or a
/// `postgres://` URL) with a fresh funded signer; `dir` holds its config.
pub async fn start_facilitator(
    devnet: &Devnet,
    command: &(PathBuf, Option<&'static str>),
    store: &str,
    dir: &Path,
) -> Result<FacilitatorProcess, String> {
    let signer_key = B256::random().to_string();
    let key = LocalSigner::from_hex(&signer_key).map_err(|e| e.to_string())?;
    devnet
        .set_eth_balance(key.address(), U256::from(10u128.pow(22)))
        .await
        .map_err(|e| e.to_string())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let config_path = dir.join(format!("facilitator-{port}.toml"));
    std::fs::write(&config_path, facilitator_config(port, store, devnet))
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let child = tokio::process::Command::new(&command.0)
        .args(command.1)
        .arg("--config")
        .arg(&config_path)
        .env("BENCH_SIGNER_KEY", signer_key)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", command.0.display()))?;
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    // A large ledger must not slow the start much; allow a minute anyway.
    for _ in 0..2400 {
        if http
            .get(format!("{url}/health"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(FacilitatorProcess {
                child,
                url,
                startup: started.elapsed(),
            });
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Err("the facilitator did not become healthy".into())
}

/// Settles every request through `POST {url}/settle` with `concurrency`
/// workers; a request counts as done when the answer says `success: true`.
pub async fn settle_all(url: &str, requests: Vec<FacilitatorRequest>, concurrency: usize) -> Stats {
    let http = reqwest::Client::new();
    let settle_url = format!("{url}/settle");
    let total = requests.len();
    let requests = Arc::new(requests);
    drive(concurrency, total, move |i| {
        let body = serde_json::to_value(&requests[i]).unwrap_or_default();
        let (http, url) = (http.clone(), settle_url.clone());
        async move {
            match http.post(&url).json(&body).send().await {
                Ok(response) if response.status().is_success() => response
                    .json::<Value>()
                    .await
                    .is_ok_and(|v| v.get("success") == Some(&Value::Bool(true))),
                _ => false,
            }
        }
    })
    .await
}
