//! The `paywire` binary's facilitator subcommand: example configuration and errors.

use std::process::Command;

use paywire_facilitator::FacilitatorConfig;

fn paywire(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_paywire"))
        .args(args)
        .output()
        .expect("the paywire binary runs")
}

#[test]
fn print_config_example_parses() {
    let output = paywire(&["facilitator", "--print-config-example"]);
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).expect("utf-8");
    assert_eq!(text, paywire_facilitator::example_config());
    let mut seen = std::cell::RefCell::new(Vec::new());
    let config = FacilitatorConfig::parse_with_env(&text, |name| {
        seen.borrow_mut().push(name.to_owned());
        Some(match name {
            "FACILITATOR_PRIVATE_KEY" => {
                "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80".to_owned()
            }
            "FACILITATOR_API_KEY" => "an-api-key-of-some-length".to_owned(),
            other => format!("https://rpc.example/{other}"),
        })
    })
    .expect("the printed example is a valid configuration");
    assert_eq!(config.chains.len(), 2);
    assert_eq!(config.listen.to_string(), "127.0.0.1:8402");
    assert!(!config.fault_injection.crash_after_broadcast);
    let seen = seen.get_mut();
    for name in [
        "BASE_SEPOLIA_RPC_URL",
        "BASE_RPC_URL",
        "FACILITATOR_PRIVATE_KEY",
        "FACILITATOR_API_KEY",
    ] {
        assert!(seen.iter().any(|s| s == name), "{name} not referenced");
    }
}

#[test]
fn facilitator_errors_are_clear() {
    let output = paywire(&["facilitator"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--config"));

    let output = paywire(&["facilitator", "--config", "/nonexistent/facilitator.toml"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot read config file /nonexistent/facilitator.toml"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("f.toml");
    std::fs::write(&path, "listen = \"127.0.0.1:0\"\nbogus = 1\n").expect("write");
    let output = paywire(&["facilitator", "--config", path.to_str().unwrap_or_default()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bogus"), "{stderr}");
}

#[test]
fn decode_and_network_still_work() {
    let output = paywire(&["network", "base"]);
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "eip155:8453"
    );
}

#[test]
fn gateway_prints_a_parsable_example_and_needs_a_config() {
    let output = Command::new(env!("CARGO_BIN_EXE_paywire"))
        .args(["gateway", "--print-config-example"])
        .output()
        .expect("run paywire");
    assert!(output.status.success());
    let example = String::from_utf8(output.stdout).expect("utf-8");
    assert!(example.contains("[[routes]]"), "{example}");
    let missing = Command::new(env!("CARGO_BIN_EXE_paywire"))
        .args(["gateway", "--config", "/nonexistent/gateway.toml"])
        .output()
        .expect("run paywire");
    assert_eq!(missing.status.code(), Some(2));
}
