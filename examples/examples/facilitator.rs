//! Running the facilitator from your own binary (the `paywire facilitator`
//! command does the same): register the chain plugins it settles with.
//!
//! ```sh
//! cargo run -p paywire-cli -- facilitator --print-config-example > facilitator.toml
//! cargo run -p paywire-examples --example facilitator -- facilitator.toml
//! ```

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: facilitator CONFIG.toml")?;
    let config = paywire_facilitator::FacilitatorConfig::load(std::path::Path::new(&path))?;
    let plugins =
        paywire_core::PluginRegistry::new().with(std::sync::Arc::new(paywire_evm::EvmPlugin));
    paywire_facilitator::run(config, &plugins).await?;
    Ok(())
}
