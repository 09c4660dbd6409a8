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

#[path = "../runtime.rs"]
mod runtime;
#[path = "../service.rs"]
mod service;

fn main() -> ExitCode {
    let (path, json_logs) =
        match service::parse_args("paywire-facilitator", paywire_facilitator::example_config()) {
            service::Invocation::Serve { config, json_logs } => (config, json_logs),
            service::Invocation::Exit(code) => return code,
        };
    service::init_logging(json_logs);
    let config = match paywire_facilitator::FacilitatorConfig::load(&path) {
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
