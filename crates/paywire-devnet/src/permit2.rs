//! Permit2 on the devnet: the canonical Permit2 contract, paywire's own x402 Permit2 proxies
//! at their canonical addresses, and two test ERC-20s without EIP-3009 (one with EIP-2612).
//!
//! Permit2's runtime code comes from the pinned `@uniswap/v4-periphery` package (the
//! precompiled code its `DeployPermit2` helper etches); the proxies and tokens are compiled
//! from `contracts/*.sol` with the pinned solc-js when the snapshot is made. Production
//! networks use the x402 Foundation's canonical proxy deployments; ours only stand in for
//! them on a local chain.

use std::path::Path;

use alloy_primitives::{Address, B256, Bytes, U256, address, keccak256};
use alloy_sol_types::{SolCall, SolConstructor, sol};
use serde_json::json;

use crate::accounts::{DevAccount, USDC_HOLDER_INDICES, USDC_OWNER_INDEX};
use crate::error::{DevnetError, Result};
use crate::rpc::Rpc;

/// The canonical Permit2 address.
pub const PERMIT2: Address = address!("0x000000000022D473030F116dDEE9F6B43aC78BA3");
/// The canonical `x402ExactPermit2Proxy` address.
pub const EXACT_PERMIT2_PROXY: Address = address!("0x402085c248EeA27D92E8b30b2C58ed07f9E20001");
/// The canonical `x402UptoPermit2Proxy` address.
pub const UPTO_PERMIT2_PROXY: Address = address!("0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002");

/// Name of the plain test token (no EIP-2612, no EIP-3009).
pub const PLAIN_TOKEN_NAME: &str = "Plain Dollar";
/// Symbol of the plain test token.
pub const PLAIN_TOKEN_SYMBOL: &str = "PUSD";
/// Name (and EIP-712 domain name) of the EIP-2612 test token.
pub const PERMIT_TOKEN_NAME: &str = "Permit Dollar";
/// Symbol of the EIP-2612 test token.
pub const PERMIT_TOKEN_SYMBOL: &str = "EUSD";
/// EIP-712 domain version of the EIP-2612 test token.
pub const PERMIT_TOKEN_VERSION: &str = "1";
/// Decimals of both test tokens.
pub const TEST_TOKEN_DECIMALS: u8 = 6;
/// Atomic units of each test token minted to the USDC holders: 1,000,000 tokens.
pub const INITIAL_TEST_TOKEN_BALANCE: u64 = 1_000_000_000_000;

/// The Solidity sources compiled into the snapshot; their hash is part of the snapshot key.
pub(crate) const SOURCES: [(&str, &str); 2] = [
    (
        "X402Permit2Proxies.sol",
        include_str!("../contracts/X402Permit2Proxies.sol"),
    ),
    (
        "TestTokens.sol",
        include_str!("../contracts/TestTokens.sol"),
    ),
];
const COMPILE_SCRIPT: &str = include_str!("../contracts/compile.js");
/// Where the pinned periphery package keeps Permit2's precompiled deployment helper.
const DEPLOY_PERMIT2_SOURCE: &str =
    "node_modules/@uniswap/v4-periphery/lib/permit2/test/utils/DeployPermit2.sol";

sol! {
    /// The test tokens' ABI (both; `permit`, `nonces` and `version` only on the EIP-2612 one).
    #[allow(missing_docs)]
    interface ITestToken {
        constructor(string name_, string symbol_, uint8 decimals_);
        function name() returns (string);
        function symbol() returns (string);
        function decimals() returns (uint8);
        function version() returns (string);
        function nonces(address owner) returns (uint256);
        function mint(address to, uint256 value);
        function approve(address spender, uint256 value) returns (bool);
        function transfer(address to, uint256 value) returns (bool);
        function balanceOf(address owner) returns (uint256);
        function allowance(address owner, address spender) returns (uint256);
        function permit(address owner, address spender, uint256 value, uint256 deadline, uint8 v, bytes32 r, bytes32 s);

        event Transfer(address indexed from, address indexed to, uint256 value);
        event Approval(address indexed owner, address indexed spender, uint256 value);
    }

    /// The part of Permit2 the devnet checks.
    #[allow(missing_docs)]
    interface IPermit2 {
        function DOMAIN_SEPARATOR() returns (bytes32);
    }

    /// The proxies' constructor.
    #[allow(missing_docs)]
    interface IPermit2Proxy {
        constructor(address permit2);
        function PERMIT2() returns (address);
    }
}

/// Addresses of the two test tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TestTokens {
    /// The plain ERC-20 (no EIP-2612, no EIP-3009).
    pub plain: Address,
    /// The ERC-20 with EIP-2612 `permit`.
    pub permit: Address,
}

/// Compiled creation code, by contract name.
struct Compiled(serde_json::Map<String, serde_json::Value>);

