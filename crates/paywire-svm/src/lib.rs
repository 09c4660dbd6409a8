//! # paywire-svm
//!
//! The Solana (`solana:*`) plugin for x402:
//!
//! - [`networks`]: clusters, their friendly names and USDC mints as data;
//! - [`reasons`]: the Solana error reasons (the TypeScript SDK's spellings);
//! - [`tx`]: program ids, the payment's instructions, ATA derivation, the
//!   transaction codec;
//! - [`keys`]: keypairs from the usual export formats, never shown;
//! - [`mint`]: mint inspection and the Token-2022 extension policy;
//! - [`rpc`]: a typed Solana JSON-RPC client with fail-over and URL redaction;
//! - [`exact`]: the `exact` scheme, client ([`exact::ExactSvmClient`]),
//!   server ([`exact::ExactSvmServer`]) and facilitator
//!   ([`exact::ExactSvmFacilitator`]) sides;
//! - [`plugin`]: [`SvmPlugin`], everything above as one paywire chain plugin.

#![forbid(unsafe_code)]

pub mod exact;
pub mod keys;
pub mod mint;
pub mod networks;
pub mod plugin;
pub mod probe;
pub mod reasons;
pub mod rpc;
pub mod tx;

pub use keys::SvmKeypair;
pub use networks::{SvmAsset, SvmNetwork, SvmNetworks, network_names};
pub use plugin::SvmPlugin;
