//! A CREATE2 factory for the [`SmartWallet`](crate::SmartWallet) fixture
//! (`contracts/WalletFactory.sol`) and EIP-6492 helpers, so tests can sign for a
//! counterfactual (not yet deployed) wallet: predict its address, sign with its owner's key,
//! and wrap the signature with the factory call that would deploy it.
//!
//! The compiled factory is committed (`contracts/WalletFactory.json`, solc-js
//! [`SMART_WALLET_SOLC`](crate::wallet::SMART_WALLET_SOLC)); see the crate README to
//! regenerate it.

use alloy_primitives::{Address, B256, Bytes};
use alloy_sol_types::{SolCall, SolValue, sol};
use serde_json::json;

use crate::devnet::Devnet;
use crate::wallet::smart_wallet_init_code;
use paywire_devnet::{DevnetError, Result};

sol! {
    /// The ABI of `contracts/WalletFactory.sol`.
    #[allow(missing_docs)]
    interface IWalletFactory {
        /// Deploys the wallet of `owner` and `salt` with CREATE2 unless it exists; returns
        /// its address either way (idempotent).
        function deploy(address owner, bytes32 salt) external returns (address wallet);
        /// The CREATE2 address of the wallet of `owner` and `salt`.
        function predict(address owner, bytes32 salt) external view returns (address);

        event WalletDeployed(address indexed wallet, address indexed owner, bytes32 salt);
    }
}

/// The 32-byte suffix of an EIP-6492 signature (`0x6492` repeated).
pub const EIP6492_MAGIC_SUFFIX: [u8; 32] = [
    0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92,
    0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92,
];

/// The committed compiler output (`contracts/WalletFactory.json`).
pub const WALLET_FACTORY_JSON: &str = include_str!("../contracts/WalletFactory.json");
/// The Solidity source the JSON was compiled from (it imports `SmartWallet.sol`).
pub const WALLET_FACTORY_SOURCE: &str = include_str!("../contracts/WalletFactory.sol");

fn artifact(json: &'static str, name: &str) -> Result<serde_json::Value> {
    serde_json::from_str(json).map_err(|e| DevnetError::Unexpected(format!("{name}: {e}")))
}

/// The factory's creation code (it has no constructor arguments), from the committed JSON.
pub fn wallet_factory_bytecode() -> Result<Bytes> {
    artifact(WALLET_FACTORY_JSON, "WalletFactory.json")?["bytecode"]
        .as_str()
        .ok_or_else(|| DevnetError::Unexpected("WalletFactory.json: no `bytecode`".into()))?
        .parse()
        .map_err(|e| DevnetError::Unexpected(format!("WalletFactory.json bytecode: {e}")))
}

/// The `sourceKeccak256` recorded in the committed JSON, and the recorded hash of the
/// imported `SmartWallet.sol` (whose creation code the factory embeds).
pub fn wallet_factory_source_hashes() -> Result<(String, String)> {
    let json = artifact(WALLET_FACTORY_JSON, "WalletFactory.json")?;
    let get = |value: &serde_json::Value| {
        value.as_str().map(str::to_owned).ok_or_else(|| {
            DevnetError::Unexpected("WalletFactory.json: missing source hash".into())
        })
    };
    Ok((
        get(&json["sourceKeccak256"])?,
        get(&json["importedSourcesKeccak256"]["SmartWallet.sol"])?,
    ))
}

/// Calldata of the factory's `deploy(owner, salt)` (the `factoryCalldata` of an EIP-6492
/// signature).
pub fn deploy_calldata(owner: Address, salt: B256) -> Bytes {
    IWalletFactory::deployCall { owner, salt }
        .abi_encode()
        .into()
}

/// The address `factory` deploys the wallet of `owner` and `salt` at, computed locally
/// (CREATE2 over SmartWallet's committed creation code); equals [`Devnet::predict_wallet`].
pub fn predict_wallet_address(factory: Address, owner: Address, salt: B256) -> Result<Address> {
    Ok(factory.create2_from_code(salt, smart_wallet_init_code(owner)?))
}

