//! A table of malformed or invalid `/verify` and `/settle` requests, each
//! with the exact status and error code (or `invalidReason`) it must get.
//! A body that is not JSON (or is too large) is an HTTP error; a JSON body
//! with a malformed payment gets the specification's answer shape (200,
//! `isValid: false` / `success: false` + `transaction: ""`), which is all
//! SDK clients parse.

mod common;

use alloy_primitives::Address;
use common::*;
use serde_json::{Value, json};

/// What a case must answer.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// An error status with this `error` code.
    Error(u16, &'static str),
    /// 200 with `isValid: false` (verify) / `success: false`, `transaction: ""`
    /// and a `network` (settle), and this reason.
    Invalid(&'static str),
}

/// Replaces the value at a `/`-separated path (creating it), or removes it when `value` is None.
fn edit(mut body: Value, path: &str, value: Option<Value>) -> Value {
    let parts: Vec<&str> = path.split('/').collect();
    let (last, parents) = parts.split_last().expect("non-empty path");
    let mut node = &mut body;
    for part in parents {
        node = &mut node[*part];
    }
    if let Some(map) = node.as_object_mut() {
        match value {
            Some(value) => {
                map.insert((*last).to_owned(), value);
            }
            None => {
                map.remove(*last);
            }
        }
    }
    body
}

/// Sets the field in both `paymentRequirements` and `paymentPayload.accepted`.
fn both(body: Value, field: &str, value: Value) -> Value {
    let body = edit(
        body,
        &format!("paymentRequirements/{field}"),
        Some(value.clone()),
    );
    edit(
        body,
        &format!("paymentPayload/accepted/{field}"),
        Some(value),
    )
}

#[tokio::test]
async fn malformed_and_invalid_requests_table() -> TestResult {
    let stack = Stack::start().await?;
    let (devnet, server) = (stack.devnet(), stack.facilitator());
    let client = reqwest::Client::new();
    let requirements = requirements(devnet, Address::random());
    let payload = pay(devnet, 7, &requirements, None).await?;
    let good = body(&payload, &requirements);
    let text = |v: &Value| v.to_string().into_bytes();
    let good_text = good.to_string();
    let payer = devnet.payer(7).address;
    let payer_before = balance(devnet, payer).await?;
    let valid_before = payload.payload["authorization"]["validBefore"]
        .as_str()
        .unwrap_or("1")
        .to_owned();

    let mut huge = br#"{"x402Version":2,"pad":""#.to_vec();
    huge.extend(std::iter::repeat_n(b'a', 70 * 1024));
    huge.extend(br#""}"#);
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes();

    use Expect::{Error, Invalid};
    let cases: Vec<(&str, Vec<u8>, Expect)> = vec![
        ("empty body", Vec::new(), Error(400, "invalid_json")),
        (
            "truncated JSON",
            good_text.as_bytes()[..good_text.len() / 2].to_vec(),
            Error(400, "invalid_json"),
        ),
        ("not JSON", b"hello".to_vec(), Error(400, "invalid_json")),
        (
            "invalid UTF-8",
            vec![b'{', 0xff, 0xfe, b'}'],
            Error(400, "invalid_json"),
        ),
        (
            "JSON array",
            b"[1,2,3]".to_vec(),
            Invalid("invalid_payload"),
        ),
        ("JSON number", b"42".to_vec(), Invalid("invalid_payload")),
        ("JSON null", b"null".to_vec(), Invalid("invalid_payload")),
        ("deeply nested", deep, Error(400, "invalid_json")),
        ("oversized body", huge, Error(413, "body_too_large")),
        (
            "v1 body",
            text(&json!({"x402Version": 1, "paymentPayload": {}, "paymentRequirements": {}})),
            Invalid("invalid_x402_version"),
        ),
        (
            "version as string",
            text(&edit(good.clone(), "x402Version", Some(json!("2")))),
            Invalid("invalid_x402_version"),
        ),
        (
            "version 3",
            text(&edit(good.clone(), "x402Version", Some(json!(3)))),
            Invalid("invalid_x402_version"),
        ),
        (
            "missing version",
            text(&edit(good.clone(), "x402Version", None)),
            Invalid("invalid_x402_version"),
        ),
        (
            "missing paymentPayload",
            text(&edit(good.clone(), "paymentPayload", None)),
            Invalid("invalid_payload"),
        ),
        (
            "missing paymentRequirements",
            text(&edit(good.clone(), "paymentRequirements", None)),
            Invalid("invalid_payment_requirements"),
        ),
        (
            "requirements not an object",
            text(&edit(
                good.clone(),
                "paymentRequirements",
                Some(json!("exact")),
            )),
            Invalid("invalid_payment_requirements"),
        ),
        (
            "payload not an object",
            text(&edit(
                good.clone(),
                "paymentPayload/payload",
                Some(json!([1])),
            )),
            Invalid("invalid_payload"),
        ),
        (
            "missing scheme",
            text(&edit(good.clone(), "paymentRequirements/scheme", None)),
            Invalid("invalid_payment_requirements"),
        ),
        (
            "amount as number",
            text(&both(good.clone(), "amount", json!(10000))),
            Invalid("invalid_payload"),
        ),
        (
            "negative amount",
            text(&both(good.clone(), "amount", json!("-1"))),
            Invalid("invalid_payload"),
        ),
        (
            "hex amount",
            text(&both(good.clone(), "amount", json!("0x2710"))),
            Invalid("invalid_payload"),
        ),
        (
            "float amount",
            text(&both(good.clone(), "amount", json!("10000.5"))),
            Invalid("invalid_payload"),
        ),
        (
            "amount above 2^256",
            text(&both(good.clone(), "amount", json!("1".repeat(80)))),
            Invalid("invalid_payload"),
        ),
        (
            "huge number literal",
            text(&both(good.clone(), "maxTimeoutSeconds", json!(1e300))),
            Invalid("invalid_payload"),
        ),
        (
            "negative timeout",
            text(&both(good.clone(), "maxTimeoutSeconds", json!(-5))),
            Invalid("invalid_payload"),
        ),
        (
            "invalid CAIP-2",
            text(&both(good.clone(), "network", json!("base mainnet"))),
            Invalid("invalid_payload"),
        ),
        (
            "empty network",
            text(&both(good.clone(), "network", json!(""))),
            Invalid("invalid_payload"),
        ),
        (
            "paymentPayload not an object",
            text(&edit(good.clone(), "paymentPayload", Some(json!("pay")))),
            Invalid("invalid_payload"),
        ),
        (
            "missing accepted",
            text(&edit(good.clone(), "paymentPayload/accepted", None)),
            Invalid("invalid_payload"),
        ),
        (
            "payTo of the wrong type",
            text(&edit(
                good.clone(),
                "paymentRequirements/payTo",
                Some(json!(7)),
            )),
            Invalid("invalid_payment_requirements"),
        ),
        (
            "leading-zero amount in requirements",
            text(&edit(
                good.clone(),
                "paymentRequirements/amount",
                Some(json!("010000")),
            )),
            Invalid("invalid_payment_requirements"),
        ),
        (
            "signed amount in requirements",
            text(&edit(
                good.clone(),
                "paymentRequirements/amount",
                Some(json!("+10000")),
            )),
            Invalid("invalid_payment_requirements"),
        ),
        (
            "padded amount in requirements",
            text(&edit(
                good.clone(),
                "paymentRequirements/amount",
                Some(json!(" 10000")),
            )),
            Invalid("invalid_payment_requirements"),
        ),
        (
            "fractional amount in requirements",
            text(&edit(
                good.clone(),
                "paymentRequirements/amount",
                Some(json!("10000.0")),
            )),
            Invalid("invalid_payment_requirements"),
        ),
        (
            "empty amount in requirements",
            text(&edit(
                good.clone(),
                "paymentRequirements/amount",
                Some(json!("")),
            )),
            Invalid("invalid_payment_requirements"),
        ),
        (
            "leading-zero amount in accepted",
            text(&edit(
                good.clone(),
                "paymentPayload/accepted/amount",
                Some(json!("010000")),
            )),
            Invalid("invalid_payload"),
        ),
        (
            "leading-zero authorization value",
            text(&edit(
                good.clone(),
                "paymentPayload/payload/authorization/value",
                Some(json!("010000")),
            )),
            Invalid("invalid_payload"),
        ),
        (
            "leading-zero validBefore",
            text(&edit(
                good.clone(),
                "paymentPayload/payload/authorization/validBefore",
                Some(json!(format!("0{valid_before}"))),
            )),
            Invalid("invalid_payload"),
        ),
        (
            "unknown network",
            text(&both(good.clone(), "network", json!("eip155:999999"))),
            Invalid("unsupported_scheme"),
        ),
        (
            "non-EVM network",
            text(&both(
                good.clone(),
                "network",
                json!("solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"),
            )),
            Invalid("unsupported_scheme"),
        ),
        (
            "unknown scheme",
            text(&both(good.clone(), "scheme", json!("nope"))),
            Invalid("unsupported_scheme"),
        ),
        (
            "payTo not an address",
            text(&both(good.clone(), "payTo", json!("bob"))),
            Invalid("invalid_payment_requirements"),
        ),
        (
            "asset not an address",
            text(&both(good.clone(), "asset", json!("usdc"))),
            Invalid("invalid_payment_requirements"),
        ),
        (
            "asset not allowed",
            text(&both(
                good.clone(),
                "asset",
                json!(Address::random().to_string()),
            )),
            Invalid("unsupported_asset"),
        ),
        (
            "signature not hex",
            text(&edit(
                good.clone(),
                "paymentPayload/payload/signature",
                Some(json!("0xnothex")),
            )),
            Invalid("invalid_payload"),
        ),
        (
            "signature of someone else",
            text(&edit(
                good.clone(),
                "paymentPayload/payload/authorization/from",
                Some(json!(Address::random().to_string())),
            )),
            Invalid("invalid_exact_evm_payload_signature"),
        ),
        (
            "missing authorization",
            text(&edit(
                good.clone(),
                "paymentPayload/payload/authorization",
                None,
            )),
            Invalid("invalid_payload"),
        ),
        (
            "authorization value too low",
            text(&edit(
                good.clone(),
                "paymentPayload/payload/authorization/value",
                Some(json!("1")),
            )),
            Invalid("invalid_exact_evm_payload_authorization_value_mismatch"),
        ),
        (
            "authorization to someone else",
            text(&edit(
                good.clone(),
                "paymentPayload/payload/authorization/to",
                Some(json!(Address::random().to_string())),
            )),
            Invalid("invalid_exact_evm_payload_recipient_mismatch"),
        ),
        (
            "accepted differs from requirements",
            text(&edit(
                good.clone(),
                "paymentPayload/accepted/amount",
                Some(json!("1")),
            )),
            Invalid("invalid_payment_requirements"),
        ),
        (
            "expired authorization",
            text(&edit(
                good.clone(),
                "paymentPayload/payload/authorization/validBefore",
                Some(json!("1")),
            )),
            Invalid("invalid_exact_evm_payload_authorization_valid_before"),
        ),
    ];
    assert!(cases.len() >= 40);

    let mut failures = Vec::new();
    for (name, bytes, expect) in &cases {
        for path in ["/verify", "/settle"] {
            let (status, answer) = post_raw(&client, &server.url(path), bytes.clone()).await?;
            let ok = match expect {
                Error(code_status, code) => {
                    status == *code_status
                        && answer["error"] == json!(code)
                        && answer["message"].as_str().is_some_and(|m| !m.is_empty())
                }
                Invalid(reason) => {
                    let (flag, field, value) = if path == "/verify" {
                        ("isValid", "invalidReason", false)
                    } else {
                        ("success", "errorReason", false)
                    };
                    // What the TypeScript SDK's HTTPFacilitatorClient requires
                    // of a settle answer: `transaction` and `network` strings.
                    let settle_shape = path == "/verify"
                        || (answer["transaction"] == json!("") && answer["network"].is_string());
                    status == 200
                        && answer[flag] == json!(value)
                        && answer[field] == json!(reason)
                        && settle_shape
                }
            };
            if !ok {
                failures.push(format!(
                    "{name} {path}: expected {expect:?}, got {status} {answer}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        cases.len() * 2,
        failures.join("\n")
    );
    // Nothing moved.
    devnet.mine().await?;
    assert_eq!(balance(devnet, payer).await?, payer_before);
    stack.stop().await;
    Ok(())
}
