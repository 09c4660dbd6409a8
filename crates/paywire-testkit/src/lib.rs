//! Test-only helpers for the x402 workspace (see also [`postgres::PgCluster`], a throwaway
//! PostgreSQL cluster).
//!
//! The centre is [`Devnet`]: a throwaway [anvil](https://github.com/foundry-rs/foundry)
//! chain on a free loopback port with Circle's real USDC (FiatTokenV2_2 behind
//! FiatTokenProxy) deployed and accounts #1..#8 funded, started in about 150 ms from a
//! cached state snapshot.
//!
//! ```no_run
//! # async fn demo() -> Result<(), paywire_testkit::DevnetError> {
//! let devnet = paywire_testkit::Devnet::start().await?;
//! let payer = devnet.payer(1);
//! let balance = devnet.usdc_balance(payer.address).await?;
//! assert_eq!(balance, alloy_primitives::U256::from(paywire_testkit::INITIAL_USDC_BALANCE));
//! # Ok(()) }
//! ```
//!
//! anvil and the USDC artifacts come from pinned npm packages installed once into a cache
//! outside the repository (`$PAYWIRE_DEVNET_CACHE`, default `$HOME/.cache/paywire-devnet`);
//! `$PAYWIRE_ANVIL` names an anvil binary to use instead. See the crate README.

#![warn(missing_docs)]

pub mod accounts;
mod devnet;
mod error;
pub mod factory;
pub mod install;
pub mod peer;
pub mod postgres;
mod process;
pub mod rpc;
pub mod shortchange;
mod snapshot;
pub mod usdc;
pub mod wallet;
mod watchdog;

pub use accounts::{DEV_MNEMONIC, DEV_PRIVATE_KEYS, DevAccount, dev_accounts};
pub use devnet::{CHAIN_ID, Devnet, DevnetOptions, NETWORK};
pub use error::{DevnetError, Result};
pub use factory::{
    EIP6492_MAGIC_SUFFIX, IWalletFactory, deploy_calldata, predict_wallet_address, wrap_eip6492,
};
pub use rpc::{ReceiptLog, TxReceipt};
pub use shortchange::{IShortchangeToken, ShortchangeToken};
pub use snapshot::SNAPSHOT_FORMAT_VERSION;
pub use usdc::{
    IFiatToken, INITIAL_USDC_BALANCE, ReceiveWithAuthorization, TransferWithAuthorization,
    USDC_DECIMALS, USDC_NAME, USDC_SYMBOL, USDC_VERSION, usdc_domain,
};
pub use wallet::{EIP1271_MAGIC_VALUE, ISmartWallet, SmartWallet};
