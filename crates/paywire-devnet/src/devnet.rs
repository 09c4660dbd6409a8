//! [`Devnet`]: one throwaway anvil chain with USDC, for one test.

use std::ffi::OsString;
use std::path::Path;

use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_sol_types::{Eip712Domain, SolCall};
use serde_json::{Value, json};

use crate::accounts::{
    DevAccount, PROXY_ADMIN_INDEX, USDC_HOLDER_INDICES, USDC_OWNER_INDEX, dev_accounts,
};
use crate::error::{DevnetError, Result};
use crate::install;
use crate::permit2::{ITestToken, PERMIT2, TestTokens, allowance_of, balance_of};
use crate::process::AnvilProcess;
use crate::rpc::{Rpc, TxReceipt};
use crate::snapshot::{deploy_into, ensure_snapshot};
use crate::usdc::{IFiatToken, usdc_balance_of, usdc_domain};
use crate::watchdog::PoolWatchdog;

/// anvil's chain id.
pub const CHAIN_ID: u64 = 31337;
/// The CAIP-2 id of the devnet (`eip155:31337`).
pub const NETWORK: &str = "eip155:31337";

/// How a [`Devnet`] is started. `DevnetOptions::default()` is what [`Devnet::start`] uses.
#[derive(Clone, Debug)]
pub struct DevnetOptions {
    /// Mine a block as soon as a transaction arrives (default `true`).
    pub automine: bool,
    /// Also mine a block every N seconds (default `Some(1)`). Together with `automine`
    /// this is anvil's `--mixed-mining --block-time N`, which avoids transactions with
    /// pipelined nonces being stranded in the pool. `None` with `automine`: pure automine;
    /// `None` without `automine`: no mining at all (`--no-mining`, use [`Devnet::mine`]).
    pub block_time: Option<u64>,
    /// Load the cached snapshot with USDC deployed (default `true`, about 150 ms). With
    /// `false`, USDC is deployed from scratch on this chain (about 0.2 s).
    pub use_snapshot: bool,
    /// More anvil arguments, appended as given.
    pub extra_args: Vec<String>,
    /// Keep the chain in this directory: its state is saved every two seconds
    /// and loaded again by the next start with the same directory (the USDC
    /// address is remembered beside it). `None` (default): a throwaway chain.
    pub state_dir: Option<std::path::PathBuf>,
}

impl Default for DevnetOptions {
    fn default() -> Self {
        Self {
            automine: true,
            block_time: Some(1),
            use_snapshot: true,
            extra_args: Vec::new(),
            state_dir: None,
        }
    }
}

impl DevnetOptions {
    fn anvil_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        match (self.automine, self.block_time) {
            (true, Some(secs)) => {
                args.push("--mixed-mining".into());
                args.push("--block-time".into());
                args.push(secs.to_string().into());
            }
            (true, None) => {}
            (false, Some(secs)) => {
                args.push("--block-time".into());
                args.push(secs.to_string().into());
            }
            (false, None) => args.push("--no-mining".into()),
        }
        args.extend(self.extra_args.iter().map(OsString::from));
        args
    }
}

/// A running anvil on a free loopback port with Circle's FiatTokenV2_2 (USDC) deployed
/// behind its proxy.
///
/// Account roles (see [`crate::accounts`]): #0 owns USDC and can mint, #1..#8 hold
/// [`crate::INITIAL_USDC_BALANCE`] USDC and 10,000 ETH each, #9 is the proxy admin (it
/// cannot call token functions). All ten are unlocked on the node, so
/// [`Devnet::send_unlocked_tx`] works from any of them without signing.
///
/// anvil is killed when the `Devnet` is dropped (also during a panic's unwind), and
/// receives SIGKILL if its process dies without unwinding.
#[derive(Debug)]
pub struct Devnet {
    process: AnvilProcess,
    rpc: Rpc,
    usdc: Address,
    tokens: TestTokens,
    accounts: Vec<DevAccount>,
    _pool_watchdog: Option<PoolWatchdog>,
}

