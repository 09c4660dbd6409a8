//! `ts_svm_client_fetch` runs the official `@x402/svm` client against a fake x402 resource
//! server and a fake Solana JSON-RPC (one small HTTP server in this test), without any chain:
//! it proves the peer script, its key parsing, the RPC calls it makes and the result parsing.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use alloy_primitives::hex;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use paywire_testkit::peer::{TS_SVM_NETWORKS, ts_svm_client_fetch};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const DEVNET: &str = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1";
const USDC_DEVNET: &str = "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU";
const TOKEN_PROGRAM: &str = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";
/// The address of the ed25519 seed `0x11` × 32 (as in tests/svm-interop's vectors).
const CLIENT_ADDRESS: &str = "F25s3DdjXdCxYBhh2z8FBusVEMT4b9bGNFVKJi3wFoF4";
/// The same public key as hex (the 32 bytes `CLIENT_ADDRESS` encodes).
const CLIENT_PUBLIC_KEY_HEX: &str =
    "d04ab232742bb4ab3a1368bd4615e4e6d0224ab71a016baf8520a332c9778737";
const FEE_PAYER: &str = "Bow1CGKGDB9mNxeWdw85E2aCthQ1oZX4oFEe7fYT17ew";
const PAY_TO: &str = "2btLJAAb1S3x6hZYdVyAePjqtQYi2ZBSRGy4569RZu8h";
/// 32 bytes of 0x07 in base58.
const BLOCKHASH: &str = "US517G5965aydkZ46HS38QLi7UQiSojurfbQfKCELFx";
const SIGNATURE: &str =
    "5VERv8NMvzbJMEkV8xnrLkEaWRtSz9CosKDYjCJjBRnbJLgp8uirBgmQpjKhoR4tjF3ZpRzrFmBV6UjKdiSZkQUW";

#[derive(Default)]
struct Seen {
    rpc_methods: Vec<String>,
    payments: Vec<Value>,
}

fn requirements(network: &str) -> Value {
    json!({
        "scheme": "exact",
        "network": network,
        "amount": "10000",
        "asset": USDC_DEVNET,
        "payTo": PAY_TO,
        "maxTimeoutSeconds": 60,
        "extra": {"feePayer": FEE_PAYER},
    })
}

/// An 82-byte SPL mint account with 6 decimals, initialized.
fn mint_data() -> String {
    let mut data = [0_u8; 82];
    data[44] = 6;
    data[45] = 1;
    B64.encode(data)
}

fn rpc_answer(request: &Value) -> Value {
    let context = json!({"slot": 1000});
    let result = match request["method"].as_str() {
        Some("getAccountInfo") => {
            assert_eq!(request["params"][0], USDC_DEVNET);
            assert_eq!(request["params"][1]["encoding"], "base64");
            json!({"context": context, "value": {
                "data": [mint_data(), "base64"], "executable": false, "lamports": 1_461_600,
                "owner": TOKEN_PROGRAM, "rentEpoch": 0, "space": 82,
            }})
        }
        Some("getLatestBlockhash") => {
            json!({"context": context, "value": {"blockhash": BLOCKHASH, "lastValidBlockHeight": 1150}})
        }
        other => panic!("unexpected RPC method {other:?}"),
    };
    json!({"jsonrpc": "2.0", "id": request["id"], "result": result})
}

/// Reads one HTTP/1.1 request: (request line, lowercase headers, body).
async fn read_request(stream: &mut TcpStream) -> (String, BTreeMap<String, String>, Vec<u8>) {
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0_u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed mid-request");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap().to_owned();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .map_or(0, |v| v.parse().unwrap());
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = [0_u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed mid-body");
        body.extend_from_slice(&chunk[..n]);
    }
    (request_line, headers, body)
}

