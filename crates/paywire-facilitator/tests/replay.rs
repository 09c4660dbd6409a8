//! Replays at the facilitator (field lesson 30) and recovery against chain
//! state, on the devnet with Circle's real USDC and either ledger.
//!
//! A settle of a payload whose outcome was already delivered is refused
//! (`success: false`, used-nonce reason, `transaction: ""`) and sends
//! nothing, unless it is an idempotent retry: the same payment identifier,
//! or the same API key within `idempotent_retry_window_seconds`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{Address, B256, U256};
use common::*;
use paywire_core::PaymentRequirements;
use paywire_evm::LocalSigner;
use paywire_evm::exact::ExactEvmClient;
use paywire_facilitator::SettlementState;
use paywire_facilitator::ledger::fingerprint;
use paywire_testkit::{Devnet, DevnetOptions};
use serde_json::{Value, json};

both_stores!(
    a_repeated_settle_is_refused_and_sends_nothing,
    a_front_run_settlement_is_reported_once,
    the_same_payment_identifier_gets_the_recorded_answer,
    the_same_api_key_gets_the_recorded_answer_within_the_window,
    a_payment_identifier_is_no_key_and_expires_with_the_window,
    a_caller_that_hung_up_leaves_the_outcome_to_the_next_settle,
    a_pending_settlement_is_delivered_once_confirmed,
    a_pending_answer_to_an_api_key_is_reserved_for_it,
    a_respelled_payload_never_takes_a_claimed_transaction,
    recovery_confirms_a_landed_transaction_after_its_window,
    recovery_never_reruns_a_delivered_failure,
);

/// A devnet that mines only on demand once `evm_setAutomine` is off (no
/// interval blocks): settlements then wait for their receipt until the test
/// mines.
async fn manual_devnet() -> Result<Devnet, Box<dyn std::error::Error + Send + Sync>> {
    Ok(Devnet::start_with(DevnetOptions {
        block_time: None,
        ..DevnetOptions::default()
    })
    .await?)
}

const KEY_A: &str = "shop-a-key-0123456789";
const KEY_B: &str = "shop-b-key-0123456789";

/// A facilitator config for the devnet: `top` holds top-level settings,
/// `sections` more tables (API keys, recovery).
fn configured(devnet: &Devnet, store: &TestStore, top: &str, sections: &str) -> String {
    let base = config_text(
        devnet.network(),
        devnet.rpc_url(),
        Some(devnet.usdc()),
        &store.location(),
    );
    format!("{top}\n{base}\n{sections}")
}

/// Two API keys, named `shop-a` and `shop-b`, allowed on `endpoints`.
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

async fn start_text(
    devnet: &Devnet,
    text: &str,
) -> Result<Server, Box<dyn std::error::Error + Send + Sync>> {
    start_from(text, &devnet.usdc_owner().private_key_hex()).await
}

/// POSTs `body` to `/settle`, with an API key when given.
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

fn assert_settled(status: u16, answer: &Value) -> String {
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["success"], json!(true), "{answer}");
    let transaction = answer["transaction"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(transaction.len(), 66, "{answer}");
    transaction
}

