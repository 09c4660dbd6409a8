//! `paywire devnet`: a usable chain with USDC, printed for a human, and kept
//! across runs with `--state-dir`.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

struct Running {
    child: tokio::process::Child,
    rpc: String,
    usdc: String,
}

async fn start(state_dir: Option<&std::path::Path>) -> Running {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_paywire"));
    command.arg("devnet");
    if let Some(dir) = state_dir {
        command.arg("--state-dir").arg(dir);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn paywire devnet");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (mut rpc, mut usdc) = (String::new(), String::new());
    let read = async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.strip_prefix("RPC URL") {
                rest.trim().clone_into(&mut rpc);
            }
            if let Some(rest) = line.strip_prefix("USDC") {
                rest.split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .clone_into(&mut usdc);
            }
            if line.starts_with("Ctrl-C") {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("devnet printed its details");
    assert!(rpc.starts_with("http://127.0.0.1:"), "{rpc}");
    assert!(usdc.starts_with("0x"), "{usdc}");
    Running { child, rpc, usdc }
}

async fn rpc(url: &str, method: &str, params: Value) -> Value {
    let answer: Value = reqwest::Client::new()
        .post(url)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .send()
        .await
        .expect("rpc")
        .json()
        .await
        .expect("json");
    answer["result"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prints_a_working_chain_with_usdc() {
    let mut devnet = start(None).await;
    assert_eq!(
        rpc(&devnet.rpc, "eth_chainId", json!([])).await,
        json!("0x7a69")
    );
    let code = rpc(&devnet.rpc, "eth_getCode", json!([devnet.usdc, "latest"])).await;
    assert!(
        code.as_str().is_some_and(|c| c.len() > 1000),
        "USDC is deployed"
    );
    devnet.child.kill().await.expect("kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_dir_keeps_the_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = "0x00000000000000000000000000000000000c0ffe";
    let mut first = start(Some(dir.path())).await;
    rpc(&first.rpc, "anvil_setBalance", json!([marker, "0x1234"])).await;
    rpc(&first.rpc, "evm_mine", json!([])).await;
    // The state is written every two seconds.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    first.child.kill().await.expect("kill");
    let mut second = start(Some(dir.path())).await;
    assert_eq!(second.usdc, first.usdc, "same USDC");
    assert_eq!(
        rpc(&second.rpc, "eth_getBalance", json!([marker, "latest"])).await,
        json!("0x1234")
    );
    second.child.kill().await.expect("kill");
}
