//! The test kit's [`Devnet`]: `paywire-devnet`'s chain plus the test-only contract fixtures.

use std::ops::Deref;

use paywire_devnet::{DevnetOptions, Result};

/// A [`paywire_devnet::Devnet`] (anvil with Circle's USDC, see there) that can also deploy
/// the test-only contracts of this kit: [`SmartWallet`](crate::SmartWallet)s, a
/// `WalletFactory` for EIP-6492, and [`ShortchangeToken`](crate::ShortchangeToken)s.
///
/// It dereferences to the devnet, so every devnet method (`rpc_url`, `payer`,
/// `usdc_balance`, `transact`, ...) is called on it directly, and `&Devnet` is accepted
/// wherever a `&paywire_devnet::Devnet` is expected. The fixture methods live here rather
/// than in `paywire-devnet` so that the published crate carries no test contracts.
#[derive(Debug)]
pub struct Devnet {
    inner: paywire_devnet::Devnet,
}

impl Devnet {
    /// Starts a fresh devnet with the default options; see [`paywire_devnet::Devnet::start`].
    pub async fn start() -> Result<Self> {
        paywire_devnet::Devnet::start().await.map(Self::from)
    }

    /// Starts a fresh devnet with `options`; see [`paywire_devnet::Devnet::start_with`].
    pub async fn start_with(options: DevnetOptions) -> Result<Self> {
        paywire_devnet::Devnet::start_with(options)
            .await
            .map(Self::from)
    }

    /// The devnet itself (anvil stops when it is dropped).
    pub fn into_inner(self) -> paywire_devnet::Devnet {
        self.inner
    }
}

impl From<paywire_devnet::Devnet> for Devnet {
    fn from(inner: paywire_devnet::Devnet) -> Self {
        Self { inner }
    }
}

impl Deref for Devnet {
    type Target = paywire_devnet::Devnet;

    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl AsRef<paywire_devnet::Devnet> for Devnet {
    fn as_ref(&self) -> &paywire_devnet::Devnet {
        &self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Devnet>();
    }
}
