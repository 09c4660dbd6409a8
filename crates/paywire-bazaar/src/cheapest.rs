//! Choosing among discovered resources by dollar price.

use paywire_core::{AssetCatalog, PaymentRequirements, U256};

use crate::catalog::DiscoveredResource;

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
