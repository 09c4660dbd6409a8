//! Hostile review of issue 12 (replays, delivery, gas): probes written by an
//! attacker's hand. Probes marked `#[ignore = "finding N"]` fail on the code
//! they were written against; run them with
//! `cargo nextest run -p paywire-facilitator --test hostile_replay --run-ignored all`.

mod common;

use paywire_evm::Eip155ChainId;
use std::time::Duration;

use alloy_primitives::{Address, B256, U256};
use common::*;
use paywire_core::PaymentPayload;
use paywire_evm::LocalSigner;
use paywire_evm::exact::ExactEvmClient;
use paywire_testkit::{Devnet, DevnetOptions};
use serde_json::{Value, json};

const KEY_A: &str = "shop-a-key-0123456789";
const KEY_B: &str = "shop-b-key-0123456789";

async fn manual_devnet() -> Result<Devnet, Box<dyn std::error::Error + Send + Sync>> {
    Ok(Devnet::start_with(DevnetOptions {
        block_time: None,
        ..DevnetOptions::default()
    })
    .await?)
}

fn api_keys(endpoints: &str) -> String {
    format!(
        r#"
[[api_keys]]
key = "{KEY_A}"
name = "shop-a"
endpoints = {endpoints}

[[api_keys]]
key = "{KEY_B}"
name = "shop-b"
endpoints = {endpoints}
"#
    )
}

/// A config: `top` top-level settings, `sections` more tables.
fn configured(devnet: &Devnet, store: &std::path::Path, top: &str, sections: &str) -> String {
    let base = config_text(
        devnet.network(),
        devnet.rpc_url(),
        Some(devnet.usdc()),
        store,
    );
    format!("{top}\n{base}\n{sections}")
}

async fn start_text(
    devnet: &Devnet,
    text: &str,
) -> Result<Server, Box<dyn std::error::Error + Send + Sync>> {
    start_from(text, &devnet.usdc_owner().private_key_hex()).await
}

async fn settle(
    server: &Server,
    body: &Value,
    key: Option<&str>,
) -> Result<(u16, Value), Box<dyn std::error::Error + Send + Sync>> {
    let mut request = reqwest::Client::new()
        .post(server.url("/settle"))
        .json(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await?;
    Ok((response.status().as_u16(), response.json().await?))
}

/// Transactions `address` sent that are mined (`latest`) and still in the
/// pool (`pending` minus `latest`).
async fn nonces(
    devnet: &Devnet,
    address: Address,
) -> Result<(u64, u64), Box<dyn std::error::Error + Send + Sync>> {
    let read = |tag: &'static str| {
        let address = address.to_string();
        async move {
            let answer = devnet
                .rpc("eth_getTransactionCount", json!([address, tag]))
                .await?;
            let text = answer.as_str().ok_or("nonce is not a string")?.to_owned();
            Ok::<u64, Box<dyn std::error::Error + Send + Sync>>(u64::from_str_radix(
                text.trim_start_matches("0x"),
                16,
            )?)
        }
    };
    let latest = read("latest").await?;
    let pending = read("pending").await?;
    Ok((latest, pending.saturating_sub(latest)))
}

/// The same authorization, re-worded: the signature's hex in upper case.
/// Every EVM tool decodes it to the same bytes; the ledger's fingerprint
/// (a hash of the raw JSON) differs.
fn upper_signature(payload: &PaymentPayload) -> PaymentPayload {
    let mut variant = payload.clone();
    let signature = payload.payload["signature"].as_str().unwrap_or_default();
    let upper = format!(
        "0x{}",
        signature.trim_start_matches("0x").to_ascii_uppercase()
    );
    variant.payload.insert("signature".into(), json!(upper));
    variant
}

/// `v` as 0/1 instead of 27/28 (the token accepts both through the
/// facilitator's normalisation).
fn v_as_parity(payload: &PaymentPayload) -> PaymentPayload {
    let mut variant = payload.clone();
    let signature = payload.payload["signature"].as_str().unwrap_or_default();
    let mut bytes = alloy_primitives::hex::decode(signature).unwrap_or_default();
    if let Some(v) = bytes.last_mut()
        && *v >= 27
    {
        *v -= 27;
    }
    variant.payload.insert(
        "signature".into(),
        json!(format!("0x{}", alloy_primitives::hex::encode(bytes))),
    );
    variant
}

