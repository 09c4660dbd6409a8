//! Field lessons 12 and 27 over HTTP, as an operator configures the
//! facilitator: a listed token that succeeds but pays short is answered
//! `invalid_transaction_state` at `/settle`, and an asset table with the wrong
//! EIP-712 name does not stop a payment signed under the token's real domain.

mod common;

use std::path::Path;

use alloy_primitives::{Address, B256, U256};
use common::*;
use paywire_core::PaymentRequirements;
use paywire_evm::LocalSigner;
use paywire_evm::exact::{Authorization, ExactEvmPayload, eip712_domain, signing_hash};
use paywire_testkit::Devnet;
use serde_json::json;

const SHORT_NAME: &str = "Shortchange Dollar";
const SHORT_VERSION: &str = "1";

/// A facilitator for the devnet (dev account #0 settles) accepting exactly
/// `asset`, with `chain_extra` lines added to its `[[chains]]` table.
async fn start_with_asset(
    devnet: &Devnet,
    store: &Path,
    chain_extra: &str,
    (address, eip712_name, eip712_version): (Address, &str, &str),
) -> Result<Server, Box<dyn std::error::Error + Send + Sync>> {
    let text = format!(
        r#"
listen = "127.0.0.1:0"
store = "{}"
receipt_timeout_seconds = 20
rpc_timeout_seconds = 2

[[chains]]
network = "{}"
rpc_urls = ["{}"]
signer_private_keys = ["${{TEST_SIGNER_KEY}}"]
gas_limit = 300000
max_fee_per_gas_gwei = 100
{chain_extra}

[[chains.assets]]
address = "{address}"
symbol = "TOKEN"
decimals = 6
eip712_name = "{eip712_name}"
eip712_version = "{eip712_version}"
"#,
        store.display(),
        devnet.network(),
        devnet.rpc_url(),
    );
    start_from(&text, &devnet.usdc_owner().private_key_hex()).await
}

#[tokio::test]
async fn settle_of_a_token_that_pays_short_is_invalid_transaction_state() -> TestResult {
    let devnet = Devnet::start().await?;
    // A fee-on-transfer token: the payee receives 3,000 less than signed.
    let token = devnet
        .deploy_shortchange_token(SHORT_NAME, SHORT_VERSION, U256::from(3_000))
        .await?;
    let store = tempfile::tempdir()?;
    let server = start_with_asset(
        &devnet,
        &store.path().join("ledger.sqlite"),
        "",
        (token, SHORT_NAME, SHORT_VERSION),
    )
    .await?;
    let pay_to = Address::random();
    let mut requirements = requirements(&devnet, pay_to);
    requirements.asset = token.to_string();
    requirements.extra = Some(serde_json::from_value(
        json!({"name": SHORT_NAME, "version": SHORT_VERSION}),
    )?);
    let http = reqwest::Client::new();

    for (payer, shortfall) in [(1, 3_000), (2, PRICE)] {
        devnet
            .set_shortchange_shortfall(token, U256::from(shortfall))
            .await?;
        devnet
            .mint_shortchange_token(token, devnet.payer(payer).address, U256::from(PRICE))
            .await?;
        let payload = pay(&devnet, payer, &requirements, None).await?;
        let request = body(&payload, &requirements);
        let (status, verified) = post(&http, &server.url("/verify"), &request).await?;
        assert_eq!(status, 200, "{verified}");
        assert_eq!(verified["isValid"], json!(true), "{verified}");

        let (status, settled) = post(&http, &server.url("/settle"), &request).await?;
        assert_eq!(status, 200, "{settled}");
        assert_eq!(settled["success"], json!(false), "{settled}");
        assert_eq!(
            settled["errorReason"],
            json!("invalid_transaction_state"),
            "{settled}"
        );
    }
    // The transactions were sent and moved 7,000, then nothing.
    assert_eq!(
        devnet.token_balance(token, pay_to).await?,
        U256::from(PRICE - 3_000)
    );
    server.stop().await;
    Ok(())
}

/// `PRICE` of USDC from payer #3's counterfactual wallet (funded, not
/// deployed), signed under the token's real domain ("USD Coin", "2").
async fn counterfactual_payment(
    devnet: &Devnet,
    requirements: &PaymentRequirements,
) -> Result<(paywire_core::PaymentPayload, Address), Box<dyn std::error::Error + Send + Sync>> {
    let owner = LocalSigner::new(devnet.payer(3).signer());
    let factory = devnet.deploy_wallet_factory().await?;
    let salt = B256::repeat_byte(0x27);
    let wallet = devnet
        .predict_wallet(factory, owner.address(), salt)
        .await?;
    devnet.mint_usdc(wallet, U256::from(PRICE)).await?;
    let authorization = Authorization {
        from: wallet,
        to: requirements.pay_to.parse()?,
        value: PRICE.into(),
        valid_after: 0u64.into(),
        valid_before: (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
            + 300)
            .into(),
        nonce: B256::random(),
    };
    let domain = eip712_domain("USD Coin", "2", devnet.chain_id(), devnet.usdc());
    let inner = owner.sign_hash_sync(&signing_hash(&authorization, &domain))?;
    let signature = paywire_testkit::wrap_eip6492(
        factory,
        paywire_testkit::deploy_calldata(owner.address(), salt),
        inner.as_bytes().into(),
    );
    let exact = ExactEvmPayload {
        authorization,
        signature,
    };
    let payload = paywire_core::PaymentPayload {
        x402_version: 2,
        payload: exact.to_json(),
        extensions: None,
        resource: None,
        accepted: requirements.clone(),
    };
    Ok((payload, wallet))
}

#[tokio::test]
async fn a_wrong_eip712_name_in_the_asset_table_does_not_break_payments() -> TestResult {
    let devnet = Devnet::start().await?;
    let store = tempfile::tempdir()?;
    // The operator copied the testnet name; the token says "USD Coin".
    let server = start_with_asset(
        &devnet,
        &store.path().join("ledger.sqlite"),
        r#"counterfactual_wallets = "deploy""#,
        (devnet.usdc(), "USDC", "2"),
    )
    .await?;
    let pay_to = Address::random();
    let requirements = requirements(&devnet, pay_to);
    // A counterfactual wallet's signature is checked against the
    // facilitator's own digest (the token cannot check it before the wallet
    // exists), so the domain it uses must be the token's.
    let (payload, wallet) = counterfactual_payment(&devnet, &requirements).await?;
    let request = body(&payload, &requirements);
    let http = reqwest::Client::new();
    let (status, verified) = post(&http, &server.url("/verify"), &request).await?;
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["isValid"], json!(true), "{verified}");
    let (status, settled) = post(&http, &server.url("/settle"), &request).await?;
    assert_eq!(status, 200, "{settled}");
    assert_eq!(settled["success"], json!(true), "{settled}");
    assert!(!devnet.code_at(wallet).await?.is_empty(), "deployed");
    assert_eq!(balance(&devnet, pay_to).await?, U256::from(PRICE));
    server.stop().await;
    Ok(())
}
