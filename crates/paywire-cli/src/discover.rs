//! `paywire discover`: browse a facilitator's bazaar catalog.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use paywire_bazaar::{DiscoveredResource, DiscoveryClient, ResourceFilter, cheapest};
use paywire_client::{Catalogs, StaticCatalog};
use paywire_core::{AssetCatalog, ChainId, PaymentRequirements};
use paywire_evm::EvmNetworks;

use crate::pay::parse_asset;

/// Arguments of `paywire discover`.
#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// The facilitator whose catalog to read.
    #[arg(long, env = "PAYWIRE_FACILITATOR")]
    facilitator: String,
    /// Search words (uses /discovery/search; without it, /discovery/resources).
    #[arg(long, short)]
    query: Option<String>,
    /// Only resources of this type (`http` or `mcp`).
    #[arg(long = "type")]
    kind: Option<String>,
    /// Only resources payable on this network (name or CAIP-2 id).
    #[arg(long)]
    network: Option<String>,
    /// Only resources paying this recipient.
    #[arg(long)]
    pay_to: Option<String>,
    /// Only resources accepting this scheme.
    #[arg(long)]
    scheme: Option<String>,
    /// Page size (1 to 100).
    #[arg(long)]
    limit: Option<usize>,
    /// Entries to skip (listing only).
    #[arg(long, default_value_t = 0)]
    offset: usize,
    /// Print only the cheapest way to pay among the results (dollar value of
    /// known stablecoins); exit 3 when none can be compared.
    #[arg(long)]
    cheapest: bool,
    /// Extra asset for value comparison: `NETWORK:ADDRESS:DECIMALS[:usd]`.
    #[arg(long = "asset")]
    assets: Vec<String>,
    /// Print JSON instead of lines.
    #[arg(long)]
    json: bool,
}

const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_NONE: u8 = 3;

fn price(option: &PaymentRequirements, assets: &dyn AssetCatalog) -> String {
    match assets.asset_info(&option.network, &option.asset) {
        Some(info) => {
            let amount = option.amount.to_string();
            let decimals = usize::from(info.decimals);
            let padded = format!("{amount:0>width$}", width = decimals + 1);
            let (whole, fraction) = padded.split_at(padded.len() - decimals);
            let unit = if info.usd_stable { "$" } else { "" };
            let symbol = if info.usd_stable {
                String::new()
            } else {
                format!(" {}", info.symbol)
            };
            if decimals == 0 {
                format!("{unit}{whole}{symbol}")
            } else {
                format!("{unit}{whole}.{fraction}{symbol}")
            }
        }
        None => format!("{} of {}", option.amount, option.asset),
    }
}

fn describe(resource: &DiscoveredResource) -> String {
    let metadata = resource.metadata.as_ref();
    let text = |key: &str| metadata.and_then(|m| m.get(key)).and_then(|v| v.as_str());
    let mut label = String::new();
    if let Some(name) = text("serviceName") {
        label.push_str(name);
    }
    if let Some(description) = text("description") {
        if !label.is_empty() {
            label.push_str(": ");
        }
        label.push_str(description);
    }
    if let Some(tool) = resource.tool_name() {
        label.push_str(&format!(" [tool {tool}]"));
    }
    label
}

/// Runs `paywire discover`.
pub fn run(args: DiscoverArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    match runtime.block_on(discover(args)) {
        Ok(code) => code,
        Err((code, message)) => {
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}

/// A failure: the exit code and the message printed after `error: `.
type Failure = (u8, String);

async fn discover(args: DiscoverArgs) -> Result<ExitCode, Failure> {
    let network = args
        .network
        .as_deref()
        .map(|name| crate::plugins::networks().resolve(name))
        .transpose()
        .map_err(|e| (EXIT_USAGE, e.to_string()))?;
    if args.limit.is_some_and(|l| l == 0 || l > 100) {
        return Err((EXIT_USAGE, "--limit must be between 1 and 100".into()));
    }
    let assets = comparison_assets(&args.assets)?;
    let filter = ResourceFilter {
        kind: args.kind.clone(),
        pay_to: args.pay_to.clone(),
        scheme: args.scheme.clone(),
        network: network.as_ref().map(ToString::to_string),
        extensions: None,
    };
    let resources = fetch_resources(&args, &filter).await?;
    if args.cheapest {
        return Ok(print_cheapest(&args, network.as_ref(), &resources, &assets));
    }
    print_resources(&resources, &assets, args.json);
    Ok(ExitCode::SUCCESS)
}

/// The well-known networks' assets plus those given with `--asset`.
fn comparison_assets(extra_assets: &[String]) -> Result<Catalogs, Failure> {
    let mut extra = StaticCatalog::default();
    for asset in extra_assets {
        let (network, address, info) = parse_asset(asset).map_err(|f| (EXIT_USAGE, f.1))?;
        extra = extra.with(network, address, info);
    }
    Ok(Catalogs(vec![
        Arc::new(EvmNetworks::well_known()),
        Arc::new(extra),
    ]))
}

/// One page of the catalog: search results with `--query`, else the listing.
async fn fetch_resources(
    args: &DiscoverArgs,
    filter: &ResourceFilter,
) -> Result<Vec<DiscoveredResource>, Failure> {
    let failed = |e: paywire_bazaar::DiscoveryError| (EXIT_FAILED, e.to_string());
    let client = DiscoveryClient::new(&args.facilitator).map_err(failed)?;
    Ok(match &args.query {
        Some(query) => {
            client
                .search(query, filter, args.limit, None)
                .await
                .map_err(failed)?
                .resources
        }
        None => {
            client
                .list(filter, args.limit, args.offset)
                .await
                .map_err(failed)?
                .items
        }
    })
}

/// `--cheapest`: the one way to pay that costs least among `resources`
/// (on the requested network and scheme), or exit 3 when none compares.
fn print_cheapest(
    args: &DiscoverArgs,
    network: Option<&ChainId>,
    resources: &[DiscoveredResource],
    assets: &Catalogs,
) -> ExitCode {
    let wanted = |_: &DiscoveredResource, option: &PaymentRequirements| {
        network.is_none_or(|n| option.network == *n)
            && args.scheme.as_ref().is_none_or(|s| option.scheme == *s)
    };
    let Some((resource, option)) = cheapest(resources, assets, wanted) else {
        eprintln!(
            "no result has a payment option in a known dollar stablecoin (add one with --asset)"
        );
        return ExitCode::from(EXIT_NONE);
    };
    if args.json {
        let chosen = serde_json::json!({"resource": resource, "option": option});
        println!("{chosen}");
    } else {
        println!(
            "{}  {}  {}  {}  {}",
            price(option, assets),
            option.network,
            option.scheme,
            resource.resource,
            describe(resource)
        );
    }
    ExitCode::SUCCESS
}

/// Every resource with its ways to pay, as lines or as JSON.
fn print_resources(resources: &[DiscoveredResource], assets: &Catalogs, json: bool) {
    if json {
        println!("{}", serde_json::to_value(resources).unwrap_or_default());
        return;
    }
    if resources.is_empty() {
        eprintln!("no resources found");
    }
    for resource in resources {
        let options: Vec<String> = resource
            .accepts
            .iter()
            .map(|o| format!("{} on {} ({})", price(o, assets), o.network, o.scheme))
            .collect();
        println!("{}  {}", resource.resource, describe(resource));
        println!("    {}", options.join(", "));
    }
}
