//! Permit2 `exact` and usage-based `upto` end to end on the devnet (real Permit2, the x402
//! proxies at their canonical addresses, a plain ERC-20 without EIP-3009), settled by our
//! facilitator service:
//! - our client with a budget pays a fixed-price Permit2 route and a metered route whose
//!   handler reports its usage; balances move by exactly the price and the usage, and the
//!   budget reserves the maximum but counts what was charged;
//! - the official TypeScript client (2.27.0) pays the same server;
//! - our client pays the official TypeScript server through our facilitator.
//!
//! Needs Node.js and npm for the official SDK.

mod common;

use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{Address, U256};
use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use common::{chain, facilitator, serve};
use paywire_client::{
    Budget, BudgetRule, BudgetScope, ClientError, PaymentOutcome, PaymentStatus, X402Client,
};
use paywire_core::codec::decode_payment_response;
use paywire_core::{ChainIdPattern, Facilitator, SettleResponse};
use paywire_evm::exact::{ExactEvmClient, ExactEvmServer, ExactEvmSpendProbe};
use paywire_evm::rpc::RpcClient;
use paywire_evm::upto::{UptoEvmClient, UptoEvmServer};
use paywire_evm::{EvmAsset, EvmNetwork, EvmNetworks, LocalSigner, TransferMethod};
use paywire_server::{PayTo, PaymentLayer, PaymentOption, Route, Usage, money};
use paywire_testkit::peer::{TsMeteredServer, ts_client_fetch_asset};
use paywire_testkit::{DevAccount, Devnet, Stack};

/// $0.01 for the fixed-price route, in the token's atomic units (6 decimals).
const PRICE: u64 = 10_000;
/// $0.05, the most one metered request may cost.
const MAX: u64 = 50_000;
/// What the metered handler reports.
const USAGE: u64 = 1_858;

fn pattern() -> ChainIdPattern {
    ChainIdPattern::parse("eip155:*").unwrap_or_else(|_| unreachable!())
}

/// The devnet's chain with its plain test token (no EIP-3009) as the default asset, paid
/// through Permit2.
fn table(devnet: &Devnet) -> EvmNetworks {
    let mut table = EvmNetworks::empty();
    table.insert(EvmNetwork::new(
        31337,
        "Anvil",
        EvmAsset {
            address: devnet.plain_token(),
            symbol: "PUSD".into(),
            decimals: 6,
            eip712_name: String::new(),
            eip712_version: String::new(),
            usd_stable: true,
            transfer_method: TransferMethod::Permit2,
            eip2612: false,
        },
    ));
    table
}

