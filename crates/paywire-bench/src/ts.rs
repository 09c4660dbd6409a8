//! The official TypeScript stack (`@x402/*`, pinned in the test kit's
//! `peer/`) measured in the same run, on the same devnet, with the same load
//! shape: its facilitator's `/verify` and `/settle` (one signer, receipts
//! polled every 50 ms, per-request logging off) with our signed payloads,
//! and paid requests TS client → TS server (`@x402/express`) → TS
//! facilitator from one Node process (`load-client.mjs`).

use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{Address, B256};
use paywire_core::{PaymentPayload, PaymentRequirements};
use paywire_testkit::Devnet;
use paywire_testkit::peer::{
    ENV_NODE, PAYWIRE_SDK_VERSION, TsFacilitator, TsFacilitatorOptions, TsLoadReport, TsServer,
    TsServerOptions, install_peer_packages, ts_client_load,
};
use serde_json::{Value, json};

use crate::{
    Args, Stats, funded_key, measure_settle, measure_verify, peak_rss_kib, print_row,
    sign_payments, warm_up,
};

/// The TS facilitator's receipt polling interval (the script's default;
/// viem's own is 4 s, which would make every settlement take seconds).
const RECEIPT_POLLING: Duration = Duration::from_millis(50);

/// The price of the TS server's route in USDC base units: $0.001, as ours.
const PRICE_ATOMIC: u128 = 1_000;

/// Fails loudly unless Node runs and the SDK packages are installed (it
/// installs them with npm the first time), before the run spends minutes.
pub(crate) async fn ensure_node() -> Result<(), String> {
    let node = std::env::var(ENV_NODE)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "node".to_owned());
    let version = tokio::process::Command::new(&node)
        .arg("--version")
        .output()
        .await
        .map_err(|e| {
            format!(
                "the TypeScript legs need Node.js 20+ (`{node}`: {e}); install it, set {ENV_NODE}, or pass --no-ts"
            )
        })?;
    if !version.status.success() {
        return Err(format!(
            "`{node} --version` failed ({}); fix Node.js or pass --no-ts",
            version.status
        ));
    }
    install_peer_packages()
        .await
        .map(|_| ())
        .map_err(|e| format!("installing the TypeScript SDK (or pass --no-ts): {e}"))
}

fn load_stats(report: &TsLoadReport) -> Stats {
    Stats {
        count: report.ok,
        errors: report.errors,
        seconds: report.seconds,
        latencies_us: report
            .latencies_ms
            .iter()
            .map(|ms| (ms * 1000.0) as u64)
            .collect(),
        first_error: report.first_error.clone(),
    }
}

fn load_json(report: &TsLoadReport) -> Value {
    let mut value = load_stats(report).to_json();
    value["concurrency"] = json!(report.concurrency);
    value
}

