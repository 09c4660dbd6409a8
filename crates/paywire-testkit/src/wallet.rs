//! A minimal EIP-1271 smart-contract wallet (`contracts/SmartWallet.sol`), so tests can
//! pay USDC from a contract: FiatTokenV2_2's `transferWithAuthorization(..., bytes
//! signature)` asks the wallet's `isValidSignature(digest, signature)`, and this wallet
//! answers yes for a 65-byte signature by its owner key over the digest itself.
//!
//! The compiled contract is committed (`contracts/SmartWallet.json`, solc-js
//! [`SMART_WALLET_SOLC`]), so tests never need solc; see the crate README to regenerate it.

use alloy_primitives::{Address, Bytes, FixedBytes};
use alloy_sol_types::{SolConstructor, sol};

use crate::devnet::Devnet;
use paywire_devnet::{DevnetError, Result};

sol! {
    /// The ABI of `contracts/SmartWallet.sol`.
    #[allow(missing_docs)]
    interface ISmartWallet {
        /// EIP-1271: `0x1626ba7e` iff `signature` is the owner's 65-byte (r, s, v)
        /// signature over `hash` (low `s`, `v` 27/28); `0xffffffff` otherwise.
        function isValidSignature(bytes32 hash, bytes signature) external view returns (bytes4);
        /// The wallet's owner key (immutable).
        function owner() external view returns (address);
        /// Calls `to` as the wallet; owner only.
        function execute(address to, uint256 value, bytes data) external payable returns (bytes);

        error NotOwner();
        error ZeroOwner();
    }

    /// The wallet's constructor.
    #[allow(missing_docs)]
    contract SmartWallet {
        constructor(address owner);
    }
}

/// EIP-1271's magic value, `bytes4(keccak256("isValidSignature(bytes32,bytes)"))`.
pub const EIP1271_MAGIC_VALUE: FixedBytes<4> = FixedBytes([0x16, 0x26, 0xba, 0x7e]);

/// The committed compiler output (`contracts/SmartWallet.json`).
pub const SMART_WALLET_JSON: &str = include_str!("../contracts/SmartWallet.json");
/// The Solidity source the JSON was compiled from.
pub const SMART_WALLET_SOURCE: &str = include_str!("../contracts/SmartWallet.sol");
/// The solc-js version that compiled [`SMART_WALLET_JSON`] (its `solc` member starts with it).
pub const SMART_WALLET_SOLC: &str = "0.8.26";

fn artifact_field(name: &str) -> Result<String> {
    let json: serde_json::Value = serde_json::from_str(SMART_WALLET_JSON)
        .map_err(|e| DevnetError::Unexpected(format!("SmartWallet.json: {e}")))?;
    json.get(name)
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| DevnetError::Unexpected(format!("SmartWallet.json: no string `{name}`")))
}

/// The wallet's creation code (without constructor arguments), from the committed JSON.
pub fn smart_wallet_bytecode() -> Result<Bytes> {
    artifact_field("bytecode")?
        .parse()
        .map_err(|e| DevnetError::Unexpected(format!("SmartWallet.json bytecode: {e}")))
}

/// The `sourceKeccak256` recorded in the committed JSON (the keccak-256 of the source it was
/// compiled from; compare with `keccak256(SMART_WALLET_SOURCE)` to spot a stale artifact).
pub fn smart_wallet_source_hash() -> Result<String> {
    artifact_field("sourceKeccak256")
}

/// The wallet's creation code with `owner` ABI-encoded as the constructor argument.
pub fn smart_wallet_init_code(owner: Address) -> Result<Vec<u8>> {
    let mut code = smart_wallet_bytecode()?.to_vec();
    code.extend_from_slice(&SmartWallet::constructorCall { owner }.abi_encode());
    Ok(code)
}

impl Devnet {
    /// Deploys a [`SmartWallet`] whose signatures are those of `owner`'s key; returns its
    /// address. Sent from dev account #0 (unlocked); the wallet gets no ETH or USDC (use
    /// [`paywire_devnet::Devnet::mint_usdc`] / [`paywire_devnet::Devnet::set_eth_balance`]).
    pub async fn deploy_smart_wallet(&self, owner: Address) -> Result<Address> {
        let code = smart_wallet_init_code(owner)?;
        self.deploy(code, self.usdc_owner().address).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_artifact_matches_the_source() {
        let recorded = smart_wallet_source_hash().unwrap();
        let actual = alloy_primitives::keccak256(SMART_WALLET_SOURCE.as_bytes());
        assert_eq!(
            recorded,
            actual.to_string(),
            "contracts/SmartWallet.json is stale; run `node crates/paywire-testkit/contracts/compile.mjs`"
        );
        assert!(
            artifact_field("solc")
                .unwrap()
                .starts_with(&format!("{SMART_WALLET_SOLC}+"))
        );
        assert!(smart_wallet_bytecode().unwrap().len() > 100);
    }

    #[test]
    fn magic_value_is_the_selector() {
        use alloy_sol_types::SolCall;
        assert_eq!(
            ISmartWallet::isValidSignatureCall::SELECTOR,
            EIP1271_MAGIC_VALUE.0
        );
    }
}
