//! `--sweep`: `/verify` and `/settle` throughput and p99 against
//! concurrency with one signer, then `/settle` at one concurrency against
//! the number of signers; the official TS facilitator at the same
//! concurrency points unless `--no-ts`. Each point is short: `/verify` runs
//! for `--sweep-duration` seconds, `/settle` settles
//! `--sweep-settlements-per-worker` distinct payments per worker (at least
//! [`MIN_SETTLEMENTS`]).
//!
//! Every point runs on a fresh devnet with a fresh facilitator: anvil mines
//! more slowly as its chain grows (about five times slower after 2,500
//! transactions), so points measured one after the other on one chain would
//! show the chain's length, not the facilitator's behaviour.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::Address;
use paywire_core::{PaymentPayload, PaymentRequirements};
use paywire_testkit::Devnet;
use paywire_testkit::peer::{TsFacilitator, TsFacilitatorOptions};
use serde_json::{Value, json};

use crate::{
    Args, Stats, facilitator_command, funded_key, measure_settle, measure_verify, peak_rss_kib,
    requirements, sign_payments, start_facilitator_with_signers,
};

/// Fewest payments settled at one point, so that low concurrency still
/// gives a percentile worth reading.
const MIN_SETTLEMENTS: usize = 20;

/// Runs the sweep, prints its table or JSON and writes the plot.
pub(crate) async fn main(args: Args) -> ExitCode {
    let report = match run(&args).await {
        Ok(report) => report,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    if args.json {
        println!("{report}");
    } else {
        print_table(&report);
    }
    if let Some(path) = &args.plot {
        if let Err(error) = crate::plot::write(path, &report) {
            eprintln!("error: writing the plot {}: {error}", path.display());
            return ExitCode::from(2);
        }
        eprintln!("plot written to {}", path.display());
    }
    ExitCode::SUCCESS
}

/// One facilitator (ours or the TS one) and what the sweep feeds it.
struct Target<'a> {
    url: &'a str,
    devnet: &'a Devnet,
    requirements: &'a PaymentRequirements,
    verify_payloads: &'a Arc<Vec<PaymentPayload>>,
}

impl Target<'_> {
    async fn verify(&self, concurrency: usize, args: &Args) -> Stats {
        measure_verify(
            self.url,
            self.requirements,
            Arc::clone(self.verify_payloads),
            concurrency,
            Duration::from_secs(args.sweep_duration),
        )
        .await
    }

    async fn settle(&self, concurrency: usize, args: &Args) -> Stats {
        let count = (concurrency * args.sweep_settlements_per_worker).max(MIN_SETTLEMENTS);
        let payloads = sign_payments(self.devnet, self.requirements, count).await;
        measure_settle(self.url, self.requirements, payloads, concurrency).await
    }

    async fn point(&self, concurrency: usize, args: &Args) -> Value {
        let verify = self.verify(concurrency, args).await;
        let settle = self.settle(concurrency, args).await;
        json!({
            "concurrency": concurrency,
            "signers": 1,
            "verify": verify.to_json(),
            "settle": settle.to_json(),
        })
    }
}

async fn run(args: &Args) -> Result<Value, String> {
    let binary = facilitator_command(args)?;
    if !args.no_ts {
        crate::ts::ensure_node().await?;
    }
    let mut points = Vec::new();
    let mut rss = None;
    for &concurrency in &args.sweep_concurrency {
        eprintln!("sweep: /verify and /settle at concurrency {concurrency} ...");
        let devnet = Devnet::start().await.map_err(|e| e.to_string())?;
        let (requirements, verify_payloads) = signed_for(&devnet).await;
        let facilitator = start_facilitator_with_signers(&devnet, &binary, 1).await?;
        crate::warm_up(&facilitator.url, &requirements, &verify_payloads).await;
        let ours = Target {
            url: &facilitator.url,
            devnet: &devnet,
            requirements: &requirements,
            verify_payloads: &verify_payloads,
        };
        points.push(ours.point(concurrency.max(1), args).await);
        rss = rss.max(facilitator.child.id().and_then(peak_rss_kib));
    }

    let signers = signer_points(&binary, args).await?;
    let ts = if args.no_ts {
        Value::Null
    } else {
        ts_points(args).await?
    };
    Ok(json!({
        "facilitator_binary": binary.0.file_name().map(|n| n.to_string_lossy().into_owned()),
        "verify_seconds_per_point": args.sweep_duration,
        "settlements_per_worker": args.sweep_settlements_per_worker,
        "min_settlements_per_point": MIN_SETTLEMENTS,
        "fresh_devnet_per_point": true,
        "concurrency_points": points,
        "facilitator_peak_rss_kib": rss,
        "signers_concurrency": args.sweep_signers_concurrency,
        "signer_points": signers,
        "ts": ts,
    }))
}