/// Waits until the ledger holds `key` in `state`.
async fn wait_for_state(
    server: &Server,
    key: &str,
    state: SettlementState,
) -> Result<paywire_facilitator::SettlementRecord, Box<dyn std::error::Error + Send + Sync>> {
    for _ in 0..300 {
        if let Some(record) = server.state.ledger().get(key).await?
            && record.state == state
        {
            return Ok(record);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("{key} never reached {}", state.as_str()).into())
}

async fn a_repeated_settle_is_refused_and_sends_nothing(store: TestStore) -> TestResult {
    let stack = Stack::start_with(StackOptions::default().ledger(store)).await?;
    let (devnet, server) = (stack.devnet(), stack.facilitator());
    let signer = devnet.usdc_owner().address;
    let pay_to = Address::random();
    let requirements = requirements(devnet, pay_to);
    let payload = pay(devnet, 1, &requirements, None).await?;
    let request = body(&payload, &requirements);

    let (status, first) = settle(server, &request, None).await?;
    let transaction = assert_settled(status, &first);
    let sent = tx_count(devnet, signer).await?;

    // The same payload again, twice: refused, nothing broadcast.
    for _ in 0..2 {
        let (status, again) = settle(server, &request, None).await?;
        assert_replay_refused(status, &again);
        assert_eq!(again["payer"], first["payer"], "{again}");
    }

    // The same authorization under re-worded requirements (another
    // fingerprint): the scheme finds it executed on chain, but that
    // transaction already answered success to the first payload.
    let mut reworded = requirements.clone();
    if let Some(extra) = reworded.extra.as_mut() {
        extra.insert("reworded".into(), json!(true));
    }
    let mut echoed = payload.clone();
    echoed.accepted = reworded.clone();
    let (status, again) = settle(server, &body(&echoed, &reworded), None).await?;
    assert_replay_refused(status, &again);

    // A new authorization reusing the settled nonce (another validBefore,
    // so another signature): refused at verify and at settle.
    let nonce: B256 = payload.payload["authorization"]["nonce"]
        .as_str()
        .ok_or("no nonce")?
        .parse()?;
    let client = ExactEvmClient::new(LocalSigner::new(devnet.payer(1).signer()))
        .with_nonce_source(Arc::new(move || nonce));
    let mut longer = requirements.clone();
    longer.max_timeout_seconds = 120;
    let reused = client.sign(&longer).await?;
    let mut reused_payload = payload.clone();
    reused_payload.payload = reused.to_json();
    reused_payload.accepted = longer.clone();
    assert_ne!(reused_payload.payload, payload.payload);
    let reused_body = body(&reused_payload, &longer);
    let (status, verified) = post(
        &reqwest::Client::new(),
        &server.url("/verify"),
        &reused_body,
    )
    .await?;
    assert_eq!(
        (status, &verified["isValid"]),
        (200, &json!(false)),
        "{verified}"
    );
    let (status, again) = settle(server, &reused_body, None).await?;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["success"], json!(false), "{again}");
    assert_eq!(again["transaction"], json!(""), "{again}");
    assert_eq!(
        again["errorReason"],
        json!("invalid_exact_evm_nonce_already_used"),
        "{again}"
    );

    devnet.mine().await?;
    assert_eq!(
        tx_count(devnet, signer).await?,
        sent,
        "a replay broadcast something"
    );
    assert_eq!(balance(devnet, pay_to).await?, U256::from(PRICE));
    let record = server
        .state
        .ledger()
        .get(&fingerprint(&payload.payload, &requirements))
        .await?
        .ok_or("no record")?;
    assert_eq!(record.transaction.as_deref(), Some(transaction.as_str()));
    let delivery = record.delivery.ok_or("no delivery recorded")?;
    assert_eq!(delivery.state, SettlementState::Confirmed);
    assert_eq!(delivery.caller, None);
    stack.stop().await;
    Ok(())
}

async fn a_front_run_settlement_is_reported_once(store: TestStore) -> TestResult {
    use paywire_evm::exact::ExactEvmPayload;

    let stack = Stack::start_with(StackOptions::default().ledger(store)).await?;
    let (devnet, server) = (stack.devnet(), stack.facilitator());
    let signer = devnet.usdc_owner().address;
    let pay_to = Address::random();
    let requirements = requirements(devnet, pay_to);
    let payload = pay(devnet, 2, &requirements, None).await?;
    let request = body(&payload, &requirements);
    let sent = tx_count(devnet, signer).await?;

    // Someone else submits the payer's authorization first.
    let exact = ExactEvmPayload::from_json(&payload.payload)?;
    let calldata = exact.transfer_calldata();
    let front_runner = devnet.account(3).address;
    let receipt = devnet
        .transact(front_runner, devnet.usdc(), calldata)
        .await?;

    // The payer was charged once: the first settle of the payload is told
    // so, with the front-runner's transaction; the next is a replay.
    let (status, first) = settle(server, &request, None).await?;
    let transaction = assert_settled(status, &first);
    assert_eq!(transaction, receipt.transaction_hash.to_string());
    let (status, again) = settle(server, &request, None).await?;
    assert_replay_refused(status, &again);
    assert_eq!(
        tx_count(devnet, signer).await?,
        sent,
        "the facilitator sent something"
    );
    assert_eq!(balance(devnet, pay_to).await?, U256::from(PRICE));
    stack.stop().await;
    Ok(())
}

