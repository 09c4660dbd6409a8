//! The paid-tool server end to end over streamable HTTP, on the devnet with
//! our facilitator service: a raw rmcp client calls free and paid tools,
//! signs payments with paywire-evm's scheme clients, and the tests check the
//! spec's answers, the chain's balances and how often each tool ran.

mod server_support;

use std::time::Duration;

use alloy_primitives::{Address, U256};
use paywire_mcp::wire;
use serde_json::{Value, json};
use server_support::{
    Env, PRICE, SECRET, UPTO_MAX, call, count, first, http_client, receipt_of, required_of,
    serve_http, text_of, try_call,
};

#[tokio::test]
async fn tools_list_shows_free_and_paid_tools() {
    let env = Env::start().await;
    let url = serve_http(env.server(None)).await;
    let client = http_client(&url).await;
    let tools = client.list_all_tools().await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    for name in ["echo", "forecast", "trip", "flaky", "paused", "metered"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let forecast = tools
        .iter()
        .find(|t| t.name == "forecast")
        .expect("forecast");
    assert_eq!(
        forecast.input_schema["properties"]["city"]["type"],
        json!("string")
    );
}

#[tokio::test]
async fn an_unpaid_call_gets_the_spec_payment_required_result_and_the_tool_does_not_run() {
    let env = Env::start().await;
    let url = serve_http(env.server(None)).await;
    let client = http_client(&url).await;

    let result = call(&client, "forecast", json!({"city": "Oslo"}), None).await;
    let required = required_of(&result);
    assert_eq!(required.resource.url, "mcp://tool/forecast");
    assert_eq!(
        required.resource.description.as_deref(),
        Some("A paid weather forecast")
    );
    let option = first(&required);
    assert_eq!(option.scheme, "exact");
    assert_eq!(option.network.to_string(), "eip155:31337");
    assert_eq!(option.amount.to_string(), PRICE.to_string());
    assert!(option.pay_to.eq_ignore_ascii_case(&env.pay_to.to_string()));
    let error = required.error.clone().unwrap_or_default();
    assert!(
        error.contains("x402/payment") && !error.contains("PAYMENT-SIGNATURE"),
        "{error}"
    );
    assert_eq!(count(&env.runs.forecast), 0, "no payment, no run");

    // The bazaar declaration: an MCP tool, by name, with its input schema.
    let bazaar = &required.extensions.as_ref().expect("extensions").0["bazaar"];
    assert_eq!(bazaar["info"]["input"]["type"], json!("mcp"));
    assert_eq!(bazaar["info"]["input"]["toolName"], json!("forecast"));
    assert_eq!(
        bazaar["info"]["input"]["inputSchema"]["properties"]["city"]["type"],
        json!("string")
    );
}

#[tokio::test]
async fn a_paid_call_returns_the_result_with_its_receipt_once_usdc_moved() {
    let env = Env::start().await;
    let url = serve_http(env.server(None)).await;
    let client = http_client(&url).await;
    let payer = env.stack.payer();
    let before = env.usdc(payer.address).await;

    let required = required_of(&call(&client, "forecast", json!({"city": "Oslo"}), None).await);
    let payment = env.sign(payer, &required).await;
    let result = call(
        &client,
        "forecast",
        json!({"city": "Oslo"}),
        Some(payment.clone()),
    )
    .await;
    assert_ne!(result.is_error, Some(true), "{result:?}");
    let text = text_of(&result);
    assert!(text.starts_with("sunny in Oslo for 0x"), "{text}");
    assert!(
        text.to_lowercase()
            .contains(&payer.address.to_string().to_lowercase()),
        "the tool sees the payer: {text}"
    );
    let receipt = receipt_of(&result);
    assert!(
        receipt.success && receipt.transaction.len() == 66,
        "{receipt:?}"
    );
    assert_eq!(env.usdc(env.pay_to).await, U256::from(PRICE));
    assert_eq!(env.usdc(payer.address).await, before - U256::from(PRICE));
    assert_eq!(count(&env.runs.forecast), 1);

    // The same payment again: refused, the tool does not run again.
    let again = call(&client, "forecast", json!({"city": "Oslo"}), Some(payment)).await;
    let refused = required_of(&again);
    assert!(refused.error.is_some());
    assert!(wire::receipt_of(&again).is_none());
    assert_eq!(count(&env.runs.forecast), 1);
    assert_eq!(env.usdc(env.pay_to).await, U256::from(PRICE));
}

/// Field lesson 1: the tool ran, but the payment cannot settle (the payer's
/// USDC moved away between verification and settlement): the caller gets
/// only the payment error, never the tool's content.
#[tokio::test]
async fn a_settlement_failure_returns_only_the_payment_error() {
    let env = Env::start().await;
    let url = serve_http(env.server(None)).await;
    let client = http_client(&url).await;
    let payer = env.stack.payer();
    let required = required_of(&call(&client, "paused", json!({}), None).await);
    let payment = env.sign(payer, &required).await;

    let peer = client.peer().clone();
    let pending =
        tokio::spawn(async move { call(&peer, "paused", json!({}), Some(payment)).await });
    // The tool runs: verified and reserved. Now the payer's funds leave.
    env.pause.entered.notified().await;
    let sink = Address::random();
    let balance = env.usdc(payer.address).await;
    env.devnet()
        .transact(payer.address, env.devnet().usdc(), transfer(sink, balance))
        .await
        .expect("funds moved away");
    env.pause.release.notify_one();
    let result = tokio::time::timeout(Duration::from_secs(60), pending)
        .await
        .expect("answered")
        .expect("call task");

    let wire = serde_json::to_string(&result).expect("JSON");
    assert!(!wire.contains(SECRET), "the tool's content leaked: {wire}");
    let refused = required_of(&result);
    assert!(refused.error.is_some(), "{refused:?}");
    assert!(wire::receipt_of(&result).is_none_or(|r| r.is_ok_and(|r| !r.success)));
    assert_eq!(count(&env.runs.paused), 1);
    assert_eq!(env.usdc(env.pay_to).await, U256::ZERO, "nothing was paid");
}

/// Field lesson 4: twenty concurrent calls carrying one payment run the tool
/// once and are served once.
#[tokio::test]
async fn twenty_parallel_calls_with_one_payment_run_the_tool_once() {
    let env = Env::start().await;
    let url = serve_http(env.server(None)).await;
    let client = http_client(&url).await;
    let required = required_of(&call(&client, "forecast", json!({}), None).await);
    let payment = env.sign(env.stack.payer(), &required).await;

    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let peer = client.peer().clone();
        let payment = payment.clone();
        calls.spawn(async move {
            call(&peer, "forecast", json!({"city": "Rome"}), Some(payment)).await
        });
    }
    let mut served = 0;
    while let Some(result) = calls.join_next().await {
        let result = result.expect("call task");
        if result.is_error == Some(true) {
            assert!(!text_of(&result).contains("sunny"), "{result:?}");
        } else {
            assert!(receipt_of(&result).success);
            served += 1;
        }
    }
    assert_eq!(served, 1);
    assert_eq!(count(&env.runs.forecast), 1);
    assert_eq!(env.usdc(env.pay_to).await, U256::from(PRICE));
}

