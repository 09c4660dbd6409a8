//! The official x402 TypeScript SDK as an interop peer: a facilitator, an express resource
//! server and one-shot fetch clients (EVM, and Solana in [`ts_svm_client_fetch`]), each a small
//! Node script of ours (in `peer/`, next to the pinned `package.json` and `package-lock.json`)
//! that imports the SDK.
//!
//! The npm packages (`@x402/core`, `@x402/evm`, `@x402/express`, `@x402/extensions`,
//! `@x402/fetch`, `@x402/svm` 2.27.0, `@solana/kit`, `express`, `viem`) are installed with `npm ci` from the committed lock file into
//! `<cache>/npm-peer-<hash>` ([`peer_prefix`], the cache of [`crate::install::cache_dir`]),
//! once per lock file and under a `flock`, so concurrent test binaries install only once.
//!
//! ```no_run
//! # async fn demo() -> Result<(), paywire_testkit::DevnetError> {
//! use alloy_primitives::Address;
//! use paywire_testkit::Devnet;
//! use paywire_testkit::peer::{TsFacilitator, TsServer, ts_client_fetch};
//!
//! let devnet = Devnet::start().await?;
//! let facilitator = TsFacilitator::start(&devnet, devnet.usdc_owner().private_key).await?;
//! let server = TsServer::start(&devnet, facilitator.url(), Address::repeat_byte(0xbe), 10_000).await?;
//! let paid = ts_client_fetch(&devnet, devnet.payer(1).private_key, &server.resource_url()).await?;
//! assert_eq!(paid.status, 200);
//! # Ok(()) }
//! ```
//!
//! Processes are killed when their handle is dropped (and get SIGKILL through
//! `PR_SET_PDEATHSIG` when the test process dies hard). Their stdout and stderr go to a
//! log file in a temp dir, whose tail is part of every error; after a panic it is kept.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, hex, keccak256};
use serde::Deserialize;
use serde_json::{Value, json};

use paywire_devnet::install::cache_dir;
use paywire_devnet::support::{lock, make_temp_dir, spawn_tied_to_process, tail, write_atomic};
use paywire_devnet::{Devnet, DevnetError, Result, USDC_NAME, USDC_VERSION};

mod metered;
mod siwx;
mod svm;
pub use metered::TsMeteredServer;
pub use siwx::{TsExchange, TsSiwxResponse, ts_siwx_fetch};
pub use svm::{TS_SVM_NETWORKS, TsSvmFetchResponse, ts_svm_client_fetch};

/// The pinned `package.json` of the peer scripts.
pub const PACKAGE_JSON: &str = include_str!("../peer/package.json");
/// The committed `package-lock.json` the peer packages are installed from (`npm ci`).
pub const PACKAGE_LOCK: &str = include_str!("../peer/package-lock.json");
/// The pinned version of the `@x402/*` packages.
pub const PAYWIRE_SDK_VERSION: &str = "2.27.0";

const FACILITATOR_SCRIPT: Script = Script {
    name: "facilitator",
    source: include_str!("../peer/facilitator.mjs"),
};
const SERVER_SCRIPT: Script = Script {
    name: "server",
    source: include_str!("../peer/server.mjs"),
};
const CLIENT_SCRIPT: Script = Script {
    name: "client",
    source: include_str!("../peer/client.mjs"),
};
const LOAD_CLIENT_SCRIPT: Script = Script {
    name: "load-client",
    source: include_str!("../peer/load-client.mjs"),
};

/// Environment variable: the `node` executable to run (default `node` on `PATH`).
pub const ENV_NODE: &str = "PAYWIRE_NODE";

/// The route [`TsServer`] sells.
pub const TS_SERVER_ROUTE: &str = "/weather";
/// The JSON body [`TsServer`] answers a paid `GET /weather` with.
pub const TS_SERVER_BODY: &str = r#"{"report":{"weather":"sunny","temperature":70}}"#;

/// How long a Node process may take to print `READY <port>`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long [`ts_client_fetch`] may take.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);
/// How often viem polls for receipts in the TS facilitator (its default is 4 s).
const FACILITATOR_POLLING_MS: u64 = 50;
const LOG_TAIL_LINES: usize = 40;
const MARKER: &str = ".paywire-testkit-installed";

struct Script {
    name: &'static str,
    source: &'static str,
}

