//! What a caller without credentials can make the facilitator store and
//! hold, on either ledger: a `/settle` refused without the ledger or the
//! chain leaves nothing behind, settlements beyond the concurrency cap are
//! refused before the ledger, and settlements that failed before anything
//! was sent are purged once older than the retention.

mod common;

use paywire_evm::Eip155ChainId;
use std::time::Duration;

use alloy_primitives::Address;
use common::*;
use paywire_core::{ChainId, PaymentPayload, PaymentRequirements};
use paywire_evm::LocalSigner;
use paywire_evm::exact::ExactEvmClient;
use paywire_facilitator::ledger::fingerprint;
use serde_json::{Value, json};

both_stores!(
    refusals_without_the_chain_leave_nothing,
    settlements_beyond_the_cap_are_refused_before_the_ledger,
    old_unsent_failures_are_purged,
);

/// An RPC provider that accepts connections and never answers: every
/// settlement that reaches the chain hangs until its RPC timeout.
async fn silent_provider() -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    Ok(format!("http://{address}/"))
}

/// A payment signed by `signer` for `requirements`, with an optional
/// payment identifier.
async fn signed(
    signer: LocalSigner,
    requirements: &PaymentRequirements,
    payment_id: Option<&str>,
) -> Result<PaymentPayload, Box<dyn std::error::Error + Send + Sync>> {
    let exact = ExactEvmClient::new(signer).sign(requirements).await?;
    let extensions = payment_id
        .map(|id| {
            serde_json::from_value(json!({
                "payment-identifier": {"info": {"required": false, "id": id}, "schema": {}}
            }))
        })
        .transpose()?;
    Ok(PaymentPayload {
        x402_version: 2,
        payload: exact.to_json(),
        extensions,
        resource: None,
        accepted: requirements.clone(),
    })
}

async fn settle(
    server: &Server,
    body: &Value,
) -> Result<(u16, Value), Box<dyn std::error::Error + Send + Sync>> {
    post(&reqwest::Client::new(), &server.url("/settle"), body).await
}

async fn refusals_without_the_chain_leave_nothing(store: TestStore) -> TestResult {
    let stack = Stack::start_with(StackOptions::default().ledger(store)).await?;
    let (devnet, server) = (stack.devnet(), stack.facilitator());
    let served = requirements(devnet, Address::random());
    let mut elsewhere = served.clone();
    elsewhere.network = ChainId::eip155(999_999);
    let mut other_scheme = served.clone();
    other_scheme.scheme = "nope".into();

    // (payload's accepted requirements, requirements, expected reason)
    let cases = [
        (&elsewhere, &elsewhere, "unsupported_scheme"),
        (&other_scheme, &other_scheme, "unsupported_scheme"),
        (&served, &elsewhere, "invalid_network"),
        (&served, &other_scheme, "invalid_scheme"),
    ];
    for (n, (accepted, required, reason)) in cases.into_iter().enumerate() {
        let id = format!("pay_junk_identifier_{n:04}");
        let mut payload = signed(LocalSigner::random(), &served, Some(&id)).await?;
        payload.accepted = accepted.clone();
        let (status, answer) = settle(server, &body(&payload, required)).await?;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["success"], json!(false), "{answer}");
        assert_eq!(answer["errorReason"], json!(reason), "{answer}");
        assert_eq!(answer["transaction"], json!(""), "{answer}");
        let key = fingerprint(&payload.payload, required);
        let ledger = server.state.ledger();
        assert_eq!(ledger.get(&key).await?, None, "case {n} left a settlement");
        assert_eq!(
            ledger.payment_id_binding(&id).await?,
            None,
            "case {n} bound its payment identifier"
        );
    }
    stack.stop().await;
    Ok(())
}

async fn settlements_beyond_the_cap_are_refused_before_the_ledger(store: TestStore) -> TestResult {
    let asset = Address::random();
    let rpc = silent_provider().await?;
    let text = format!(
        "max_concurrent_settlements = 2\n{}\n[bazaar]\nenabled = false\n",
        config_text("eip155:31337", &rpc, Some(asset), &store.location())
    );
    let server = start_from(&text, &format!("0x{}", "11".repeat(32))).await?;
    let requirements: PaymentRequirements = serde_json::from_value(json!({
        "scheme": "exact", "network": "eip155:31337", "amount": PRICE.to_string(),
        "asset": asset.to_string(), "payTo": Address::random().to_string(),
        "maxTimeoutSeconds": 60, "extra": {"name": "USD Coin", "version": "2"}
    }))?;
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let payload = signed(LocalSigner::random(), &requirements, None).await?;
        let key = fingerprint(&payload.payload, &requirements);
        let (client, url, request) = (
            client.clone(),
            server.url("/settle"),
            body(&payload, &requirements),
        );
        tasks.push(tokio::spawn(async move {
            let response = client.post(url).json(&request).send().await?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let answer: Value = response.json().await?;
            Ok::<_, reqwest::Error>((key, status, retry_after, answer))
        }));
    }
    let mut admitted = 0;
    for task in tasks {
        let (key, status, retry_after, answer) = task.await??;
        if answer["error"] == json!("overloaded") {
            assert_eq!(status, 503, "{answer}");
            assert_eq!(retry_after.as_deref(), Some("1"), "{answer}");
            assert_eq!(
                server.state.ledger().get(&key).await?,
                None,
                "an overloaded settle was written to the ledger"
            );
        } else {
            admitted += 1;
        }
    }
    server.stop().await;
    assert_eq!(admitted, 2, "settlements run at once with a cap of 2");
    Ok(())
}

async fn old_unsent_failures_are_purged(store: TestStore) -> TestResult {
    let stack = Stack::start_with(StackOptions::default().ledger(store).config(
        "[recovery]\ninterval_seconds = 1\nmin_age_seconds = 1\n\
         purge_unsent_failures_after_seconds = 1\n",
    ))
    .await?;
    let (devnet, server) = (stack.devnet(), stack.facilitator());
    let ledger = server.state.ledger().clone();

    // Refused before anything was sent: an unfunded payer.
    let to_a = requirements(devnet, Address::random());
    let id = "pay_unfunded_payer_0000001";
    let unfunded = signed(LocalSigner::random(), &to_a, Some(id)).await?;
    let (status, refused) = settle(server, &body(&unfunded, &to_a)).await?;
    assert_eq!(
        (status, &refused["success"]),
        (200, &json!(false)),
        "{refused}"
    );
    let refused_key = fingerprint(&unfunded.payload, &to_a);
    assert!(ledger.get(&refused_key).await?.is_some());
    // Settled: kept, and still refused as a replay afterwards.
    let to_b = requirements(devnet, Address::random());
    let paid = body(&pay(devnet, 1, &to_b, None).await?, &to_b);
    let (status, settled) = settle(server, &paid).await?;
    assert_eq!(
        (status, &settled["success"]),
        (200, &json!(true)),
        "{settled}"
    );

    let mut waited = Duration::ZERO;
    while ledger.get(&refused_key).await?.is_some() {
        assert!(
            waited < Duration::from_secs(15),
            "the unsent failure was never purged"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        waited += Duration::from_millis(200);
    }
    assert_eq!(ledger.payment_id_binding(id).await?, None);
    let key = fingerprint(
        paid["paymentPayload"]["payload"]
            .as_object()
            .ok_or("payload")?,
        &to_b,
    );
    assert!(
        ledger.get(&key).await?.is_some(),
        "a settled row was purged"
    );
    let (status, again) = settle(server, &paid).await?;
    assert_replay_refused(status, &again);
    stack.stop().await;
    Ok(())
}
