//! The cached anvil state with USDC deployed: created once per cache (under a lock),
//! then loaded by every `Devnet::start` with `--load-state`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy_primitives::Address;
use serde::{Deserialize, Serialize};

use crate::accounts::dev_accounts;
use crate::error::{DevnetError, Result};
use crate::install::{
    ANVIL_NPM_VERSION, Anvil, AnvilSource, PERIPHERY_NPM_VERSION, STABLECOIN_NPM_VERSION,
    artifacts_in, cache_dir, install_npm_packages, lock, unique_sibling, write_atomic,
};
use crate::permit2::{TestTokens, deploy_permit2_kit, sources_id};
use crate::process::AnvilProcess;
use crate::rpc::Rpc;

/// Bump when the deployed state changes (accounts funded, contracts, ...), so stale
/// snapshots in developers' caches are not reused.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 2;

/// What is recorded next to a snapshot.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SnapshotMeta {
    pub(crate) usdc: Address,
    pub(crate) tokens: TestTokens,
    pub(crate) chain_id: u64,
    pub(crate) anvil: String,
    pub(crate) stablecoin: String,
    pub(crate) format: u32,
}

/// A usable snapshot on disk.
#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    pub(crate) state: PathBuf,
    pub(crate) meta: SnapshotMeta,
}

/// An identifier of the anvil build, for the snapshot key.
async fn anvil_id(anvil: &Anvil) -> Result<String> {
    match anvil.source {
        AnvilSource::Pinned => Ok(ANVIL_NPM_VERSION.to_string()),
        AnvilSource::Override => {
            let out = tokio::process::Command::new(&anvil.path)
                .arg("--version")
                .output()
                .await
                .map_err(|e| {
                    DevnetError::io(format!("running {} --version", anvil.path.display()), e)
                })?;
            let text = String::from_utf8_lossy(&out.stdout);
            let id: String = text
                .split_whitespace()
                .filter(|w| w.chars().any(|c| c.is_ascii_digit()))
                .take(2)
                .collect::<Vec<_>>()
                .join("-")
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
                .take(40)
                .collect();
            Ok(format!("custom-{id}"))
        }
    }
}

fn read_meta(dir: &Path) -> Option<Snapshot> {
    let state = dir.join("state.json");
    let text = std::fs::read_to_string(dir.join("meta.json")).ok()?;
    let meta: SnapshotMeta = serde_json::from_str(&text).ok()?;
    state.is_file().then_some(Snapshot { state, meta })
}

/// Returns the snapshot for `anvil`, creating it first if needed.
pub(crate) async fn ensure_snapshot(anvil: &Anvil) -> Result<Snapshot> {
    let id = anvil_id(anvil).await?;
    let key = format!(
        "anvil-{id}_stablecoin-{STABLECOIN_NPM_VERSION}_periphery-{PERIPHERY_NPM_VERSION}\
         _contracts-{}_v{SNAPSHOT_FORMAT_VERSION}",
        sources_id()
    );
    let dir = cache_dir()?.join("snapshots").join(&key);
    if let Some(snapshot) = read_meta(&dir) {
        return Ok(snapshot);
    }
    let _lock = lock(&cache_dir()?.join(format!("snapshot-{key}.lock"))).await?;
    if let Some(snapshot) = read_meta(&dir) {
        return Ok(snapshot);
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| DevnetError::io(format!("creating {}", dir.display()), e))?;
    let state = dir.join("state.json");
    let tmp_state = unique_sibling(&state);
    let result = create(anvil, &tmp_state, &id).await;
    let meta = match result {
        Ok(meta) => meta,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp_state);
            return Err(e);
        }
    };
    std::fs::rename(&tmp_state, &state)
        .map_err(|e| DevnetError::io(format!("renaming to {}", state.display()), e))?;
    let json = serde_json::to_vec_pretty(&meta)
        .map_err(|e| DevnetError::Unexpected(format!("serializing snapshot meta: {e}")))?;
    write_atomic(&dir.join("meta.json"), &json)?;
    Ok(Snapshot { state, meta })
}

/// Deploys USDC on a fresh anvil that dumps its state to `dump` on SIGINT.
async fn create(anvil: &Anvil, dump: &Path, anvil_id: &str) -> Result<SnapshotMeta> {
    let prefix = install_npm_packages().await?;
    let args: Vec<OsString> = vec!["--dump-state".into(), dump.as_os_str().to_owned()];
    let mut process = AnvilProcess::start(&anvil.path, &args).await?;
    let (usdc, tokens) = deploy_into(&mut process, &prefix).await?;
    let status = process.interrupt_and_wait(Duration::from_secs(20)).await?;
    let text = std::fs::read_to_string(dump).map_err(|e| {
        process.keep_log();
        DevnetError::io(
            format!(
                "reading the state anvil dumped on exit ({status}) to {}",
                dump.display()
            ),
            e,
        )
    })?;
    let usdc_hex = format!("{usdc:x}");
    if !text.contains("\"accounts\"") || !text.to_ascii_lowercase().contains(&usdc_hex) {
        return Err(DevnetError::Unexpected(format!(
            "the state dumped to {} does not contain USDC at {usdc}",
            dump.display()
        )));
    }
    Ok(SnapshotMeta {
        usdc,
        tokens,
        chain_id: crate::CHAIN_ID,
        anvil: anvil_id.to_string(),
        stablecoin: STABLECOIN_NPM_VERSION.to_string(),
        format: SNAPSHOT_FORMAT_VERSION,
    })
}

/// Deploys USDC, Permit2, the x402 Permit2 proxies and the test tokens into a running anvil
/// (used for the snapshot and for snapshot-less starts).
pub(crate) async fn deploy_into(
    process: &mut AnvilProcess,
    prefix: &Path,
) -> Result<(Address, TestTokens)> {
    let rpc = Rpc::new(format!("http://127.0.0.1:{}", process.port()))?;
    let accounts = dev_accounts()?;
    let deployed = async {
        let usdc = crate::usdc::deploy_usdc(&rpc, &artifacts_in(prefix), &accounts).await?;
        let tokens = deploy_permit2_kit(&rpc, prefix, &accounts).await?;
        Ok::<_, DevnetError>((usdc, tokens))
    };
    match deployed.await {
        Ok(deployed) => Ok(deployed),
        Err(e) => {
            process.keep_log();
            Err(DevnetError::Unexpected(format!(
                "deploying the devnet's contracts failed: {e}\n--- tail of {} ---\n{}",
                process.log_path().display(),
                process.log_tail()
            )))
        }
    }
}