async fn the_same_payment_identifier_gets_the_recorded_answer(store: TestStore) -> TestResult {
    let stack = Stack::start_with(StackOptions::default().ledger(store)).await?;
    let (devnet, server) = (stack.devnet(), stack.facilitator());
    let signer = devnet.usdc_owner().address;
    let requirements = requirements(devnet, Address::random());
    let id = "pay_replay_test_0123456789abcdef";
    let payload = pay(devnet, 2, &requirements, Some(id)).await?;
    let request = body(&payload, &requirements);

    let (status, first) = settle(server, &request, None).await?;
    assert_settled(status, &first);
    let sent = tx_count(devnet, signer).await?;
    // Same id, same payload: the recorded answer, as often as asked.
    for _ in 0..2 {
        let (status, again) = settle(server, &request, None).await?;
        assert_eq!(status, 200);
        assert_eq!(again, first);
    }
    // The same payload without the id, or under a fresh id: a replay.
    let mut bare = payload.clone();
    bare.extensions = None;
    let (status, again) = settle(server, &body(&bare, &requirements), None).await?;
    assert_replay_refused(status, &again);
    let mut renamed = payload.clone();
    renamed.extensions = pay(
        devnet,
        2,
        &requirements,
        Some("pay_another_id_0123456789ab"),
    )
    .await?
    .extensions;
    let (status, again) = settle(server, &body(&renamed, &requirements), None).await?;
    assert_replay_refused(status, &again);
    assert_eq!(tx_count(devnet, signer).await?, sent);
    stack.stop().await;
    Ok(())
}