impl Devnet {
    /// Starts a fresh devnet with the default options (snapshot, `--mixed-mining
    /// --block-time 1`). The first call on a machine installs anvil and creates the
    /// snapshot (a few seconds); later calls take about 150 ms.
    pub async fn start() -> Result<Self> {
        Self::start_with(DevnetOptions::default()).await
    }

    /// Starts a fresh devnet with `options`.
    pub async fn start_with(options: DevnetOptions) -> Result<Self> {
        let anvil = install::anvil().await?;
        let mut args = options.anvil_args();
        let watch_pool = options.automine;
        if let Some(dir) = &options.state_dir {
            return Self::start_persistent(&anvil, args, dir, watch_pool).await;
        }
        let (mut process, (usdc, tokens)) = if options.use_snapshot {
            let snapshot = ensure_snapshot(&anvil).await?;
            args.push("--load-state".into());
            args.push(snapshot.state.as_os_str().to_owned());
            let process = AnvilProcess::start(&anvil.path, &args).await?;
            (process, (snapshot.meta.usdc, snapshot.meta.tokens))
        } else {
            let prefix = install::install_npm_packages().await?;
            let mut process = AnvilProcess::start(&anvil.path, &args).await?;
            let deployed = deploy_into(&mut process, &prefix).await?;
            (process, deployed)
        };
        let rpc = Rpc::new(format!("http://127.0.0.1:{}", process.port()))?;
        let accounts = dev_accounts()?;
        match Self::check(&rpc, &accounts, usdc, options.use_snapshot).await {
            Ok(()) => Ok(Self {
                _pool_watchdog: watch_pool
                    .then(|| PoolWatchdog::start(rpc.url().to_owned()))
                    .flatten(),
                process,
                rpc,
                usdc,
                tokens,
                accounts,
            }),
            Err(e) => {
                process.keep_log();
                Err(process.startup_error(format!("the started chain is not as expected: {e}")))
            }
        }
    }

    /// Starts a chain kept in `dir` (see [`DevnetOptions::state_dir`]).
    async fn start_persistent(
        anvil: &install::Anvil,
        mut args: Vec<OsString>,
        dir: &Path,
        watch_pool: bool,
    ) -> Result<Self> {
        let io = |e: std::io::Error| {
            DevnetError::Unexpected(format!("state dir {}: {e}", dir.display()))
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let state = dir.join("state.json");
        let meta_path = dir.join("devnet.json");
        let remembered = std::fs::read_to_string(&meta_path)
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .and_then(|meta| {
                let usdc = meta["usdc"].as_str()?.parse::<Address>().ok()?;
                let tokens = serde_json::from_value::<TestTokens>(meta["tokens"].clone()).ok()?;
                Some((usdc, tokens))
            });
        // A chain kept before the devnet had Permit2 is started afresh from the snapshot.
        let (usdc, tokens) = if let Some(kept) = remembered.filter(|_| state.is_file()) {
            args.extend(["--state".into(), state.as_os_str().to_owned()]);
            kept
        } else {
            let snapshot = ensure_snapshot(anvil).await?;
            args.extend([
                "--load-state".into(),
                snapshot.state.as_os_str().to_owned(),
                "--dump-state".into(),
                state.as_os_str().to_owned(),
            ]);
            let meta = json!({ "usdc": snapshot.meta.usdc, "tokens": snapshot.meta.tokens });
            std::fs::write(&meta_path, meta.to_string()).map_err(io)?;
            (snapshot.meta.usdc, snapshot.meta.tokens)
        };
        args.extend(["--state-interval".into(), "2".into()]);
        let mut process = AnvilProcess::start(&anvil.path, &args).await?;
        let rpc = Rpc::new(format!("http://127.0.0.1:{}", process.port()))?;
        let accounts = dev_accounts()?;
        match Self::check(&rpc, &accounts, usdc, true).await {
            Ok(()) => Ok(Self {
                _pool_watchdog: watch_pool
                    .then(|| PoolWatchdog::start(rpc.url().to_owned()))
                    .flatten(),
                process,
                rpc,
                usdc,
                tokens,
                accounts,
            }),
            Err(e) => {
                process.keep_log();
                Err(process.startup_error(format!("the kept chain is not as expected: {e}")))
            }
        }
    }

    /// Checks the chain id, the dev accounts and the USDC code; after loading a snapshot,
    /// mines one block so that the latest block's timestamp is the current time (the
    /// snapshot's last block carries the time it was created).
    async fn check(rpc: &Rpc, accounts: &[DevAccount], usdc: Address, mine: bool) -> Result<()> {
        let mine_block = async {
            if mine {
                rpc.call("evm_mine", json!([])).await.map(drop)
            } else {
                Ok(())
            }
        };
        let (chain_id, node_accounts, code, permit2_code, ()) = tokio::try_join!(
            rpc.call_as::<alloy_primitives::U64>("eth_chainId", json!([])),
            rpc.call_as::<Vec<Address>>("eth_accounts", json!([])),
            rpc.call_as::<Bytes>("eth_getCode", json!([usdc, "latest"])),
            rpc.call_as::<Bytes>("eth_getCode", json!([PERMIT2, "latest"])),
            mine_block,
        )?;
        if permit2_code.is_empty() {
            return Err(DevnetError::Unexpected(format!(
                "no contract code at Permit2 {PERMIT2}"
            )));
        }
        if chain_id.to::<u64>() != CHAIN_ID {
            return Err(DevnetError::Unexpected(format!(
                "chain id {chain_id}, expected {CHAIN_ID}"
            )));
        }
        let expected: Vec<Address> = accounts.iter().map(|a| a.address).collect();
        if node_accounts.get(..expected.len()) != Some(&expected[..]) {
            return Err(DevnetError::Unexpected(format!(
                "anvil's accounts {node_accounts:?} do not match the hard-coded dev keys {expected:?}"
            )));
        }
        if code.is_empty() {
            return Err(DevnetError::Unexpected(format!(
                "no contract code at USDC {usdc}"
            )));
        }
        Ok(())
    }

    /// The JSON-RPC URL, `http://127.0.0.1:PORT`.
    pub fn rpc_url(&self) -> &str {
        self.rpc.url()
    }

    /// The TCP port anvil listens on.
    pub fn port(&self) -> u16 {
        self.process.port()
    }

    /// anvil's process id (`None` only if it could not be tracked).
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The file receiving anvil's stdout and stderr (removed on drop, kept after a panic).
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The chain id, 31337.
    pub fn chain_id(&self) -> u64 {
        CHAIN_ID
    }

    /// The CAIP-2 network id, `eip155:31337`.
    pub fn network(&self) -> &'static str {
        NETWORK
    }

