//! The official x402 Python SDK's MCP integration (`x402.mcp`, PyPI `x402` 2.25.0 with
//! `mcp` 1.30.0) as an interop peer: a paid-tool MCP server ([`PyMcpServer`], also over stdio:
//! [`PyMcpStdioServer`]) and a one-call paying MCP client ([`py_mcp_call`]), each a small
//! Python script of ours (in `peer/python/`) that imports the SDK.
//!
//! The SDK lives in a virtualenv outside the clone: `$PAYWIRE_PYTHON` ([`ENV_PYTHON`], default
//! `~/.cache/paywire-py`), installed from the pinned `peer/python/requirements.txt` by
//! `peer/python/install.sh` (CI runs it from `.ci/run`). Tests do not install it: a missing or
//! stale venv is [`PeerError::NotInstalled`], whose message says how to install it; only with
//! `PAYWIRE_SKIP_PYTHON_PEER=1` ([`ENV_SKIP`]) does [`python_or_skip`] turn that into a loud
//! skip.
//!
//! ```no_run
//! # async fn demo() -> Result<(), paywire_testkit::pymcp::PeerError> {
//! use alloy_primitives::Address;
//! use paywire_testkit::Devnet;
//! use paywire_testkit::pymcp::{PyMcpCallOptions, PyMcpServer, PyMcpServerOptions, py_mcp_call};
//!
//! let devnet = Devnet::start().await?;
//! # let facilitator_url = "http://127.0.0.1:1";
//! let options = PyMcpServerOptions::new(&devnet, facilitator_url, Address::repeat_byte(0xbe), 10_000);
//! let server = PyMcpServer::start(&options).await?;
//! let call = py_mcp_call(
//!     server.url(),
//!     "get_weather",
//!     serde_json::json!({"city": "Lisbon"}),
//!     devnet.payer(1).private_key,
//!     &PyMcpCallOptions::new(&devnet),
//! )
//! .await?;
//! assert!(call.payment_made && !call.is_error);
//! # Ok(()) }
//! ```
//!
//! Processes are killed when their handle is dropped (and get SIGKILL through
//! `PR_SET_PDEATHSIG` when the test process dies hard). Their stderr goes to a log file in a
//! temp dir, whose tail is part of every error; after a panic it is kept.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, hex, keccak256};
use serde::Deserialize;
use serde_json::{Value, json};

use paywire_devnet::support::{make_temp_dir, spawn_tied_to_process, tail, write_atomic};
use paywire_devnet::{Devnet, DevnetError, USDC_NAME, USDC_VERSION};

/// Environment variable: the virtualenv holding the pinned Python SDK (default
/// `$HOME/.cache/paywire-py`); its interpreter is `<venv>/bin/python`.
pub const ENV_PYTHON: &str = "PAYWIRE_PYTHON";
/// Environment variable that, set to `1`, lets Python-peer tests skip when the venv is
/// missing or stale (local runs only; CI installs it and never sets this).
pub const ENV_SKIP: &str = "PAYWIRE_SKIP_PYTHON_PEER";
/// The command (from the repository root) that installs the venv.
pub const INSTALL_COMMAND: &str = "bash crates/paywire-testkit/peer/python/install.sh";
/// The pinned requirements the venv must have been installed from.
pub const REQUIREMENTS: &str = include_str!("../peer/python/requirements.txt");
/// The pinned version of the `x402` Python package.
pub const X402_PYTHON_VERSION: &str = "2.25.0";
/// The pinned version of the `mcp` Python package (below 2: see `requirements.txt`).
pub const MCP_PYTHON_VERSION: &str = "1.30.0";
/// Where install.sh records the requirements it installed, inside the venv.
const MARKER: &str = "paywire-requirements.txt";

/// The tool [`PyMcpServer`] sells unless told otherwise; arguments `{"city": string}`.
pub const PY_PAID_TOOL: &str = "get_weather";
/// The free tool [`PyMcpServer`] serves unless told otherwise; arguments `{"message": string}`,
/// answers the message as text.
pub const PY_FREE_TOOL: &str = "ping";

const SERVER_SCRIPT: Script = Script {
    name: "mcp_server",
    source: include_str!("../peer/python/mcp_server.py"),
};
const CLIENT_SCRIPT: Script = Script {
    name: "mcp_client",
    source: include_str!("../peer/python/mcp_client.py"),
};
const RELAY_SCRIPT: Script = Script {
    name: "stdio_relay",
    source: include_str!("../peer/python/stdio_relay.py"),
};

