//! Running the facilitator from your own binary (the `x402 facilitator`
//! command does the same).
//!
//! ```sh
//! cargo run -p x402-cli -- facilitator --print-config-example > facilitator.toml
//! cargo run -p x402-examples --example facilitator -- facilitator.toml
//! ```

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: facilitator CONFIG.toml")?;
    let config = x402_facilitator::FacilitatorConfig::load(std::path::Path::new(&path))?;
    x402_facilitator::run(config).await?;
    Ok(())
}
