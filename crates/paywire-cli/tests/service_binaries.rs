//! The dedicated service binaries: `paywire-facilitator` (the facilitator's
//! composition root with the EVM plugin) and `paywire-gateway` (the gateway's,
//! with the chain plugins that price routes).

use std::path::PathBuf;

/// The service binary `name` under test: the one in `PAYWIRE_SERVICE_BIN_DIR`
/// when that is set (CI points it at the lean `--no-default-features` build,
/// which this test's own build never produces), else `built`, the one cargo
/// built next to the CLI for this test.
fn service_binary(name: &str, built: &str) -> PathBuf {
    match std::env::var_os("PAYWIRE_SERVICE_BIN_DIR") {
        Some(dir) => {
            let path = PathBuf::from(dir).join(name);
            assert!(
                path.is_file(),
                "PAYWIRE_SERVICE_BIN_DIR is set but has no {name}: {}",
                path.display()
            );
            path
        }
        None => PathBuf::from(built),
    }
}

/// A service binary prints its documented example (containing `sections`)
/// and refuses a missing, unknown or unreadable configuration with exit 2.
fn prints_example_and_refuses_bad_arguments(binary: &std::path::Path, sections: &[&str]) {
    let example = std::process::Command::new(binary)
        .arg("--print-config-example")
        .output()
        .expect("run");
    assert!(example.status.success());
    let text = String::from_utf8_lossy(&example.stdout);
    for section in sections {
        assert!(
            text.contains(section),
            "{}: {section} missing in {text}",
            binary.display()
        );
    }
    for args in [
        &[][..],
        &["--config"][..],
        &["--bogus"][..],
        &["--log-format", "xml"][..],
        &["--config", "/nonexistent.toml"][..],
    ] {
        let output = std::process::Command::new(binary)
            .args(args)
            .output()
            .expect("run");
        assert_eq!(
            output.status.code(),
            Some(2),
            "{} {args:?}",
            binary.display()
        );
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("error"),
            "{} {args:?}",
            binary.display()
        );
    }
}

/// GETs `url` until something answers (up to 5 s).
async fn first_answer(url: &str) -> reqwest::Response {
    for _ in 0..200 {
        if let Ok(response) = reqwest::get(url).await {
            return response;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("nothing answers at {url}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

/// The dedicated `paywire-facilitator` and `paywire-gateway` binaries:
/// documented examples, clear usage errors, and they serve from their
/// configuration files (the gateway prices a route through the facilitator).
#[tokio::test]
async fn dedicated_binaries_run_the_services() {
    let binary = &service_binary(
        "paywire-facilitator",
        env!("CARGO_BIN_EXE_paywire-facilitator"),
    );
    prints_example_and_refuses_bad_arguments(binary, &["[[chains]]", "[bazaar]", "[runtime]"]);
    let gateway = &service_binary("paywire-gateway", env!("CARGO_BIN_EXE_paywire-gateway"));
    prints_example_and_refuses_bad_arguments(gateway, &["[[routes]]", "[runtime]"]);

    // A chain no registered plugin serves: refused at start, named.
    let dir = tempfile::tempdir().expect("dir");
    let unserved = dir.path().join("unserved.toml");
    let text = "[[chains]]\nnetwork = \"solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp\"\nrpc_urls = []\nsigner_private_keys = []\n";
    std::fs::write(&unserved, text).expect("write");
    let output = std::process::Command::new(binary)
        .arg("--config")
        .arg(&unserved)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("chains[0].network: no plugin is registered"),
        "{stderr}"
    );

    let devnet = paywire_testkit::Devnet::start().await.expect("devnet");
    let port = free_port();
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
    let supported: serde_json::Value = first_answer(&format!("http://127.0.0.1:{port}/supported"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        supported["kinds"][0]["network"], "eip155:31337",
        "{supported}"
    );

    let gateway_port = free_port();
    let text = format!(
        "listen = \"127.0.0.1:{gateway_port}\"\npublic_origin = \"https://api.example\"\nupstream = \"http://127.0.0.1:9\"\n[runtime]\nworker_threads = 1\n[[facilitators]]\nurl = \"http://127.0.0.1:{port}\"\n[[networks]]\nnetwork = \"eip155:31337\"\nname = \"Anvil\"\nasset = {{ address = \"{}\", symbol = \"USDC\", decimals = 6, eip712_name = \"USD Coin\", eip712_version = \"2\", usd_stable = true }}\n[[routes]]\nmethod = \"GET\"\npath = \"/paid\"\n[[routes.accepts]]\nnetwork = \"eip155:31337\"\nprice = \"$0.25\"\npay_to = \"0x209693Bc6afc0C5328bA36FaF03C514EF312287C\"\n",
        devnet.usdc()
    );
    let gateway_config = dir.path().join("gateway.toml");
    std::fs::write(&gateway_config, text).expect("write");
    let mut gateway_child = tokio::process::Command::new(gateway)
        .arg("--config")
        .arg(&gateway_config)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("spawn gateway");
    let unpaid = first_answer(&format!("http://127.0.0.1:{gateway_port}/paid")).await;
    assert_eq!(unpaid.status(), 402);
    let header = unpaid
        .headers()
        .get("payment-required")
        .expect("PAYMENT-REQUIRED");
    let required: serde_json::Value =
        paywire_core::codec::decode_header(header.as_bytes()).expect("decodes");
    assert_eq!(
        required["accepts"][0]["network"], "eip155:31337",
        "{required}"
    );
    assert_eq!(required["accepts"][0]["amount"], "250000", "{required}");
    gateway_child.kill().await.expect("kill gateway");
    child.kill().await.expect("kill");
}

/// The dedicated binaries carry their service only: none of the CLI's other
/// commands (pay, demo, devnet, mcp) is linked into them.
#[test]
fn dedicated_binary_is_smaller_than_the_cli() {
    let size = |path: PathBuf| std::fs::metadata(path).map(|m| m.len()).expect("binary");
    let all_in_one = size(PathBuf::from(env!("CARGO_BIN_EXE_paywire")));
    for (name, dedicated) in [
        (
            "paywire-facilitator",
            size(service_binary(
                "paywire-facilitator",
                env!("CARGO_BIN_EXE_paywire-facilitator"),
            )),
        ),
        (
            "paywire-gateway",
            size(service_binary(
                "paywire-gateway",
                env!("CARGO_BIN_EXE_paywire-gateway"),
            )),
        ),
    ] {
        assert!(
            dedicated * 10 < all_in_one * 8,
            "{name} is {dedicated} bytes, paywire {all_in_one}"
        );
    }
}
