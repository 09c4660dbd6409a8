//! Field lessons whose defences had no test that fails without them (see
//! docs/security.md, "Open gaps"), on anvil with real contracts:
//!
//! - 9: `accepted.scheme` must be the requirements' scheme;
//! - 12: a token whose `transferWithAuthorization` succeeds but pays short
//!   (or nothing) is never reported settled;
//! - 15: a refused broadcast frees its nonce (also with later transactions
//!   of its signer queued behind it), and a signer whose key is used
//!   outside the facilitator recovers from "nonce too low"; broadcasts of
//!   one signer are pipelined;
//! - 16: our settlement transaction, beaten in the pool by an outsider's
//!   execution of the same authorization, reports the outsider's transaction;
//! - 27: the EIP-712 domain is read from the token, not from the asset table.

use paywire_evm::Eip155ChainId;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alloy_consensus::Transaction as _;
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::{Address, B256, Bytes, U256};
use paywire_core::{
    BoxFuture, ChainId, ErrorReason, PaymentPayload, PaymentRequirements, SchemeFacilitator,
    SettlementObserver,
};
use paywire_evm::exact::{
    Authorization, CounterfactualWallets, EvmChainConfig, ExactEvmClient, ExactEvmFacilitator,
    ExactEvmFacilitatorBuilder, ExactEvmPayload, eip712_domain, signing_hash,
};
use paywire_evm::rpc::RpcClient;
use paywire_evm::{EvmAsset, EvmNetwork, EvmSigner, LocalSigner};
use paywire_testkit::{Devnet, DevnetOptions};
use serde_json::{Value, json};

mod common;

