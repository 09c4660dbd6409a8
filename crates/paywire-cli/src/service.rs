//! What the dedicated service binaries (`paywire-facilitator`,
//! `paywire-gateway`) share: their command line, their logging and their
//! start-up. Included by each binary with `#[path]` (next to `runtime.rs`),
//! so that neither links the all-in-one CLI.

use std::fmt::Display;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use paywire_core::RuntimeConfig;

/// One dedicated service: how it loads its configuration and how it runs.
pub(crate) struct Service<C> {
    /// The binary's name, for usage and version lines.
    pub name: &'static str,
    /// The commented example configuration `--print-config-example` prints.
    pub example: &'static str,
    /// Reads and checks the configuration file.
    pub load: fn(&Path) -> Result<C, String>,
    /// The configuration's `[runtime]` table.
    pub runtime: fn(&C) -> &RuntimeConfig,
}

impl<C> Service<C> {
    /// Parses the arguments, starts logging, loads the configuration and
    /// runs `run` on a runtime built from it until it stops. Exit code 2 on
    /// a usage, configuration or run error.
    pub(crate) fn serve<F, E>(self, run: impl FnOnce(C) -> F) -> ExitCode
    where
        F: Future<Output = Result<(), E>>,
        E: Display,
    {
        let (path, json_logs) = match parse_args(self.name, self.example) {
            Invocation::Serve { config, json_logs } => (config, json_logs),
            Invocation::Exit(code) => return code,
        };
        init_logging(json_logs);
        let started = (self.load)(&path).and_then(|config| {
            let runtime = super::runtime::service_runtime((self.runtime)(&config))?;
            Ok((config, runtime))
        });
        let (config, runtime) = match started {
            Ok(started) => started,
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::from(2);
            }
        };
        match runtime.block_on(run(config)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!(%error, "{} stopped with an error", self.name);
                eprintln!("error: {error}");
                ExitCode::from(2)
            }
        }
    }
}

/// What the command line asks for.
enum Invocation {
    /// Serve with this configuration file.
    Serve {
        /// The TOML configuration file.
        config: PathBuf,
        /// One JSON object per log line instead of text.
        json_logs: bool,
    },
    /// Nothing to serve (help, version, example, or a usage error): exit.
    Exit(ExitCode),
}

/// Parses the service's arguments: `--config FILE`, `--log-format text|json`,
/// `--print-config-example` (prints `example`), `--version`, `--help`.
fn parse_args(name: &str, example: &str) -> Invocation {
    let usage = format!(
        "usage: {name} --config FILE [--log-format text|json]\n       {name} --print-config-example"
    );
    let refuse = |problem: &str| {
        eprintln!("error: {problem}\n{usage}");
        Invocation::Exit(ExitCode::from(2))
    };
    let mut config = None;
    let mut json_logs = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => config = args.next(),
            "--log-format" => match args.next().as_deref() {
                Some("json") => json_logs = true,
                Some("text") => json_logs = false,
                _ => return refuse("--log-format takes text or json"),
            },
            "--print-config-example" => {
                print!("{example}");
                return Invocation::Exit(ExitCode::SUCCESS);
            }
            "--version" | "-V" => {
                println!("{name} {}", env!("CARGO_PKG_VERSION"));
                return Invocation::Exit(ExitCode::SUCCESS);
            }
            "--help" | "-h" => {
                println!("{usage}");
                return Invocation::Exit(ExitCode::SUCCESS);
            }
            other => return refuse(&format!("unknown argument {other:?}")),
        }
    }
    match config {
        Some(path) => Invocation::Serve {
            config: PathBuf::from(path),
            json_logs,
        },
        None => refuse("--config is required"),
    }
}

/// Logs on stderr at the level `RUST_LOG` asks for (default `info`).
fn init_logging(json_logs: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = if json_logs {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    if let Err(error) = installed {
        eprintln!("warning: cannot initialise logging: {error}");
    }
}