// ---------------------------------------------------------------------------
// Finding 1: the payment identifier is chosen by the payer, so it is a bearer
// token for replays. Any caller (another API key, an anonymous caller, after
// the retry window) presenting the payload with its id gets `success: true`
// again: a server relying on the facilitator to refuse replays serves one
// payment as often as the payer sends it.
// ---------------------------------------------------------------------------
#[tokio::test]
async fn a_payment_identifier_does_not_let_another_caller_replay() -> TestResult {
    let devnet = Devnet::start().await?;
    let dir = tempfile::tempdir()?;
    let text = configured(
        &devnet,
        &dir.path().join("ledger.sqlite"),
        "idempotent_retry_window_seconds = 1",
        &api_keys(r#"["settle"]"#),
    );
    let server = start_text(&devnet, &text).await?;
    let requirements = requirements(&devnet, Address::random());
    let payload = pay(
        &devnet,
        1,
        &requirements,
        Some("pay_chosen_by_the_payer_0001"),
    )
    .await?;
    let request = body(&payload, &requirements);

    let (status, first) = settle(&server, &request, Some(KEY_A)).await?;
    assert_eq!((status, &first["success"]), (200, &json!(true)), "{first}");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // Another shop, after the retry window, same payload + the id the payer
    // put in it: must be a replay.
    let (status, again) = settle(&server, &request, Some(KEY_B)).await?;
    assert_replay_refused(status, &again);
    server.stop().await;
    Ok(())
}

// ---------------------------------------------------------------------------
// Finding 2: a `pending` answer delivered to an identified caller reserves
// the outcome for that caller -- but only under its fingerprint. The same
// authorization re-worded (signature hex in upper case) is another
// fingerprint: the scheme finds the transaction on chain and, since pending
// answers never claim their transaction, the re-worded request claims it and
// gets `success: true`; the caller holding the reservation is then refused.
// ---------------------------------------------------------------------------
#[tokio::test]
async fn a_reserved_pending_outcome_cannot_be_taken_by_a_reworded_payload() -> TestResult {
    let devnet = manual_devnet().await?;
    let dir = tempfile::tempdir()?;
    let text = configured(
        &devnet,
        &dir.path().join("ledger.sqlite"),
        "",
        &format!(
            "[recovery]\ninterval_seconds = 0\n{}",
            api_keys(r#"["verify"]"#)
        ),
    )
    .replace(
        "receipt_timeout_seconds = 20",
        "receipt_timeout_seconds = 1",
    );
    let server = start_text(&devnet, &text).await?;
    let requirements = requirements(&devnet, Address::random());
    let payload = pay(&devnet, 2, &requirements, None).await?;
    let request = body(&payload, &requirements);

    devnet.rpc("evm_setAutomine", json!([false])).await?;
    let (status, pending) = settle(&server, &request, Some(KEY_A)).await?;
    assert_eq!(status, 200, "{pending}");
    assert_eq!(
        pending["errorReason"],
        json!("settlement_pending"),
        "{pending}"
    );
    devnet.mine().await?;
    devnet.rpc("evm_setAutomine", json!([true])).await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // An anonymous caller holding the payload (the payer, a proxy that saw
    // the header) re-words it.
    let variant = body(&upper_signature(&payload), &requirements);
    let (status, stolen) = settle(&server, &variant, None).await?;
    let (status_a, owner) = settle(&server, &request, Some(KEY_A)).await?;
    eprintln!("re-worded anonymous settle: {stolen}\nshop-a retry: {owner}");
    assert_replay_refused(status, &stolen);
    assert_eq!(status_a, 200, "{owner}");
    assert_eq!(
        owner["success"],
        json!(true),
        "shop-a lost its reserved outcome: {owner}"
    );
    server.stop().await;
    Ok(())
}

// ---------------------------------------------------------------------------
// Finding 3: a settlement whose transaction is stuck in the pool (pending) is
// re-run by the background reconciler (and by any /settle after the recheck
// delay): the chain view is "open" (eth_call reads `latest`), so the scheme
// signs and broadcasts a *new* transaction for the same authorization. Once
// the first lands, every duplicate reverts at the facilitator's expense.
// ---------------------------------------------------------------------------
#[tokio::test]
async fn a_stuck_transaction_is_not_duplicated_by_re_runs() -> TestResult {
    let devnet = manual_devnet().await?;
    let dir = tempfile::tempdir()?;
    let text = configured(
        &devnet,
        &dir.path().join("ledger.sqlite"),
        "",
        "[recovery]\ninterval_seconds = 1\nmin_age_seconds = 1\n",
    )
    .replace(
        "receipt_timeout_seconds = 20",
        "receipt_timeout_seconds = 1",
    );
    let server = start_text(&devnet, &text).await?;
    let signer = devnet.usdc_owner().address;
    let requirements = requirements(&devnet, Address::random());
    let payload = pay(&devnet, 3, &requirements, None).await?;
    let request = body(&payload, &requirements);

    devnet.rpc("evm_setAutomine", json!([false])).await?;
    let (before, _) = nonces(&devnet, signer).await?;
    let (status, pending) = settle(&server, &request, None).await?;
    assert_eq!(
        pending["errorReason"],
        json!("settlement_pending"),
        "{pending}"
    );
    assert_eq!(status, 200);
    // Nothing is mined for a while (congestion, a fee spike).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (_, in_pool) = nonces(&devnet, signer).await?;
    devnet.mine().await?;
    devnet.rpc("evm_setAutomine", json!([true])).await?;
    let (after, _) = nonces(&devnet, signer).await?;
    server.stop().await;
    assert_eq!(
        (in_pool, after - before),
        (1, 1),
        "transactions the facilitator put in the pool for one payment (all but one revert)"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Finding 4: one balance, many authorizations. A payer holding exactly one
// price signs K authorizations (fresh nonces) to a payTo of its own and
// settles them at once. Each simulation (against `latest`) passes, so the
// facilitator broadcasts K transactions; K-1 revert on chain, paid by the
// facilitator. The attacker's only capital is one price, which it pays to
// itself.
// ---------------------------------------------------------------------------
#[tokio::test]
async fn one_balance_does_not_buy_many_broadcasts() -> TestResult {
    let devnet = manual_devnet().await?;
    let payer = LocalSigner::random();
    devnet.mint_usdc(payer.address(), U256::from(PRICE)).await?;
    let dir = tempfile::tempdir()?;
    let server = start(&devnet, &dir.path().join("ledger.sqlite")).await?;
    let signer = devnet.usdc_owner().address;
    let attacker_pay_to = Address::random();
    let requirements = requirements(&devnet, attacker_pay_to);
    let client = ExactEvmClient::new(payer);
    let mut bodies = Vec::new();
    for _ in 0..4 {
        let exact = client.sign(&requirements).await?;
        let payload = PaymentPayload {
            x402_version: 2,
            payload: exact.to_json(),
            extensions: None,
            resource: None,
            accepted: requirements.clone(),
        };
        bodies.push(body(&payload, &requirements));
    }
    devnet.rpc("evm_setAutomine", json!([false])).await?;
    let (before, _) = nonces(&devnet, signer).await?;
    let mut tasks = Vec::new();
    for request in bodies {
        let base = server.base.clone();
        tasks.push(tokio::spawn(async move {
            let response = reqwest::Client::new()
                .post(format!("{base}/settle"))
                .json(&request)
                .send()
                .await?;
            let answer: Value = response.json().await?;
            Ok::<Value, reqwest::Error>(answer)
        }));
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    devnet.mine().await?;
    devnet.rpc("evm_setAutomine", json!([true])).await?;
    let mut successes = 0;
    for task in tasks {
        let answer = task.await??;
        if answer["success"] == json!(true) {
            successes += 1;
        }
    }
    let (after, _) = nonces(&devnet, signer).await?;
    server.stop().await;
    assert_eq!(successes, 1);
    assert_eq!(
        after - before,
        1,
        "transactions broadcast for one balance (the rest reverted at the facilitator's expense)"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Held: parallel settles of one authorization under many spellings (member
// order, hex case, v as 0/1, unknown payload members, re-worded
// requirements `extra`, a payment identifier) give exactly one success and
// one transaction.
// ---------------------------------------------------------------------------
#[tokio::test]
async fn parallel_variants_of_one_authorization_settle_once() -> TestResult {
    let stack = Stack::start().await?;
    let (devnet, server) = (stack.devnet(), stack.facilitator());
    let signer = devnet.usdc_owner().address;
    let pay_to = Address::random();
    let requirements = requirements(devnet, pay_to);
    let payload = pay(devnet, 4, &requirements, None).await?;

    let mut variants = vec![
        body(&payload, &requirements),
        body(&payload, &requirements),
        body(&upper_signature(&payload), &requirements),
        body(&v_as_parity(&payload), &requirements),
    ];
    let mut extra_member = payload.clone();
    extra_member.payload.insert("note".into(), json!("hi"));
    variants.push(body(&extra_member, &requirements));
    let mut reworded = requirements.clone();
    if let Some(extra) = reworded.extra.as_mut() {
        extra.insert("x".into(), json!(1));
    }
    let mut echoed = payload.clone();
    echoed.accepted = reworded.clone();
    variants.push(body(&echoed, &reworded));
    let mut lower_pay_to = requirements.clone();
    lower_pay_to.pay_to = lower_pay_to.pay_to.to_ascii_lowercase();
    let mut echoed = payload.clone();
    echoed.accepted = lower_pay_to.clone();
    variants.push(body(&echoed, &lower_pay_to));
    let mut with_id = payload.clone();
    with_id.extensions = pay(devnet, 4, &requirements, Some("pay_parallel_variant_00001"))
        .await?
        .extensions;
    variants.push(body(&with_id, &requirements));
    let mut nonce_upper = payload.clone();
    if let Some(auth) = nonce_upper
        .payload
        .get_mut("authorization")
        .and_then(Value::as_object_mut)
    {
        let nonce = auth["nonce"].as_str().unwrap_or_default().to_owned();
        auth.insert(
            "nonce".into(),
            json!(format!(
                "0x{}",
                nonce.trim_start_matches("0x").to_ascii_uppercase()
            )),
        );
        let from = auth["from"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        auth.insert("from".into(), json!(from));
    }
    variants.push(body(&nonce_upper, &requirements));

    let (before, _) = nonces(devnet, signer).await?;
    let mut tasks = Vec::new();
    for request in variants.clone() {
        let base = server.base.clone();
        tasks.push(tokio::spawn(async move {
            let response = reqwest::Client::new()
                .post(format!("{base}/settle"))
                .json(&request)
                .send()
                .await?;
            let status = response.status().as_u16();
            let answer: Value = response.json().await?;
            Ok::<(u16, Value), reqwest::Error>((status, answer))
        }));
    }
    let mut successes = Vec::new();
    for task in tasks {
        let (status, answer) = task.await??;
        assert_eq!(status, 200, "{answer}");
        if answer["success"] == json!(true) {
            successes.push(answer);
        } else {
            assert_eq!(answer["transaction"], json!(""), "{answer}");
        }
    }
    assert_eq!(successes.len(), 1, "{successes:?}");
    // And sequentially afterwards, every spelling is a replay.
    for request in &variants {
        let (status, answer) = settle(server, request, None).await?;
        if request["paymentPayload"]["extensions"].is_null() {
            assert_replay_refused(status, &answer);
        }
    }
    let (after, _) = nonces(devnet, signer).await?;
    assert_eq!(
        after - before,
        1,
        "more than one transaction for one authorization"
    );
    assert_eq!(balance(devnet, pay_to).await?, U256::from(PRICE));
    stack.stop().await;
    Ok(())
}

// ---------------------------------------------------------------------------
// Held: duplicate JSON members resolve the same way at /verify and /settle
// (last one wins), so a body cannot verify as one payment and settle as
// another.
// ---------------------------------------------------------------------------
#[tokio::test]
async fn duplicate_members_resolve_alike_at_verify_and_settle() -> TestResult {
    let stack = Stack::start().await?;
    let (devnet, server) = (stack.devnet(), stack.facilitator());
    let signer = devnet.usdc_owner().address;
    let requirements = requirements(devnet, Address::random());
    let payload = pay(devnet, 5, &requirements, None).await?;
    let good = body(&payload, &requirements).to_string();
    let needle = format!("\"amount\":\"{PRICE}\"");
    assert!(good.contains(&needle));
    // The last `amount` is 1 in every requirements object: both refuse.
    let cheap = good.replace(&needle, &format!("{needle},\"amount\":\"1\""));
    let client = reqwest::Client::new();
    let (_, verified) =
        post_raw(&client, &server.url("/verify"), cheap.clone().into_bytes()).await?;
    assert_eq!(verified["isValid"], json!(false), "{verified}");
    let (before, _) = nonces(devnet, signer).await?;
    let (_, settled) = post_raw(&client, &server.url("/settle"), cheap.into_bytes()).await?;
    assert_eq!(settled["success"], json!(false), "{settled}");
    assert_eq!(nonces(devnet, signer).await?.0, before);
    // The last one is the price: both accept.
    let dear = good.replace(&needle, &format!("\"amount\":\"1\",{needle}"));
    let (_, verified) =
        post_raw(&client, &server.url("/verify"), dear.clone().into_bytes()).await?;
    assert_eq!(verified["isValid"], json!(true), "{verified}");
    let (_, settled) = post_raw(&client, &server.url("/settle"), dear.into_bytes()).await?;
    assert_eq!(settled["success"], json!(true), "{settled}");
    stack.stop().await;
    Ok(())
}

// ---------------------------------------------------------------------------
// Held: a zero-value authorization against zero-amount requirements, and a
// non-object payload, send nothing and answer in the spec's shape.
// ---------------------------------------------------------------------------
#[tokio::test]
async fn zero_value_and_odd_payloads_send_nothing() -> TestResult {
    let stack = Stack::start().await?;
    let (devnet, server) = (stack.devnet(), stack.facilitator());
    let signer = devnet.usdc_owner().address;
    let mut zero = requirements(devnet, Address::random());
    zero.amount = paywire_core::AtomicAmount::ZERO;
    let fundless = ExactEvmClient::new(LocalSigner::random());
    let exact = fundless.sign(&zero).await?;
    let payload = PaymentPayload {
        x402_version: 2,
        payload: exact.to_json(),
        extensions: None,
        resource: None,
        accepted: zero.clone(),
    };
    let before = nonces(devnet, signer).await?.0;
    let client = reqwest::Client::new();
    for path in ["/verify", "/settle"] {
        let (status, answer) = post(&client, &server.url(path), &body(&payload, &zero)).await?;
        assert_eq!(status, 200, "{answer}");
        assert!(answer["isValid"] == json!(false) || answer["success"] == json!(false));
    }
    for odd in [json!(null), json!("x"), json!([]), json!(7)] {
        let mut request = body(&payload, &zero);
        request["paymentPayload"]["payload"] = odd;
        let (status, answer) = post(&client, &server.url("/settle"), &request).await?;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["success"], json!(false), "{answer}");
        assert_eq!(answer["transaction"], json!(""), "{answer}");
    }
    assert_eq!(nonces(devnet, signer).await?.0, before);
    let _ = B256::ZERO;
    stack.stop().await;
    Ok(())
}

// ---------------------------------------------------------------------------
// Finding 8: every `/settle` that parses is written to the ledger, request
// and all, before anything about it is checked -- also for a network this
// facilitator does not serve -- and no row is ever removed. An
// unauthenticated caller stores ~64 KiB (the body limit) per request, for
// ever, at request rate.
// ---------------------------------------------------------------------------
#[tokio::test]
async fn junk_settles_leave_nothing_in_the_ledger() -> TestResult {
    let stack = Stack::start().await?;
    let (devnet, server) = (stack.devnet(), stack.facilitator());
    let mut junk = requirements(devnet, Address::random());
    junk.network = paywire_core::ChainId::eip155(999_999);
    if let Some(extra) = junk.extra.as_mut() {
        extra.insert("pad".into(), json!("p".repeat(30 * 1024)));
    }
    let payload = PaymentPayload {
        x402_version: 2,
        payload: serde_json::from_value(json!({"signature": "0x00", "authorization": {}}))?,
        extensions: None,
        resource: None,
        accepted: junk.clone(),
    };
    let (status, answer) = settle(server, &body(&payload, &junk), None).await?;
    eprintln!(
        "{status} {}",
        answer.to_string().chars().take(300).collect::<String>()
    );
    let key = paywire_facilitator::ledger::fingerprint(&payload.payload, &junk);
    let stored = server.state.ledger().get(&key).await?;
    let size = stored
        .as_ref()
        .and_then(|r| r.request.as_ref())
        .map(|r| serde_json::to_string(r).map_or(0, |t| t.len()));
    stack.stop().await;
    assert!(
        stored.is_none(),
        "a junk request was stored ({size:?} bytes of request)"
    );
    Ok(())
}

/// A JSON-RPC proxy in front of `upstream` counting the calls it forwards,
/// by method.
async fn counting_proxy(
    upstream: String,
) -> (
    String,
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>,
) {
    use axum::routing::post;
    let counts = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let seen = counts.clone();
    let client = reqwest::Client::new();
    let app = axum::Router::new().route(
        "/",
        post(move |body: axum::body::Bytes| {
            let (client, upstream, seen) = (client.clone(), upstream.clone(), seen.clone());
            async move {
                if let Ok(value) = serde_json::from_slice::<Value>(&body) {
                    let calls = match value {
                        Value::Array(items) => items,
                        other => vec![other],
                    };
                    let mut seen = seen
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    for call in calls {
                        let method = call["method"].as_str().unwrap_or("?").to_owned();
                        *seen.entry(method).or_insert(0) += 1;
                    }
                }
                let answer = client
                    .post(upstream)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| e.to_string());
                let bytes = match answer {
                    Ok(response) => response.bytes().await.unwrap_or_default(),
                    Err(_) => axum::body::Bytes::new(),
                };
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    bytes,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{address}/"), counts)
}

// ---------------------------------------------------------------------------
// Finding 9: signature-free RPC amplification through the front-run search.
// An *expired* authorization is refused by its time window before its
// signature is looked at, and then searched for on chain whenever its nonce
// is used. Anyone can copy (from, nonce) of any old EIP-3009 transfer from
// public logs, set validBefore in the past and any signature: each such
// `/settle` makes the facilitator bisect block timestamps and read the whole
// look-back window (one day by default) in `eth_getLogs` chunks -- here ~40
// RPC calls per request; on Base with the defaults, ~22 `eth_getLogs` of
// 2,000 blocks plus ~32 header reads. No funds, key or API key needed.
// ---------------------------------------------------------------------------
#[tokio::test]
async fn an_unsigned_expired_authorization_costs_few_rpc_calls() -> TestResult {
    let devnet = Devnet::start().await?;
    // A transfer made long ago by someone else.
    let victim_requirements = requirements(&devnet, Address::random());
    let old = pay(&devnet, 6, &victim_requirements, None).await?;
    let dir = tempfile::tempdir()?;
    {
        let server = start(&devnet, &dir.path().join("first.sqlite")).await?;
        let (status, answer) = settle(&server, &body(&old, &victim_requirements), None).await?;
        assert_eq!(
            (status, &answer["success"]),
            (200, &json!(true)),
            "{answer}"
        );
        server.stop().await;
    }
    // 2,000 blocks two seconds apart pass (about an hour).
    devnet.rpc("anvil_mine", json!(["0x7d0", "0x2"])).await?;

    let (proxy, counts) = counting_proxy(devnet.rpc_url().to_owned()).await;
    let text = config_text(
        devnet.network(),
        &proxy,
        Some(devnet.usdc()),
        &dir.path().join("ledger.sqlite"),
    )
    .replace(
        "gas_limit = 300000",
        "gas_limit = 300000\nlog_range_blocks = 50\nreconcile_lookback_seconds = 3000",
    );
    let server = start_text(&devnet, &text).await?;
    // The attacker: the victim's (from, to, value, nonce), validBefore in the
    // past, a signature of zeros.
    let mut forged = old.clone();
    if let Some(auth) = forged
        .payload
        .get_mut("authorization")
        .and_then(Value::as_object_mut)
    {
        auth.insert("validBefore".into(), json!("1000"));
    }
    forged
        .payload
        .insert("signature".into(), json!(format!("0x{}", "00".repeat(65))));
    counts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clear();
    let (status, answer) = settle(&server, &body(&forged, &victim_requirements), None).await?;
    let counts = counts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let total: u64 = counts.values().sum();
    eprintln!("{status} {answer}\nRPC calls for one unsigned request: {total} {counts:?}");
    server.stop().await;
    assert_eq!(answer["success"], json!(false), "{answer}");
    assert!(
        total <= 5,
        "one unsigned /settle cost {total} RPC calls: {counts:?}"
    );
    Ok(())
}