/// Whatever `_meta["x402/payment"]` holds that is not a payment is refused
/// with the requirements and a reason; the tool never runs.
#[tokio::test]
async fn malformed_payments_are_refused_with_a_reason_and_never_run_the_tool() {
    let env = Env::start().await;
    let url = serve_http(env.server(None)).await;
    let client = http_client(&url).await;
    let required = required_of(&call(&client, "forecast", json!({}), None).await);
    let valid = env.sign(env.stack.payer(), &required).await;
    let mut v1 = valid.clone();
    v1["x402Version"] = json!(1);
    let mut unsigned = valid.clone();
    unsigned["payload"] = json!({});
    let huge = json!({"x402Version": 2, "padding": "x".repeat(17 * 1024)});
    let cases = [
        ("a string", json!("eyJ4NDAyVmVyc2lvbiI6Mn0=")),
        ("a number", json!(42)),
        ("null", Value::Null),
        ("an empty object", json!({})),
        ("an object without fields", json!({"x402Version": 2})),
        ("a v1 payment", v1),
        ("a payment without signature", unsigned),
        ("over 16 KiB", huge),
    ];
    for (what, payment) in cases {
        let result = call(&client, "forecast", json!({}), Some(payment)).await;
        let refused = required_of(&result);
        let reason = refused.error.unwrap_or_default();
        assert!(!reason.is_empty(), "{what}: no reason");
        assert_ne!(
            reason,
            required.error.clone().unwrap_or_default(),
            "{what}: the reason says what is wrong"
        );
        assert!(wire::receipt_of(&result).is_none(), "{what}");
    }
    assert_eq!(count(&env.runs.forecast), 0);
    assert_eq!(env.usdc(env.pay_to).await, U256::ZERO);
}

#[tokio::test]
async fn a_dynamic_price_follows_the_arguments() {
    let env = Env::start().await;
    let url = serve_http(env.server(None)).await;
    let client = http_client(&url).await;
    let one_day = required_of(&call(&client, "trip", json!({"days": 1}), None).await);
    let three_days = required_of(&call(&client, "trip", json!({"days": 3}), None).await);
    assert_eq!(first(&one_day).amount.to_string(), "10000");
    assert_eq!(first(&three_days).amount.to_string(), "30000");

    // A one-day payment does not buy three days.
    let cheap = env.sign(env.stack.payer(), &one_day).await;
    let refused = call(&client, "trip", json!({"days": 3}), Some(cheap)).await;
    assert_eq!(first(&required_of(&refused)).amount.to_string(), "30000");
    assert_eq!(count(&env.runs.trip), 0);

    let right = env.sign(env.stack.payer(), &three_days).await;
    let result = call(&client, "trip", json!({"days": 3}), Some(right)).await;
    assert!(receipt_of(&result).success, "{result:?}");
    assert_eq!(count(&env.runs.trip), 1);
    assert_eq!(env.usdc(env.pay_to).await, U256::from(30_000u64));

    // A price the callback refuses is an error answer, not a request to pay.
    let unsold = call(&client, "trip", json!({"days": 12}), None).await;
    let answer = wire::error_answer_of(&unsold).expect("an error answer");
    assert_eq!(
        (answer.status, answer.error.as_str()),
        (500, "pricing_failed")
    );
}

