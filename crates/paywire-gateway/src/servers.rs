//! The gateway's scheme servers and assets, from the registered plugins and
//! the `[[networks]]` entries naming their networks.

use paywire_core::{
    PluginError, PluginRegistry, SchemeRegistry, SchemeServer, ServerAsset, ServerConfig,
};

use crate::{GatewayConfig, GatewayError};

/// What the plugins contribute to the payment layer.
pub(crate) struct ServerSide {
    /// Scheme servers, by scheme and network pattern.
    pub(crate) schemes: SchemeRegistry<dyn SchemeServer>,
    /// Assets prices can be given in (display data for the paywall).
    pub(crate) assets: Vec<ServerAsset>,
}

impl ServerSide {
    /// Routes each `[[networks]]` entry to the plugin of its network (an
    /// entry naming a namespace no plugin serves is an error naming it) and
    /// asks every plugin for its server side. A plugin without one is
    /// skipped unless an entry names its networks.
    pub(crate) fn build(
        config: &GatewayConfig,
        plugins: &PluginRegistry,
    ) -> Result<Self, GatewayError> {
        let routed =
            plugins.route_entries(config.networks.clone(), |i| format!("networks[{i}]"))?;
        let mut side = Self {
            schemes: SchemeRegistry::new(),
            assets: Vec::new(),
        };
        for (plugin, entries) in routed {
            let named = !entries.is_empty();
            let mut server_config = ServerConfig::default();
            server_config.entries = entries;
            server_config.well_known = config.well_known_networks;
            let parts = match plugin.server(&server_config) {
                Ok(parts) => parts,
                Err(PluginError::Unsupported { .. }) if !named => continue,
                Err(error) => return Err(error.into()),
            };
            for registration in parts.schemes {
                let scheme = registration.handler.scheme().to_owned();
                side.schemes
                    .register(scheme, registration.networks, registration.handler);
            }
            side.assets.extend(parts.assets);
        }
        Ok(side)
    }
}
