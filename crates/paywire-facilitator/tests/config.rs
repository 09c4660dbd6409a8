//! Configuration parsing: example, unknown keys, environment substitution.

use std::sync::Arc;

use paywire_core::{Facilitator, PluginRegistry};
use paywire_facilitator::config::StoreLocation;
use paywire_facilitator::{ConfigError, FacilitatorConfig, example_config};

fn env(name: &str) -> Option<String> {
    match name {
        "BASE_SEPOLIA_RPC_URL" => Some("https://rpc.example/base-sepolia".into()),
        "BASE_RPC_URL" => Some("https://rpc.example/base".into()),
        "FACILITATOR_API_KEY" => Some("test-api-key-0123456789".into()),
        "FACILITATOR_PRIVATE_KEY" => {
            Some("0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80".into())
        }
        _ => None,
    }
}

const MINIMAL: &str = r#"
store = "ledger.sqlite"
[[chains]]
network = "base"
rpc_urls = ["https://rpc.example"]
signer_private_keys = ["${KEY}"]
"#;

/// The facilitator's chains from the EVM plugin (`chain_parts` contacts
/// no chain): the error, or `""`.
async fn chain_error(text: &str) -> String {
    let key = format!("0x{}", "11".repeat(32));
    let config = match FacilitatorConfig::parse_with_env(text, |_| Some(key.clone())) {
        Ok(config) => config,
        Err(error) => return error.to_string(),
    };
    let registry = PluginRegistry::new().with(Arc::new(paywire_evm::EvmPlugin));
    match paywire_facilitator::chain_parts(&config, &registry).await {
        Ok(_) => String::new(),
        Err(error) => error.to_string(),
    }
}

#[tokio::test]
async fn example_parses() -> Result<(), Box<dyn std::error::Error>> {
    let config = FacilitatorConfig::parse_with_env(example_config(), env)?;
    assert_eq!(config.chains.len(), 2);
    assert_eq!(
        config.chains[0].expose()["rpc_urls"],
        serde_json::json!([
            "https://rpc.example/base-sepolia",
            "https://sepolia.base.org"
        ])
    );
    assert_eq!(
        config.store_location()?,
        StoreLocation::Sqlite("/var/lib/paywire/facilitator.sqlite".into())
    );
    // The EVM plugin takes both chains: base-sepolia with its listed USDC,
    // base with its well-known one; each serves `exact` and `upto`.
    let registry = PluginRegistry::new().with(Arc::new(paywire_evm::EvmPlugin));
    let parts = paywire_facilitator::chain_parts(&config, &registry).await?;
    let supported = parts.facilitator.supported().await?;
    let kinds: Vec<(&str, &str)> = supported
        .kinds
        .iter()
        .map(|k| (k.scheme.as_str(), k.network.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("exact", "eip155:8453"),
            ("exact", "eip155:84532"),
            ("upto", "eip155:8453"),
            ("upto", "eip155:84532")
        ]
    );
    let probed: Vec<String> = parts
        .probes
        .iter()
        .map(|p| p.network().to_string())
        .collect();
    assert_eq!(probed, ["eip155:84532", "eip155:8453"]);
    // Keys never show in Debug output.
    assert!(!format!("{config:?}").contains("ac0974bec"));
    Ok(())
}

#[tokio::test]
async fn unknown_keys_are_named() {
    let text = MINIMAL.replace("store =", "stor = \"x\"\nstore =");
    let error = FacilitatorConfig::parse_with_env(&text, |_| Some("k".into()))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("stor"), "{error}");

    // A chain's keys are its plugin's: named with the table.
    let error = chain_error(&format!("{MINIMAL}gas_limt = 5\n")).await;
    assert!(
        error.contains("gas_limt") && error.starts_with("chains[0]"),
        "{error}"
    );
}

#[tokio::test]
async fn chain_safety_settings_are_checked_by_the_plugin() {
    let settings = |extra: &str| {
        MINIMAL.replace(
            "signer_private_keys",
            &format!("{extra}\nsigner_private_keys"),
        )
    };
    let valid = settings(
        "counterfactual_wallets = \"deploy\"\nmax_wallet_deployment_gas = 400000\nlog_range_blocks = 500\nreconcile_lookback_seconds = 3600",
    );
    assert_eq!(chain_error(&valid).await, "");
    let error = chain_error(&settings("counterfactual_wallets = \"yes\"")).await;
    assert!(error.contains("deploy"), "{error}");
    let error = chain_error(&settings("log_range_blocks = 0")).await;
    assert!(error.contains("chains[0].log_range_blocks"), "{error}");
}

