//! The `paywire` command-line tool.
#![forbid(unsafe_code)]

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use paywire_core::codec;

mod bank;
mod demo;
mod discover;
mod mcp;
#[cfg(feature = "otel")]
mod otel;
mod pay;
mod plugins;
mod runtime;
mod wallet;

/// x402 v2 payments from the command line.
#[derive(Parser)]
#[command(name = "paywire", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decode an x402 header (PAYMENT-REQUIRED, PAYMENT-SIGNATURE or
    /// PAYMENT-RESPONSE) and print it as pretty JSON. Reads stdin if no value.
    Decode {
        /// The base64 header value.
        value: Option<String>,
    },
    /// Resolve a network name or CAIP-2 id and print the CAIP-2 id.
    Network {
        /// A friendly name (`base`, `solana-devnet`, …) or a CAIP-2 id.
        name: String,
    },
    /// Make an HTTP request and pay for it if the server answers 402
    /// (curl-like). Body on stdout, a one-line receipt on stderr.
    /// Exit codes: 0 ok, 1 HTTP error, 2 usage, 3 payment refused by policy or
    /// budget, 4 payment not settled (or pending), 5 network error.
    Pay(Box<pay::PayArgs>),
    /// List or search the paid resources a facilitator has cataloged (bazaar
    /// discovery); `--cheapest` prints the lowest-priced way to pay.
    /// Exit codes: 0 ok, 1 request failed, 2 usage, 3 nothing comparable.
    Discover(Box<discover::DiscoverArgs>),
    /// The whole x402 v2 story on this machine with nothing configured: a
    /// devnet with real USDC, our facilitator, a sample paid API and an agent
    /// with a budget. Exits 0 only if every step did what it says.
    Demo,
    /// Start a local EVM chain (anvil) with Circle's real USDC and print its RPC
    /// URL, the USDC address and the funded keys; runs until Ctrl-C.
    Devnet {
        /// Keep the chain's state in this directory across runs.
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Sell an upstream HTTP API for x402 payments: a reverse proxy with
    /// routes, prices and facilitators from a TOML file, until Ctrl-C or SIGTERM.
    Gateway {
        /// The TOML configuration file.
        #[arg(long, short, required_unless_present = "print_config_example")]
        config: Option<PathBuf>,
        /// Print a documented example configuration and exit.
        #[arg(long, conflicts_with = "config")]
        print_config_example: bool,
        /// Log format on stderr.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// MCP: sell a gateway configuration's priced routes as paid MCP tools
    /// (`serve`), pay for one tool call (`call`), list a server's tools
    /// (`tools`).
    #[command(subcommand)]
    Mcp(mcp::McpCommand),
    /// The bank rail's batch operations on a facilitator configuration's
    /// credit network: `collect` (debit file of new purchases), `payout`
    /// (credit transfer file per seller, with totals), `returns --file F`
    /// (import a pain.002 or NACHA returns file).
    /// Exit codes: 0 done, 1 failed, 2 usage.
    #[command(subcommand)]
    Bank(bank::BankCommand),
    /// Run the facilitator service (`/verify`, `/settle`, `/supported`, …)
    /// until Ctrl-C or SIGTERM. Log level from `RUST_LOG` (default `info`).
    Facilitator {
        /// The TOML configuration file.
        #[arg(long, short, required_unless_present = "print_config_example")]
        config: Option<PathBuf>,
        /// Print a documented example configuration and exit.
        #[arg(long, conflicts_with = "config")]
        print_config_example: bool,
        /// Log format on stderr.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
}

/// How logs are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Keeps trace export (feature `otel`) alive; dropping it flushes the spans still buffered. Drop
/// it before the runtime passed to [`init_logging`].
struct Telemetry {
    #[cfg(feature = "otel")]
    _otel: Option<otel::Guard>,
}

/// Logs on stderr, plus OpenTelemetry trace export if built with feature `otel` and
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set (`service` is then the default service name).
fn init_logging(
    format: LogFormat,
    service: &'static str,
    runtime: &tokio::runtime::Handle,
) -> Telemetry {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let mut layers: Vec<Box<dyn tracing_subscriber::Layer<_> + Send + Sync>> = vec![match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    }];
    #[cfg(feature = "otel")]
    let otel = match otel::layer(service, runtime) {
        Ok(Some((layer, guard))) => {
            layers.push(layer);
            Some(guard)
        }
        Ok(None) => None,
        Err(error) => {
            eprintln!("warning: OpenTelemetry trace export disabled: {error}");
            None
        }
    };
    #[cfg(not(feature = "otel"))]
    let _ = (service, runtime, &mut layers);
    let result = tracing_subscriber::registry()
        .with(layers)
        .with(filter)
        .try_init();
    if let Err(error) = result {
        eprintln!("warning: cannot initialise logging: {error}");
    }
    Telemetry {
        #[cfg(feature = "otel")]
        _otel: otel,
    }
}

fn new_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

fn run_facilitator(config: &std::path::Path, log_format: LogFormat) -> Result<(), String> {
    let config = paywire_facilitator::FacilitatorConfig::load(config).map_err(|e| e.to_string())?;
    let runtime = runtime::service_runtime(&config.runtime)?;
    let _telemetry = init_logging(log_format, "paywire-facilitator", runtime.handle());
    runtime.block_on(async {
        paywire_facilitator::run(config, &plugins::registry())
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "facilitator stopped with an error");
                e.to_string()
            })
    })
}