/// Every payment: 0.01 of a 6-decimal token.
const PRICE: u64 = 10_000;
/// The hostile token's EIP-712 domain.
const SHORT_NAME: &str = "Shortchange Dollar";
const SHORT_VERSION: &str = "1";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `PRICE` of `asset` (EIP-712 domain `name` / `version`, as a server puts it in
/// `extra`) to `pay_to` on the devnet.
fn requirements(asset: Address, name: &str, version: &str, pay_to: Address) -> PaymentRequirements {
    serde_json::from_value(json!({
        "scheme": "exact",
        "network": "eip155:31337",
        "amount": PRICE.to_string(),
        "asset": asset.to_string(),
        "payTo": pay_to.to_string(),
        "maxTimeoutSeconds": 60,
        "extra": {"name": name, "version": version}
    }))
    .unwrap()
}

fn usdc_requirements(devnet: &Devnet, pay_to: Address) -> PaymentRequirements {
    requirements(devnet.usdc(), "USD Coin", "2", pay_to)
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

/// A payment by devnet payer `index`, signed under the domain in `extra`.
async fn pay(devnet: &Devnet, index: usize, requirements: &PaymentRequirements) -> PaymentPayload {
    let client = ExactEvmClient::new(LocalSigner::new(devnet.payer(index).signer()));
    wrap(client.sign(requirements).await.unwrap(), requirements)
}

/// A facilitator settling on `network` through `rpc_url` with `signer` (given
/// 1,000 ETH), after `tune_chain` and `tune`.
async fn facilitator(
    devnet: &Devnet,
    rpc_url: &str,
    network: EvmNetwork,
    signer: LocalSigner,
    tune_chain: impl FnOnce(&mut EvmChainConfig),
    tune: impl FnOnce(ExactEvmFacilitatorBuilder) -> ExactEvmFacilitatorBuilder,
) -> ExactEvmFacilitator {
    devnet
        .set_eth_balance(signer.address(), U256::from(10u128.pow(21)))
        .await
        .unwrap();
    let rpc = RpcClient::new(vec![rpc_url.to_owned()], Duration::from_secs(10)).unwrap();
    let signers: Vec<Arc<dyn EvmSigner>> = vec![Arc::new(signer)];
    let mut chain = EvmChainConfig::new(network, Arc::new(rpc), signers);
    tune_chain(&mut chain);
    tune(ExactEvmFacilitator::builder().chain(chain))
        .build()
        .unwrap()
}

/// A facilitator for the devnet's USDC with a fresh signer and default settings.
async fn usdc_facilitator(devnet: &Devnet) -> ExactEvmFacilitator {
    let network = EvmNetwork::anvil(devnet.usdc());
    facilitator(
        devnet,
        devnet.rpc_url(),
        network,
        LocalSigner::random(),
        |_| {},
        |b| b,
    )
    .await
}

fn signer_of(facilitator: &ExactEvmFacilitator) -> Address {
    facilitator.signers(&ChainId::eip155(31337))[0]
        .parse()
        .unwrap()
}

/// The nonce of the mined or pooled transaction `hash`.
async fn transaction_nonce(devnet: &Devnet, hash: &str) -> u64 {
    let tx = devnet
        .rpc("eth_getTransactionByHash", json!([hash]))
        .await
        .unwrap();
    common::block_number(&tx["nonce"])
}

fn assert_settled(answer: &paywire_core::SettleResponse) {
    assert!(
        answer.success,
        "{:?}: {:?}",
        answer.error_reason, answer.error_message
    );
}

// ---- lesson 9 ----

#[tokio::test]
async fn accepted_scheme_must_be_the_requirements_scheme() {
    let devnet = Devnet::start().await.unwrap();
    let facilitator = usdc_facilitator(&devnet).await;
    let requirements = usdc_requirements(&devnet, Address::random());
    let payload = pay(&devnet, 1, &requirements).await;
    let valid = facilitator.verify(&payload, &requirements).await.unwrap();
    assert!(valid.is_valid, "{:?}", valid.invalid_message);

    // The same signed payment; only the client's copy names another scheme.
    let mut other_scheme = payload;
    other_scheme.accepted.scheme = "upto".into();
    let verified = facilitator
        .verify(&other_scheme, &requirements)
        .await
        .unwrap();
    assert!(!verified.is_valid);
    assert_eq!(verified.invalid_reason, Some(ErrorReason::INVALID_SCHEME));
    let settled = facilitator
        .settle(&other_scheme, &requirements)
        .await
        .unwrap();
    assert!(!settled.success);
    assert_eq!(settled.error_reason, Some(ErrorReason::INVALID_SCHEME));
    assert!(settled.transaction.is_empty(), "nothing may be sent");
    assert_eq!(
        devnet
            .usdc_balance(requirements.pay_to.parse().unwrap())
            .await
            .unwrap(),
        U256::ZERO
    );
}

// ---- lesson 12 ----

/// The devnet with a [`ShortchangeToken`](paywire_testkit::ShortchangeToken) as its
/// payment asset (payers #1..#3 hold 100 payments' worth) and a facilitator for it.
async fn shortchange_env() -> (Devnet, Address, ExactEvmFacilitator) {
    let devnet = Devnet::start().await.unwrap();
    let token = devnet
        .deploy_shortchange_token(SHORT_NAME, SHORT_VERSION, U256::ZERO)
        .await
        .unwrap();
    for index in 1..=3 {
        devnet
            .mint_shortchange_token(token, devnet.payer(index).address, U256::from(100 * PRICE))
            .await
            .unwrap();
    }
    let asset = EvmAsset {
        address: token,
        symbol: "SHORT".into(),
        decimals: 6,
        eip712_name: SHORT_NAME.into(),
        eip712_version: SHORT_VERSION.into(),
        usd_stable: true,
        transfer_method: paywire_evm::TransferMethod::Eip3009,
        eip2612: false,
    };
    let network = EvmNetwork::new(31337, "Anvil", asset);
    let facilitator = facilitator(
        &devnet,
        devnet.rpc_url(),
        network,
        LocalSigner::random(),
        |_| {},
        |b| b,
    )
    .await;
    (devnet, token, facilitator)
}

async fn set_shortfall(devnet: &Devnet, token: Address, shortfall: u64) {
    devnet
        .set_shortchange_shortfall(token, U256::from(shortfall))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_token_that_pays_short_or_nothing_is_never_reported_settled() {
    let (devnet, token, facilitator) = shortchange_env().await;
    let pay_to = Address::random();
    let requirements = requirements(token, SHORT_NAME, SHORT_VERSION, pay_to);

    // Fee-on-transfer (the payee gets 7,000 of 10,000), then nothing at all.
    for (payer, shortfall, received) in [(1, 3_000, 7_000), (2, PRICE, 0)] {
        set_shortfall(&devnet, token, shortfall).await;
        let payload = pay(&devnet, payer, &requirements).await;
        // Simulation cannot tell: the call succeeds.
        let verified = facilitator.verify(&payload, &requirements).await.unwrap();
        assert!(verified.is_valid, "{:?}", verified.invalid_message);
        let before = devnet.token_balance(token, pay_to).await.unwrap();
        let settled = facilitator.settle(&payload, &requirements).await.unwrap();
        assert!(
            !settled.success,
            "shortfall {shortfall}: a successful receipt without Transfer(from, payTo, {PRICE}) was reported settled"
        );
        assert_eq!(
            settled.error_reason,
            Some(ErrorReason::INVALID_TRANSACTION_STATE),
            "{:?}",
            settled.error_message
        );
        // The transaction was sent and succeeded: the chain shows the shortfall.
        let hash: B256 = settled.transaction.parse().unwrap();
        assert!(devnet.wait_receipt(hash).await.unwrap().status);
        assert_eq!(
            devnet.token_balance(token, pay_to).await.unwrap() - before,
            U256::from(received)
        );
    }

    // The same token paying in full settles: the refusals above were about the amount.
    set_shortfall(&devnet, token, 0).await;
    let payload = pay(&devnet, 3, &requirements).await;
    let settled = facilitator.settle(&payload, &requirements).await.unwrap();
    assert_settled(&settled);
    assert_eq!(
        devnet.token_balance(token, pay_to).await.unwrap(),
        U256::from(7_000 + PRICE)
    );
}

// ---- lesson 15 ----

#[tokio::test]
async fn a_refused_broadcast_frees_its_nonce_for_the_next_settlement() {
    let devnet = Devnet::start().await.unwrap();
    let proxy = common::RpcProxy::start(devnet.rpc_url()).await;
    let facilitator = facilitator(
        &devnet,
        proxy.url(),
        EvmNetwork::anvil(devnet.usdc()),
        LocalSigner::random(),
        |_| {},
        // Without the nonce freed, the next transaction waits behind a gap
        // forever: fail fast instead.
        |b| b.receipt_timeout(Duration::from_secs(3)),
    )
    .await;
    let signer = signer_of(&facilitator);
    let pay_to = Address::random();
    let requirements = usdc_requirements(&devnet, pay_to);

    // One settlement, so that the signer has a cached next nonce (1).
    let first = facilitator
        .settle(&pay(&devnet, 1, &requirements).await, &requirements)
        .await
        .unwrap();
    assert_settled(&first);
    assert_eq!(transaction_nonce(&devnet, &first.transaction).await, 0);

    // The node refuses exactly one broadcast.
    let refusals = on_first_send(&proxy, |body| {
        common::Action::Respond(common::error_answer(body, -32000, "txpool is full"))
    });
    proxy.clear();
    let refused = facilitator
        .settle(&pay(&devnet, 2, &requirements).await, &requirements)
        .await
        .unwrap();
    assert!(!refused.success);
    assert_eq!(
        refused.error_reason,
        Some(ErrorReason::INVALID_TRANSACTION_STATE)
    );
    assert!(refused.transaction.is_empty(), "nothing was sent");
    assert_eq!(refusals.load(Ordering::SeqCst), 0);
    let sent = proxy.calls("eth_sendRawTransaction");
    assert_eq!(sent.len(), 1, "{sent:?}");
    let raw: Bytes = serde_json::from_value(sent[0]["params"][0].clone()).unwrap();
    let refused_nonce = alloy_consensus::TxEnvelope::decode_2718(&mut raw.as_ref())
        .unwrap()
        .nonce();
    assert_eq!(refused_nonce, 1);

    // The next settlement takes the refused nonce and confirms.
    let next = facilitator
        .settle(&pay(&devnet, 3, &requirements).await, &requirements)
        .await
        .unwrap();
    assert_settled(&next);
    assert_eq!(
        transaction_nonce(&devnet, &next.transaction).await,
        refused_nonce
    );
    assert_eq!(
        devnet.usdc_balance(pay_to).await.unwrap(),
        U256::from(2 * PRICE)
    );
    let count = devnet
        .rpc("eth_getTransactionCount", json!([signer, "latest"]))
        .await
        .unwrap();
    assert_eq!(common::block_number(&count), 2, "no nonce was skipped");
}

#[tokio::test]
async fn the_signer_recovers_when_its_key_is_used_outside_the_facilitator() {
    let devnet = Devnet::start().await.unwrap();
    // Dev account #8's key (not a payer here): unlocked on the node, so the
    // "outside" use is an ordinary eth_sendTransaction from the same address.
    let outside = devnet.account(8).address;
    let key = LocalSigner::from_hex(&devnet.account(8).private_key_hex()).unwrap();
    let facilitator = facilitator(
        &devnet,
        devnet.rpc_url(),
        EvmNetwork::anvil(devnet.usdc()),
        key,
        |_| {},
        |b| b.receipt_timeout(Duration::from_secs(3)),
    )
    .await;
    assert_eq!(signer_of(&facilitator), outside);
    let pay_to = Address::random();
    let requirements = usdc_requirements(&devnet, pay_to);
    let first = facilitator
        .settle(&pay(&devnet, 1, &requirements).await, &requirements)
        .await
        .unwrap();
    assert_settled(&first);
    let cached = transaction_nonce(&devnet, &first.transaction).await + 1;

    // The operator's key sends a transaction of its own: the facilitator's
    // cached nonce is now too low.
    let hash = devnet
        .send_unlocked_tx_with(
            outside,
            Some(Address::random()),
            [0u8; 0],
            Some(U256::from(1)),
            Some(21_000),
        )
        .await
        .unwrap();
    assert!(devnet.wait_receipt(hash).await.unwrap().status);
    assert_eq!(transaction_nonce(&devnet, &hash.to_string()).await, cached);

    let next = facilitator
        .settle(&pay(&devnet, 2, &requirements).await, &requirements)
        .await
        .unwrap();
    assert_settled(&next);
    assert_eq!(
        transaction_nonce(&devnet, &next.transaction).await,
        cached + 1
    );
    assert_eq!(
        devnet.usdc_balance(pay_to).await.unwrap(),
        U256::from(2 * PRICE)
    );
}

/// Counts the transactions a settlement records before broadcasting them.
#[derive(Default)]
struct Recorded(AtomicUsize);

impl SettlementObserver for Recorded {
    fn before_broadcast<'a>(
        &'a self,
        _network: &'a ChainId,
        _transaction: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(()) })
    }
}

