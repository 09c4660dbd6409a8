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
use paywire_gateway::GatewayConfig;

#[path = "../runtime.rs"]
mod runtime;
#[path = "../service.rs"]
mod service;

fn main() -> ExitCode {
    let service = service::Service {
        name: "paywire-gateway",
        example: paywire_gateway::example_config(),
        load: |path| GatewayConfig::load(path).map_err(|e| e.to_string()),
        runtime: |config: &GatewayConfig| &config.runtime,
    };
    service.serve(|config| {
        let plugins = PluginRegistry::new()
            .with(Arc::new(paywire_evm::EvmPlugin))
            .with(Arc::new(paywire_svm::SvmPlugin))
            .with(Arc::new(paywire_bank::BankPlugin));
        paywire_gateway::run(config, plugins)
    })
}