fn run_devnet(state_dir: Option<PathBuf>) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        eprintln!("starting anvil with Circle's USDC (first run installs it from npm) ...");
        let options = paywire_devnet::DevnetOptions {
            state_dir,
            ..paywire_devnet::DevnetOptions::default()
        };
        let devnet = paywire_devnet::Devnet::start_with(options)
            .await
            .map_err(|e| e.to_string())?;
        let usdc = paywire_core::AtomicAmount::from(u128::from(paywire_devnet::INITIAL_USDC_BALANCE));
        println!("paywire devnet: anvil with Circle's FiatTokenV2_2 (USDC)");
        println!("RPC URL   {}", devnet.rpc_url());
        println!("network   {}", devnet.network());
        println!("USDC      {} (EIP-712 name \"USD Coin\", version \"2\", 6 decimals)", devnet.usdc());
        println!(
            "accounts  10,000 ETH each; #1-#8 hold {} USDC; #0 owns USDC (can mint); #9 is the proxy admin",
            usdc.to_decimal_string(6)
        );
        for account in devnet.accounts() {
            println!("  #{} {} key {}", account.index, account.address, account.private_key_hex());
        }
        println!("Ctrl-C to stop");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
        eprintln!("stopping");
        Ok(())
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Pay(args) => Ok(pay::run(*args)),
        Command::Discover(args) => Ok(discover::run(*args)),
        Command::Mcp(command) => Ok(mcp::run(command)),
        Command::Bank(command) => {
            let runtime = new_runtime()?;
            Ok(runtime.block_on(bank::run(command)))
        }
        other => run_simple(other).map(|()| ExitCode::SUCCESS),
    }
}

/// The subcommands that either succeed or fail with exit code 2.
fn run_simple(command: Command) -> Result<(), String> {
    match command {
        Command::Decode { value } => {
            let value = if let Some(value) = value {
                value
            } else {
                let mut buffer = String::new();
                std::io::stdin()
                    .read_to_string(&mut buffer)
                    .map_err(|e| e.to_string())?;
                buffer
            };
            let json: serde_json::Value =
                codec::decode_header(value.trim().as_bytes()).map_err(|e| e.to_string())?;
            let pretty = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
            println!("{pretty}");
            Ok(())
        }
        Command::Facilitator {
            config,
            print_config_example,
            log_format,
        } => {
            if print_config_example {
                print!("{}", paywire_facilitator::example_config());
                return Ok(());
            }
            match config {
                Some(path) => run_facilitator(&path, log_format),
                None => Err("--config is required".into()),
            }
        }
        Command::Pay(_) | Command::Discover(_) | Command::Mcp(_) | Command::Bank(_) => {
            Err("dispatched by run()".into())
        }
        Command::Devnet { state_dir } => run_devnet(state_dir),
        Command::Demo => demo::run(),
        Command::Gateway {
            config,
            print_config_example,
            log_format,
        } => {
            if print_config_example {
                print!("{}", paywire_gateway::example_config());
                return Ok(());
            }
            let path = config.ok_or("--config is required")?;
            let config = paywire_gateway::GatewayConfig::load(&path).map_err(|e| e.to_string())?;
            let runtime = runtime::service_runtime(&config.runtime)?;
            let _telemetry = init_logging(log_format, "paywire-gateway", runtime.handle());
            runtime
                .block_on(paywire_gateway::run(config, plugins::registry()))
                .map_err(|e| e.to_string())
        }
        Command::Network { name } => {
            let chain = plugins::networks()
                .resolve(&name)
                .map_err(|e| e.to_string())?;
            println!("{chain}");
            Ok(())
        }
    }
}
