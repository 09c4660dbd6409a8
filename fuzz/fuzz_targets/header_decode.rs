//! Feeds arbitrary bytes to every header decoder: none may panic, and
//! anything that decodes must re-encode and decode to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paywire_core::codec;

fuzz_target!(|data: &[u8]| {
    if let Ok(payload) = codec::decode_payment_signature(data) {
        let again = codec::encode_header(&payload);
        assert_eq!(codec::decode_payment_signature(again.as_bytes()).ok(), Some(payload));
    }
    if let Ok(required) = codec::decode_payment_required(data) {
        let again = codec::encode_header(&required);
        assert_eq!(codec::decode_payment_required(again.as_bytes()).ok(), Some(required));
    }
    let _ = codec::decode_payment_response(data);
    let _ = codec::decode_header::<serde_json::Value>(data);
});