/// Waits (at most `limit`) until `check` holds; whether it did.
async fn eventually(limit: Duration, check: impl Fn() -> bool) -> bool {
    let until = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < until {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    check()
}

/// The nonces of the distinct transactions sent through `proxy`, in the
/// order they were first sent (a receipt wait's re-broadcast of the same
/// bytes is not a new transaction).
fn sent_nonces(proxy: &common::RpcProxy) -> Vec<u64> {
    let mut seen = std::collections::HashSet::new();
    proxy
        .calls("eth_sendRawTransaction")
        .iter()
        .filter_map(|call| {
            let raw: Bytes = serde_json::from_value(call["params"][0].clone()).unwrap();
            let tx = alloy_consensus::TxEnvelope::decode_2718(&mut raw.as_ref()).unwrap();
            seen.insert(*tx.tx_hash()).then(|| tx.nonce())
        })
        .collect()
}

/// Makes `proxy` answer the first `eth_sendRawTransaction` with `first(request)`
/// and forward every other call; the number of such answers still to give
/// (1, then 0).
fn on_first_send(
    proxy: &common::RpcProxy,
    first: impl Fn(&Value) -> common::Action + Send + Sync + 'static,
) -> Arc<AtomicUsize> {
    let left = Arc::new(AtomicUsize::new(1));
    let counter = Arc::clone(&left);
    proxy.set_rule(move |body| {
        if body["method"] == "eth_sendRawTransaction"
            && counter
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return first(body);
        }
        common::Action::Forward
    });
    left
}

