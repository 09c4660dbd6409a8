//! The Permit2 client (`exact` with Permit2, `upto`) against the real
//! Permit2 contract and x402 proxies on a local anvil chain: what our client
//! signs is accepted ON CHAIN when a devnet account calls the proxies
//! directly (no facilitator in between), the approvals it signs for
//! sponsoring facilitators are accepted by the token, and the spend probe
//! reads the Permit2 nonce bitmap.

use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_sol_types::SolCall;
use paywire_core::{
    AtomicAmount, ChainId, CreatedPayment, Extensions, PaymentPayload, PaymentRequirements, Price,
    RequirementsRequest, SchemeClient, SchemeError, SchemeServer, SpendState, SupportedKind,
};
use paywire_evm::exact::{ExactEvmClient, ExactEvmServer, ExactEvmSpendProbe};
use paywire_evm::permit2::{
    EIP2612_GAS_SPONSORING, ERC20_APPROVAL_GAS_SPONSORING, EXACT_PERMIT2_PROXY, PERMIT2_ADDRESS,
    Permit2Payload, UPTO_PERMIT2_PROXY, approve_permit2,
};
use paywire_evm::rpc::RpcClient;
use paywire_evm::upto::{UptoEvmClient, UptoEvmServer};
use paywire_evm::{Eip155ChainId, EvmAsset, EvmNetwork, EvmNetworks, LocalSigner, TransferMethod};
use paywire_testkit::Devnet;
use serde_json::json;

/// The proxies' entry points, as @x402/evm 2.27's ABIs declare them.
mod proxies {
    #![allow(missing_docs)]
    alloy_sol_types::sol! {
        struct TokenPermissions { address token; uint256 amount; }
        struct PermitTransferFrom { TokenPermissions permitted; uint256 nonce; uint256 deadline; }
        struct ExactWitness { address to; uint256 validAfter; }
        struct UptoWitness { address to; address facilitator; uint256 validAfter; }

        interface IExactProxy {
            function settle(PermitTransferFrom permit, address owner, ExactWitness witness, bytes signature) external;
        }
        interface IUptoProxy {
            function settle(PermitTransferFrom permit, uint256 amount, address owner, UptoWitness witness, bytes signature) external;
        }
        interface IPermitToken {
            function permit(address owner, address spender, uint256 value, uint256 deadline, uint8 v, bytes32 r, bytes32 s) external;
            function nonces(address owner) external view returns (uint256);
        }
    }
}

use proxies::{
    ExactWitness, IExactProxy, IPermitToken, IUptoProxy, PermitTransferFrom, TokenPermissions,
    UptoWitness,
};

const PRICE: u64 = 25_000;
const CHAIN_ID: u64 = 31337;

struct Env {
    devnet: Devnet,
    rpc: Arc<RpcClient>,
    networks: EvmNetworks,
}

async fn env() -> Env {
    let devnet = Devnet::start().await.unwrap();
    let rpc = Arc::new(
        RpcClient::new(vec![devnet.rpc_url().to_owned()], Duration::from_secs(10)).unwrap(),
    );
    let mut network = EvmNetwork::anvil(devnet.usdc());
    network.other_assets.push(EvmAsset {
        address: devnet.plain_token(),
        symbol: "PUSD".into(),
        decimals: 6,
        eip712_name: String::new(),
        eip712_version: String::new(),
        usd_stable: true,
        transfer_method: TransferMethod::Permit2,
        eip2612: false,
    });
    network.other_assets.push(EvmAsset {
        address: devnet.permit_token(),
        symbol: "EUSD".into(),
        decimals: 6,
        eip712_name: "Permit Dollar".into(),
        eip712_version: "1".into(),
        usd_stable: true,
        transfer_method: TransferMethod::Permit2,
        eip2612: true,
    });
    let mut networks = EvmNetworks::empty();
    networks.insert(network);
    Env {
        devnet,
        rpc,
        networks,
    }
}

impl Env {
    fn chain(&self) -> ChainId {
        ChainId::eip155(CHAIN_ID)
    }

    fn key(&self, index: usize) -> LocalSigner {
        LocalSigner::new(self.devnet.account(index).signer())
    }