    /// The USDC (FiatTokenProxy) address, as deployed.
    pub fn usdc(&self) -> Address {
        self.usdc
    }

    /// USDC's EIP-712 domain (name "USD Coin", version "2", chain 31337, the proxy).
    pub fn usdc_domain(&self) -> Eip712Domain {
        usdc_domain(CHAIN_ID, self.usdc)
    }

    /// The ten dev accounts, #0..#9.
    pub fn accounts(&self) -> &[DevAccount] {
        &self.accounts
    }

    /// Dev account #`index`.
    ///
    /// # Panics
    /// If `index > 9`.
    pub fn account(&self, index: usize) -> &DevAccount {
        &self.accounts[index]
    }

    /// Account #0: USDC owner, master minter, pauser, blacklister and minter.
    pub fn usdc_owner(&self) -> &DevAccount {
        &self.accounts[USDC_OWNER_INDEX]
    }

    /// Account #9: the USDC proxy admin (cannot call token functions).
    pub fn proxy_admin(&self) -> &DevAccount {
        &self.accounts[PROXY_ADMIN_INDEX]
    }

    /// Accounts #1..#8, which start with [`crate::INITIAL_USDC_BALANCE`] USDC each.
    pub fn usdc_holders(&self) -> &[DevAccount] {
        &self.accounts[USDC_HOLDER_INDICES]
    }

    /// Account #`index`, checked to be one of the USDC holders #1..#8 (a good payer).
    ///
    /// # Panics
    /// If `index` is not in `1..=8`.
    pub fn payer(&self, index: usize) -> &DevAccount {
        assert!(
            USDC_HOLDER_INDICES.contains(&index),
            "payer({index}): payers are the USDC holders #1..#8"
        );
        &self.accounts[index]
    }

