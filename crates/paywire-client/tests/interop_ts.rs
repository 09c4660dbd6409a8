//! Interop with the official x402 TypeScript SDK (2.27.0): our `X402Client` (with the
//! `ExactEvmClient` wallet) pays the official `@x402/express` server, which settles through
//! the official TS facilitator, on anvil with Circle's real USDC.
//!
//! Needs Node.js and npm (the pinned SDK is installed once into the test kit's cache).

use std::sync::Arc;
use std::time::Instant;

use alloy_primitives::{Address, U256};
use paywire_client::{PaymentOutcome, PaymentStatus, X402Client};
use paywire_core::ChainIdPattern;
use paywire_evm::exact::ExactEvmClient;
use paywire_evm::{EvmAsset, EvmNetwork, EvmNetworks, LocalSigner};
use paywire_testkit::Devnet;
use paywire_testkit::peer::{TS_SERVER_BODY, TsFacilitator, TsServer};

/// $0.01 in USDC base units.
const PRICE: u64 = 10_000;

fn network(usdc: Address) -> EvmNetwork {
    EvmNetwork::new(
        31337,
        "Anvil",
        EvmAsset {
            address: usdc,
            symbol: "USDC".into(),
            decimals: 6,
            eip712_name: "USD Coin".into(),
            eip712_version: "2".into(),
            usd_stable: true,
            transfer_method: paywire_evm::TransferMethod::Eip3009,
            eip2612: false,
        },
    )
}

#[tokio::test]
async fn our_client_pays_the_ts_server_through_the_ts_facilitator() {
    let devnet = Devnet::start().await.expect("devnet");
    let started = Instant::now();
    let facilitator = TsFacilitator::start(&devnet, devnet.usdc_owner().private_key)
        .await
        .expect("TS facilitator");
    eprintln!("TS facilitator started in {:?}", started.elapsed());
    let payee = Address::random();
    let started = Instant::now();
    let server = TsServer::start(&devnet, facilitator.url(), payee, u128::from(PRICE))
        .await
        .expect("TS server");
    eprintln!("TS server started in {:?}", started.elapsed());

    let payer = devnet.payer(1);
    let before = devnet.usdc_balance(payer.address).await.expect("balance");
    let mut table = EvmNetworks::empty();
    table.insert(network(devnet.usdc()));
    let client = X402Client::builder()
        .wallet(
            ChainIdPattern::parse("eip155:*").expect("pattern"),
            Arc::new(ExactEvmClient::new(LocalSigner::new(payer.signer()))),
        )
        .catalog(Arc::new(table))
        .build();
    let http = reqwest::Client::new();
    let request = http.get(server.resource_url()).build().expect("request");
    let started = Instant::now();
    let response = client.send(&http, request).await.unwrap_or_else(|e| {
        panic!(
            "paid request failed: {e}\n--- TS server log ---\n{}\n--- TS facilitator log ---\n{}",
            server.log_tail(),
            facilitator.log_tail()
        )
    });
    eprintln!("paid request took {:?}", started.elapsed());
    let status = response.status();
    let outcome = response.extensions().get::<PaymentOutcome>().cloned();
    let body = response.text().await.expect("body");
    assert_eq!(
        status,
        200,
        "body {body}\n--- TS server log ---\n{}\n--- TS facilitator log ---\n{}",
        server.log_tail(),
        facilitator.log_tail()
    );
    assert_eq!(body, TS_SERVER_BODY);
    let outcome = outcome.expect("PaymentOutcome in the response extensions");
    assert_eq!(outcome.status, PaymentStatus::Paid);
    let receipt = outcome.receipt.expect("decoded PAYMENT-RESPONSE");
    assert!(receipt.success, "{receipt:?}");
    assert_eq!(receipt.network.to_string(), devnet.network());
    assert_eq!(
        receipt.payer.as_deref().map(str::to_ascii_lowercase),
        Some(payer.address.to_string().to_ascii_lowercase())
    );
    assert_eq!(receipt.transaction.len(), 66, "{receipt:?}");
    assert_eq!(
        devnet.usdc_balance(payee).await.expect("balance"),
        U256::from(PRICE),
        "payee +price exactly"
    );
    assert_eq!(
        devnet.usdc_balance(payer.address).await.expect("balance"),
        before - U256::from(PRICE),
        "payer -price exactly"
    );
}

/// When the TS facilitator broadcast the settlement but its receipt wait timed out, the
/// TS server answers 402 with a `PAYMENT-RESPONSE` of `{"success": false, "errorReason":
/// "settlement_pending", ...}`; our client reports the payment as pending, not failed.
#[tokio::test]
async fn ts_server_pending_settlement_is_reported_pending() {
    use paywire_testkit::DevnetOptions;
    use paywire_testkit::peer::TsFacilitatorOptions;
    use std::time::Duration;

    let devnet = Devnet::start_with(DevnetOptions {
        automine: false,
        block_time: None,
        ..DevnetOptions::default()
    })
    .await
    .expect("devnet");
    let facilitator = TsFacilitator::start_with(
        &devnet,
        devnet.usdc_owner().private_key,
        TsFacilitatorOptions {
            confirmation_timeout: Some(Duration::from_millis(1500)),
            ..TsFacilitatorOptions::default()
        },
    )
    .await
    .expect("TS facilitator");
    let server = TsServer::start(
        &devnet,
        facilitator.url(),
        Address::random(),
        u128::from(PRICE),
    )
    .await
    .expect("TS server");
    let payer = devnet.payer(2);
    let mut table = EvmNetworks::empty();
    table.insert(network(devnet.usdc()));
    let client = X402Client::builder()
        .wallet(
            ChainIdPattern::parse("eip155:*").expect("pattern"),
            Arc::new(ExactEvmClient::new(LocalSigner::new(payer.signer()))),
        )
        .catalog(Arc::new(table))
        .build();
    let http = reqwest::Client::new();
    let request = http.get(server.resource_url()).build().expect("request");
    let response = client.send(&http, request).await.expect("request");
    assert_eq!(response.status(), 402);
    let outcome = response
        .extensions()
        .get::<PaymentOutcome>()
        .cloned()
        .expect("outcome");
    let receipt = outcome.receipt.expect("PAYMENT-RESPONSE on the 402");
    assert_eq!(
        receipt
            .error_reason
            .as_ref()
            .map(paywire_core::ErrorReason::as_str),
        Some("settlement_pending")
    );
    assert_eq!(outcome.status, PaymentStatus::Pending, "{receipt:?}");
}
