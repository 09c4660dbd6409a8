//! OpenTelemetry trace export (feature `otel`): `paywire facilitator` with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` set posts its spans to a fake OTLP/HTTP
//! collector, at the latest when it is stopped with SIGTERM (the batch is
//! flushed on shutdown).
#![cfg(feature = "otel")]

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paywire_testkit::Devnet;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::Command;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// One request received by the fake collector.
#[derive(Debug)]
struct Received {
    method: String,
    path: String,
    content_type: String,
    body_len: usize,
}

/// A minimal HTTP/1.1 server answering every request with an empty 200
/// (a valid, empty `ExportTraceServiceResponse`) and recording it.
async fn collector() -> std::io::Result<(String, Arc<Mutex<Vec<Received>>>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                loop {
                    let mut request_line = String::new();
                    if stream.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let mut parts = request_line.split_whitespace();
                    let method = parts.next().unwrap_or_default().to_owned();
                    let path = parts.next().unwrap_or_default().to_owned();
                    let mut content_length = 0;
                    let mut content_type = String::new();
                    loop {
                        let mut line = String::new();
                        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let line = line.trim_end();
                        if line.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':') {
                            let value = value.trim();
                            if name.eq_ignore_ascii_case("content-length") {
                                content_length = value.parse().unwrap_or(0);
                            } else if name.eq_ignore_ascii_case("content-type") {
                                content_type = value.to_owned();
                            }
                        }
                    }
                    let mut body = vec![0; content_length];
                    if stream.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    log.lock().expect("collector log").push(Received {
                        method,
                        path,
                        content_type,
                        body_len: body.len(),
                    });
                    let response = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                    if stream
                        .get_mut()
                        .write_all(response.as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    Ok((endpoint, received))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facilitator_exports_spans_over_otlp_http() -> TestResult {
    let devnet = Devnet::start().await?;
    let (endpoint, received) = collector().await?;
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = dir.path().join("facilitator.toml");
    std::fs::write(
        &config,
        format!(
            r#"
listen = "127.0.0.1:{port}"
store = "{store}"

[[chains]]
network = "{network}"
rpc_urls = ["{rpc}"]
signer_private_keys = ["${{TEST_SIGNER_KEY}}"]

[[chains.assets]]
address = "{usdc}"
symbol = "USDC"
decimals = 6
eip712_name = "USD Coin"
eip712_version = "2"
"#,
            store = dir.path().join("ledger").display(),
            network = devnet.network(),
            rpc = devnet.rpc_url(),
            usdc = devnet.usdc(),
        ),
    )?;
    let log = dir.path().join("facilitator.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_paywire"))
        .arg("facilitator")
        .arg("--config")
        .arg(&config)
        .env("TEST_SIGNER_KEY", devnet.usdc_owner().private_key_hex())
        .env("RUST_LOG", "info")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_SERVICE_NAME")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .kill_on_drop(true)
        .spawn()?;
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..300 {
        if let Some(status) = child.try_wait()? {
            return Err(format!("facilitator exited ({status}): {}", log_text()).into());
        }
        if let Ok(response) = client.get(format!("{base}/health")).send().await
            && response.status().is_success()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "facilitator did not come up: {}", log_text());
    let supported = client.get(format!("{base}/supported")).send().await?;
    assert!(
        supported.status().is_success(),
        "GET /supported: {}",
        supported.status()
    );

    // SIGTERM well within the batch processor's 5 s schedule delay: the spans
    // must be flushed by the shutdown.
    let pid = child.id().ok_or("facilitator has no pid")?;
    let kill = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .await?;
    assert!(kill.success(), "kill -TERM {pid} failed");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await??;
    assert!(
        status.success(),
        "facilitator exited with {status}: {}",
        log_text()
    );

    let received = received.lock().expect("collector log");
    let traces: Vec<&Received> = received
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/v1/traces")
        .collect();
    assert!(
        traces.iter().any(|r| r.body_len > 0),
        "no non-empty POST /v1/traces; collector saw {received:?}; log: {}",
        log_text()
    );
    assert!(
        traces
            .iter()
            .all(|r| r.content_type == "application/x-protobuf"),
        "OTLP/HTTP must be protobuf: {traces:?}"
    );
    Ok(())
}