async fn handle(mut stream: TcpStream, seen: Arc<Mutex<Seen>>, offered: String) {
    let (request_line, headers, body) = read_request(&mut stream).await;
    let (status, extra_headers, body) = if request_line.starts_with("POST ") {
        let request: Value = serde_json::from_slice(&body).unwrap();
        let method = request["method"].as_str().unwrap_or_default().to_owned();
        seen.lock().unwrap().rpc_methods.push(method);
        ("200 OK", String::new(), rpc_answer(&request).to_string())
    } else if let Some(signature) = headers.get("payment-signature") {
        let payload: Value = serde_json::from_slice(&B64.decode(signature).unwrap()).unwrap();
        seen.lock().unwrap().payments.push(payload);
        let settled = json!({"success": true, "transaction": SIGNATURE, "network": DEVNET, "payer": CLIENT_ADDRESS});
        let header = format!("payment-response: {}\r\n", B64.encode(settled.to_string()));
        ("200 OK", header, r#"{"report":"paid"}"#.to_owned())
    } else {
        let required = json!({
            "x402Version": 2,
            "error": "Payment required",
            "resource": {"url": "http://127.0.0.1/weather", "description": "", "mimeType": "application/json"},
            "accepts": [requirements(&offered)],
        });
        let header = format!("payment-required: {}\r\n", B64.encode(required.to_string()));
        ("402 Payment Required", header, "{}".to_owned())
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{extra_headers}\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await.unwrap();
    stream.shutdown().await.ok();
}

/// Starts the fake server offering a payment on `network`; returns its base URL and what it saw.
async fn fake_server(network: &str) -> (String, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let shared = Arc::clone(&seen);
    let offered = network.to_owned();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(handle(stream, Arc::clone(&shared), offered.clone()));
        }
    });
    (url, seen)
}

#[tokio::test]
async fn the_official_solana_client_pays_with_a_seed_through_the_given_rpc() {
    let (url, seen) = fake_server(DEVNET).await;
    let paid = ts_svm_client_fetch(&"11".repeat(32), &url, DEVNET, &format!("{url}/weather"))
        .await
        .expect("the TS Solana client runs");

    assert_eq!(paid.response.status, 200, "log: {}", paid.response.log);
    assert_eq!(paid.response.body, r#"{"report":"paid"}"#);
    assert_eq!(paid.client_address, CLIENT_ADDRESS);
    assert_eq!(
        paid.response.payment_response.as_ref().unwrap()["transaction"],
        SIGNATURE
    );
    assert_eq!(paid.payment_signature_headers.len(), 1);

    let seen = seen.lock().unwrap();
    assert_eq!(seen.rpc_methods, ["getAccountInfo", "getLatestBlockhash"]);
    assert_eq!(seen.payments.len(), 1);
    let payload = &seen.payments[0];
    let sent: Value =
        serde_json::from_slice(&B64.decode(&paid.payment_signature_headers[0]).unwrap()).unwrap();
    assert_eq!(&sent, payload);
    assert_eq!(payload["x402Version"], 2);
    assert_eq!(payload["accepted"], requirements(DEVNET));
    let wire = B64
        .decode(payload["payload"]["transaction"].as_str().unwrap())
        .unwrap();
    // Two signature slots; the fee payer's (first) is still empty.
    assert_eq!(wire[0], 2);
    assert!(wire[1..65].iter().all(|b| *b == 0));
    assert!(wire[65..129].iter().any(|b| *b != 0));
}

#[tokio::test]
async fn the_official_solana_client_takes_a_keygen_json_key() {
    let (url, _seen) = fake_server(TS_SVM_NETWORKS[1]).await;
    // solana-keygen format: seed ‖ public key, as a JSON array. Its public key is the seed's.
    let mut keypair = vec![0x11_u8; 32];
    keypair.extend(hex::decode(CLIENT_PUBLIC_KEY_HEX).unwrap());
    let key = serde_json::to_string(&keypair).unwrap();
    let paid = ts_svm_client_fetch(&key, &url, TS_SVM_NETWORKS[1], &format!("{url}/weather"))
        .await
        .expect("the TS Solana client runs");
    assert_eq!(paid.response.status, 200, "log: {}", paid.response.log);
    assert_eq!(paid.client_address, CLIENT_ADDRESS);
}

#[tokio::test]
async fn the_official_solana_client_refuses_a_network_outside_mainnet_devnet_testnet() {
    // @x402/svm builds its RPC client only for mainnet/devnet/testnet, even when the
    // requirements and the registered scheme agree on another id.
    let network = "solana:localnet";
    let (url, seen) = fake_server(network).await;
    let refused = ts_svm_client_fetch(&"11".repeat(32), &url, network, &format!("{url}/weather"))
        .await
        .expect_err("a non-standard Solana network must be refused");
    assert!(
        refused.to_string().contains("Unsupported SVM network"),
        "{refused}"
    );
    assert!(seen.lock().unwrap().payments.is_empty());
}
