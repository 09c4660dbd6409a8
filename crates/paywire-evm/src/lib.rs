//! # paywire-evm
//!
//! EVM (`eip155:*`) plugins for x402:
//!
//! - [`networks`]: well-known chains, their friendly names and their USDC
//!   deployments as data, extendable at run time;
//! - [`reasons`]: the EVM error reasons;
//! - [`plugin`]: [`EvmPlugin`], everything above as one paywire chain plugin;
//! - [`exact`]: the `exact` scheme with EIP-3009 `transferWithAuthorization`
//!   (or Permit2 for assets configured with it),
//!   client ([`exact::ExactEvmClient`]), server ([`exact::ExactEvmServer`])
//!   and facilitator ([`exact::ExactEvmFacilitator`]) sides;
//! - [`permit2`]: the Permit2 asset transfer method shared by `exact` and
//!   `upto` (wire types, digests, the payer's one-time approval);
//! - [`upto`]: the usage-based `upto` scheme, client
//!   ([`upto::UptoEvmClient`]) and server ([`upto::UptoEvmServer`]) sides;
//! - [`signer`]: the [`signer::EvmSigner`] trait with a local-key implementation;
//! - [`rpc`]: a lean JSON-RPC client with fail-over and batching;
//! - `siwx` (feature `siwx`): sign-in-with-x for EVM wallets (EIP-191,
//!   EIP-1271, EIP-6492), `siwx::{EvmVerifier, EvmSiwxSigner}`.

#![forbid(unsafe_code)]

pub mod contracts;
pub mod ecrecover;
pub mod eip6492;
pub mod exact;
pub mod networks;
pub mod permit2;
pub mod plugin;
pub mod reasons;
pub mod rpc;
pub mod signer;
#[cfg(feature = "siwx")]
pub mod siwx;
pub mod upto;

pub use networks::{
    Eip155ChainId, EvmAsset, EvmNetwork, EvmNetworks, TransferMethod, network_names,
};
pub use plugin::EvmPlugin;
pub use signer::{EvmSigner, LocalSigner};
