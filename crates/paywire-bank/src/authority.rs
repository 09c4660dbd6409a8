//! The bundle authority's scheme facilitator (owner: helper C1).

use paywire_core::{FacilitatorConfig, FacilitatorParts, PluginError};

/// The facilitator parts for the configured credit networks.
pub async fn facilitator_parts(
    config: &FacilitatorConfig,
) -> Result<FacilitatorParts, PluginError> {
    let _ = config;
    Err(PluginError::config(
        "credit",
        "the bundle authority is not built yet",
    ))
}
