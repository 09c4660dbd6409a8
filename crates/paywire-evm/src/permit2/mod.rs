//! The Permit2 asset transfer method, shared by `exact` (with
//! `assetTransferMethod: "permit2"`) and `upto`: the wire form of a signed
//! `permitWitnessTransferFrom`, its EIP-712 digest, and the canonical
//! contract addresses.
//!
//! The payer approves the canonical Permit2 contract once; each payment is
//! then a signature whose spender is an x402 proxy that sends the funds only
//! to the witness's `to` (and, for `upto`, only when called by the witness's
//! `facilitator`).

mod approval;
pub(crate) mod client;
mod facilitator;
mod payload;
pub(crate) mod server;
pub(crate) mod spend;

pub use approval::{
    APPROVE_GAS_LIMIT, SignedApproval, approve_permit2, approve_permit2_calldata,
    permit2_allowance, sign_approve_permit2,
};
pub use facilitator::{UPTO_SCHEME, UptoEvmFacilitator};
pub use payload::{
    Permit2Authorization, Permit2Payload, TokenPermissions, Witness, permit2_domain,
};
pub use server::{eip2612_declaration, erc20_approval_declaration};

use alloy_primitives::{Address, address};

/// The canonical Permit2 contract (same address on every chain).
pub const PERMIT2_ADDRESS: Address = address!("0x000000000022D473030F116dDEE9F6B43aC78BA3");

/// The canonical `x402ExactPermit2Proxy` (spender of `exact` Permit2 payments).
pub const EXACT_PERMIT2_PROXY: Address = address!("0x402085c248EeA27D92E8b30b2C58ed07f9E20001");

/// The canonical `x402UptoPermit2Proxy` (spender of `upto` payments).
pub const UPTO_PERMIT2_PROXY: Address = address!("0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002");

/// `extra.assetTransferMethod` of Permit2 payments.
pub const PERMIT2_METHOD: &str = "permit2";

/// `extra.assetTransferMethod` of EIP-3009 payments (the default when absent).
pub const EIP3009_METHOD: &str = "eip3009";

/// Identifier of the EIP-2612 gas-sponsoring extension.
pub const EIP2612_GAS_SPONSORING: &str = "eip2612GasSponsoring";

/// Identifier of the sponsored ERC-20 approval extension.
pub const ERC20_APPROVAL_GAS_SPONSORING: &str = "erc20ApprovalGasSponsoring";