    /// Any JSON-RPC call; returns the `result` member.
    pub async fn rpc(&self, method: &str, params: Value) -> Result<Value> {
        self.rpc.call(method, params).await
    }

    /// `eth_call` of `data` against `to` at the latest block.
    pub async fn call(&self, to: Address, data: impl AsRef<[u8]>) -> Result<Bytes> {
        self.rpc.eth_call(to, data.as_ref()).await
    }

    /// USDC `balanceOf(owner)`.
    pub async fn usdc_balance(&self, owner: Address) -> Result<U256> {
        usdc_balance_of(&self.rpc, self.usdc, owner).await
    }

    /// USDC `authorizationState(authorizer, nonce)`: whether an EIP-3009 nonce is used.
    pub async fn authorization_state(&self, authorizer: Address, nonce: B256) -> Result<bool> {
        let out = self
            .call(
                self.usdc,
                IFiatToken::authorizationStateCall { authorizer, nonce }.abi_encode(),
            )
            .await?;
        Ok(IFiatToken::authorizationStateCall::abi_decode_returns(
            &out,
        )?)
    }

    /// The two test ERC-20s without EIP-3009 (see [`crate::permit2`]).
    pub fn test_tokens(&self) -> TestTokens {
        self.tokens
    }

    /// The plain test ERC-20 ("Plain Dollar", PUSD, 6 decimals): no EIP-2612, no EIP-3009.
    pub fn plain_token(&self) -> Address {
        self.tokens.plain
    }

    /// The EIP-2612 test ERC-20 ("Permit Dollar", EUSD, 6 decimals, EIP-712 version "1").
    pub fn permit_token(&self) -> Address {
        self.tokens.permit
    }

    /// `balanceOf(owner)` on any ERC-20 `token`.
    pub async fn token_balance(&self, token: Address, owner: Address) -> Result<U256> {
        balance_of(&self.rpc, token, owner).await
    }

    /// `allowance(owner, spender)` on any ERC-20 `token`.
    pub async fn allowance(
        &self,
        token: Address,
        owner: Address,
        spender: Address,
    ) -> Result<U256> {
        allowance_of(&self.rpc, token, owner, spender).await
    }

    /// Mints `amount` of a test token (or USDC) to `to`, sent by the tokens' minter (#0).
    pub async fn mint_token(&self, token: Address, to: Address, amount: U256) -> Result<TxReceipt> {
        if token == self.usdc {
            return self.mint_usdc(to, amount).await;
        }
        let data = ITestToken::mintCall { to, value: amount }.abi_encode();
        self.transact(self.usdc_owner().address, token, data).await
    }

    /// `owner`'s own `approve(Permit2, amount)` on `token` (the one-time approval a payer
    /// makes before paying with Permit2), paying its own gas.
    pub async fn approve_permit2(
        &self,
        token: Address,
        owner: &DevAccount,
        amount: U256,
    ) -> Result<TxReceipt> {
        let data = ITestToken::approveCall {
            spender: PERMIT2,
            value: amount,
        }
        .abi_encode();
        self.transact(owner.address, token, data).await
    }

    /// The ETH balance (wei) of `owner`.
    pub async fn eth_balance(&self, owner: Address) -> Result<U256> {
        self.rpc
            .call_as("eth_getBalance", json!([owner, "latest"]))
            .await
    }

    /// Mints `amount` atomic USDC to `to` (sent by the owner, #0); returns the receipt.
    pub async fn mint_usdc(&self, to: Address, amount: U256) -> Result<TxReceipt> {
        let data = IFiatToken::mintCall { to, amount }.abi_encode();
        self.transact(self.usdc_owner().address, self.usdc, data)
            .await
    }

    /// Sets the ETH balance of `owner` (`anvil_setBalance`).
    pub async fn set_eth_balance(&self, owner: Address, wei: U256) -> Result<()> {
        self.rpc
            .call("anvil_setBalance", json!([owner, wei]))
            .await
            .map(drop)
    }

    /// Sets the timestamp of the next mined block (`evm_setNextBlockTimestamp`).
    pub async fn set_next_block_timestamp(&self, unix_seconds: u64) -> Result<()> {
        self.rpc
            .call("evm_setNextBlockTimestamp", json!([unix_seconds]))
            .await
            .map(drop)
    }

