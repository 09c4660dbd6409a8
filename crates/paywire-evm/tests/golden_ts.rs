//! Golden vectors produced by the official TypeScript SDK (`@x402/evm`,
//! viem): our EIP-712 digests, signatures and complete payment headers are
//! identical, byte for byte. See `tests/vectors/README.md` to regenerate.

use std::sync::Arc;

use alloy_primitives::{Address, B256};
use paywire_core::{PaymentPayload, PaymentRequired, codec};
use paywire_evm::LocalSigner;
use paywire_evm::exact::{Authorization, ExactEvmClient, eip712_domain, signing_hash};
use serde_json::Value;

fn vector(name: &str) -> Value {
    // The directory cargo gives at run time: a binary reused from another
    // checkout (shared target directory) still reads this checkout's files.
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    let path = format!("{crate_dir}/tests/vectors/{name}");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing"))
}

#[test]
fn eip712_digests_and_signatures_match_viem() {
    let cases = vector("eip3009.json");
    let cases = cases.as_array().unwrap();
    assert!(cases.len() >= 5);
    for case in cases {
        let inputs = &case["inputs"];
        let authorization = Authorization {
            from: text(inputs, "from").parse().unwrap(),
            to: text(inputs, "to").parse().unwrap(),
            value: text(inputs, "value").parse().unwrap(),
            valid_after: text(inputs, "validAfter").parse().unwrap(),
            valid_before: text(inputs, "validBefore").parse().unwrap(),
            nonce: text(inputs, "nonce").parse().unwrap(),
        };
        let domain = eip712_domain(
            text(inputs, "name"),
            text(inputs, "version"),
            text(inputs, "chainId").parse().unwrap(),
            text(inputs, "verifyingContract")
                .parse::<Address>()
                .unwrap(),
        );
        assert_eq!(
            domain.separator().to_string(),
            text(case, "domainSeparator"),
            "{}",
            text(case, "id")
        );
        let digest = signing_hash(&authorization, &domain);
        assert_eq!(
            digest.to_string(),
            text(case, "digest"),
            "{}",
            text(case, "id")
        );
        let signer = LocalSigner::from_hex(text(inputs, "privateKey")).unwrap();
        assert_eq!(signer.address(), authorization.from);
        let signature = signer.sign_hash_sync(&digest).unwrap();
        assert_eq!(
            alloy_primitives::hex::encode_prefixed(signature.as_bytes()),
            text(case, "signature"),
            "{}",
            text(case, "id")
        );
    }
}

#[tokio::test]
async fn payment_header_is_byte_identical_to_the_typescript_client() {
    let golden = vector("payload-exact-evm.json");
    let injected = &golden["injected"];
    let now = injected["dateNowMs"].as_u64().unwrap() / 1000;
    let nonce: B256 = text(injected, "getRandomValues").parse().unwrap();
    let required: PaymentRequired =
        serde_json::from_value(golden["paymentRequired"].clone()).unwrap();
    // Our serialisation of the TS server's PaymentRequired is byte-identical.
    assert_eq!(
        serde_json::to_string(&required).unwrap(),
        text(&golden, "paymentRequiredJson")
    );
    assert_eq!(
        codec::encode_header(&required),
        text(&golden, "paymentRequiredHeader")
    );

    let signer = LocalSigner::from_hex(text(injected, "payerPrivateKey")).unwrap();
    let client = ExactEvmClient::new(signer)
        .with_clock(Arc::new(move || now))
        .with_nonce_source(Arc::new(move || nonce));
    let requirements = required.accepts[0].clone();
    let exact = client.sign(&requirements).await.unwrap();
    let payload = PaymentPayload {
        x402_version: 2,
        payload: exact.to_json(),
        extensions: None,
        resource: Some(required.resource.clone()),
        accepted: requirements,
    };
    assert_eq!(
        serde_json::to_string(&payload).unwrap(),
        text(&golden, "paymentPayloadJson")
    );
    assert_eq!(
        codec::encode_header(&payload),
        text(&golden, "paymentSignatureHeader")
    );
}
