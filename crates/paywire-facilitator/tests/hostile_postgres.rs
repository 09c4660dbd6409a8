//! Hostile review of issue 12 with the PostgreSQL ledger. Probes marked
//! `#[ignore = "finding N"]` fail on the code they were written against; run
//! them with
//! `cargo nextest run -p paywire-facilitator --test hostile_postgres --run-ignored all`.

mod common;

use alloy_primitives::Address;
use common::*;
use paywire_core::{PaymentPayload, PaymentRequirements};
use paywire_evm::LocalSigner;
use serde_json::{Value, json};

/// An RPC provider on loopback that accepts connections and never answers.
async fn silent_provider() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("http://{address}/")
}

// ---------------------------------------------------------------------------
// Finding 7: with the PostgreSQL ledger every `/settle` opens a new database
// connection for its advisory lock (before anything about the payment is
// checked) and holds it for the whole scheme call -- RPC timeouts and the
// receipt wait included. Unauthenticated concurrent settles of junk
// payments (random payer, unfunded, bad for the chain) exhaust the server's
// `max_connections` (200 in the test cluster, 100 by default), and every
// facilitator instance sharing the database answers `503
// ledger_unavailable` ("too many clients") meanwhile.
// ---------------------------------------------------------------------------
#[tokio::test]
async fn concurrent_junk_settles_do_not_exhaust_database_connections() -> TestResult {
    let Some(store) = TestStore::postgres().await? else {
        return Ok(());
    };
    let asset = Address::random();
    let rpc = silent_provider().await;
    let mut text = config_text("eip155:31337", &rpc, Some(asset), &store.location());
    text = text.replace("rpc_timeout_seconds = 2", "rpc_timeout_seconds = 3");
    text.push_str("\n[bazaar]\nenabled = false\n");
    let key = format!("0x{}", "11".repeat(32));
    let server = start_from(&text, &key).await?;
    let requirements: PaymentRequirements = serde_json::from_value(json!({
        "scheme": "exact", "network": "eip155:31337", "amount": PRICE.to_string(),
        "asset": asset.to_string(), "payTo": Address::random().to_string(),
        "maxTimeoutSeconds": 60, "extra": {"name": "USD Coin", "version": "2"}
    }))?;
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for _ in 0..260 {
        let exact = paywire_evm::exact::ExactEvmClient::new(LocalSigner::random())
            .sign(&requirements)
            .await?;
        let payload = PaymentPayload {
            x402_version: 2,
            payload: exact.to_json(),
            extensions: None,
            resource: None,
            accepted: requirements.clone(),
        };
        let request = body(&payload, &requirements);
        let (client, url) = (client.clone(), server.url("/settle"));
        tasks.push(tokio::spawn(async move {
            let response = client.post(url).json(&request).send().await?;
            let status = response.status().as_u16();
            let answer: Value = response.json().await?;
            Ok::<(u16, Value), reqwest::Error>((status, answer))
        }));
    }
    let mut exhausted = Vec::new();
    for task in tasks {
        let (status, answer) = task.await??;
        if answer["error"] == json!("ledger_unavailable") {
            exhausted.push((status, answer["message"].clone()));
        }
    }
    server.stop().await;
    assert!(
        exhausted.is_empty(),
        "{} of 260 settles failed on the ledger, e.g. {:?}",
        exhausted.len(),
        exhausted.first()
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Finding 4b (fixed): two facilitator instances sharing one PostgreSQL
// ledger. The advisory lock was per fingerprint and the scheme's
// per-authorization lock per process, so the same authorization spelt twice
// (signature hex case) and sent to both instances at once was broadcast
// twice; one transaction reverted at the facilitator's expense (the answers
// stayed right: one success). Settlements now lock the scheme's spend key
// (token, payer, nonce), in the process and in the store.
// ---------------------------------------------------------------------------
#[tokio::test]
async fn two_instances_broadcast_one_authorization_once() -> TestResult {
    use paywire_testkit::{Devnet, DevnetOptions};
    use std::time::Duration;
    let Some(store) = TestStore::postgres().await? else {
        return Ok(());
    };
    let devnet = Devnet::start_with(DevnetOptions {
        block_time: None,
        ..DevnetOptions::default()
    })
    .await?;
    // The race, made certain: both instances verify before either
    // broadcasts (the first's broadcast reaches the node 300 ms late), and
    // the second reads its signer's nonce only after the first broadcast
    // (1.5 s late), so without a shared lock it sends a second transaction.
    let first_node = DelayingProxy::start(
        devnet.rpc_url(),
        "eth_sendRawTransaction",
        Duration::from_millis(300),
    )
    .await?;
    let second_node = DelayingProxy::start(
        devnet.rpc_url(),
        "eth_getTransactionCount",
        Duration::from_millis(1500),
    )
    .await?;
    let key = devnet.usdc_owner().private_key_hex();
    let instance = |node: &str| {
        config_text(
            devnet.network(),
            node,
            Some(devnet.usdc()),
            &store.location(),
        )
    };
    let first = start_from(&instance(&first_node.url), &key).await?;
    let second = start_from(&instance(&second_node.url), &key).await?;
    let signer = devnet.usdc_owner().address;
    let requirements = requirements(&devnet, Address::random());
    let payload = pay(&devnet, 1, &requirements, None).await?;
    let mut variant = payload.clone();
    let signature = payload.payload["signature"].as_str().unwrap_or_default();
    variant.payload.insert(
        "signature".into(),
        json!(format!(
            "0x{}",
            signature.trim_start_matches("0x").to_ascii_uppercase()
        )),
    );
    let before = tx_count(&devnet, signer).await?;
    devnet.rpc("evm_setAutomine", json!([false])).await?;
    let mut tasks = Vec::new();
    for (server, payload) in [(&first, &payload), (&second, &variant)] {
        let (url, request) = (server.url("/settle"), body(payload, &requirements));
        tasks.push(tokio::spawn(async move {
            let response = reqwest::Client::new()
                .post(url)
                .json(&request)
                .send()
                .await?;
            response.json::<Value>().await
        }));
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    devnet.mine().await?;
    devnet.rpc("evm_setAutomine", json!([true])).await?;
    let mut successes = 0;
    for task in tasks {
        if task.await??["success"] == json!(true) {
            successes += 1;
        }
    }
    let sent = tx_count(&devnet, signer).await? - before;
    first.stop().await;
    second.stop().await;
    assert_eq!(successes, 1);
    assert_eq!(sent, 1, "transactions broadcast for one authorization");
    Ok(())
}

/// A JSON-RPC proxy in front of a devnet node that forwards everything, and
/// holds every request calling `method` for `delay` first (a slow path to
/// the node, for one kind of call).
struct DelayingProxy {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DelayingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DelayingProxy {
    async fn start(
        upstream: &str,
        method: &'static str,
        delay: std::time::Duration,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        use axum::body::Bytes;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (upstream, http) = (upstream.to_owned(), reqwest::Client::new());
        let forward = move |body: Bytes| {
            let (upstream, http) = (upstream.clone(), http.clone());
            async move {
                if std::str::from_utf8(&body).is_ok_and(|text| text.contains(method)) {
                    tokio::time::sleep(delay).await;
                }
                let answer = http
                    .post(upstream)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                match answer {
                    Ok(answer) => answer.bytes().await.unwrap_or_default().to_vec(),
                    Err(_) => Vec::new(),
                }
            }
        };
        let app = axum::Router::new().route("/", axum::routing::post(forward));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, task })
    }
}
