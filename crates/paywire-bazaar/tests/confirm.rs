//! Confirming declarations against their origin, with real HTTP servers on
//! loopback (written byte by byte so they can misbehave: never answer,
//! answer forever, redirect, oversize).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use paywire_bazaar::{ConfirmConfig, Declaration, OriginConfirmer, Unconfirmed};
use paywire_core::{
    Extensions, PaymentPayload, PaymentRequired, PaymentRequirements, ResourceInfo, codec,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const VICTIM: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
const ATTACKER: &str = "0x000000000000000000000000000000000000dEaD";

/// How an origin answers.
#[derive(Clone)]
enum Answer {
    Bytes(Vec<u8>),
    /// Accepts, reads, never writes.
    Silent,
    /// A 402 head without `PAYMENT-REQUIRED`, then body bytes forever.
    Endless,
}

struct Origin {
    base: String,
    /// Request heads received, in order.
    requests: Arc<Mutex<Vec<String>>>,
}

impl Origin {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

async fn origin(answer: Answer) -> Origin {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&requests);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (answer, seen) = (answer.clone(), Arc::clone(&seen));
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                match answer {
                    Answer::Bytes(bytes) => {
                        let _ = socket.write_all(&bytes).await;
                    }
                    Answer::Silent => tokio::time::sleep(Duration::from_secs(60)).await,
                    Answer::Endless => {
                        let _ = socket
                            .write_all(b"HTTP/1.1 402 Payment Required\r\ncontent-type: application/json\r\n\r\n")
                            .await;
                        let chunk = vec![b' '; 16 * 1024];
                        while socket.write_all(&chunk).await.is_ok() {}
                    }
                }
            });
        }
    });
    Origin { base, requests }
}

fn offer(pay_to: &str, amount: &str) -> PaymentRequirements {
    serde_json::from_value(json!({
        "scheme": "exact", "network": "eip155:8453", "amount": amount,
        "asset": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
        "payTo": pay_to, "maxTimeoutSeconds": 60
    }))
    .unwrap()
}

fn payment_required(url: &str, declaration: Option<Value>) -> PaymentRequired {
    let mut resource = ResourceInfo::new(url);
    resource.description = Some("The victim's own description".into());
    resource.service_name = Some("Victim Weather".into());
    let extensions = declaration.map(|d| {
        let mut extensions = Extensions::new();
        extensions.0.insert("bazaar".into(), d);
        extensions
    });
    PaymentRequired {
        x402_version: 2,
        error: Some("Payment required".into()),
        resource,
        accepts: vec![offer(VICTIM, "10000")],
        extensions,
    }
}