/// Settles `payload` in a task of its own, reporting broadcasts to `recorded`.
fn spawn_settle(
    facilitator: &Arc<ExactEvmFacilitator>,
    recorded: &Arc<Recorded>,
    requirements: &PaymentRequirements,
    payload: PaymentPayload,
) -> tokio::task::JoinHandle<paywire_core::SettleResponse> {
    let (facilitator, recorded, requirements) = (
        Arc::clone(facilitator),
        Arc::clone(recorded),
        requirements.clone(),
    );
    tokio::spawn(async move {
        facilitator
            .settle_observed(&payload, &requirements, recorded.as_ref())
            .await
            .unwrap()
    })
}

/// Waits (at most 5 s) until `proxy` has seen a broadcast.
async fn until_first_send(proxy: &common::RpcProxy) {
    assert!(
        eventually(Duration::from_secs(5), || !proxy
            .calls("eth_sendRawTransaction")
            .is_empty())
        .await,
        "no broadcast reached the node"
    );
}

/// Broadcasts of one signer are pipelined: the next settlement signs and
/// records its transaction while the node has not yet answered the
/// previous broadcast (the nonce lock is not held across the send).
#[tokio::test]
async fn the_next_settlement_signs_while_the_previous_broadcast_is_unanswered() {
    let devnet = Devnet::start().await.unwrap();
    let proxy = common::RpcProxy::start(devnet.rpc_url()).await;
    let facilitator = Arc::new(
        facilitator(
            &devnet,
            proxy.url(),
            EvmNetwork::anvil(devnet.usdc()),
            LocalSigner::random(),
            |_| {},
            |b| b,
        )
        .await,
    );
    let requirements = usdc_requirements(&devnet, Address::random());
    let (first, second) = (
        pay(&devnet, 1, &requirements).await,
        pay(&devnet, 2, &requirements).await,
    );
    // The node takes the first transaction; its answer is held for 6 s.
    on_first_send(&proxy, |_| {
        common::Action::ForwardThenStall(Duration::from_secs(6))
    });
    let recorded = Arc::new(Recorded::default());
    let settle = |payload| spawn_settle(&facilitator, &recorded, &requirements, payload);
    let first = settle(first);
    until_first_send(&proxy).await;
    let second = settle(second);
    assert!(
        eventually(Duration::from_secs(4), || recorded.0.load(Ordering::SeqCst)
            == 2)
        .await,
        "the second transaction was not signed and recorded while the first broadcast was unanswered"
    );
    assert!(
        proxy.calls("eth_sendRawTransaction").len() == 1,
        "the second transaction was sent before the first broadcast was answered"
    );
    let (first, second) = (first.await.unwrap(), second.await.unwrap());
    assert_settled(&first);
    assert_settled(&second);
    assert_eq!(sent_nonces(&proxy), vec![0, 1]);
}

