//! A hostile seller spells Base as `eip155:08453`. Network deny-lists, atomic
//! caps and per-asset budget rules name `eip155:8453`; if the wallet read the
//! leading-zero spelling as chain 8453 it would sign an authorization valid on
//! Base that none of those limits saw. The wallet refuses the spelling, so
//! nothing is signed.

use std::sync::Arc;

use paywire_client::{
    Budget, BudgetRule, BudgetScope, ClientError, PriceCap, SelectionPolicy, X402Client,
};
use paywire_core::{ChainId, ChainIdPattern, PaymentRequired, PaymentRequirements, ResourceInfo};
use paywire_evm::LocalSigner;
use paywire_evm::exact::ExactEvmClient;

const USDC_BASE: &str = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913";
const KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

fn offer(network: &str) -> PaymentRequired {
    let mut extra = serde_json::Map::new();
    extra.insert("name".into(), "USD Coin".into());
    extra.insert("version".into(), "2".into());
    PaymentRequired {
        x402_version: 2,
        error: None,
        resource: ResourceInfo::new("https://seller.example/r"),
        accepts: vec![PaymentRequirements {
            scheme: "exact".into(),
            network: ChainId::parse(network).expect("valid CAIP-2"),
            // 5 USDC: far above every limit below.
            amount: 5_000_000u64.into(),
            asset: USDC_BASE.into(),
            pay_to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into(),
            max_timeout_seconds: 60,
            extra: Some(extra),
        }],
        extensions: None,
    }
}

/// A payer who never wants to pay on Base, and at most 1,000 units of Base USDC.
async fn payer() -> (X402Client, Arc<Budget>) {
    let base = ChainId::parse("eip155:8453").expect("base");
    let policy = SelectionPolicy {
        deny_networks: vec![ChainIdPattern::parse("eip155:8453").expect("pattern")],
        max_per_call: vec![PriceCap::Atomic {
            network: base.clone(),
            asset: USDC_BASE.into(),
            max: 1_000u64.into(),
        }],
        ..SelectionPolicy::default()
    };
    let budget = Arc::new(
        Budget::in_memory(vec![BudgetRule {
            scope: BudgetScope::Asset {
                network: base,
                asset: USDC_BASE.into(),
            },
            per_call: Some(1_000),
            per_hour: None,
            per_day: None,
            total: Some(1_000),
        }])
        .await
        .expect("budget"),
    );
    let signer = LocalSigner::from_hex(KEY).expect("key");
    let client = X402Client::builder()
        .wallet(
            ChainIdPattern::parse("eip155:*").expect("pattern"),
            Arc::new(ExactEvmClient::new(signer)),
        )
        .policy(policy)
        .budget(Arc::clone(&budget))
        .build();
    (client, budget)
}

#[tokio::test]
async fn a_leading_zero_chain_id_is_never_signed_for() {
    let (client, budget) = payer().await;
    assert!(
        client.prepare(&offer("eip155:8453")).await.is_err(),
        "control: the canonical spelling is refused by the policy"
    );
    for spelling in ["eip155:08453", "eip155:008453"] {
        match client.prepare(&offer(spelling)).await {
            Err(ClientError::Signing(_) | ClientError::NoAcceptableOption(_)) => {}
            Err(other) => panic!("{spelling}: refused for an unexpected reason: {other}"),
            Ok(prepared) => panic!(
                "{spelling}: signed a payment the policy and budget never saw: {:?}",
                prepared.payload.accepted
            ),
        }
    }
    let base = BudgetScope::Asset {
        network: ChainId::parse("eip155:8453").expect("base"),
        asset: USDC_BASE.into(),
    };
    assert_eq!(
        budget.outstanding_total(&base).await.expect("outstanding"),
        0
    );
}
