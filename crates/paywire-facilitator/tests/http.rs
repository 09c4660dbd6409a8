//! The facilitator over HTTP against a devnet with Circle's real USDC.

mod common;

use alloy_primitives::{Address, U256};
use common::*;
use paywire_testkit::Devnet;
use serde_json::{Value, json};

fn assert_error(status: u16, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(status, expected_status, "body: {body}");
    assert_eq!(body["error"], json!(code), "body: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "message missing: {body}"
    );
}

/// A 200 answer in the spec's shape for a malformed payment; its message.
fn assert_malformed(path: &str, status: u16, answer: &Value, reason: &str) -> String {
    assert_eq!(status, 200, "{path}: {answer}");
    let (flag, field, message) = if path == "/verify" {
        ("isValid", "invalidReason", "invalidMessage")
    } else {
        assert_eq!(answer["transaction"], json!(""), "{answer}");
        assert!(answer["network"].is_string(), "{answer}");
        ("success", "errorReason", "errorMessage")
    };
    assert_eq!(answer[flag], json!(false), "{answer}");
    assert_eq!(answer[field], json!(reason), "{answer}");
    answer[message].as_str().unwrap_or_default().to_owned()
}

both_stores!(
    verify_and_settle_move_exact_amount_once,
    concurrent_duplicate_settles_reach_the_scheme_once,
    payment_identifier_caches_and_conflicts,
    ledger_survives_restart,
);

