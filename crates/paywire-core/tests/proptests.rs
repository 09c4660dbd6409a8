//! Property tests for amounts, CAIP-2 ids and the header codec.

use paywire_core::codec::{self, MAX_HEADER_LEN};
use paywire_core::{AtomicAmount, ChainId, ChainIdPattern, Money, U256};
use proptest::prelude::*;

proptest! {
    #[test]
    fn amount_decimal_round_trip(limbs in any::<[u64; 4]>()) {
        let value = U256::from_limbs(limbs);
        let text = value.to_string();
        let parsed = AtomicAmount::parse(&text).unwrap();
        prop_assert_eq!(parsed.as_u256(), value);
        prop_assert_eq!(parsed.to_string(), text);
        let json = serde_json::to_string(&parsed).unwrap();
        prop_assert_eq!(serde_json::from_str::<AtomicAmount>(&json).unwrap(), parsed);
    }

    #[test]
    fn amount_accepts_only_the_canonical_spelling(text in "\\PC{1,20}|0[0-9]{0,5}") {
        let result = AtomicAmount::parse(&text);
        let canonical = text == "0"
            || (text.bytes().all(|b| b.is_ascii_digit()) && !text.starts_with('0'));
        prop_assert_eq!(result.is_ok(), canonical);
    }

    #[test]
    fn amount_rejects_signs_and_spaces(n in any::<u64>(), prefix in "[-+ \\t]|0x") {
        let text = format!("{prefix}{n}");
        prop_assert!(AtomicAmount::parse(&text).is_err());
    }

    #[test]
    fn money_scales_exactly(cents in 0u64..1_000_000_000, decimals in 2u8..=18) {
        let text = format!("${}.{:02}", cents / 100, cents % 100);
        let atomic = Money::parse(&text).unwrap().to_atomic(decimals).unwrap();
        let expected = U256::from(cents) * U256::from(10u8).pow(U256::from(decimals - 2));
        prop_assert_eq!(atomic.as_u256(), expected);
        prop_assert_eq!(
            Money::parse(&atomic.to_decimal_string(decimals)).unwrap().to_atomic(decimals).unwrap(),
            atomic
        );
    }

    #[test]
    fn valid_caip2_parses(ns in "[-a-z0-9]{3,8}", reference in "[-_a-zA-Z0-9]{1,32}") {
        let text = format!("{ns}:{reference}");
        let id = ChainId::parse(&text).unwrap();
        prop_assert_eq!(id.namespace(), ns.as_str());
        prop_assert_eq!(id.reference(), reference.as_str());
        let namespace_pattern = ChainIdPattern::parse(&format!("{ns}:*")).unwrap();
        prop_assert!(namespace_pattern.matches(&id));
    }

    #[test]
    fn invalid_caip2_rejected(ns in "[-a-z0-9]{0,2}|[-a-z0-9]{9,12}|[A-Z]{3,8}", reference in "[-_a-zA-Z0-9]{1,32}") {
        let text = format!("{ns}:{reference}");
        prop_assert!(ChainId::parse(&text).is_err());
    }

    #[test]
    fn header_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = codec::decode_payment_signature(&bytes);
        let _ = codec::decode_payment_required(&bytes);
        let _ = codec::decode_payment_response(&bytes);
    }

    #[test]
    fn header_decoder_rejects_base64_of_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        use base64::Engine;
        let header = base64::engine::general_purpose::STANDARD.encode(&bytes);
        if serde_json::from_slice::<serde_json::Value>(&bytes).is_err() {
            prop_assert!(codec::decode_payment_signature(header.as_bytes()).is_err());
        }
    }

    #[test]
    fn header_size_cap(extra in 1usize..4096) {
        let header = vec![b'A'; MAX_HEADER_LEN + extra];
        let is_too_large = matches!(
            codec::decode_payment_signature(&header),
            Err(codec::DecodeError::TooLarge { .. })
        );
        prop_assert!(is_too_large);
    }
}
