//! A hostile EIP-3009 token (`contracts/ShortchangeToken.sol`) for settlement-truth tests
//! (field lesson 12): its `transferWithAuthorization` checks the signature, the window and
//! the nonce, marks the nonce used, emits `AuthorizationUsed` and succeeds, like Circle's
//! USDC, but pays the payee `value - shortfall`: a fee-on-transfer token when the
//! shortfall is below the value, a token that moves nothing (and emits no `Transfer`) when
//! it is not. A receipt with status 1 from it proves nothing.
//!
//! The compiled contract is committed (`contracts/ShortchangeToken.json`, solc-js
//! [`SMART_WALLET_SOLC`](crate::wallet::SMART_WALLET_SOLC)); see the crate README to
//! regenerate it.

use alloy_primitives::{Address, Bytes, U256};
use alloy_sol_types::{SolCall, SolConstructor, sol};

use crate::devnet::Devnet;
use crate::rpc::TxReceipt;
use paywire_devnet::{DevnetError, Result};

sol! {
    /// The ABI of `contracts/ShortchangeToken.sol`.
    #[allow(missing_docs)]
    interface IShortchangeToken {
        function name() external view returns (string);
        function version() external view returns (string);
        function decimals() external view returns (uint8);
        function shortfall() external view returns (uint256);
        function owner() external view returns (address);
        function balanceOf(address account) external view returns (uint256);
        function authorizationState(address authorizer, bytes32 nonce) external view returns (bool);
        function DOMAIN_SEPARATOR() external view returns (bytes32);
        /// Credits `value` to `to`; owner (the deployer) only.
        function mint(address to, uint256 value) external;
        /// Changes what later transfers keep back; owner only.
        function setShortfall(uint256 shortfall) external;
        function transferWithAuthorization(
            address from,
            address to,
            uint256 value,
            uint256 validAfter,
            uint256 validBefore,
            bytes32 nonce,
            uint8 v,
            bytes32 r,
            bytes32 s
        ) external;
        function transferWithAuthorization(
            address from,
            address to,
            uint256 value,
            uint256 validAfter,
            uint256 validBefore,
            bytes32 nonce,
            bytes signature
        ) external;

        event Transfer(address indexed from, address indexed to, uint256 value);
        event AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce);

        error NotOwner();
        error AuthorizationNotValidNow();
        error AuthorizationUsedBefore();
        error InvalidSignature();
        error InsufficientBalance();
    }

    /// The token's constructor.
    #[allow(missing_docs)]
    contract ShortchangeToken {
        constructor(string name, string version, uint256 shortfall);
    }
}

/// The committed compiler output (`contracts/ShortchangeToken.json`).
pub const SHORTCHANGE_TOKEN_JSON: &str = include_str!("../contracts/ShortchangeToken.json");
/// The Solidity source the JSON was compiled from.
pub const SHORTCHANGE_TOKEN_SOURCE: &str = include_str!("../contracts/ShortchangeToken.sol");

fn artifact_field(name: &str) -> Result<String> {
    let json: serde_json::Value = serde_json::from_str(SHORTCHANGE_TOKEN_JSON)
        .map_err(|e| DevnetError::Unexpected(format!("ShortchangeToken.json: {e}")))?;
    json.get(name)
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| {
            DevnetError::Unexpected(format!("ShortchangeToken.json: no string `{name}`"))
        })
}

/// The token's creation code (without constructor arguments), from the committed JSON.
pub fn shortchange_token_bytecode() -> Result<Bytes> {
    artifact_field("bytecode")?
        .parse()
        .map_err(|e| DevnetError::Unexpected(format!("ShortchangeToken.json bytecode: {e}")))
}

/// The `sourceKeccak256` recorded in the committed JSON.
pub fn shortchange_token_source_hash() -> Result<String> {
    artifact_field("sourceKeccak256")
}

impl Devnet {
    /// Deploys a [`ShortchangeToken`] with EIP-712 domain `name` / `version` that pays
    /// `shortfall` less than each authorized value (from dev account #0, its owner).
    pub async fn deploy_shortchange_token(
        &self,
        name: &str,
        version: &str,
        shortfall: U256,
    ) -> Result<Address> {
        let mut code = shortchange_token_bytecode()?.to_vec();
        code.extend_from_slice(
            &ShortchangeToken::constructorCall {
                name: name.to_owned(),
                version: version.to_owned(),
                shortfall,
            }
            .abi_encode(),
        );
        self.deploy(code, self.usdc_owner().address).await
    }

    /// Credits `amount` of the [`ShortchangeToken`] at `token` to `to` (sent by its owner,
    /// dev account #0).
    pub async fn mint_shortchange_token(
        &self,
        token: Address,
        to: Address,
        amount: U256,
    ) -> Result<TxReceipt> {
        let call = IShortchangeToken::mintCall { to, value: amount };
        self.transact(self.usdc_owner().address, token, call.abi_encode())
            .await
    }

    /// Sets how much less than each authorized value the [`ShortchangeToken`] at `token`
    /// pays from now on (sent by its owner, dev account #0).
    pub async fn set_shortchange_shortfall(
        &self,
        token: Address,
        shortfall: U256,
    ) -> Result<TxReceipt> {
        let call = IShortchangeToken::setShortfallCall { shortfall };
        self.transact(self.usdc_owner().address, token, call.abi_encode())
            .await
    }

    /// `balanceOf(owner)` of the token at `token` (any ERC-20).
    pub async fn token_balance(&self, token: Address, owner: Address) -> Result<U256> {
        let out = self
            .call(
                token,
                IShortchangeToken::balanceOfCall { account: owner }.abi_encode(),
            )
            .await?;
        IShortchangeToken::balanceOfCall::abi_decode_returns(&out)
            .map_err(|e| DevnetError::Unexpected(format!("balanceOf returned {out}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_artifact_matches_the_source() {
        let recorded = shortchange_token_source_hash().unwrap();
        let actual = alloy_primitives::keccak256(SHORTCHANGE_TOKEN_SOURCE.as_bytes());
        assert_eq!(
            recorded,
            actual.to_string(),
            "contracts/ShortchangeToken.json is stale; run `node crates/paywire-testkit/contracts/compile.mjs`"
        );
        assert!(
            artifact_field("solc")
                .unwrap()
                .starts_with(&format!("{}+", crate::wallet::SMART_WALLET_SOLC))
        );
        assert!(shortchange_token_bytecode().unwrap().len() > 100);
    }
}
