//! Configuration parsing: example, unknown keys, environment substitution.

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

#[test]
fn example_parses() -> Result<(), ConfigError> {
    let config = FacilitatorConfig::parse_with_env(example_config(), env)?;
    assert_eq!(config.chains.len(), 2);
    assert_eq!(
        config.chains[0].rpc_urls,
        [
            "https://rpc.example/base-sepolia",
            "https://sepolia.base.org"
        ]
    );
    assert_eq!(
        config.store_location()?,
        StoreLocation::Sqlite("/var/lib/paywire/facilitator.sqlite".into())
    );
    let sepolia = config.resolve_chain(0)?;
    assert_eq!(sepolia.network.chain_id, 84532);
    assert_eq!(sepolia.max_fee_per_gas, 5_000_000_000);
    let base = config.resolve_chain(1)?;
    assert_eq!(base.network.chain_id, 8453);
    assert_eq!(base.network.default_asset.symbol, "USDC");
    assert_eq!(base.max_fee_per_gas, 500_000_000);
    // Keys never show in Debug output.
    assert!(!format!("{config:?}").contains("ac0974bec"));
    Ok(())
}

#[test]
fn unknown_keys_are_named() {
    let text = MINIMAL.replace("store =", "stor = \"x\"\nstore =");
    let error = FacilitatorConfig::parse_with_env(&text, |_| Some("k".into()))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("stor"), "{error}");

    let text = format!("{MINIMAL}gas_limt = 5\n");
    let error = FacilitatorConfig::parse_with_env(&text, |_| Some("k".into()))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("gas_limt"), "{error}");
}

#[test]
fn chain_safety_settings() -> Result<(), ConfigError> {
    use paywire_evm::exact::CounterfactualWallets;
    let key = |_: &str| Some("0x01".to_owned());
    let config = FacilitatorConfig::parse_with_env(MINIMAL, key)?;
    assert_eq!(config.receipt_timeout_seconds, 20);
    let chain = config.resolve_chain(0)?;
    assert_eq!(chain.counterfactual_wallets, CounterfactualWallets::Off);
    assert_eq!(chain.max_wallet_deployment_gas, 1_000_000);
    assert_eq!(chain.log_range_blocks, 2_000);
    assert_eq!(chain.reconcile_lookback.as_secs(), 86_400);

    let settings = |extra: &str| {
        MINIMAL.replace(
            "signer_private_keys",
            &format!("{extra}\nsigner_private_keys"),
        )
    };
    let on = FacilitatorConfig::parse_with_env(
        &settings("counterfactual_wallets = \"deploy\"\nmax_wallet_deployment_gas = 400000\nlog_range_blocks = 500\nreconcile_lookback_seconds = 3600"),
        key,
    )?
    .resolve_chain(0)?;
    assert_eq!(on.counterfactual_wallets, CounterfactualWallets::Deploy);
    assert_eq!(on.max_wallet_deployment_gas, 400_000);
    assert_eq!(on.log_range_blocks, 500);
    assert_eq!(on.reconcile_lookback.as_secs(), 3_600);

    let error =
        FacilitatorConfig::parse_with_env(&settings("counterfactual_wallets = \"yes\""), key)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
    assert!(error.contains("deploy"), "{error}");
    let error = FacilitatorConfig::parse_with_env(&settings("log_range_blocks = 0"), key)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("log_range_blocks"), "{error}");
    Ok(())
}

#[test]
fn rpc_urls_print_as_scheme_and_host() -> Result<(), ConfigError> {
    let text = MINIMAL.replace(
        "https://rpc.example",
        "https://user:pass@rpc.example:8545/v2/SECRETPATH?apikey=SECRETQUERY#SECRETFRAGMENT",
    );
    let config = FacilitatorConfig::parse_with_env(&text, |_| Some("0x01".into()))?;
    let printed = format!("{config:?} {:?}", config.resolve_chain(0)?);
    assert!(printed.contains("https://rpc.example:8545"), "{printed}");
    for secret in ["SECRET", "user", "pass"] {
        assert!(!printed.contains(secret), "{printed}");
    }
    assert!(config.chains[0].rpc_urls[0].expose().contains("SECRETPATH"));
    // A misshapen value is refused without being quoted.
    for shape in [
        "\"https://rpc.example/SECRET\"",
        "[\"https://a\", 1, \"https://b/SECRET\"]",
    ] {
        let text = MINIMAL.replace("[\"https://rpc.example\"]", shape);
        let error = FacilitatorConfig::parse_with_env(&text, |_| Some("0x01".into()))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("rpc_urls must be a list"), "{error}");
        assert!(!error.contains("SECRET"), "{error}");
    }
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