/// How long the server may take to print `READY <port>` (Python imports web3: ~3 s).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long [`py_mcp_call`] may take.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);
const LOG_TAIL_LINES: usize = 40;

/// What can go wrong running the Python peer. Its `Debug` is its message (with the install
/// hint or the log tail), because tests report errors returned from `main`-like test
/// functions through `Debug`.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The venv is missing, or was installed from other requirements.
    #[error(
        "the x402 Python SDK peer is not installed in {venv}: {reason}. Install it with \
         `{INSTALL_COMMAND}` (into ${ENV_PYTHON}, default ~/.cache/paywire-py), or set \
         {ENV_SKIP}=1 to skip the Python interop tests locally"
    )]
    NotInstalled {
        /// The virtualenv that was looked at.
        venv: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A Python process failed, did not get ready, or printed something unexpected.
    #[error("{what}: {reason}\n--- tail of {log} ---\n{log_tail}")]
    Process {
        /// Which peer process.
        what: &'static str,
        /// What went wrong.
        reason: String,
        /// Its log file (kept).
        log: PathBuf,
        /// The last lines of the log.
        log_tail: String,
    },
    /// A file or process operation of the kit failed.
    #[error(transparent)]
    Devnet(#[from] DevnetError),
}

impl std::fmt::Debug for PeerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// `Result` with [`PeerError`].
pub type Result<T, E = PeerError> = std::result::Result<T, E>;

struct Script {
    name: &'static str,
    source: &'static str,
}

/// The virtualenv: `$PAYWIRE_PYTHON`, else `$HOME/.cache/paywire-py`.
pub fn venv_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(ENV_PYTHON).filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("/nonexistent-home"), PathBuf::from);
    home.join(".cache").join("paywire-py")
}

/// The venv's interpreter, after checking that the venv was installed from [`REQUIREMENTS`].
pub fn python() -> Result<PathBuf> {
    let venv = venv_dir();
    let python = venv.join("bin").join("python");
    let missing = |reason: String| PeerError::NotInstalled {
        venv: venv.clone(),
        reason,
    };
    if !python.is_file() {
        return Err(missing(format!("{} does not exist", python.display())));
    }
    match fs::read_to_string(venv.join(MARKER)) {
        Ok(recorded) if recorded == REQUIREMENTS => Ok(python),
        Ok(_) => Err(missing(
            "it was installed from other requirements than peer/python/requirements.txt".into(),
        )),
        Err(_) => Err(missing(format!(
            "{MARKER} is missing (the install did not finish)"
        ))),
    }
}

/// True when `PAYWIRE_SKIP_PYTHON_PEER=1`.
pub fn skip_requested() -> bool {
    std::env::var(ENV_SKIP).is_ok_and(|v| v == "1")
}