/// The requirements for `devnet`'s USDC and 256 payments signed for them
/// (signed per point: an authorization is valid for 600 s, and a long sweep
/// outlasts that).
async fn signed_for(devnet: &Devnet) -> (PaymentRequirements, Arc<Vec<PaymentPayload>>) {
    let requirements = requirements(devnet.usdc(), Address::random());
    let payloads = Arc::new(sign_payments(devnet, &requirements, 256).await);
    (requirements, payloads)
}

/// `/settle` at `--sweep-signers-concurrency` with a fresh devnet and
/// facilitator per signer count, every signer funded.
async fn signer_points(
    binary: &(std::path::PathBuf, Option<&'static str>),
    args: &Args,
) -> Result<Vec<Value>, String> {
    let concurrency = args.sweep_signers_concurrency.max(1);
    let mut points = Vec::new();
    for &signers in &args.sweep_signers {
        let signers = signers.max(1);
        eprintln!("sweep: /settle at concurrency {concurrency} with {signers} signer(s) ...");
        let devnet = &Devnet::start().await.map_err(|e| e.to_string())?;
        let (requirements, verify_payloads) = signed_for(devnet).await;
        let facilitator = start_facilitator_with_signers(devnet, binary, signers).await?;
        crate::warm_up(&facilitator.url, &requirements, &verify_payloads).await;
        let target = Target {
            url: &facilitator.url,
            devnet,
            requirements: &requirements,
            verify_payloads: &verify_payloads,
        };
        let settle = target.settle(concurrency, args).await;
        points.push(json!({
            "signers": signers,
            "concurrency": concurrency,
            "settle": settle.to_json(),
            "facilitator_peak_rss_kib": facilitator.child.id().and_then(peak_rss_kib),
        }));
    }
    Ok(points)
}

/// The official TS facilitator (one signer, receipts polled every 50 ms,
/// request logging off) at the same concurrency points.
async fn ts_points(args: &Args) -> Result<Value, String> {
    let mut points = Vec::new();
    let mut rss = None;
    for &concurrency in &args.sweep_concurrency {
        eprintln!("sweep: TS /verify and /settle at concurrency {concurrency} ...");
        let devnet = &Devnet::start().await.map_err(|e| e.to_string())?;
        let (requirements, verify_payloads) = signed_for(devnet).await;
        let options = TsFacilitatorOptions {
            polling_interval: Duration::from_millis(50),
            quiet: true,
            ..TsFacilitatorOptions::default()
        };
        let facilitator = TsFacilitator::start_with(devnet, funded_key(devnet).await?, options)
            .await
            .map_err(|e| e.to_string())?;
        crate::warm_up(facilitator.url(), &requirements, &verify_payloads).await;
        let target = Target {
            url: facilitator.url(),
            devnet,
            requirements: &requirements,
            verify_payloads: &verify_payloads,
        };
        points.push(target.point(concurrency.max(1), args).await);
        rss = rss.max(facilitator.pid().and_then(peak_rss_kib));
    }
    Ok(json!({
        "receipt_polling_ms": 50,
        "request_logging": false,
        "concurrency_points": points,
        "facilitator_peak_rss_kib": rss,
    }))
}

fn print_points(title: &str, points: &Value) {
    println!("{title}");
    println!(
        "{:>11} {:>10} {:>12} {:>10} {:>12} {:>8}",
        "concurrency", "verify/s", "verify p99", "settle/s", "settle p99", "errors"
    );
    for point in points.as_array().into_iter().flatten() {
        let (verify, settle) = (&point["verify"], &point["settle"]);
        println!(
            "{:>11} {:>10.1} {:>9.2} ms {:>10.1} {:>9.2} ms {:>8}",
            point["concurrency"].as_u64().unwrap_or_default(),
            verify["per_second"].as_f64().unwrap_or_default(),
            verify["p99_ms"].as_f64().unwrap_or_default(),
            settle["per_second"].as_f64().unwrap_or_default(),
            settle["p99_ms"].as_f64().unwrap_or_default(),
            verify["errors"].as_u64().unwrap_or_default()
                + settle["errors"].as_u64().unwrap_or_default(),
        );
    }
}

fn print_table(report: &Value) {
    print_points(
        &format!(
            "our facilitator ({}), one signer:",
            report["facilitator_binary"]
        ),
        &report["concurrency_points"],
    );
    println!(
        "/settle at concurrency {} against signers:",
        report["signers_concurrency"]
    );
    println!(
        "{:>7} {:>10} {:>12} {:>8}",
        "signers", "settle/s", "settle p99", "errors"
    );
    for point in report["signer_points"].as_array().into_iter().flatten() {
        let settle = &point["settle"];
        println!(
            "{:>7} {:>10.1} {:>9.2} ms {:>8}",
            point["signers"].as_u64().unwrap_or_default(),
            settle["per_second"].as_f64().unwrap_or_default(),
            settle["p99_ms"].as_f64().unwrap_or_default(),
            settle["errors"].as_u64().unwrap_or_default(),
        );
    }
    if !report["ts"].is_null() {
        print_points(
            "official TS facilitator, one signer (receipts polled every 50 ms):",
            &report["ts"]["concurrency_points"],
        );
    }
}