/// Reports `?tokens=N` atomic units of usage, as an LLM endpoint billing by tokens would.
async fn generate(uri: http::Uri) -> axum::response::Response {
    let tokens: u64 = uri
        .query()
        .and_then(|query| query.strip_prefix("tokens="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_default();
    let mut response = format!("generated {tokens} tokens").into_response();
    response.extensions_mut().insert(Usage::atomic(tokens));
    response
}

/// Our app: `GET /report` for $0.01 (`exact`, Permit2) and `GET /generate?tokens=N` for at
/// most $0.05 (`upto`), paid to `payee`.
async fn our_app(devnet: &Devnet, facilitator: Arc<dyn Facilitator>, payee: Address) -> String {
    let pay_to = || PayTo::address(payee.to_string());
    let layer = PaymentLayer::builder(facilitator)
        .scheme(pattern(), Arc::new(ExactEvmServer::new(table(devnet))))
        .scheme(pattern(), Arc::new(UptoEvmServer::new(table(devnet))))
        .route(
            Route::new("GET /report")
                .expect("route")
                .accept(PaymentOption::exact(
                    chain(),
                    money("$0.01").expect("price"),
                    pay_to(),
                )),
        )
        .route(
            Route::new("GET /generate")
                .expect("route")
                .accept(PaymentOption::new(
                    "upto",
                    chain(),
                    money("$0.05").expect("price"),
                    pay_to(),
                )),
        )
        .build()
        .expect("layer");
    let app = Router::new()
        .route("/report", get(|| async { "report" }))
        .route("/generate", get(generate))
        .layer(layer);
    serve(app).await
}

/// Our client paying from `payer` with both EVM schemes and, if given, a budget, whose
/// spend probe reads on chain what a usage-based settlement really moved.
fn our_client(devnet: &Devnet, payer: &DevAccount, budget: Option<Arc<Budget>>) -> X402Client {
    let signer = || LocalSigner::new(payer.signer());
    let rpc =
        RpcClient::new(vec![devnet.rpc_url().to_owned()], Duration::from_secs(10)).expect("rpc");
    let probe = ExactEvmSpendProbe::new().network(chain(), Arc::new(rpc));
    let mut builder = X402Client::builder()
        .wallet(pattern(), Arc::new(ExactEvmClient::new(signer())))
        .wallet(pattern(), Arc::new(UptoEvmClient::new(signer())))
        .catalog(Arc::new(table(devnet)))
        .spend_probe(Arc::new(probe));
    if let Some(budget) = budget {
        builder = builder.budget(budget);
    }
    builder.build()
}

/// A paid GET through our client: status, body and receipt.
async fn fetch(
    client: &X402Client,
    url: &str,
) -> Result<(u16, String, SettleResponse), ClientError> {
    let http = reqwest::Client::new();
    let request = http.get(url).build().expect("request");
    let response = client.send(&http, request).await?;
    let status = response.status().as_u16();
    let outcome = response.extensions().get::<PaymentOutcome>().cloned();
    let body = response.text().await.expect("body");
    let outcome = outcome.expect("a payment was made");
    assert_eq!(outcome.status, PaymentStatus::Paid, "{body}");
    Ok((status, body, outcome.receipt.expect("receipt")))
}

async fn balance(devnet: &Devnet, owner: Address) -> U256 {
    devnet
        .token_balance(devnet.plain_token(), owner)
        .await
        .expect("balance")
}

#[tokio::test]
async fn our_client_with_a_budget_pays_permit2_and_exactly_the_usage() {
    let stack = Stack::start().await.expect("stack");
    let devnet = stack.devnet();
    let payee = Address::random();
    let url = our_app(devnet, facilitator(&stack), payee).await;
    let payer = devnet.payer(2);
    devnet
        .approve_permit2(devnet.plain_token(), payer, U256::MAX)
        .await
        .expect("one-time approval");
    let before = balance(devnet, payer.address).await;
    let rule = BudgetRule {
        total: Some(1_000_000),
        ..BudgetRule::usd()
    };
    let budget = Arc::new(Budget::in_memory(vec![rule]).await.expect("budget"));
    let client = our_client(devnet, payer, Some(Arc::clone(&budget)));

    let (status, body, receipt) = fetch(&client, &format!("{url}/report"))
        .await
        .expect("paid");
    assert_eq!((status, body.as_str()), (200, "report"));
    assert!(
        receipt.success && receipt.transaction.len() == 66,
        "{receipt:?}"
    );
    assert_eq!(balance(devnet, payee).await, U256::from(PRICE));

    let (status, body, receipt) = fetch(&client, &format!("{url}/generate?tokens={USAGE}"))
        .await
        .expect("paid");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        receipt.amount.map(|a| a.to_string()),
        Some(USAGE.to_string())
    );
    assert_eq!(balance(devnet, payee).await, U256::from(PRICE + USAGE));
    assert_eq!(
        balance(devnet, payer.address).await,
        before - U256::from(PRICE + USAGE)
    );
    let spent = budget.spent_total(&BudgetScope::Usd).await.expect("spent");
    assert_eq!(
        spent,
        u128::from(PRICE + USAGE),
        "the budget counts the usage the chain shows, not the maximum"
    );

    // Zero usage: served and nothing charged; the authorization stays valid on chain until
    // its deadline, so the budget keeps the maximum outstanding (not spent) until the chain
    // proves it unspent.
    let (status, _, receipt) = fetch(&client, &format!("{url}/generate?tokens=0"))
        .await
        .expect("paid");
    assert_eq!(status, 200);
    assert_eq!(receipt.amount.map(|a| a.to_string()), Some("0".to_owned()));
    assert_eq!(receipt.transaction, "");
    assert_eq!(balance(devnet, payee).await, U256::from(PRICE + USAGE));
    assert_eq!(
        budget.spent_total(&BudgetScope::Usd).await.expect("spent"),
        u128::from(PRICE + USAGE)
    );
    assert_eq!(
        budget
            .outstanding_total(&BudgetScope::Usd)
            .await
            .expect("outstanding"),
        u128::from(MAX)
    );

    // A budget below the $0.05 maximum refuses the metered route before anything is signed,
    // even though the request would use little.
    let small = BudgetRule {
        total: Some(u128::from(MAX) - 1),
        ..BudgetRule::usd()
    };
    let small = Arc::new(Budget::in_memory(vec![small]).await.expect("budget"));
    let frugal = our_client(devnet, payer, Some(small));
    let refused = fetch(&frugal, &format!("{url}/generate?tokens=1")).await;
    assert!(
        matches!(
            refused,
            Err(ClientError::Budget(_) | ClientError::NoAcceptableOption(_))
        ),
        "{refused:?}"
    );
    assert_eq!(balance(devnet, payee).await, U256::from(PRICE + USAGE));
}

#[tokio::test]
async fn the_official_client_pays_our_server_for_permit2_and_upto() {
    let stack = Stack::start().await.expect("stack");
    let devnet = stack.devnet();
    let payee = Address::random();
    let url = our_app(devnet, facilitator(&stack), payee).await;
    let payer = devnet.payer(3);
    let token = devnet.plain_token();
    devnet
        .approve_permit2(token, payer, U256::MAX)
        .await
        .expect("one-time approval");
    let before = balance(devnet, payer.address).await;

    let fixed = ts_client_fetch_asset(devnet, payer.private_key, &format!("{url}/report"), token)
        .await
        .expect("TS client ran");
    assert_eq!(fixed.status, 200, "{fixed:#?}");
    assert_eq!(fixed.payment_response_error, None);
    let metered = ts_client_fetch_asset(
        devnet,
        payer.private_key,
        &format!("{url}/generate?tokens={USAGE}"),
        token,
    )
    .await
    .expect("TS client ran");
    assert_eq!(metered.status, 200, "{metered:#?}");
    let header = metered
        .payment_response_header
        .as_deref()
        .expect("PAYMENT-RESPONSE");
    let receipt = decode_payment_response(header.as_bytes()).expect("receipt");
    assert_eq!(
        receipt.amount.map(|a| a.to_string()),
        Some(USAGE.to_string())
    );
    let theirs = metered.payment_response.expect("the SDK read the receipt");
    assert_eq!(theirs["amount"], USAGE.to_string(), "{theirs}");
    assert_eq!(balance(devnet, payee).await, U256::from(PRICE + USAGE));
    assert_eq!(
        balance(devnet, payer.address).await,
        before - U256::from(PRICE + USAGE)
    );
}

#[tokio::test]
async fn our_client_pays_the_official_server_through_our_facilitator() {
    let stack = Stack::start().await.expect("stack");
    let devnet = stack.devnet();
    let payee = Address::random();
    let token = devnet.plain_token();
    let server = TsMeteredServer::start(
        devnet,
        stack.facilitator_url(),
        payee,
        token,
        u128::from(PRICE),
        u128::from(MAX),
    )
    .await
    .expect("TS server");
    let payer = devnet.payer(4);
    devnet
        .approve_permit2(token, payer, U256::MAX)
        .await
        .expect("one-time approval");
    let before = balance(devnet, payer.address).await;
    let client = our_client(devnet, payer, None);

    let (status, body, receipt) = fetch(&client, &server.permit2_url())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log_tail()));
    assert_eq!(status, 200, "{body}\n{}", server.log_tail());
    assert!(receipt.success, "{receipt:?}");
    let (status, body, receipt) = fetch(&client, &server.metered_url(u128::from(USAGE)))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log_tail()));
    assert_eq!(status, 200, "{body}\n{}", server.log_tail());
    assert_eq!(
        receipt.amount.map(|a| a.to_string()),
        Some(USAGE.to_string())
    );
    assert_eq!(balance(devnet, payee).await, U256::from(PRICE + USAGE));
    assert_eq!(
        balance(devnet, payer.address).await,
        before - U256::from(PRICE + USAGE)
    );
}
