//! The official TypeScript SDK (2.27.0) pays, serves and settles Permit2 payments on the
//! devnet's Permit2 and our x402 proxies: its client pays its server through its facilitator,
//! `exact` with `assetTransferMethod: "permit2"` and `upto` with a reported usage. This proves
//! the stand-in proxies answer exactly what the official facilitator calls and checks, so the
//! interop tests of our own stack against the SDK run against faithful contracts.

use alloy_primitives::{Address, U256};
use base64::Engine;
use paywire_testkit::Devnet;
use paywire_testkit::peer::{
    TsFacilitator, TsFacilitatorOptions, TsMeteredServer, ts_client_fetch_asset,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const PRICE: u128 = 10_000;
const MAX: u128 = 50_000;
const USAGE: u128 = 1_858;

fn receipt(header: Option<&str>) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let header = header.ok_or("no PAYMENT-RESPONSE")?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(header)?;
    Ok(serde_json::from_slice(&bytes)?)
}

#[tokio::test]
async fn the_official_stack_settles_permit2_exact_and_upto_on_the_devnet_proxies() -> TestResult {
    let devnet = Devnet::start().await?;
    let options = TsFacilitatorOptions {
        upto: true,
        ..TsFacilitatorOptions::default()
    };
    let facilitator =
        TsFacilitator::start_with(&devnet, devnet.usdc_owner().private_key, options).await?;
    let payee = Address::random();
    let token = devnet.plain_token();
    let server =
        TsMeteredServer::start(&devnet, facilitator.url(), payee, token, PRICE, MAX).await?;
    let payer = devnet.payer(4);
    devnet.approve_permit2(token, payer, U256::MAX).await?;
    let before = devnet.token_balance(token, payer.address).await?;

    let fixed =
        ts_client_fetch_asset(&devnet, payer.private_key, &server.permit2_url(), token).await?;
    assert_eq!(fixed.status, 200, "{fixed:#?}\n{}", server.log_tail());
    assert_eq!(
        receipt(fixed.payment_response_header.as_deref())?["success"],
        true
    );
    assert_eq!(devnet.token_balance(token, payee).await?, U256::from(PRICE));

    let metered = ts_client_fetch_asset(
        &devnet,
        payer.private_key,
        &server.metered_url(USAGE),
        token,
    )
    .await?;
    assert_eq!(metered.status, 200, "{metered:#?}\n{}", server.log_tail());
    let settled = receipt(metered.payment_response_header.as_deref())?;
    assert_eq!(settled["success"], true, "{settled}");
    assert_eq!(settled["amount"], USAGE.to_string(), "{settled}");
    assert_eq!(
        devnet.token_balance(token, payee).await?,
        U256::from(PRICE + USAGE)
    );
    assert_eq!(
        devnet.token_balance(token, payer.address).await?,
        before - U256::from(PRICE + USAGE)
    );
    Ok(())
}