    /// `exact` requirements for `PRICE` of `token`, as our server builds them.
    fn exact_requirements(&self, token: Address, pay_to: Address) -> PaymentRequirements {
        let chain = self.chain();
        let price = Price::Atomic {
            amount: AtomicAmount::from(PRICE),
            asset: token.to_string(),
            extra: None,
        };
        ExactEvmServer::new(self.networks.clone())
            .requirements(&request(&chain, &price, &pay_to.to_string(), None))
            .unwrap()
    }

    /// `upto` requirements for at most `PRICE` of `token`, settled by `facilitator`.
    fn upto_requirements(
        &self,
        token: Address,
        pay_to: Address,
        facilitator: Address,
    ) -> PaymentRequirements {
        let chain = self.chain();
        let price = Price::Atomic {
            amount: AtomicAmount::from(PRICE),
            asset: token.to_string(),
            extra: None,
        };
        let kind = SupportedKind {
            x402_version: 2,
            scheme: "upto".into(),
            network: chain.to_string(),
            extra: json!({ "facilitatorAddress": facilitator.to_string() })
                .as_object()
                .cloned(),
        };
        UptoEvmServer::new(self.networks.clone())
            .requirements(&request(&chain, &price, &pay_to.to_string(), Some(&kind)))
            .unwrap()
    }

    fn exact_client(&self, payer: usize) -> ExactEvmClient<LocalSigner> {
        ExactEvmClient::new(self.key(payer)).with_rpc(self.chain(), Arc::clone(&self.rpc))
    }

    fn upto_client(&self, payer: usize) -> UptoEvmClient<LocalSigner> {
        UptoEvmClient::new(self.key(payer)).with_rpc(self.chain(), Arc::clone(&self.rpc))
    }

    fn probe(&self) -> ExactEvmSpendProbe {
        ExactEvmSpendProbe::new()
            .network(self.chain(), Arc::clone(&self.rpc))
            .reorg_margin(0)
    }

    async fn balance(&self, token: Address, owner: Address) -> U256 {
        self.devnet.token_balance(token, owner).await.unwrap()
    }

    /// Calls the exact proxy's `settle` with `payload` from the unlocked
    /// `caller`; returns the transaction hash.
    async fn settle_exact(&self, caller: Address, payload: &Permit2Payload) -> B256 {
        let authorization = &payload.permit2_authorization;
        let call = IExactProxy::settleCall {
            permit: permit_of(payload),
            owner: authorization.from,
            witness: ExactWitness {
                to: authorization.witness.to,
                validAfter: authorization.witness.valid_after.as_u256(),
            },
            signature: payload.signature.clone(),
        };
        self.devnet
            .transact(caller, EXACT_PERMIT2_PROXY, call.abi_encode())
            .await
            .unwrap()
            .transaction_hash
    }

    /// The upto proxy's `settle` of `amount`, from `caller`: simulated first,
    /// an `Err` carrying the node's refusal (with the revert data) if it
    /// reverts, else sent and mined (its transaction hash).
    async fn settle_upto(
        &self,
        caller: Address,
        payload: &Permit2Payload,
        amount: U256,
    ) -> Result<B256, String> {
        let authorization = &payload.permit2_authorization;
        let call = IUptoProxy::settleCall {
            permit: permit_of(payload),
            amount,
            owner: authorization.from,
            witness: UptoWitness {
                to: authorization.witness.to,
                facilitator: authorization.witness.facilitator.unwrap_or_default(),
                validAfter: authorization.witness.valid_after.as_u256(),
            },
            signature: payload.signature.clone(),
        };
        let data = Bytes::from(call.abi_encode());
        let simulation =
            json!([{"from": caller, "to": UPTO_PERMIT2_PROXY, "data": data}, "latest"]);
        self.devnet
            .rpc("eth_call", simulation)
            .await
            .map_err(|e| e.to_string())?;
        self.devnet
            .transact(caller, UPTO_PERMIT2_PROXY, data)
            .await
            .map(|receipt| receipt.transaction_hash)
            .map_err(|e| e.to_string())
    }
}

fn request<'a>(
    network: &'a ChainId,
    price: &'a Price,
    pay_to: &'a str,
    kind: Option<&'a SupportedKind>,
) -> RequirementsRequest<'a> {
    RequirementsRequest {
        network,
        price,
        pay_to,
        max_timeout_seconds: 120,
        facilitator_kind: kind,
    }
}

