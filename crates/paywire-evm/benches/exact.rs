//! Benchmarks of the `exact` EIP-3009 scheme: client signing, the CPU part of
//! verification, verification wall time against anvil, and settlement
//! throughput through one facilitator signer.
//!
//! Run: `cargo bench -p paywire-evm --bench exact` (starts its own devnet).
#![allow(missing_docs)] // criterion_main! generates an undocumented `main`

use paywire_evm::Eip155ChainId;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, U256};
use criterion::{Criterion, criterion_group, criterion_main};
use paywire_core::{
    ChainId, Money, PaymentPayload, PaymentRequirements, Price, RequirementsRequest,
    SchemeFacilitator, SchemeServer, codec,
};
use paywire_evm::ecrecover::recover_address;
use paywire_evm::exact::{
    EvmChainConfig, ExactEvmClient, ExactEvmFacilitator, ExactEvmPayload, ExactEvmServer,
    eip712_domain, signing_hash,
};
use paywire_evm::rpc::{RpcClient, call_params};
use paywire_evm::{EvmNetwork, EvmNetworks, EvmSigner, LocalSigner};
use paywire_testkit::Devnet;

fn network(usdc: Address) -> EvmNetwork {
    EvmNetwork::anvil(usdc)
}

fn requirements(usdc: Address, pay_to: Address) -> PaymentRequirements {
    let mut table = EvmNetworks::empty();
    table.insert(network(usdc));
    let chain = ChainId::eip155(31337);
    let price = Price::Money(Money::parse("$0.01").unwrap());
    ExactEvmServer::new(table)
        .requirements(&RequirementsRequest {
            network: &chain,
            price: &price,
            pay_to: &pay_to.to_string(),
            max_timeout_seconds: 300,
            facilitator_kind: None,
        })
        .unwrap()
}

async fn sign(
    client: &ExactEvmClient<LocalSigner>,
    requirements: &PaymentRequirements,
) -> PaymentPayload {
    let exact = client.sign(requirements).await.unwrap();
    PaymentPayload {
        x402_version: 2,
        payload: exact.to_json(),
        extensions: None,
        resource: None,
        accepted: requirements.clone(),
    }
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let devnet = rt.block_on(Devnet::start()).unwrap();
    let usdc = devnet.usdc();
    let requirements = requirements(usdc, Address::random());
    let client = ExactEvmClient::new(LocalSigner::new(devnet.payer(1).signer()));

    c.bench_function("client_sign_exact_eip3009", |b| {
        b.iter(|| rt.block_on(client.sign(&requirements)).unwrap());
    });

    // The CPU work of a successful verification without any RPC: decode the
    // header, read the payload, hash the EIP-712 message, encode the
    // simulation call and its JSON-RPC request. The token checks the
    // signature inside the simulation, so no signer recovery happens here.
    let header = codec::encode_header(&rt.block_on(sign(&client, &requirements)));
    let domain = eip712_domain("USD Coin", "2", 31337, usdc);
    c.bench_function("verify_cpu_happy_path", |b| {
        b.iter(|| {
            let payload = codec::decode_payment_signature(header.as_bytes()).unwrap();
            let exact = ExactEvmPayload::from_json(&payload.payload).unwrap();
            let digest = signing_hash(&exact.authorization, &domain);
            let auth = &exact.authorization;
            let calldata = exact.transfer_calldata();
            let body = serde_json::to_vec(&call_params(Some(auth.to), usdc, &calldata)).unwrap();
            std::hint::black_box((digest, body));
        });
    });

    // Signer recovery, paid only when a simulation fails and the facilitator
    // names which check did.
    let payload = codec::decode_payment_signature(header.as_bytes()).unwrap();
    let exact = ExactEvmPayload::from_json(&payload.payload).unwrap();
    let digest = signing_hash(&exact.authorization, &domain);
    c.bench_function("verify_cpu_failure_diagnosis_recover", |b| {
        b.iter(|| {
            let recovered = recover_address(&exact.signature, &digest);
            assert_eq!(recovered, Some(exact.authorization.from));
        });
    });

    let rpc = Arc::new(
        RpcClient::new(vec![devnet.rpc_url().to_owned()], Duration::from_secs(10)).unwrap(),
    );
    let key = LocalSigner::random();
    rt.block_on(devnet.set_eth_balance(key.address(), U256::from(10u128.pow(22))))
        .unwrap();
    let signers: Vec<Arc<dyn EvmSigner>> = vec![Arc::new(key)];
    let facilitator = ExactEvmFacilitator::builder()
        .chain(EvmChainConfig::new(network(usdc), rpc, signers))
        .build()
        .unwrap();
    let payload = rt.block_on(sign(&client, &requirements));
    c.bench_function("verify_wall_against_anvil", |b| {
        b.iter(|| {
            let answer = rt
                .block_on(facilitator.verify(&payload, &requirements))
                .unwrap();
            assert!(answer.is_valid);
        });
    });

    // Settlement throughput: batches of 64 concurrent settlements through one
    // signer; reports time per settlement.
    let payers: Vec<_> = (1..=8)
        .map(|i| ExactEvmClient::new(LocalSigner::new(devnet.payer(i).signer())))
        .collect();
    let facilitator = Arc::new(facilitator);
    let mut group = c.benchmark_group("settle");
    group.sample_size(10);
    group.bench_function("settle_one_signer_64_concurrent_per_tx", |b| {
        b.iter_custom(|iterations| {
            let batch = 64u64;
            let rounds = iterations.div_ceil(batch);
            let mut total = Duration::ZERO;
            for _ in 0..rounds {
                let payloads: Vec<PaymentPayload> = (0..batch)
                    .map(|i| rt.block_on(sign(&payers[(i % 8) as usize], &requirements)))
                    .collect();
                let start = Instant::now();
                rt.block_on(async {
                    let tasks: Vec<_> = payloads
                        .into_iter()
                        .map(|p| {
                            let facilitator = Arc::clone(&facilitator);
                            let requirements = requirements.clone();
                            tokio::spawn(async move { facilitator.settle(&p, &requirements).await })
                        })
                        .collect();
                    for task in tasks {
                        let answer = task.await.unwrap().unwrap();
                        assert!(answer.success, "{:?}", answer.error_message);
                    }
                });
                total += start.elapsed();
            }
            #[allow(clippy::cast_precision_loss)] // iteration counts stay small
            let share = iterations as f64 / (rounds * batch) as f64;
            total.mul_f64(share)
        });
    });
    group.finish();
}

criterion_group!(exact, benches);
criterion_main!(exact);
