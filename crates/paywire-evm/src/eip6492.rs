//! EIP-6492: signatures of smart wallets that are not deployed yet.
//!
//! A wrapped signature is `abi.encode(factory, factoryCalldata, innerSignature)`
//! followed by a 32-byte magic suffix. It is validated with a "deployless"
//! `eth_call` of our own validator contract (`contracts/Eip6492Validator.sol`),
//! which deploys the wallet inside the call, asks it by EIP-1271, and returns
//! one byte: `0x01` valid, `0x00` invalid.

use std::sync::LazyLock;

use alloy_primitives::{Address, B256, Bytes, hex};
use alloy_sol_types::SolValue;

/// The 32-byte suffix marking an EIP-6492 signature.
pub const MAGIC_SUFFIX: [u8; 32] = [
    0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92,
    0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92,
];

/// The parts of an EIP-6492 signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counterfactual {
    /// Factory that deploys the wallet.
    pub factory: Address,
    /// Calldata of the deployment call.
    pub factory_calldata: Bytes,
    /// The signature the deployed wallet validates by EIP-1271.
    pub inner_signature: Bytes,
}

/// Whether `signature` carries the EIP-6492 suffix.
pub fn is_wrapped(signature: &[u8]) -> bool {
    signature.len() > 32 && signature[signature.len() - 32..] == MAGIC_SUFFIX
}

/// Splits a wrapped signature; `None` if it is not one or is malformed.
pub fn unwrap(signature: &[u8]) -> Option<Counterfactual> {
    if !is_wrapped(signature) {
        return None;
    }
    let body = &signature[..signature.len() - 32];
    let (factory, factory_calldata, inner_signature) =
        <(Address, Bytes, Bytes)>::abi_decode_params(body).ok()?;
    Some(Counterfactual {
        factory,
        factory_calldata,
        inner_signature,
    })
}

/// Wraps an inner signature for a wallet that `factory` deploys.
pub fn wrap(factory: Address, factory_calldata: Bytes, inner_signature: Bytes) -> Bytes {
    let mut out = (factory, factory_calldata, inner_signature).abi_encode_params();
    out.extend_from_slice(&MAGIC_SUFFIX);
    out.into()
}

static VALIDATOR_BYTECODE: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let artifact: serde_json::Value =
        serde_json::from_str(include_str!("../contracts/Eip6492Validator.json"))
            .unwrap_or_default();
    artifact["bytecode"]
        .as_str()
        .and_then(|code| hex::decode(code).ok())
        .unwrap_or_default()
});

/// Data of the deployless validation `eth_call` (no `to`): validator creation
/// code followed by its constructor arguments.
pub fn validation_calldata(signer: Address, hash: B256, signature: &[u8]) -> Vec<u8> {
    let mut data = VALIDATOR_BYTECODE.clone();
    data.extend_from_slice(&(signer, hash, Bytes::copy_from_slice(signature)).abi_encode_params());
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_and_unwrap() {
        let wrapped = wrap(
            Address::repeat_byte(7),
            vec![1, 2, 3].into(),
            vec![9; 65].into(),
        );
        assert!(is_wrapped(&wrapped));
        let parts = unwrap(&wrapped).unwrap();
        assert_eq!(parts.factory, Address::repeat_byte(7));
        assert_eq!(parts.factory_calldata.as_ref(), &[1, 2, 3]);
        assert_eq!(parts.inner_signature.len(), 65);
        assert!(unwrap(&[0u8; 65]).is_none());
        let mut broken = vec![0xff; 10];
        broken.extend_from_slice(&MAGIC_SUFFIX);
        assert!(is_wrapped(&broken) && unwrap(&broken).is_none());
    }

    #[test]
    fn validator_bytecode_is_embedded() {
        assert!(VALIDATOR_BYTECODE.len() > 100);
    }
}