/// Whether a refusal carries the proxy's custom error `signature` (e.g.
/// `UnauthorizedFacilitator()`) in its revert data.
fn reverted_with(refusal: &str, signature: &str) -> bool {
    let selector = &alloy_primitives::keccak256(signature)[..4];
    refusal.contains(&alloy_primitives::hex::encode(selector))
}

fn permit_of(payload: &Permit2Payload) -> PermitTransferFrom {
    let authorization = &payload.permit2_authorization;
    PermitTransferFrom {
        permitted: TokenPermissions {
            token: authorization.permitted.token,
            amount: authorization.permitted.amount.as_u256(),
        },
        nonce: authorization.nonce,
        deadline: authorization.deadline.as_u256(),
    }
}

fn payment(requirements: &PaymentRequirements, created: &CreatedPayment) -> PaymentPayload {
    PaymentPayload {
        x402_version: 2,
        payload: created.payload.clone(),
        extensions: None,
        resource: None,
        accepted: requirements.clone(),
    }
}

fn offering(ids: &[&str]) -> Extensions {
    let mut offered = Extensions::new();
    for id in ids {
        offered
            .0
            .insert((*id).to_owned(), json!({"info": {"version": "1"}}));
    }
    offered
}

fn signed(created: &CreatedPayment) -> Permit2Payload {
    Permit2Payload::from_json(&created.payload).unwrap()
}

#[tokio::test]
async fn an_exact_permit2_payment_settles_through_the_proxy_and_the_probe_follows_it() {
    let env = env().await;
    let token = env.devnet.plain_token();
    let payer = env.devnet.usdc_holders()[0].clone();
    let pay_to = env.devnet.account(9).address;
    // The payer's own one-time approval, through our public helper.
    let hash = approve_permit2(&env.key(payer.index), &env.rpc, CHAIN_ID, token, U256::MAX)
        .await
        .unwrap();
    assert_ne!(hash, B256::ZERO);
    assert_eq!(
        env.devnet
            .allowance(token, payer.address, PERMIT2_ADDRESS)
            .await
            .unwrap(),
        U256::MAX
    );
    let requirements = env.exact_requirements(token, pay_to);
    assert_eq!(
        requirements.extra_str("assetTransferMethod"),
        Some("permit2")
    );
    let offered = offering(&[EIP2612_GAS_SPONSORING, ERC20_APPROVAL_GAS_SPONSORING]);
    let created = env
        .exact_client(payer.index)
        .create_payment(&requirements, Some(&offered))
        .await
        .unwrap();
    // Approved already: nothing for a sponsor to do.
    assert!(created.extensions.is_empty());
    let payload = payment(&requirements, &created);
    assert_eq!(env.probe().state(&payload).await, SpendState::Unknown);
    let before = (
        env.balance(token, payer.address).await,
        env.balance(token, pay_to).await,
    );
    // Anyone may call the exact proxy: the witness fixes the recipient.
    let hash = env
        .settle_exact(env.devnet.account(0).address, &signed(&created))
        .await;
    assert_eq!(
        env.balance(token, payer.address).await,
        before.0 - U256::from(PRICE)
    );
    assert_eq!(
        env.balance(token, pay_to).await,
        before.1 + U256::from(PRICE)
    );
    assert_eq!(env.probe().state(&payload).await, SpendState::Spent);
    assert_eq!(
        env.probe().settled(&payload, &hash.to_string()).await,
        Some(AtomicAmount::from(PRICE))
    );
}

#[tokio::test]
async fn an_unused_permit2_payment_turns_unspent_after_its_deadline_only() {
    let env = env().await;
    let token = env.devnet.plain_token();
    let payer = env.devnet.usdc_holders()[1].clone();
    env.devnet
        .approve_permit2(token, &payer, U256::from(PRICE))
        .await
        .unwrap();
    let requirements = env.exact_requirements(token, env.devnet.account(9).address);
    // The client's clock is the chain's: the deadline is chain time + 120 s.
    let now = env.devnet.block_timestamp().await.unwrap();
    let client = env
        .exact_client(payer.index)
        .with_clock(Arc::new(move || now));
    let created = client.create_payment(&requirements, None).await.unwrap();
    let payload = payment(&requirements, &created);
    assert_eq!(env.probe().state(&payload).await, SpendState::Unknown);
    env.devnet.increase_time(60).await.unwrap();
    assert_eq!(env.probe().state(&payload).await, SpendState::Unknown);
    env.devnet.increase_time(120).await.unwrap();
    assert_eq!(env.probe().state(&payload).await, SpendState::Unspent);
}

