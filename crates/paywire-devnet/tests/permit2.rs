//! The devnet's Permit2 kit works as x402 clients and facilitators expect: the canonical
//! Permit2, our proxies at the canonical addresses (exact moves exactly the permitted amount
//! to the witness; upto moves at most the maximum, only for the named facilitator), and the
//! test tokens (plain and EIP-2612).

use std::time::{SystemTime, UNIX_EPOCH};

use alloy_primitives::{Address, Bytes, U256};
use alloy_signer::SignerSync;
use alloy_sol_types::{Eip712Domain, SolCall, SolStruct, sol};
use paywire_devnet::{
    DevAccount, Devnet, DevnetError, EXACT_PERMIT2_PROXY, INITIAL_TEST_TOKEN_BALANCE,
    PERMIT_TOKEN_NAME, PERMIT_TOKEN_VERSION, PERMIT2, UPTO_PERMIT2_PROXY,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

mod exact {
    alloy_sol_types::sol! {
        struct TokenPermissions { address token; uint256 amount; }
        struct Witness { address to; uint256 validAfter; }
        struct PermitWitnessTransferFrom {
            TokenPermissions permitted; address spender; uint256 nonce; uint256 deadline; Witness witness;
        }
        struct PermitTransferFrom { TokenPermissions permitted; uint256 nonce; uint256 deadline; }
        struct EIP2612Permit { uint256 value; uint256 deadline; bytes32 r; bytes32 s; uint8 v; }
        interface Proxy {
            function settle(PermitTransferFrom permit, address owner, Witness witness, bytes signature);
            function settleWithPermit(EIP2612Permit permit2612, PermitTransferFrom permit, address owner, Witness witness, bytes signature);
            function WITNESS_TYPE_STRING() returns (string);
        }
    }
}

mod upto {
    alloy_sol_types::sol! {
        struct TokenPermissions { address token; uint256 amount; }
        struct Witness { address to; address facilitator; uint256 validAfter; }
        struct PermitWitnessTransferFrom {
            TokenPermissions permitted; address spender; uint256 nonce; uint256 deadline; Witness witness;
        }
        struct PermitTransferFrom { TokenPermissions permitted; uint256 nonce; uint256 deadline; }
        interface Proxy {
            function settle(PermitTransferFrom permit, uint256 amount, address owner, Witness witness, bytes signature);
        }
    }
}

sol! {
    struct Permit { address owner; address spender; uint256 value; uint256 nonce; uint256 deadline; }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn permit2_domain() -> Eip712Domain {
    alloy_sol_types::eip712_domain! { name: "Permit2", chain_id: 31337, verifying_contract: PERMIT2, }
}

fn sign(
    account: &DevAccount,
    hash: alloy_primitives::B256,
) -> Result<Bytes, Box<dyn std::error::Error>> {
    Ok(Bytes::from(
        account.signer().sign_hash_sync(&hash)?.as_bytes().to_vec(),
    ))
}

/// A signed exact-proxy settlement of `amount` of `token` from `payer` to `to`.
fn exact_settle(
    payer: &DevAccount,
    token: Address,
    amount: u64,
    to: Address,
    nonce: u64,
) -> Result<exact::Proxy::settleCall, Box<dyn std::error::Error>> {
    let permitted = exact::TokenPermissions {
        token,
        amount: U256::from(amount),
    };
    let witness = exact::Witness {
        to,
        validAfter: U256::ZERO,
    };
    let deadline = U256::from(now() + 300);
    let message = exact::PermitWitnessTransferFrom {
        permitted: permitted.clone(),
        spender: EXACT_PERMIT2_PROXY,
        nonce: U256::from(nonce),
        deadline,
        witness: witness.clone(),
    };
    let signature = sign(payer, message.eip712_signing_hash(&permit2_domain()))?;
    Ok(exact::Proxy::settleCall {
        permit: exact::PermitTransferFrom {
            permitted,
            nonce: U256::from(nonce),
            deadline,
        },
        owner: payer.address,
        witness,
        signature,
    })
}

#[tokio::test]
async fn exact_proxy_moves_exactly_the_permitted_amount_once() -> TestResult {
    let devnet = Devnet::start().await?;
    let payer = devnet.payer(1);
    let payee = devnet.account(5).address;
    let facilitator = devnet.account(0).address;
    let token = devnet.plain_token();
    assert_eq!(
        devnet.token_balance(token, payer.address).await?,
        U256::from(INITIAL_TEST_TOKEN_BALANCE)
    );
    let type_string = exact::Proxy::WITNESS_TYPE_STRINGCall::abi_decode_returns(
        &devnet
            .call(
                EXACT_PERMIT2_PROXY,
                exact::Proxy::WITNESS_TYPE_STRINGCall {}.abi_encode(),
            )
            .await?,
    )?;
    assert!(type_string.ends_with("Witness(address to,uint256 validAfter)"));

    let call = exact_settle(payer, token, 10_000, payee, 1)?;
    let unapproved = devnet
        .transact(facilitator, EXACT_PERMIT2_PROXY, call.abi_encode())
        .await;
    assert!(
        matches!(unapproved, Err(DevnetError::Reverted { .. })),
        "settled without an approval"
    );

    devnet.approve_permit2(token, payer, U256::MAX).await?;
    assert_eq!(
        devnet.allowance(token, payer.address, PERMIT2).await?,
        U256::MAX
    );
    let receipt = devnet
        .transact(facilitator, EXACT_PERMIT2_PROXY, call.abi_encode())
        .await?;
    assert!(receipt.status);
    assert_eq!(
        devnet.token_balance(token, payee).await?,
        U256::from(INITIAL_TEST_TOKEN_BALANCE + 10_000)
    );

    let replay = devnet
        .transact(facilitator, EXACT_PERMIT2_PROXY, call.abi_encode())
        .await;
    assert!(
        matches!(replay, Err(DevnetError::Reverted { .. })),
        "a used nonce settled twice"
    );

    let mut redirected = exact_settle(payer, token, 10_000, payee, 2)?;
    redirected.witness.to = facilitator;
    let stolen = devnet
        .transact(facilitator, EXACT_PERMIT2_PROXY, redirected.abi_encode())
        .await;
    assert!(
        matches!(stolen, Err(DevnetError::Reverted { .. })),
        "the witness was not enforced"
    );
    assert_eq!(
        devnet.token_balance(token, payee).await?,
        U256::from(INITIAL_TEST_TOKEN_BALANCE + 10_000)
    );
    Ok(())
}

#[tokio::test]
async fn upto_proxy_settles_at_most_the_maximum_for_the_named_facilitator() -> TestResult {
    let devnet = Devnet::start().await?;
    let payer = devnet.payer(2);
    let payee = devnet.account(6).address;
    let facilitator = devnet.account(0).address;
    let stranger = devnet.account(9).address;
    let token = devnet.usdc();
    devnet.approve_permit2(token, payer, U256::MAX).await?;
    let permitted = upto::TokenPermissions {
        token,
        amount: U256::from(20_000u64),
    };
    let witness = upto::Witness {
        to: payee,
        facilitator,
        validAfter: U256::ZERO,
    };
    let deadline = U256::from(now() + 300);
    let message = upto::PermitWitnessTransferFrom {
        permitted: permitted.clone(),
        spender: UPTO_PERMIT2_PROXY,
        nonce: U256::from(7u64),
        deadline,
        witness: witness.clone(),
    };
    let signature = sign(payer, message.eip712_signing_hash(&permit2_domain()))?;
    let settle = |amount: u64| upto::Proxy::settleCall {
        permit: upto::PermitTransferFrom {
            permitted: permitted.clone(),
            nonce: U256::from(7u64),
            deadline,
        },
        amount: U256::from(amount),
        owner: payer.address,
        witness: witness.clone(),
        signature: signature.clone(),
    };
    let over = devnet
        .transact(facilitator, UPTO_PERMIT2_PROXY, settle(20_001).abi_encode())
        .await;
    assert!(
        matches!(over, Err(DevnetError::Reverted { .. })),
        "settled above the maximum"
    );
    let other = devnet
        .transact(stranger, UPTO_PERMIT2_PROXY, settle(1_858).abi_encode())
        .await;
    assert!(
        matches!(other, Err(DevnetError::Reverted { .. })),
        "another caller settled"
    );
    devnet
        .transact(facilitator, UPTO_PERMIT2_PROXY, settle(1_858).abi_encode())
        .await?;
    assert_eq!(
        devnet.usdc_balance(payee).await?,
        U256::from(paywire_devnet::INITIAL_USDC_BALANCE + 1_858)
    );
    let again = devnet
        .transact(facilitator, UPTO_PERMIT2_PROXY, settle(1).abi_encode())
        .await;
    assert!(
        matches!(again, Err(DevnetError::Reverted { .. })),
        "an authorization settled twice"
    );
    Ok(())
}

#[tokio::test]
async fn eip2612_permit_lets_the_exact_proxy_settle_without_an_approval() -> TestResult {
    let devnet = Devnet::start().await?;
    let payer = devnet.payer(3);
    let payee = devnet.account(7).address;
    let facilitator = devnet.account(0).address;
    let token = devnet.permit_token();
    let deadline = U256::from(now() + 300);
    let permit = Permit {
        owner: payer.address,
        spender: PERMIT2,
        value: U256::from(5_000u64),
        nonce: U256::ZERO,
        deadline,
    };
    let domain = alloy_sol_types::eip712_domain! {
        name: PERMIT_TOKEN_NAME,
        version: PERMIT_TOKEN_VERSION,
        chain_id: 31337,
        verifying_contract: token,
    };
    let signature = payer
        .signer()
        .sign_hash_sync(&permit.eip712_signing_hash(&domain))?;
    let settle = exact_settle(payer, token, 5_000, payee, 3)?;
    let call = exact::Proxy::settleWithPermitCall {
        permit2612: exact::EIP2612Permit {
            value: permit.value,
            deadline,
            r: signature.r().into(),
            s: signature.s().into(),
            v: 27 + u8::from(signature.v()),
        },
        permit: settle.permit,
        owner: settle.owner,
        witness: settle.witness,
        signature: settle.signature,
    };
    devnet
        .transact(facilitator, EXACT_PERMIT2_PROXY, call.abi_encode())
        .await?;
    assert_eq!(
        devnet.token_balance(token, payee).await?,
        U256::from(INITIAL_TEST_TOKEN_BALANCE + 5_000)
    );
    assert_eq!(
        devnet.allowance(token, payer.address, PERMIT2).await?,
        U256::ZERO
    );
    Ok(())
}
