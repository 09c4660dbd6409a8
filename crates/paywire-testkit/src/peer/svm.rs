//! The official TypeScript client paying on Solana (`@x402/svm` 2.27.0 `exact` client with
//! `@x402/fetch`), for the test "the official client pays our server through our facilitator".
//! It needs no anvil devnet: only a Solana JSON-RPC URL (the test chain's) and the resource URL.

use std::fs;

use serde::Deserialize;
use serde_json::json;

use super::{CLIENT_TIMEOUT, NodeProcess, Result, Script, TsFetchResponse, tail};

const SVM_CLIENT_SCRIPT: Script = Script {
    name: "svm-client",
    source: include_str!("../../peer/svm-client.mjs"),
};

/// The Solana networks (CAIP-2) the official client can pay on: `@x402/svm` 2.27.0 builds its
/// RPC client through `normalizeNetwork`, which refuses every other id, so a test chain must
/// announce one of these (devnet is the natural choice).
pub const TS_SVM_NETWORKS: [&str; 3] = [
    "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp",
    "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1",
    "solana:4uhcVJyU9pJkvQyS88uRDiswHXSCkY3z",
];

/// What [`ts_svm_client_fetch`] got back.
#[derive(Clone, Debug)]
pub struct TsSvmFetchResponse {
    /// The final response, as for the EVM client.
    pub response: TsFetchResponse,
    /// The payer's address (base58), as the SDK derived it from the secret key.
    pub client_address: String,
    /// Every `PAYMENT-SIGNATURE` header value the client sent, in order (empty if it never paid).
    pub payment_signature_headers: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SvmExtras {
    client_address: String,
    #[serde(default)]
    payment_signature_headers: Vec<String>,
}

/// One request to `url` with the official TS client paying on Solana:
/// `wrapFetchWithPayment(fetch, x402Client.fromConfig({schemes: [{network, client: new
/// ExactSvmScheme(signer, {rpcUrl})}], spendControls: false}))`.
///
/// `secret_key` is the payer's ed25519 key: 64 hex chars (a 32-byte seed), base58 of a 32-byte
/// seed or of a 64-byte keypair (seed ‖ public key), or a JSON array of 64 bytes (a
/// `solana-keygen` file). `rpc_url` is the Solana JSON-RPC the client reads the mint
/// (`getAccountInfo`, base64) and the latest blockhash (`getLatestBlockhash`) from. `network`
/// must be one of [`TS_SVM_NETWORKS`]. Spend controls are off, so the test chain's mint need
/// not be one of the SDK's default assets. Takes about 1 s (Node start-up). A thrown client
/// error (including a refused network or key) is an `Err` with the client's log.
pub async fn ts_svm_client_fetch(
    secret_key: &str,
    rpc_url: &str,
    network: &str,
    url: &str,
) -> Result<TsSvmFetchResponse> {
    let config = json!({
        "url": url,
        "secretKey": secret_key,
        "rpcUrl": rpc_url,
        "network": network,
        "method": "GET",
    });
    let mut process =
        NodeProcess::spawn("TS Solana client", &SVM_CLIENT_SCRIPT, &config, true).await?;
    let status = process.wait_exit(CLIENT_TIMEOUT).await?;
    let out_path = process.dir.join(format!("{}.out", SVM_CLIENT_SCRIPT.name));
    let out = fs::read_to_string(&out_path).unwrap_or_default();
    if !status.success() {
        return Err(process.error(format!("failed ({status}); stdout: {}", tail(&out, 5))));
    }
    let Some(line) = out.lines().rev().find(|l| l.starts_with('{')) else {
        return Err(process.error(format!("printed no JSON result; stdout: {}", tail(&out, 5))));
    };
    let parsed = serde_json::from_str::<TsFetchResponse>(line)
        .and_then(|response| Ok((response, serde_json::from_str::<SvmExtras>(line)?)));
    let (mut response, extras) =
        parsed.map_err(|e| process.error(format!("printed a malformed result ({e}): {line}")))?;
    response.log = process.log_text();
    Ok(TsSvmFetchResponse {
        response,
        client_address: extras.client_address,
        payment_signature_headers: extras.payment_signature_headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_uses_an_explicit_rpc_url_and_the_known_networks_match_the_facts() {
        // registerExactSvmScheme would silently use the public cluster URL; the peer must not.
        assert!(
            SVM_CLIENT_SCRIPT
                .source
                .contains("new ExactSvmScheme(signer, { rpcUrl: config.rpcUrl })")
        );
        assert!(!SVM_CLIENT_SCRIPT.source.contains("registerExactSvmScheme("));
        let facts = include_str!("../../../../tests/svm-interop/FACTS.md");
        for network in TS_SVM_NETWORKS {
            assert!(facts.contains(network), "{network} missing from FACTS.md");
        }
    }
}