/// Many settlements of one signer at once, on a multi-threaded runtime:
/// every one settles, the signer's transactions reach the node in nonce
/// order, and no nonce is skipped or used twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_settlements_of_one_signer_are_sent_in_nonce_order() {
    const SETTLEMENTS: usize = 24;
    let devnet = Devnet::start().await.unwrap();
    let proxy = common::RpcProxy::start(devnet.rpc_url()).await;
    let facilitator = Arc::new(
        facilitator(
            &devnet,
            proxy.url(),
            EvmNetwork::anvil(devnet.usdc()),
            LocalSigner::random(),
            |_| {},
            |b| b,
        )
        .await,
    );
    let signer = signer_of(&facilitator);
    let pay_to = Address::random();
    let requirements = usdc_requirements(&devnet, pay_to);
    let mut payloads = Vec::new();
    for index in 0..SETTLEMENTS {
        payloads.push(pay(&devnet, 1 + index % 8, &requirements).await);
    }
    let settlements: Vec<_> = payloads
        .into_iter()
        .map(|payload| {
            let (facilitator, requirements) = (Arc::clone(&facilitator), requirements.clone());
            tokio::spawn(async move { facilitator.settle(&payload, &requirements).await.unwrap() })
        })
        .collect();
    for settlement in settlements {
        assert_settled(&settlement.await.unwrap());
    }
    let expected: Vec<u64> = (0..SETTLEMENTS as u64).collect();
    assert_eq!(sent_nonces(&proxy), expected, "sent out of nonce order");
    let count = devnet
        .rpc("eth_getTransactionCount", json!([signer, "latest"]))
        .await
        .unwrap();
    assert_eq!(common::block_number(&count), SETTLEMENTS as u64);
    assert_eq!(
        devnet.usdc_balance(pay_to).await.unwrap(),
        U256::from(SETTLEMENTS as u64 * PRICE)
    );
}

