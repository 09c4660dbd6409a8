//! # paywire-evm
//!
//! EVM (`eip155:*`) plugins for x402:
//!
//! - [`networks`]: well-known chains, their friendly names and their USDC
//!   deployments as data, extendable at run time;
//! - [`reasons`]: the EVM error reasons;
//! - [`plugin`]: [`EvmPlugin`], everything above as one paywire chain plugin;
//! - [`exact`]: the `exact` scheme with EIP-3009 `transferWithAuthorization`,
//!   client ([`exact::ExactEvmClient`]), server ([`exact::ExactEvmServer`])
//!   and facilitator ([`exact::ExactEvmFacilitator`]) sides;
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

pub use networks::{Eip155ChainId, EvmAsset, EvmNetwork, EvmNetworks, network_names};
pub use plugin::EvmPlugin;
pub use signer::{EvmSigner, LocalSigner};
