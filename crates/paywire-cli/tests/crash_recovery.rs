//! Crash recovery with a real process: `paywire facilitator` with fault
//! injection aborts right after broadcasting a settlement; restarted without
//! it, the settlement is finalised once with the hash recorded before the
//! broadcast.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use alloy_primitives::{Address, U256};
use paywire_core::{PaymentPayload, PaymentRequirements};
use paywire_evm::LocalSigner;
use paywire_evm::exact::ExactEvmClient;
use paywire_facilitator::{Ledger, SettlementState};
use paywire_testkit::Devnet;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const PRICE: u64 = 10_000;

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn config(devnet: &Devnet, port: u16, store: &Path, crash: bool) -> String {
    format!(
        r#"
listen = "127.0.0.1:{port}"
store = "{store}"
receipt_timeout_seconds = 20
rpc_timeout_seconds = 2

[recovery]
interval_seconds = 1
min_age_seconds = 1

[fault_injection]
crash_after_broadcast = {crash}

[[chains]]
network = "{network}"
rpc_urls = ["{rpc}"]
signer_private_keys = ["${{TEST_SIGNER_KEY}}"]
gas_limit = 300000
max_fee_per_gas_gwei = 100

[[chains.assets]]
address = "{usdc}"
symbol = "USDC"
decimals = 6
eip712_name = "USD Coin"
eip712_version = "2"
"#,
        store = store.display(),
        network = devnet.network(),
        rpc = devnet.rpc_url(),
        usdc = devnet.usdc(),
    )
}

struct Facilitator {
    child: Child,
    log: PathBuf,
    base: String,
}

impl Facilitator {
    async fn start(
        devnet: &Devnet,
        dir: &Path,
        name: &str,
        config_text: &str,
        port: u16,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, config_text)?;
        let log = dir.join(format!("{name}.log"));
        // Through a shell only to disable core dumps of the injected abort.
        let child = Command::new("sh")
            .arg("-c")
            .arg("ulimit -c 0; exec \"$0\" facilitator --config \"$1\"")
            .arg(env!("CARGO_BIN_EXE_paywire"))
            .arg(&config)
            .env("TEST_SIGNER_KEY", devnet.usdc_owner().private_key_hex())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true)
            .spawn()?;
        let mut this = Self {
            child,
            log,
            base: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if let Some(status) = this.child.try_wait()? {
                return Err(format!("facilitator exited ({status}): {}", this.log_text()).into());
            }
            if let Ok(response) = client.get(this.url("/health")).send().await
                && response.status().is_success()
            {
                return Ok(this);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("facilitator did not come up: {}", this.log_text()).into())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn requirements(devnet: &Devnet, pay_to: Address) -> PaymentRequirements {
    serde_json::from_value(json!({
        "scheme": "exact",
        "network": devnet.network(),
        "amount": PRICE.to_string(),
        "asset": devnet.usdc().to_string(),
        "payTo": pay_to.to_string(),
        "maxTimeoutSeconds": 60,
        "extra": {"name": "USD Coin", "version": "2"}
    }))
    .expect("requirements are well formed")
}

async fn settle_body(
    devnet: &Devnet,
    payer: usize,
    requirements: &PaymentRequirements,
) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
    let client = ExactEvmClient::new(LocalSigner::new(devnet.payer(payer).signer()));
    let exact = client.sign(requirements).await?;
    let payload = PaymentPayload {
        x402_version: 2,
        payload: exact.to_json(),
        extensions: None,
        resource: None,
        accepted: requirements.clone(),
    };
    Ok(json!({
        "x402Version": 2,
        "paymentPayload": payload,
        "paymentRequirements": requirements,
    }))
}

#[tokio::test]
async fn crash_after_broadcast_is_finalised_once_after_restart() -> TestResult {
    let devnet = Devnet::start().await?;
    let dir = tempfile::tempdir()?;
    let store = dir.path().join("ledger.sqlite");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let pay_to = Address::random();
    let payer = devnet.payer(2).address;
    let requirements = requirements(&devnet, pay_to);
    let body = settle_body(&devnet, 2, &requirements).await?;
    let payer_before = devnet.usdc_balance(payer).await?;

    // 1. The process dies right after broadcasting.
    let port = free_port()?;
    let mut first = Facilitator::start(
        &devnet,
        dir.path(),
        "crashing",
        &config(&devnet, port, &store, true),
        port,
    )
    .await?;
    let answer = client.post(first.url("/settle")).json(&body).send().await;
    assert!(
        answer.is_err(),
        "expected the connection to drop, got {answer:?}"
    );
    let status = tokio::time::timeout(Duration::from_secs(20), first.child.wait()).await??;
    assert!(!status.success(), "{status}");
    let log = first.log_text();
    assert!(log.contains("fault injection"), "{log}");

    // 2. The ledger knew the transaction before it was sent.
    let (fingerprint, transaction) = {
        let ledger = Ledger::open(&store).await?;
        let open = ledger.unresolved().await?;
        assert_eq!(open.len(), 1, "{open:?}");
        let row = &open[0];
        assert_eq!(row.state, SettlementState::Submitted, "{row:?}");
        assert!(row.request.is_some());
        let transaction = row
            .transaction
            .clone()
            .ok_or("no transaction hash recorded")?;
        assert_eq!(transaction.len(), 66);
        (row.fingerprint.clone(), transaction)
    };

    // 3. Restart without the fault: startup recovery finalises it; the retried
    //    /settle answers the same transaction.
    let port = free_port()?;
    let mut second = Facilitator::start(
        &devnet,
        dir.path(),
        "restarted",
        &config(&devnet, port, &store, false),
        port,
    )
    .await?;
    let response = client
        .post(second.url("/settle"))
        .json(&body)
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 200);
    let settled: Value = response.json().await?;
    assert_eq!(settled["success"], json!(true), "{settled}");
    assert_eq!(settled["transaction"], json!(transaction), "{settled}");

    devnet.mine().await?;
    assert_eq!(devnet.usdc_balance(pay_to).await?, U256::from(PRICE));
    assert_eq!(
        devnet.usdc_balance(payer).await?,
        payer_before - U256::from(PRICE)
    );

    let ledger = Ledger::open(&store).await?;
    let row = ledger.get(&fingerprint).await?.ok_or("row vanished")?;
    assert_eq!(row.state, SettlementState::Confirmed, "{row:?}");
    assert_eq!(row.transaction.as_deref(), Some(transaction.as_str()));
    assert!(ledger.unresolved().await?.is_empty());
    drop(ledger);

    let metrics = client
        .get(second.url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("paywire_recovered_total{outcome=\"confirmed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("paywire_settle_total{outcome=\"cached\",reason=\"confirmed\",network=\"eip155:31337\",scheme=\"exact\"} 1"),
        "{metrics}"
    );

    // 4. SIGTERM: a clean exit.
    #[cfg(unix)]
    {
        let pid = second.child.id().ok_or("no pid")?;
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
        assert!(killed.success());
        let status = tokio::time::timeout(Duration::from_secs(20), second.child.wait()).await??;
        assert!(status.success(), "{status}: {}", second.log_text());
        assert!(second.log_text().contains("shutting down"));
    }
    Ok(())
}
