//! Sanity tests of the devnet: a real EIP-3009 settlement, independence of concurrent
//! devnets, and cleanup on drop.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alloy_primitives::{B256, U256};
use alloy_signer::SignerSync;
use alloy_sol_types::{SolCall, SolStruct};
use paywire_devnet::{
    CHAIN_ID, Devnet, DevnetOptions, IFiatToken, INITIAL_USDC_BALANCE, TransferWithAuthorization,
};
use serde_json::json;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn eip3009_transfer_settles_once() {
    let t = Instant::now();
    let devnet = Devnet::start().await.expect("devnet starts");
    eprintln!("timing: Devnet::start took {:?}", t.elapsed());
    assert_eq!(devnet.chain_id(), CHAIN_ID);
    assert!(devnet.rpc_url().starts_with("http://127.0.0.1:"));

    let payer = devnet.payer(1);
    let payee = devnet.account(5);
    let facilitator = devnet.usdc_owner();
    let value = U256::from(10_000u64);
    let payer_before = devnet.usdc_balance(payer.address).await.unwrap();
    let payee_before = devnet.usdc_balance(payee.address).await.unwrap();
    assert_eq!(payer_before, U256::from(INITIAL_USDC_BALANCE));

    // The chain clock follows the wall clock, also after loading an old snapshot.
    let chain_time = devnet.block_timestamp().await.unwrap();
    assert!(chain_time.abs_diff(now()) <= 5, "chain time {chain_time}");

    let authorization = TransferWithAuthorization {
        from: payer.address,
        to: payee.address,
        value,
        validAfter: U256::ZERO,
        validBefore: U256::from(now() + 300),
        nonce: B256::random(),
    };
    let hash = authorization.eip712_signing_hash(&devnet.usdc_domain());
    let signature = payer.signer().sign_hash_sync(&hash).unwrap();
    let call = IFiatToken::transferWithAuthorization_0Call {
        from: authorization.from,
        to: authorization.to,
        value: authorization.value,
        validAfter: authorization.validAfter,
        validBefore: authorization.validBefore,
        nonce: authorization.nonce,
        v: 27 + u8::from(signature.v()),
        r: signature.r().into(),
        s: signature.s().into(),
    }
    .abi_encode();

    let t = Instant::now();
    let tx = devnet
        .send_unlocked_tx(facilitator.address, devnet.usdc(), &call)
        .await
        .unwrap();
    let receipt = devnet.wait_receipt(tx).await.unwrap();
    eprintln!(
        "timing: transferWithAuthorization send + receipt took {:?} ({} gas)",
        t.elapsed(),
        receipt.gas_used
    );
    assert!(receipt.status, "settlement reverted: {:?}", receipt.raw);
    assert_eq!(receipt.logs.len(), 2, "AuthorizationUsed + Transfer");

    assert_eq!(
        devnet.usdc_balance(payer.address).await.unwrap(),
        payer_before - value
    );
    assert_eq!(
        devnet.usdc_balance(payee.address).await.unwrap(),
        payee_before + value
    );
    assert!(
        devnet
            .authorization_state(payer.address, authorization.nonce)
            .await
            .unwrap()
    );

    // A replay is refused: simulating it reports the revert reason ...
    let err = devnet
        .call(devnet.usdc(), &call)
        .await
        .expect_err("replay must revert");
    assert!(err.is_revert(), "{err}");
    assert!(
        err.to_string().contains("authorization is used"),
        "unexpected error: {err}"
    );
    // ... and sent anyway, it is mined with status 0 (anvil 1.7.1 does not refuse it).
    let tx = devnet
        .send_unlocked_tx(facilitator.address, devnet.usdc(), &call)
        .await
        .unwrap();
    let receipt = devnet.wait_receipt(tx).await.unwrap();
    assert!(!receipt.status);
    let sent = devnet
        .rpc("eth_getTransactionByHash", json!([tx]))
        .await
        .unwrap();
    eprintln!(
        "replay: gas limit {} used {}",
        sent["gas"], receipt.gas_used
    );
    assert_eq!(
        devnet.usdc_balance(payee.address).await.unwrap(),
        payee_before + value
    );
}

