//! EIP-6492: a signature for a counterfactual `SmartWallet` (predicted by `WalletFactory`,
//! not deployed) is validated by the paywire-evm deployless validator
//! (`crates/paywire-evm/contracts/Eip6492Validator.json`) in a plain `eth_call` without `to`.

use alloy_primitives::{Address, B256, Bytes, keccak256};
use alloy_signer::SignerSync;
use alloy_sol_types::SolValue;
use paywire_testkit::{Devnet, deploy_calldata, predict_wallet_address, wrap_eip6492};

const VALIDATOR_JSON: &str = include_str!("../../paywire-evm/contracts/Eip6492Validator.json");
const VALIDATOR_SOURCE: &str = include_str!("../../paywire-evm/contracts/Eip6492Validator.sol");

fn validator_field(name: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(VALIDATOR_JSON).unwrap();
    json[name].as_str().unwrap().to_owned()
}

/// Validator creation code ++ `abi.encode(signer, hash, signature)`.
fn validation_data(signer: Address, hash: B256, signature: &[u8]) -> Vec<u8> {
    let mut data = validator_field("bytecode")
        .parse::<Bytes>()
        .unwrap()
        .to_vec();
    data.extend_from_slice(&(signer, hash, Bytes::copy_from_slice(signature)).abi_encode_params());
    data
}

async fn validate(devnet: &Devnet, signer: Address, hash: B256, signature: &[u8]) -> Bytes {
    devnet
        .call_deployless(validation_data(signer, hash, signature))
        .await
        .expect("the validator never reverts")
}

fn valid() -> Bytes {
    Bytes::from_static(&[1])
}

fn invalid() -> Bytes {
    Bytes::from_static(&[0])
}

#[test]
fn validator_artifact_matches_its_source() {
    assert_eq!(
        validator_field("sourceKeccak256"),
        keccak256(VALIDATOR_SOURCE.as_bytes()).to_string(),
        "Eip6492Validator.json is stale; run `node crates/paywire-testkit/contracts/compile.mjs crates/paywire-evm/contracts/Eip6492Validator.sol`"
    );
    assert!(validator_field("solc").starts_with("0.8.26+"));
}

#[tokio::test]
async fn counterfactual_wallet_signature_is_valid_without_deploying_it() {
    let devnet = Devnet::start().await.expect("devnet starts");
    let owner = devnet.account(3);
    let stranger = devnet.account(4);
    let factory = devnet.deploy_wallet_factory().await.unwrap();
    let salt = B256::repeat_byte(0x42);

    let predicted = devnet
        .predict_wallet(factory, owner.address, salt)
        .await
        .unwrap();
    assert_eq!(
        predicted,
        predict_wallet_address(factory, owner.address, salt).unwrap()
    );
    assert!(devnet.code_at(predicted).await.unwrap().is_empty());

    let hash = keccak256(b"x402 eip-6492 test payload");
    let good = owner.signer().sign_hash_sync(&hash).unwrap().as_bytes();
    let bad = stranger.signer().sign_hash_sync(&hash).unwrap().as_bytes();
    let calldata = deploy_calldata(owner.address, salt);
    let wrapped = wrap_eip6492(factory, calldata.clone(), Bytes::copy_from_slice(&good));
    let wrapped_bad = wrap_eip6492(factory, calldata.clone(), Bytes::copy_from_slice(&bad));

    assert_eq!(validate(&devnet, predicted, hash, &wrapped).await, valid());
    assert_eq!(
        validate(&devnet, predicted, hash, &wrapped_bad).await,
        invalid()
    );
    // Another hash, or the owner's plain signature for the undeployed wallet: invalid.
    let other_hash = keccak256(b"something else");
    assert_eq!(
        validate(&devnet, predicted, other_hash, &wrapped).await,
        invalid()
    );
    assert_eq!(validate(&devnet, predicted, hash, &good).await, invalid());
    // A factory call that deploys some other wallet does not help.
    let wrong_salt = wrap_eip6492(
        factory,
        deploy_calldata(owner.address, B256::repeat_byte(0x43)),
        Bytes::copy_from_slice(&good),
    );
    assert_eq!(
        validate(&devnet, predicted, hash, &wrong_salt).await,
        invalid()
    );
    // Malformed wrappers are invalid, not reverts.
    let mut truncated = wrapped[..100].to_vec();
    truncated.extend_from_slice(&paywire_testkit::EIP6492_MAGIC_SUFFIX);
    assert_eq!(
        validate(&devnet, predicted, hash, &truncated).await,
        invalid()
    );
    assert_eq!(
        validate(
            &devnet,
            predicted,
            hash,
            &paywire_testkit::EIP6492_MAGIC_SUFFIX
        )
        .await,
        invalid()
    );

    // eth_call has no side effects: the wallet is still not deployed.
    assert!(devnet.code_at(predicted).await.unwrap().is_empty());

    // Once deployed (idempotently), both the wrapped and the plain signature are valid by
    // EIP-1271 and the stranger's still is not.
    let deployed = devnet
        .deploy_wallet(factory, owner.address, salt)
        .await
        .unwrap();
    assert_eq!(deployed, predicted);
    assert!(!devnet.code_at(predicted).await.unwrap().is_empty());
    assert_eq!(
        devnet
            .deploy_wallet(factory, owner.address, salt)
            .await
            .unwrap(),
        predicted
    );
    assert_eq!(validate(&devnet, predicted, hash, &wrapped).await, valid());
    assert_eq!(validate(&devnet, predicted, hash, &good).await, valid());
    assert_eq!(validate(&devnet, predicted, hash, &bad).await, invalid());
    assert_eq!(
        validate(&devnet, predicted, hash, &wrapped_bad).await,
        invalid()
    );
}

#[tokio::test]
async fn eoa_signature_is_checked_with_ecrecover() {
    let devnet = Devnet::start().await.expect("devnet starts");
    let signer = devnet.account(5);
    let other = devnet.account(6);
    let hash = keccak256(b"x402 eoa payload");
    let signature = signer.signer().sign_hash_sync(&hash).unwrap().as_bytes();

    assert_eq!(
        validate(&devnet, signer.address, hash, &signature).await,
        valid()
    );
    assert_eq!(
        validate(&devnet, other.address, hash, &signature).await,
        invalid()
    );
    assert_eq!(
        validate(&devnet, signer.address, keccak256(b"other"), &signature).await,
        invalid()
    );
    // v as 0/1 is accepted too; a wrong length is not.
    let mut v01 = signature;
    v01[64] -= 27;
    assert_eq!(validate(&devnet, signer.address, hash, &v01).await, valid());
    assert_eq!(
        validate(&devnet, signer.address, hash, &signature[..64]).await,
        invalid()
    );
    assert_eq!(
        validate(&devnet, signer.address, hash, &[]).await,
        invalid()
    );
}
