//! The x402 `bazaar` discovery extension.
//!
//! - **Sellers** describe how to call a paid endpoint (HTTP method, query or
//!   body example, output example, or an MCP tool) with [`Declaration`] and
//!   put it in their 402 answers ([`Declaration::into_extension`]).
//! - **Facilitators** validate what clients echo back
//!   ([`extract`]: the schema check the specification requires plus our own
//!   structural checks, service metadata soft-dropped by the specification's
//!   rules), confirm it against the resource's origin (`OriginConfirmer`,
//!   feature `confirm`: its unpaid 402 must offer what was paid) and keep a
//!   [`Catalog`] ([`MemoryCatalog`]; `SqliteCatalog` with feature `sqlite`,
//!   `PostgresCatalog` with feature `postgres`) that
//!   `GET /discovery/resources` and `GET /discovery/search` serve.
//! - **Clients and agents** browse it with `DiscoveryClient` (feature
//!   `client`) and pick the cheapest suitable resource with [`cheapest`].
//!
//! Without features the crate depends on `paywire-core` only (no HTTP
//! client, no database).

#![forbid(unsafe_code)]

mod catalog;
mod cheapest;
#[cfg(feature = "client")]
mod client;
#[cfg(feature = "confirm")]
mod confirm;
mod declaration;
mod extract;
mod sanitize;
mod schema;

#[cfg(feature = "postgres")]
pub use catalog::PostgresCatalog;
#[cfg(feature = "sqlite")]
pub use catalog::SqliteCatalog;
pub use catalog::{
    Catalog, CatalogError, CatalogFuture, DEFAULT_PAGE, DiscoveredResource, ListPage, MAX_PAGE,
    MemoryCatalog, Pagination, ResourceFilter, SearchPage, SearchPagination,
};
pub use cheapest::cheapest;
#[cfg(feature = "client")]
pub use client::{DiscoveryClient, DiscoveryError};
#[cfg(feature = "confirm")]
pub use confirm::{
    ConfirmConfig, ConfirmSetupError, DEFAULT_CONFIRM_TIMEOUT, MAX_PAYMENT_REQUIRED_BODY,
    OriginConfirmer, Probe, Unconfirmed, is_public_address,
};
pub use declaration::{BodyType, Declaration};
pub use extract::{CatalogStatus, ExtractError, extension_responses_header, extract};
pub use sanitize::{
    is_valid_icon_url, is_valid_route_template, is_valid_service_name, sanitize_resource,
    sanitize_tags,
};
pub use schema::{SchemaError, validate};

/// Name of the facilitator response header carrying extension outcomes.
pub const EXTENSION_RESPONSES_HEADER: &str = "EXTENSION-RESPONSES";