    /// Moves the chain's clock forward by `seconds` and mines a block (`evm_increaseTime`
    /// + `evm_mine`).
    pub async fn increase_time(&self, seconds: u64) -> Result<()> {
        self.rpc.call("evm_increaseTime", json!([seconds])).await?;
        self.mine().await
    }

    /// Mines one block now (`evm_mine`).
    pub async fn mine(&self) -> Result<()> {
        self.rpc.call("evm_mine", json!([])).await.map(drop)
    }

    /// The latest block number.
    pub async fn block_number(&self) -> Result<u64> {
        let n: alloy_primitives::U64 = self.rpc.call_as("eth_blockNumber", json!([])).await?;
        Ok(n.to())
    }

    /// The latest block's timestamp (unix seconds).
    pub async fn block_timestamp(&self) -> Result<u64> {
        let block = self
            .rpc
            .call("eth_getBlockByNumber", json!(["latest", false]))
            .await?;
        let ts: alloy_primitives::U64 = block
            .get("timestamp")
            .cloned()
            .and_then(|t| serde_json::from_value(t).ok())
            .ok_or_else(|| DevnetError::Unexpected(format!("block without timestamp: {block}")))?;
        Ok(ts.to())
    }

    /// Saves the chain state (`evm_snapshot`); returns the id for [`Devnet::revert`].
    pub async fn snapshot(&self) -> Result<U256> {
        self.rpc.call_as("evm_snapshot", json!([])).await
    }

    /// Goes back to a state saved by [`Devnet::snapshot`] (`evm_revert`). An id can be
    /// reverted to once.
    pub async fn revert(&self, id: U256) -> Result<()> {
        let ok: bool = self.rpc.call_as("evm_revert", json!([id])).await?;
        if ok {
            Ok(())
        } else {
            Err(DevnetError::Unexpected(format!(
                "evm_revert({id}) returned false"
            )))
        }
    }

    /// `eth_sendTransaction` of `data` to `to` from an unlocked dev account, with gas
    /// estimated by anvil. Returns the transaction hash without waiting; see
    /// [`Devnet::wait_receipt`]. Note: when the estimate reverts, anvil 1.7.1 does not
    /// refuse the transaction but sends it with the block gas limit (30M) and mines it
    /// with status 0; use [`Devnet::call`] first to see a revert reason.
    pub async fn send_unlocked_tx(
        &self,
        from: Address,
        to: Address,
        data: impl AsRef<[u8]>,
    ) -> Result<B256> {
        self.rpc
            .send_transaction(from, Some(to), data.as_ref(), None, None)
            .await
    }

    /// The general form of [`Devnet::send_unlocked_tx`]: `to: None` creates a contract,
    /// `value` sends wei, and a fixed `gas` skips estimation.
    pub async fn send_unlocked_tx_with(
        &self,
        from: Address,
        to: Option<Address>,
        data: impl AsRef<[u8]>,
        value: Option<U256>,
        gas: Option<u64>,
    ) -> Result<B256> {
        self.rpc
            .send_transaction(from, to, data.as_ref(), value, gas)
            .await
    }

    /// Waits for the receipt of `hash`, polling every
    /// [`crate::rpc::RECEIPT_POLL_INTERVAL`] (10 ms); status 0 is returned, not an error.
    pub async fn wait_receipt(&self, hash: B256) -> Result<TxReceipt> {
        self.rpc.wait_receipt(hash).await
    }

    /// Sends from an unlocked account, waits, and fails with [`DevnetError::Reverted`] on
    /// status 0.
    pub async fn transact(
        &self,
        from: Address,
        to: Address,
        data: impl AsRef<[u8]>,
    ) -> Result<TxReceipt> {
        self.rpc.transact(from, Some(to), data.as_ref()).await
    }

    /// Deploys `code` (creation bytecode with ABI-encoded constructor arguments appended)
    /// from the unlocked account `from`; returns the new contract's address.
    pub async fn deploy(&self, code: impl AsRef<[u8]>, from: Address) -> Result<Address> {
        self.rpc.deploy(code.as_ref(), from).await
    }
}
