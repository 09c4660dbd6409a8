//! The gateway on its own: the same reverse proxy as `paywire gateway` in a
//! binary without the CLI's other commands, for deployments that run only
//! this (a smaller image and resident set). Its composition root: the chain
//! plugins whose server sides price the routes, the same as `paywire`'s.
//!
//! Usage: `paywire-gateway --config gateway.toml [--log-format json]`,
//! `paywire-gateway --print-config-example`. Log level from `RUST_LOG`
//! (default `info`); stops on Ctrl-C or SIGTERM after in-flight requests.

use std::process::ExitCode;
use std::sync::Arc;

use paywire_core::PluginRegistry;

#[path = "../runtime.rs"]
mod runtime;
#[path = "../service.rs"]
mod service;

fn main() -> ExitCode {
    let (path, json_logs) =
        match service::parse_args("paywire-gateway", paywire_gateway::example_config()) {
            service::Invocation::Serve { config, json_logs } => (config, json_logs),
            service::Invocation::Exit(code) => return code,
        };
    service::init_logging(json_logs);
    let config = match paywire_gateway::GatewayConfig::load(&path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match runtime::service_runtime(&config.runtime) {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let plugins = PluginRegistry::new()
        .with(Arc::new(paywire_evm::EvmPlugin))
        .with(Arc::new(paywire_svm::SvmPlugin))
        .with(Arc::new(paywire_bank::BankPlugin));
    match runtime.block_on(paywire_gateway::run(config, plugins)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "gateway stopped with an error");
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}