/// An EIP-6492 signature: `abi.encode(factory, factory_calldata, inner)` followed by
/// [`EIP6492_MAGIC_SUFFIX`].
pub fn wrap_eip6492(factory: Address, factory_calldata: Bytes, inner: Bytes) -> Bytes {
    let mut out = (factory, factory_calldata, inner).abi_encode_params();
    out.extend_from_slice(&EIP6492_MAGIC_SUFFIX);
    out.into()
}

impl Devnet {
    /// Deploys a `WalletFactory` (from dev account #0); returns its address.
    pub async fn deploy_wallet_factory(&self) -> Result<Address> {
        let code = wallet_factory_bytecode()?;
        self.deploy(code, self.usdc_owner().address).await
    }

    /// The factory's `predict(owner, salt)` (an `eth_call`): where `deploy(owner, salt)`
    /// puts the wallet.
    pub async fn predict_wallet(
        &self,
        factory: Address,
        owner: Address,
        salt: B256,
    ) -> Result<Address> {
        let out = self
            .call(
                factory,
                IWalletFactory::predictCall { owner, salt }.abi_encode(),
            )
            .await?;
        IWalletFactory::predictCall::abi_decode_returns(&out)
            .map_err(|e| DevnetError::Unexpected(format!("predict returned {out}: {e}")))
    }

    /// Sends the factory's `deploy(owner, salt)` from dev account #0; returns the wallet's
    /// address (idempotent, like the contract).
    pub async fn deploy_wallet(
        &self,
        factory: Address,
        owner: Address,
        salt: B256,
    ) -> Result<Address> {
        self.transact(
            self.usdc_owner().address,
            factory,
            deploy_calldata(owner, salt),
        )
        .await?;
        self.predict_wallet(factory, owner, salt).await
    }

    /// `eth_getCode(address, "latest")`.
    pub async fn code_at(&self, address: Address) -> Result<Bytes> {
        let value = self.rpc("eth_getCode", json!([address, "latest"])).await?;
        serde_json::from_value(value)
            .map_err(|e| DevnetError::Unexpected(format!("eth_getCode: {e}")))
    }

    /// A "deployless" `eth_call` at the latest block: no `to`, `data` is creation code (plus
    /// constructor arguments); returns what the constructor returns.
    pub async fn call_deployless(&self, data: impl AsRef<[u8]>) -> Result<Bytes> {
        let data = Bytes::copy_from_slice(data.as_ref());
        let value = self
            .rpc("eth_call", json!([{ "data": data }, "latest"]))
            .await?;
        serde_json::from_value(value).map_err(|e| DevnetError::Unexpected(format!("eth_call: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wallet::SMART_WALLET_SOURCE;

    #[test]
    fn committed_artifact_matches_the_sources() {
        let (factory, wallet) = wallet_factory_source_hashes().unwrap();
        let stale = "contracts/WalletFactory.json is stale; run `node crates/paywire-testkit/contracts/compile.mjs`";
        assert_eq!(
            factory,
            alloy_primitives::keccak256(WALLET_FACTORY_SOURCE.as_bytes()).to_string(),
            "{stale}"
        );
        assert_eq!(
            wallet,
            alloy_primitives::keccak256(SMART_WALLET_SOURCE.as_bytes()).to_string(),
            "{stale}"
        );
        assert!(wallet_factory_bytecode().unwrap().len() > 100);
    }

    #[test]
    fn wrapped_signature_layout() {
        let wrapped = wrap_eip6492(
            Address::repeat_byte(7),
            vec![1, 2, 3].into(),
            vec![9; 65].into(),
        );
        assert!(wrapped.ends_with(&EIP6492_MAGIC_SUFFIX));
        let body = &wrapped[..wrapped.len() - 32];
        let (factory, calldata, inner) =
            <(Address, Bytes, Bytes)>::abi_decode_params(body).unwrap();
        assert_eq!(factory, Address::repeat_byte(7));
        assert_eq!(calldata.as_ref(), &[1, 2, 3]);
        assert_eq!(inner.len(), 65);
        // Head: address, two offsets; then length-prefixed, 32-byte padded tails.
        assert_eq!(body.len(), 3 * 32 + (32 + 32) + (32 + 96));
    }
}
