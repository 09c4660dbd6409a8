//! The EIP-1271 fixture: a `SmartWallet` owned by dev account #3 pays USDC through
//! FiatTokenV2_2's `transferWithAuthorization(..., bytes signature)`.

use std::time::{SystemTime, UNIX_EPOCH};

use alloy_primitives::{B256, Bytes, FixedBytes, U256};
use alloy_signer::SignerSync;
use alloy_sol_types::{SolCall, SolError, SolStruct};
use paywire_testkit::{
    Devnet, EIP1271_MAGIC_VALUE, IFiatToken, ISmartWallet, TransferWithAuthorization,
};
use serde_json::json;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn is_valid_signature(
    devnet: &Devnet,
    wallet: alloy_primitives::Address,
    hash: B256,
    signature: &[u8],
) -> FixedBytes<4> {
    let out = devnet
        .call(
            wallet,
            ISmartWallet::isValidSignatureCall {
                hash,
                signature: Bytes::copy_from_slice(signature),
            }
            .abi_encode(),
        )
        .await
        .expect("isValidSignature never reverts");
    ISmartWallet::isValidSignatureCall::abi_decode_returns(&out).unwrap()
}

fn transfer_call(authorization: &TransferWithAuthorization, signature: &[u8]) -> Vec<u8> {
    IFiatToken::transferWithAuthorization_1Call {
        from: authorization.from,
        to: authorization.to,
        value: authorization.value,
        validAfter: authorization.validAfter,
        validBefore: authorization.validBefore,
        nonce: authorization.nonce,
        signature: Bytes::copy_from_slice(signature),
    }
    .abi_encode()
}

#[tokio::test]
async fn smart_wallet_pays_usdc_with_an_eip1271_signature() {
    let devnet = Devnet::start().await.expect("devnet starts");
    let owner = devnet.account(3);
    let stranger = devnet.account(4);
    let payee = devnet.account(5);
    let facilitator = devnet.account(6);

    let wallet = devnet.deploy_smart_wallet(owner.address).await.unwrap();
    let out = devnet
        .call(wallet, ISmartWallet::ownerCall {}.abi_encode())
        .await
        .unwrap();
    assert_eq!(
        ISmartWallet::ownerCall::abi_decode_returns(&out).unwrap(),
        owner.address
    );
    assert_eq!(devnet.usdc_balance(wallet).await.unwrap(), U256::ZERO);

    let minted = U256::from(50_000_000u64); // 50 USDC
    devnet.mint_usdc(wallet, minted).await.unwrap();
    assert_eq!(devnet.usdc_balance(wallet).await.unwrap(), minted);

    let value = U256::from(1_250_000u64);
    let authorization = TransferWithAuthorization {
        from: wallet,
        to: payee.address,
        value,
        validAfter: U256::ZERO,
        validBefore: U256::from(now() + 300),
        nonce: B256::random(),
    };
    let digest = authorization.eip712_signing_hash(&devnet.usdc_domain());
    let good = owner.signer().sign_hash_sync(&digest).unwrap().as_bytes();
    let bad = stranger
        .signer()
        .sign_hash_sync(&digest)
        .unwrap()
        .as_bytes();
    assert!(matches!(good[64], 27 | 28), "alloy gives v 27/28");

    // The wallet's own verdicts.
    assert_eq!(
        is_valid_signature(&devnet, wallet, digest, &good).await,
        EIP1271_MAGIC_VALUE
    );
    let invalid = FixedBytes([0xff; 4]);
    assert_eq!(
        is_valid_signature(&devnet, wallet, digest, &bad).await,
        invalid
    );
    assert_eq!(
        is_valid_signature(&devnet, wallet, B256::random(), &good).await,
        invalid,
        "signature over another hash"
    );
    assert_eq!(
        is_valid_signature(&devnet, wallet, digest, &good[..64]).await,
        invalid,
        "64 bytes"
    );
    let mut wrong_v = good;
    wrong_v[64] -= 27; // v 0/1
    assert_eq!(
        is_valid_signature(&devnet, wallet, digest, &wrong_v).await,
        invalid
    );
    // The malleable twin (s' = n - s, v flipped) recovers the owner too, but is refused.
    let n = U256::from_str_radix(
        "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
        16,
    )
    .unwrap();
    let mut high_s = good;
    let s = U256::from_be_slice(&good[32..64]);
    high_s[32..64].copy_from_slice(&(n - s).to_be_bytes::<32>());
    high_s[64] = if good[64] == 27 { 28 } else { 27 };
    assert_eq!(
        is_valid_signature(&devnet, wallet, digest, &high_s).await,
        invalid
    );

    // USDC refuses the stranger's signature ...
    let err = devnet
        .call(devnet.usdc(), transfer_call(&authorization, &bad))
        .await
        .expect_err("a signature by another key must revert");
    assert!(err.is_revert(), "{err}");
    assert!(
        err.to_string().contains("invalid signature"),
        "unexpected error: {err}"
    );

    // ... and settles the owner's, sent by an unrelated unlocked account.
    let payee_before = devnet.usdc_balance(payee.address).await.unwrap();
    let receipt = devnet
        .transact(
            facilitator.address,
            devnet.usdc(),
            transfer_call(&authorization, &good),
        )
        .await
        .expect("EIP-1271 settlement");
    eprintln!(
        "gas: transferWithAuthorization(bytes) from a SmartWallet used {}",
        receipt.gas_used
    );
    assert_eq!(receipt.logs.len(), 2, "AuthorizationUsed + Transfer");
    assert_eq!(devnet.usdc_balance(wallet).await.unwrap(), minted - value);
    assert_eq!(
        devnet.usdc_balance(payee.address).await.unwrap(),
        payee_before + value
    );
    assert!(
        devnet
            .authorization_state(wallet, authorization.nonce)
            .await
            .unwrap()
    );

    // The owner can still move the rest directly through `execute`.
    let rest = minted - value;
    let transfer = IFiatToken::transferCall {
        to: payee.address,
        value: rest,
    }
    .abi_encode();
    let execute = ISmartWallet::executeCall {
        to: devnet.usdc(),
        value: U256::ZERO,
        data: transfer.clone().into(),
    }
    .abi_encode();
    let err = devnet
        .rpc(
            "eth_call",
            json!([{"from": stranger.address, "to": wallet, "data": Bytes::from(execute.clone())}, "latest"]),
        )
        .await
        .expect_err("execute is owner-only");
    let not_owner = alloy_primitives::hex::encode_prefixed(ISmartWallet::NotOwner::SELECTOR);
    assert!(
        err.is_revert() && err.to_string().contains(&not_owner),
        "expected NotOwner ({not_owner}): {err}"
    );
    assert_eq!(devnet.usdc_balance(wallet).await.unwrap(), rest);
    devnet
        .transact(owner.address, wallet, &execute)
        .await
        .unwrap();
    assert_eq!(devnet.usdc_balance(wallet).await.unwrap(), U256::ZERO);
    assert_eq!(
        devnet.usdc_balance(payee.address).await.unwrap(),
        payee_before + minted
    );
}
