//! `paywire-ledger-bench`: what the settlement ledger costs as it grows.
//!
//! One run makes two throwaway ledgers (SQLite files in a temporary
//! directory, or two databases of a throwaway PostgreSQL cluster), both
//! migrated by the facilitator's own code. It settles `--settlements` fresh
//! payments through a real `paywire-facilitator` process on the EMPTY
//! ledger, copies the rows those settlements left (settlement record,
//! `spend:` binding, settled-transaction claim) `--rows` times into the
//! FULL ledger with fresh keys, hashes and spread timestamps, reports its
//! size, then settles as many fresh payments on the FULL ledger; with
//! `--rounds 2` the empty and full phases alternate (A, B, A, B). Every
//! `/settle` phase runs on a fresh devnet of its own, so that no phase is
//! slowed by the chain the earlier ones grew. Optionally
//! (`--ops`) it also times the ledger calls of `/settle` and the periodic
//! queries in process, on both ledgers.
#![forbid(unsafe_code)]
// Statistics over request counts, durations and byte counts: far inside
// f64's exact range.
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

mod ledger;

use std::path::PathBuf;
use std::time::Instant;

use alloy_primitives::Address;
use clap::Parser;
use paywire_testkit::Devnet;
use serde_json::{Value, json};

use ledger::fill::{Generator, Template};
use ledger::service::{self, FacilitatorProcess};
use ledger::store::{Ledgers, StoreKind};

/// Ledger size and `/settle` latency at N settlements, against an empty ledger.
#[derive(Parser, Debug)]
#[command(name = "paywire-ledger-bench", version)]
struct Args {
    /// The ledger's store.
    #[arg(long, value_enum)]
    store: StoreKind,
    /// Settlements in the full ledger.
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Fresh payments settled per timed phase.
    #[arg(long, default_value_t = 400)]
    settlements: usize,
    /// Concurrent `/settle` callers.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Empty/full phase pairs, alternated.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Days the filled settlements' timestamps are spread over (ending now).
    #[arg(long, default_value_t = 90)]
    span_days: i64,
    /// Settlements per bulk-load transaction.
    #[arg(long, default_value_t = 20_000)]
    batch: usize,
    /// Fresh settlements whose ledger calls are timed in process on each
    /// ledger (0: skip).
    #[arg(long, default_value_t = 300)]
    ops: usize,
    /// Path of a `paywire` binary to run `paywire facilitator` from
    /// (default: `paywire-facilitator` next to this binary, else `paywire`).
    #[arg(long, conflicts_with = "facilitator")]
    paywire: Option<PathBuf>,
    /// Path of a `paywire-facilitator` binary to run.
    #[arg(long)]
    facilitator: Option<PathBuf>,
    /// PostgreSQL: the (empty) database for the full ledger, instead of a
    /// throwaway cluster; needs `--postgres-empty-url`.
    #[arg(long, requires = "postgres_empty_url")]
    postgres_url: Option<String>,
    /// PostgreSQL: the (empty) database for the empty ledger.
    #[arg(long, requires = "postgres_url")]
    postgres_empty_url: Option<String>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// What the run shares between phases.
struct Run {
    args: Args,
    command: (PathBuf, Option<&'static str>),
    ledgers: Ledgers,
    dir: tempfile::TempDir,
}

impl Run {
    /// One timed `/settle` phase on `store`: a fresh devnet (anvil mines
    /// more slowly as its chain grows, which would slow every later phase
    /// whatever its ledger), a new facilitator process, fresh payments, then
    /// the process is stopped.
    async fn settle_phase(&self, store: &str, label: &str) -> Result<Value, String> {
        let devnet = Devnet::start().await.map_err(|e| e.to_string())?;
        let requirements = service::requirements(devnet.usdc(), Address::random())?;
        let requests =
            service::sign_payments(&devnet, &requirements, self.args.settlements).await?;
        let process: FacilitatorProcess =
            service::start_facilitator(&devnet, &self.command, store, self.dir.path()).await?;
        eprintln!(
            "  {label}: facilitator healthy after {:?}, settling ...",
            process.startup
        );
        let stats = service::settle_all(&process.url, requests, self.args.concurrency).await;
        let startup_ms = process.startup.as_secs_f64() * 1000.0;
        process.stop().await;
        let mut report = stats.to_json();
        report["startup_ms"] = json!(startup_ms);
        eprintln!(
            "  {label}: {:.1}/s p50 {:.1} ms p99 {:.1} ms ({} ok, {} errors)",
            stats.throughput(),
            stats.percentile(0.5),
            stats.percentile(0.99),
            stats.count,
            stats.errors
        );
        Ok(report)
    }