/// The hash naming the install directory: the first 8 bytes of keccak-256 over
/// `package.json` and `package-lock.json`, as hex.
fn lock_hash() -> String {
    let mut bytes = Vec::with_capacity(PACKAGE_JSON.len() + PACKAGE_LOCK.len() + 1);
    bytes.extend_from_slice(PACKAGE_JSON.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(PACKAGE_LOCK.as_bytes());
    hex::encode(&keccak256(&bytes)[..8])
}

/// Where the peer packages are installed: `<cache>/npm-peer-<hash of package.json and
/// package-lock.json>`.
pub fn peer_prefix() -> Result<PathBuf> {
    Ok(cache_dir()?.join(format!("npm-peer-{}", lock_hash())))
}

fn is_installed(prefix: &Path) -> bool {
    prefix.join(MARKER).is_file()
        && prefix
            .join("node_modules/@x402/core/package.json")
            .is_file()
}

/// Makes sure the pinned peer packages are installed (`npm ci` from the committed lock file
/// into [`peer_prefix`]) and returns that directory. Cheap when they are; otherwise takes a
/// lock file so that concurrent test processes install only once.
pub async fn install_peer_packages() -> Result<PathBuf> {
    let prefix = peer_prefix()?;
    if is_installed(&prefix) {
        return Ok(prefix);
    }
    let cache = cache_dir()?;
    let _lock = lock(&cache.join(format!("install-npm-peer-{}.lock", lock_hash()))).await?;
    if is_installed(&prefix) {
        return Ok(prefix);
    }
    fs::create_dir_all(&prefix)
        .map_err(|e| DevnetError::io(format!("creating {}", prefix.display()), e))?;
    write_atomic(&prefix.join("package.json"), PACKAGE_JSON.as_bytes())?;
    write_atomic(&prefix.join("package-lock.json"), PACKAGE_LOCK.as_bytes())?;
    let output = tokio::process::Command::new("npm")
        .arg("ci")
        .args(["--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&prefix)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await;
    let output = match output {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(DevnetError::Unexpected(format!(
                "`npm` was not found on PATH; the paywire test kit needs it once to install the \
                 official x402 TypeScript SDK (pinned in crates/paywire-testkit/peer) into {}",
                prefix.display()
            )));
        }
        Err(e) => return Err(DevnetError::io("running npm ci", e)),
    };
    if !output.status.success() {
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        return Err(DevnetError::NpmInstall {
            prefix,
            status: output.status.to_string(),
            output: tail(&text, 40),
        });
    }
    if !prefix
        .join("node_modules/@x402/core/package.json")
        .is_file()
    {
        return Err(DevnetError::Unexpected(format!(
            "npm ci succeeded but {}/node_modules/@x402/core is missing",
            prefix.display()
        )));
    }
    write_atomic(&prefix.join(MARKER), b"ok\n")?;
    Ok(prefix)
}

/// Installs the packages if needed and writes `script` next to them (named by its content
/// hash, so edits never clash with scripts other processes are running). Returns its path.
async fn script_path(script: &Script) -> Result<PathBuf> {
    let prefix = install_peer_packages().await?;
    let hash = hex::encode(&keccak256(script.source.as_bytes())[..6]);
    let path = prefix.join(format!("{}-{hash}.mjs", script.name));
    if !path.is_file() {
        write_atomic(&path, script.source.as_bytes())?;
    }
    Ok(path)
}

fn node_binary() -> PathBuf {
    std::env::var_os(ENV_NODE)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("node"), PathBuf::from)
}

/// A Node process with its log directory.
#[derive(Debug)]
struct NodeProcess {
    what: &'static str,
    child: Option<Child>,
    dir: PathBuf,
    log: PathBuf,
    keep_dir: bool,
}

impl NodeProcess {
    /// Runs `node <script> <config JSON>` with stdout and stderr going to `<tmp>/<name>.log`
    /// (or stdout to `<tmp>/<name>.out` with `separate_stdout`).
    async fn spawn(
        what: &'static str,
        script: &Script,
        config: &Value,
        separate_stdout: bool,
    ) -> Result<Self> {
        let path = script_path(script).await?;
        let dir = make_temp_dir()?;
        let log = dir.join(format!("{}.log", script.name));
        let err = File::create(&log)
            .map_err(|e| DevnetError::io(format!("creating {}", log.display()), e))?;
        let out = if separate_stdout {
            let out_path = dir.join(format!("{}.out", script.name));
            File::create(&out_path)
                .map_err(|e| DevnetError::io(format!("creating {}", out_path.display()), e))?
        } else {
            err.try_clone()
                .map_err(|e| DevnetError::io("duplicating the log file handle", e))?
        };
        let node = node_binary();
        let mut cmd = Command::new(&node);
        cmd.arg(&path)
            .arg(config.to_string())
            .current_dir(path.parent().unwrap_or(Path::new(".")))
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        match spawn_tied_to_process(cmd).await {
            Ok(child) => Ok(Self {
                what,
                child: Some(child),
                dir,
                log,
                keep_dir: false,
            }),
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                let context = if e.kind() == std::io::ErrorKind::NotFound {
                    format!(
                        "spawning the {what}: `{}` not found (install Node.js 20+ or set {ENV_NODE})",
                        node.display()
                    )
                } else {
                    format!("spawning the {what} ({})", node.display())
                };
                Err(DevnetError::io(context, e))
            }
        }
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        tail(&self.log_text(), LOG_TAIL_LINES)
    }

    fn error(&mut self, reason: String) -> DevnetError {
        self.keep_dir = true;
        DevnetError::Unexpected(format!(
            "{}: {reason}\n--- tail of {} (kept) ---\n{}",
            self.what,
            self.log.display(),
            self.log_tail()
        ))
    }

    fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            return Err(DevnetError::Unexpected(format!(
                "the {} is not running",
                self.what
            )));
        };
        let status = child
            .try_wait()
            .map_err(|e| DevnetError::io(format!("polling the {}", self.what), e))?;
        if status.is_some() {
            self.child = None;
        }
        Ok(status)
    }

    /// Waits for a `READY <port>` line in the log; returns the port.
    async fn wait_ready(&mut self) -> Result<u16> {
        let started = Instant::now();
        loop {
            let text = self.log_text();
            if let Some(port) = text
                .lines()
                .find_map(|line| line.strip_prefix("READY "))
                .and_then(|rest| rest.trim().parse::<u16>().ok())
            {
                return Ok(port);
            }
            if let Some(status) = self.try_wait()? {
                return Err(self.error(format!("exited before it was ready ({status})")));
            }
            if started.elapsed() > STARTUP_TIMEOUT {
                return Err(self.error(format!(
                    "did not print `READY <port>` within {STARTUP_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for the process to exit.
    async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            if started.elapsed() > timeout {
                return Err(self.error(format!("did not finish within {timeout:?}")));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            self.keep_dir = true;
            eprintln!(
                "paywire-testkit: the {} stopped during a panic; its log is kept at {}",
                self.what,
                self.log.display()
            );
        }
        if !self.keep_dir {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// How [`TsFacilitator::start_with`] configures the TS facilitator.
#[derive(Clone, Debug)]
pub struct TsFacilitatorOptions {
    /// How often viem polls for a receipt (default 50 ms; viem's own default is 4 s).
    pub polling_interval: Duration,
    /// `toFacilitatorEvmSigner`'s `confirmationTimeoutMs`: how long a settlement waits for
    /// its receipt before answering `settlement_pending` (default: the SDK's, 180 s).
    pub confirmation_timeout: Option<Duration>,
    /// Also serve the `upto` scheme (`UptoEvmScheme` from `@x402/evm/upto/facilitator`), with
    /// the signer as `facilitatorAddress` (default false: `/supported` lists `exact` only).
    pub upto: bool,
    /// Do not log every request and answer (default false). A load measurement sets it:
    /// the script's `JSON.stringify` of every body would otherwise dominate.
    pub quiet: bool,
}

impl Default for TsFacilitatorOptions {
    fn default() -> Self {
        Self {
            polling_interval: Duration::from_millis(FACILITATOR_POLLING_MS),
            confirmation_timeout: None,
            upto: false,
            quiet: false,
        }
    }
}

/// The official TS facilitator (`x402Facilitator` + `registerExactEvmScheme` from
/// `@x402/evm/exact/facilitator`, over a viem wallet client on the devnet RPC, polling
/// receipts every 50 ms by default) serving `GET /supported`, `POST /verify` and `POST /settle` on
/// `127.0.0.1`. Errors thrown by the SDK are answered with 500 `{"error": message}`.
/// Killed on drop.
#[derive(Debug)]
pub struct TsFacilitator {
    process: NodeProcess,
    url: String,
    port: u16,
    signer: Address,
}

impl TsFacilitator {
    /// Starts it for the devnet's network (`eip155:31337`), settling from `signer_key`'s
    /// account, which needs ETH for gas and must not be USDC's proxy admin (#9). Dev
    /// account #0 works (it holds ETH and may call token functions).
    pub async fn start(devnet: &Devnet, signer_key: B256) -> Result<Self> {
        Self::start_with(devnet, signer_key, TsFacilitatorOptions::default()).await
    }

    /// Like [`TsFacilitator::start`], with `options`.
    pub async fn start_with(
        devnet: &Devnet,
        signer_key: B256,
        options: TsFacilitatorOptions,
    ) -> Result<Self> {
        let signer = alloy_signer_local::PrivateKeySigner::from_bytes(&signer_key)
            .map_err(|e| DevnetError::Unexpected(format!("bad facilitator key: {e}")))?
            .address();
        let config = json!({
            "rpcUrl": devnet.rpc_url(),
            "privateKey": hex::encode_prefixed(signer_key),
            "network": devnet.network(),
            "pollingIntervalMs": u64::try_from(options.polling_interval.as_millis()).unwrap_or(u64::MAX),
            "confirmationTimeoutMs": options
                .confirmation_timeout
                .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            "upto": options.upto,
            "quiet": options.quiet,
        });
        let mut process =
            NodeProcess::spawn("TS facilitator", &FACILITATOR_SCRIPT, &config, false).await?;
        let port = process.wait_ready().await?;
        Ok(Self {
            process,
            url: format!("http://127.0.0.1:{port}"),
            port,
            signer,
        })
    }

    /// The base URL, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address it settles from.
    pub fn signer(&self) -> Address {
        self.signer
    }

    /// The Node process id.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The log file (stdout and stderr; it logs every request and answer unless quiet).
    pub fn log_path(&self) -> &Path {
        &self.process.log
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// Keeps the log directory after drop.
    pub fn keep_log(&mut self) {
        self.process.keep_dir = true;
    }
}

/// How [`TsServer::start_with`] configures the TS resource server.
#[derive(Clone, Debug, Default)]
pub struct TsServerOptions {
    /// Do not log every request (default false); for load measurements.
    pub quiet: bool,
}

/// The official TS resource server: `@x402/express` `paymentMiddleware` with
/// `x402ResourceServer(new HTTPFacilitatorClient({url}))` and `ExactEvmScheme` from
/// `@x402/evm/exact/server` registered for the devnet's network, selling one route,
/// `GET /weather` ([`TS_SERVER_ROUTE`]), priced `{amount, asset: USDC, extra: {name:
/// "USD Coin", version: "2"}}` and answering [`TS_SERVER_BODY`]. Ready once an unpaid
/// request was answered 402. Killed on drop.
#[derive(Debug)]
pub struct TsServer {
    process: NodeProcess,
    url: String,
    port: u16,
}

impl TsServer {
    /// Starts it, paid to `pay_to`, `price_atomic` USDC base units per request, with the
    /// facilitator at `facilitator_url`.
    pub async fn start(
        devnet: &Devnet,
        facilitator_url: &str,
        pay_to: Address,
        price_atomic: u128,
    ) -> Result<Self> {
        Self::start_with(
            devnet,
            facilitator_url,
            pay_to,
            price_atomic,
            TsServerOptions::default(),
        )
        .await
    }

    /// Like [`TsServer::start`], with `options`.
    pub async fn start_with(
        devnet: &Devnet,
        facilitator_url: &str,
        pay_to: Address,
        price_atomic: u128,
        options: TsServerOptions,
    ) -> Result<Self> {
        let config = json!({
            "facilitatorUrl": facilitator_url,
            "network": devnet.network(),
            "payTo": pay_to.to_string(),
            "amount": price_atomic.to_string(),
            "asset": devnet.usdc().to_string(),
            "eip712Name": USDC_NAME,
            "eip712Version": USDC_VERSION,
            "quiet": options.quiet,
        });
        let mut process = NodeProcess::spawn("TS server", &SERVER_SCRIPT, &config, false).await?;
        let port = process.wait_ready().await?;
        Ok(Self {
            process,
            url: format!("http://127.0.0.1:{port}"),
            port,
        })
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The paid resource, `http://127.0.0.1:PORT/weather`.
    pub fn resource_url(&self) -> String {
        format!("{}{TS_SERVER_ROUTE}", self.url)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The Node process id.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The log file (it logs every request with its `PAYMENT-SIGNATURE` and the answer's
    /// status and `PAYMENT-RESPONSE`).
    pub fn log_path(&self) -> &Path {
        &self.process.log
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// Keeps the log directory after drop.
    pub fn keep_log(&mut self) {
        self.process.keep_dir = true;
    }
}

/// What [`ts_client_fetch`] got back (after paying, if the server asked for payment).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TsFetchResponse {
    /// The final HTTP status.
    pub status: u16,
    /// The final body as text.
    pub body: String,
    /// The final `PAYMENT-RESPONSE` header, if any (base64 JSON `SettleResponse`).
    pub payment_response_header: Option<String>,
    /// The SDK's own decoding of that header (`x402HTTPClient.getPaymentSettleResponse`:
    /// a base64 check and `JSON.parse`), if there was one and it decoded.
    pub payment_response: Option<Value>,
    /// Why the SDK could not decode the `PAYMENT-RESPONSE` header, if it could not.
    pub payment_response_error: Option<String>,
    /// The final `PAYMENT-REQUIRED` header, if any.
    pub payment_required_header: Option<String>,
    /// All final response headers (lowercase names).
    pub headers: BTreeMap<String, String>,
    /// The client's stderr (the SDK's own logging), for diagnostics.
    #[serde(skip)]
    pub log: String,
}

/// One request to `url` with the official TS client: `wrapFetchWithPayment(fetch,
/// x402Client.fromConfig({schemes: [{network, client: new ExactEvmScheme(account)}],
/// spendControls: {allowedAssets: [{network, asset: USDC, maxAmountPerPayment:
/// "1000000"}]}}))`, paying from `payer_key` (e.g. `devnet.payer(1).private_key`).
/// Takes about 0.5–1 s (Node start-up). A thrown client error is an `Err` with its log.
pub async fn ts_client_fetch(
    devnet: &Devnet,
    payer_key: B256,
    url: &str,
) -> Result<TsFetchResponse> {
    ts_client_fetch_asset(devnet, payer_key, url, devnet.usdc()).await
}

/// [`ts_client_fetch`] allowing `asset` instead of USDC (e.g. a devnet test token paid with
/// Permit2). The client has the `exact` and the `upto` EVM schemes.
pub async fn ts_client_fetch_asset(
    devnet: &Devnet,
    payer_key: B256,
    url: &str,
    asset: Address,
) -> Result<TsFetchResponse> {
    let config = json!({
        "url": url,
        "privateKey": hex::encode_prefixed(payer_key),
        "network": devnet.network(),
        "asset": asset.to_string(),
        "maxAmountPerPayment": "1000000",
        "method": "GET",
    });
    let mut process = NodeProcess::spawn("TS client", &CLIENT_SCRIPT, &config, true).await?;
    let status = process.wait_exit(CLIENT_TIMEOUT).await?;
    let out_path = process.dir.join(format!("{}.out", CLIENT_SCRIPT.name));
    let out = fs::read_to_string(&out_path).unwrap_or_default();
    if !status.success() {
        return Err(process.error(format!("failed ({status}); stdout: {}", tail(&out, 5))));
    }
    let Some(line) = out.lines().rev().find(|l| l.starts_with('{')) else {
        return Err(process.error(format!("printed no JSON result; stdout: {}", tail(&out, 5))));
    };
    let mut response: TsFetchResponse = serde_json::from_str(line)
        .map_err(|e| process.error(format!("printed a malformed result ({e}): {line}")))?;
    response.log = process.log_text();
    Ok(response)
}

/// What [`ts_client_load`] measured.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TsLoadReport {
    /// Requests attempted.
    pub requests: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Requests that ended 200 with a `PAYMENT-RESPONSE` header.
    pub ok: usize,
    /// The others (refused, failed or thrown).
    pub errors: usize,
    /// Wall time of the whole load, in seconds (Node start-up excluded).
    pub seconds: f64,
    /// `ok / seconds`.
    pub per_second: f64,
    /// The latency of every successful request, in milliseconds, in completion order.
    pub latencies_ms: Vec<f64>,
    /// The first error seen, if any.
    pub first_error: Option<String>,
}

/// `requests` paid `GET url` requests at `concurrency` from ONE Node process with the
/// official TS client (`wrapFetchWithPayment` + `x402Client.fromConfig` with
/// `ExactEvmScheme`, USDC allowed up to 1 USDC per payment); worker `w` pays from
/// `payer_keys[w % len]`. For throughput figures: [`ts_client_fetch`] starts Node per request.
pub async fn ts_client_load(
    devnet: &Devnet,
    payer_keys: &[B256],
    url: &str,
    requests: usize,
    concurrency: usize,
) -> Result<TsLoadReport> {
    if payer_keys.is_empty() {
        return Err(DevnetError::Unexpected(
            "ts_client_load needs at least one payer key".into(),
        ));
    }
    let config = json!({
        "url": url,
        "privateKeys": payer_keys.iter().map(hex::encode_prefixed).collect::<Vec<_>>(),
        "network": devnet.network(),
        "asset": devnet.usdc().to_string(),
        "maxAmountPerPayment": "1000000",
        "requests": requests,
        "concurrency": concurrency,
    });
    let mut process =
        NodeProcess::spawn("TS load client", &LOAD_CLIENT_SCRIPT, &config, true).await?;
    // A generous bound: a second per request on top of the one-shot client's.
    let timeout = CLIENT_TIMEOUT + Duration::from_secs(u64::try_from(requests).unwrap_or(0));
    let status = process.wait_exit(timeout).await?;
    let out_path = process.dir.join(format!("{}.out", LOAD_CLIENT_SCRIPT.name));
    let out = fs::read_to_string(&out_path).unwrap_or_default();
    if !status.success() {
        return Err(process.error(format!("failed ({status}); stdout: {}", tail(&out, 5))));
    }
    let Some(line) = out.lines().rev().find(|l| l.starts_with('{')) else {
        return Err(process.error(format!("printed no JSON result; stdout: {}", tail(&out, 5))));
    };
    serde_json::from_str(line)
        .map_err(|e| process.error(format!("printed a malformed result ({e}): {line}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_exact_and_the_lock_matches_them() {
        let package: Value = serde_json::from_str(PACKAGE_JSON).unwrap();
        let lock: Value = serde_json::from_str(PACKAGE_LOCK).unwrap();
        let deps = package["dependencies"].as_object().unwrap();
        for name in [
            "@x402/core",
            "@x402/evm",
            "@x402/express",
            "@x402/extensions",
            "@x402/fetch",
            "@x402/svm",
            "@solana/kit",
            "express",
            "viem",
        ] {
            let pinned = deps[name].as_str().unwrap();
            assert!(
                pinned.chars().all(|c| c.is_ascii_digit() || c == '.'),
                "{name} must be pinned exactly, not {pinned:?}"
            );
            assert_eq!(lock["packages"][""]["dependencies"][name], pinned, "{name}");
            assert_eq!(
                lock["packages"][format!("node_modules/{name}")]["version"],
                pinned,
                "{name}"
            );
        }
        assert_eq!(deps["@x402/core"], PAYWIRE_SDK_VERSION);
        assert_eq!(lock_hash().len(), 16);
    }

    /// The load client (`load-client.mjs`) pays every request it reports as ok: the payee's
    /// USDC balance is exactly `ok` times the price; the quiet peers still answer (they only
    /// stop logging every request).
    #[tokio::test]
    async fn the_load_client_pays_each_request_it_counts() -> Result<()> {
        const PRICE: u128 = 1_000;
        const REQUESTS: usize = 3;
        let devnet = Devnet::start().await?;
        let quiet = TsFacilitatorOptions {
            quiet: true,
            ..TsFacilitatorOptions::default()
        };
        let facilitator =
            TsFacilitator::start_with(&devnet, devnet.usdc_owner().private_key, quiet).await?;
        let payee = Address::repeat_byte(0x5e);
        let options = TsServerOptions { quiet: true };
        let server =
            TsServer::start_with(&devnet, facilitator.url(), payee, PRICE, options).await?;
        // One worker: one TS facilitator signer settles concurrent payments with colliding
        // nonces (the SDK's behaviour, which the load tool reports as errors).
        let keys = [devnet.payer(2).private_key, devnet.payer(3).private_key];
        let report = ts_client_load(&devnet, &keys, &server.resource_url(), REQUESTS, 1).await?;

        assert_eq!(
            (report.ok, report.errors),
            (REQUESTS, 0),
            "{report:#?}\n{}",
            facilitator.log_tail()
        );
        assert_eq!(report.latencies_ms.len(), REQUESTS);
        assert!(report.latencies_ms.iter().all(|ms| *ms > 0.0));
        assert_eq!(
            devnet.usdc_balance(payee).await?,
            alloy_primitives::U256::from(PRICE) * alloy_primitives::U256::from(REQUESTS)
        );
        assert!(
            !facilitator.log_tail().contains("settle request:"),
            "a quiet facilitator logged a request"
        );
        Ok(())
    }
}
