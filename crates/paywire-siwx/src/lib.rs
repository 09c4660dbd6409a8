//! # paywire-siwx
//!
//! The x402 `sign-in-with-x` extension (CAIP-122): a wallet that has paid
//! proves control of its address by signing a server-issued challenge, and
//! the server lets it through on its entitlement instead of asking for a new
//! payment.
//!
//! Without features the crate depends on `paywire-core` only:
//!
//! - [`types`]: wire types ([`SiwxExtension`], [`SiwxInfo`],
//!   [`SupportedChain`], [`SiwxProof`]) and the `SIGN-IN-WITH-X` header codec;
//! - [`message`]: SIWE (EIP-4361) and SIWS message text, formatted exactly
//!   and parsed strictly;
//! - [`verify`]: [`SiwxVerifier`] per CAIP-2 namespace in a
//!   [`VerifierRegistry`]; [`SolanaVerifier`] (ed25519) needs no chain
//!   access; the EVM one (EIP-191 / EIP-1271 / EIP-6492) is
//!   `paywire_evm::siwx::EvmVerifier` (paywire-evm's feature `siwx`);
//! - [`server`]: [`SiwxServer`] issuing challenges with single-use nonces and
//!   validating proofs against the configured origin;
//! - [`store`]: [`NonceStore`] and [`EntitlementStore`] ([`MemoryStore`];
//!   `SqliteStore` with feature `sqlite`, `postgres::PostgresStore` with
//!   feature `postgres`), [`AccessPolicy`] (pay once, pass, N uses);
//! - [`session`]: revocable HMAC session tokens;
//! - [`client`]: [`sign_in`] with a [`SiwxSigner`] ([`SolanaSiwxSigner`],
//!   or `paywire_evm::siwx::EvmSiwxSigner` for EVM wallets).
//!
//! Adapters, behind features:
//!
//! - `server`: `hooks::SiwxHooks`, the paywire-server `PaymentHooks` that
//!   challenges in 402s, lets entitled wallets through and records
//!   entitlements after settlement;
//! - `client`: `provider::SiwxSignIn`, the paywire-client `SignInProvider`
//!   that signs in before paying;
//! - `sqlite`, `postgres`: the persistent stores.
//!
//! All times are Unix milliseconds from an injectable [`Clock`].

#![forbid(unsafe_code)]

pub mod client;
#[cfg(feature = "server")]
pub mod hooks;
pub mod message;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "client")]
pub mod provider;
mod random;
pub mod server;
pub mod session;
pub mod store;
pub mod time;
pub mod types;
pub mod verify;

pub use client::{ClientError, SiwxSigner, SolanaSiwxSigner, select_chain, sign_in};
#[cfg(feature = "server")]
pub use hooks::{SiwxHooks, SiwxRoute};
pub use message::{Family, MessageError, SiwxMessage};
#[cfg(feature = "client")]
pub use provider::SiwxSignIn;
pub use server::{SignedIn, SiwxError, SiwxServer, SiwxServerConfig};
pub use session::{SessionClaims, SessionError, SessionTokens};
#[cfg(feature = "sqlite")]
pub use store::SqliteStore;
pub use store::{
    AccessPolicy, Entitlement, EntitlementStore, MemoryStore, NonceState, NonceStore, StoreError,
};
pub use time::{Clock, system_clock};
pub use types::{SESSION_HEADER, SiwxExtension, SiwxInfo, SiwxProof, SupportedChain};
pub use verify::{SiwxVerifier, SolanaVerifier, VerifierRegistry, VerifyError};
