//! A local EVM devnet for x402 payments: what `paywire devnet` and `paywire demo` run, and
//! what the workspace's tests pay on (through `paywire-testkit`, which re-exports this crate).
//!
//! The centre is [`Devnet`]: a throwaway [anvil](https://github.com/foundry-rs/foundry)
//! chain on a free loopback port with Circle's real USDC (FiatTokenV2_2 behind
//! FiatTokenProxy) deployed and accounts #1..#8 funded, started in about 150 ms from a
//! cached state snapshot. The same snapshot holds the canonical Permit2, paywire's own x402
//! Permit2 proxies at their canonical addresses and two ERC-20s without EIP-3009 (one with
//! EIP-2612), for the Permit2 `exact` and `upto` tests.
//!
//! ```no_run
//! # async fn demo() -> Result<(), paywire_devnet::DevnetError> {
//! let devnet = paywire_devnet::Devnet::start().await?;
//! let payer = devnet.payer(1);
//! let balance = devnet.usdc_balance(payer.address).await?;
//! assert_eq!(balance, alloy_primitives::U256::from(paywire_devnet::INITIAL_USDC_BALANCE));
//! # Ok(()) }
//! ```
//!
//! anvil and the USDC artifacts come from pinned npm packages installed once, at run time,
//! into a cache outside any repository (`$PAYWIRE_DEVNET_CACHE`, default
//! `$HOME/.cache/paywire-devnet`); `$PAYWIRE_ANVIL` names an anvil binary to use instead.
//! See the crate README.

pub mod accounts;
mod devnet;
mod error;
pub mod install;
pub mod permit2;
mod process;
pub mod rpc;
mod snapshot;
pub mod usdc;
mod watchdog;

pub use accounts::{DEV_MNEMONIC, DEV_PRIVATE_KEYS, DevAccount, dev_accounts};
pub use devnet::{CHAIN_ID, Devnet, DevnetOptions, NETWORK};
pub use error::{DevnetError, Result};
pub use permit2::{
    EXACT_PERMIT2_PROXY, INITIAL_TEST_TOKEN_BALANCE, PERMIT_TOKEN_NAME, PERMIT_TOKEN_SYMBOL,
    PERMIT_TOKEN_VERSION, PERMIT2, PLAIN_TOKEN_NAME, PLAIN_TOKEN_SYMBOL, TEST_TOKEN_DECIMALS,
    TestTokens, UPTO_PERMIT2_PROXY,
};
pub use rpc::{ReceiptLog, TxReceipt};
pub use snapshot::SNAPSHOT_FORMAT_VERSION;
pub use usdc::{
    IFiatToken, INITIAL_USDC_BALANCE, ReceiveWithAuthorization, TransferWithAuthorization,
    USDC_DECIMALS, USDC_NAME, USDC_SYMBOL, USDC_VERSION, usdc_domain,
};

/// Building blocks for tools that share the devnet's cache and run child processes next to
/// anvil (the test kit's TypeScript peers use them): cross-process install locks, atomic
/// writes, and children that die with this process.
pub mod support {
    pub use crate::install::{FileLock, lock, tail, write_atomic};
    pub use crate::process::{make_temp_dir, spawn_tied_to_process};
}
