//! The official TypeScript server selling Permit2 payments: `exact` with
//! `assetTransferMethod: "permit2"` on `GET /permit2`, and `upto` on `GET /metered?units=N`,
//! whose handler reports N atomic units of usage with `setSettlementOverrides`.

use alloy_primitives::Address;
use paywire_devnet::{Devnet, Result};
use serde_json::json;

use super::{NodeProcess, Script};

const METERED_SERVER_SCRIPT: Script = Script {
    name: "server-metered",
    source: include_str!("../../peer/server-metered.mjs"),
};

/// The official TS resource server (`@x402/express` with `ExactEvmScheme` and `UptoEvmScheme`
/// from `@x402/evm` 2.27.0), settling through the facilitator it was started with. Ready once
/// unpaid requests to both routes were answered 402. Killed on drop.
#[derive(Debug)]
pub struct TsMeteredServer {
    process: NodeProcess,
    url: String,
}

impl TsMeteredServer {
    /// Starts it, paid to `pay_to` in `asset`: `amount` atomic units per `GET /permit2`, at
    /// most `max` per `GET /metered`.
    pub async fn start(
        devnet: &Devnet,
        facilitator_url: &str,
        pay_to: Address,
        asset: Address,
        amount: u128,
        max: u128,
    ) -> Result<Self> {
        let config = json!({
            "facilitatorUrl": facilitator_url,
            "network": devnet.network(),
            "payTo": pay_to.to_string(),
            "asset": asset.to_string(),
            "amount": amount.to_string(),
            "max": max.to_string(),
        });
        let mut process =
            NodeProcess::spawn("TS metered server", &METERED_SERVER_SCRIPT, &config, false).await?;
        let port = process.wait_ready().await?;
        Ok(Self {
            process,
            url: format!("http://127.0.0.1:{port}"),
        })
    }

    /// The `exact`/Permit2 resource.
    pub fn permit2_url(&self) -> String {
        format!("{}/permit2", self.url)
    }

    /// The `upto` resource, whose handler reports `units` of usage.
    pub fn metered_url(&self, units: u128) -> String {
        format!("{}/metered?units={units}", self.url)
    }

    /// The last lines of its log (every request with its `PAYMENT-SIGNATURE` and the answer's
    /// status and `PAYMENT-RESPONSE`).
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }
}
