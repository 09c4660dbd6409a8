//! Several facilitator instances sharing one PostgreSQL ledger, each with
//! its own settlement signer: separate OS processes (this test binary
//! re-executed to run [`facilitator_child_process`]), and in-process
//! instances (own locks and connections; only the database is shared).

mod common;

use alloy_primitives::{Address, U256};
use common::origin::{Origin, wait_for_outcome};
use common::*;
use paywire_facilitator::SettlementState;
use paywire_facilitator::ledger::fingerprint;
use paywire_testkit::Devnet;
use serde_json::{Value, json};

async fn nonce(
    devnet: &Devnet,
    address: Address,
) -> Result<u64, Box<dyn std::error::Error + Send + Sync>> {
    let answer = devnet
        .rpc(
            "eth_getTransactionCount",
            json!([address.to_string(), "latest"]),
        )
        .await?;
    let text = answer.as_str().ok_or("nonce is not a string")?;
    Ok(u64::from_str_radix(text.trim_start_matches("0x"), 16)?)
}

/// The value of the metric line starting with `name ` (0 when absent).
async fn metric(
    server: &Server,
    name: &str,
) -> Result<u64, Box<dyn std::error::Error + Send + Sync>> {
    metric_at(&server.base, name).await
}

async fn metric_at(
    base: &str,
    name: &str,
) -> Result<u64, Box<dyn std::error::Error + Send + Sync>> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0))
}

/// Two instances (different signers) on one database.
async fn two_instances(
    devnet: &Devnet,
    store: &TestStore,
) -> Result<(Server, Server), Box<dyn std::error::Error + Send + Sync>> {
    let text = config_text(
        devnet.network(),
        devnet.rpc_url(),
        Some(devnet.usdc()),
        &store.location(),
    );
    let a = start_from(&text, &devnet.usdc_owner().private_key_hex()).await?;
    let b = start_from(&text, &devnet.payer(8).private_key_hex()).await?;
    Ok((a, b))
}