#[tokio::test]
async fn an_upto_payment_settles_less_than_the_maximum_only_from_the_named_facilitator() {
    let env = env().await;
    let token = env.devnet.plain_token();
    let payer = env.devnet.usdc_holders()[2].clone();
    let facilitator = env.devnet.account(0).address;
    let pay_to = env.devnet.account(9).address;
    env.devnet
        .approve_permit2(token, &payer, U256::MAX)
        .await
        .unwrap();
    let requirements = env.upto_requirements(token, pay_to, facilitator);
    let created = env
        .upto_client(payer.index)
        .create_payment(&requirements, None)
        .await
        .unwrap();
    let payload = signed(&created);
    assert_eq!(
        payload.permit2_authorization.witness.facilitator,
        Some(facilitator)
    );
    let used = U256::from(PRICE - 7_000);
    // Another account is refused by the proxy: the witness binds the facilitator.
    let outsider = env.devnet.account(8).address;
    let refusal = env.settle_upto(outsider, &payload, used).await.unwrap_err();
    assert!(
        reverted_with(&refusal, "UnauthorizedFacilitator()"),
        "{refusal}"
    );
    // More than the signed maximum is refused too.
    let over = U256::from(PRICE + 1);
    let refusal = env
        .settle_upto(facilitator, &payload, over)
        .await
        .unwrap_err();
    assert!(
        reverted_with(&refusal, "AmountExceedsPermitted()"),
        "{refusal}"
    );
    let probe_payload = payment(&requirements, &created);
    assert_eq!(env.probe().state(&probe_payload).await, SpendState::Unknown);
    let before = (
        env.balance(token, payer.address).await,
        env.balance(token, pay_to).await,
    );
    env.settle_upto(facilitator, &payload, used).await.unwrap();
    assert_eq!(env.balance(token, payer.address).await, before.0 - used);
    assert_eq!(env.balance(token, pay_to).await, before.1 + used);
    assert_eq!(env.probe().state(&probe_payload).await, SpendState::Spent);
}

#[tokio::test]
async fn without_allowance_the_client_signs_the_permit_a_sponsor_offered() {
    let env = env().await;
    let token = env.devnet.permit_token();
    let payer = env.devnet.usdc_holders()[3].clone();
    let pay_to = env.devnet.account(9).address;
    let requirements = env.exact_requirements(token, pay_to);
    assert_eq!(requirements.extra_str("name"), Some("Permit Dollar"));
    let offered = offering(&[EIP2612_GAS_SPONSORING, ERC20_APPROVAL_GAS_SPONSORING]);
    let created = env
        .exact_client(payer.index)
        .create_payment(&requirements, Some(&offered))
        .await
        .unwrap();
    let extension_ids: Vec<&String> = created.extensions.keys().collect();
    assert_eq!(extension_ids, [EIP2612_GAS_SPONSORING]);
    let info = &created.extensions[EIP2612_GAS_SPONSORING]["info"];
    let keys: Vec<&String> = info.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "from",
            "asset",
            "spender",
            "amount",
            "nonce",
            "deadline",
            "signature",
            "version"
        ]
    );
    let payload = signed(&created);
    assert_eq!(info["from"], payer.address.to_checksum(None));
    assert_eq!(info["asset"], token.to_checksum(None));
    assert_eq!(info["spender"], PERMIT2_ADDRESS.to_checksum(None));
    assert_eq!(info["amount"], PRICE.to_string());
    assert_eq!(info["nonce"], "0");
    assert_eq!(
        info["deadline"],
        payload.permit2_authorization.deadline.to_string()
    );
    assert_eq!(info["version"], "1");
    // The token accepts the permit as signed (submitted by another account).
    let signature: Bytes = serde_json::from_value(info["signature"].clone()).unwrap();
    assert_eq!(signature.len(), 65);
    let permit = IPermitToken::permitCall {
        owner: payer.address,
        spender: PERMIT2_ADDRESS,
        value: U256::from(PRICE),
        deadline: payload.permit2_authorization.deadline.as_u256(),
        v: signature[64],
        r: B256::from_slice(&signature[..32]),
        s: B256::from_slice(&signature[32..64]),
    };
    let sponsor = env.devnet.account(0).address;
    env.devnet
        .transact(sponsor, token, permit.abi_encode())
        .await
        .unwrap();
    assert_eq!(
        env.devnet
            .allowance(token, payer.address, PERMIT2_ADDRESS)
            .await
            .unwrap(),
        U256::from(PRICE)
    );
    let before = env.balance(token, pay_to).await;
    env.settle_exact(sponsor, &payload).await;
    assert_eq!(env.balance(token, pay_to).await, before + U256::from(PRICE));
}

