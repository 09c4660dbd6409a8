//! Benchmarks of the Solana `exact` scheme on the real Solana runtime
//! (litesvm behind the test chain's JSON-RPC server, reached over loopback
//! HTTP by the product's RPC client): the client building a payment, the
//! facilitator's static acceptance policy alone, and verification and
//! settlement of fresh payments, each a different transaction.
//!
//! Run: `cargo bench -p paywire-svm --bench exact` (starts its own chain).
#![allow(missing_docs)] // criterion_main! generates an undocumented `main`

use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use paywire_core::{
    ChainId, Money, PaymentPayload, PaymentRequirements, Price, RequirementsRequest, SchemeClient,
    SchemeFacilitator, SchemeServer,
};
use paywire_litesvm::{DEVNET_GENESIS_HASH, RpcServer, SolanaTestChain, TokenProgram};
use paywire_svm::exact::verify::{self, Expected, Policy};
use paywire_svm::exact::{ExactSvmClient, ExactSvmFacilitator, ExactSvmServer, SvmChain};
use paywire_svm::keys::verify_signature;
use paywire_svm::rpc::SvmRpc;
use paywire_svm::{SvmKeypair, tx};
use solana_address::Address;
use solana_hash::Hash;

/// Circle's devnet USDC.
const DEVNET_USDC: &str = "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU";
const DEVNET: &str = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1";
/// `$0.01` of a 6-decimal stablecoin.
const PRICE: u64 = 10_000;

struct Bench {
    _chain: Arc<SolanaTestChain>,
    _rpc: RpcServer,
    client: ExactSvmClient,
    facilitator: ExactSvmFacilitator,
    requirements: PaymentRequirements,
    fee_payer: Address,
}

/// A devnet-shaped chain with USDC, a funded fee payer, a payer holding
/// enough for every settlement the bench makes, and a merchant.
fn setup() -> Bench {
    let genesis: Hash = DEVNET_GENESIS_HASH.parse().unwrap();
    let chain = Arc::new(SolanaTestChain::with_genesis_hash(genesis));
    let usdc: Address = DEVNET_USDC.parse().unwrap();
    chain.create_mint_at(&usdc, TokenProgram::Token, 6);
    let fee_payer = SvmKeypair::from_seed(&[0xfe; 32]);
    chain.airdrop(&fee_payer.address(), 1_000_000_000_000);
    let payer = SvmKeypair::from_seed(&[0xa1; 32]);
    chain.airdrop(&payer.address(), 1_000_000_000);
    chain.mint_to(&usdc, &payer.address(), 1_000_000_000_000);
    let merchant = SvmKeypair::from_seed(&[0x3e; 32]).address();
    chain.create_ata(&merchant, &usdc);
    let server = RpcServer::start(Arc::clone(&chain)).unwrap();

    let network = ChainId::parse(DEVNET).unwrap();
    let rpc = |timeout| Arc::new(SvmRpc::new(&[server.url().to_owned()], timeout).unwrap());
    let fee_payer_address = fee_payer.address();
    let mut settled = SvmChain::new(
        network.clone(),
        rpc(Duration::from_secs(10)),
        vec![fee_payer],
    );
    settled.assets = vec![usdc];
    let facilitator = ExactSvmFacilitator::new(vec![settled], Duration::from_secs(10));
    let client = ExactSvmClient::new(payer).network(network.clone(), rpc(Duration::from_secs(10)));
    let price = Price::Money(Money::parse("$0.01").unwrap());
    let requirements = ExactSvmServer::default()
        .with_fee_payer(network.clone(), fee_payer_address.to_string())
        .requirements(&RequirementsRequest {
            network: &network,
            price: &price,
            pay_to: &merchant.to_string(),
            max_timeout_seconds: 60,
            facilitator_kind: None,
        })
        .unwrap();
    assert_eq!(requirements.amount.to_u128(), Some(u128::from(PRICE)));
    Bench {
        _chain: chain,
        _rpc: server,
        client,
        facilitator,
        requirements,
        fee_payer: fee_payer_address,
    }
}

/// A fresh payment: a new random memo, so a new transaction.
async fn pay(bench: &Bench) -> PaymentPayload {
    let payload = bench
        .client
        .create_payload(&bench.requirements)
        .await
        .unwrap();
    PaymentPayload {
        x402_version: 2,
        payload,
        extensions: None,
        resource: None,
        accepted: bench.requirements.clone(),
    }
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let bench = setup();

    let mut group = c.benchmark_group("svm_exact");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));

    // The client: read the mint and a blockhash through the node, build the
    // v0 transaction, sign it as the payer, encode it.
    group.bench_function("client_create_payload", |b| {
        b.iter(|| rt.block_on(pay(&bench)));
    });

    // The sponsor acceptance policy without any RPC: decode the base64
    // transaction, then every static rule including the client's ed25519
    // signature.
    let payment = rt.block_on(pay(&bench));
    let text = payment.payload["transaction"].as_str().unwrap().to_owned();
    let expected = Expected::new(
        bench.fee_payer,
        DEVNET_USDC.parse().unwrap(),
        tx::TOKEN_PROGRAM,
        6,
        bench.requirements.pay_to.parse().unwrap(),
        PRICE,
    );
    let (policy, ours) = (Policy::default(), [bench.fee_payer]);
    group.bench_function("verify_static_policy_no_rpc", |b| {
        b.iter(|| {
            let transaction = tx::decode_transaction(&text).unwrap();
            verify::check(&transaction, &[], &expected, &policy, &ours).unwrap()
        });
    });

    // The client's signature alone, as the static rules check it (the share
    // of ed25519 in the line above).
    let transaction = tx::decode_transaction(&text).unwrap();
    let message = tx::message_bytes(&transaction.message);
    let payer = SvmKeypair::from_seed(&[0xa1; 32]).address();
    group.bench_function("verify_client_signature_only", |b| {
        b.iter(|| {
            assert!(verify_signature(
                &payer,
                &message,
                &transaction.signatures[1]
            ));
        });
    });

    // Verification of a fresh payment: the static rules, the destination
    // account and a simulation through the node (the mint is cached after
    // the first payment, as in a running facilitator).
    group.bench_function("verify_fresh_payment_via_rpc", |b| {
        b.iter_batched(
            || rt.block_on(pay(&bench)),
            |payment| {
                let answer = rt
                    .block_on(bench.facilitator.verify(&payment, &bench.requirements))
                    .unwrap();
                assert!(answer.is_valid, "{:?}", answer.invalid_reason);
            },
            BatchSize::SmallInput,
        );
    });

    // Settlement of a fresh payment: verification again, the fee payer's
    // signature, the duplicate check, `sendTransaction` and the status poll
    // until `confirmed`.
    group.sample_size(10);
    group.bench_function("settle_fresh_payment_via_rpc", |b| {
        b.iter_batched(
            || rt.block_on(pay(&bench)),
            |payment| {
                let answer = rt
                    .block_on(bench.facilitator.settle(&payment, &bench.requirements))
                    .unwrap();
                assert!(answer.success, "{:?}", answer.error_message);
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(exact, benches);
criterion_main!(exact);