#[tokio::test]
async fn two_instances_settle_one_payment_once() -> TestResult {
    let Some(store) = TestStore::postgres().await? else {
        return Ok(());
    };
    let devnet = Devnet::start().await?;
    let (a, b) = two_instances(&devnet, &store).await?;
    let signers = [devnet.usdc_owner().address, devnet.payer(8).address];
    let nonces_before = [
        nonce(&devnet, signers[0]).await?,
        nonce(&devnet, signers[1]).await?,
    ];
    let pay_to = Address::random();
    let payer = devnet.payer(2).address;
    let requirements = requirements(&devnet, pay_to);
    let payload = pay(&devnet, 2, &requirements, None).await?;
    let request = body(&payload, &requirements);
    let payer_before = balance(&devnet, payer).await?;

    // Blocks every second instead of one per transaction: each settlement
    // waits for its receipt, so the requests below really overlap.
    devnet.rpc("evm_setAutomine", json!([false])).await?;

    // Four identical settles at each instance, all at once.
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for n in 0..8 {
        let url = if n % 2 == 0 {
            a.url("/settle")
        } else {
            b.url("/settle")
        };
        let (client, request) = (client.clone(), request.clone());
        tasks.push(tokio::spawn(
            async move { post(&client, &url, &request).await },
        ));
    }
    // One success across both instances; every other settle is a replay.
    let mut settled: Vec<Value> = Vec::new();
    for task in tasks {
        let (status, answer) = task.await??;
        if answer["success"] == json!(true) {
            settled.push(answer);
        } else {
            assert_replay_refused(status, &answer);
        }
    }
    assert_eq!(settled.len(), 1, "{settled:#?}");
    let transaction = settled[0]["transaction"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(transaction.len(), 66);

    // Exactly one transfer: balances exact, one transaction sent in total.
    devnet.mine().await?;
    assert_eq!(balance(&devnet, pay_to).await?, U256::from(PRICE));
    assert_eq!(
        balance(&devnet, payer).await?,
        payer_before - U256::from(PRICE)
    );
    let sent = nonce(&devnet, signers[0]).await? - nonces_before[0]
        + nonce(&devnet, signers[1]).await?
        - nonces_before[1];
    assert_eq!(sent, 1, "transactions sent by the two instances");
    // The scheme ran once across both instances; every other answer came
    // from the shared ledger.
    let runs = metric(
        &a,
        "paywire_settle_duration_seconds_count{network=\"eip155:31337\",scheme=\"exact\"}",
    )
    .await?
        + metric(
            &b,
            "paywire_settle_duration_seconds_count{network=\"eip155:31337\",scheme=\"exact\"}",
        )
        .await?;
    assert_eq!(runs, 1);
    let replay = "paywire_settle_total{outcome=\"replay\",reason=\"invalid_exact_evm_nonce_already_used\",network=\"eip155:31337\",scheme=\"exact\"}";
    let refused = metric(&a, replay).await? + metric(&b, replay).await?;
    assert_eq!(refused, 7);

    let key = fingerprint(&payload.payload, &requirements);
    for server in [&a, &b] {
        let record = server.state.ledger().get(&key).await?.ok_or("no record")?;
        assert_eq!(record.state, SettlementState::Confirmed);
        assert_eq!(record.transaction.as_deref(), Some(transaction.as_str()));
        assert_eq!(record.attempts, 1);
    }
    a.stop().await;
    b.stop().await;
    Ok(())
}

#[tokio::test]
async fn two_instances_share_payment_identifier_bindings() -> TestResult {
    let Some(store) = TestStore::postgres().await? else {
        return Ok(());
    };
    let devnet = Devnet::start().await?;
    let (a, b) = two_instances(&devnet, &store).await?;
    let pay_to = Address::random();
    let requirements = requirements(&devnet, pay_to);
    let id = "pay_shared_between_instances_01";
    // Two different payments under one id, one to each instance, at once.
    let first = body(
        &pay(&devnet, 5, &requirements, Some(id)).await?,
        &requirements,
    );
    let second = body(
        &pay(&devnet, 5, &requirements, Some(id)).await?,
        &requirements,
    );
    let client = reqwest::Client::new();
    let (url_a, url_b) = (a.url("/settle"), b.url("/settle"));
    let (one, two) = tokio::join!(
        post(&client, &url_a, &first),
        post(&client, &url_b, &second)
    );
    let (one, two) = (one?, two?);
    let mut statuses = [one.0, two.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{one:?} {two:?}");
    let (winner, loser) = if one.0 == 200 {
        (&one.1, &two.1)
    } else {
        (&two.1, &one.1)
    };
    assert_eq!(winner["success"], json!(true), "{winner}");
    assert_eq!(
        loser["error"],
        json!("payment_identifier_conflict"),
        "{loser}"
    );
    assert_eq!(balance(&devnet, pay_to).await?, U256::from(PRICE));

    // Either instance answers the winning payload from the ledger.
    let winning = if one.0 == 200 { &first } else { &second };
    for server in [&a, &b] {
        let (status, again) = post(&client, &server.url("/settle"), winning).await?;
        assert_eq!(status, 200);
        assert_eq!(&again, winner);
    }
    assert_eq!(balance(&devnet, pay_to).await?, U256::from(PRICE));
    a.stop().await;
    b.stop().await;
    Ok(())
}

const CHILD_CONFIG_ENV: &str = "PAYWIRE_TEST_FACILITATOR_CONFIG";

/// Not a test: the body of a facilitator child process, run by
/// [`FacilitatorProcess::start`] (which re-executes this test binary with
/// `--exact facilitator_child_process --ignored`). Serves until killed.
#[tokio::test]
#[ignore = "helper: runs a facilitator when spawned by another test"]
async fn facilitator_child_process() -> TestResult {
    let Some(path) = std::env::var_os(CHILD_CONFIG_ENV) else {
        return Ok(());
    };
    let config = paywire_facilitator::FacilitatorConfig::load(std::path::Path::new(&path))?;
    paywire_facilitator::run(config, &plugins()).await?;
    Ok(())
}

/// A facilitator in its own OS process; SIGKILLed on drop.
struct FacilitatorProcess {
    base: String,
    child: tokio::process::Child,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl FacilitatorProcess {
    async fn start(
        devnet: &Devnet,
        store: &TestStore,
        signer_key: &str,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let text = config_text(
            devnet.network(),
            devnet.rpc_url(),
            Some(devnet.usdc()),
            &store.location(),
        )
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
        let config = dir.path().join("facilitator.toml");
        std::fs::write(&config, text)?;
        let log = dir.path().join("facilitator.log");
        let out = std::fs::File::create(&log)?;
        let child = tokio::process::Command::new(std::env::current_exe()?)
            .args([
                "--exact",
                "facilitator_child_process",
                "--ignored",
                "--nocapture",
            ])
            .env(CHILD_CONFIG_ENV, &config)
            .env("TEST_SIGNER_KEY", signer_key)
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()?;
        let mut process = Self {
            base: format!("http://127.0.0.1:{port}"),
            child,
            log,
            _dir: dir,
        };
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if let Some(status) = process.child.try_wait()? {
                return Err(format!(
                    "facilitator process exited ({status}):\n{}",
                    process.log_text()
                )
                .into());
            }
            let health = client.get(format!("{}/health", process.base)).send().await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return Ok(process);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Err(format!(
            "facilitator process not healthy in 30 s:\n{}",
            process.log_text()
        )
        .into())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

#[tokio::test]
async fn two_processes_settle_one_payment_once() -> TestResult {
    let Some(store) = TestStore::postgres().await? else {
        return Ok(());
    };
    let devnet = Devnet::start().await?;
    let signers = [devnet.usdc_owner(), devnet.payer(8)];
    let a = FacilitatorProcess::start(&devnet, &store, &signers[0].private_key_hex()).await?;
    let b = FacilitatorProcess::start(&devnet, &store, &signers[1].private_key_hex()).await?;
    let nonces_before = [
        nonce(&devnet, signers[0].address).await?,
        nonce(&devnet, signers[1].address).await?,
    ];
    let pay_to = Address::random();
    let payer = devnet.payer(3).address;
    let requirements = requirements(&devnet, pay_to);
    let payload = pay(&devnet, 3, &requirements, None).await?;
    let request = body(&payload, &requirements);
    let payer_before = balance(&devnet, payer).await?;
    // One block a second: the settlements below overlap for real.
    devnet.rpc("evm_setAutomine", json!([false])).await?;

    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for n in 0..8 {
        let url = if n % 2 == 0 {
            a.url("/settle")
        } else {
            b.url("/settle")
        };
        let (client, request) = (client.clone(), request.clone());
        tasks.push(tokio::spawn(
            async move { post(&client, &url, &request).await },
        ));
    }
    let mut settled: Vec<Value> = Vec::new();
    for task in tasks {
        let (status, answer) = task.await??;
        assert_eq!(
            status,
            200,
            "{answer}\n--- A ---\n{}\n--- B ---\n{}",
            a.log_text(),
            b.log_text()
        );
        if answer["success"] == json!(true) {
            settled.push(answer);
        } else {
            assert_replay_refused(status, &answer);
        }
    }
    assert_eq!(settled.len(), 1, "{settled:#?}");
    let transaction = settled[0]["transaction"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    devnet.mine().await?;
    assert_eq!(balance(&devnet, pay_to).await?, U256::from(PRICE));
    assert_eq!(
        balance(&devnet, payer).await?,
        payer_before - U256::from(PRICE)
    );
    let sent = nonce(&devnet, signers[0].address).await? - nonces_before[0]
        + nonce(&devnet, signers[1].address).await?
        - nonces_before[1];
    assert_eq!(sent, 1, "transactions sent by the two processes");
    let runs = metric_at(
        &a.base,
        "paywire_settle_duration_seconds_count{network=\"eip155:31337\",scheme=\"exact\"}",
    )
    .await?
        + metric_at(
            &b.base,
            "paywire_settle_duration_seconds_count{network=\"eip155:31337\",scheme=\"exact\"}",
        )
        .await?;
    assert_eq!(runs, 1, "scheme runs across both processes");

    let ledger =
        paywire_facilitator::Ledger::connect_postgres(&store.location().to_string_lossy()).await?;
    let record = ledger
        .get(&fingerprint(&payload.payload, &requirements))
        .await?
        .ok_or("no record")?;
    assert_eq!(record.state, SettlementState::Confirmed);
    assert_eq!(record.transaction.as_deref(), Some(transaction.as_str()));
    assert_eq!(record.attempts, 1);
    Ok(())
}

#[tokio::test]
async fn two_instances_share_the_bazaar_catalog() -> TestResult {
    let Some(store) = TestStore::postgres().await? else {
        return Ok(());
    };
    let devnet = Devnet::start().await?;
    // The origin is on loopback: a devnet setting.
    let mut text = config_text(
        devnet.network(),
        devnet.rpc_url(),
        Some(devnet.usdc()),
        &store.location(),
    );
    text.push_str("\n[bazaar]\nconfirm_private_addresses = true\n");
    let a = start_from(&text, &devnet.usdc_owner().private_key_hex()).await?;
    let b = start_from(&text, &devnet.payer(8).private_key_hex()).await?;
    let requirements = requirements(&devnet, Address::random());
    let mut payload = pay(&devnet, 5, &requirements, None).await?;
    let (key, declaration) = paywire_bazaar::Declaration::get().into_extension();
    let origin = Origin::start(&requirements, declaration.clone(), "Shared data").await?;
    let mut extensions = payload.extensions.take().unwrap_or_default();
    extensions.0.insert(key, declaration);
    payload.extensions = Some(extensions);
    payload.resource = Some(paywire_core::ResourceInfo::new(origin.url("/data")));
    let http = reqwest::Client::new();
    let (status, settled) = post(&http, &a.url("/settle"), &body(&payload, &requirements)).await?;
    assert_eq!(
        (status, &settled["success"]),
        (200, &json!(true)),
        "{settled}"
    );
    wait_for_outcome(&http, &a.base, "cataloged", 1).await?;
    let listed: Value = http
        .get(b.url("/discovery/resources"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(listed["pagination"]["total"], 1, "{listed}");
    assert_eq!(listed["items"][0]["resource"], origin.url("/data"));
    Ok(())
}