#[tokio::test]
async fn without_allowance_the_client_signs_the_approval_transaction_a_sponsor_offered() {
    let env = env().await;
    let token = env.devnet.plain_token();
    let payer = env.devnet.usdc_holders()[4].clone();
    let pay_to = env.devnet.account(9).address;
    let requirements = env.upto_requirements(token, pay_to, env.devnet.account(0).address);
    // A permit offer does not apply to a token without EIP-2612.
    let offered = offering(&[EIP2612_GAS_SPONSORING, ERC20_APPROVAL_GAS_SPONSORING]);
    let created = env
        .upto_client(payer.index)
        .create_payment(&requirements, Some(&offered))
        .await
        .unwrap();
    let extension_ids: Vec<&String> = created.extensions.keys().collect();
    assert_eq!(extension_ids, [ERC20_APPROVAL_GAS_SPONSORING]);
    let info = &created.extensions[ERC20_APPROVAL_GAS_SPONSORING]["info"];
    let keys: Vec<&String> = info.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "from",
            "asset",
            "spender",
            "amount",
            "signedTransaction",
            "version"
        ]
    );
    assert_eq!(info["amount"], U256::MAX.to_string());
    // The node accepts the signed transaction as is, and it approves Permit2.
    let raw: Bytes = serde_json::from_value(info["signedTransaction"].clone()).unwrap();
    let hash = env.rpc.send_raw_transaction(&raw).await.unwrap();
    let receipt = env.devnet.wait_receipt(hash).await.unwrap();
    assert!(receipt.status);
    assert_eq!(
        env.devnet
            .allowance(token, payer.address, PERMIT2_ADDRESS)
            .await
            .unwrap(),
        U256::MAX
    );
    let before = env.balance(token, pay_to).await;
    let used = U256::from(PRICE);
    env.settle_upto(env.devnet.account(0).address, &signed(&created), used)
        .await
        .unwrap();
    assert_eq!(env.balance(token, pay_to).await, before + used);
}

#[tokio::test]
async fn without_allowance_and_without_a_sponsor_the_client_says_to_approve() {
    let env = env().await;
    let token = env.devnet.plain_token();
    let payer = env.devnet.usdc_holders()[5].clone();
    let requirements = env.exact_requirements(token, env.devnet.account(9).address);
    for offered in [None, Some(offering(&[EIP2612_GAS_SPONSORING]))] {
        let error = env
            .exact_client(payer.index)
            .create_payment(&requirements, offered.as_ref())
            .await
            .unwrap_err();
        assert!(matches!(error, SchemeError::Unsupported(_)), "{error}");
        assert!(error.to_string().contains("approve"), "{error}");
    }
    // Without a node the client cannot tell: it signs, and the facilitator
    // would answer `permit2_allowance_required`.
    let blind = ExactEvmClient::new(env.key(payer.index));
    assert!(blind.create_payment(&requirements, None).await.is_ok());
    // Once approved, the same client pays.
    env.devnet
        .approve_permit2(token, &payer, U256::from(PRICE))
        .await
        .unwrap();
    let created = env
        .exact_client(payer.index)
        .create_payment(&requirements, None)
        .await
        .unwrap();
    assert!(created.extensions.is_empty());
}

