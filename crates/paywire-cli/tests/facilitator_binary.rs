//! The dedicated `paywire-facilitator` binary (this package's second
//! binary, the facilitator's composition root with the EVM plugin).

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

/// The dedicated binary carries the facilitator only: none of the CLI's
/// other commands (gateway, pay, demo, devnet) is linked into it.
#[test]
fn dedicated_binary_is_smaller_than_the_cli() {
    let size = |path: &str| std::fs::metadata(path).map(|m| m.len()).expect("binary");
    let dedicated = size(env!("CARGO_BIN_EXE_paywire-facilitator"));
    let all_in_one = size(env!("CARGO_BIN_EXE_paywire"));
    assert!(
        dedicated * 10 < all_in_one * 8,
        "paywire-facilitator is {dedicated} bytes, paywire {all_in_one}"
    );
}
