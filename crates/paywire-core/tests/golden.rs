//! Every JSON example of the specification (extracted into `tests/vectors/`)
//! parses into its type and serialises back to the same JSON value.

use std::path::PathBuf;

use paywire_core::codec;
use paywire_core::types::{
    DiscoveryResponse, FacilitatorRequest, PaymentPayload, PaymentRequired, PaymentRequirements,
    ResourceInfo, SettleResponse, SupportedResponse, VerifyResponse,
};
use paywire_core::{Extension, Extensions};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Spec examples that are themselves not valid v2 messages, with the reason.
/// They must be rejected (a lenient parser would hide real bugs).
const INVALID_IN_SPEC: &[(&str, &str)] = &[
    (
        "PaymentRequired__eip2612-gas_1.json",
        "x402Version is a string and resource is missing",
    ),
    (
        "PaymentRequired__erc20-gas_1.json",
        "x402Version is a string and resource is missing",
    ),
    (
        "PaymentRequired__siwx_1.json",
        "x402Version is a string and resource is missing",
    ),
    (
        "PaymentRequired__siwx_2.json",
        "x402Version is a string and resource is missing",
    ),
    (
        "PaymentPayload__eip2612-gas_1.json",
        "uses `accepts` instead of `accepted`",
    ),
    (
        "PaymentPayload__erc20-gas_1.json",
        "uses `accepts` instead of `accepted`",
    ),
    (
        "VerifyRequest__upto-evm_1.json",
        "abridged example with placeholders",
    ),
];

/// The crate directory as cargo gives it when the test runs: a test binary
/// reused from a checkout elsewhere (shared target directory) still reads
/// this checkout's vectors.
fn vectors_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("tests/vectors")
}

fn round_trip<T: Serialize + DeserializeOwned>(name: &str, json: &Value) -> Result<(), String> {
    let parsed: T = serde_json::from_value(json.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&parsed).map_err(|e| e.to_string())?;
    if &back != json {
        return Err(format!(
            "{name}: round trip changed the JSON\n  in:  {json}\n  out: {back}"
        ));
    }
    Ok(())
}

fn check(name: &str, json: &Value) -> Result<(), String> {
    let kind = name.split("__").next().unwrap_or_default();
    match kind {
        "PaymentRequired" => round_trip::<PaymentRequired>(name, json),
        "PaymentRequirements" => round_trip::<PaymentRequirements>(name, json),
        "PaymentPayload" => round_trip::<PaymentPayload>(name, json),
        "ResourceInfo" => round_trip::<ResourceInfo>(name, json),
        "VerifyRequest" => round_trip::<FacilitatorRequest>(name, json),
        "VerifyResponse" => round_trip::<VerifyResponse>(name, json),
        "SettleResponse" => round_trip::<SettleResponse>(name, json),
        "SupportedResponse" => round_trip::<SupportedResponse>(name, json),
        "DiscoveryResponse" => round_trip::<DiscoveryResponse>(name, json),
        "Extensions" => round_trip::<Extensions>(name, json),
        "Extension" => {
            // The typed envelope reads info and schema; the raw map keeps extra members.
            serde_json::from_value::<Extension>(json.clone()).map_err(|e| e.to_string())?;
            let mut wrapped = serde_json::Map::new();
            wrapped.insert("x".into(), json.clone());
            round_trip::<Extensions>(name, &Value::Object(wrapped))
        }
        other => Err(format!("{name}: unknown vector type {other:?}")),
    }
}

#[test]
fn spec_examples_round_trip() {
    let mut checked = 0;
    let mut failures = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(vectors_dir())
        .expect("vectors dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let json: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
        let outcome = check(&name, &json);
        match (INVALID_IN_SPEC.iter().find(|(n, _)| *n == name), outcome) {
            (None, Ok(())) | (Some(_), Err(_)) => checked += 1,
            (None, Err(e)) => failures.push(format!("{name}: {e}")),
            (Some((_, why)), Ok(())) => failures.push(format!(
                "{name} was accepted although it is invalid ({why})"
            )),
        }
    }
    assert!(failures.is_empty(), "failures:\n{}", failures.join("\n"));
    assert!(checked >= 40, "only {checked} vectors checked");
}

#[test]
fn http_header_examples_decode() {
    // The base64 examples of the HTTP transport spec decode to the same JSON
    // that the spec shows (stored beside them as `*__http_*.json`).
    let pairs = [
        (
            "PaymentRequired__http-b64_1.json",
            "PaymentRequired__http_1.json",
        ),
        (
            "PaymentPayload__http-b64_1.json",
            "PaymentPayload__http_1.json",
        ),
        (
            "SettleResponse__http-b64_1.json",
            "SettleResponse__http_1.json",
        ),
        (
            "SettleResponse__http-b64_2.json",
            "SettleResponse__http_2.json",
        ),
    ];
    for (decoded, shown) in pairs {
        let read = |n: &str| -> Value {
            serde_json::from_str(&std::fs::read_to_string(vectors_dir().join(n)).unwrap()).unwrap()
        };
        assert_eq!(read(decoded), read(shown), "{decoded} vs {shown}");
    }
    // And our encoder round-trips through the decoder for the same objects.
    let payload: PaymentPayload = serde_json::from_value(
        serde_json::from_str(
            &std::fs::read_to_string(vectors_dir().join("PaymentPayload__http_1.json")).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let header = codec::encode_header(&payload);
    assert_eq!(
        codec::decode_payment_signature(header.as_bytes()).unwrap(),
        payload
    );
}

#[test]
fn spec_base64_header_is_byte_compatible() {
    // The spec's PAYMENT-RESPONSE example, produced by the reference SDK.
    const SPEC_HEADER: &str = "eyJzdWNjZXNzIjp0cnVlLCJ0cmFuc2FjdGlvbiI6IjB4MTIzNDU2Nzg5MGFiY2RlZjEyMzQ1Njc4OTBhYmNkZWYxMjM0NTY3ODkwYWJjZGVmMTIzNDU2Nzg5MGFiY2RlZiIsIm5ldHdvcmsiOiJlaXAxNTU6ODQ1MzIiLCJwYXllciI6IjB4ODU3YjA2NTE5RTkxZTNBNTQ1Mzg3OTFiRGJiMEUyMjM3M2UzNmI2NiJ9";
    let decoded = codec::decode_payment_response(SPEC_HEADER.as_bytes()).unwrap();
    assert!(decoded.success);
    assert_eq!(decoded.network.as_str(), "eip155:84532");
}

#[test]
fn every_generic_spec_error_reason_is_known() {
    // Chain-specific codes (`invalid_exact_evm_…`, Permit2's, Solana smart
    // wallets') belong to their plugins, which test them; every other code
    // of the specification is generic.
    let list = std::fs::read_to_string(vectors_dir().join("error-reasons.txt")).unwrap();
    for line in list.lines().filter(|l| !l.trim().is_empty()) {
        let code = line.split('\t').next().unwrap();
        let reason = paywire_core::ErrorReason::from_wire(code);
        assert_eq!(reason.as_str(), code, "round-trips verbatim");
        let chain_specific = code.contains("_evm_")
            || code.contains("_svm_")
            || code.starts_with("PERMIT2_")
            || code.starts_with("smart_wallet_");
        assert!(
            chain_specific || reason.is_generic(),
            "generic spec code {code} is not a core constant"
        );
    }
}