    /// Times the ledger calls in process on `store`.
    async fn time_ops(
        &self,
        store: &str,
        template: &Template,
        existing: &[ledger::fill::SettledRow],
    ) -> Result<Value, String> {
        if self.args.ops == 0 {
            return Ok(Value::Null);
        }
        let handle = self.ledgers.open(store).await?;
        ledger::ops::time_operations(&handle, template, existing, self.args.ops).await
    }
}

async fn fill_full(run: &Run, templates: &[Template]) -> Result<Value, String> {
    let now = ledger::ops::paywire_now();
    let span = run.args.span_days.saturating_mul(86_400);
    let mut generator = Generator::new(templates, run.args.rows, now - span, span);
    let began = Instant::now();
    let inserted = run
        .ledgers
        .fill(&run.ledgers.full, &mut generator, run.args.batch)
        .await?;
    let seconds = began.elapsed().as_secs_f64();
    eprintln!("  filled {inserted} settlements in {seconds:.1} s");
    Ok(
        json!({"settlements": inserted, "seconds": seconds, "per_second": inserted as f64 / seconds.max(1e-9)}),
    )
}

async fn execute(args: Args) -> Result<Value, String> {
    let command =
        service::facilitator_command(args.facilitator.as_deref(), args.paywire.as_deref())?;
    let dir = tempfile::Builder::new()
        .prefix("paywire-ledger-bench-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let ledgers = match args.store {
        StoreKind::Sqlite => Ledgers::sqlite(dir.path()),
        StoreKind::Postgres => {
            Ledgers::postgres(
                args.postgres_url
                    .clone()
                    .zip(args.postgres_empty_url.clone())
                    .map(|(full, empty)| (empty, full)),
            )
            .await?
        }
    };
    eprintln!("[1/5] ledgers ...");
    for store in [&ledgers.empty, &ledgers.full] {
        drop(ledgers.open(store).await?);
    }
    let migrated_size = ledgers.size(&ledgers.full).await?;
    let run = Run {
        args,
        command,
        ledgers,
        dir,
    };

    eprintln!("[2/5] /settle on the empty ledger (round 1) ...");
    let mut empty_phases = vec![run.settle_phase(&run.ledgers.empty, "empty").await?];
    let settled = run.ledgers.settled_rows(&run.ledgers.empty, None).await?;
    let templates: Vec<Template> = settled.iter().cloned().map(Template::new).collect();
    let template = templates
        .first()
        .ok_or("no settlement succeeded on the empty ledger")?
        .clone();

    eprintln!(
        "[3/5] filling the full ledger with {} settlements ...",
        run.args.rows
    );
    let fill = fill_full(&run, &templates).await?;
    let full_size = run.ledgers.size(&run.ledgers.full).await?;
    let full_counts = run.ledgers.counts(&run.ledgers.full).await?;

    eprintln!("[4/5] ledger calls in process ...");
    let ops_empty = run
        .time_ops(&run.ledgers.empty, &template, &settled)
        .await?;
    // Settled rows of the full ledger to look up: the copies' keys are
    // random, so read some back at random keys.
    let full_sample = run
        .ledgers
        .settled_rows(&run.ledgers.full, Some(run.args.ops))
        .await?;
    let ops_full = run
        .time_ops(&run.ledgers.full, &template, &full_sample)
        .await?;

    eprintln!("[5/5] /settle on the full ledger, alternating with the empty one ...");
    let mut full_phases = Vec::new();
    for round in 0..run.args.rounds.max(1) {
        if round > 0 {
            empty_phases.push(run.settle_phase(&run.ledgers.empty, "empty").await?);
        }
        full_phases.push(run.settle_phase(&run.ledgers.full, "full").await?);
    }
    let final_size = run.ledgers.size(&run.ledgers.full).await?;
    Ok(report(
        &run,
        Report {
            migrated_size,
            fill,
            full_size,
            full_counts,
            final_size,
            empty_phases,
            full_phases,
            ops_empty,
            ops_full,
        },
    ))
}

struct Report {
    migrated_size: Value,
    fill: Value,
    full_size: Value,
    full_counts: Value,
    final_size: Value,
    empty_phases: Vec<Value>,
    full_phases: Vec<Value>,
    ops_empty: Value,
    ops_full: Value,
}

fn report(run: &Run, r: Report) -> Value {
    let bytes = |size: &Value| size["total_bytes"].as_f64().unwrap_or_default();
    let per_settlement =
        (bytes(&r.full_size) - bytes(&r.migrated_size)) / (run.args.rows.max(1) as f64);
    let ratio = |key: &str| -> Vec<f64> {
        r.empty_phases
            .iter()
            .zip(&r.full_phases)
            .map(|(empty, full)| {
                let (e, f) = (
                    empty[key].as_f64().unwrap_or_default(),
                    full[key].as_f64().unwrap_or_default(),
                );
                if e > 0.0 { f / e } else { 0.0 }
            })
            .collect()
    };
    json!({
        "store": format!("{:?}", run.args.store).to_lowercase(),
        "rows": run.args.rows,
        "settlements_per_phase": run.args.settlements,
        "concurrency": run.args.concurrency,
        "facilitator_binary": run.command.0.display().to_string(),
        "size": {
            "migrated_empty": r.migrated_size,
            "after_fill": r.full_size,
            "after_phases": r.final_size,
            "bytes_per_settlement": per_settlement,
            "rows": r.full_counts,
        },
        "fill": r.fill,
        "settle": {
            "empty": r.empty_phases,
            "full": r.full_phases,
            "full_vs_empty": {
                "per_second": ratio("per_second"),
                "p50_ms": ratio("p50_ms"),
                "p90_ms": ratio("p90_ms"),
                "p99_ms": ratio("p99_ms"),
            },
        },
        "ledger_ops": {"empty": r.ops_empty, "full": r.ops_full},
    })
}

fn print_table(report: &Value) {
    println!(
        "store {}, {} settlements in the full ledger, {} per phase at concurrency {}, facilitator {}",
        report["store"],
        report["rows"],
        report["settlements_per_phase"],
        report["concurrency"],
        report["facilitator_binary"]
    );
    let size = &report["size"];
    println!(
        "size after fill: {} bytes ({:.0} bytes/settlement); rows {}",
        size["after_fill"]["total_bytes"],
        size["bytes_per_settlement"].as_f64().unwrap_or_default(),
        size["rows"]
    );
    println!("fill: {}", report["fill"]);
    let phases = |name: &str| {
        report["settle"][name]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    for (i, (empty, full)) in phases("empty")
        .iter()
        .zip(phases("full").iter())
        .enumerate()
    {
        for (name, stats) in [("empty", empty), ("full", full)] {
            println!(
                "round {} /settle {name:<5} {:>7.1}/s  p50 {:>8.2} ms  p90 {:>8.2} ms  p99 {:>8.2} ms  ({} ok, {} errors, start {:.0} ms)",
                i + 1,
                stats["per_second"].as_f64().unwrap_or_default(),
                stats["p50_ms"].as_f64().unwrap_or_default(),
                stats["p90_ms"].as_f64().unwrap_or_default(),
                stats["p99_ms"].as_f64().unwrap_or_default(),
                stats["count"],
                stats["errors"],
                stats["startup_ms"].as_f64().unwrap_or_default(),
            );
        }
    }
    println!("full/empty ratios: {}", report["settle"]["full_vs_empty"]);
    let ops = &report["ledger_ops"];
    if let Some(names) = ops["empty"].as_object() {
        println!(
            "{:<24} {:>14} {:>14}",
            "ledger call (mean µs)", "empty", "full"
        );
        for name in names.keys() {
            let mean = |side: &str| ops[side][name]["mean_us"].as_f64().unwrap_or_default();
            if name != "settle_path_seconds" {
                println!("{name:<24} {:>14.1} {:>14.1}", mean("empty"), mean("full"));
            }
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let json = args.json;
    match execute(args).await {
        Ok(report) => {
            if json {
                println!("{report}");
            } else {
                print_table(&report);
            }
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::from(2)
        }
    }
}
