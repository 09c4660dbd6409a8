//! The `upto` scheme on EVM chains: the payer signs a Permit2 authorization
//! for a maximum amount that only one facilitator (named in the witness)
//! may settle, and the server charges what the request used, up to that
//! maximum, after its handler ran.
//!
//! This module holds the client ([`UptoEvmClient`]) and server
//! ([`UptoEvmServer`]) sides; the facilitator side lives beside the `exact`
//! Permit2 facilitator.

mod client;
mod server;

pub use client::UptoEvmClient;
pub use server::UptoEvmServer;

/// Scheme identifier.
pub const SCHEME: &str = "upto";

/// The `/supported` kind `extra` key naming the facilitator's settling
/// address (and the requirements' `extra` key carrying it to the payer).
pub const FACILITATOR_ADDRESS: &str = "facilitatorAddress";
