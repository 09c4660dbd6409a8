//! `paywire-ledger-bench` end to end at a tiny size, on both stores: it
//! fills the ledger, settles through a real facilitator on the empty and the
//! full ledger, times the ledger calls and reports the sizes.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// The dedicated facilitator the tool starts, built from this checkout
/// (`cargo nextest run -p paywire-bench` alone builds no other package's
/// binaries).
fn facilitator() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let status = Command::new(env!("CARGO"))
                .args([
                    "build",
                    "-q",
                    "-p",
                    "paywire-cli",
                    "--bin",
                    "paywire-facilitator",
                ])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("cargo build -p paywire-cli");
            assert!(status.success(), "cargo build -p paywire-cli failed");
            PathBuf::from(env!("CARGO_BIN_EXE_paywire-ledger-bench"))
                .with_file_name("paywire-facilitator")
        })
        .clone()
}

/// Runs the tool on `store` with a few hundred rows; its JSON report.
fn run(store: &str) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_paywire-ledger-bench"))
        .args(["--store", store, "--rows", "300", "--settlements", "20"])
        .args([
            "--concurrency",
            "4",
            "--ops",
            "5",
            "--batch",
            "100",
            "--json",
        ])
        .arg("--facilitator")
        .arg(facilitator())
        .output()
        .expect("run paywire-ledger-bench");
    assert!(
        output.status.success(),
        "{store}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON report")
}

fn assert_complete(report: &Value) {
    let size = &report["size"];
    for stage in ["migrated_empty", "after_fill", "after_phases"] {
        assert!(
            size[stage]["total_bytes"].as_f64().unwrap_or_default() > 0.0,
            "{stage}: {report}"
        );
    }
    assert!(size["bytes_per_settlement"].as_f64().unwrap_or_default() > 0.0);
    for phase in ["empty", "full"] {
        let phases = report["settle"][phase].as_array().expect("phases");
        assert!(!phases.is_empty(), "{phase}: {report}");
        for stats in phases {
            assert_eq!(stats["errors"], 0, "{phase}: {stats}");
            assert_eq!(stats["count"], 20, "{phase}: {stats}");
        }
    }
}

#[test]
fn sqlite_ledger_is_filled_settled_and_measured() {
    assert_complete(&run("sqlite"));
}

/// Runs against a throwaway PostgreSQL cluster; without PostgreSQL it fails
/// unless `PAYWIRE_SKIP_POSTGRES=1`.
#[test]
fn postgres_ledger_is_filled_settled_and_measured() {
    if let Err(error) = paywire_testkit::postgres::find_bin() {
        assert!(
            std::env::var(paywire_testkit::postgres::ENV_SKIP).is_ok_and(|v| v.trim() == "1"),
            "{error}"
        );
        eprintln!("\n!!! SKIPPING the PostgreSQL ledger bench: PostgreSQL is not installed. !!!\n");
        return;
    }
    assert_complete(&run("postgres"));
}
