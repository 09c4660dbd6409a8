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
use paywire_facilitator::FacilitatorConfig;

#[path = "../runtime.rs"]
mod runtime;
#[path = "../service.rs"]
mod service;

fn main() -> ExitCode {
    let service = service::Service {
        name: "paywire-facilitator",
        example: paywire_facilitator::example_config(),
        load: |path| FacilitatorConfig::load(path).map_err(|e| e.to_string()),
        runtime: |config: &FacilitatorConfig| &config.runtime,
    };
    service.serve(|config| async move {
        let plugins = PluginRegistry::new().with(Arc::new(paywire_evm::EvmPlugin));
        paywire_facilitator::run(config, &plugins).await
    })
}