/// Byte for byte what the official TypeScript clients (`@x402/evm` 2.27
/// `ExactEvmScheme` with Permit2, `UptoEvmScheme`) produce for the same key,
/// time and random bytes (`tests/vectors/permit2-ts.json`, from
/// `gen-permit2.mjs`).
#[tokio::test]
async fn payloads_match_the_typescript_clients_byte_for_byte() {
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    let path = format!("{crate_dir}/tests/vectors/permit2-ts.json");
    let vectors: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let injected = &vectors["injected"];
    let now = injected["dateNowMs"].as_u64().unwrap() / 1000;
    let random: B256 = injected["getRandomValues"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let key = LocalSigner::from_hex(injected["payerPrivateKey"].as_str().unwrap()).unwrap();
    let cases = vectors["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for case in cases {
        let requirements: PaymentRequirements =
            serde_json::from_value(case["requirements"].clone()).unwrap();
        let clock: paywire_evm::exact::Clock = Arc::new(move || now);
        let nonces: paywire_evm::exact::NonceSource = Arc::new(move || random);
        let created = match requirements.scheme.as_str() {
            "upto" => UptoEvmClient::new(key.clone())
                .with_clock(clock)
                .with_nonce_source(nonces)
                .create_payment(&requirements, None)
                .await
                .unwrap(),
            _ => ExactEvmClient::new(key.clone())
                .with_clock(clock)
                .with_nonce_source(nonces)
                .create_payment(&requirements, None)
                .await
                .unwrap(),
        };
        assert_eq!(
            serde_json::to_string(&created.payload).unwrap(),
            case["payloadJson"].as_str().unwrap(),
            "{}",
            case["id"]
        );
        assert!(created.extensions.is_empty());
        assert!(case["extensions"].is_null());
    }
}

/// POSTs `{x402Version, paymentPayload, paymentRequirements}` to `url`.
async fn facilitator_call(
    url: &str,
    payload: &PaymentPayload,
    requirements: &PaymentRequirements,
) -> serde_json::Value {
    let body = json!({
        "x402Version": 2,
        "paymentPayload": payload,
        "paymentRequirements": requirements,
    });
    let answer = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap();
    answer.json().await.unwrap()
}

/// The official TypeScript facilitator (2.27) verifies and settles what our
/// clients sign, for requirements our servers built from its `/supported`:
/// `exact` with Permit2, and `upto` settled below its maximum.
#[tokio::test]
async fn the_typescript_facilitator_settles_what_our_clients_sign() {
    use paywire_testkit::peer::{TsFacilitator, TsFacilitatorOptions};
    let env = env().await;
    let options = TsFacilitatorOptions {
        upto: true,
        ..TsFacilitatorOptions::default()
    };
    let owner_key = env.devnet.usdc_owner().private_key;
    let facilitator = TsFacilitator::start_with(&env.devnet, owner_key, options)
        .await
        .unwrap();
    let supported: paywire_core::SupportedResponse =
        reqwest::get(format!("{}/supported", facilitator.url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let upto_kind = supported
        .kinds
        .iter()
        .find(|kind| kind.scheme == "upto")
        .cloned()
        .unwrap();
    let token = env.devnet.plain_token();
    let payer = env.devnet.usdc_holders()[6].clone();
    let pay_to = env.devnet.account(9).address;
    env.devnet
        .approve_permit2(token, &payer, U256::MAX)
        .await
        .unwrap();
    let verify = format!("{}/verify", facilitator.url());
    let settle = format!("{}/settle", facilitator.url());

    let exact = env.exact_requirements(token, pay_to);
    let created = env
        .exact_client(payer.index)
        .create_payment(&exact, None)
        .await
        .unwrap();
    let payload = payment(&exact, &created);
    let verified = facilitator_call(&verify, &payload, &exact).await;
    assert_eq!(
        verified["isValid"],
        true,
        "{verified}\n{}",
        facilitator.log_tail()
    );
    let before = env.balance(token, pay_to).await;
    let settled = facilitator_call(&settle, &payload, &exact).await;
    assert_eq!(
        settled["success"],
        true,
        "{settled}\n{}",
        facilitator.log_tail()
    );
    assert_eq!(env.balance(token, pay_to).await, before + U256::from(PRICE));

    let chain = env.chain();
    let price = Price::Atomic {
        amount: AtomicAmount::from(PRICE),
        asset: token.to_string(),
        extra: None,
    };
    let upto = UptoEvmServer::new(env.networks.clone())
        .requirements(&request(
            &chain,
            &price,
            &pay_to.to_string(),
            Some(&upto_kind),
        ))
        .unwrap();
    assert_eq!(
        upto.extra_str("facilitatorAddress"),
        Some(facilitator.signer().to_checksum(None).as_str())
    );
    let created = env
        .upto_client(payer.index)
        .create_payment(&upto, None)
        .await
        .unwrap();
    let payload = payment(&upto, &created);
    let verified = facilitator_call(&verify, &payload, &upto).await;
    assert_eq!(
        verified["isValid"],
        true,
        "{verified}\n{}",
        facilitator.log_tail()
    );
    let used = PRICE - 4_321;
    let mut actual = upto.clone();
    actual.amount = AtomicAmount::from(used);
    let before = env.balance(token, pay_to).await;
    let settled = facilitator_call(&settle, &payload, &actual).await;
    assert_eq!(
        settled["success"],
        true,
        "{settled}\n{}",
        facilitator.log_tail()
    );
    assert_eq!(env.balance(token, pay_to).await, before + U256::from(used));
}

/// Hostile review r2: a usage-based charge counts what the chain proves,
/// never the receipt's claim. The probe reads the named transaction: the
/// settled amount for this very authorization, and nothing for another
/// payment's settlement, a reverted replay or an unknown hash.
#[tokio::test]
async fn the_probe_reads_what_an_upto_settlement_moved_and_nothing_else() {
    let env = env().await;
    let token = env.devnet.plain_token();
    let payer = env.devnet.usdc_holders()[1].clone();
    let facilitator = env.devnet.account(0).address;
    let pay_to = env.devnet.account(9).address;
    env.devnet
        .approve_permit2(token, &payer, U256::MAX)
        .await
        .unwrap();
    let requirements = env.upto_requirements(token, pay_to, facilitator);
    let client = env.upto_client(payer.index);
    let first = client.create_payment(&requirements, None).await.unwrap();
    let second = client.create_payment(&requirements, None).await.unwrap();
    let (first_payment, second_payment) = (
        payment(&requirements, &first),
        payment(&requirements, &second),
    );
    let probe = env.probe();

    let used = U256::from(PRICE - 7_000);
    let settled = env
        .settle_upto(facilitator, &signed(&first), used)
        .await
        .unwrap();
    assert_eq!(
        probe.settled(&first_payment, &settled.to_string()).await,
        Some(AtomicAmount::from(used))
    );
    let full = env
        .settle_upto(facilitator, &signed(&second), U256::from(PRICE))
        .await
        .unwrap();
    assert_eq!(
        probe.settled(&second_payment, &full.to_string()).await,
        Some(AtomicAmount::from(PRICE))
    );
    // Another payment's settlement proves nothing about this one.
    assert_eq!(probe.settled(&first_payment, &full.to_string()).await, None);
    assert_eq!(
        probe.settled(&second_payment, &settled.to_string()).await,
        None
    );

    // The same settlement again: mined, but reverted (the nonce is used).
    let replay = IUptoProxy::settleCall {
        permit: permit_of(&signed(&first)),
        amount: used,
        owner: payer.address,
        witness: UptoWitness {
            to: pay_to,
            facilitator,
            validAfter: signed(&first)
                .permit2_authorization
                .witness
                .valid_after
                .as_u256(),
        },
        signature: signed(&first).signature,
    };
    let sent = env
        .devnet
        .rpc(
            "eth_sendTransaction",
            json!([{
                "from": facilitator,
                "to": UPTO_PERMIT2_PROXY,
                "data": Bytes::from(replay.abi_encode()),
                "gas": "0x200000",
            }]),
        )
        .await
        .unwrap();
    let reverted: B256 = serde_json::from_value(sent).unwrap();
    let mut receipt = None;
    for _ in 0..200 {
        receipt = env.rpc.receipt(reverted).await.unwrap();
        if receipt.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let receipt = receipt.expect("the replay is mined");
    assert!(
        !receipt.succeeded(),
        "the replay must be mined and reverted"
    );
    assert_eq!(
        probe.settled(&first_payment, &reverted.to_string()).await,
        None
    );

    // Unknown or malformed hashes, and an unconfigured network.
    let unknown = B256::repeat_byte(0x42).to_string();
    assert_eq!(probe.settled(&first_payment, &unknown).await, None);
    assert_eq!(probe.settled(&first_payment, "0xnot-a-hash").await, None);
    assert_eq!(probe.settled(&first_payment, "").await, None);
    let blind = ExactEvmSpendProbe::new();
    assert_eq!(
        blind.settled(&first_payment, &settled.to_string()).await,
        None
    );
}