impl Compiled {
    fn creation_code(&self, name: &str) -> Result<Vec<u8>> {
        let hex =
            self.0.get(name).and_then(|v| v.as_str()).ok_or_else(|| {
                DevnetError::Unexpected(format!("solc produced no code for {name}"))
            })?;
        let code: Bytes = hex
            .parse()
            .map_err(|e| DevnetError::Unexpected(format!("solc's code for {name}: {e}")))?;
        if code.is_empty() {
            return Err(DevnetError::Unexpected(format!(
                "solc's code for {name} is empty"
            )));
        }
        Ok(code.to_vec())
    }
}

/// A short hash of the Solidity sources, for the snapshot key.
pub(crate) fn sources_id() -> String {
    let mut all = Vec::new();
    for (name, source) in SOURCES {
        all.extend_from_slice(name.as_bytes());
        all.extend_from_slice(source.as_bytes());
    }
    keccak256(all).to_string()[2..10].to_owned()
}

/// Installs Permit2, the proxies and the test tokens into the chain behind `rpc`; mints the
/// tokens to the USDC holders.
pub(crate) async fn deploy_permit2_kit(
    rpc: &Rpc,
    prefix: &Path,
    accounts: &[DevAccount],
) -> Result<TestTokens> {
    let compiled = compile(prefix).await?;
    install_permit2(rpc, permit2_runtime(prefix)?).await?;
    let deployer = account(accounts, USDC_OWNER_INDEX)?;
    for (name, canonical) in [
        ("x402ExactPermit2Proxy", EXACT_PERMIT2_PROXY),
        ("x402UptoPermit2Proxy", UPTO_PERMIT2_PROXY),
    ] {
        let mut code = compiled.creation_code(name)?;
        code.extend(IPermit2Proxy::constructorCall { permit2: PERMIT2 }.abi_encode());
        let deployed = rpc.deploy(&code, deployer).await?;
        let runtime: Bytes = rpc
            .call_as("eth_getCode", json!([deployed, "latest"]))
            .await?;
        set_code(rpc, canonical, &runtime).await?;
    }
    let plain = deploy_token(
        rpc,
        &compiled,
        "PlainToken",
        PLAIN_TOKEN_NAME,
        PLAIN_TOKEN_SYMBOL,
        deployer,
    )
    .await?;
    let permit = deploy_token(
        rpc,
        &compiled,
        "PermitToken",
        PERMIT_TOKEN_NAME,
        PERMIT_TOKEN_SYMBOL,
        deployer,
    )
    .await?;
    for token in [plain, permit] {
        for i in USDC_HOLDER_INDICES {
            let to = account(accounts, i)?;
            let mint = ITestToken::mintCall {
                to,
                value: U256::from(INITIAL_TEST_TOKEN_BALANCE),
            };
            rpc.transact(deployer, Some(token), &mint.abi_encode())
                .await?;
        }
    }
    check_proxy(rpc, EXACT_PERMIT2_PROXY).await?;
    check_proxy(rpc, UPTO_PERMIT2_PROXY).await?;
    Ok(TestTokens { plain, permit })
}

async fn deploy_token(
    rpc: &Rpc,
    compiled: &Compiled,
    contract: &str,
    name: &str,
    symbol: &str,
    deployer: Address,
) -> Result<Address> {
    let mut code = compiled.creation_code(contract)?;
    code.extend(
        ITestToken::constructorCall {
            name_: name.to_owned(),
            symbol_: symbol.to_owned(),
            decimals_: TEST_TOKEN_DECIMALS,
        }
        .abi_encode(),
    );
    rpc.deploy(&code, deployer).await
}

/// The proxy at `at` answers `PERMIT2()` with the canonical Permit2.
async fn check_proxy(rpc: &Rpc, at: Address) -> Result<()> {
    let out = rpc
        .eth_call(at, &IPermit2Proxy::PERMIT2Call {}.abi_encode())
        .await?;
    let permit2 = IPermit2Proxy::PERMIT2Call::abi_decode_returns(&out)?;
    if permit2 != PERMIT2 {
        return Err(DevnetError::Unexpected(format!(
            "the proxy at {at} points at {permit2}, not Permit2"
        )));
    }
    Ok(())
}

/// Places Permit2's runtime code at the canonical address. The precompiled code carries the
/// EIP-712 domain separator of the chain and address it was built on as an immutable (for chain
/// 31337 at another address, it turns out), which would make every signature for the canonical
/// domain fail; the cached value is replaced by the one a deployment at the canonical address on
/// this chain bakes in, exactly as Permit2's constructor computes it.
async fn install_permit2(rpc: &Rpc, mut code: Vec<u8>) -> Result<()> {
    set_code(rpc, PERMIT2, &code).await?;
    let cached = domain_separator(rpc).await?;
    let expected = canonical_domain_separator(rpc).await?;
    if cached == expected {
        return Ok(());
    }
    let mut replaced = 0;
    let mut at = 0;
    while let Some(offset) = code[at..].windows(32).position(|w| w == cached.as_slice()) {
        let start = at + offset;
        code[start..start + 32].copy_from_slice(expected.as_slice());
        replaced += 1;
        at = start + 32;
    }
    set_code(rpc, PERMIT2, &code).await?;
    let now = domain_separator(rpc).await?;
    if replaced == 0 || now != expected {
        return Err(DevnetError::Unexpected(format!(
            "Permit2's domain separator is {now}, expected {expected} ({replaced} cached copies replaced)"
        )));
    }
    Ok(())
}