#[tokio::test]
async fn concurrent_devnets_are_independent_and_die_on_drop() {
    let t = Instant::now();
    let (a, b) = tokio::join!(Devnet::start(), Devnet::start());
    eprintln!(
        "timing: two concurrent Devnet::start took {:?}",
        t.elapsed()
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.port(), b.port());
    assert_eq!(a.usdc(), b.usdc(), "same snapshot, same address");

    let who = a.account(7).address;
    a.mint_usdc(who, U256::from(5u64)).await.unwrap();
    assert_eq!(
        a.usdc_balance(who).await.unwrap(),
        U256::from(INITIAL_USDC_BALANCE + 5)
    );
    assert_eq!(
        b.usdc_balance(who).await.unwrap(),
        U256::from(INITIAL_USDC_BALANCE)
    );

    let url = a.rpc_url().to_string();
    let pid = a.pid().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    drop(a);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "anvil (pid {pid}) still exists after drop"
    );
    let answer = reqwest::Client::new()
        .post(&url)
        .timeout(Duration::from_secs(2))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}))
        .send()
        .await;
    assert!(answer.is_err(), "port still answers after drop: {answer:?}");
    // The other one is unaffected.
    assert!(b.block_number().await.unwrap() > 0);
}

#[tokio::test]
async fn helpers_work() {
    let devnet = Devnet::start().await.unwrap();
    let someone = alloy_primitives::Address::repeat_byte(0x42);

    devnet
        .set_eth_balance(someone, U256::from(123u64))
        .await
        .unwrap();
    assert_eq!(
        devnet.eth_balance(someone).await.unwrap(),
        U256::from(123u64)
    );

    let id = devnet.snapshot().await.unwrap();
    devnet
        .mint_usdc(someone, U256::from(1_000_000u64))
        .await
        .unwrap();
    assert_eq!(
        devnet.usdc_balance(someone).await.unwrap(),
        U256::from(1_000_000u64)
    );
    devnet.revert(id).await.unwrap();
    assert_eq!(devnet.usdc_balance(someone).await.unwrap(), U256::ZERO);

    let before = devnet.block_timestamp().await.unwrap();
    devnet.increase_time(3600).await.unwrap();
    let after = devnet.block_timestamp().await.unwrap();
    assert!(after >= before + 3600, "{before} -> {after}");

    devnet
        .set_next_block_timestamp(after + 10_000)
        .await
        .unwrap();
    devnet.mine().await.unwrap();
    assert_eq!(devnet.block_timestamp().await.unwrap(), after + 10_000);

    // A tiny contract that returns 42. Creation code: PUSH1 0x0a PUSH1 0x0c PUSH1 0 CODECOPY PUSH1 0x0a PUSH1 0 RETURN,
    // runtime: PUSH1 42 PUSH1 0 MSTORE PUSH1 32 PUSH1 0 RETURN.
    let code =
        alloy_primitives::hex::decode("600a600c600039600a6000f3602a60005260206000f3").unwrap();
    let contract = devnet
        .deploy(&code, devnet.account(2).address)
        .await
        .unwrap();
    let out = devnet.call(contract, []).await.unwrap();
    assert_eq!(U256::from_be_slice(&out), U256::from(42u64));

    let chain_id = devnet.rpc("eth_chainId", json!([])).await.unwrap();
    assert_eq!(chain_id, json!("0x7a69"));

    // The decimals and name of the deployed token.
    let out = devnet
        .call(devnet.usdc(), IFiatToken::decimalsCall {}.abi_encode())
        .await
        .unwrap();
    assert_eq!(
        IFiatToken::decimalsCall::abi_decode_returns(&out).unwrap(),
        6
    );
}