/// [`python`], or `None` after a loud notice on stderr when the venv is missing and
/// `PAYWIRE_SKIP_PYTHON_PEER=1` is set. Tests call this first and return on `None`.
pub fn python_or_skip() -> Result<Option<PathBuf>> {
    match python() {
        Ok(path) => Ok(Some(path)),
        Err(error @ PeerError::NotInstalled { .. }) if skip_requested() => {
            eprintln!(
                "\n!!! SKIPPING a Python interop test: {error}. {ENV_SKIP}=1 is set; CI does not \
                 skip. !!!\n"
            );
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// Writes `script` into `<venv>/paywire-scripts/` named by its content hash (so an edited
/// script never replaces one another test process is running) and returns its path.
fn script_path(script: &Script) -> Result<PathBuf> {
    let dir = venv_dir().join("paywire-scripts");
    let hash = hex::encode(&keccak256(script.source.as_bytes())[..6]);
    let path = dir.join(format!("{}-{hash}.py", script.name));
    if !path.is_file() {
        fs::create_dir_all(&dir)
            .map_err(|e| DevnetError::io(format!("creating {}", dir.display()), e))?;
        write_atomic(&path, script.source.as_bytes())?;
    }
    Ok(path)
}

/// A Python process with its log directory.
#[derive(Debug)]
struct PyProcess {
    what: &'static str,
    child: Option<Child>,
    dir: PathBuf,
    log: PathBuf,
    out: PathBuf,
    keep_dir: bool,
}

impl PyProcess {
    /// Runs `python <script> <args>` with stderr to `<tmp>/<name>.log` and stdout to
    /// `<tmp>/<name>.out`.
    async fn spawn(what: &'static str, script: &Script, args: &[String]) -> Result<Self> {
        let python = python()?;
        let path = script_path(script)?;
        let dir = make_temp_dir()?;
        let log = dir.join(format!("{}.log", script.name));
        let out = dir.join(format!("{}.out", script.name));
        let files = File::create(&log).and_then(|l| Ok((l, File::create(&out)?)));
        let (log_file, out_file) = match files {
            Ok(files) => files,
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(
                    DevnetError::io(format!("creating logs in {}", dir.display()), e).into(),
                );
            }
        };
        let mut cmd = Command::new(&python);
        cmd.arg(&path)
            .args(args)
            .env("PYTHONUNBUFFERED", "1")
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out_file))
            .stderr(Stdio::from(log_file));
        match spawn_tied_to_process(cmd).await {
            Ok(child) => Ok(Self {
                what,
                child: Some(child),
                dir,
                log,
                out,
                keep_dir: false,
            }),
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                Err(
                    DevnetError::io(format!("spawning the {what} ({})", python.display()), e)
                        .into(),
                )
            }
        }
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn out_text(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn error(&mut self, reason: String) -> PeerError {
        self.keep_dir = true;
        PeerError::Process {
            what: self.what,
            reason,
            log: self.log.clone(),
            log_tail: tail(&self.log_text(), LOG_TAIL_LINES),
        }
    }

    fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            return Err(self.error("it is not running".into()));
        };
        let status = child
            .try_wait()
            .map_err(|e| DevnetError::io(format!("polling the {}", self.what), e))?;
        if status.is_some() {
            self.child = None;
        }
        Ok(status)
    }

    /// Waits for a `READY <port>` line on stdout; returns the port.
    async fn wait_ready(&mut self) -> Result<u16> {
        let started = Instant::now();
        loop {
            if let Some(port) = self
                .out_text()
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
            tokio::time::sleep(Duration::from_millis(20)).await;
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
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for PyProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        keep_or_remove(self.what, &self.dir, &self.log, self.keep_dir);
    }
}

/// Removes a peer's log directory, unless asked to keep it or a panic is unwinding.
fn keep_or_remove(what: &str, dir: &Path, log: &Path, keep: bool) {
    if std::thread::panicking() {
        eprintln!(
            "paywire-testkit: the {what} stopped during a panic; its log is kept at {}",
            log.display()
        );
    } else if !keep {
        let _ = fs::remove_dir_all(dir);
    }
}

/// Counts `TOOL_RUN <tool> ...` lines in a server log.
fn count_tool_runs(log: &str, tool: &str) -> usize {
    log.lines()
        .filter_map(|line| line.split_once(" TOOL_RUN "))
        .filter(|(_, rest)| rest.split(' ').next() == Some(tool))
        .count()
}

/// The JSON after `marker` on every log line carrying it.
fn logged_json(log: &str, marker: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|line| line.split_once(marker))
        .filter_map(|(_, json)| serde_json::from_str(json.trim()).ok())
        .collect()
}

/// How [`PyMcpServer`] prices and names its tools.
#[derive(Clone, Debug)]
pub struct PyMcpServerOptions {
    /// The facilitator's base URL (`HTTPFacilitatorClient`): `/supported`, `/verify`, `/settle`.
    pub facilitator_url: String,
    /// The CAIP-2 network, `eip155:<chain id>`.
    pub network: String,
    /// Who is paid.
    pub pay_to: Address,
    /// The price in atomic units of `asset`.
    pub amount: u128,
    /// The token (EIP-3009 `exact`).
    pub asset: Address,
    /// The token's EIP-712 domain name (`extra.name`).
    pub eip712_name: String,
    /// The token's EIP-712 domain version (`extra.version`).
    pub eip712_version: String,
    /// The paid tool's name (default [`PY_PAID_TOOL`]).
    pub paid_tool: String,
    /// The free tool's name (default [`PY_FREE_TOOL`]).
    pub free_tool: String,
    /// The payment-required `resource.url` (default: the SDK's `mcp://tool/<paid tool>`).
    pub resource_url: Option<String>,
    /// `maxTimeoutSeconds` of the requirements (default 300).
    pub max_timeout_seconds: u64,
    /// When set, the paid tool's body (after it logged its run, so after verification) waits
    /// until this file exists: a test acts between verification and settlement, then creates it.
    pub pause_file: Option<PathBuf>,
}

