//! The gateway leg: a gateway process (the dedicated `paywire-gateway`
//! binary when it was built next to this one, else `paywire gateway`) in
//! front of an in-process upstream, paid through by our Rust client at
//! `--concurrency`, with its peak RSS read afterwards.

use std::path::PathBuf;

use alloy_primitives::Address;
use paywire_testkit::Devnet;
use serde_json::{Value, json};

use crate::scale::{free_port, gateway_config, launch_gateway};
use crate::{Args, pay_requests, peak_rss_kib, rust_client};

/// How to start a gateway: the dedicated `paywire-gateway` binary next to
/// this one when it was built (what an operator deploys), else `paywire
/// gateway`; `--paywire` forces the latter with that path.
pub(crate) fn command(args: &Args) -> Result<(PathBuf, Option<&'static str>), String> {
    if let Some(path) = &args.paywire {
        return Ok((path.clone(), Some("gateway")));
    }
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let dedicated = me.with_file_name("paywire-gateway");
    if dedicated.exists() {
        return Ok((dedicated, None));
    }
    let sibling = me.with_file_name("paywire");
    if sibling.exists() {
        Ok((sibling, Some("gateway")))
    } else {
        Err(format!(
            "no gateway binary next to {}; build one (cargo build --release -p paywire-cli) or pass --paywire",
            me.display()
        ))
    }
}

/// An upstream answering `GET /paid` with a short body; returns its URL.
async fn start_upstream() -> Result<String, String> {
    let app = axum::Router::new().route("/paid", axum::routing::get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let url = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(url)
}

/// `--paid-requests` paid requests through a gateway at `--concurrency`
/// (reservations in memory, our facilitator at `facilitator_url`): the
/// figures, the gateway's peak RSS and which binary ran.
pub(crate) async fn measure(
    devnet: &Devnet,
    binary: &(PathBuf, Option<&'static str>),
    facilitator_url: &str,
    args: &Args,
) -> Result<Value, String> {
    let dir = crate::temp_dir().map_err(|e| e.to_string())?;
    let upstream = start_upstream().await?;
    let port = free_port()?;
    let config = gateway_config(
        port,
        &upstream,
        None,
        &[facilitator_url],
        devnet.usdc(),
        Address::random(),
    );
    let gateway = launch_gateway(binary, dir.path(), "gateway", port, &config).await?;
    let client = rust_client(devnet, 7)?;
    let paid = pay_requests(client, &gateway.url, args.paid_requests, args.concurrency).await;
    let rss = gateway.child.id().and_then(peak_rss_kib);
    Ok(json!({
        "binary": binary.0.file_name().map(|n| n.to_string_lossy().into_owned()),
        "subcommand": binary.1,
        "paid": paid.to_json(),
        "peak_rss_kib": rss,
    }))
}