/// The TS facilitator's `/verify` (for `--duration`, over `verify_payloads`)
/// and `/settle` (`--settlements` fresh payments) at `--concurrency`, then
/// `--paid-requests` paid requests through the TS stack at concurrency 1
/// and at `--concurrency`.
pub(crate) async fn measure(
    devnet: &Devnet,
    requirements: &PaymentRequirements,
    verify_payloads: &Arc<Vec<PaymentPayload>>,
    args: &Args,
) -> Result<Value, String> {
    eprintln!("[7/8] TS facilitator: /verify, /settle ...");
    let options = TsFacilitatorOptions {
        polling_interval: RECEIPT_POLLING,
        quiet: true,
        ..TsFacilitatorOptions::default()
    };
    let facilitator = TsFacilitator::start_with(devnet, funded_key(devnet).await?, options)
        .await
        .map_err(|e| e.to_string())?;
    warm_up(facilitator.url(), requirements, verify_payloads).await;
    let verify = measure_verify(
        facilitator.url(),
        requirements,
        Arc::clone(verify_payloads),
        args.concurrency,
        Duration::from_secs(args.duration),
    )
    .await;
    let payloads = sign_payments(devnet, requirements, args.settlements).await;
    let settle = measure_settle(facilitator.url(), requirements, payloads, args.concurrency).await;
    let facilitator_rss = facilitator.pid().and_then(peak_rss_kib);

    eprintln!(
        "[8/8] TS client -> TS server -> TS facilitator (concurrency 1, then {}) ...",
        args.concurrency
    );
    let quiet = TsServerOptions { quiet: true };
    let server = TsServer::start_with(
        devnet,
        facilitator.url(),
        Address::random(),
        PRICE_ATOMIC,
        quiet,
    )
    .await
    .map_err(|e| e.to_string())?;
    let keys: Vec<B256> = (1..=8).map(|i| devnet.payer(i).private_key).collect();
    let url = server.resource_url();
    let serial = ts_client_load(devnet, &keys, &url, args.paid_requests, 1)
        .await
        .map_err(|e| e.to_string())?;
    let concurrent = ts_client_load(devnet, &keys, &url, args.paid_requests, args.concurrency)
        .await
        .map_err(|e| e.to_string())?;
    Ok(json!({
        "sdk_version": PAYWIRE_SDK_VERSION,
        "facilitator": {
            "verify": verify.to_json(),
            "settle": settle.to_json(),
            "peak_rss_kib": facilitator_rss,
            "receipt_polling_ms": RECEIPT_POLLING.as_millis() as u64,
            "request_logging": false,
        },
        "paid_request": load_json(&serial),
        "paid_request_concurrent": load_json(&concurrent),
        "server": {"peak_rss_kib": server.pid().and_then(peak_rss_kib)},
        "facilitator_peak_rss_kib_after_paid": facilitator.pid().and_then(peak_rss_kib),
    }))
}

/// Adds ours-versus-TS ratios to `report["ratios"]` when the TS legs ran
/// (throughput: ours / TS; p50 latency and memory: TS / ours, so above 1
/// always means we do better).
pub(crate) fn add_ratios(report: &mut Value) {
    let ts = &report["ts"];
    if ts.is_null() {
        return;
    }
    let number = |v: &Value| v.as_f64().unwrap_or_default();
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let pairs = [
        (
            "verify_per_second_vs_ts",
            ratio(
                number(&report["facilitator"]["verify"]["per_second"]),
                number(&ts["facilitator"]["verify"]["per_second"]),
            ),
        ),
        (
            "settle_per_second_vs_ts",
            ratio(
                number(&report["facilitator"]["settle"]["per_second"]),
                number(&ts["facilitator"]["settle"]["per_second"]),
            ),
        ),
        (
            "paid_concurrent_per_second_vs_ts",
            ratio(
                number(&report["paid_request_concurrent"]["per_second"]),
                number(&ts["paid_request_concurrent"]["per_second"]),
            ),
        ),
        (
            "ts_paid_request_p50_vs_ours",
            ratio(
                number(&ts["paid_request"]["p50_ms"]),
                number(&report["paid_request"]["p50_ms"]),
            ),
        ),
        (
            "ts_facilitator_rss_vs_ours",
            ratio(
                number(&ts["facilitator"]["peak_rss_kib"]),
                number(&report["facilitator"]["peak_rss_kib"]),
            ),
        ),
    ];
    for (name, value) in pairs {
        report["ratios"][name] = json!(value);
    }
}

/// The TS rows of the table (nothing when the TS legs were skipped).
pub(crate) fn print_rows(report: &Value) {
    let ts = &report["ts"];
    if ts.is_null() {
        println!("TypeScript stack: not measured (--no-ts)");
        return;
    }
    let c = &report["concurrency"];
    print_row("TS facilitator /verify", &ts["facilitator"]["verify"]);
    print_row("TS facilitator /settle", &ts["facilitator"]["settle"]);
    print_row("TS paid e2e (concurrency 1)", &ts["paid_request"]);
    print_row(
        &format!("TS paid e2e (concurrency {c})"),
        &ts["paid_request_concurrent"],
    );
    println!(
        "TS facilitator peak RSS: {} KiB (after its /settle load; {} KiB after the paid requests); TS server: {} KiB",
        ts["facilitator"]["peak_rss_kib"],
        ts["facilitator_peak_rss_kib_after_paid"],
        ts["server"]["peak_rss_kib"],
    );
}
