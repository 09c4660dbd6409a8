//! # paywire-core
//!
//! The chain-agnostic heart of an x402 v2 implementation:
//!
//! - [`types`]: the wire types (`PaymentRequired`, `PaymentPayload`,
//!   `SettleResponse`, …) exactly as the specification names them;
//! - [`chain`]: CAIP-2 [`ChainId`]s and [`ChainIdPattern`]s;
//! - [`amount`]: 256-bit [`AtomicAmount`]s and exact [`Money`] parsing;
//! - [`codec`]: the base64 header codec with a size cap and typed errors;
//! - [`reason`]: an open set of error reason codes (generic ones here,
//!   chain-specific ones in their plugins);
//! - [`network`]: friendly network names, contributed by plugins;
//! - [`extensions`]: the `{info, schema}` extension envelope;
//! - [`scheme`] and [`facilitator`]: the plugin traits every chain crate
//!   implements, a registry keyed by (scheme, network), and an in-process
//!   facilitator that dispatches to registered plugins;
//! - [`runtime`]: the `[runtime]` thread counts the services share;
//! - [`plugin`]: [`ChainPlugin`], the one trait a chain family or payment
//!   rail implements to join (networks, server, facilitator and wallet
//!   sides), and the [`PluginRegistry`] a composition root fills.
//!
//! No chain is known here: EVM, Solana and others register as plugins.

#![forbid(unsafe_code)]

pub mod amount;
pub mod asset;
pub mod chain;
pub mod codec;
pub mod endpoint;
pub mod envsubst;
pub mod extensions;
pub mod facilitator;
pub mod network;
pub mod plugin;
pub mod reason;
pub mod runtime;
pub mod scheme;
pub mod types;

pub use amount::{AmountError, AtomicAmount, Money, MoneyUnit, U256};
pub use asset::{AssetCatalog, AssetInfo};
pub use chain::{ChainId, ChainIdError, ChainIdPattern};
pub use codec::DecodeError;
pub use endpoint::{EndpointPath, PluginEndpoint, PluginRequest, PluginResponse};
pub use extensions::{Extension, Extensions};
pub use facilitator::{Facilitator, FacilitatorError, LocalFacilitator};
pub use network::{NetworkClass, NetworkDirectory, NetworkInfo};
pub use plugin::{
    ChainPlugin, ChainProbe, ConfigEntry, FacilitatorConfig, FacilitatorParts, PluginError,
    PluginRegistry, Registration, RoutedEntries, RpcErrorCount, RpcErrorKind, Secret, ServerAsset,
    ServerConfig, ServerParts, SettlementSettings, SignerBalance, WalletConfig, WalletParts,
};
pub use reason::ErrorReason;
pub use runtime::{RuntimeConfig, RuntimeConfigError};
pub use scheme::{
    BoxFuture, CreatedPayment, NoObserver, Price, RequirementsRequest, SchemeClient, SchemeError,
    SchemeFacilitator, SchemeRegistry, SchemeServer, SettlementLookup, SettlementObserver,
    SpendProbe, SpendState,
};
pub use types::{
    EXPECTED_AMOUNT_EXTRA, FacilitatorRequest, JsonObject, PaymentPayload, PaymentRequired,
    PaymentRequirements, ResourceInfo, SettleRequest, SettleResponse, SupportedKind,
    SupportedResponse, VerifyRequest, VerifyResponse, X402_VERSION,
};
