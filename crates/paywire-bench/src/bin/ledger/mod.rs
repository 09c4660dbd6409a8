//! Modules of `paywire-ledger-bench` (see the binary's documentation).

pub mod fill;
pub mod ops;
pub mod postgres;
pub mod service;
pub mod sqlite;
pub mod store;
