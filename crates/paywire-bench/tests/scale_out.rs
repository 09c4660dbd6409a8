//! The scale-out proof (`paywire-bench --scale-out`) in a short form: two
//! facilitator processes and two gateway processes on one throwaway
//! PostgreSQL, hostile duplicate sends included, judged from the chain and
//! the upstream's own count.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

/// The `paywire` binary the bench starts, built from this checkout:
/// `cargo nextest run -p paywire-bench` alone does not build another
/// package's binaries, and a target directory shared by several checkouts
/// may hold another one's (a no-op when it is up to date).
fn paywire() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let status = Command::new(env!("CARGO"))
                .args(["build", "-q", "-p", "paywire-cli", "--bin", "paywire"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("cargo build -p paywire-cli");
            assert!(status.success(), "cargo build -p paywire-cli failed");
            PathBuf::from(env!("CARGO_BIN_EXE_paywire-bench")).with_file_name("paywire")
        })
        .clone()
}

/// Whether PostgreSQL is installed; when not, skips (loudly) only if
/// `PAYWIRE_SKIP_POSTGRES=1`, else fails.
fn postgres_available() -> bool {
    match paywire_testkit::postgres::find_bin() {
        Ok(_) => true,
        Err(error) => {
            assert!(
                std::env::var(paywire_testkit::postgres::ENV_SKIP).is_ok_and(|v| v.trim() == "1"),
                "{error}"
            );
            eprintln!("\n!!! SKIPPING the scale-out proof: PostgreSQL is not installed. !!!\n");
            false
        }
    }
}

fn bench(extra: &[&str]) -> (Output, Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_paywire-bench"))
        .arg("--scale-out")
        .arg("--json")
        .arg("--paywire")
        .arg(paywire())
        .args(["--payments", "60", "--concurrency", "6"])
        .args(extra)
        .output()
        .expect("run paywire-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output, report)
}

fn count(report: &Value, key: &str) -> u64 {
    report[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing: {report:#}"))
}

#[test]
fn two_facilitators_and_two_gateways_on_one_postgres_serve_each_payment_once() {
    if !postgres_available() {
        return;
    }
    let (output, report) = bench(&["--no-db-restart"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{report:#}\n{stderr}");
    assert_eq!(report["ok"], Value::Bool(true), "{report:#}");
    for key in [
        "double_settlements",
        "double_broadcasts",
        "double_serves",
        "lost_payments",
        "served_but_unsettled",
    ] {
        assert_eq!(count(&report, key), 0, "{key}: {report:#}");
    }
    // Every payment was distinct and funded: each one is served and settled,
    // the hostile duplicates (half of the load) once.
    assert_eq!(count(&report, "served"), 60, "{report:#}");
    assert_eq!(count(&report, "settled_on_chain"), 60, "{report:#}");
}

#[test]
fn the_verdict_catches_gateways_that_do_not_share_reservations() {
    if !postgres_available() {
        return;
    }
    // Memory reservations: the same payment sent to both gateways at once
    // runs the upstream twice. The run must say so and exit 1.
    let (output, report) = bench(&["--no-db-restart", "--unshared-reservations"]);
    assert_eq!(output.status.code(), Some(1), "{report:#}");
    assert_eq!(report["ok"], Value::Bool(false), "{report:#}");
    assert!(count(&report, "double_serves") > 0, "{report:#}");
}

/// The database restarted mid-load: every instance must recover by itself
/// (the stores' pools replace the connections the restart cut).
#[test]
fn every_instance_recovers_from_a_database_restart_mid_load() {
    if !postgres_available() {
        return;
    }
    let (output, report) = bench(&["--retries", "12"]);
    assert!(output.status.success(), "{report:#}");
    assert_eq!(count(&report, "lost_payments"), 0, "{report:#}");
    assert_eq!(count(&report, "double_serves"), 0, "{report:#}");
    assert!(report["restart"].is_object(), "{report:#}");
}
