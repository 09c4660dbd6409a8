//! Circle's USDC (FiatTokenV2_2 behind FiatTokenProxy): the ABI subset the devnet and its
//! users need, the EIP-3009 typed-data structs, and the deployment onto a fresh anvil.

use std::path::Path;

use alloy_primitives::{Address, Bytes, U256};
use alloy_sol_types::{Eip712Domain, SolCall, SolConstructor, eip712_domain, sol};

use crate::accounts::{DevAccount, PROXY_ADMIN_INDEX, USDC_HOLDER_INDICES, USDC_OWNER_INDEX};
use crate::error::{DevnetError, Result};
use crate::rpc::Rpc;

/// The token's EIP-712 domain name (`name()`).
pub const USDC_NAME: &str = "USD Coin";
/// The token's EIP-712 domain version (`version()`).
pub const USDC_VERSION: &str = "2";
/// The token's symbol.
pub const USDC_SYMBOL: &str = "USDC";
/// The token's decimals.
pub const USDC_DECIMALS: u8 = 6;
/// USDC (atomic units) minted to each of accounts #1..#8: 1,000,000 USDC.
pub const INITIAL_USDC_BALANCE: u64 = 1_000_000_000_000;
/// The minting allowance given to the owner (#0): effectively unlimited.
const MINTER_ALLOWANCE: U256 = U256::from_limbs([0, 0, 0, 1 << 56]);

/// The placeholder the Hardhat artifact leaves for the `SignatureChecker` library address.
const SIGNATURE_CHECKER_PLACEHOLDER: &str = "__$715109b5d747ea58b675c6ea3f0dba8c60$__";

sol! {
    /// The subset of FiatTokenV2_2's ABI the devnet and x402 tests use.
    #[allow(missing_docs)]
    interface IFiatToken {
        function initialize(string tokenName, string tokenSymbol, string tokenCurrency, uint8 tokenDecimals, address newMasterMinter, address newPauser, address newBlacklister, address newOwner);
        function initializeV2(string newName);
        function initializeV2_1(address lostAndFound);
        function initializeV2_2(address[] accountsToBlacklist, string newSymbol);
        function configureMinter(address minter, uint256 minterAllowedAmount) returns (bool);
        function mint(address to, uint256 amount) returns (bool);
        function minterAllowance(address minter) returns (uint256);
        function name() returns (string);
        function symbol() returns (string);
        function version() returns (string);
        function decimals() returns (uint8);
        function totalSupply() returns (uint256);
        function balanceOf(address account) returns (uint256);
        function transfer(address to, uint256 value) returns (bool);
        function blacklist(address account);
        function pause();
        function unpause();
        function DOMAIN_SEPARATOR() returns (bytes32);
        function authorizationState(address authorizer, bytes32 nonce) returns (bool);
        function transferWithAuthorization(address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce, uint8 v, bytes32 r, bytes32 s);
        function transferWithAuthorization(address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce, bytes signature);
        function receiveWithAuthorization(address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce, uint8 v, bytes32 r, bytes32 s);
        function receiveWithAuthorization(address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce, bytes signature);
        function cancelAuthorization(address authorizer, bytes32 nonce, bytes signature);

        event Transfer(address indexed from, address indexed to, uint256 value);
        event AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce);
        event AuthorizationCanceled(address indexed authorizer, bytes32 indexed nonce);
    }

    /// The proxy's constructor.
    #[allow(missing_docs)]
    contract FiatTokenProxy {
        constructor(address implementationContract);
    }

    /// EIP-3009 `TransferWithAuthorization` typed data (what an x402 `exact` EVM payment signs).
    #[derive(Debug, PartialEq, Eq)]
    #[allow(missing_docs)]
    struct TransferWithAuthorization {
        address from;
        address to;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
    }

    /// EIP-3009 `ReceiveWithAuthorization` typed data.
    #[derive(Debug, PartialEq, Eq)]
    #[allow(missing_docs)]
    struct ReceiveWithAuthorization {
        address from;
        address to;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
    }
}

/// The EIP-712 domain of the USDC deployed at `usdc` on `chain_id`.
pub fn usdc_domain(chain_id: u64, usdc: Address) -> Eip712Domain {
    eip712_domain! {
        name: USDC_NAME,
        version: USDC_VERSION,
        chain_id: chain_id,
        verifying_contract: usdc,
    }
}

fn creation_code(artifacts: &Path, relative: &str) -> Result<String> {
    let path = artifacts.join(relative);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| DevnetError::io(format!("reading {}", path.display()), e))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| DevnetError::Unexpected(format!("{}: {e}", path.display())))?;
    json.get("bytecode")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| DevnetError::Unexpected(format!("{}: no bytecode", path.display())))
}

fn decode_hex(code: &str, what: &str) -> Result<Vec<u8>> {
    alloy_primitives::hex::decode(code)
        .map_err(|e| DevnetError::Unexpected(format!("{what} bytecode is not hex: {e}")))
}

/// Deploys SignatureChecker, FiatTokenV2_2 (linked) and FiatTokenProxy, initializes the
/// token and mints [`INITIAL_USDC_BALANCE`] to accounts #1..#8. Returns the proxy address.
pub(crate) async fn deploy_usdc(
    rpc: &Rpc,
    artifacts: &Path,
    accounts: &[DevAccount],
) -> Result<Address> {
    let owner = dev_address(accounts, USDC_OWNER_INDEX)?;
    let admin = dev_address(accounts, PROXY_ADMIN_INDEX)?;
    let checker = deploy_signature_checker(rpc, artifacts, owner).await?;
    let implementation = deploy_token_implementation(rpc, artifacts, checker, owner).await?;
    let usdc = deploy_proxy(rpc, artifacts, implementation, admin).await?;
    for data in initialization_calls(owner) {
        rpc.transact(owner, Some(usdc), &data).await?;
    }
    for i in USDC_HOLDER_INDICES {
        let data = IFiatToken::mintCall {
            to: dev_address(accounts, i)?,
            amount: U256::from(INITIAL_USDC_BALANCE),
        }
        .abi_encode();
        rpc.transact(owner, Some(usdc), &data).await?;
    }
    check_deployment(rpc, usdc, dev_address(accounts, 1)?).await?;
    Ok(usdc)
}