#[tokio::test]
async fn rpc_urls_and_keys_are_never_printed() -> Result<(), ConfigError> {
    let text = MINIMAL.replace(
        "https://rpc.example",
        "https://user:pass@rpc.example:8545/v2/SECRETPATH?apikey=SECRETQUERY#SECRETFRAGMENT",
    );
    let config = FacilitatorConfig::parse_with_env(&text, |_| Some("0xSECRETKEY".into()))?;
    let printed = format!("{config:?}");
    for secret in ["SECRET", "user", "pass"] {
        assert!(!printed.contains(secret), "{printed}");
    }
    assert!(printed.contains("rpc_urls"), "{printed}");
    // A misshapen value is refused without being quoted.
    for shape in [
        "\"https://rpc.example/SECRET\"",
        "[\"https://a\", 1, \"https://b/SECRET\"]",
    ] {
        let text = MINIMAL.replace("[\"https://rpc.example\"]", shape);
        let error = chain_error(&text).await;
        assert!(error.contains("rpc_urls must be a list"), "{error}");
        assert!(!error.contains("SECRET"), "{error}");
    }
    Ok(())
}

/// The facilitator knows no chain: a `[[chains]]` table whose network no
/// registered plugin serves is refused at start-up, naming the table and
/// the namespace.
#[tokio::test]
async fn a_chain_without_a_registered_plugin_is_named() -> Result<(), ConfigError> {
    let key = |_: &str| Some("0x01".to_owned());
    let solana = MINIMAL.replace("\"base\"", "\"solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp\"");
    let config = FacilitatorConfig::parse_with_env(&solana, key)?;
    let evm_only = PluginRegistry::new().with(Arc::new(paywire_evm::EvmPlugin));
    for registry in [PluginRegistry::new(), evm_only] {
        let error = match paywire_facilitator::build(&config, &registry).await {
            Ok(_) => panic!("a chain no plugin serves was accepted"),
            Err(error) => error.to_string(),
        };
        assert_eq!(
            error,
            "chains[0].network: no plugin is registered for \
             solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp (namespace solana)"
        );
    }
    // Without any plugin even an EVM chain has none; names resolve only
    // through plugins.
    let config =
        FacilitatorConfig::parse_with_env(&MINIMAL.replace("\"base\"", "\"eip155:8453\""), key)?;
    let error = paywire_facilitator::build(&config, &PluginRegistry::new())
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("namespace eip155"), "{error}");
    let config = FacilitatorConfig::parse_with_env(MINIMAL, key)?;
    let error = paywire_facilitator::build(&config, &PluginRegistry::new())
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.starts_with("chains[0].network"), "{error}");
    Ok(())
}

#[test]
fn missing_env_var_is_named() {
    match FacilitatorConfig::parse_with_env(MINIMAL, |_| None) {
        Err(ConfigError::MissingEnv { name, at }) => {
            assert_eq!(name, "KEY");
            assert_eq!(at, "chains[0].signer_private_keys[0]");
        }
        other => panic!("expected MissingEnv, got {other:?}"),
    }
    let error = FacilitatorConfig::parse_with_env(example_config(), |_| None)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    // Tables are visited in key order: `api_keys` comes first.
    assert!(
        error.contains("FACILITATOR_API_KEY") && error.contains("api_keys[0].key"),
        "{error}"
    );
}

#[tokio::test]
async fn invalid_values_are_rejected() {
    let key = |_: &str| Some("0x01".to_owned());
    let postgres = MINIMAL.replace("ledger.sqlite", "postgres://db:notaport/x402");
    let error = FacilitatorConfig::parse_with_env(&postgres, key)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("invalid PostgreSQL URL"), "{error}");
    let mysql = MINIMAL.replace("ledger.sqlite", "mysql://db/x402");
    let error = FacilitatorConfig::parse_with_env(&mysql, key)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("unsupported store URL"), "{error}");

    let unknown_chain = MINIMAL.replace("\"base\"", "\"eip155:999999\"");
    let error = chain_error(&unknown_chain).await;
    assert!(error.contains("chains.assets"), "{error}");

    let bad_asset = format!(
        "{MINIMAL}[[chains.assets]]\naddress = \"0xnope\"\nsymbol = \"X\"\ndecimals = 6\neip712_name = \"X\"\neip712_version = \"1\"\n"
    );
    let error = chain_error(&bad_asset).await;
    assert!(error.contains("chains[0].assets[0].address"), "{error}");

    let wrong_type = MINIMAL.replace("store = \"ledger.sqlite\"", "body_limit_bytes = \"big\"");
    assert!(FacilitatorConfig::parse_with_env(&wrong_type, key).is_err());
}

