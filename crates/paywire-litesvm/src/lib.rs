//! A Solana test chain: the real Solana runtime in-process ([litesvm]) with SPL Token and
//! Token-2022 fixtures, served on a loopback port as a standard Solana JSON-RPC node.
//!
//! Test-only. The product talks to it exactly as to a real RPC node, so it keeps its real RPC
//! client; tests also drive the chain directly (fixtures, clock, held sends) through
//! [`SolanaTestChain`], and steer the server ([`RpcServer`]) to fail or hang.
//!
//! ```no_run
//! use std::sync::Arc;
//! use paywire_litesvm::{RpcServer, SolanaTestChain, TokenProgram};
//!
//! let chain = Arc::new(SolanaTestChain::new());
//! let usdc = chain.create_mint(TokenProgram::Token, 6);
//! let payer = chain.funded_wallet(1_000_000_000);
//! # use solana_signer::Signer;
//! chain.mint_to(&usdc, &payer.pubkey(), 5_000_000);
//! let server = RpcServer::start(chain.clone()).expect("loopback port");
//! println!("Solana JSON-RPC at {}", server.url());
//! ```
//!
//! [litesvm]: https://docs.rs/litesvm

#![forbid(unsafe_code)]

pub mod chain;
pub mod rpc;
pub mod token;

pub use chain::{
    DEVNET_GENESIS_HASH, MAINNET_GENESIS_HASH, SendCounts, SendError, SignatureStatus,
    SimulateOptions, Simulation, SolanaTestChain, TESTNET_GENESIS_HASH,
};
pub use rpc::{FailureKind, RpcServer};
pub use token::TokenProgram;

/// A Solana address (the `Pubkey` of older crates).
pub type Pubkey = solana_address::Address;