fn dev_address(accounts: &[DevAccount], i: usize) -> Result<Address> {
    accounts
        .get(i)
        .map(|a| a.address)
        .ok_or_else(|| DevnetError::Unexpected(format!("dev account #{i} missing")))
}

/// (1) The SignatureChecker library the token links against.
async fn deploy_signature_checker(rpc: &Rpc, artifacts: &Path, owner: Address) -> Result<Address> {
    let code = creation_code(artifacts, "util/SignatureChecker.sol/SignatureChecker.json")?;
    rpc.deploy(&decode_hex(&code, "SignatureChecker")?, owner)
        .await
}

/// (2) The token implementation, linked against the library at `checker`.
async fn deploy_token_implementation(
    rpc: &Rpc,
    artifacts: &Path,
    checker: Address,
    owner: Address,
) -> Result<Address> {
    let code = creation_code(artifacts, "v2/FiatTokenV2_2.sol/FiatTokenV2_2.json")?;
    let linked = link_signature_checker(&code, checker)?;
    rpc.deploy(&decode_hex(&linked, "FiatTokenV2_2")?, owner)
        .await
}

/// The token's creation code with every SignatureChecker placeholder
/// replaced by `checker`; an error if the artifact is not the one expected.
fn link_signature_checker(code: &str, checker: Address) -> Result<String> {
    if !code.contains(SIGNATURE_CHECKER_PLACEHOLDER) {
        return Err(DevnetError::Unexpected(
            "FiatTokenV2_2 bytecode has no SignatureChecker link placeholder".into(),
        ));
    }
    let linked = code.replace(
        SIGNATURE_CHECKER_PLACEHOLDER,
        &alloy_primitives::hex::encode(checker),
    );
    if linked.contains("__$") {
        return Err(DevnetError::Unexpected(
            "FiatTokenV2_2 bytecode has unresolved link placeholders".into(),
        ));
    }
    Ok(linked)
}

/// (3) The proxy, from a different account (the admin cannot call token functions).
async fn deploy_proxy(
    rpc: &Rpc,
    artifacts: &Path,
    implementation: Address,
    admin: Address,
) -> Result<Address> {
    let code = creation_code(artifacts, "v1/FiatTokenProxy.sol/FiatTokenProxy.json")?;
    let mut init = decode_hex(&code, "FiatTokenProxy")?;
    init.extend_from_slice(
        &FiatTokenProxy::constructorCall {
            implementationContract: implementation,
        }
        .abi_encode(),
    );
    rpc.deploy(&init, admin).await
}

/// (4) The calls, through the proxy, that initialize every token version and
/// make `owner` the master minter.
fn initialization_calls(owner: Address) -> Vec<Vec<u8>> {
    vec![
        IFiatToken::initializeCall {
            tokenName: USDC_NAME.into(),
            tokenSymbol: USDC_SYMBOL.into(),
            tokenCurrency: "USD".into(),
            tokenDecimals: USDC_DECIMALS,
            newMasterMinter: owner,
            newPauser: owner,
            newBlacklister: owner,
            newOwner: owner,
        }
        .abi_encode(),
        IFiatToken::initializeV2Call {
            newName: USDC_NAME.into(),
        }
        .abi_encode(),
        IFiatToken::initializeV2_1Call {
            lostAndFound: owner,
        }
        .abi_encode(),
        IFiatToken::initializeV2_2Call {
            accountsToBlacklist: vec![],
            newSymbol: USDC_SYMBOL.into(),
        }
        .abi_encode(),
        IFiatToken::configureMinterCall {
            minter: owner,
            minterAllowedAmount: MINTER_ALLOWANCE,
        }
        .abi_encode(),
    ]
}

/// The token at `usdc` answers with our name and version, and `holder` got its mint.
async fn check_deployment(rpc: &Rpc, usdc: Address, holder: Address) -> Result<()> {
    let name = IFiatToken::nameCall::abi_decode_returns(
        &rpc.eth_call(usdc, &IFiatToken::nameCall {}.abi_encode())
            .await?,
    )?;
    let version = IFiatToken::versionCall::abi_decode_returns(
        &rpc.eth_call(usdc, &IFiatToken::versionCall {}.abi_encode())
            .await?,
    )?;
    let balance = usdc_balance_of(rpc, usdc, holder).await?;
    if name != USDC_NAME || version != USDC_VERSION || balance != U256::from(INITIAL_USDC_BALANCE) {
        return Err(DevnetError::Unexpected(format!(
            "USDC deployed at {usdc} looks wrong: name {name:?}, version {version:?}, balance of #1 {balance}"
        )));
    }
    Ok(())
}

/// `balanceOf(owner)` on the token at `usdc`.
pub(crate) async fn usdc_balance_of(rpc: &Rpc, usdc: Address, owner: Address) -> Result<U256> {
    let out: Bytes = rpc
        .eth_call(
            usdc,
            &IFiatToken::balanceOfCall { account: owner }.abi_encode(),
        )
        .await?;
    Ok(IFiatToken::balanceOfCall::abi_decode_returns(&out)?)
}
