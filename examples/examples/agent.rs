//! An agent that pays for what it fetches, within a policy and a persisted
//! budget.
//!
//! ```sh
//! PAYWIRE_PRIVATE_KEY=0x... cargo run -p paywire-examples --example agent -- http://127.0.0.1:3000/report
//! ```

use std::sync::Arc;

use paywire_client::{
    Budget, BudgetRule, PaymentOutcome, PriceCap, SelectionPolicy, X402Client, X402Middleware,
};
use paywire_core::{ChainIdPattern, Money, NetworkClass};
use paywire_evm::exact::ExactEvmClient;
use paywire_evm::{EvmNetworks, LocalSigner};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args().nth(1).ok_or("usage: agent URL")?;
    let wallet = LocalSigner::from_hex(&std::env::var("PAYWIRE_PRIVATE_KEY")?)?;

    // "Prefer Base, testnets only, never more than 5 cents a call."
    let policy = SelectionPolicy {
        prefer_networks: vec![ChainIdPattern::parse("base-sepolia")?],
        network_class: Some(NetworkClass::Testnet),
        max_per_call: vec![PriceCap::Usd(Money::parse("$0.05")?)],
        ..SelectionPolicy::default()
    };
    // At most $1 a day, remembered across restarts (micro-dollars).
    let budget = Budget::open(
        "agent-budget.db",
        vec![BudgetRule {
            per_day: Some(1_000_000),
            ..BudgetRule::usd()
        }],
    )
    .await?;
    let client = X402Client::builder()
        .wallet(
            ChainIdPattern::namespace("eip155")?,
            Arc::new(ExactEvmClient::new(wallet)),
        )
        .catalog(Arc::new(EvmNetworks::well_known()))
        .policy(policy)
        .budget(Arc::new(budget))
        .build();

    let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(X402Middleware::new(Arc::new(client)))
        .build();
    let response = http.get(&url).send().await?;
    if let Some(outcome) = response.extensions().get::<PaymentOutcome>() {
        eprintln!("paid {:?}: {:?}", outcome.status, outcome.receipt);
    }
    println!("{}", response.text().await?);
    Ok(())
}
