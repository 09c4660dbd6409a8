//! The facilitator service on its own: the same service as `paywire facilitator`
//! in a binary without the CLI's other commands, for deployments that run
//! only this (a smaller image and a smaller resident set: the code the
//! process maps is a fraction of the all-in-one `paywire` binary's). Its
//! composition root: the chain plugins it settles with, registered below.
//!
//! Usage: `paywire-facilitator --config facilitator.toml [--log-format json]`,
//! `paywire-facilitator --print-config-example`. Log level from `RUST_LOG`
//! (default `info`); stops on Ctrl-C or SIGTERM after in-flight settlements.

use std::process::ExitCode;
use std::sync::Arc;

use paywire_core::PluginRegistry;

const USAGE: &str = "usage: paywire-facilitator --config FILE [--log-format text|json]\n       paywire-facilitator --print-config-example";

fn main() -> ExitCode {
    let mut config = None;
    let mut json_logs = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => config = args.next(),
            "--log-format" => match args.next().as_deref() {
                Some("json") => json_logs = true,
                Some("text") => json_logs = false,
                _ => return usage("--log-format takes text or json"),
            },
            "--print-config-example" => {
                print!("{}", paywire_facilitator::example_config());
                return ExitCode::SUCCESS;
            }
            "--version" | "-V" => {
                println!("paywire-facilitator {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => return usage(&format!("unknown argument {other:?}")),
        }
    }
    let Some(path) = config else {
        return usage("--config is required");
    };
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
    let config = match paywire_facilitator::FacilitatorConfig::load(std::path::Path::new(&path)) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let plugins = PluginRegistry::new().with(Arc::new(paywire_evm::EvmPlugin));
    match runtime.block_on(paywire_facilitator::run(config, &plugins)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "facilitator stopped with an error");
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("error: {problem}\n{USAGE}");
    ExitCode::from(2)
}
