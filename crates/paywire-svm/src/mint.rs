//! Mint inspection: decimals and token program of a mint account, and the
//! Token-2022 extensions that would let a mint change what the recipient
//! receives, or block or claw it back.
//!
//! Layout relied on (SPL Token and Token-2022 share the base): a mint is 82
//! bytes (`mint_authority` COption 36, `supply` u64, `decimals` u8 at offset
//! 44, `is_initialized` u8 at 45, `freeze_authority` COption 36). A
//! Token-2022 mint with extensions is padded to 165 bytes, then one account
//! type byte (1 = mint), then TLV entries: type `u16` LE, length `u16` LE,
//! value. Extension type numbers are Token-2022's `ExtensionType` order.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use solana_address::Address;

use crate::tx::{TOKEN_2022_PROGRAM, TOKEN_PROGRAM};

const MINT_LEN: usize = 82;
const DECIMALS_OFFSET: usize = 44;
const INITIALIZED_OFFSET: usize = 45;
/// Where the account type byte of an extended Token-2022 account sits.
const ACCOUNT_TYPE_OFFSET: usize = 165;
const ACCOUNT_TYPE_MINT: u8 = 1;

/// Token-2022 mint extensions by number and configuration name, with
/// whether they are harmless to a payment (`true`) or refused unless the
/// operator allows them.
///
/// Harmless: close authority (the mint can only be closed at zero supply),
/// metadata and group pointers and data, and the two UI-amount extensions
/// (interest-bearing, scaled UI amount) which change how an amount is
/// displayed, never the atomic amount moved.
const EXTENSIONS: &[(u16, &str, bool)] = &[
    (1, "transfer_fee_config", false),
    (3, "mint_close_authority", true),
    (4, "confidential_transfer_mint", false),
    (6, "default_account_state", false),
    (9, "non_transferable", false),
    (10, "interest_bearing_config", true),
    (12, "permanent_delegate", false),
    (14, "transfer_hook", false),
    (16, "confidential_transfer_fee_config", false),
    (18, "metadata_pointer", true),
    (19, "token_metadata", true),
    (20, "group_pointer", true),
    (21, "token_group", true),
    (22, "group_member_pointer", true),
    (23, "token_group_member", true),
    (24, "confidential_mint_burn", false),
    (25, "scaled_ui_amount", true),
    (26, "pausable", false),
];

/// The configuration name of extension `number`, if it is a mint extension.
pub fn extension_name(number: u16) -> Option<&'static str> {
    EXTENSIONS
        .iter()
        .find(|(n, _, _)| *n == number)
        .map(|(_, name, _)| *name)
}

/// Whether `name` is a mint extension this crate knows.
pub fn is_known_extension(name: &str) -> bool {
    EXTENSIONS.iter().any(|(_, known, _)| *known == name)
}

/// What a payment needs to know about a mint.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MintFacts {
    /// Token or Token-2022.
    pub token_program: Address,
    /// Its decimals.
    pub decimals: u8,
    /// The Token-2022 extensions present, by number.
    pub extensions: Vec<u16>,
}

/// Why a mint is not usable for payments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MintError {
    /// The account is not owned by a token program.
    #[error("the asset is not a token mint")]
    NotAMint,
    /// The data is not a (complete, initialized) mint.
    #[error("the mint account is malformed")]
    Malformed,
    /// An extension the facilitator does not accept.
    #[error("the mint has the extension {0}, which this facilitator does not accept")]
    Refused(String),
}

/// Reads a mint account owned by `owner` (base58) with `data`.
pub fn parse_mint(owner: &Address, data: &[u8]) -> Result<MintFacts, MintError> {
    if *owner != TOKEN_PROGRAM && *owner != TOKEN_2022_PROGRAM {
        return Err(MintError::NotAMint);
    }
    if data.len() < MINT_LEN || data[INITIALIZED_OFFSET] != 1 {
        return Err(MintError::Malformed);
    }
    let extensions = if data.len() == MINT_LEN {
        Vec::new()
    } else if *owner == TOKEN_2022_PROGRAM {
        parse_extensions(data)?
    } else {
        return Err(MintError::Malformed);
    };
    Ok(MintFacts {
        token_program: *owner,
        decimals: data[DECIMALS_OFFSET],
        extensions,
    })
}

/// The extension numbers of an extended Token-2022 mint.
fn parse_extensions(data: &[u8]) -> Result<Vec<u16>, MintError> {
    if data.len() <= ACCOUNT_TYPE_OFFSET
        || data[MINT_LEN..ACCOUNT_TYPE_OFFSET].iter().any(|b| *b != 0)
        || data[ACCOUNT_TYPE_OFFSET] != ACCOUNT_TYPE_MINT
    {
        return Err(MintError::Malformed);
    }
    let mut rest = &data[ACCOUNT_TYPE_OFFSET + 1..];
    let mut found = Vec::new();
    while rest.len() >= 4 {
        let kind = u16::from_le_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_le_bytes([rest[2], rest[3]]));
        if kind == 0 {
            // Uninitialized space: the TLV list ends here.
            break;
        }
        let value_end = 4 + len;
        if rest.len() < value_end {
            return Err(MintError::Malformed);
        }
        found.push(kind);
        rest = &rest[value_end..];
    }
    Ok(found)
}

