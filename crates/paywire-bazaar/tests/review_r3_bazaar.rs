//! Review r3: more SSRF spellings and redirect tricks against the origin
//! confirmation (helpers copied from `tests/confirm.rs`). All probes hold.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

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
async fn more_loopback_spellings_are_refused_and_nothing_is_sent() {
    let victim = origin(Answer::Bytes(header_402(&payment_required(
        "https://victim.example/x",
        Some(get_declaration()),
    ))))
    .await;
    let port = victim.base.rsplit(':').next().unwrap().to_owned();
    let strict = confirmer(false);
    let literals = [
        format!("http://[::]:{port}/x"),
        format!("http://0:{port}/x"),
        format!("http://127.0.0.1.:{port}/x"),
        format!("http://%31%32%37.0.0.1:{port}/x"),
        format!("http://\u{2460}\u{2461}\u{2466}.0.0.1:{port}/x"),
        format!("http://[0:0:0:0:0:ffff:7f00:1]:{port}/x"),
        format!("http://[::ffff:0.0.0.0]:{port}/x"),
        format!("http://[64:ff9b::7f00:1]:{port}/x"),
        format!("http://[2002:7f00:1::1]:{port}/x"),
        format!("https://127.0.0.1:{port}/x"),
        format!("http://0x7f000001:{port}/x"),
        format!("http://017700000001:{port}/x"),
        "http://[::ffff:a9fe:a9fe]/latest/meta-data/".to_owned(),
        "http://[fd00:ec2::254]/latest/meta-data/".to_owned(),
    ];
    for url in &literals {
        let (payload, paid) = payment(url, get_declaration(), VICTIM);
        match strict.probe(&payload, &paid) {
            Err(reason) => assert!(
                reason.0.contains("private or reserved") || reason.0.contains("resource url"),
                "{url}: {reason}"
            ),
            Ok(probe) => {
                let verdict = strict.confirm(&probe, 7).await;
                assert!(verdict.is_err(), "{url} confirmed");
            }
        }
    }
    // Names: refused where resolved (or unresolvable here); never reached.
    for url in [
        format!("http://localhost.:{port}/x"),
        format!("http://LOCALHOST:{port}/x"),
        format!("http://localhost.localdomain:{port}/x"),
        format!("http://ip6-localhost:{port}/x"),
        format!("http://anything.localhost:{port}/x"),
    ] {
        let reason = confirm(&strict, &url, get_declaration(), VICTIM)
            .await
            .unwrap_err();
        assert!(!reason.0.contains(&port), "{url}: leaks detail: {reason}");
    }
    assert!(victim.requests().is_empty(), "{:?}", victim.requests());
}

/// A 3xx from a public origin to a private one is not followed, and its
/// reason does not say where it pointed.
#[tokio::test]
async fn a_redirect_to_loopback_is_not_followed() {
    let inner = origin(Answer::Bytes(header_402(&payment_required(
        "https://victim.example/x",
        Some(get_declaration()),
    ))))
    .await;
    for status in [
        "301 Moved",
        "302 Found",
        "303 See Other",
        "307 Temporary",
        "308 Permanent",
    ] {
        let outer = origin(Answer::Bytes(response(
            status,
            &[("location", inner.url("/x"))],
            b"",
        )))
        .await;
        let reason = confirm(
            &confirmer(true),
            &outer.url("/x"),
            get_declaration(),
            VICTIM,
        )
        .await
        .unwrap_err();
        assert!(
            reason.0.contains("redirects are not followed"),
            "{status}: {reason}"
        );
    }
    assert!(inner.requests().is_empty());
}

/// The confirmation request carries nothing the payer wrote (no body,
/// headers or query from the declaration), whatever the method.
#[tokio::test]
async fn the_probe_sends_no_payer_controlled_headers_or_body() {
    let victim = origin(Answer::Bytes(header_402(&payment_required(
        "https://victim.example/x",
        Some(get_declaration()),
    ))))
    .await;
    let mut declaration = Declaration::post_json(json!({"evil": "x".repeat(100)}))
        .into_extension()
        .1;
    declaration["info"]["input"]["headers"] =
        json!({"Authorization": "Bearer stolen", "Cookie": "s=1"});
    let _ = confirm(&confirmer(true), &victim.url("/x"), declaration, VICTIM).await;
    let heads = victim.requests();
    assert_eq!(heads.len(), 1);
    let head = heads[0].to_ascii_lowercase();
    assert!(
        !head.contains("authorization") && !head.contains("cookie") && !head.contains("evil"),
        "{head}"
    );
}
