//! The `exact` EIP-3009 scheme end to end on a local anvil chain with
//! Circle's real USDC: a table with one row per way to fail each verification
//! check of the spec (each row fails if its check is removed), settlement truth,
//! replay, front-running, concurrency.

use paywire_evm::Eip155ChainId;
use paywire_evm::reasons;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::SolCall;
use paywire_core::{
    ChainId, ErrorReason, Money, PaymentPayload, PaymentRequirements, Price, RequirementsRequest,
    SchemeFacilitator, SchemeServer,
};
use paywire_evm::exact::{
    Authorization, CounterfactualWallets, EvmChainConfig, ExactEvmClient, ExactEvmFacilitator,
    ExactEvmPayload, ExactEvmServer, eip712_domain, signing_hash,
};
use paywire_evm::rpc::RpcClient;
use paywire_evm::{EvmNetwork, EvmNetworks, EvmSigner, LocalSigner};
use paywire_testkit::{Devnet, DevnetOptions};

mod common;

const PRICE: u64 = 10_000; // $0.01

struct Env {
    devnet: Devnet,
    facilitator: ExactEvmFacilitator,
    network: EvmNetwork,
}

fn anvil_network(usdc: Address) -> EvmNetwork {
    EvmNetwork::anvil(usdc)
}

async fn facilitator_for(
    devnet: &Devnet,
    signers: usize,
    tune: impl FnOnce(
        paywire_evm::exact::ExactEvmFacilitatorBuilder,
    ) -> paywire_evm::exact::ExactEvmFacilitatorBuilder,
) -> ExactEvmFacilitator {
    facilitator_with_chain(devnet, signers, |_| {}, tune).await
}

async fn facilitator_with_chain(
    devnet: &Devnet,
    signers: usize,
    tune_chain: impl FnOnce(&mut EvmChainConfig),
    tune: impl FnOnce(
        paywire_evm::exact::ExactEvmFacilitatorBuilder,
    ) -> paywire_evm::exact::ExactEvmFacilitatorBuilder,
) -> ExactEvmFacilitator {
    let rpc = RpcClient::new(vec![devnet.rpc_url().to_owned()], Duration::from_secs(10)).unwrap();
    facilitator_via(devnet, rpc, signers, tune_chain, tune).await
}

/// A facilitator for `devnet` reaching it through `rpc` (e.g. a proxy).
async fn facilitator_via(
    devnet: &Devnet,
    rpc: RpcClient,
    signers: usize,
    tune_chain: impl FnOnce(&mut EvmChainConfig),
    tune: impl FnOnce(
        paywire_evm::exact::ExactEvmFacilitatorBuilder,
    ) -> paywire_evm::exact::ExactEvmFacilitatorBuilder,
) -> ExactEvmFacilitator {
    let rpc = Arc::new(rpc);
    let mut keys: Vec<Arc<dyn EvmSigner>> = Vec::new();
    for _ in 0..signers {
        let key = LocalSigner::random();
        devnet
            .set_eth_balance(key.address(), U256::from(10u128.pow(21)))
            .await
            .unwrap();
        keys.push(Arc::new(key));
    }
    let mut chain = EvmChainConfig::new(anvil_network(devnet.usdc()), rpc, keys);
    tune_chain(&mut chain);
    tune(ExactEvmFacilitator::builder().chain(chain))
        .build()
        .unwrap()
}

async fn env() -> Env {
    env_with(DevnetOptions::default()).await
}

async fn env_with(options: DevnetOptions) -> Env {
    let devnet = Devnet::start_with(options).await.unwrap();
    let facilitator = facilitator_for(&devnet, 1, |b| b).await;
    let network = anvil_network(devnet.usdc());
    Env {
        devnet,
        facilitator,
        network,
    }
}

impl Env {
    /// What a resource server would require: $0.01 to `pay_to`.
    fn requirements(&self, pay_to: Address) -> PaymentRequirements {
        let mut table = EvmNetworks::empty();
        table.insert(self.network.clone());
        let chain = ChainId::eip155(31337);
        let price = Price::Money(Money::parse("$0.01").unwrap());
        ExactEvmServer::new(table)
            .requirements(&RequirementsRequest {
                network: &chain,
                price: &price,
                pay_to: &pay_to.to_string(),
                max_timeout_seconds: 60,
                facilitator_kind: None,
            })
            .unwrap()
    }

    fn payer_key(&self, index: usize) -> LocalSigner {
        LocalSigner::new(self.devnet.payer(index).signer())
    }

    async fn pay(&self, payer: usize, requirements: &PaymentRequirements) -> PaymentPayload {
        let client = ExactEvmClient::new(self.payer_key(payer));
        let exact = client.sign(requirements).await.unwrap();
        wrap(exact, requirements)
    }

    /// Signs an arbitrary authorization under an arbitrary domain (version "2").
    fn sign_custom(
        &self,
        key: &LocalSigner,
        authorization: Authorization,
        name: &str,
        chain_id: u64,
        contract: Address,
    ) -> ExactEvmPayload {
        self.sign_domain(key, authorization, name, "2", chain_id, contract)
    }

    /// Signs an arbitrary authorization under an arbitrary domain.
    fn sign_domain(
        &self,
        key: &LocalSigner,
        authorization: Authorization,
        name: &str,
        version: &str,
        chain_id: u64,
        contract: Address,
    ) -> ExactEvmPayload {
        let digest = signing_hash(
            &authorization,
            &eip712_domain(name, version, chain_id, contract),
        );
        let signature = key.sign_hash_sync(&digest).unwrap();
        ExactEvmPayload {
            authorization,
            signature: signature.as_bytes().into(),
        }
    }

    fn valid_authorization(&self, payer: Address, pay_to: Address) -> Authorization {
        Authorization {
            from: payer,
            to: pay_to,
            value: PRICE.into(),
            valid_after: 0u64.into(),
            valid_before: (now() + 300).into(),
            nonce: B256::random(),
        }
    }

    async fn expect_invalid(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
        reason: ErrorReason,
    ) {
        self.expect_refused("", payload, requirements, reason).await;
    }

    /// Verification refuses `payload` with `reason`, and so does settlement (which
    /// re-verifies), sending nothing; failures name `check`.
    async fn expect_refused(
        &self,
        check: &str,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
        reason: ErrorReason,
    ) {
        let answer = self
            .facilitator
            .verify(payload, requirements)
            .await
            .unwrap();
        assert!(
            !answer.is_valid,
            "{check}: expected {reason} but payment was valid"
        );
        assert_eq!(
            answer.invalid_reason,
            Some(reason.clone()),
            "{check}: {:?}",
            answer.invalid_message
        );
        let settled = self
            .facilitator
            .settle(payload, requirements)
            .await
            .unwrap();
        assert!(!settled.success, "{check}: settled");
        assert_eq!(settled.error_reason, Some(reason), "{check}");
        assert!(
            settled.transaction.is_empty(),
            "{check}: nothing may be sent"
        );
    }

    async fn balance(&self, who: Address) -> U256 {
        self.devnet.usdc_balance(who).await.unwrap()
    }
}