async fn metrics_text(client: &reqwest::Client, server: &Server) -> String {
    match client.get(server.url("/metrics")).send().await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn verify_and_settle_move_exact_amount_once(store: TestStore) -> TestResult {
    let stack = Stack::start_with(StackOptions::default().ledger(store)).await?;
    let (devnet, server) = (stack.devnet(), stack.facilitator());
    let client = reqwest::Client::new();
    let pay_to = Address::random();
    let payer = devnet.payer(1).address;
    let requirements = requirements(devnet, pay_to);
    let payload = pay(devnet, 1, &requirements, None).await?;
    let request = body(&payload, &requirements);
    let payer_before = balance(devnet, payer).await?;

    let (status, verify) = post(&client, &server.url("/verify"), &request).await?;
    assert_eq!(status, 200, "{verify}");
    assert_eq!(verify["isValid"], json!(true), "{verify}");
    assert_eq!(verify["payer"], json!(payer.to_string()));

    let (status, settle) = post(&client, &server.url("/settle"), &request).await?;
    assert_eq!(status, 200, "{settle}");
    assert_eq!(settle["success"], json!(true), "{settle}");
    assert_eq!(settle["network"], json!("eip155:31337"));
    let tx = settle["transaction"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(tx.len(), 66, "{settle}");
    assert_eq!(balance(devnet, pay_to).await?, U256::from(PRICE));
    assert_eq!(
        balance(devnet, payer).await?,
        payer_before - U256::from(PRICE)
    );

    // Repeat: a replay, refused; nothing moves again, nothing is sent, the
    // scheme is not called.
    let signer = devnet.usdc_owner().address;
    let sent = tx_count(devnet, signer).await?;
    let (status, again) = post(&client, &server.url("/settle"), &request).await?;
    assert_replay_refused(status, &again);
    assert_eq!(again["payer"], json!(payer.to_string()), "{again}");
    devnet.mine().await?;
    assert_eq!(tx_count(devnet, signer).await?, sent);
    assert_eq!(balance(devnet, pay_to).await?, U256::from(PRICE));
    assert_eq!(
        balance(devnet, payer).await?,
        payer_before - U256::from(PRICE)
    );

    let metrics = metrics_text(&client, server).await;
    assert!(
        metrics.contains(
            "paywire_settle_total{outcome=\"replay\",reason=\"invalid_exact_evm_nonce_already_used\",network=\"eip155:31337\",scheme=\"exact\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("paywire_settle_total{outcome=\"confirmed\",reason=\"\",network=\"eip155:31337\",scheme=\"exact\"} 1"));
    assert!(metrics.contains("paywire_verify_total{outcome=\"valid\",reason=\"\",network=\"eip155:31337\",scheme=\"exact\"} 1"));
    assert!(metrics.contains(
        "paywire_settle_duration_seconds_count{network=\"eip155:31337\",scheme=\"exact\"} 1"
    ));
    assert!(metrics.contains("paywire_http_requests_total{route=\"/settle\",status=\"200\"} 2"));
    // The signer's gas balance is exported (it paid for one settlement).
    assert!(
        metrics.contains("paywire_signer_balance{network=\"eip155:31337\",signer=\"0x"),
        "{metrics}"
    );
    stack.stop().await;
    Ok(())
}

async fn concurrent_duplicate_settles_reach_the_scheme_once(store: TestStore) -> TestResult {
    let stack = Stack::start_with(StackOptions::default().ledger(store)).await?;
    let (devnet, server) = (stack.devnet(), stack.facilitator());
    let client = reqwest::Client::new();
    let pay_to = Address::random();
    let requirements = requirements(devnet, pay_to);
    let payload = pay(devnet, 2, &requirements, None).await?;
    let request = body(&payload, &requirements);
    let url = server.url("/settle");
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (client, url, request) = (client.clone(), url.clone(), request.clone());
        tasks.push(tokio::spawn(
            async move { post(&client, &url, &request).await },
        ));
    }
    // One of them gets the success; the others are replays of it.
    let mut settled = 0;
    for task in tasks {
        let (status, answer) = task.await??;
        if answer["success"] == json!(true) {
            assert_eq!(status, 200, "{answer}");
            settled += 1;
        } else {
            assert_replay_refused(status, &answer);
        }
    }
    assert_eq!(settled, 1);
    assert_eq!(balance(devnet, pay_to).await?, U256::from(PRICE));
    let metrics = metrics_text(&client, server).await;
    assert!(
        metrics.contains(
            "paywire_settle_duration_seconds_count{network=\"eip155:31337\",scheme=\"exact\"} 1"
        ),
        "{metrics}"
    );
    stack.stop().await;
    Ok(())
}

async fn payment_identifier_caches_and_conflicts(store: TestStore) -> TestResult {
    let stack = Stack::start_with(StackOptions::default().ledger(store)).await?;
    let (devnet, server) = (stack.devnet(), stack.facilitator());
    let client = reqwest::Client::new();
    let pay_to = Address::random();
    let requirements = requirements(devnet, pay_to);
    let id = "pay_7d5d747be160e280504c099d984bcfe0";

    let first = pay(devnet, 3, &requirements, Some(id)).await?;
    let (status, settled) = post(
        &client,
        &server.url("/settle"),
        &body(&first, &requirements),
    )
    .await?;
    assert_eq!(status, 200, "{settled}");
    assert_eq!(settled["success"], json!(true), "{settled}");

    // Same id, same payload: the recorded answer.
    let (status, cached) = post(
        &client,
        &server.url("/settle"),
        &body(&first, &requirements),
    )
    .await?;
    assert_eq!(status, 200);
    assert_eq!(cached, settled);

    // Same id, another payment (fresh nonce): 409, on settle and verify.
    let second = pay(devnet, 3, &requirements, Some(id)).await?;
    assert_ne!(first.payload, second.payload);
    let (status, error) = post(
        &client,
        &server.url("/settle"),
        &body(&second, &requirements),
    )
    .await?;
    assert_error(status, &error, 409, "payment_identifier_conflict");
    let (status, error) = post(
        &client,
        &server.url("/verify"),
        &body(&second, &requirements),
    )
    .await?;
    assert_error(status, &error, 409, "payment_identifier_conflict");
    assert_eq!(balance(devnet, pay_to).await?, U256::from(PRICE));

    // Malformed ids: 400.
    for bad in ["short", "has spaces in it, sixteen+", &"x".repeat(129)] {
        let payload = pay(devnet, 3, &requirements, Some(bad)).await?;
        let (status, error) = post(
            &client,
            &server.url("/settle"),
            &body(&payload, &requirements),
        )
        .await?;
        assert_error(status, &error, 400, "invalid_payment_identifier");
    }
    // required: true without an id: 400.
    let mut payload = pay(devnet, 3, &requirements, None).await?;
    payload.extensions = Some(serde_json::from_value(json!({
        "payment-identifier": {"info": {"required": true}, "schema": {}}
    }))?);
    let (status, error) = post(
        &client,
        &server.url("/settle"),
        &body(&payload, &requirements),
    )
    .await?;
    assert_error(status, &error, 400, "invalid_payment_identifier");
    stack.stop().await;
    Ok(())
}

#[tokio::test]
async fn bad_input_gets_json_errors() -> TestResult {
    let stack = Stack::start().await?;
    let (devnet, server) = (stack.devnet(), stack.facilitator());
    let client = reqwest::Client::new();
    for path in ["/verify", "/settle"] {
        let url = server.url(path);
        let (status, error) = post_raw(&client, &url, b"{not json".to_vec()).await?;
        assert_error(status, &error, 400, "invalid_json");

        // JSON, but not a well-formed payment: the spec's answer shape.
        let v1 = json!({"x402Version": 1, "paymentPayload": {}, "paymentRequirements": {}});
        let (status, answer) = post(&client, &url, &v1).await?;
        let message = assert_malformed(path, status, &answer, "invalid_x402_version");
        assert!(message.contains("version 1"), "{answer}");

        let (status, answer) = post(&client, &url, &json!({"paymentPayload": {}})).await?;
        assert_malformed(path, status, &answer, "invalid_x402_version");

        let missing = json!({"x402Version": 2, "paymentPayload": {"x402Version": 2}});
        let (status, answer) = post(&client, &url, &missing).await?;
        assert_malformed(path, status, &answer, "invalid_payment_requirements");

        let (status, answer) = post(&client, &url, &json!([1, 2, 3])).await?;
        assert_malformed(path, status, &answer, "invalid_payload");

        let mut huge = br#"{"x402Version":2,"pad":""#.to_vec();
        huge.extend(std::iter::repeat_n(b'a', 70 * 1024));
        huge.extend(br#""}"#);
        let (status, error) = post_raw(&client, &url, huge).await?;
        assert_error(status, &error, 413, "body_too_large");
    }
    let response = client.get(server.url("/nope")).send().await?;
    assert_eq!(response.status().as_u16(), 404);
    assert_eq!(response.json::<Value>().await?["error"], json!("not_found"));
    let response = client.get(server.url("/settle")).send().await?;
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(
        response.json::<Value>().await?["error"],
        json!("method_not_allowed")
    );
    // Well-formed but unsupported: a normal invalid answer, not an error.
    let requirements = requirements(devnet, Address::random());
    let mut payload = pay(devnet, 4, &requirements, None).await?;
    payload.accepted.scheme = "nope".into();
    let mut other = requirements.clone();
    other.scheme = "nope".into();
    let (status, answer) = post(&client, &server.url("/verify"), &body(&payload, &other)).await?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["isValid"], json!(false));
    assert_eq!(answer["invalidReason"], json!("unsupported_scheme"));
    stack.stop().await;
    Ok(())
}

#[tokio::test]
async fn supported_health_ready_and_metrics() -> TestResult {
    let stack = Stack::start().await?;
    let (devnet, server) = (stack.devnet(), stack.facilitator());
    let client = reqwest::Client::new();
    let supported: Value = client
        .get(server.url("/supported"))
        .send()
        .await?
        .json()
        .await?;
    let signer = stack.facilitator_signer().address.to_checksum(None);
    assert_eq!(
        supported["kinds"],
        json!([
            {"x402Version": 2, "scheme": "exact", "network": "eip155:31337"},
            {"x402Version": 2, "scheme": "upto", "network": "eip155:31337",
             "extra": {"facilitatorAddress": signer}}
        ]),
        "{supported}"
    );
    assert_eq!(
        supported["extensions"],
        json!(["payment-identifier", "bazaar"])
    );
    assert_eq!(
        supported["signers"]["eip155:*"],
        json!([devnet.usdc_owner().address.to_string()])
    );
    let health = client.get(server.url("/health")).send().await?;
    assert_eq!(health.status().as_u16(), 200);
    let ready = client.get(server.url("/ready")).send().await?;
    assert_eq!(ready.status().as_u16(), 200);
    let ready: Value = ready.json().await?;
    assert_eq!(ready["chains"][0]["ok"], json!(true), "{ready}");
    let metrics = client.get(server.url("/metrics")).send().await?;
    assert!(
        metrics
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/plain"))
    );
    let text = metrics.text().await?;
    assert!(
        text.contains("paywire_http_requests_total{route=\"/ready\",status=\"200\"} 1"),
        "{text}"
    );
    // Families with no sample yet (no settlement) are left out of the text format.
    assert!(
        text.contains("# TYPE paywire_http_requests_total counter"),
        "{text}"
    );
    stack.stop().await;
    Ok(())
}

#[tokio::test]
async fn ready_and_chain_errors_when_rpc_is_wrong_or_down() -> TestResult {
    let devnet = Devnet::start().await?;
    let dir = tempfile::tempdir()?;
    let key = devnet.usdc_owner().private_key_hex();

    // Base mainnet (well-known USDC by default) pointed at the devnet: wrong chain id.
    let text = config_text("base", devnet.rpc_url(), None, &dir.path().join("a.sqlite"));
    let wrong = start_from(&text, &key).await?;
    let client = reqwest::Client::new();
    let response = client.get(wrong.url("/ready")).send().await?;
    assert_eq!(response.status().as_u16(), 503);
    let answer: Value = response.json().await?;
    assert_eq!(answer["error"], json!("not_ready"));
    assert!(
        answer["chains"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("expected 8453"),
        "{answer}"
    );
    wrong.stop().await;

    // An RPC nobody listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.local_addr()?.port()
    };
    let rpc = format!("http://127.0.0.1:{port}");
    let text = config_text(
        devnet.network(),
        &rpc,
        Some(devnet.usdc()),
        &dir.path().join("b.sqlite"),
    );
    let down = start_from(&text, &key).await?;
    let response = client.get(down.url("/ready")).send().await?;
    assert_eq!(response.status().as_u16(), 503);
    let requirements = requirements(&devnet, Address::random());
    let payload = pay(&devnet, 5, &requirements, None).await?;
    let (status, error) = post(
        &client,
        &down.url("/verify"),
        &body(&payload, &requirements),
    )
    .await?;
    assert_error(status, &error, 502, "chain_unavailable");
    let (status, error) = post(
        &client,
        &down.url("/settle"),
        &body(&payload, &requirements),
    )
    .await?;
    assert_error(status, &error, 502, "chain_unavailable");
    let unresolved = down.state.ledger().unresolved().await?;
    assert_eq!(unresolved.len(), 1);
    assert!(unresolved[0].last_error.is_some());
    down.stop().await;
    Ok(())
}

async fn ledger_survives_restart(store: TestStore) -> TestResult {
    let devnet = Devnet::start().await?;
    let store = store.location();
    let client = reqwest::Client::new();
    let pay_to = Address::random();
    let requirements = requirements(&devnet, pay_to);
    let payload = pay(&devnet, 6, &requirements, Some("restart_test_id_000001")).await?;
    let request = body(&payload, &requirements);

    let first = start(&devnet, &store).await?;
    let (status, settled) = post(&client, &first.url("/settle"), &request).await?;
    assert_eq!(status, 200);
    assert_eq!(settled["success"], json!(true), "{settled}");
    first.stop().await;

    let second = start(&devnet, &store).await?;
    let (status, again) = post(&client, &second.url("/settle"), &request).await?;
    assert_eq!(status, 200);
    assert_eq!(again, settled);
    let metrics = metrics_text(&client, &second).await;
    assert!(
        metrics.contains("paywire_settle_total{outcome=\"cached\",reason=\"confirmed\",network=\"eip155:31337\",scheme=\"exact\"} 1"),
        "{metrics}"
    );
    assert!(!metrics.contains("paywire_settle_duration_seconds_count{"));
    assert_eq!(balance(&devnet, pay_to).await?, U256::from(PRICE));
    // The id binding survived too.
    let other = pay(&devnet, 6, &requirements, Some("restart_test_id_000001")).await?;
    let (status, error) = post(
        &client,
        &second.url("/settle"),
        &body(&other, &requirements),
    )
    .await?;
    assert_error(status, &error, 409, "payment_identifier_conflict");
    second.stop().await;
    Ok(())
}

/// The per-payer limit counts only payloads whose signature proves the
/// payer: a flood claiming the victim's address with someone else's
/// signature leaves the victim's allowance untouched.
#[tokio::test]
async fn per_payer_limit_cannot_be_spent_by_a_spoofed_payer() -> TestResult {
    let stack = Stack::start_with(
        StackOptions::default().config("[rate_limit]\nper_payer_per_minute = 2\n"),
    )
    .await?;
    let (devnet, server) = (stack.devnet(), stack.facilitator());
    let http = reqwest::Client::new();
    let requirements = requirements(devnet, Address::random());
    let victim = devnet.payer(1).address;
    let verify = |payload: paywire_core::PaymentPayload| {
        let (http, url, body) = (&http, server.url("/verify"), body(&payload, &requirements));
        async move { post(http, &url, &body).await }
    };

    // Payer 2 signs, but the payloads claim the victim as `from`.
    for _ in 0..5 {
        let mut spoofed = pay(devnet, 2, &requirements, None).await?;
        spoofed.payload.insert("authorization".into(), {
            let mut authorization = spoofed.payload["authorization"].clone();
            authorization["from"] = json!(victim.to_string());
            authorization
        });
        let (status, answer) = verify(spoofed).await?;
        assert_eq!(
            status, 200,
            "refused by verification, not by the limit: {answer}"
        );
        assert_eq!(answer["isValid"], json!(false), "{answer}");
    }
    // The victim's own payments still pass, up to the limit.
    for _ in 0..2 {
        let genuine = pay(devnet, 1, &requirements, None).await?;
        let (status, answer) = verify(genuine).await?;
        assert_eq!(
            (status, &answer["isValid"]),
            (200, &json!(true)),
            "{answer}"
        );
    }
    let genuine = pay(devnet, 1, &requirements, None).await?;
    let (status, answer) = verify(genuine).await?;
    assert_eq!(
        status, 429,
        "the victim's own third request is limited: {answer}"
    );
    Ok(())
}