impl PyMcpServerOptions {
    /// The devnet's USDC on its network, `amount` atomic units per call to `pay_to`, settled by
    /// the facilitator at `facilitator_url`.
    pub fn new(devnet: &Devnet, facilitator_url: &str, pay_to: Address, amount: u128) -> Self {
        Self {
            facilitator_url: facilitator_url.to_owned(),
            network: devnet.network().to_owned(),
            pay_to,
            amount,
            asset: devnet.usdc(),
            eip712_name: USDC_NAME.to_owned(),
            eip712_version: USDC_VERSION.to_owned(),
            paid_tool: PY_PAID_TOOL.to_owned(),
            free_tool: PY_FREE_TOOL.to_owned(),
            resource_url: None,
            max_timeout_seconds: 300,
            pause_file: None,
        }
    }

    fn config(&self, transport: &str, log_file: Option<&Path>) -> Value {
        json!({
            "facilitatorUrl": self.facilitator_url,
            "network": self.network,
            "payTo": self.pay_to.to_string(),
            "amount": self.amount.to_string(),
            "asset": self.asset.to_string(),
            "eip712Name": self.eip712_name,
            "eip712Version": self.eip712_version,
            "paidTool": self.paid_tool,
            "freeTool": self.free_tool,
            "resourceUrl": self.resource_url,
            "maxTimeoutSeconds": self.max_timeout_seconds,
            "transport": transport,
            "logFile": log_file,
            "pauseFile": self.pause_file,
        })
    }
}

/// The Python SDK's paid-tool server: FastMCP (mcp 1.30.0) on streamable HTTP at
/// `http://127.0.0.1:<port>/mcp`, the paid tool wrapped by `x402.mcp.create_payment_wrapper`
/// over `x402ResourceServer(HTTPFacilitatorClient)` with `ExactEvmServerScheme` (requirements
/// from `build_payment_requirements`), and a free tool. Ready once it listens (the facilitator's
/// `/supported` was read before). Killed on drop.
#[derive(Debug)]
pub struct PyMcpServer {
    process: PyProcess,
    url: String,
    port: u16,
}

impl PyMcpServer {
    /// Starts it with `options`.
    pub async fn start(options: &PyMcpServerOptions) -> Result<Self> {
        let config = options.config("http", None).to_string();
        let mut process = PyProcess::spawn("Python MCP server", &SERVER_SCRIPT, &[config]).await?;
        let port = process.wait_ready().await?;
        Ok(Self {
            process,
            url: format!("http://127.0.0.1:{port}/mcp"),
            port,
        })
    }

    /// The streamable HTTP endpoint, `http://127.0.0.1:PORT/mcp`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many times the body of `tool` ran (the script logs each run).
    pub fn tool_runs(&self, tool: &str) -> usize {
        count_tool_runs(&self.process.log_text(), tool)
    }

    /// Every `SettleResponse` its `on_after_settlement` hook saw, in order.
    pub fn settlements(&self) -> Vec<Value> {
        logged_json(&self.process.log_text(), " SETTLED ")
    }

    /// The payment requirements it built at start-up (`accepts`).
    pub fn accepts(&self) -> Option<Value> {
        logged_json(&self.process.log_text(), " ACCEPTS ").pop()
    }

    /// Its log (stderr).
    pub fn log_path(&self) -> &Path {
        &self.process.log
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        tail(&self.process.log_text(), LOG_TAIL_LINES)
    }

    /// Keeps the log directory after drop.
    pub fn keep_log(&mut self) {
        self.process.keep_dir = true;
    }
}

/// The same server over stdio: a command line for an MCP client to spawn (e.g.
/// `PayingMcpClient::connect_stdio`). The script appends its log lines to a log file (and
/// [`Self::command`] sends its stderr there too); the log directory is removed when this is
/// dropped (kept after a panic).
#[derive(Debug)]
pub struct PyMcpStdioServer {
    python: PathBuf,
    args: Vec<String>,
    dir: PathBuf,
    log: PathBuf,
}

impl PyMcpStdioServer {
    /// Prepares the command for `options` (nothing runs yet).
    pub fn new(options: &PyMcpServerOptions) -> Result<Self> {
        let python = python()?;
        let script = script_path(&SERVER_SCRIPT)?;
        let dir = make_temp_dir()?;
        let log = dir.join("mcp_server.log");
        Ok(Self {
            python,
            args: vec![
                script.to_string_lossy().into_owned(),
                options.config("stdio", Some(&log)).to_string(),
            ],
            dir,
            log,
        })
    }

