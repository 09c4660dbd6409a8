//! Browsing a facilitator's catalog, and choosing among what it returns.

use std::time::Duration;

use paywire_core::{AssetCatalog, PaymentRequirements, U256};

use crate::catalog::{DiscoveredResource, ListPage, ResourceFilter, SearchPage};

/// A discovery request failed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The facilitator could not be reached or timed out.
    #[error("discovery request failed: {0}")]
    Transport(String),
    /// The facilitator answered with an error status.
    #[error("discovery endpoint answered {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The start of the answer.
        body: String,
    },
    /// The answer was not the expected JSON.
    #[error("discovery answer unreadable: {0}")]
    Decode(String),
}

/// A client of `GET /discovery/resources` and `GET /discovery/search`.
#[derive(Debug, Clone)]
pub struct DiscoveryClient {
    base: String,
    http: reqwest::Client,
}

impl DiscoveryClient {
    /// A client of the facilitator at `base_url` (10 s timeout).
    pub fn new(base_url: impl Into<String>) -> Result<Self, DiscoveryError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| DiscoveryError::Transport(e.to_string()))?;
        Ok(Self::with_client(base_url, http))
    }

    /// A client using a preconfigured `reqwest::Client`.
    pub fn with_client(base_url: impl Into<String>, http: reqwest::Client) -> Self {
        Self {
            base: base_url.into().trim_end_matches('/').to_owned(),
            http,
        }
    }

    fn filter_query(filter: &ResourceFilter) -> Vec<(&'static str, String)> {
        [
            ("type", &filter.kind),
            ("payTo", &filter.pay_to),
            ("scheme", &filter.scheme),
            ("network", &filter.network),
            ("extensions", &filter.extensions),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.clone().map(|v| (key, v)))
        .collect()
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: Vec<(&'static str, String)>,
    ) -> Result<T, DiscoveryError> {
        let url = url::Url::parse_with_params(&format!("{}{path}", self.base), &query)
            .map_err(|e| DiscoveryError::Transport(format!("facilitator url: {e}")))?;
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| DiscoveryError::Transport(e.to_string()))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| DiscoveryError::Transport(e.to_string()))?;
        if !status.is_success() {
            return Err(DiscoveryError::Status {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned(),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| DiscoveryError::Decode(e.to_string()))
    }

    /// One page of the catalog.
    pub async fn list(
        &self,
        filter: &ResourceFilter,
        limit: Option<usize>,
        offset: usize,
    ) -> Result<ListPage, DiscoveryError> {
        let mut query = Self::filter_query(filter);
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        query.push(("offset", offset.to_string()));
        self.get("/discovery/resources", query).await
    }

    /// Resources matching `text`.
    pub async fn search(
        &self,
        text: &str,
        filter: &ResourceFilter,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<SearchPage, DiscoveryError> {
        let mut query = Self::filter_query(filter);
        query.push(("query", text.to_owned()));
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        if let Some(cursor) = cursor {
            query.push(("cursor", cursor.to_owned()));
        }
        self.get("/discovery/search", query).await
    }
}

/// Dollar value of an option, in units of 10^-18 USD, when its asset is a
/// known dollar stablecoin.
fn usd_value(option: &PaymentRequirements, assets: &dyn AssetCatalog) -> Option<U256> {
    let info = assets
        .asset_info(&option.network, &option.asset)
        .filter(|i| i.usd_stable && i.decimals <= 18)?;
    let scale = U256::from(10u8).checked_pow(U256::from(18 - info.decimals))?;
    option.amount.as_u256().checked_mul(scale)
}

/// The cheapest way to use any of `resources`: among the payment options
/// `acceptable` allows (your networks, schemes, budget) and whose asset
/// `assets` knows as a dollar stablecoin, the one of lowest dollar value,
/// with its resource. Options in assets without a known dollar value are
/// not compared and never chosen.
pub fn cheapest<'a>(
    resources: &'a [DiscoveredResource],
    assets: &dyn AssetCatalog,
    acceptable: impl Fn(&DiscoveredResource, &PaymentRequirements) -> bool,
) -> Option<(&'a DiscoveredResource, &'a PaymentRequirements)> {
    resources
        .iter()
        .flat_map(|resource| {
            resource
                .accepts
                .iter()
                .map(move |option| (resource, option))
        })
        .filter(|(resource, option)| acceptable(resource, option))
        .filter_map(|(resource, option)| usd_value(option, assets).map(|v| (v, resource, option)))
        .min_by_key(|(value, _, _)| *value)
        .map(|(_, resource, option)| (resource, option))
}

#[cfg(test)]
mod tests {
    use super::*;
    use paywire_core::{AssetInfo, ChainId};
    use serde_json::json;

    struct Assets;
    impl AssetCatalog for Assets {
        fn asset_info(&self, _: &ChainId, asset: &str) -> Option<AssetInfo> {
            match asset {
                "usdc6" => Some(AssetInfo {
                    symbol: "USDC".into(),
                    decimals: 6,
                    usd_stable: true,
                }),
                "dai18" => Some(AssetInfo {
                    symbol: "DAI".into(),
                    decimals: 18,
                    usd_stable: true,
                }),
                "weth" => Some(AssetInfo {
                    symbol: "WETH".into(),
                    decimals: 18,
                    usd_stable: false,
                }),
                _ => None,
            }
        }
    }

    fn resource(url: &str, options: &[(&str, &str, &str)]) -> DiscoveredResource {
        DiscoveredResource {
            resource: url.into(),
            kind: "http".into(),
            x402_version: 2,
            accepts: options
                .iter()
                .map(|(network, asset, amount)| {
                    serde_json::from_value(json!({
                        "scheme": "exact", "network": network, "amount": amount, "asset": asset,
                        "payTo": "0x1", "maxTimeoutSeconds": 60
                    }))
                    .unwrap()
                })
                .collect(),
            last_updated: 1,
            extensions: None,
            metadata: None,
        }
    }

    #[test]
    fn compares_dollar_values_across_decimals_and_respects_the_filter() {
        let resources = [
            resource("https://a.example", &[("eip155:8453", "usdc6", "20000")]),
            // 0.015 DAI: cheaper than 0.02 USDC although the number is larger.
            resource(
                "https://b.example",
                &[("eip155:8453", "dai18", "15000000000000000")],
            ),
            // Tiny amount of a non-stable asset: not comparable, never chosen.
            resource("https://c.example", &[("eip155:8453", "weth", "1")]),
            resource("https://d.example", &[("eip155:84532", "usdc6", "1000")]),
        ];
        let any = |_: &DiscoveredResource, _: &PaymentRequirements| true;
        let (best, _) = cheapest(&resources, &Assets, any).unwrap();
        assert_eq!(best.resource, "https://d.example");
        let mainnet =
            |_: &DiscoveredResource, o: &PaymentRequirements| o.network.as_str() == "eip155:8453";
        let (best, option) = cheapest(&resources, &Assets, mainnet).unwrap();
        assert_eq!(best.resource, "https://b.example");
        assert_eq!(option.asset, "dai18");
        let nothing = |_: &DiscoveredResource, _: &PaymentRequirements| false;
        assert!(cheapest(&resources, &Assets, nothing).is_none());
    }
}