/// A refused broadcast with later transactions of its signer queued behind
/// it: the queued ones are never sent behind the gap; they are signed again
/// from the refused nonce and settle, and no nonce is skipped.
#[tokio::test]
async fn a_refused_broadcast_with_later_transactions_queued_leaves_no_gap() {
    let devnet = Devnet::start().await.unwrap();
    let proxy = common::RpcProxy::start(devnet.rpc_url()).await;
    let facilitator = Arc::new(
        facilitator(
            &devnet,
            proxy.url(),
            EvmNetwork::anvil(devnet.usdc()),
            LocalSigner::random(),
            |_| {},
            // A transaction stuck behind a gap would never confirm: fail fast.
            |b| b.receipt_timeout(Duration::from_secs(5)),
        )
        .await,
    );
    let signer = signer_of(&facilitator);
    let pay_to = Address::random();
    let requirements = usdc_requirements(&devnet, pay_to);
    let mut payloads = Vec::new();
    for index in 1..=3 {
        payloads.push(pay(&devnet, index, &requirements).await);
    }
    // The node refuses the first transaction, 3 s after it was sent.
    on_first_send(&proxy, |body| {
        let refusal = common::error_answer(body, -32000, "txpool is full");
        common::Action::RespondAfter(refusal, Duration::from_secs(3))
    });
    let recorded = Arc::new(Recorded::default());
    let settle = |payload| spawn_settle(&facilitator, &recorded, &requirements, payload);
    let mut payloads = payloads.into_iter();
    let refused = settle(payloads.next().unwrap());
    until_first_send(&proxy).await;
    let queued: Vec<_> = payloads.map(settle).collect();
    assert!(
        eventually(Duration::from_secs(2), || recorded.0.load(Ordering::SeqCst)
            == 3)
        .await,
        "the later transactions were not queued behind the unanswered one"
    );
    let refused = refused.await.unwrap();
    assert!(!refused.success);
    assert_eq!(
        refused.error_reason,
        Some(ErrorReason::INVALID_TRANSACTION_STATE)
    );
    assert!(refused.transaction.is_empty(), "nothing was sent");
    for settlement in queued {
        assert_settled(&settlement.await.unwrap());
    }
    // Nonces 1 and 2 (signed behind the refused 0) were never sent; the two
    // settlements signed again at 0 and 1.
    assert_eq!(sent_nonces(&proxy), vec![0, 0, 1]);
    let count = devnet
        .rpc("eth_getTransactionCount", json!([signer, "latest"]))
        .await
        .unwrap();
    assert_eq!(common::block_number(&count), 2, "no nonce was skipped");
    assert_eq!(
        devnet.usdc_balance(pay_to).await.unwrap(),
        U256::from(2 * PRICE)
    );
}

