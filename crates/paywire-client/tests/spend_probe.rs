//! `paywire_evm::exact::ExactEvmSpendProbe` against anvil with Circle's real
//! USDC: it releases only what the chain proves can never be executed.

use paywire_evm::Eip155ChainId;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{Address, U256};
use paywire_core::{
    ChainId, Facilitator, FacilitatorRequest, LocalFacilitator, PaymentPayload,
    PaymentRequirements, ResourceInfo, SpendProbe, SpendState, X402_VERSION,
};
use paywire_evm::exact::{EvmChainConfig, ExactEvmClient, ExactEvmFacilitator, ExactEvmSpendProbe};
use paywire_evm::rpc::RpcClient;
use paywire_evm::{EvmNetwork, EvmSigner, LocalSigner};
use paywire_testkit::Devnet;

const MAX_TIMEOUT: u64 = 60;
const MARGIN: u64 = 120;

fn rpc(devnet: &Devnet) -> Arc<RpcClient> {
    Arc::new(
        RpcClient::new(vec![devnet.rpc_url().to_owned()], Duration::from_secs(10)).expect("rpc"),
    )
}

fn requirements(devnet: &Devnet, network: ChainId) -> PaymentRequirements {
    let mut extra = serde_json::Map::new();
    extra.insert("name".into(), "USD Coin".into());
    extra.insert("version".into(), "2".into());
    PaymentRequirements {
        scheme: "exact".into(),
        network,
        amount: 10_000u64.into(),
        asset: devnet.usdc().to_string(),
        pay_to: Address::random().to_string(),
        max_timeout_seconds: MAX_TIMEOUT,
        extra: Some(extra),
    }
}

/// A payment signed by dev payer `payer`, valid for [`MAX_TIMEOUT`] seconds
/// from the chain's current time.
async fn signed(devnet: &Devnet, payer: usize, network: ChainId) -> PaymentPayload {
    let chain_now = devnet.block_timestamp().await.expect("block time");
    let wallet = ExactEvmClient::new(LocalSigner::new(devnet.payer(payer).signer()))
        .with_clock(Arc::new(move || chain_now));
    let accepted = requirements(devnet, network);
    let payload = wallet.sign(&accepted).await.expect("sign").to_json();
    PaymentPayload {
        x402_version: X402_VERSION,
        payload,
        extensions: None,
        resource: Some(ResourceInfo::new("https://api.example.test/r")),
        accepted,
    }
}

fn probe(devnet: &Devnet) -> ExactEvmSpendProbe {
    ExactEvmSpendProbe::new().network(ChainId::eip155(31337), rpc(devnet))
}

#[tokio::test]
async fn unused_is_unspent_only_after_valid_before_and_the_margin() {
    let devnet = Devnet::start().await.expect("devnet");
    let payment = signed(&devnet, 1, ChainId::eip155(31337)).await;
    let probe = probe(&devnet);
    assert_eq!(
        probe.probe(&payment).await,
        SpendState::Unknown,
        "still valid"
    );
    devnet.increase_time(MAX_TIMEOUT + 10).await.expect("time");
    assert_eq!(
        probe.probe(&payment).await,
        SpendState::Unknown,
        "expired, but within the reorg margin"
    );
    devnet.increase_time(MARGIN).await.expect("time");
    assert_eq!(probe.probe(&payment).await, SpendState::Unspent);
    let short = ExactEvmSpendProbe::new()
        .network(ChainId::eip155(31337), rpc(&devnet))
        .reorg_margin(0);
    assert_eq!(short.probe(&payment).await, SpendState::Unspent);
}

#[tokio::test]
async fn a_settled_authorization_is_spent() {
    let devnet = Devnet::start().await.expect("devnet");
    let key = LocalSigner::random();
    devnet
        .set_eth_balance(key.address(), U256::from(10u128.pow(21)))
        .await
        .expect("fund");
    let keys: Vec<Arc<dyn EvmSigner>> = vec![Arc::new(key)];
    let evm = ExactEvmFacilitator::builder()
        .chain(EvmChainConfig::new(
            EvmNetwork::anvil(devnet.usdc()),
            rpc(&devnet),
            keys,
        ))
        .build()
        .expect("facilitator");
    let mut facilitator = LocalFacilitator::new();
    facilitator.register(Arc::new(evm));
    let payment = signed(&devnet, 2, ChainId::eip155(31337)).await;
    let request = FacilitatorRequest::new(payment.clone(), payment.accepted.clone());
    let settled = facilitator.settle(&request).await.expect("settle");
    assert!(settled.success, "{settled:?}");
    assert_eq!(probe(&devnet).probe(&payment).await, SpendState::Spent);
    // Spent stays spent, also long after validBefore.
    devnet
        .increase_time(MAX_TIMEOUT + MARGIN + 10)
        .await
        .expect("time");
    assert_eq!(probe(&devnet).probe(&payment).await, SpendState::Spent);
}

/// Whatever the probe cannot judge is `Unknown`, never `Unspent`: an
/// unconfigured network, a node serving another chain, another scheme, an
/// unreachable node.
#[tokio::test]
async fn what_it_cannot_judge_is_unknown() {
    let devnet = Devnet::start().await.expect("devnet");
    let base = ChainId::eip155(8453);
    let on_base = signed(&devnet, 3, base.clone()).await;
    let on_anvil = signed(&devnet, 3, ChainId::eip155(31337)).await;
    devnet
        .increase_time(MAX_TIMEOUT + MARGIN + 10)
        .await
        .expect("time");
    assert_eq!(probe(&devnet).probe(&on_anvil).await, SpendState::Unspent);

    assert_eq!(
        probe(&devnet).probe(&on_base).await,
        SpendState::Unknown,
        "no node for that network"
    );
    let misconfigured = ExactEvmSpendProbe::new().network(base, rpc(&devnet));
    assert_eq!(
        misconfigured.probe(&on_base).await,
        SpendState::Unknown,
        "the node serves chain 31337, not 8453"
    );
    let mut other_scheme = on_anvil.clone();
    other_scheme.accepted.scheme = "upto".into();
    assert_eq!(
        probe(&devnet).probe(&other_scheme).await,
        SpendState::Unknown
    );
    let unreachable = RpcClient::new(
        vec!["http://127.0.0.1:9/".to_owned()],
        Duration::from_secs(2),
    )
    .expect("rpc");
    let offline = ExactEvmSpendProbe::new().network(ChainId::eip155(31337), Arc::new(unreachable));
    assert_eq!(offline.probe(&on_anvil).await, SpendState::Unknown);
}
