//! The x402 v2 MCP transport (`specs/transports-v2/mcp.md`).
//!
//! - [`wire`]: what travels in MCP messages: the payment in a tool call's
//!   `_meta["x402/payment"]`, the receipt in the result's
//!   `_meta["x402/payment-response"]`, and the payment-required tool result
//!   (`isError: true`, `PaymentRequired` in `structuredContent` and, as JSON
//!   text, in `content[0]`).
//! - `server` (feature `server`): paid tools. An rmcp `ServerHandler` runs
//!   every priced tool call through `paywire_server::PaymentGate`, the same
//!   verify → reserve → run → settle pipeline as HTTP.
//! - `client` (feature `client`): an MCP client that pays for tool calls
//!   through `paywire_client::X402Client`'s payment flow (policy, budget,
//!   approval, re-sends of the same payment).

#![forbid(unsafe_code)]

pub mod wire;

#[cfg(feature = "server")]
pub mod server;

#[cfg(feature = "client")]
pub mod client;