#[tokio::test]
async fn an_upto_tool_charges_the_usage_it_reports() {
    let env = Env::start().await;
    let url = serve_http(env.server(None)).await;
    let client = http_client(&url).await;
    let payer = env.devnet().payer(2);
    env.devnet()
        .approve_permit2(env.devnet().plain_token(), payer, U256::MAX)
        .await
        .expect("one-time approval");
    let before = env.token(payer.address).await;
    let required = required_of(&call(&client, "metered", json!({"tokens": 1858}), None).await);
    assert_eq!(
        (
            first(&required).scheme.as_str(),
            first(&required).amount.to_string()
        ),
        ("upto", UPTO_MAX.to_string())
    );

    let payment = env.sign(payer, &required).await;
    let result = call(&client, "metered", json!({"tokens": 1858}), Some(payment)).await;
    assert_eq!(text_of(&result), "used 1858 tokens");
    let receipt = receipt_of(&result);
    assert_eq!(
        receipt.amount.map(|a| a.to_string()),
        Some("1858".to_owned())
    );
    assert_eq!(env.token(env.pay_to).await, U256::from(1858u64));
    assert_eq!(env.token(payer.address).await, before - U256::from(1858u64));
}

/// Field lesson 2: a tool error is passed on and not charged; the payment
/// stays usable.
#[tokio::test]
async fn a_tool_error_is_not_charged_and_the_payment_stays_usable() {
    let env = Env::start().await;
    let url = serve_http(env.server(None)).await;
    let client = http_client(&url).await;
    let required = required_of(&call(&client, "flaky", json!({}), None).await);
    let payment = env.sign(env.stack.payer(), &required).await;

    let failed = call(
        &client,
        "flaky",
        json!({"fail": true}),
        Some(payment.clone()),
    )
    .await;
    assert_eq!(failed.is_error, Some(true));
    assert_eq!(text_of(&failed), "upstream failed");
    assert!(wire::payment_required_of(&failed).is_none());
    assert!(wire::receipt_of(&failed).is_none());
    assert_eq!(env.usdc(env.pay_to).await, U256::ZERO);

    // A tool that panics is a failed call too: answered, not charged.
    let panicked = call(
        &client,
        "flaky",
        json!({"panic": true}),
        Some(payment.clone()),
    )
    .await;
    assert_eq!(panicked.is_error, Some(true));
    assert!(wire::payment_required_of(&panicked).is_none());
    assert!(wire::receipt_of(&panicked).is_none());
    assert_eq!(env.usdc(env.pay_to).await, U256::ZERO);

    let worked = call(&client, "flaky", json!({"fail": false}), Some(payment)).await;
    assert_eq!(text_of(&worked), "worked");
    assert!(receipt_of(&worked).success);
    assert_eq!(count(&env.runs.flaky), 3);
    assert_eq!(env.usdc(env.pay_to).await, U256::from(PRICE));
}

#[tokio::test]
async fn a_free_tool_needs_no_payment_and_an_unknown_tool_is_invalid_params() {
    let env = Env::start().await;
    let url = serve_http(env.server(None)).await;
    let client = http_client(&url).await;
    let result = call(&client, "echo", json!({"hello": "world"}), None).await;
    assert_eq!(text_of(&result), r#"{"hello":"world"}"#);
    assert!(wire::receipt_of(&result).is_none());
    // A payment sent along is not read (and not charged).
    let with_junk = call(&client, "echo", json!({}), Some(json!("junk"))).await;
    assert_eq!(text_of(&with_junk), "{}");
    assert_eq!(count(&env.runs.echo), 2);

    let unknown = try_call(&client, "nope", json!({}), None).await;
    let error = format!("{:?}", unknown.expect_err("unknown tool"));
    assert!(
        error.contains("-32602")
            || error.contains("INVALID_PARAMS")
            || error.contains("unknown tool"),
        "{error}"
    );
}

/// `transfer(to, amount)` of an ERC-20.
fn transfer(to: Address, amount: U256) -> Vec<u8> {
    let mut data = vec![0xa9, 0x05, 0x9c, 0xbb];
    data.extend_from_slice(&[0; 12]);
    data.extend_from_slice(to.as_slice());
    data.extend_from_slice(&amount.to_be_bytes::<32>());
    data
}