impl MintFacts {
    /// `Ok` when every extension is harmless or in `allowed` (configuration
    /// names); unknown extension numbers are refused.
    pub fn check_extensions(&self, allowed: &[String]) -> Result<(), MintError> {
        for number in &self.extensions {
            let known = EXTENSIONS.iter().find(|(n, _, _)| n == number);
            match known {
                Some((_, _, true)) => {}
                Some((_, name, false)) if allowed.iter().any(|a| a == name) => {}
                Some((_, name, false)) => return Err(MintError::Refused((*name).to_owned())),
                None => return Err(MintError::Refused(format!("#{number}"))),
            }
        }
        Ok(())
    }
}

/// How long mint facts are reused (they change only by a rare authority
/// action, such as adding a transfer fee, which takes effect at the next
/// epoch anyway).
pub const MINT_CACHE_TTL: Duration = Duration::from_secs(60);
/// How many mints the cache holds before it starts over.
const MINT_CACHE_CAPACITY: usize = 1024;

/// A bounded cache of mint facts, with a short time to live.
#[derive(Debug, Default)]
pub struct MintCache {
    entries: Mutex<HashMap<Address, (MintFacts, Instant)>>,
}

impl MintCache {
    /// The cached facts of `mint`, if fresh.
    pub fn get(&self, mint: &Address) -> Option<MintFacts> {
        let entries = self.entries.lock().ok()?;
        let (facts, at) = entries.get(mint)?;
        (at.elapsed() < MINT_CACHE_TTL).then(|| facts.clone())
    }

    /// Remembers `facts` for `mint`.
    pub fn put(&self, mint: Address, facts: MintFacts) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MINT_CACHE_CAPACITY {
                entries.retain(|_, (_, at)| at.elapsed() < MINT_CACHE_TTL);
                if entries.len() >= MINT_CACHE_CAPACITY {
                    entries.clear();
                }
            }
            entries.insert(mint, (facts, Instant::now()));
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An initialized mint with `decimals` and the TLV `extensions`.
    pub(crate) fn mint_data(decimals: u8, extensions: &[(u16, usize)]) -> Vec<u8> {
        let mut data = vec![0u8; MINT_LEN];
        data[DECIMALS_OFFSET] = decimals;
        data[INITIALIZED_OFFSET] = 1;
        if !extensions.is_empty() {
            data.resize(ACCOUNT_TYPE_OFFSET, 0);
            data.push(ACCOUNT_TYPE_MINT);
            for (kind, len) in extensions {
                data.extend_from_slice(&kind.to_le_bytes());
                data.extend_from_slice(&u16::try_from(*len).unwrap().to_le_bytes());
                data.extend(std::iter::repeat_n(7u8, *len));
            }
        }
        data
    }

    #[test]
    fn plain_mints_read_their_decimals() {
        let facts = parse_mint(&TOKEN_PROGRAM, &mint_data(6, &[])).unwrap();
        assert_eq!(facts.decimals, 6);
        assert!(facts.check_extensions(&[]).is_ok());
        assert_eq!(
            parse_mint(&Address::new_from_array([1; 32]), &mint_data(6, &[])),
            Err(MintError::NotAMint)
        );
        let mut uninitialized = mint_data(6, &[]);
        uninitialized[INITIALIZED_OFFSET] = 0;
        assert_eq!(
            parse_mint(&TOKEN_PROGRAM, &uninitialized),
            Err(MintError::Malformed)
        );
    }

    #[test]
    fn token_2022_extensions_are_refused_unless_harmless_or_allowed() {
        let metadata = mint_data(6, &[(18, 64), (19, 100)]);
        let facts = parse_mint(&TOKEN_2022_PROGRAM, &metadata).unwrap();
        assert_eq!(facts.extensions, [18, 19]);
        assert!(facts.check_extensions(&[]).is_ok());
        let fee = mint_data(6, &[(18, 64), (1, 108)]);
        let facts = parse_mint(&TOKEN_2022_PROGRAM, &fee).unwrap();
        assert_eq!(
            facts.check_extensions(&[]),
            Err(MintError::Refused("transfer_fee_config".into()))
        );
        assert!(
            facts
                .check_extensions(&["transfer_fee_config".into()])
                .is_ok()
        );
        for refused in [12u16, 14, 9, 6, 26, 200] {
            let data = mint_data(6, &[(refused, 40)]);
            let facts = parse_mint(&TOKEN_2022_PROGRAM, &data).unwrap();
            assert!(facts.check_extensions(&[]).is_err(), "{refused}");
        }
        let mut truncated = mint_data(6, &[(1, 108)]);
        truncated.truncate(truncated.len() - 1);
        assert_eq!(
            parse_mint(&TOKEN_2022_PROGRAM, &truncated),
            Err(MintError::Malformed)
        );
        // SPL Token mints have no extensions.
        assert_eq!(parse_mint(&TOKEN_PROGRAM, &fee), Err(MintError::Malformed));
    }

    #[test]
    fn cache_returns_fresh_facts() {
        let cache = MintCache::default();
        let mint = Address::new_from_array([3; 32]);
        assert!(cache.get(&mint).is_none());
        let facts = parse_mint(&TOKEN_PROGRAM, &mint_data(2, &[])).unwrap();
        cache.put(mint, facts.clone());
        assert_eq!(cache.get(&mint), Some(facts));
    }
}