async fn the_same_api_key_gets_the_recorded_answer_within_the_window(
    store: TestStore,
) -> TestResult {
    let devnet = Devnet::start().await?;
    let text = configured(
        &devnet,
        &store,
        "idempotent_retry_window_seconds = 3",
        &api_keys(r#"["verify", "settle"]"#),
    );
    let server = start_text(&devnet, &text).await?;
    let signer = devnet.usdc_owner().address;
    let requirements = requirements(&devnet, Address::random());
    let payload = pay(&devnet, 3, &requirements, None).await?;
    let request = body(&payload, &requirements);

    let (status, first) = settle(&server, &request, Some(KEY_A)).await?;
    assert_settled(status, &first);
    let sent = tx_count(&devnet, signer).await?;
    // The same key, within the window: the recorded answer.
    let (status, again) = settle(&server, &request, Some(KEY_A)).await?;
    assert_eq!((status, &again), (200, &first));
    // Another key: a replay.
    let (status, again) = settle(&server, &request, Some(KEY_B)).await?;
    assert_replay_refused(status, &again);
    // The same key after the window: a replay too.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let (status, again) = settle(&server, &request, Some(KEY_A)).await?;
    assert_replay_refused(status, &again);
    assert_eq!(tx_count(&devnet, signer).await?, sent);

    let key = fingerprint(&payload.payload, &requirements);
    let delivery = server
        .state
        .ledger()
        .get(&key)
        .await?
        .and_then(|r| r.delivery)
        .ok_or("no delivery")?;
    assert_eq!(delivery.caller.as_deref(), Some("shop-a"), "{delivery:?}");
    server.stop().await;
    Ok(())
}

/// The payer chooses the payment identifier: it re-reads an answer given
/// without an API key, within the window only, and never one given to a key.
async fn a_payment_identifier_is_no_key_and_expires_with_the_window(
    store: TestStore,
) -> TestResult {
    let devnet = Devnet::start().await?;
    let text = configured(
        &devnet,
        &store,
        "idempotent_retry_window_seconds = 3",
        &api_keys(r#"["verify"]"#),
    );
    let server = start_text(&devnet, &text).await?;
    let signer = devnet.usdc_owner().address;

    // Answered to shop-a: the id stands in for nobody, not even in time.
    let to_a = requirements(&devnet, Address::random());
    let keyed = body(
        &pay(&devnet, 1, &to_a, Some("pay_keyed_answer_0123456789")).await?,
        &to_a,
    );
    let (status, first) = settle(&server, &keyed, Some(KEY_A)).await?;
    assert_settled(status, &first);
    for key in [None, Some(KEY_B)] {
        let (status, again) = settle(&server, &keyed, key).await?;
        assert_replay_refused(status, &again);
    }
    let (status, again) = settle(&server, &keyed, Some(KEY_A)).await?;
    assert_eq!((status, &again), (200, &first));

    // Answered without a key: the same id re-reads it, within the window.
    let to_b = requirements(&devnet, Address::random());
    let anonymous = body(
        &pay(&devnet, 2, &to_b, Some("pay_anonymous_answer_01234")).await?,
        &to_b,
    );
    let (status, first) = settle(&server, &anonymous, None).await?;
    assert_settled(status, &first);
    let (status, again) = settle(&server, &anonymous, Some(KEY_B)).await?;
    assert_eq!((status, &again), (200, &first));
    let sent = tx_count(&devnet, signer).await?;
    tokio::time::sleep(Duration::from_millis(4500)).await;
    for key in [None, Some(KEY_A)] {
        let (status, again) = settle(&server, &anonymous, key).await?;
        assert_replay_refused(status, &again);
    }
    assert_eq!(tx_count(&devnet, signer).await?, sent);
    server.stop().await;
    Ok(())
}

async fn a_caller_that_hung_up_leaves_the_outcome_to_the_next_settle(
    store: TestStore,
) -> TestResult {
    let devnet = manual_devnet().await?;
    let server = start(&devnet, &store.location()).await?;
    let signer = devnet.usdc_owner().address;
    let pay_to = Address::random();
    let requirements = requirements(&devnet, pay_to);
    let payload = pay(&devnet, 4, &requirements, None).await?;
    let request = body(&payload, &requirements);
    let key = fingerprint(&payload.payload, &requirements);
    let sent = tx_count(&devnet, signer).await?;

    // No blocks until we say so: the settlement waits for its receipt, and
    // the caller's own timeout fires first.
    devnet.rpc("evm_setAutomine", json!([false])).await?;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(800))
        .build()?;
    let hung_up = post(&impatient, &server.url("/settle"), &request).await;
    assert!(hung_up.is_err(), "{hung_up:?}");
    devnet.mine().await?;
    let record = wait_for_state(&server, &key, SettlementState::Confirmed).await?;
    assert_eq!(
        record.delivery, None,
        "the caller that hung up was told nothing"
    );

    // The next settle (anyone's) gets the outcome, once.
    let (status, second) = settle(&server, &request, None).await?;
    let transaction = assert_settled(status, &second);
    assert_eq!(record.transaction.as_deref(), Some(transaction.as_str()));
    let (status, third) = settle(&server, &request, None).await?;
    assert_replay_refused(status, &third);
    devnet.mine().await?;
    assert_eq!(tx_count(&devnet, signer).await?, sent + 1);
    assert_eq!(balance(&devnet, pay_to).await?, U256::from(PRICE));
    server.stop().await;
    Ok(())
}

/// A facilitator that answers `pending` after one second without a receipt.
async fn start_impatient(
    devnet: &Devnet,
    store: &TestStore,
    sections: &str,
) -> Result<Server, Box<dyn std::error::Error + Send + Sync>> {
    let text = configured(devnet, store, "", sections).replace(
        "receipt_timeout_seconds = 20",
        "receipt_timeout_seconds = 1",
    );
    start_text(devnet, &text).await
}

async fn a_pending_settlement_is_delivered_once_confirmed(store: TestStore) -> TestResult {
    let devnet = manual_devnet().await?;
    let server = start_impatient(&devnet, &store, "").await?;
    let requirements = requirements(&devnet, Address::random());
    let request = body(&pay(&devnet, 5, &requirements, None).await?, &requirements);

    devnet.rpc("evm_setAutomine", json!([false])).await?;
    let (status, pending) = settle(&server, &request, None).await?;
    assert_eq!(status, 200, "{pending}");
    assert_eq!(pending["success"], json!(false), "{pending}");
    assert_eq!(
        pending["errorReason"],
        json!("settlement_pending"),
        "{pending}"
    );
    let hash = pending["transaction"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(hash.len(), 66, "pending names its transaction: {pending}");

    devnet.mine().await?;
    devnet.rpc("evm_setAutomine", json!([true])).await?;
    // Past the pending answer's freshness, the next settle rechecks: the
    // first one to see the confirmation gets the success, once.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, confirmed) = settle(&server, &request, None).await?;
    assert_eq!(assert_settled(status, &confirmed), hash);
    let (status, again) = settle(&server, &request, None).await?;
    assert_replay_refused(status, &again);
    server.stop().await;
    Ok(())
}

async fn a_pending_answer_to_an_api_key_is_reserved_for_it(store: TestStore) -> TestResult {
    let devnet = manual_devnet().await?;
    // Keys guard /verify only: /settle stays open, and a key presented
    // there still identifies the caller.
    let server = start_impatient(&devnet, &store, &api_keys(r#"["verify"]"#)).await?;
    let requirements = requirements(&devnet, Address::random());
    let request = body(&pay(&devnet, 6, &requirements, None).await?, &requirements);

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
    tokio::time::sleep(Duration::from_millis(2100)).await;

    // Only shop-a's retries get the outcome.
    for key in [None, Some(KEY_B)] {
        let (status, answer) = settle(&server, &request, key).await?;
        assert_replay_refused(status, &answer);
    }
    let (status, confirmed) = settle(&server, &request, Some(KEY_A)).await?;
    let hash = assert_settled(status, &confirmed);
    assert_eq!(json!(hash), pending["transaction"]);
    let (status, again) = settle(&server, &request, Some(KEY_A)).await?;
    assert_eq!((status, &again), (200, &confirmed));
    let (status, answer) = settle(&server, &request, None).await?;
    assert_replay_refused(status, &answer);
    server.stop().await;
    Ok(())
}

/// The same authorization with its signature hex in upper case: another
/// fingerprint for the same on-chain payment.
fn respelled(request: &Value) -> Value {
    let mut variant = request.clone();
    let signature = request["paymentPayload"]["payload"]["signature"]
        .as_str()
        .unwrap_or_default();
    let upper = format!(
        "0x{}",
        signature.trim_start_matches("0x").to_ascii_uppercase()
    );
    variant["paymentPayload"]["payload"]["signature"] = json!(upper);
    variant
}

/// A transaction belongs to the payload that broadcast it from before the
/// broadcast: the background reconciler confirms the pending settlement
/// for it, and a re-spelled payload of the same authorization is answered
/// as a replay (the authorization is bound to the payload it was settled
/// for, from the pending answer on).
async fn a_respelled_payload_never_takes_a_claimed_transaction(store: TestStore) -> TestResult {
    let devnet = manual_devnet().await?;
    let sections = format!(
        "[recovery]\ninterval_seconds = 1\nmin_age_seconds = 1\n{}",
        api_keys(r#"["verify"]"#)
    );
    let server = start_impatient(&devnet, &store, &sections).await?;
    let requirements = requirements(&devnet, Address::random());
    let payload = pay(&devnet, 1, &requirements, None).await?;
    let request = body(&payload, &requirements);
    let key = fingerprint(&payload.payload, &requirements);

    devnet.rpc("evm_setAutomine", json!([false])).await?;
    let (status, pending) = settle(&server, &request, Some(KEY_A)).await?;
    assert_eq!(
        (status, &pending["errorReason"]),
        (200, &json!("settlement_pending")),
        "{pending}"
    );
    devnet.mine().await?;
    devnet.rpc("evm_setAutomine", json!([true])).await?;
    let record = wait_for_state(&server, &key, SettlementState::Confirmed).await?;
    let hash = record.transaction.clone().ok_or("no transaction")?;

    let variant = respelled(&request);
    let variant_key = fingerprint(
        variant["paymentPayload"]["payload"]
            .as_object()
            .ok_or("payload")?,
        &requirements,
    );
    assert_ne!(variant_key, key);
    for caller in [None, Some(KEY_B)] {
        let (status, answer) = settle(&server, &variant, caller).await?;
        assert_replay_refused(status, &answer);
    }
    // The authorization (its spend key) is bound to the payload it settled
    // for: the re-spelling is refused before the scheme runs, so it leaves
    // no record and takes nothing.
    let stolen = server.state.ledger().get(&variant_key).await?;
    assert!(stolen.is_none(), "{stolen:?}");
    assert_eq!(
        server
            .state
            .ledger()
            .find_by_transaction(&hash)
            .await?
            .map(|r| r.state),
        Some(SettlementState::Confirmed)
    );
    let (status, confirmed) = settle(&server, &request, Some(KEY_A)).await?;
    assert_eq!(assert_settled(status, &confirmed), hash);
    server.stop().await;
    Ok(())
}

async fn recovery_confirms_a_landed_transaction_after_its_window(store: TestStore) -> TestResult {
    let devnet = manual_devnet().await?;
    let quiet = "[recovery]\ninterval_seconds = 0\n";
    let first = start_impatient(&devnet, &store, quiet).await?;
    let pay_to = Address::random();
    // Valid for 8 s; the facilitator settles while at least 6 s remain.
    let mut requirements: PaymentRequirements = requirements(&devnet, pay_to);
    requirements.max_timeout_seconds = 8;
    let payload = pay(&devnet, 7, &requirements, None).await?;
    let request = body(&payload, &requirements);
    let key = fingerprint(&payload.payload, &requirements);

    devnet.rpc("evm_setAutomine", json!([false])).await?;
    let (status, pending) = settle(&first, &request, None).await?;
    assert_eq!(
        pending["errorReason"],
        json!("settlement_pending"),
        "{pending}"
    );
    let hash = pending["transaction"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    first.stop().await;
    assert_eq!(status, 200);
    // The transaction lands while the facilitator is down, and the
    // authorization's window passes before it comes back.
    devnet.mine().await?;
    devnet.rpc("evm_setAutomine", json!([true])).await?;
    let valid_before: u64 = payload.payload["authorization"]["validBefore"]
        .as_str()
        .ok_or("no validBefore")?
        .parse()?;
    loop {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
        if now.as_secs() > valid_before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Startup recovery reads the chain before any time-window check.
    let second = start_impatient(&devnet, &store, quiet).await?;
    let record = second.state.ledger().get(&key).await?.ok_or("no record")?;
    assert_eq!(record.state, SettlementState::Confirmed, "{record:?}");
    assert_eq!(record.transaction.as_deref(), Some(hash.as_str()));
    assert_eq!(balance(&devnet, pay_to).await?, U256::from(PRICE));
    // The pending answer went to an anonymous caller: the first settle
    // after recovery gets the success, once.
    let (status, settled) = settle(&second, &request, None).await?;
    assert_eq!(assert_settled(status, &settled), hash);
    let (status, again) = settle(&second, &request, None).await?;
    assert_replay_refused(status, &again);
    second.stop().await;
    Ok(())
}

async fn recovery_never_reruns_a_delivered_failure(store: TestStore) -> TestResult {
    let devnet = Devnet::start().await?;
    let signer = devnet.usdc_owner().address;
    let pay_to = Address::random();
    let requirements = requirements(&devnet, pay_to);
    let payload = pay(&devnet, 8, &requirements, None).await?;
    let request = body(&payload, &requirements);
    let key = fingerprint(&payload.payload, &requirements);
    let sent = tx_count(&devnet, signer).await?;

    // The chain is unreachable: the caller is told the settlement failed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let quiet = "[recovery]\ninterval_seconds = 0\n";
    let text = configured(&devnet, &store, "", quiet)
        .replace(devnet.rpc_url(), &format!("http://127.0.0.1:{port}"));
    let down = start_text(&devnet, &text).await?;
    let (status, error) = settle(&down, &request, None).await?;
    assert_eq!(status, 502, "{error}");
    down.stop().await;

    // Back with a working chain: startup recovery must not settle what
    // its caller was told failed (that caller may have paid again).
    let up = start(&devnet, &store.location()).await?;
    let record = up.state.ledger().get(&key).await?.ok_or("no record")?;
    assert_eq!(record.state, SettlementState::Failed, "{record:?}");
    devnet.mine().await?;
    assert_eq!(tx_count(&devnet, signer).await?, sent, "recovery re-ran it");
    assert_eq!(balance(&devnet, pay_to).await?, U256::ZERO);
    // An explicit retry by a caller is still allowed: nothing was sent.
    let (status, retried) = settle(&up, &request, None).await?;
    assert_settled(status, &retried);
    assert_eq!(balance(&devnet, pay_to).await?, U256::from(PRICE));
    up.stop().await;
    Ok(())
}
