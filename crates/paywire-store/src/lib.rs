#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod error;
pub mod migrate;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use error::{StoreError, StoreResult};
pub use migrate::{Migration, MigrationReport, Migrations};

/// The tokio-postgres this crate is built on, so stores name the same types.
#[cfg(feature = "postgres")]
pub use tokio_postgres;

/// The rusqlite this crate is built on, so stores name the same types.
#[cfg(feature = "sqlite")]
pub use rusqlite;
