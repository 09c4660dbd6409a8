//! The resource server's side of the `credit` binding (owner: helper D).

use paywire_core::{PluginError, ServerConfig, ServerParts};

/// The server parts for the configured credit networks.
pub fn server_parts(config: &ServerConfig) -> Result<ServerParts, PluginError> {
    let _ = config;
    Err(PluginError::config(
        "credit",
        "the credit server side is not built yet",
    ))
}
