//! Running the facilitator from your own binary (the `paywire facilitator`
//! command does the same).
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
    paywire_facilitator::run(config).await?;
    Ok(())
}
