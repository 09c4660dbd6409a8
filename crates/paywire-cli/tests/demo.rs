//! `paywire demo` runs end to end and its final table shows every call paid,
//! one of them on Solana, one metered (`upto`, charged by its usage) and one
//! a paid MCP tool call.

#[test]
fn demo_runs_end_to_end() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_paywire"))
        .arg("demo")
        .env("NO_COLOR", "1")
        .output()
        .expect("run paywire demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let table: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("request"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(table.len(), 12, "{stdout}");
    for row in &table[..6] {
        assert!(row.contains(" anvil "), "{row}");
        assert!(row.contains(" paid "), "{row}");
        assert!(row.contains(" 0x"), "a transaction hash: {row}");
    }
    // The metered call is charged its usage, not the $0.05 it authorized.
    let metered = table[4];
    assert!(metered.starts_with("GET /generate"), "{metered}");
    assert!(metered.contains(" 0.01858 USDC  paid "), "{metered}");
    assert!(
        stdout.contains("paid 0.01858 USDC (authorized at most 0.05 USDC)"),
        "{stdout}"
    );
    for row in &table[6..8] {
        assert!(
            row.contains(" session "),
            "a returning wallet signs in: {row}"
        );
        assert!(!row.contains(" 0x"), "no transaction: {row}");
    }
    // The agent preferring Solana pays on Solana (a base58 signature, no
    // 0x hash) although the route offers anvil too.
    let solana = table[8];
    assert!(
        solana.starts_with("GET /weather (prefers Solana)"),
        "{solana}"
    );
    assert!(solana.contains(" solana-devnet "), "{solana}");
    assert!(solana.contains(" 0.01 USDC  paid "), "{solana}");
    assert!(!solana.contains(" 0x"), "{solana}");
    // The agent's paid MCP tool call: a gateway route as a tool, paid on
    // the EVM chain within the agent's budget, its receipt in `_meta`.
    let mcp = table[9];
    assert!(mcp.starts_with("MCP get_forecast_city (Lisbon)"), "{mcp}");
    assert!(mcp.contains(" anvil "), "{mcp}");
    assert!(mcp.contains(" 0.01 USDC  paid "), "{mcp}");
    assert!(mcp.contains(" 0x"), "a transaction hash: {mcp}");
    assert!(
        stdout.contains("(receipt in _meta); the budget counts it"),
        "{stdout}"
    );
    assert!(stdout.contains("spent 0.13858 USDC"), "{stdout}");
    // The bank rail: two calls paid from a euro bundle bought by SEPA
    // mandate, each charged its usage; the payout pays the seller.
    for row in &table[10..12] {
        assert!(row.starts_with("GET /report (credits"), "{row}");
        assert!(row.contains(" acme:credit "), "{row}");
        assert!(row.contains(" 0.35 EUR  paid "), "{row}");
    }
    assert!(
        stdout.contains("seller shop: 2 charge(s), gross 0.70 EUR, fee 0.01 EUR, net 0.69 EUR"),
        "{stdout}"
    );
    assert!(stdout.contains("pain.001 written: "), "{stdout}");
    let line = |prefix: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        line("solana payer ").ends_with("spent 0.01 USDC"),
        "{stdout}"
    );
    assert!(
        line("solana merchant ").ends_with("received 0.01 USDC"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 paid endpoints cataloged after settlement; cheapest for \"weather\""),
        "{stdout}"
    );
    assert!(stdout.contains("refused: it would exceed"), "{stdout}");
    assert!(
        stdout.contains("demo complete: every step did what it says"),
        "{stdout}"
    );
    assert!(
        !stdout.contains('\x1b'),
        "no colour codes without a terminal"
    );
}
