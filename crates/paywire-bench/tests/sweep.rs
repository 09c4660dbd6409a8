//! The sweep (`paywire-bench --sweep`) in its smallest form: every point is
//! in the JSON report, every settlement and verification succeeded, and the
//! plot is an SVG document with every series. No timing is asserted.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// The `paywire` binary the bench starts, built from this checkout (see
/// `scale_out.rs`: a test run alone does not build another package's
/// binaries).
fn paywire() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "-q", "-p", "paywire-cli", "--bin", "paywire"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo build -p paywire-cli");
    assert!(status.success(), "cargo build -p paywire-cli failed");
    PathBuf::from(env!("CARGO_BIN_EXE_paywire-bench")).with_file_name("paywire")
}

fn points<'a>(report: &'a Value, key: &str) -> &'a Vec<Value> {
    report[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {report}"))
}

/// Every request of `stats` succeeded and there was at least one.
fn all_succeeded(stats: &Value, what: &str) {
    assert!(
        stats["count"].as_u64().is_some_and(|c| c > 0),
        "{what}: {stats}"
    );
    assert_eq!(stats["errors"], 0, "{what}: {stats}");
}

#[test]
fn the_smallest_sweep_reports_every_point_and_plots_every_series() {
    let dir = std::env::temp_dir().join(format!("paywire-bench-sweep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let plot = dir.join("sweep.svg");
    let output = Command::new(env!("CARGO_BIN_EXE_paywire-bench"))
        .args(["--sweep", "--json", "--no-ts", "--paywire"])
        .arg(paywire())
        .args(["--sweep-concurrency", "1,2", "--sweep-signers", "1,2"])
        .args(["--sweep-signers-concurrency", "2", "--sweep-duration", "1"])
        .args(["--sweep-settlements-per-worker", "2", "--plot"])
        .arg(&plot)
        .output()
        .expect("run paywire-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "paywire-bench --sweep failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).expect("one JSON report");

    let by_concurrency = points(&report, "concurrency_points");
    let levels: Vec<u64> = by_concurrency
        .iter()
        .filter_map(|p| p["concurrency"].as_u64())
        .collect();
    assert_eq!(levels, [1, 2]);
    for point in by_concurrency {
        all_succeeded(&point["verify"], "verify");
        all_succeeded(&point["settle"], "settle");
        assert!(point["settle"]["count"].as_u64() >= Some(20), "{point}");
    }
    let by_signers = points(&report, "signer_points");
    let signers: Vec<u64> = by_signers
        .iter()
        .filter_map(|p| p["signers"].as_u64())
        .collect();
    assert_eq!(signers, [1, 2]);
    for point in by_signers {
        assert_eq!(point["concurrency"], 2, "{point}");
        all_succeeded(&point["settle"], "settle by signers");
    }
    assert!(report["ts"].is_null(), "--no-ts still ran the TS legs");

    let svg = std::fs::read_to_string(&plot).expect("the plot was written");
    let _ = std::fs::remove_dir_all(&dir);
    let trimmed = svg.trim();
    assert!(
        trimmed.starts_with("<svg") && trimmed.ends_with("</svg>"),
        "not an SVG document: {}",
        &trimmed[..trimmed.len().min(200)]
    );
    assert!(svg.contains("xmlns=\"http://www.w3.org/2000/svg\""));
    for series in [
        "/verify req/s",
        "/settle req/s",
        "/verify p99 ms",
        "/settle p99 ms",
        "/settle req/s by signers",
        "/settle p99 ms by signers",
    ] {
        assert!(svg.contains(series), "the plot lacks the series {series:?}");
    }
    assert!(
        svg.matches("<polyline").count() >= 6,
        "fewer than six lines drawn"
    );
    assert!(!svg.contains("TS /verify"), "TS series without TS figures");
}
