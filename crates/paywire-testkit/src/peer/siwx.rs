//! Sign-in-with-x peers from the official TypeScript SDK (`@x402/extensions` 2.27.0,
//! `sign-in-with-x` subpath): a client ([`ts_siwx_fetch`], `wrapFetchWithSIWx`) and the
//! express server with the SIWX resource-server extension ([`TsServer::start_with_siwx`]).

use std::collections::BTreeMap;
use std::fs;

use alloy_primitives::{Address, B256, hex};
use serde::Deserialize;
use serde_json::json;

use super::{
    CLIENT_TIMEOUT, NodeProcess, Result, Script, TS_SERVER_ROUTE, TsServer, USDC_NAME,
    USDC_VERSION, tail,
};
use paywire_devnet::Devnet;

const SIWX_CLIENT_SCRIPT: Script = Script {
    name: "siwx-client",
    source: include_str!("../../peer/siwx-client.mjs"),
};
const SIWX_SERVER_SCRIPT: Script = Script {
    name: "siwx-server",
    source: include_str!("../../peer/siwx-server.mjs"),
};

/// One HTTP exchange made by the TS sign-in client.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TsExchange {
    /// The request headers it sent (lowercase names).
    pub request_headers: BTreeMap<String, String>,
    /// The status it got.
    pub status: u16,
}

/// What [`ts_siwx_fetch`] got back.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TsSiwxResponse {
    /// The final HTTP status.
    pub status: u16,
    /// The final body as text.
    pub body: String,
    /// The final `PAYMENT-REQUIRED` header, if any.
    pub payment_required_header: Option<String>,
    /// All final response headers (lowercase names).
    pub headers: BTreeMap<String, String>,
    /// Every exchange, in order (the first request, then the signed retry if it signed in).
    pub exchanges: Vec<TsExchange>,
    /// The client's stderr, for diagnostics.
    #[serde(skip)]
    pub log: String,
}

/// One request to `url` with the official TS sign-in-with-x client:
/// `wrapFetchWithSIWx(fetch, privateKeyToAccount(key))`. On a 402 advertising
/// `sign-in-with-x` it signs in (never pays) and retries once. A thrown error is an `Err`.
pub async fn ts_siwx_fetch(key: B256, url: &str) -> Result<TsSiwxResponse> {
    let config = json!({
        "url": url,
        "privateKey": hex::encode_prefixed(key),
        "method": "GET",
    });
    let mut process =
        NodeProcess::spawn("TS sign-in client", &SIWX_CLIENT_SCRIPT, &config, true).await?;
    let status = process.wait_exit(CLIENT_TIMEOUT).await?;
    let out_path = process.dir.join(format!("{}.out", SIWX_CLIENT_SCRIPT.name));
    let out = fs::read_to_string(&out_path).unwrap_or_default();
    if !status.success() {
        return Err(process.error(format!("failed ({status}); stdout: {}", tail(&out, 5))));
    }
    let Some(line) = out.lines().rev().find(|l| l.starts_with('{')) else {
        return Err(process.error(format!("printed no JSON result; stdout: {}", tail(&out, 5))));
    };
    let mut response: TsSiwxResponse = serde_json::from_str(line)
        .map_err(|e| process.error(format!("printed a malformed result ({e}): {line}")))?;
    response.log = process.log_text();
    Ok(response)
}

impl TsServer {
    /// [`TsServer::start`] with the SDK's sign-in-with-x server support: the route declares
    /// `declareSIWxExtension({statement})` and the resource server registers
    /// `createSIWxResourceServerExtension({storage: InMemorySIWxStorage, origin:
    /// "http://127.0.0.1:PORT"})`. A wallet that paid for [`TS_SERVER_ROUTE`] is then let in
    /// on a valid `SIGN-IN-WITH-X` proof.
    pub async fn start_with_siwx(
        devnet: &Devnet,
        facilitator_url: &str,
        pay_to: Address,
        price_atomic: u128,
    ) -> Result<Self> {
        debug_assert_eq!(TS_SERVER_ROUTE, "/weather");
        let config = json!({
            "facilitatorUrl": facilitator_url,
            "network": devnet.network(),
            "payTo": pay_to.to_string(),
            "amount": price_atomic.to_string(),
            "asset": devnet.usdc().to_string(),
            "eip712Name": USDC_NAME,
            "eip712Version": USDC_VERSION,
        });
        let mut process =
            NodeProcess::spawn("TS SIWX server", &SIWX_SERVER_SCRIPT, &config, false).await?;
        let port = process.wait_ready().await?;
        Ok(Self {
            process,
            url: format!("http://127.0.0.1:{port}"),
            port,
        })
    }
}