#[test]
fn invalid_values_are_rejected() {
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
    let error = FacilitatorConfig::parse_with_env(&unknown_chain, key)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("chains.assets"), "{error}");

    let solana = MINIMAL.replace("\"base\"", "\"solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp\"");
    assert!(FacilitatorConfig::parse_with_env(&solana, key).is_err());

    let bad_asset = format!(
        "{MINIMAL}[[chains.assets]]\naddress = \"0xnope\"\nsymbol = \"X\"\ndecimals = 6\neip712_name = \"X\"\neip712_version = \"1\"\n"
    );
    let error = FacilitatorConfig::parse_with_env(&bad_asset, key)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("chains[0].assets[0].address"), "{error}");

    let wrong_type = MINIMAL.replace("store = \"ledger.sqlite\"", "body_limit_bytes = \"big\"");
    assert!(FacilitatorConfig::parse_with_env(&wrong_type, key).is_err());
}

#[test]
fn operations_sections() -> Result<(), ConfigError> {
    let config = FacilitatorConfig::parse_with_env(example_config(), env)?;
    assert_eq!(config.rate_limit.per_ip_per_minute, Some(600));
    assert_eq!(config.rate_limit.per_payer_per_minute, Some(60));
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

/// The dedicated `paywire-facilitator` binary: documented example, clear usage
/// errors, and it serves from a configuration file.
#[tokio::test]
async fn dedicated_binary_runs_the_service() {
    let binary = env!("CARGO_BIN_EXE_paywire-facilitator");
    let example = std::process::Command::new(binary)
        .arg("--print-config-example")
        .output()
        .expect("run");
    assert!(example.status.success());
    let text = String::from_utf8_lossy(&example.stdout);
    assert!(
        text.contains("[[chains]]") && text.contains("[bazaar]"),
        "{text}"
    );
    for args in [
        &[][..],
        &["--config"][..],
        &["--bogus"][..],
        &["--config", "/nonexistent.toml"][..],
    ] {
        let output = std::process::Command::new(binary)
            .args(args)
            .output()
            .expect("run");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("error"),
            "{args:?}"
        );
    }

    let devnet = paywire_testkit::Devnet::start().await.expect("devnet");
    let dir = tempfile::tempdir().expect("dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let text = format!(
        "listen = \"127.0.0.1:{port}\"\nstore = \"{}\"\n[[chains]]\nnetwork = \"eip155:31337\"\nrpc_urls = [\"{}\"]\nsigner_private_keys = [\"${{KEY}}\"]\n[[chains.assets]]\naddress = \"{}\"\nsymbol = \"USDC\"\ndecimals = 6\neip712_name = \"USD Coin\"\neip712_version = \"2\"\n",
        dir.path().join("ledger.sqlite").display(),
        devnet.rpc_url(),
        devnet.usdc()
    );
    let config = dir.path().join("facilitator.toml");
    std::fs::write(&config, text).expect("write");
    let mut child = tokio::process::Command::new(binary)
        .arg("--config")
        .arg(&config)
        .env("KEY", devnet.usdc_owner().private_key_hex())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let url = format!("http://127.0.0.1:{port}/supported");
    let mut supported = None;
    for _ in 0..200 {
        if let Ok(response) = reqwest::get(&url).await {
            supported = Some(response.json::<serde_json::Value>().await.expect("json"));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let supported = supported.expect("the binary serves /supported");
    assert_eq!(
        supported["kinds"][0]["network"], "eip155:31337",
        "{supported}"
    );
    child.kill().await.expect("kill");
}