fn wrap(exact: ExactEvmPayload, requirements: &PaymentRequirements) -> PaymentPayload {
    PaymentPayload {
        x402_version: 2,
        payload: exact.to_json(),
        extensions: None,
        resource: None,
        accepted: requirements.clone(),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn payee() -> Address {
    Address::random()
}

/// One authorization has one spend key however its payload is spelled
/// (hex case, extra members), so facilitators serialize its settlements
/// across processes; another nonce is another key.
#[tokio::test]
async fn spend_key_ignores_the_spelling_of_one_authorization() {
    let env = env().await;
    let requirements = env.requirements(payee());
    let payload = env.pay(1, &requirements).await;
    let key = |payload: &PaymentPayload| env.facilitator.spend_key(payload, &requirements);
    let original = key(&payload).expect("a readable authorization has a key");
    assert!(original.starts_with("eip155:31337:0x"), "{original}");
    let mut respelled = payload.clone();
    let signature = respelled.payload["signature"]
        .as_str()
        .unwrap()
        .to_uppercase();
    respelled.payload["signature"] = serde_json::Value::String(signature.replacen("0X", "0x", 1));
    let nonce = respelled.payload["authorization"]["nonce"]
        .as_str()
        .unwrap()
        .to_uppercase();
    respelled.payload["authorization"]["nonce"] =
        serde_json::Value::String(nonce.replacen("0X", "0x", 1));
    respelled
        .payload
        .insert("note".into(), serde_json::json!("an extra member"));
    assert_eq!(key(&respelled).as_deref(), Some(original.as_str()));
    let other = env.pay(1, &requirements).await;
    assert_ne!(key(&other), Some(original));
    let mut unreadable = payload.clone();
    unreadable.payload = serde_json::json!({"signature": 1})
        .as_object()
        .unwrap()
        .clone();
    assert_eq!(key(&unreadable), None);
}

#[tokio::test]
async fn verify_then_settle_moves_exactly_the_amount() {
    let env = env().await;
    let pay_to = payee();
    let requirements = env.requirements(pay_to);
    let payer = env.devnet.payer(1).address;
    let before = env.balance(payer).await;
    let payload = env.pay(1, &requirements).await;

    let verified = env
        .facilitator
        .verify(&payload, &requirements)
        .await
        .unwrap();
    assert!(verified.is_valid, "{:?}", verified.invalid_message);
    assert_eq!(verified.payer, Some(payer.to_string()));

    let settled = env
        .facilitator
        .settle(&payload, &requirements)
        .await
        .unwrap();
    assert!(
        settled.success,
        "{:?} {:?}",
        settled.error_reason, settled.error_message
    );
    assert_eq!(settled.payer, Some(payer.to_string()));
    assert_eq!(settled.amount, Some(PRICE.into()));
    assert_eq!(env.balance(pay_to).await, U256::from(PRICE));
    assert_eq!(env.balance(payer).await, before - U256::from(PRICE));
    let hash: B256 = settled.transaction.parse().unwrap();
    let receipt = env.devnet.wait_receipt(hash).await.unwrap();
    assert!(
        receipt.status,
        "the reported transaction is on chain and succeeded"
    );
}

#[tokio::test]
async fn settling_twice_pays_once_and_reports_the_same_transaction() {
    let env = env().await;
    let pay_to = payee();
    let requirements = env.requirements(pay_to);
    let payload = env.pay(2, &requirements).await;
    let first = env
        .facilitator
        .settle(&payload, &requirements)
        .await
        .unwrap();
    assert!(first.success);
    let second = env
        .facilitator
        .settle(&payload, &requirements)
        .await
        .unwrap();
    assert!(
        second.success,
        "already settled is reported truthfully as paid"
    );
    assert_eq!(second.transaction, first.transaction);
    assert_eq!(
        env.balance(pay_to).await,
        U256::from(PRICE),
        "paid exactly once"
    );
    // And verify no longer accepts it.
    let again = env
        .facilitator
        .verify(&payload, &requirements)
        .await
        .unwrap();
    assert_eq!(again.invalid_reason, Some(reasons::NONCE_USED));
}

#[tokio::test]
async fn concurrent_settles_of_one_authorization_send_one_transaction() {
    let env = env().await;
    let pay_to = payee();
    let requirements = env.requirements(pay_to);
    let payload = env.pay(3, &requirements).await;
    let answers =
        futures_join_all((0..5).map(|_| env.facilitator.settle(&payload, &requirements))).await;
    let hashes: Vec<String> = answers
        .into_iter()
        .map(|a| {
            let a = a.unwrap();
            assert!(a.success, "{:?}", a.error_message);
            a.transaction
        })
        .collect();
    assert!(
        hashes.windows(2).all(|w| w[0] == w[1]),
        "one transaction: {hashes:?}"
    );
    assert_eq!(env.balance(pay_to).await, U256::from(PRICE));
}

#[tokio::test]
async fn front_run_authorization_is_reconciled_not_refused() {
    let env = env().await;
    let pay_to = payee();
    let requirements = env.requirements(pay_to);
    let payload = env.pay(4, &requirements).await;
    let exact = ExactEvmPayload::from_json(&payload.payload).unwrap();
    // Someone else submits the authorization first, in the `bytes` form our
    // facilitator does not send for an EOA: reconciliation must read both.
    let auth = &exact.authorization;
    let call = paywire_evm::contracts::IEip3009Token::transferWithAuthorization_1Call {
        from: auth.from,
        to: auth.to,
        value: auth.value.as_u256(),
        validAfter: auth.valid_after.as_u256(),
        validBefore: auth.valid_before.as_u256(),
        nonce: auth.nonce,
        signature: exact.signature.clone(),
    };
    let outsider = env.devnet.account(7).address;
    let receipt = env
        .devnet
        .transact(outsider, env.devnet.usdc(), call.abi_encode())
        .await
        .unwrap();
    let settled = env
        .facilitator
        .settle(&payload, &requirements)
        .await
        .unwrap();
    assert!(
        settled.success,
        "the payer was charged, so the payment is reported as settled"
    );
    assert_eq!(settled.transaction, receipt.transaction_hash.to_string());
    assert_eq!(env.balance(pay_to).await, U256::from(PRICE));
}

#[tokio::test]
async fn hundred_concurrent_settlements_through_one_signer() {
    let env = env().await;
    let pay_to = payee();
    let requirements = env.requirements(pay_to);
    let mut payloads = Vec::new();
    for i in 0..100 {
        payloads.push(env.pay(1 + i % 8, &requirements).await);
    }
    let before: Vec<U256> =
        futures_join_all((1..=8).map(|i| env.balance(env.devnet.payer(i).address))).await;
    let answers = futures_join_all(
        payloads
            .iter()
            .map(|p| env.facilitator.settle(p, &requirements)),
    )
    .await;
    let mut hashes = std::collections::HashSet::new();
    for answer in answers {
        let answer = answer.unwrap();
        assert!(
            answer.success,
            "{:?}: {:?}",
            answer.error_reason, answer.error_message
        );
        hashes.insert(answer.transaction);
    }
    assert_eq!(hashes.len(), 100, "100 distinct transactions");
    assert_eq!(env.balance(pay_to).await, U256::from(100 * PRICE));
    for (i, before) in (1..=8).zip(before) {
        let paid = (0..100).filter(|n| 1 + n % 8 == i).count() as u64;
        assert_eq!(
            env.balance(env.devnet.payer(i).address).await,
            before - U256::from(paid * PRICE)
        );
    }
}

#[tokio::test]
async fn unconfirmed_settlement_is_pending_with_its_hash() {
    let env = env_with(DevnetOptions {
        automine: false,
        block_time: None,
        ..DevnetOptions::default()
    })
    .await;
    let facilitator = facilitator_for(&env.devnet, 1, |b| {
        b.receipt_timeout(Duration::from_millis(300))
    })
    .await;
    let pay_to = payee();
    let requirements = env.requirements(pay_to);
    let payload = env.pay(5, &requirements).await;
    let settled = facilitator.settle(&payload, &requirements).await.unwrap();
    assert!(
        !settled.success,
        "not confirmed is never reported as success"
    );
    assert!(settled.is_pending(), "{:?}", settled.error_reason);
    let hash: B256 = settled.transaction.parse().unwrap();
    env.devnet.mine().await.unwrap();
    let receipt = env.devnet.wait_receipt(hash).await.unwrap();
    assert!(receipt.status, "the pending transaction lands later");
    assert_eq!(env.balance(pay_to).await, U256::from(PRICE));
}

// ---- one negative test per verification step ----

/// Pending transactions in anvil's pool, read from `txpool_status`.
async fn pooled_transactions(devnet: &Devnet) -> u64 {
    let status = devnet
        .rpc("txpool_status", serde_json::json!([]))
        .await
        .unwrap();
    let pending = status["pending"].as_str().unwrap_or("0x0");
    u64::from_str_radix(pending.trim_start_matches("0x"), 16).unwrap()
}

async fn wait_for_pool(devnet: &Devnet, expected: u64) {
    for _ in 0..500 {
        if pooled_transactions(devnet).await == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the pool never held {expected} transaction(s)");
}

#[tokio::test]
async fn transaction_dropped_by_the_node_is_broadcast_again() {
    let env = env_with(DevnetOptions {
        automine: false,
        block_time: None,
        ..DevnetOptions::default()
    })
    .await;
    let facilitator = facilitator_for(&env.devnet, 1, |b| {
        b.receipt_timeout(Duration::from_secs(20))
            .rebroadcast_interval(Duration::from_millis(300))
    })
    .await;
    let pay_to = payee();
    let requirements = env.requirements(pay_to);
    let payload = env.pay(6, &requirements).await;
    let settling = facilitator.settle(&payload, &requirements);
    let node_side = async {
        wait_for_pool(&env.devnet, 1).await;
        // The node forgets the transaction, as a restarted or evicting node would.
        env.devnet
            .rpc("anvil_dropAllTransactions", serde_json::json!([]))
            .await
            .unwrap();
        assert_eq!(pooled_transactions(&env.devnet).await, 0);
        // Only the facilitator's re-broadcast can put it back.
        wait_for_pool(&env.devnet, 1).await;
        env.devnet.mine().await.unwrap();
    };
    let (settled, ()) = tokio::join!(settling, node_side);
    let settled = settled.unwrap();
    assert!(settled.success, "{:?}", settled.error_reason);
    assert_eq!(env.balance(pay_to).await, U256::from(PRICE));
}

/// How a row of [`verification_refusals_table`] spoils an otherwise valid payment.
#[derive(Debug, Clone, Copy)]
enum Spoil {
    /// Signed by another payer's key.
    ForeignSigner,
    /// 65 bytes of garbage instead of a signature.
    GarbageSignature,
    /// Signed under another EIP-712 domain: (name, version, chain id, another contract?).
    Domain(&'static str, &'static str, u64, bool),
    /// The signed value (the unsigned `accepted` copy still claims the right amount).
    Value(u64),
    /// Signed to another recipient.
    Recipient,
    /// The signed validity window, in seconds relative to now.
    Window(i64, i64),
    /// The payer holds one unit less than the amount.
    Broke,
    /// A new authorization reusing the nonce of one already settled.
    NonceUsed,
    /// Both copies of the requirements name an asset the chain does not accept.
    UnlistedAsset,
    /// The client's `accepted` copy names another recipient than the requirements.
    TamperedAccepted,
    /// The client's `accepted` copy names another network than the requirements.
    PayloadNetwork,
    /// Both copies name a network this facilitator does not serve.
    UnservedNetwork,
    /// Both copies ask for a transfer method other than EIP-3009.
    TransferMethod(&'static str),
    /// Circle blacklisted the payer: every check passes, the transfer would revert.
    Blacklisted,
}

impl Env {
    /// A payment spoiled as `spoil` says, and the requirements to check it against.
    async fn spoiled(&self, spoil: Spoil) -> (PaymentPayload, PaymentRequirements) {
        let pay_to = payee();
        let mut requirements = self.requirements(pay_to);
        let key = self.payer_key(1);
        let usdc = self.devnet.usdc();
        let signed = |key: &LocalSigner, auth: Authorization| {
            self.sign_domain(key, auth, "USD Coin", "2", 31337, usdc)
        };
        let valid = self.valid_authorization(key.address(), pay_to);
        let exact = match spoil {
            Spoil::ForeignSigner => signed(&self.payer_key(2), valid),
            Spoil::GarbageSignature => ExactEvmPayload {
                authorization: valid,
                signature: vec![7u8; 65].into(),
            },
            Spoil::Domain(name, version, chain_id, other_contract) => {
                let contract = if other_contract {
                    Address::random()
                } else {
                    usdc
                };
                self.sign_domain(&key, valid, name, version, chain_id, contract)
            }
            Spoil::Value(value) => signed(
                &key,
                Authorization {
                    value: value.into(),
                    ..valid
                },
            ),
            Spoil::Recipient => signed(
                &key,
                Authorization {
                    to: payee(),
                    ..valid
                },
            ),
            Spoil::Window(after, before) => {
                let at = |offset: i64| now().saturating_add_signed(offset).into();
                let valid_after = if after == 0 { 0u64.into() } else { at(after) };
                signed(
                    &key,
                    Authorization {
                        valid_after,
                        valid_before: at(before),
                        ..valid
                    },
                )
            }
            Spoil::Broke => {
                let broke = LocalSigner::random();
                self.devnet
                    .mint_usdc(broke.address(), U256::from(PRICE - 1))
                    .await
                    .unwrap();
                signed(&broke, self.valid_authorization(broke.address(), pay_to))
            }
            Spoil::NonceUsed => {
                let key = self.payer_key(2);
                let first = self.valid_authorization(key.address(), pay_to);
                let settled = self
                    .facilitator
                    .settle(
                        &wrap(signed(&key, first.clone()), &requirements),
                        &requirements,
                    )
                    .await
                    .unwrap();
                assert!(settled.success, "{:?}", settled.error_message);
                let before = first.valid_before.as_u256() + U256::from(1);
                signed(
                    &key,
                    Authorization {
                        valid_before: before.into(),
                        ..first
                    },
                )
            }
            Spoil::Blacklisted => {
                let key = self.payer_key(6);
                let blacklist = paywire_testkit::IFiatToken::blacklistCall {
                    account: key.address(),
                };
                let owner = self.devnet.usdc_owner().address;
                self.devnet
                    .transact(owner, usdc, blacklist.abi_encode())
                    .await
                    .unwrap();
                signed(&key, self.valid_authorization(key.address(), pay_to))
            }
            Spoil::UnlistedAsset
            | Spoil::TamperedAccepted
            | Spoil::PayloadNetwork
            | Spoil::UnservedNetwork
            | Spoil::TransferMethod(_) => signed(&key, valid),
        };
        let mut payload = wrap(exact, &requirements);
        match spoil {
            Spoil::UnlistedAsset => requirements.asset = Address::random().to_string(),
            Spoil::TamperedAccepted => payload.accepted.pay_to = payee().to_string(),
            Spoil::PayloadNetwork => payload.accepted.network = ChainId::eip155(8453),
            Spoil::UnservedNetwork => requirements.network = ChainId::eip155(8453),
            Spoil::TransferMethod(method) => {
                let extra = requirements.extra.get_or_insert_default();
                extra.insert("assetTransferMethod".into(), method.into());
            }
            _ => {}
        }
        if matches!(
            spoil,
            Spoil::UnlistedAsset | Spoil::UnservedNetwork | Spoil::TransferMethod(_)
        ) {
            payload.accepted = requirements.clone();
        }
        (payload, requirements)
    }
}

/// The spec's exact-EVM (EIP-3009) verification list, one row per way to fail a check:
/// verification refuses with the row's reason, and settlement (which re-verifies) refuses
/// with the same reason and sends nothing.
#[tokio::test]
async fn verification_refusals_table() {
    let env = env().await;
    let cases: &[(&str, Spoil, ErrorReason)] = &[
        // 1. The signature recovers to `authorization.from`.
        (
            "1 signature by another key",
            Spoil::ForeignSigner,
            reasons::SIGNATURE,
        ),
        (
            "1 signature of garbage bytes",
            Spoil::GarbageSignature,
            reasons::SIGNATURE,
        ),
        (
            "1 signature under another chain id",
            Spoil::Domain("USD Coin", "2", 1, false),
            reasons::SIGNATURE,
        ),
        (
            "1 signature under another domain name",
            Spoil::Domain("USDC", "2", 31337, false),
            reasons::SIGNATURE,
        ),
        (
            "1 signature under another domain version",
            Spoil::Domain("USD Coin", "1", 31337, false),
            reasons::SIGNATURE,
        ),
        (
            "1 signature for another token contract",
            Spoil::Domain("USD Coin", "2", 31337, true),
            reasons::SIGNATURE,
        ),
        // 2. The payer holds enough of the asset.
        (
            "2 balance below the amount",
            Spoil::Broke,
            ErrorReason::INSUFFICIENT_FUNDS,
        ),
        // 3. The authorization meets the requirements: amount, recipient, window, nonce.
        (
            "3 value below the amount",
            Spoil::Value(PRICE - 1),
            reasons::VALUE_MISMATCH,
        ),
        (
            "3 value above the amount",
            Spoil::Value(PRICE + 1),
            reasons::VALUE_MISMATCH,
        ),
        (
            "3 recipient other than payTo",
            Spoil::Recipient,
            reasons::RECIPIENT_MISMATCH,
        ),
        (
            "3 window expired",
            Spoil::Window(0, -1),
            reasons::VALID_BEFORE,
        ),
        (
            "3 window ends inside the 6 s buffer",
            Spoil::Window(0, 3),
            reasons::VALID_BEFORE,
        ),
        (
            "3 window not yet open",
            Spoil::Window(120, 300),
            reasons::VALID_AFTER,
        ),
        (
            "3 nonce already used on chain",
            Spoil::NonceUsed,
            reasons::NONCE_USED,
        ),
        // 4. The token and network match the requirements (and are served).
        (
            "4 asset not accepted",
            Spoil::UnlistedAsset,
            ErrorReason::UNSUPPORTED_ASSET,
        ),
        (
            "4 accepted copy differs from the requirements",
            Spoil::TamperedAccepted,
            ErrorReason::INVALID_PAYMENT_REQUIREMENTS,
        ),
        (
            "4 payload for another network",
            Spoil::PayloadNetwork,
            ErrorReason::INVALID_NETWORK,
        ),
        (
            "4 network not served",
            Spoil::UnservedNetwork,
            ErrorReason::INVALID_NETWORK,
        ),
        (
            "4 transfer method other than eip3009",
            Spoil::TransferMethod("permit2"),
            ErrorReason::INVALID_PAYMENT_REQUIREMENTS,
        ),
        // 5. Simulating transferWithAuthorization succeeds.
        (
            "5 simulation reverts",
            Spoil::Blacklisted,
            reasons::SIMULATION_FAILED,
        ),
    ];
    for (check, spoil, reason) in cases {
        let (payload, requirements) = env.spoiled(*spoil).await;
        env.expect_refused(check, &payload, &requirements, reason.clone())
            .await;
    }
}

/// Minimal join_all without pulling in the `futures` crate.
async fn futures_join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs = Vec::with_capacity(handles.len());
    let mut pending: Vec<_> = handles.into_iter().map(Some).collect();
    let mut results: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (slot, result) in pending.iter_mut().zip(results.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => {
                        *result = Some(value);
                        *slot = None;
                    }
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs.extend(results.into_iter().flatten());
    outputs
}

#[tokio::test]
async fn smart_wallet_pays_through_eip1271() {
    let env = env().await;
    let pay_to = payee();
    let requirements = env.requirements(pay_to);
    let owner = env.payer_key(3);
    let wallet = env
        .devnet
        .deploy_smart_wallet(owner.address())
        .await
        .unwrap();
    env.devnet
        .mint_usdc(wallet, U256::from(5 * PRICE))
        .await
        .unwrap();

    // Signed by someone who does not own the wallet: refused.
    let stranger = env.payer_key(4);
    let auth = env.valid_authorization(wallet, pay_to);
    let forged = wrap(
        env.sign_custom(&stranger, auth, "USD Coin", 31337, env.devnet.usdc()),
        &requirements,
    );
    env.expect_invalid(&forged, &requirements, reasons::SIGNATURE)
        .await;

    // Signed by the owner: valid by EIP-1271 and settled.
    let auth = env.valid_authorization(wallet, pay_to);
    let payload = wrap(
        env.sign_custom(&owner, auth, "USD Coin", 31337, env.devnet.usdc()),
        &requirements,
    );
    let verified = env
        .facilitator
        .verify(&payload, &requirements)
        .await
        .unwrap();
    assert!(verified.is_valid, "{:?}", verified.invalid_message);
    assert_eq!(verified.payer, Some(wallet.to_string()));
    let settled = env
        .facilitator
        .settle(&payload, &requirements)
        .await
        .unwrap();
    assert!(settled.success, "{:?}", settled.error_message);
    assert_eq!(env.balance(pay_to).await, U256::from(PRICE));
    assert_eq!(env.balance(wallet).await, U256::from(4 * PRICE));
}

#[tokio::test]
async fn several_signers_share_the_load() {
    let env = env().await;
    let facilitator = facilitator_for(&env.devnet, 3, |b| b).await;
    let pay_to = payee();
    let requirements = env.requirements(pay_to);
    let mut payloads = Vec::new();
    for i in 0..30 {
        payloads.push(env.pay(1 + i % 8, &requirements).await);
    }
    let answers = futures_join_all(
        payloads
            .iter()
            .map(|p| facilitator.settle(p, &requirements)),
    )
    .await;
    let mut senders = std::collections::HashSet::new();
    for answer in answers {
        let answer = answer.unwrap();
        assert!(answer.success, "{:?}", answer.error_message);
        let hash: B256 = answer.transaction.parse().unwrap();
        senders.insert(env.devnet.wait_receipt(hash).await.unwrap().from);
    }
    assert_eq!(senders.len(), 3, "round-robin over every signer");
    assert_eq!(env.balance(pay_to).await, U256::from(30 * PRICE));
}

#[tokio::test]
async fn refuses_to_settle_above_the_fee_cap() {
    let env = env().await;
    let facilitator =
        facilitator_with_chain(&env.devnet, 1, |chain| chain.max_fee_per_gas = 1, |b| b).await;
    let pay_to = payee();
    let requirements = env.requirements(pay_to);
    let payload = env.pay(7, &requirements).await;
    let settled = facilitator.settle(&payload, &requirements).await.unwrap();
    assert!(!settled.success);
    assert!(
        settled.transaction.is_empty(),
        "nothing sent while gas is above the cap"
    );
    assert_eq!(env.balance(pay_to).await, U256::ZERO);
    // The authorization is still usable once fees allow.
    let settled = env
        .facilitator
        .settle(&payload, &requirements)
        .await
        .unwrap();
    assert!(settled.success);
}

/// A funded counterfactual wallet of payer #3's key: (wallet, factory, deployment calldata).
async fn counterfactual_wallet(env: &Env) -> (Address, Address, alloy_primitives::Bytes) {
    let owner = env.payer_key(3);
    let factory = env.devnet.deploy_wallet_factory().await.unwrap();
    let salt = B256::repeat_byte(0x42);
    let wallet = env
        .devnet
        .predict_wallet(factory, owner.address(), salt)
        .await
        .unwrap();
    env.devnet
        .mint_usdc(wallet, U256::from(3 * PRICE))
        .await
        .unwrap();
    assert!(
        env.devnet.code_at(wallet).await.unwrap().is_empty(),
        "not deployed yet"
    );
    (
        wallet,
        factory,
        paywire_testkit::deploy_calldata(owner.address(), salt),
    )
}

/// Transactions sent by the facilitator's signers (pending included).
async fn sent_by(devnet: &Devnet, facilitator: &ExactEvmFacilitator) -> u64 {
    let mut total = 0;
    for signer in facilitator.signers(&ChainId::eip155(31337)) {
        let count = devnet
            .rpc(
                "eth_getTransactionCount",
                serde_json::json!([signer, "pending"]),
            )
            .await
            .unwrap();
        total += common::block_number(&count);
    }
    total
}

#[tokio::test]
async fn counterfactual_wallet_pays_through_eip6492() {
    let mut env = env().await;
    env.facilitator = facilitator_with_chain(
        &env.devnet,
        1,
        |chain| chain.counterfactual_wallets = CounterfactualWallets::Deploy,
        |b| b,
    )
    .await;
    let pay_to = payee();
    let requirements = env.requirements(pay_to);
    let owner = env.payer_key(3);
    let (wallet, factory, deploy) = counterfactual_wallet(&env).await;

    // A stranger's signature, wrapped the same way: refused, nothing deployed.
    let stranger = env.payer_key(4);
    let auth = env.valid_authorization(wallet, pay_to);
    let mut forged = env.sign_custom(&stranger, auth, "USD Coin", 31337, env.devnet.usdc());
    forged.signature = paywire_testkit::wrap_eip6492(factory, deploy.clone(), forged.signature);
    env.expect_invalid(
        &wrap(forged, &requirements),
        &requirements,
        reasons::SIGNATURE,
    )
    .await;
    assert!(env.devnet.code_at(wallet).await.unwrap().is_empty());

    // The owner's: valid, and settlement deploys the wallet then transfers.
    let auth = env.valid_authorization(wallet, pay_to);
    let mut signed = env.sign_custom(&owner, auth, "USD Coin", 31337, env.devnet.usdc());
    signed.signature = paywire_testkit::wrap_eip6492(factory, deploy, signed.signature);
    let payload = wrap(signed, &requirements);
    let verified = env
        .facilitator
        .verify(&payload, &requirements)
        .await
        .unwrap();
    assert!(verified.is_valid, "{:?}", verified.invalid_message);
    let settled = env
        .facilitator
        .settle(&payload, &requirements)
        .await
        .unwrap();
    assert!(settled.success, "{:?}", settled.error_message);
    assert!(
        !env.devnet.code_at(wallet).await.unwrap().is_empty(),
        "deployed by settlement"
    );
    assert_eq!(env.balance(pay_to).await, U256::from(PRICE));
    assert_eq!(env.balance(wallet).await, U256::from(2 * PRICE));
}

/// A payment needing a wallet deployment, signed by the wallet's owner.
fn counterfactual_payment(
    env: &Env,
    requirements: &PaymentRequirements,
    (wallet, factory, deploy): (Address, Address, alloy_primitives::Bytes),
) -> PaymentPayload {
    let auth = env.valid_authorization(wallet, requirements.pay_to.parse().unwrap());
    let mut signed = env.sign_custom(
        &env.payer_key(3),
        auth,
        "USD Coin",
        31337,
        env.devnet.usdc(),
    );
    signed.signature = paywire_testkit::wrap_eip6492(factory, deploy, signed.signature);
    wrap(signed, requirements)
}

#[tokio::test]
async fn counterfactual_wallets_are_refused_unless_deployments_are_on() {
    let env = env().await;
    let requirements = env.requirements(payee());
    let counterfactual = counterfactual_wallet(&env).await;
    let wallet = counterfactual.0;
    let payload = counterfactual_payment(&env, &requirements, counterfactual);
    // The default: no deployment, refused at verify and at settle.
    env.expect_invalid(&payload, &requirements, reasons::UNDEPLOYED_SMART_WALLET)
        .await;
    assert!(env.devnet.code_at(wallet).await.unwrap().is_empty());
    assert_eq!(
        sent_by(&env.devnet, &env.facilitator).await,
        0,
        "nothing sent"
    );

    // On, but the deployment needs more gas than the cap: refused as well.
    let capped = facilitator_with_chain(
        &env.devnet,
        1,
        |chain| {
            chain.counterfactual_wallets = CounterfactualWallets::Deploy;
            chain.max_wallet_deployment_gas = 50_000;
        },
        |b| b,
    )
    .await;
    let verified = capped.verify(&payload, &requirements).await.unwrap();
    assert_eq!(
        verified.invalid_reason,
        Some(reasons::UNDEPLOYED_SMART_WALLET)
    );
    let message = verified.invalid_message.unwrap_or_default();
    assert!(message.contains("cap of 50000"), "{message}");
    let settled = capped.settle(&payload, &requirements).await.unwrap();
    assert!(!settled.success && settled.transaction.is_empty());
    assert!(env.devnet.code_at(wallet).await.unwrap().is_empty());
    assert_eq!(sent_by(&env.devnet, &capped).await, 0, "nothing sent");
}

#[tokio::test]
async fn zero_value_payment_never_produces_a_transaction() {
    let env = env().await;
    let pay_to = payee();
    let mut requirements = env.requirements(pay_to);
    requirements.amount = 0u64.into();
    let key = env.payer_key(1);
    let mut auth = env.valid_authorization(key.address(), pay_to);
    auth.value = 0u64.into();
    let free = wrap(
        env.sign_custom(&key, auth.clone(), "USD Coin", 31337, env.devnet.usdc()),
        &requirements,
    );
    env.expect_invalid(
        &free,
        &requirements,
        ErrorReason::INVALID_PAYMENT_REQUIREMENTS,
    )
    .await;
    // A zero-value authorization against a priced requirement.
    let priced = env.requirements(pay_to);
    auth.nonce = B256::random();
    let zero = wrap(
        env.sign_custom(&key, auth, "USD Coin", 31337, env.devnet.usdc()),
        &priced,
    );
    env.expect_invalid(&zero, &priced, reasons::VALUE_MISMATCH)
        .await;
    assert_eq!(
        sent_by(&env.devnet, &env.facilitator).await,
        0,
        "nothing sent"
    );
}

#[tokio::test]
async fn new_authorization_reusing_a_settled_nonce_fails_at_settle() {
    let env = env().await;
    let pay_to = payee();
    let requirements = env.requirements(pay_to);
    let key = env.payer_key(2);
    let first = env.valid_authorization(key.address(), pay_to);
    let mut second = first.clone();
    second.valid_before = (second.valid_before.as_u256() + U256::from(1)).into();
    let first = wrap(
        env.sign_custom(&key, first, "USD Coin", 31337, env.devnet.usdc()),
        &requirements,
    );
    let second = wrap(
        env.sign_custom(&key, second, "USD Coin", 31337, env.devnet.usdc()),
        &requirements,
    );
    let settled = env.facilitator.settle(&first, &requirements).await.unwrap();
    assert!(settled.success, "{:?}", settled.error_message);
    // Another authorization (other validBefore, other signature) with the
    // same nonce: the payer paid once, for the first one.
    env.expect_invalid(&second, &requirements, reasons::NONCE_USED)
        .await;
    // The genuine retry of the first still finds its transaction.
    let again = env.facilitator.settle(&first, &requirements).await.unwrap();
    assert!(again.success);
    assert_eq!(again.transaction, settled.transaction);
    assert_eq!(env.balance(pay_to).await, U256::from(PRICE));
}

#[tokio::test]
async fn front_run_through_a_contract_is_reconciled_from_the_call_trace() {
    let env = env().await;
    let pay_to = payee();
    let requirements = env.requirements(pay_to);
    let key = env.payer_key(4);
    let auth = env.valid_authorization(key.address(), pay_to);
    let mut other = auth.clone();
    other.valid_before = (other.valid_before.as_u256() + U256::from(1)).into();
    let signed = env.sign_custom(&key, auth, "USD Coin", 31337, env.devnet.usdc());
    let payload = wrap(signed.clone(), &requirements);
    // An outsider executes the authorization through their contract wallet:
    // the transaction's own input is not a token call.
    let outsider = env.devnet.account(7).address;
    let relay = env.devnet.deploy_smart_wallet(outsider).await.unwrap();
    let execute = paywire_testkit::ISmartWallet::executeCall {
        to: env.devnet.usdc(),
        value: U256::ZERO,
        data: signed.transfer_calldata().into(),
    };
    let receipt = env
        .devnet
        .transact(outsider, relay, execute.abi_encode())
        .await
        .unwrap();
    let settled = env
        .facilitator
        .settle(&payload, &requirements)
        .await
        .unwrap();
    assert!(settled.success, "{:?}", settled.error_message);
    assert_eq!(settled.transaction, receipt.transaction_hash.to_string());
    // An authorization reusing that nonce was not what the trace shows.
    let replay = wrap(
        env.sign_custom(&key, other, "USD Coin", 31337, env.devnet.usdc()),
        &requirements,
    );
    let refused = env
        .facilitator
        .settle(&replay, &requirements)
        .await
        .unwrap();
    assert!(!refused.success);
    assert!(refused.transaction.is_empty());
    assert_eq!(env.balance(pay_to).await, U256::from(PRICE));
}

/// A facilitator whose clock is the chain's (tests that mine ahead of the wall clock).
async fn chain_clock(devnet: &Devnet) -> paywire_evm::exact::Clock {
    let now = devnet.block_timestamp().await.unwrap();
    Arc::new(move || now)
}

async fn mine_blocks(devnet: &Devnet, count: u64) {
    devnet
        .rpc(
            "anvil_mine",
            serde_json::json!([format!("0x{count:x}"), "0x1"]),
        )
        .await
        .unwrap();
}

/// (fromBlock, toBlock) of every `eth_getLogs` call seen by `proxy`.
fn log_ranges(proxy: &common::RpcProxy) -> Vec<(u64, u64)> {
    proxy
        .calls("eth_getLogs")
        .iter()
        .map(|call| {
            let filter = &call["params"][0];
            (
                common::block_number(&filter["fromBlock"]),
                common::block_number(&filter["toBlock"]),
            )
        })
        .collect()
}

/// An authorization of payer `index` valid from `valid_after` (chain time),
/// executed by an outsider right away.
async fn front_run(
    env: &Env,
    index: usize,
    pay_to: Address,
    valid_after: u64,
) -> (ExactEvmPayload, B256) {
    let key = env.payer_key(index);
    let mut auth = env.valid_authorization(key.address(), pay_to);
    auth.valid_after = valid_after.into();
    auth.valid_before = (env.devnet.block_timestamp().await.unwrap() + 100_000).into();
    let signed = env.sign_custom(&key, auth, "USD Coin", 31337, env.devnet.usdc());
    let outsider = env.devnet.account(7).address;
    let receipt = env
        .devnet
        .transact(outsider, env.devnet.usdc(), signed.transfer_calldata())
        .await
        .unwrap();
    (signed, receipt.transaction_hash)
}

#[tokio::test]
async fn front_run_reconciliation_reads_a_bounded_range_in_chunks() {
    let env = env().await;
    let pay_to = payee();
    let requirements = env.requirements(pay_to);
    // Scaled down (mining is slow): 200-block chunks over some 1,000 blocks.
    mine_blocks(&env.devnet, 300).await;
    let start = env.devnet.block_number().await.unwrap();
    let valid_after = env.devnet.block_timestamp().await.unwrap();
    mine_blocks(&env.devnet, 1).await;
    let (bounded, bounded_hash) = front_run(&env, 4, pay_to, valid_after).await;
    mine_blocks(&env.devnet, 700).await;
    // Valid since forever: the lookback (100 s at one block per second) bounds it.
    let (unbounded, unbounded_hash) = front_run(&env, 5, pay_to, 0).await;
    mine_blocks(&env.devnet, 10).await;
    let latest = env.devnet.block_number().await.unwrap();

    let proxy = common::RpcProxy::start(env.devnet.rpc_url()).await;
    let (url, devnet) = (proxy.url(), &env.devnet);
    let facilitator = |lookback: u64| async move {
        let rpc = RpcClient::new(vec![url.to_owned()], Duration::from_secs(10)).unwrap();
        let clock = chain_clock(devnet).await;
        facilitator_via(
            devnet,
            rpc,
            1,
            |chain| {
                chain.log_range_blocks = 200;
                chain.reconcile_lookback = Duration::from_secs(lookback);
            },
            |b| b.clock(clock),
        )
        .await
    };

    // The default lookback (a day) reaches further: validAfter bounds it.
    let settled = facilitator(86_400)
        .await
        .settle(&wrap(bounded, &requirements), &requirements)
        .await
        .unwrap();
    assert!(settled.success, "{:?}", settled.error_message);
    assert_eq!(settled.transaction, bounded_hash.to_string());
    let ranges = log_ranges(&proxy);
    assert!(ranges.len() >= 3, "newest first, in chunks: {ranges:?}");
    assert!(ranges[0].1 >= latest, "from the latest block: {ranges:?}");
    for (from, to) in &ranges {
        assert!(to - from < 200, "chunk too large: {ranges:?}");
        assert!(
            *from >= start - 1,
            "read before validAfter (block {start}): {ranges:?}"
        );
    }
    assert!(
        ranges.windows(2).all(|w| w[1].1 + 1 == w[0].0),
        "contiguous: {ranges:?}"
    );

    proxy.clear();
    let settled = facilitator(100)
        .await
        .settle(&wrap(unbounded, &requirements), &requirements)
        .await
        .unwrap();
    assert!(settled.success, "{:?}", settled.error_message);
    assert_eq!(settled.transaction, unbounded_hash.to_string());
    let ranges = log_ranges(&proxy);
    assert_eq!(ranges.len(), 1, "{ranges:?}");
    assert!(
        ranges[0].0 + 150 >= latest && ranges[0].0 > start,
        "lookback not applied: {ranges:?}"
    );
}

#[tokio::test]
async fn log_range_refused_by_the_provider_is_halved() {
    let env = env().await;
    let pay_to = payee();
    let requirements = env.requirements(pay_to);
    let start = env.devnet.block_timestamp().await.unwrap();
    mine_blocks(&env.devnet, 1).await;
    let (payload, hash) = front_run(&env, 4, pay_to, start).await;
    mine_blocks(&env.devnet, 600).await;

    let proxy = common::RpcProxy::start(env.devnet.rpc_url()).await;
    proxy.set_rule(|body| {
        if body["method"] == "eth_getLogs" {
            let filter = &body["params"][0];
            let span = common::block_number(&filter["toBlock"])
                - common::block_number(&filter["fromBlock"]);
            if span >= 100 {
                return common::Action::Respond(common::error_answer(
                    body,
                    -32005,
                    "query exceeds max block range 100",
                ));
            }
        }
        common::Action::Forward
    });
    let rpc = RpcClient::new(vec![proxy.url().to_owned()], Duration::from_secs(10)).unwrap();
    let clock = chain_clock(&env.devnet).await;
    let facilitator = facilitator_via(
        &env.devnet,
        rpc,
        1,
        |chain| chain.log_range_blocks = 400,
        |b| b.clock(clock),
    )
    .await;
    let settled = facilitator
        .settle(&wrap(payload, &requirements), &requirements)
        .await
        .unwrap();
    assert!(settled.success, "{:?}", settled.error_message);
    assert_eq!(settled.transaction, hash.to_string());
    let ranges = log_ranges(&proxy);
    // 400 refused, 200 refused, then 100-block chunks down to the execution.
    assert_eq!(ranges[0].1 - ranges[0].0, 399, "{ranges:?}");
    assert_eq!(ranges[1].1 - ranges[1].0, 199, "{ranges:?}");
    assert!(ranges.len() >= 8, "{ranges:?}");
    let (last, middle) = ranges[2..].split_last().unwrap();
    assert!(
        middle.iter().all(|(from, to)| to - from == 99),
        "{ranges:?}"
    );
    assert!(last.1 - last.0 <= 99, "{ranges:?}");
}

#[tokio::test]
async fn broadcast_without_answer_is_pending_and_keeps_its_nonce() {
    let env = env_with(DevnetOptions {
        automine: false,
        block_time: None,
        ..DevnetOptions::default()
    })
    .await;
    let proxy = common::RpcProxy::start(env.devnet.rpc_url()).await;
    // The node accepts the transaction, but its answer never arrives; and
    // the provider's "pending" nonce does not show it (another node behind
    // the same load balancer).
    proxy.set_rule(|body| match body["method"].as_str() {
        Some("eth_sendRawTransaction") => common::Action::ForwardThenStall(Duration::from_secs(3)),
        _ => common::Action::Forward,
    });
    let rpc = RpcClient::new(vec![proxy.url().to_owned()], Duration::from_millis(500)).unwrap();
    let facilitator = facilitator_via(
        &env.devnet,
        rpc,
        1,
        |_| {},
        |b| {
            b.receipt_timeout(Duration::from_millis(800))
                .rebroadcast_interval(Duration::from_secs(60))
        },
    )
    .await;
    let pay_to = payee();
    let requirements = env.requirements(pay_to);
    let first = env.pay(1, &requirements).await;
    let settled = facilitator.settle(&first, &requirements).await.unwrap();
    assert!(
        settled.is_pending(),
        "{:?} {:?}",
        settled.error_reason,
        settled.error_message
    );
    let first_hash: B256 = settled.transaction.parse().unwrap();
    wait_for_pool(&env.devnet, 1).await;

    proxy.set_rule(|body| match body["method"].as_str() {
        Some("eth_getTransactionCount") => common::Action::Respond(serde_json::json!({
            "jsonrpc": "2.0", "id": body["id"].clone(), "result": "0x0"
        })),
        _ => common::Action::Forward,
    });
    let second = env.pay(2, &requirements).await;
    let settled = facilitator.settle(&second, &requirements).await.unwrap();
    assert!(
        settled.is_pending(),
        "{:?} {:?}",
        settled.error_reason,
        settled.error_message
    );
    let second_hash: B256 = settled.transaction.parse().unwrap();
    assert_ne!(first_hash, second_hash);
    wait_for_pool(&env.devnet, 2).await;
    env.devnet.mine().await.unwrap();
    for hash in [first_hash, second_hash] {
        let receipt = env.devnet.wait_receipt(hash).await.unwrap();
        assert!(receipt.status, "both land: no nonce was used twice");
    }
    assert_eq!(env.balance(pay_to).await, U256::from(2 * PRICE));
}

#[tokio::test]
async fn expired_authorization_that_landed_is_reported_settled() {
    let env = env().await;
    let pay_to = payee();
    let requirements = env.requirements(pay_to);
    let payload = env.pay(5, &requirements).await;
    let settled = env
        .facilitator
        .settle(&payload, &requirements)
        .await
        .unwrap();
    assert!(settled.success, "{:?}", settled.error_message);
    // Re-run an hour later (a restart, recovery): the chain decides first.
    let later = facilitator_for(&env.devnet, 1, |b| b.clock(Arc::new(|| now() + 3_600))).await;
    let again = later.settle(&payload, &requirements).await.unwrap();
    assert!(again.success, "{:?}", again.error_message);
    assert_eq!(again.transaction, settled.transaction);
    // Expired and never executed: refused for its time window, nothing sent.
    let unused = env.pay(6, &requirements).await;
    let refused = later.settle(&unused, &requirements).await.unwrap();
    assert_eq!(refused.error_reason, Some(reasons::VALID_BEFORE));
    assert!(refused.transaction.is_empty());
    assert_eq!(env.balance(pay_to).await, U256::from(PRICE));
}

// ---- re-runs, transfers in flight, unsigned look-ups (hostile review) ----

/// `payload` with `v` written as 0/1: the same authorization, other bytes.
fn v_as_parity(payload: &PaymentPayload) -> PaymentPayload {
    let mut exact = ExactEvmPayload::from_json(&payload.payload).unwrap();
    let mut signature = exact.signature.to_vec();
    signature[64] -= 27;
    exact.signature = signature.into();
    wrap(exact, &payload.accepted)
}

/// A facilitator reaching `devnet` through `proxy` (with one new signer).
async fn facilitator_behind(
    devnet: &Devnet,
    proxy: &common::RpcProxy,
    tune: impl FnOnce(
        paywire_evm::exact::ExactEvmFacilitatorBuilder,
    ) -> paywire_evm::exact::ExactEvmFacilitatorBuilder,
) -> ExactEvmFacilitator {
    let rpc = RpcClient::new(vec![proxy.url().to_owned()], Duration::from_secs(10)).unwrap();
    facilitator_via(devnet, rpc, 1, |_| {}, tune).await
}

fn manual_mining() -> DevnetOptions {
    DevnetOptions {
        automine: false,
        block_time: None,
        ..DevnetOptions::default()
    }
}

#[tokio::test]
async fn a_re_run_waits_for_its_pending_transaction() {
    let env = env_with(manual_mining()).await;
    let facilitator = facilitator_for(&env.devnet, 1, |b| {
        b.receipt_timeout(Duration::from_millis(300))
    })
    .await;
    let pay_to = payee();
    let requirements = env.requirements(pay_to);
    let payload = env.pay(5, &requirements).await;
    let first = facilitator.settle(&payload, &requirements).await.unwrap();
    assert!(first.is_pending(), "{:?}", first.error_message);
    // Re-runs (a reconciler, a retry, the payload re-worded) while the
    // transaction waits in the pool: the same transaction, still pending.
    for again in [payload.clone(), v_as_parity(&payload)] {
        let rerun = facilitator.settle(&again, &requirements).await.unwrap();
        assert!(
            rerun.is_pending(),
            "{:?}: {:?}",
            rerun.error_reason,
            rerun.error_message
        );
        assert_eq!(rerun.transaction, first.transaction);
    }
    assert_eq!(sent_by(&env.devnet, &facilitator).await, 1);
    env.devnet.mine().await.unwrap();
    let settled = facilitator.settle(&payload, &requirements).await.unwrap();
    assert!(settled.success, "{:?}", settled.error_message);
    assert_eq!(settled.transaction, first.transaction);
    assert_eq!(env.balance(pay_to).await, U256::from(PRICE));
}

#[tokio::test]
async fn a_restarted_facilitator_waits_for_the_transaction_its_ledger_names() {
    let env = env_with(manual_mining()).await;
    // A provider without pending state: only the ledger's hash tells the
    // new process that a transaction is under way.
    let proxy = common::RpcProxy::start(env.devnet.rpc_url()).await;
    proxy.set_rule(common::without_pending_state);
    let tune = |b: paywire_evm::exact::ExactEvmFacilitatorBuilder| {
        b.receipt_timeout(Duration::from_millis(300))
    };
    let pay_to = payee();
    let requirements = env.requirements(pay_to);
    let payload = env.pay(5, &requirements).await;
    let first = facilitator_behind(&env.devnet, &proxy, tune)
        .await
        .settle(&payload, &requirements)
        .await
        .unwrap();
    assert!(first.is_pending(), "{:?}", first.error_message);

    let restarted = facilitator_behind(&env.devnet, &proxy, tune).await;
    // What the facilitator does with a settlement its ledger holds as
    // pending: ask the chain, then run it again.
    let lookup = restarted
        .lookup_settlement(&payload, &requirements, Some(&first.transaction))
        .await
        .unwrap();
    assert_eq!(lookup, Some(paywire_core::SettlementLookup::Open));
    let rerun = restarted.settle(&payload, &requirements).await.unwrap();
    assert!(rerun.is_pending(), "{:?}", rerun.error_message);
    assert_eq!(rerun.transaction, first.transaction);
    assert_eq!(
        pooled_transactions(&env.devnet).await,
        1,
        "no second transaction"
    );
    env.devnet.mine().await.unwrap();
    let settled = restarted.settle(&payload, &requirements).await.unwrap();
    assert!(settled.success, "{:?}", settled.error_message);
    assert_eq!(settled.transaction, first.transaction);
}

#[tokio::test]
async fn one_balance_pays_for_one_transfer_in_flight() {
    let env = env_with(DevnetOptions {
        block_time: None,
        ..DevnetOptions::default()
    })
    .await;
    let payer = LocalSigner::random();
    env.devnet
        .mint_usdc(payer.address(), U256::from(PRICE))
        .await
        .unwrap();
    env.devnet
        .rpc("evm_setAutomine", serde_json::json!([false]))
        .await
        .unwrap();
    let proxy = common::RpcProxy::start(env.devnet.rpc_url()).await;
    // Simulations at `pending` see nothing of the pool here: only the
    // facilitator's own count of transfers in flight stops the broadcasts.
    proxy.set_rule(common::without_pending_state);
    let facilitator = facilitator_behind(&env.devnet, &proxy, |b| {
        b.receipt_timeout(Duration::from_millis(300))
    })
    .await;
    let requirements = env.requirements(payee());
    let client = ExactEvmClient::new(payer);
    let mut payloads = Vec::new();
    for _ in 0..4 {
        payloads.push(wrap(
            client.sign(&requirements).await.unwrap(),
            &requirements,
        ));
    }
    let answers = futures_join_all(
        payloads
            .iter()
            .map(|payload| facilitator.settle(payload, &requirements)),
    )
    .await;
    let mut refused = 0;
    for answer in answers {
        let answer = answer.unwrap();
        if answer.error_reason == Some(ErrorReason::INSUFFICIENT_FUNDS) {
            assert!(answer.transaction.is_empty());
            refused += 1;
        } else {
            assert!(
                answer.is_pending(),
                "{:?}: {:?}",
                answer.error_reason,
                answer.error_message
            );
        }
    }
    assert_eq!(refused, 3);
    assert_eq!(sent_by(&env.devnet, &facilitator).await, 1);
}

#[tokio::test]
async fn an_under_priced_pending_transaction_is_replaced_at_its_nonce() {
    let env = env_with(manual_mining()).await;
    let facilitator = facilitator_for(&env.devnet, 1, |b| {
        b.receipt_timeout(Duration::from_millis(300))
    })
    .await;
    let pay_to = payee();
    let requirements = env.requirements(pay_to);
    let payload = env.pay(5, &requirements).await;
    let first = facilitator.settle(&payload, &requirements).await.unwrap();
    assert!(first.is_pending(), "{:?}", first.error_message);
    // Fees spike above what the transaction offers: the node keeps it
    // waiting, or (anvil) evicts it.
    let sent = env
        .devnet
        .rpc(
            "eth_getTransactionByHash",
            serde_json::json!([first.transaction]),
        )
        .await
        .unwrap();
    let offered = common::block_number(&sent["maxFeePerGas"]);
    env.devnet
        .rpc(
            "anvil_setNextBlockBaseFeePerGas",
            serde_json::json!([format!("0x{:x}", offered * 4)]),
        )
        .await
        .unwrap();
    env.devnet.mine().await.unwrap();
    assert_eq!(sent_by(&env.devnet, &facilitator).await, 0, "not mined");

    let rerun = facilitator.settle(&payload, &requirements).await.unwrap();
    assert!(rerun.is_pending(), "{:?}", rerun.error_message);
    assert_ne!(rerun.transaction, first.transaction, "replaced");
    assert_eq!(
        pooled_transactions(&env.devnet).await,
        1,
        "at the same nonce"
    );
    env.devnet.mine().await.unwrap();
    let settled = facilitator.settle(&payload, &requirements).await.unwrap();
    assert!(settled.success, "{:?}", settled.error_message);
    assert_eq!(settled.transaction, rerun.transaction);
    assert_eq!(sent_by(&env.devnet, &facilitator).await, 1);
    assert_eq!(env.balance(pay_to).await, U256::from(PRICE));
}

#[tokio::test]
async fn an_unsigned_expired_authorization_names_no_payer_and_reads_no_logs() {
    let env = env().await;
    let pay_to = payee();
    let requirements = env.requirements(pay_to);
    let payload = env.pay(5, &requirements).await;
    assert!(
        env.facilitator
            .settle(&payload, &requirements)
            .await
            .unwrap()
            .success
    );
    // Someone copies (from, nonce) of that transfer, moves validBefore into
    // the past and signs nothing.
    let mut forged = ExactEvmPayload::from_json(&payload.payload).unwrap();
    forged.authorization.valid_before = 1000u64.into();
    forged.signature = vec![0u8; 65].into();
    let forged = wrap(forged, &requirements);
    let proxy = common::RpcProxy::start(env.devnet.rpc_url()).await;
    let facilitator = facilitator_behind(&env.devnet, &proxy, |b| b).await;
    for _ in 0..2 {
        let refused = facilitator.settle(&forged, &requirements).await.unwrap();
        assert!(!refused.success);
        assert_eq!(refused.payer, None, "nothing proved who signed");
        let verified = facilitator.verify(&forged, &requirements).await.unwrap();
        assert_eq!(verified.payer, None);
    }
    assert!(proxy.calls("eth_getLogs").is_empty());
    assert!(proxy.calls("eth_getBlockByNumber").is_empty());
    // The real authorization, expired since, is still found (once).
    let later =
        facilitator_behind(&env.devnet, &proxy, |b| b.clock(Arc::new(|| now() + 3_600))).await;
    for _ in 0..2 {
        let again = later.settle(&payload, &requirements).await.unwrap();
        assert!(again.success, "{:?}", again.error_message);
    }
    assert_eq!(
        proxy.calls("eth_getLogs").len(),
        1,
        "the second answer is cached"
    );
}
