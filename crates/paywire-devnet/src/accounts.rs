//! anvil's ten well-known development accounts.

use std::fmt;

use alloy_primitives::{Address, B256, hex};
use alloy_signer_local::PrivateKeySigner;

use crate::error::{DevnetError, Result};

/// The mnemonic anvil derives its dev accounts from (public test mnemonic: never use it for real funds).
pub const DEV_MNEMONIC: &str = "test test test test test test test test test test test junk";

/// The private keys of anvil's dev accounts #0..#9 (derived from [`DEV_MNEMONIC`] at
/// `m/44'/60'/0'/0/i`). They are public test keys, known to everyone.
pub const DEV_PRIVATE_KEYS: [&str; 10] = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
];

/// Index of the account that owns the USDC contract and is its master minter, pauser,
/// blacklister and (configured) minter.
pub const USDC_OWNER_INDEX: usize = 0;
/// Index of the account that deployed (and administers) the USDC proxy. The proxy admin
/// cannot call token functions, so do not use it as a payer.
pub const PROXY_ADMIN_INDEX: usize = 9;
/// Indices of the accounts that start with [`crate::INITIAL_USDC_BALANCE`] USDC each.
pub const USDC_HOLDER_INDICES: std::ops::RangeInclusive<usize> = 1..=8;

/// One of anvil's dev accounts: unlocked on the node, and its key is known here.
#[derive(Clone)]
pub struct DevAccount {
    /// The position in anvil's account list (0..=9).
    pub index: usize,
    /// The account's address.
    pub address: Address,
    /// The account's secp256k1 private key.
    pub private_key: B256,
    signer: PrivateKeySigner,
}

impl DevAccount {
    /// A local signer for this account (cheap to call; returns a fresh clone).
    pub fn signer(&self) -> PrivateKeySigner {
        self.signer.clone()
    }

    /// The private key as `0x`-prefixed hex.
    pub fn private_key_hex(&self) -> String {
        hex::encode_prefixed(self.private_key)
    }
}

impl fmt::Debug for DevAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevAccount")
            .field("index", &self.index)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// Builds the ten dev accounts from [`DEV_PRIVATE_KEYS`] (no node needed).
pub fn dev_accounts() -> Result<Vec<DevAccount>> {
    DEV_PRIVATE_KEYS
        .iter()
        .enumerate()
        .map(|(index, key)| {
            let private_key: B256 = key
                .parse()
                .map_err(|e| DevnetError::Unexpected(format!("bad dev key #{index}: {e}")))?;
            let signer = PrivateKeySigner::from_bytes(&private_key)
                .map_err(|e| DevnetError::Unexpected(format!("bad dev key #{index}: {e}")))?;
            Ok(DevAccount {
                index,
                address: signer.address(),
                private_key,
                signer,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_the_well_known_addresses() {
        let accounts = dev_accounts().unwrap();
        assert_eq!(accounts.len(), 10);
        assert_eq!(
            accounts[0].address,
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
                .parse::<Address>()
                .unwrap()
        );
        assert_eq!(
            accounts[9].address,
            "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720"
                .parse::<Address>()
                .unwrap()
        );
        assert_eq!(accounts[1].signer().address(), accounts[1].address);
        assert_eq!(accounts[1].private_key_hex(), DEV_PRIVATE_KEYS[1]);
    }
}
