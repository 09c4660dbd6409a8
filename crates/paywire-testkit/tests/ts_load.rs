//! The load client (`peer/load-client.mjs`, run by `ts_client_load`) pays every request it
//! reports as ok: the payee's USDC balance on the devnet is exactly `ok` times the price, and
//! the quiet TS facilitator and server still answer (they only stop logging every request).

use alloy_primitives::{Address, U256};
use paywire_testkit::Devnet;
use paywire_testkit::peer::{
    TsFacilitator, TsFacilitatorOptions, TsServer, TsServerOptions, ts_client_load,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const PRICE: u128 = 1_000;
const REQUESTS: usize = 3;

#[tokio::test]
async fn the_load_client_pays_each_request_it_counts() -> TestResult {
    let devnet = Devnet::start().await?;
    let quiet = TsFacilitatorOptions {
        quiet: true,
        ..TsFacilitatorOptions::default()
    };
    let facilitator =
        TsFacilitator::start_with(&devnet, devnet.usdc_owner().private_key, quiet).await?;
    let payee = Address::random();
    let server = TsServer::start_with(
        &devnet,
        facilitator.url(),
        payee,
        PRICE,
        TsServerOptions { quiet: true },
    )
    .await?;
    // One worker: a single TS facilitator signer settles concurrent payments with
    // colliding nonces (the SDK's behaviour, which the load tool reports as errors).
    let keys = [devnet.payer(2).private_key, devnet.payer(3).private_key];
    let report = ts_client_load(&devnet, &keys, &server.resource_url(), REQUESTS, 1).await?;

    assert_eq!(
        (report.ok, report.errors),
        (REQUESTS, 0),
        "{report:#?}\n{}",
        facilitator.log_tail()
    );
    assert_eq!(report.latencies_ms.len(), REQUESTS);
    assert!(report.latencies_ms.iter().all(|ms| *ms > 0.0));
    assert_eq!(
        devnet.usdc_balance(payee).await?,
        U256::from(PRICE) * U256::from(REQUESTS)
    );
    assert!(
        !facilitator.log_tail().contains("settle request:"),
        "a quiet facilitator logged a request"
    );
    Ok(())
}
