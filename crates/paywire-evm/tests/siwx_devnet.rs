//! Smart-wallet sign-in on an anvil devnet: the deployless validator
//! `eth_call` accepts the owner's signature and rejects a stranger's, for a
//! deployed EIP-1271 wallet and a counterfactual EIP-6492 one.

use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::B256;
use paywire_core::{ChainId, Secret};
use paywire_evm::rpc::RpcClient;
use paywire_evm::siwx::{EvmSiwxSigner, EvmVerifier};
use paywire_evm::{EvmPlugin, LocalSigner};
use paywire_siwx::{
    MemoryStore, SiwxError, SiwxServer, SiwxServerConfig, SolanaVerifier, VerifierRegistry,
    VerifyError, sign_in,
};
use paywire_testkit::Devnet;
use paywire_testkit::factory::deploy_calldata;

#[tokio::test]
async fn smart_wallets_accept_owner_and_reject_stranger() {
    let devnet = Devnet::start().await.unwrap();
    let network = ChainId::parse(devnet.network()).unwrap();
    let owner = LocalSigner::random();
    let wallet = devnet.deploy_smart_wallet(owner.address()).await.unwrap();
    let rpc = Arc::new(
        RpcClient::new(vec![devnet.rpc_url().to_owned()], Duration::from_secs(10)).unwrap(),
    );

    let mut verifiers = VerifierRegistry::new();
    verifiers.register(Arc::new(EvmVerifier::new().with_rpc(&network, rpc)));
    verifiers.register(Arc::new(SolanaVerifier));
    let server = SiwxServer::new(
        SiwxServerConfig::new("https://api.example.com"),
        verifiers,
        Arc::new(MemoryStore::new()),
    )
    .unwrap();
    let accepted = [network.clone()];

    // The owner's key signs for the wallet: accepted through EIP-1271.
    let ext = server.challenge("/premium", &accepted).await.unwrap();
    let signer = EvmSiwxSigner::for_wallet(owner.clone(), wallet);
    let proof = sign_in(&ext, "api.example.com", &network, &signer)
        .await
        .unwrap();
    assert_eq!(proof.signature_scheme.as_deref(), Some("eip1271"));
    let signed = server
        .verify_proof(&proof, "/premium", &accepted)
        .await
        .unwrap();
    assert_eq!(signed.address, wallet.to_checksum(None));

    // A stranger's key: the wallet says no.
    let ext = server.challenge("/premium", &accepted).await.unwrap();
    let stranger = EvmSiwxSigner::for_wallet(LocalSigner::random(), wallet);
    let proof = sign_in(&ext, "api.example.com", &network, &stranger)
        .await
        .unwrap();
    assert!(matches!(
        server.verify_proof(&proof, "/premium", &accepted).await,
        Err(SiwxError::Signature(VerifyError::InvalidSignature))
    ));

    // A counterfactual (not yet deployed) wallet: EIP-6492.
    let factory = devnet.deploy_wallet_factory().await.unwrap();
    let salt = B256::repeat_byte(9);
    let future_wallet = devnet
        .predict_wallet(factory, owner.address(), salt)
        .await
        .unwrap();
    assert!(devnet.code_at(future_wallet).await.unwrap().is_empty());
    let calldata = deploy_calldata(owner.address(), salt);
    let ext = server.challenge("/premium", &accepted).await.unwrap();
    let signer6492 =
        EvmSiwxSigner::counterfactual(owner.clone(), future_wallet, factory, calldata.clone());
    let proof = sign_in(&ext, "api.example.com", &network, &signer6492)
        .await
        .unwrap();
    assert_eq!(proof.signature_scheme.as_deref(), Some("eip6492"));
    server
        .verify_proof(&proof, "/premium", &accepted)
        .await
        .unwrap();
    assert!(
        devnet.code_at(future_wallet).await.unwrap().is_empty(),
        "validation must not deploy"
    );
    let ext = server.challenge("/premium", &accepted).await.unwrap();
    let bad6492 =
        EvmSiwxSigner::counterfactual(LocalSigner::random(), future_wallet, factory, calldata);
    let proof = sign_in(&ext, "api.example.com", &network, &bad6492)
        .await
        .unwrap();
    assert!(matches!(
        server.verify_proof(&proof, "/premium", &accepted).await,
        Err(SiwxError::Signature(VerifyError::InvalidSignature))
    ));

    // Without an RPC client for the chain, smart wallets cannot sign in.
    let eoa_only = SiwxServer::new(
        SiwxServerConfig::new("https://api.example.com"),
        VerifierRegistry::new()
            .with(Arc::new(EvmVerifier::new()))
            .with(Arc::new(SolanaVerifier)),
        Arc::new(MemoryStore::new()),
    )
    .unwrap();
    let ext = eoa_only.challenge("/premium", &accepted).await.unwrap();
    let proof = sign_in(&ext, "api.example.com", &network, &signer)
        .await
        .unwrap();
    assert!(matches!(
        eoa_only.verify_proof(&proof, "/premium", &accepted).await,
        Err(SiwxError::Signature(VerifyError::InvalidSignature))
    ));

    // The plugin's verifier, from the node URL as configured, checks smart wallets too.
    let node = [(network.clone(), Secret::new(devnet.rpc_url()))];
    let configured = SiwxServer::new(
        SiwxServerConfig::new("https://api.example.com"),
        VerifierRegistry::new().with(Arc::new(EvmPlugin.siwx_verifier(&node).unwrap())),
        Arc::new(MemoryStore::new()),
    )
    .unwrap();
    let ext = configured.challenge("/premium", &accepted).await.unwrap();
    let proof = sign_in(&ext, "api.example.com", &network, &signer)
        .await
        .unwrap();
    configured
        .verify_proof(&proof, "/premium", &accepted)
        .await
        .unwrap();
}
