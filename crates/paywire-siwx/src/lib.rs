//! # paywire-siwx
//!
//! The x402 `sign-in-with-x` extension (CAIP-122): a wallet that has paid
//! proves control of its address by signing a server-issued challenge, and
//! the server lets it through on its entitlement instead of asking for a new
//! payment.
//!
//! - [`types`]: wire types ([`SiwxExtension`], [`SiwxInfo`],
//!   [`SupportedChain`], [`SiwxProof`]) and the `SIGN-IN-WITH-X` header codec;
//! - [`message`]: SIWE (EIP-4361) and SIWS message text, formatted exactly
//!   and parsed strictly;
//! - [`verify`]: [`SiwxVerifier`] per chain family (EVM EIP-191 / EIP-1271 /
//!   EIP-6492, Solana ed25519) in a [`VerifierRegistry`];
//! - [`server`]: [`SiwxServer`] issuing challenges with single-use nonces and
//!   validating proofs against the configured origin;
//! - [`store`]: [`NonceStore`] and [`EntitlementStore`] (memory and SQLite),
//!   [`AccessPolicy`] (pay once, pass, N uses);
//! - [`session`]: revocable HMAC session tokens;
//! - [`client`]: [`sign_in`] with an EVM or Solana [`SiwxSigner`];
//! - [`hooks`]: [`SiwxHooks`], the paywire-server [`paywire_server::PaymentHooks`]
//!   that challenges in 402s, lets entitled wallets through and records
//!   entitlements after settlement;
//! - [`provider`]: [`SiwxSignIn`], the paywire-client
//!   [`paywire_client::SignInProvider`] that signs in before paying.
//!
//! All times are Unix milliseconds from an injectable [`Clock`].

#![warn(missing_docs)]

pub mod client;
pub mod hooks;
pub mod message;
pub mod postgres;
pub mod provider;
pub mod server;
pub mod session;
pub mod store;
pub mod time;
pub mod types;
pub mod verify;

pub use client::{ClientError, EvmSiwxSigner, SiwxSigner, SolanaSiwxSigner, select_chain, sign_in};
pub use hooks::{SESSION_HEADER, SiwxHooks, SiwxRoute};
pub use message::{Family, MessageError, SiwxMessage};
pub use provider::SiwxSignIn;
pub use server::{SignedIn, SiwxError, SiwxServer, SiwxServerConfig};
pub use session::{SessionClaims, SessionError, SessionTokens};
pub use store::{
    AccessPolicy, Entitlement, EntitlementStore, MemoryStore, NonceState, NonceStore, SqliteStore,
    StoreError,
};
pub use time::{Clock, system_clock};
pub use types::{SiwxExtension, SiwxInfo, SiwxProof, SupportedChain};
pub use verify::{EvmVerifier, SiwxVerifier, SolanaVerifier, VerifierRegistry, VerifyError};