// ---- lesson 16 ----

/// Pending transactions in anvil's pool.
async fn pooled(devnet: &Devnet) -> u64 {
    let status = devnet.rpc("txpool_status", json!([])).await.unwrap();
    common::block_number(&status["pending"])
}

async fn wait_for_pool(devnet: &Devnet, expected: u64) {
    for _ in 0..500 {
        if pooled(devnet).await == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the pool never held {expected} transaction(s)");
}

/// `transferWithAuthorization` of `payload`, as anyone may send it.
fn transfer_call(payload: &PaymentPayload) -> Vec<u8> {
    ExactEvmPayload::from_json(&payload.payload)
        .unwrap()
        .transfer_calldata()
}

#[tokio::test]
async fn settlement_beaten_in_the_pool_reports_the_outsiders_transaction() {
    let devnet = Devnet::start_with(DevnetOptions {
        automine: false,
        block_time: None,
        ..DevnetOptions::default()
    })
    .await
    .unwrap();
    let facilitator = facilitator(
        &devnet,
        devnet.rpc_url(),
        EvmNetwork::anvil(devnet.usdc()),
        LocalSigner::random(),
        |_| {},
        |b| {
            b.receipt_timeout(Duration::from_secs(10))
                .rebroadcast_interval(Duration::from_secs(60))
        },
    )
    .await;
    let signer = signer_of(&facilitator);
    let pay_to = Address::random();
    let requirements = usdc_requirements(&devnet, pay_to);
    let payload = pay(&devnet, 4, &requirements).await;

    let settling = facilitator.settle(&payload, &requirements);
    let outsider = async {
        // Our transaction is in the pool; an outsider who saw the
        // authorization sends it with a far higher tip.
        wait_for_pool(&devnet, 1).await;
        let hash = devnet
            .rpc(
                "eth_sendTransaction",
                json!([{
                    "from": devnet.account(7).address,
                    "to": devnet.usdc(),
                    "data": Bytes::from(transfer_call(&payload)),
                    "gas": "0x30d40",
                    "maxFeePerGas": "0x174876e800",
                    "maxPriorityFeePerGas": "0xba43b7400",
                }]),
            )
            .await
            .unwrap();
        wait_for_pool(&devnet, 2).await;
        devnet.mine().await.unwrap();
        hash.as_str().unwrap().to_owned()
    };
    let (settled, outsider_hash) = tokio::join!(settling, outsider);
    let settled = settled.unwrap();

    // Both landed in one block, the outsider's first; ours reverted.
    let block = devnet
        .rpc("eth_getBlockByNumber", json!(["latest", false]))
        .await
        .unwrap();
    let hashes: Vec<String> = serde_json::from_value(block["transactions"].clone()).unwrap();
    assert_eq!(hashes.len(), 2, "{hashes:?}");
    assert_eq!(hashes[0], outsider_hash, "the higher tip goes first");
    let ours = devnet
        .wait_receipt(hashes[1].parse().unwrap())
        .await
        .unwrap();
    assert_eq!(ours.from, signer);
    assert!(!ours.status, "our settlement reverted: the nonce was used");

    assert_settled(&settled);
    assert_eq!(
        settled.transaction, outsider_hash,
        "the payer was charged by the outsider's transaction"
    );
    assert_eq!(settled.amount, Some(PRICE.into()));
    assert_eq!(
        devnet.usdc_balance(pay_to).await.unwrap(),
        U256::from(PRICE)
    );
}

// ---- lesson 27 ----

/// A facilitator whose asset table gives the devnet's USDC the testnet name
/// "USDC"; the token's own domain name is "USD Coin".
async fn facilitator_with_a_wrong_domain_name(
    devnet: &Devnet,
    counterfactual_wallets: CounterfactualWallets,
) -> ExactEvmFacilitator {
    let network = EvmNetwork::new(31337, "Anvil", EvmAsset::usdc(devnet.usdc(), "USDC"));
    facilitator(
        devnet,
        devnet.rpc_url(),
        network,
        LocalSigner::random(),
        |chain| chain.counterfactual_wallets = counterfactual_wallets,
        |b| b,
    )
    .await
}

#[tokio::test]
async fn counterfactual_wallet_signature_is_checked_under_the_tokens_own_domain() {
    let devnet = Devnet::start().await.unwrap();
    let facilitator =
        facilitator_with_a_wrong_domain_name(&devnet, CounterfactualWallets::Deploy).await;
    let pay_to = Address::random();
    let requirements = usdc_requirements(&devnet, pay_to);

    // An undeployed wallet of payer #3's key: its signature can only be checked
    // locally (EIP-6492 validator over the facilitator's own digest).
    let owner = LocalSigner::new(devnet.payer(3).signer());
    let factory = devnet.deploy_wallet_factory().await.unwrap();
    let salt = B256::repeat_byte(0x27);
    let wallet = devnet
        .predict_wallet(factory, owner.address(), salt)
        .await
        .unwrap();
    devnet
        .mint_usdc(wallet, U256::from(2 * PRICE))
        .await
        .unwrap();
    let authorization = Authorization {
        from: wallet,
        to: pay_to,
        value: PRICE.into(),
        valid_after: 0u64.into(),
        valid_before: (now() + 300).into(),
        nonce: B256::random(),
    };
    let digest = signing_hash(
        &authorization,
        &eip712_domain("USD Coin", "2", 31337, devnet.usdc()),
    );
    let inner = owner.sign_hash_sync(&digest).unwrap().as_bytes();
    let signature = paywire_testkit::wrap_eip6492(
        factory,
        paywire_testkit::deploy_calldata(owner.address(), salt),
        inner.into(),
    );
    let payload = wrap(
        ExactEvmPayload {
            authorization,
            signature,
        },
        &requirements,
    );

    let verified = facilitator.verify(&payload, &requirements).await.unwrap();
    assert!(
        verified.is_valid,
        "{:?}: {:?}",
        verified.invalid_reason, verified.invalid_message
    );
    let settled = facilitator.settle(&payload, &requirements).await.unwrap();
    assert_settled(&settled);
    assert!(
        !devnet.code_at(wallet).await.unwrap().is_empty(),
        "deployed"
    );
    assert_eq!(
        devnet.usdc_balance(pay_to).await.unwrap(),
        U256::from(PRICE)
    );
}

#[tokio::test]
async fn refusal_reasons_are_named_under_the_tokens_own_domain() {
    let devnet = Devnet::start().await.unwrap();
    let facilitator =
        facilitator_with_a_wrong_domain_name(&devnet, CounterfactualWallets::Off).await;
    let pay_to = Address::random();
    let requirements = usdc_requirements(&devnet, pay_to);
    // A genuine signature under the token's domain, by a payer one unit short.
    let broke = LocalSigner::random();
    devnet
        .mint_usdc(broke.address(), U256::from(PRICE - 1))
        .await
        .unwrap();
    let exact = ExactEvmClient::new(broke)
        .sign(&requirements)
        .await
        .unwrap();
    let payload = wrap(exact, &requirements);
    // The simulation fails; the facilitator recovers the signer over its own
    // digest to name the reason. Under the table's name it would call a good
    // signature bad.
    let verified = facilitator.verify(&payload, &requirements).await.unwrap();
    assert!(!verified.is_valid);
    assert_eq!(
        verified.invalid_reason,
        Some(ErrorReason::INSUFFICIENT_FUNDS),
        "{:?}",
        verified.invalid_message
    );
}
