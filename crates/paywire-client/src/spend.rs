//! Asking the chain whether a signed authorization was spent, so that the
//! budget can stop counting an authorization that can no longer move funds.
//! The trait lives in the core, where chain plugins implement it.

pub use paywire_core::{SpendProbe, SpendState};
