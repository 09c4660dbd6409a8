//! [`BankPlugin`]: the bank rail as a paywire plugin. It serves every
//! `<authority>:credit` network (the namespace is the operator's label).

use paywire_core::{
    BoxFuture, ChainId, ChainPlugin, FacilitatorConfig, FacilitatorParts, PluginError,
    ServerConfig, ServerParts, WalletConfig, WalletParts,
};

use crate::wire::CREDIT_REFERENCE;

/// The bank rail. Register it once; it serves any `<label>:credit` network
/// named in a configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct BankPlugin;

impl ChainPlugin for BankPlugin {
    fn namespace(&self) -> &str {
        CREDIT_REFERENCE
    }

    fn serves(&self, network: &ChainId) -> bool {
        network.reference() == CREDIT_REFERENCE
    }

    fn server(&self, config: &ServerConfig) -> Result<ServerParts, PluginError> {
        crate::server::server_parts(config)
    }

    fn facilitator<'a>(
        &'a self,
        config: &'a FacilitatorConfig,
    ) -> BoxFuture<'a, Result<FacilitatorParts, PluginError>> {
        #[cfg(feature = "authority")]
        {
            Box::pin(crate::authority::facilitator_parts(config))
        }
        #[cfg(not(feature = "authority"))]
        {
            let _ = config;
            Box::pin(async move { Err(self.unsupported("facilitator")) })
        }
    }

    fn wallet(&self, config: &WalletConfig) -> Result<WalletParts, PluginError> {
        #[cfg(feature = "client")]
        {
            crate::client::wallet_parts(config)
        }
        #[cfg(not(feature = "client"))]
        {
            let _ = config;
            Err(self.unsupported("wallet"))
        }
    }
}