    /// A fresh command running the server on its stdin/stdout (stderr appended to the log,
    /// killed when the child handle is dropped). A spawner may replace the stderr setting
    /// (rmcp's `TokioChildProcess::new` inherits it); the script's own log lines, which
    /// [`Self::tool_runs`] reads, go to the log file either way.
    pub fn command(&self) -> Result<tokio::process::Command> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| DevnetError::io(format!("opening {}", self.log.display()), e))?;
        let mut cmd = tokio::process::Command::new(&self.python);
        cmd.args(&self.args)
            .env("PYTHONUNBUFFERED", "1")
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        Ok(cmd)
    }

    /// The program and arguments, for clients that take a command line.
    pub fn command_line(&self) -> Vec<String> {
        let mut line = vec![self.python.to_string_lossy().into_owned()];
        line.extend(self.args.iter().cloned());
        line
    }

    /// How many times the body of `tool` ran, over every process started from [`Self::command`].
    pub fn tool_runs(&self, tool: &str) -> usize {
        count_tool_runs(&self.log_text(), tool)
    }

    /// Every `SettleResponse` its `on_after_settlement` hook saw.
    pub fn settlements(&self) -> Vec<Value> {
        logged_json(&self.log_text(), " SETTLED ")
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for PyMcpStdioServer {
    fn drop(&mut self) {
        keep_or_remove("Python MCP stdio server", &self.dir, &self.log, false);
    }
}

/// How [`py_mcp_call`] pays.
#[derive(Clone, Debug)]
pub struct PyMcpCallOptions {
    /// The network the `exact` EVM client scheme is registered for.
    pub network: String,
    /// The (non-default) asset its spend controls allow.
    pub asset: Address,
    /// The spend controls' cap for that asset, atomic units (default 1 000 000).
    pub max_amount_per_payment: u128,
    /// `x402MCPSession(auto_payment=...)` (default true): false answers the payment-required
    /// result as is.
    pub auto_payment: bool,
}

impl PyMcpCallOptions {
    /// The devnet's network and USDC, capped at 1 USDC, paying automatically.
    pub fn new(devnet: &Devnet) -> Self {
        Self {
            network: devnet.network().to_owned(),
            asset: devnet.usdc(),
            max_amount_per_payment: 1_000_000,
            auto_payment: true,
        }
    }
}

/// What [`py_mcp_call`] saw: the final tool result, and what the SDK made of it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PyMcpCall {
    /// The final result's `isError`.
    pub is_error: bool,
    /// The final result's `content`.
    pub content: Vec<Value>,
    /// The final result's `structuredContent`.
    pub structured_content: Option<Value>,
    /// The final result's `_meta`.
    pub meta: Option<Value>,
    /// Whether the SDK paid (sent a second call with `_meta["x402/payment"]`).
    pub payment_made: bool,
    /// The SDK's parse of `_meta["x402/payment-response"]` (a `SettleResponse`, or the raw
    /// value when it did not validate).
    pub payment_response: Option<Value>,
    /// Whether `payment_response` validated as the SDK's `SettleResponse`.
    pub payment_response_valid: bool,
    /// The SDK's own reading of the final result as a payment-required result
    /// (`structuredContent`, else `content[0].text`), when it is an error; `None` when the SDK
    /// does not see one.
    pub payment_required: Option<Value>,
    /// The `PaymentPayload` the SDK signed (as sent in `_meta["x402/payment"]`).
    pub payment_payload: Option<Value>,
    /// The tool names `tools/list` returned.
    pub tools: Vec<String>,
    /// An exception the SDK raised (then the other fields are empty).
    pub error: Option<String>,
    /// The client's stderr, for diagnostics.
    #[serde(skip)]
    pub log: String,
}

impl PyMcpCall {
    /// The text of the first content block, if it is text.
    pub fn text(&self) -> Option<&str> {
        self.content.first()?.get("text")?.as_str()
    }
}