fn response(status: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut text = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n", body.len());
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn header_402(required: &PaymentRequired) -> Vec<u8> {
    response(
        "402 Payment Required",
        &[("payment-required", codec::encode_header(required))],
        b"{}",
    )
}

/// A settled payment to `pay_to` echoing `url` and a declaration.
fn payment(url: &str, declaration: Value, pay_to: &str) -> (PaymentPayload, PaymentRequirements) {
    let paid = offer(pay_to, "1");
    let mut extensions = Extensions::new();
    extensions.0.insert("bazaar".into(), declaration);
    let mut resource = ResourceInfo::new(url);
    resource.description = Some("Attacker's description".into());
    let payload = PaymentPayload {
        x402_version: 2,
        payload: Default::default(),
        extensions: Some(extensions),
        resource: Some(resource),
        accepted: paid.clone(),
    };
    (payload, paid)
}

fn get_declaration() -> Value {
    Declaration::get().into_extension().1
}

fn confirmer(allow_private: bool) -> OriginConfirmer {
    OriginConfirmer::new(ConfirmConfig {
        timeout: Duration::from_millis(500),
        allow_private_addresses: allow_private,
        ..ConfirmConfig::default()
    })
    .unwrap()
}

async fn confirm(
    confirmer: &OriginConfirmer,
    url: &str,
    declaration: Value,
    pay_to: &str,
) -> Result<paywire_bazaar::DiscoveredResource, Unconfirmed> {
    let (payload, paid) = payment(url, declaration, pay_to);
    let probe = confirmer.probe(&payload, &paid)?;
    confirmer.confirm(&probe, 7).await
}

#[tokio::test]
async fn only_a_payment_the_origin_offers_is_confirmed_and_the_entry_is_the_origins() {
    let victim = origin(Answer::Bytes(header_402(&payment_required(
        "https://victim.example/forecast",
        Some(get_declaration()),
    ))))
    .await;
    let confirmer = confirmer(true);
    let url = victim.url("/forecast?city=Rome");

    let refused = confirm(&confirmer, &url, get_declaration(), ATTACKER)
        .await
        .unwrap_err();
    assert!(
        refused.0.contains("does not offer the paid payTo"),
        "{refused}"
    );

    // The victim's own payment (any amount: prices may be dynamic) lists the
    // origin's offer and description, from the remembered answer.
    let entry = confirm(&confirmer, &url, get_declaration(), VICTIM)
        .await
        .unwrap();
    assert_eq!(entry.resource, victim.url("/forecast"));
    assert_eq!(entry.accepts, vec![offer(VICTIM, "10000")]);
    assert_eq!(entry.last_updated, 7);
    let metadata = entry.metadata.unwrap();
    assert_eq!(metadata["description"], "The victim's own description");
    assert_eq!(metadata["serviceName"], "Victim Weather");
    assert_eq!(victim.requests().len(), 1, "the answer was reused");
    let head = &victim.requests()[0];
    assert!(
        head.starts_with("GET /forecast?city=Rome HTTP/1.1"),
        "{head}"
    );

    let (payload, paid) = payment(&url, get_declaration(), ATTACKER);
    let probe = confirmer.probe(&payload, &paid).unwrap();
    assert!(confirmer.cached(&probe, 8).unwrap().is_err());
}

#[tokio::test]
async fn an_origin_without_its_own_declaration_or_402_confirms_nothing() {
    let undeclared = origin(Answer::Bytes(header_402(&payment_required(
        "https://victim.example/x",
        None,
    ))))
    .await;
    let reason = confirm(
        &confirmer(true),
        &undeclared.url("/x"),
        get_declaration(),
        VICTIM,
    )
    .await
    .unwrap_err();
    assert!(reason.0.contains("no bazaar declaration"), "{reason}");

    let free = origin(Answer::Bytes(response("200 OK", &[], b"free"))).await;
    let reason = confirm(&confirmer(true), &free.url("/x"), get_declaration(), VICTIM)
        .await
        .unwrap_err();
    assert!(reason.0.contains("answered 200"), "{reason}");

    let victim = origin(Answer::Bytes(header_402(&payment_required(
        "https://victim.example/x",
        Some(get_declaration()),
    ))))
    .await;
    let redirect = origin(Answer::Bytes(response(
        "302 Found",
        &[("location", victim.url("/x"))],
        b"",
    )))
    .await;
    let reason = confirm(
        &confirmer(true),
        &redirect.url("/x"),
        get_declaration(),
        VICTIM,
    )
    .await
    .unwrap_err();
    assert!(reason.0.contains("redirects are not followed"), "{reason}");
    assert!(
        victim.requests().is_empty(),
        "the redirect was not followed"
    );
}

#[tokio::test]
async fn a_body_method_is_probed_with_its_method_and_no_body() {
    let declaration = Declaration::post_json(json!({"text": "secret example"}))
        .into_extension()
        .1;
    let origin = origin(Answer::Bytes(header_402(&payment_required(
        "https://victim.example/translate",
        Some(declaration.clone()),
    ))))
    .await;
    let entry = confirm(
        &confirmer(true),
        &origin.url("/translate"),
        declaration,
        VICTIM,
    )
    .await
    .unwrap();
    assert_eq!(entry.resource, origin.url("/translate"));
    let head = origin.requests()[0].to_ascii_lowercase();
    assert!(head.starts_with("post /translate http/1.1"), "{head}");
    assert!(!head.contains("secret example"));
}

#[tokio::test]
async fn the_402_may_be_in_the_body_but_not_beyond_64_kib() {
    let required = payment_required("https://victim.example/x", Some(get_declaration()));
    let in_body = origin(Answer::Bytes(response(
        "402 Payment Required",
        &[("content-type", "application/json".into())],
        &serde_json::to_vec(&required).unwrap(),
    )))
    .await;
    confirm(
        &confirmer(true),
        &in_body.url("/x"),
        get_declaration(),
        VICTIM,
    )
    .await
    .unwrap();

    let mut padded = serde_json::to_vec(&required).unwrap();
    padded.resize(paywire_bazaar::MAX_PAYMENT_REQUIRED_BODY + 1, b' ');
    let declared_large = origin(Answer::Bytes(response(
        "402 Payment Required",
        &[],
        &padded,
    )))
    .await;
    let reason = confirm(
        &confirmer(true),
        &declared_large.url("/x"),
        get_declaration(),
        VICTIM,
    )
    .await
    .unwrap_err();
    assert!(reason.0.contains("exceeds"), "{reason}");

    let endless = origin(Answer::Endless).await;
    let started = Instant::now();
    let reason = confirm(
        &confirmer(true),
        &endless.url("/x"),
        get_declaration(),
        VICTIM,
    )
    .await
    .unwrap_err();
    assert!(reason.0.contains("exceeds"), "{reason}");
    assert!(started.elapsed() < Duration::from_secs(2));

    let huge_header = origin(Answer::Bytes(response(
        "402 Payment Required",
        &[("payment-required", "A".repeat(codec::MAX_HEADER_LEN + 1))],
        b"",
    )))
    .await;
    let reason = confirm(
        &confirmer(true),
        &huge_header.url("/x"),
        get_declaration(),
        VICTIM,
    )
    .await
    .unwrap_err();
    assert!(reason.0.contains("PAYMENT-REQUIRED"), "{reason}");
}

#[tokio::test]
async fn a_silent_origin_times_out() {
    let silent = origin(Answer::Silent).await;
    let started = Instant::now();
    let reason = confirm(
        &confirmer(true),
        &silent.url("/x"),
        get_declaration(),
        VICTIM,
    )
    .await
    .unwrap_err();
    assert!(
        reason.0.contains("in time") || reason.0.contains("within"),
        "{reason}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn private_addresses_are_refused_without_the_switch() {
    let victim = origin(Answer::Bytes(header_402(&payment_required(
        "https://victim.example/x",
        Some(get_declaration()),
    ))))
    .await;
    let port = victim.base.rsplit(':').next().unwrap().to_owned();
    let strict = confirmer(false);
    // IP literals in any spelling the URL parser accepts are refused before
    // any request.
    for url in [
        victim.url("/x"),
        format!("http://2130706433:{port}/x"),
        format!("http://0177.0.0.1:{port}/x"),
        format!("http://0x7f.1:{port}/x"),
        format!("http://127.1:{port}/x"),
        format!("http://[::1]:{port}/x"),
        format!("http://[::ffff:127.0.0.1]:{port}/x"),
        format!("http://[::ffff:7f00:1]:{port}/x"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/x".to_owned(),
        "http://100.64.0.1/x".to_owned(),
        "http://0.0.0.0/x".to_owned(),
        "http://[fd00::1]/x".to_owned(),
        "http://[fe80::1]/x".to_owned(),
    ] {
        let (payload, paid) = payment(&url, get_declaration(), VICTIM);
        let reason = strict.probe(&payload, &paid).unwrap_err();
        assert!(reason.0.contains("private or reserved"), "{url}: {reason}");
    }
    // A name is checked where it is resolved, and nothing is sent.
    let reason = confirm(
        &strict,
        &format!("http://localhost:{port}/x"),
        get_declaration(),
        VICTIM,
    )
    .await
    .unwrap_err();
    assert!(reason.0.contains("private or reserved"), "{reason}");
    assert!(victim.requests().is_empty());
    // Other schemes and credentials are refused too.
    for url in ["ftp://example.com/x", "http://user:pw@example.com/x"] {
        let (payload, paid) = payment(url, get_declaration(), VICTIM);
        assert!(strict.probe(&payload, &paid).is_err(), "{url}");
    }
    // The devnet switch allows loopback.
    confirm(
        &confirmer(true),
        &victim.url("/x"),
        get_declaration(),
        VICTIM,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn mcp_tools_are_not_confirmed() {
    let tool = Declaration::mcp_tool("forecast", json!({"type": "object"}))
        .into_extension()
        .1;
    let (payload, paid) = payment("https://tools.example/mcp", tool, VICTIM);
    let reason = confirmer(false).probe(&payload, &paid).unwrap_err();
    assert!(reason.0.contains("MCP"), "{reason}");
}
