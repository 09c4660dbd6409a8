//! The HTML paywall renders in headless Chromium (Debian's `chromium`).
//!
//! Installs nothing: needs `/usr/bin/chromium` (CI: `apt-get install -y
//! chromium`) and fails without it, unless `PAYWIRE_SKIP_CHROMIUM=1` is set
//! for a local run (then it is skipped with a loud message). Set
//! `PAYWIRE_PAYWALL_SCREENSHOT=/some/file.png` to keep a copy of the
//! screenshot.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::Address;
use axum::Router;
use axum::routing::get;
use common::*;
use paywire_core::{
    BoxFuture, ChainIdPattern, Facilitator, FacilitatorError, FacilitatorRequest, SettleResponse,
    SupportedResponse, VerifyResponse,
};
use paywire_evm::EvmNetworks;
use paywire_evm::exact::ExactEvmServer;
use paywire_server::{PayTo, PaymentLayer, PaymentOption, Route, money};

const CHROMIUM: &str = "/usr/bin/chromium";
const DESCRIPTION: &str = "Premium weather forecast for Lisbon";

/// Only `/supported` is ever called on the 402 path.
struct Idle;

impl Facilitator for Idle {
    fn verify<'a>(
        &'a self,
        _: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<VerifyResponse, FacilitatorError>> {
        Box::pin(async { Err(FacilitatorError::Transport("idle".into())) })
    }

    fn settle<'a>(
        &'a self,
        _: &'a FacilitatorRequest,
    ) -> BoxFuture<'a, Result<SettleResponse, FacilitatorError>> {
        Box::pin(async { Err(FacilitatorError::Transport("idle".into())) })
    }

    fn supported(&self) -> BoxFuture<'_, Result<SupportedResponse, FacilitatorError>> {
        Box::pin(async { Ok(SupportedResponse::default()) })
    }
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "paywire-paywall-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Runs Chromium headless with a fresh profile; returns its stdout.
fn chromium(profile: &Path, extra: &[&str], url: &str) -> String {
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let output = child.wait_with_output().expect("output");
            assert!(
                status.success(),
                "chromium failed ({status}): {}",
                String::from_utf8_lossy(&output.stderr)
            );
            return String::from_utf8_lossy(&output.stdout).into_owned();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paywall_renders_in_headless_chromium() {
    if !Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var_os("PAYWIRE_SKIP_CHROMIUM").is_some_and(|v| v == "1"),
            "{CHROMIUM} is not installed (apt-get install -y chromium); \
             set PAYWIRE_SKIP_CHROMIUM=1 to skip this test locally"
        );
        eprintln!(
            "\n\n################################################################\n\
             ## SKIPPED paywall_renders_in_headless_chromium (PAYWIRE_SKIP_CHROMIUM=1):\n\
             ## {CHROMIUM} is not installed (apt-get install -y chromium)\n\
             ################################################################\n"
        );
        return;
    }
    let usdc = Address::repeat_byte(0x11);
    let mut table = EvmNetworks::empty();
    table.insert(anvil_network(usdc));
    let layer = PaymentLayer::builder(Arc::new(Idle))
        .scheme(
            ChainIdPattern::parse("eip155:*").expect("pattern"),
            Arc::new(ExactEvmServer::new(table)),
        )
        .public_origin(ORIGIN)
        .asset(&chain(), &usdc.to_string(), "USDC", 6)
        .route(
            Route::new("GET /forecast")
                .expect("route")
                .description(DESCRIPTION)
                .accept(PaymentOption::exact(
                    chain(),
                    money("$0.01").expect("price"),
                    PayTo::address(Address::repeat_byte(0x22).to_string()),
                )),
        )
        .build()
        .expect("layer");
    let app = Router::new()
        .route("/forecast", get(|| async { "sunny" }))
        .layer(layer);
    let url = format!("{}/forecast", serve(app).await);

    let dir = temp_dir();
    let screenshot = dir.join("paywall.png");
    let (profile, shot_arg, url2) = (
        dir.join("profile"),
        format!("--screenshot={}", screenshot.display()),
        url.clone(),
    );
    tokio::task::spawn_blocking(move || {
        chromium(&profile, &[&shot_arg, "--window-size=800,600"], &url2)
    })
    .await
    .expect("screenshot run");
    let png = std::fs::read(&screenshot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let width = u32::from_be_bytes(png[16..20].try_into().expect("width"));
    let height = u32::from_be_bytes(png[20..24].try_into().expect("height"));
    assert_eq!((width, height), (800, 600));
    // A blank 800x600 PNG compresses to well under 5 KB; rendered text does not.
    assert!(
        png.len() > 5_000,
        "screenshot too small: {} bytes",
        png.len()
    );
    if let Ok(copy) = std::env::var("PAYWIRE_PAYWALL_SCREENSHOT") {
        std::fs::copy(&screenshot, &copy).expect("copy screenshot");
        eprintln!("paywall screenshot copied to {copy}");
    }

    let profile = dir.join("profile-dom");
    let dom = tokio::task::spawn_blocking(move || chromium(&profile, &["--dump-dom"], &url))
        .await
        .expect("dump-dom run");
    assert!(dom.contains("Payment required"), "{dom}");
    assert!(
        dom.contains("0.01 USDC"),
        "price missing from the DOM: {dom}"
    );
    assert!(dom.contains(DESCRIPTION), "description missing: {dom}");
    let _ = std::fs::remove_dir_all(&dir);
}
