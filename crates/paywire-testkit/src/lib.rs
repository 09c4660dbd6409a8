//! Test-only helpers for the x402 workspace: the devnet of `paywire-devnet` with the test
//! contract fixtures ([`Devnet`]), the official TypeScript SDK as a peer ([`peer`]) and a
//! throwaway PostgreSQL cluster ([`postgres::PgCluster`]); with the `stack` feature, a whole
//! devnet + funded signers + running paywire facilitator in one call (`stack::Stack`).
//!
//! Everything of `paywire-devnet` is re-exported here (`paywire_testkit::Devnet`,
//! [`DevnetOptions`], [`IFiatToken`], [`install`], [`rpc`], ...), so tests need only this
//! crate. [`Devnet`] is a throwaway [anvil](https://github.com/foundry-rs/foundry) chain
//! on a free loopback port with Circle's real USDC (FiatTokenV2_2 behind FiatTokenProxy)
//! deployed and accounts #1..#8 funded, started in about 150 ms from a cached state
//! snapshot.
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
//! `$PAYWIRE_ANVIL` names an anvil binary to use instead. See the READMEs of both crates.

mod devnet;
pub mod factory;
pub mod peer;
pub mod postgres;
pub mod pymcp;
pub mod shortchange;
#[cfg(feature = "stack")]
pub mod stack;
pub mod wallet;

pub use devnet::Devnet;
pub use factory::{
    EIP6492_MAGIC_SUFFIX, IWalletFactory, deploy_calldata, predict_wallet_address, wrap_eip6492,
};
pub use paywire_devnet::{
    CHAIN_ID, DEV_MNEMONIC, DEV_PRIVATE_KEYS, DevAccount, DevnetError, DevnetOptions, IFiatToken,
    INITIAL_USDC_BALANCE, NETWORK, ReceiptLog, ReceiveWithAuthorization, Result,
    SNAPSHOT_FORMAT_VERSION, TransferWithAuthorization, TxReceipt, USDC_DECIMALS, USDC_NAME,
    USDC_SYMBOL, USDC_VERSION, accounts, dev_accounts, install, rpc, usdc, usdc_domain,
};
pub use shortchange::{IShortchangeToken, ShortchangeToken};
#[cfg(feature = "stack")]
pub use stack::{Stack, StackOptions};
pub use wallet::{EIP1271_MAGIC_VALUE, ISmartWallet, SmartWallet};