#[tokio::test]
async fn fresh_deploy_without_snapshot() {
    let t = Instant::now();
    let devnet = Devnet::start_with(DevnetOptions {
        use_snapshot: false,
        block_time: None,
        ..DevnetOptions::default()
    })
    .await
    .unwrap();
    eprintln!(
        "timing: Devnet::start_with(use_snapshot: false) took {:?}",
        t.elapsed()
    );
    assert_eq!(
        devnet.usdc_balance(devnet.payer(8).address).await.unwrap(),
        U256::from(INITIAL_USDC_BALANCE)
    );
}

/// Whether `pid` is gone or a zombie waiting to be reaped (both mean anvil is dead).
fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

#[tokio::test]
async fn anvil_dies_when_the_test_process_is_killed() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "hold_a_devnet_until_killed",
            "--ignored",
            "--nocapture",
        ])
        .env("PAYWIRE_DEVNET_HOLD", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok);
    let mut field = |name: &str| {
        lines
            .find_map(|line| line.strip_prefix(name).map(str::to_owned))
            .unwrap_or_else(|| panic!("the helper prints {name}"))
    };
    let pid: u32 = field("ANVIL_PID=").parse().unwrap();
    let log = std::path::PathBuf::from(field("ANVIL_LOG="));
    assert!(!is_dead(pid));
    child.kill().unwrap(); // SIGKILL: no unwinding, no Drop
    child.wait().unwrap();
    let t = Instant::now();
    while !is_dead(pid) {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "anvil {pid} outlived its killed parent"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The killed helper could not clean up its log directory.
    std::fs::remove_dir_all(log.parent().unwrap()).unwrap();
}

#[tokio::test]
#[ignore = "helper process of anvil_dies_when_the_test_process_is_killed"]
async fn hold_a_devnet_until_killed() {
    if std::env::var_os("PAYWIRE_DEVNET_HOLD").is_none() {
        return;
    }
    let devnet = Devnet::start().await.unwrap();
    println!("ANVIL_PID={}", devnet.pid().unwrap());
    println!("ANVIL_LOG={}", devnet.log_path().display());
    tokio::time::sleep(Duration::from_secs(60)).await;
}

#[test]
fn devnet_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Devnet>();
}

/// anvil can leave a transaction queued behind a nonce that is already used
/// (foundry-rs/foundry#10122); the devnet's pool watchdog puts it back. The
/// state is produced here on purpose: a transaction one nonce ahead waits in
/// the queue, then the account's nonce is moved past the gap behind the
/// pool's back, exactly what the race does.
#[tokio::test]
async fn transaction_stranded_in_the_queue_is_mined_anyway() {
    let devnet = Devnet::start().await.unwrap();
    let sender = devnet.account(7).address;
    let count = |tag: &'static str| {
        let devnet = &devnet;
        async move {
            let value = devnet
                .rpc("eth_getTransactionCount", json!([sender, tag]))
                .await
                .unwrap();
            u64::from_str_radix(value.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
        }
    };
    let nonce = count("latest").await;
    let hash = devnet
        .rpc(
            "eth_sendTransaction",
            json!([{
                "from": sender,
                "to": devnet.account(8).address,
                "value": "0x1",
                "gas": "0x5208",
                "nonce": format!("{:#x}", nonce + 1),
            }]),
        )
        .await
        .unwrap();
    let hash: B256 = serde_json::from_value(hash).unwrap();
    devnet
        .rpc(
            "anvil_setNonce",
            json!([sender, format!("{:#x}", nonce + 1)]),
        )
        .await
        .unwrap();
    let receipt = tokio::time::timeout(Duration::from_secs(10), devnet.wait_receipt(hash))
        .await
        .expect("the stranded transaction was mined")
        .unwrap();
    assert!(receipt.status);
    assert_eq!(count("latest").await, nonce + 2);
}
