#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod account;
pub mod money;
pub mod wire;

#[cfg(feature = "authority")]
pub mod authority;
#[cfg(feature = "authority")]
pub mod config;
#[cfg(feature = "authority")]
pub mod endpoints;
#[cfg(feature = "authority")]
pub mod files;
#[cfg(feature = "authority")]
pub mod funding;
#[cfg(feature = "authority")]
pub mod jws;
#[cfg(feature = "authority")]
pub mod nacha;
#[cfg(feature = "authority")]
pub mod outbox;
#[cfg(feature = "authority")]
pub mod pain002;
#[cfg(feature = "authority")]
pub mod payout;
#[cfg(feature = "authority")]
pub mod returns;
#[cfg(feature = "authority")]
pub mod sepa;
#[cfg(feature = "authority")]
pub mod store;

#[cfg(feature = "client")]
pub mod client;
pub mod plugin;
pub mod server;

pub use money::{Currency, MoneyError};
pub use plugin::BankPlugin;
