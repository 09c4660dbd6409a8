//! Signer recovery from 65-byte ECDSA signatures with libsecp256k1.
//!
//! Recovery is the one elliptic-curve operation on the verification paths
//! (a returning wallet's sign-in, naming why a payment was refused); the C
//! library does it in about a third of k256's time.

use std::sync::LazyLock;

use alloy_primitives::{Address, B256, keccak256};
use secp256k1::ecdsa::{RecoverableSignature, RecoveryId};
use secp256k1::{Message, Secp256k1, VerifyOnly};

static CONTEXT: LazyLock<Secp256k1<VerifyOnly>> = LazyLock::new(Secp256k1::verification_only);

/// The address whose key produced `signature` (`r ‖ s ‖ v`, 65 bytes, `v` in
/// 0, 1, 27 or 28) over `prehash`; `None` when the bytes are not such a
/// signature or no key matches.
pub fn recover_address(signature: &[u8], prehash: &B256) -> Option<Address> {
    let (rs, v) = signature.split_at_checked(64)?;
    let v = match v {
        [v @ (0 | 1)] => *v,
        [v @ (27 | 28)] => *v - 27,
        _ => return None,
    };
    let id = RecoveryId::try_from(i32::from(v)).ok()?;
    let signature = RecoverableSignature::from_compact(rs, id).ok()?;
    let key = CONTEXT
        .recover_ecdsa(Message::from_digest(prehash.0), &signature)
        .ok()?;
    let uncompressed = key.serialize_uncompressed();
    Some(Address::from_slice(&keccak256(&uncompressed[1..])[12..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::Signature;
    use alloy_signer::SignerSync;
    use alloy_signer_local::PrivateKeySigner;

    #[test]
    fn agrees_with_alloy_for_every_v_encoding() {
        for _ in 0..32 {
            let key = PrivateKeySigner::random();
            let digest = B256::random();
            let signature = key.sign_hash_sync(&digest).unwrap();
            let mut bytes = signature.as_bytes();
            assert_eq!(recover_address(&bytes, &digest), Some(key.address()));
            bytes[64] -= 27;
            assert_eq!(recover_address(&bytes, &digest), Some(key.address()));
            let alloy = Signature::from_raw(&bytes)
                .unwrap()
                .recover_address_from_prehash(&digest)
                .unwrap();
            assert_eq!(alloy, key.address());
        }
    }

    #[test]
    fn rejects_malformed_signatures() {
        let key = PrivateKeySigner::random();
        let digest = B256::random();
        let bytes = key.sign_hash_sync(&digest).unwrap().as_bytes();
        assert_eq!(recover_address(&bytes[..64], &digest), None);
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert_eq!(recover_address(&longer, &digest), None);
        let mut bad_v = bytes;
        bad_v[64] = 29;
        assert_eq!(recover_address(&bad_v, &digest), None);
        let mut zero_r = bytes;
        zero_r[..32].fill(0);
        assert_eq!(recover_address(&zero_r, &digest), None);
        let other = B256::random();
        assert_ne!(recover_address(&bytes, &other), Some(key.address()));
    }
}
