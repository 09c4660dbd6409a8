//! # paywire-core
//!
//! The chain-agnostic heart of an x402 v2 implementation:
//!
//! - [`types`]: the wire types (`PaymentRequired`, `PaymentPayload`,
//!   `SettleResponse`, …) exactly as the specification names them;
//! - [`chain`]: CAIP-2 [`ChainId`]s and [`ChainIdPattern`]s;
//! - [`amount`]: 256-bit [`AtomicAmount`]s and exact [`Money`] parsing;
//! - [`codec`]: the base64 header codec with a size cap and typed errors;
//! - [`reason`]: the spec's error reason codes;
//! - [`extensions`]: the `{info, schema}` extension envelope;
//! - [`scheme`] and [`facilitator`]: the plugin traits every chain crate
//!   implements, a registry keyed by (scheme, network), and an in-process
//!   facilitator that dispatches to registered plugins.
//!
//! No chain is known here: EVM, Solana and others register as plugins.

#![warn(missing_docs)]

pub mod amount;
pub mod asset;
pub mod chain;
pub mod codec;
pub mod envsubst;
pub mod extensions;
pub mod facilitator;
pub mod reason;
pub mod scheme;
pub mod types;

pub use amount::{AmountError, AtomicAmount, Money, MoneyUnit, U256};
pub use asset::{AssetCatalog, AssetInfo};
pub use chain::{ChainId, ChainIdError, ChainIdPattern, NetworkClass};
pub use codec::DecodeError;
pub use extensions::{Extension, Extensions};
pub use facilitator::{Facilitator, FacilitatorError, LocalFacilitator};
pub use reason::ErrorReason;
pub use scheme::{
    BoxFuture, NoObserver, Price, RequirementsRequest, SchemeClient, SchemeError,
    SchemeFacilitator, SchemeRegistry, SchemeServer, SettlementLookup, SettlementObserver,
};
pub use types::{
    FacilitatorRequest, JsonObject, PaymentPayload, PaymentRequired, PaymentRequirements,
    ResourceInfo, SettleRequest, SettleResponse, SupportedKind, SupportedResponse, VerifyRequest,
    VerifyResponse, X402_VERSION,
};
