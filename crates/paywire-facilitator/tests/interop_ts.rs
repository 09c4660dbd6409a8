//! Interop: the official TypeScript resource server (`@x402/express` with
//! `HTTPFacilitatorClient`) and TypeScript client (`@x402/fetch`) complete a
//! paid request through OUR facilitator on the devnet, with either ledger.

mod common;

use alloy_primitives::{Address, U256};
use common::*;
use paywire_facilitator::SettlementState;
use paywire_testkit::peer::{TS_SERVER_BODY, TsServer, ts_client_fetch};

both_stores!(ts_server_and_ts_client_pay_through_our_facilitator);

async fn ts_server_and_ts_client_pay_through_our_facilitator(store: TestStore) -> TestResult {
    let stack = Stack::start_with(StackOptions::default().ledger(store)).await?;
    let (devnet, facilitator) = (stack.devnet(), stack.facilitator());
    let payee = Address::random();
    let server = TsServer::start(devnet, &facilitator.base, payee, u128::from(PRICE)).await?;
    let payer = devnet.payer(1);
    let before = balance(devnet, payer.address).await?;

    let response = ts_client_fetch(devnet, payer.private_key, &server.resource_url()).await?;
    assert_eq!(
        response.status,
        200,
        "body {}\n--- TS client log ---\n{}\n--- TS server log ---\n{}",
        response.body,
        response.log,
        server.log_tail()
    );
    assert_eq!(response.body, TS_SERVER_BODY);

    // The payee got the price, the payer paid it, exactly.
    assert_eq!(balance(devnet, payee).await?, U256::from(PRICE));
    assert_eq!(
        balance(devnet, payer.address).await?,
        before - U256::from(PRICE)
    );

    // The SDK decoded our settlement answer; our ledger has it confirmed.
    let settled = response
        .payment_response
        .as_ref()
        .ok_or("no PAYMENT-RESPONSE decoded by the TS client")?;
    assert_eq!(settled["success"], serde_json::json!(true), "{settled}");
    let transaction = settled["transaction"]
        .as_str()
        .ok_or("no transaction in PAYMENT-RESPONSE")?;
    assert_eq!(transaction.len(), 66, "{settled}");
    let record = facilitator
        .state
        .ledger()
        .find_by_transaction(transaction)
        .await?
        .ok_or("the settlement is not in our ledger")?;
    assert_eq!(record.state, SettlementState::Confirmed);
    assert_eq!(record.network, devnet.network());
    assert_eq!(record.attempts, 1);
    assert!(facilitator.state.ledger().unresolved().await?.is_empty());

    // The TS server verified and settled through us, once each.
    let metrics = reqwest::get(facilitator.url("/metrics"))
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("paywire_verify_total{outcome=\"valid\",reason=\"\",network=\"eip155:31337\",scheme=\"exact\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("paywire_settle_total{outcome=\"confirmed\",reason=\"\",network=\"eip155:31337\",scheme=\"exact\"} 1"),
        "{metrics}"
    );
    stack.stop().await;
    Ok(())
}