/// One `tools/list` and one call of `tool(arguments)` at the streamable HTTP endpoint `url`,
/// with `x402.mcp.x402MCPSession` over an mcp `ClientSession`, an `x402Client` with the `exact`
/// EVM client scheme for `payer_key` and spend controls allowing `options.asset`. The SDK calls
/// without payment first and, on a payment-required result, signs and calls again with the
/// payment in `_meta`. Takes 3–5 s (Python start-up).
pub async fn py_mcp_call(
    url: &str,
    tool: &str,
    arguments: Value,
    payer_key: B256,
    options: &PyMcpCallOptions,
) -> Result<PyMcpCall> {
    run_client(json!({"url": url}), tool, arguments, payer_key, options).await
}

/// [`py_mcp_call`] over the stdio transport: the SDK spawns `command` (program and arguments,
/// e.g. [`PyMcpStdioServer::command_line`]) and talks MCP over its stdin/stdout.
pub async fn py_mcp_call_stdio(
    command: &[String],
    tool: &str,
    arguments: Value,
    payer_key: B256,
    options: &PyMcpCallOptions,
) -> Result<PyMcpCall> {
    run_client(
        json!({"command": command}),
        tool,
        arguments,
        payer_key,
        options,
    )
    .await
}

/// The stdio command line of a relay (`peer/python/stdio_relay.py`) that pipes its stdin and
/// stdout to a TCP connection to `127.0.0.1:port`: lets [`py_mcp_call_stdio`] reach an MCP
/// server a test serves in-process on a socket with the stdio transport's framing.
pub fn stdio_relay_command(port: u16) -> Result<Vec<String>> {
    let python = python()?;
    let script = script_path(&RELAY_SCRIPT)?;
    Ok(vec![
        python.to_string_lossy().into_owned(),
        script.to_string_lossy().into_owned(),
        port.to_string(),
    ])
}

async fn run_client(
    target: Value,
    tool: &str,
    arguments: Value,
    payer_key: B256,
    options: &PyMcpCallOptions,
) -> Result<PyMcpCall> {
    let mut config = json!({
        "tool": tool,
        "arguments": arguments,
        "privateKey": hex::encode_prefixed(payer_key),
        "network": options.network,
        "asset": options.asset.to_string(),
        "maxAmountPerPayment": options.max_amount_per_payment.to_string(),
        "autoPayment": options.auto_payment,
    });
    if let (Some(config), Value::Object(target)) = (config.as_object_mut(), target) {
        config.extend(target);
    }
    let args: Vec<String> = vec![config.to_string()];
    let mut process = PyProcess::spawn("Python MCP client", &CLIENT_SCRIPT, &args).await?;
    let status = process.wait_exit(CLIENT_TIMEOUT).await?;
    let out = process.out_text();
    if !status.success() {
        return Err(process.error(format!("failed ({status}); stdout: {}", tail(&out, 5))));
    }
    let Some(line) = out.lines().rev().find(|l| l.starts_with('{')) else {
        return Err(process.error(format!("printed no JSON result; stdout: {}", tail(&out, 5))));
    };
    let mut call: PyMcpCall = serde_json::from_str(line)
        .map_err(|e| process.error(format!("printed a malformed result ({e}): {line}")))?;
    call.log = process.log_text();
    Ok(call)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_pin_every_package_exactly() {
        let pins: Vec<&str> = REQUIREMENTS
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        assert!(pins.len() > 20, "the full dependency closure is pinned");
        for pin in &pins {
            let (name, version) = pin.split_once("==").expect("every line is name==version");
            assert!(
                !name.is_empty() && !name.contains(['<', '>', '~', '!']),
                "{pin}"
            );
            assert!(
                version
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.'),
                "{pin} must be an exact version"
            );
        }
        assert!(pins.contains(&format!("x402[evm,mcp]=={X402_PYTHON_VERSION}").as_str()));
        assert!(pins.contains(&format!("mcp=={MCP_PYTHON_VERSION}").as_str()));
    }

    #[test]
    fn tool_runs_and_logged_json_are_read_from_the_log() {
        let log = "t0 TOOL_RUN get_weather {\"city\": \"x\"}\n\
                   t1 TOOL_RUN ping {}\n\
                   t2 TOOL_RUN get_weather_2 {}\n\
                   t3 SETTLED {\"success\":true}\n\
                   t4 SETTLED not json\n\
                   t5 TOOL_RUN get_weather {}\n";
        assert_eq!(count_tool_runs(log, "get_weather"), 2);
        assert_eq!(count_tool_runs(log, "ping"), 1);
        assert_eq!(count_tool_runs(log, "other"), 0);
        assert_eq!(
            logged_json(log, " SETTLED "),
            vec![json!({"success": true})]
        );
    }
}