async fn domain_separator(rpc: &Rpc) -> Result<B256> {
    let out = rpc
        .eth_call(PERMIT2, &IPermit2::DOMAIN_SEPARATORCall {}.abi_encode())
        .await?;
    Ok(IPermit2::DOMAIN_SEPARATORCall::abi_decode_returns(&out)?)
}

/// `keccak256(abi.encode(EIP712Domain typehash, keccak256("Permit2"), chainid, PERMIT2))`.
async fn canonical_domain_separator(rpc: &Rpc) -> Result<B256> {
    let chain_id: alloy_primitives::U64 = rpc.call_as("eth_chainId", json!([])).await?;
    let domain = alloy_sol_types::Eip712Domain::new(
        Some("Permit2".into()),
        None,
        Some(U256::from(chain_id.to::<u64>())),
        Some(PERMIT2),
        None,
    );
    Ok(domain.separator())
}

async fn set_code(rpc: &Rpc, at: Address, code: &[u8]) -> Result<()> {
    rpc.call("anvil_setCode", json!([at, Bytes::copy_from_slice(code)]))
        .await
        .map(drop)
}

fn account(accounts: &[DevAccount], i: usize) -> Result<Address> {
    accounts
        .get(i)
        .map(|a| a.address)
        .ok_or_else(|| DevnetError::Unexpected(format!("dev account #{i} missing")))
}

/// Permit2's runtime code: the `hex"…"` literal in the periphery package's `DeployPermit2`.
fn permit2_runtime(prefix: &Path) -> Result<Vec<u8>> {
    let path = prefix.join(DEPLOY_PERMIT2_SOURCE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| DevnetError::io(format!("reading {}", path.display()), e))?;
    let start = text.find("hex\"").map(|i| i + 4);
    let hex = start
        .and_then(|start| text[start..].find('"').map(|len| &text[start..start + len]))
        .ok_or_else(|| DevnetError::Unexpected(format!("no hex literal in {}", path.display())))?;
    let code: Bytes = format!("0x{hex}")
        .parse()
        .map_err(|e| DevnetError::Unexpected(format!("Permit2 code in {}: {e}", path.display())))?;
    if code.len() < 1000 {
        return Err(DevnetError::Unexpected(format!(
            "Permit2 code in {} is only {} bytes",
            path.display(),
            code.len()
        )));
    }
    Ok(code.to_vec())
}

/// Compiles [`SOURCES`] with the pinned solc-js (about 5 s).
async fn compile(prefix: &Path) -> Result<Compiled> {
    use tokio::io::AsyncWriteExt;
    let sources: serde_json::Map<String, serde_json::Value> = SOURCES
        .iter()
        .map(|(name, source)| ((*name).to_owned(), json!(source)))
        .collect();
    let solc = prefix.join("node_modules/solc");
    let mut child = tokio::process::Command::new("node")
        .arg("-e")
        .arg(COMPILE_SCRIPT)
        .arg(&solc)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| DevnetError::io("running node to compile the Permit2 proxies", e))?;
    if let Some(mut stdin) = child.stdin.take() {
        let input = serde_json::Value::Object(sources).to_string();
        stdin
            .write_all(input.as_bytes())
            .await
            .map_err(|e| DevnetError::io("writing the sources to solc", e))?;
    }
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| DevnetError::io("waiting for solc", e))?;
    if !output.status.success() {
        return Err(DevnetError::Unexpected(format!(
            "solc failed ({}): {}",
            output.status,
            crate::install::tail(&String::from_utf8_lossy(&output.stderr), 30)
        )));
    }
    serde_json::from_slice(&output.stdout)
        .map(Compiled)
        .map_err(|e| DevnetError::Unexpected(format!("reading solc's output: {e}")))
}

/// `balanceOf(owner)` on any ERC-20.
pub(crate) async fn balance_of(rpc: &Rpc, token: Address, owner: Address) -> Result<U256> {
    let out = rpc
        .eth_call(token, &ITestToken::balanceOfCall { owner }.abi_encode())
        .await?;
    Ok(ITestToken::balanceOfCall::abi_decode_returns(&out)?)
}

/// `allowance(owner, spender)` on any ERC-20.
pub(crate) async fn allowance_of(
    rpc: &Rpc,
    token: Address,
    owner: Address,
    spender: Address,
) -> Result<U256> {
    let out = rpc
        .eth_call(
            token,
            &ITestToken::allowanceCall { owner, spender }.abi_encode(),
        )
        .await?;
    Ok(ITestToken::allowanceCall::abi_decode_returns(&out)?)
}