#[test]
fn operations_sections() -> Result<(), ConfigError> {
    let config = FacilitatorConfig::parse_with_env(example_config(), env)?;
    assert_eq!(config.rate_limit.per_ip_per_minute, Some(600));
    assert_eq!(config.rate_limit.per_payer_per_minute, Some(60));
    assert_eq!(config.rate_limit.max_tracked_keys, 100_000);
    assert_eq!(config.recovery.interval_seconds, 5);
    assert!(!config.fault_injection.crash_after_broadcast);
    let keys = config.api_keys()?;
    assert!(keys.protects(paywire_facilitator::Endpoint::Settle));
    assert!(!keys.protects(paywire_facilitator::Endpoint::Supported));
    assert_eq!(
        keys.identify(Some("Bearer test-api-key-0123456789")),
        Some("shop-a")
    );
    assert_eq!(config.idempotent_retry_window_seconds, 600);

    let minimal = FacilitatorConfig::parse_with_env(MINIMAL, |_| Some("k".into()))?;
    assert!(minimal.api_keys.is_empty());
    assert_eq!(minimal.rate_limit.per_ip_per_minute, None);
    assert_eq!(minimal.rate_limit.max_tracked_keys, 100_000);
    assert!(minimal.rate_limit.per_ip_limiter().is_none());
    let capped = format!("{MINIMAL}[rate_limit]\nper_ip_per_minute = 5\nmax_tracked_keys = 2\n");
    let capped = FacilitatorConfig::parse_with_env(&capped, |_| Some("k".into()))?;
    assert_eq!(capped.rate_limit.max_tracked_keys, 2);
    let limiter = capped
        .rate_limit
        .per_ip_limiter()
        .ok_or(ConfigError::Parse(
            "per_ip_per_minute = 5 builds no limiter".into(),
        ))?;
    assert!(
        format!("{limiter:?}").contains("max_tracked_keys: 2"),
        "{limiter:?}"
    );
    assert!(capped.rate_limit.per_payer_limiter().is_none());
    assert_eq!(minimal.recovery.interval_seconds, 5);
    assert_eq!(minimal.recovery.min_age_seconds, 5);
    assert_eq!(minimal.idempotent_retry_window_seconds, 600);
    assert_eq!(minimal.max_concurrent_settlements, 64);
    assert_eq!(
        minimal.recovery.purge_unsent_failures_after_seconds,
        7 * 24 * 60 * 60
    );
    assert_eq!(config.max_concurrent_settlements, 64);
    assert_eq!(
        config.recovery.purge_unsent_failures_after_seconds,
        7 * 24 * 60 * 60
    );
    let no_slots = format!(
        "max_concurrent_settlements = 0
{MINIMAL}"
    );
    let error = FacilitatorConfig::parse_with_env(&no_slots, |_| Some("k".into()))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("max_concurrent_settlements"), "{error}");

    let twice = format!(
        "{MINIMAL}\n[[api_keys]]\nkey = \"0123456789abcdef\"\nname = \"shop\"\n\
         [[api_keys]]\nkey = \"fedcba9876543210\"\nname = \"shop\"\n"
    );
    let error = FacilitatorConfig::parse_with_env(&twice, |_| Some("k".into()))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("api_keys[1].name"), "{error}");

    let bad_endpoint =
        format!("{MINIMAL}\n[[api_keys]]\nkey = \"0123456789abcdef\"\nendpoints = [\"refund\"]\n");
    let error = FacilitatorConfig::parse_with_env(&bad_endpoint, |_| Some("k".into()))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        error.contains("api_keys[0].endpoints") && error.contains("refund"),
        "{error}"
    );

    let short = format!("{MINIMAL}\n[[api_keys]]\nkey = \"short\"\n");
    let error = FacilitatorConfig::parse_with_env(&short, |_| Some("k".into()))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("api_keys[0].key"), "{error}");

    let unknown = format!("{MINIMAL}\n[fault_injection]\ncrash_before_broadcast = true\n");
    let error = FacilitatorConfig::parse_with_env(&unknown, |_| Some("k".into()))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("crash_before_broadcast"), "{error}");
    Ok(())
}

#[test]
fn postgres_store_urls_select_the_postgres_ledger() -> Result<(), ConfigError> {
    let key = |_: &str| Some("0x01".to_owned());
    for url in [
        "postgres://x402@db.internal:5432/x402",
        "postgresql://x402:secret@127.0.0.1/ledger",
    ] {
        let config =
            FacilitatorConfig::parse_with_env(&MINIMAL.replace("ledger.sqlite", url), key)?;
        assert_eq!(
            config.store_location()?,
            StoreLocation::Postgres(url.into())
        );
    }
    Ok(())
}
