//! The hostile EIP-3009 fixture behaves as documented: it checks signatures and nonces
//! like USDC, succeeds, and pays the payee `value - shortfall` (fee-on-transfer), or
//! nothing at all once the shortfall reaches the value.

use std::time::{SystemTime, UNIX_EPOCH};

use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_signer::SignerSync;
use alloy_sol_types::{SolCall, SolEvent, SolStruct, eip712_domain};
use paywire_testkit::{Devnet, IShortchangeToken, TransferWithAuthorization};

const NAME: &str = "Shortchange Dollar";
const VERSION: &str = "1";
const VALUE: u64 = 10_000;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `transferWithAuthorization` (bytes form) of `VALUE` from payer #1 to `to`, signed by
/// `signer_index` under the token's domain.
fn signed_transfer(devnet: &Devnet, token: Address, signer_index: usize, to: Address) -> Vec<u8> {
    let from = devnet.payer(1).address;
    let authorization = TransferWithAuthorization {
        from,
        to,
        value: U256::from(VALUE),
        validAfter: U256::ZERO,
        validBefore: U256::from(now() + 300),
        nonce: B256::random(),
    };
    let domain = eip712_domain! {
        name: NAME,
        version: VERSION,
        chain_id: devnet.chain_id(),
        verifying_contract: token,
    };
    let digest = authorization.eip712_signing_hash(&domain);
    let signature = devnet
        .account(signer_index)
        .signer()
        .sign_hash_sync(&digest)
        .unwrap();
    IShortchangeToken::transferWithAuthorization_1Call {
        from,
        to,
        value: authorization.value,
        validAfter: authorization.validAfter,
        validBefore: authorization.validBefore,
        nonce: authorization.nonce,
        signature: Bytes::from(signature.as_bytes()),
    }
    .abi_encode()
}

/// The `(to, value)` of every `Transfer` the token emitted in `receipt`.
fn transfers(receipt: &paywire_testkit::TxReceipt, token: Address) -> Vec<(Address, U256)> {
    receipt
        .logs
        .iter()
        .filter(|log| {
            log.address == token && log.topics[0] == IShortchangeToken::Transfer::SIGNATURE_HASH
        })
        .map(|log| {
            (
                Address::from_word(log.topics[2]),
                U256::from_be_slice(&log.data),
            )
        })
        .collect()
}

fn authorization_used(receipt: &paywire_testkit::TxReceipt) -> bool {
    receipt
        .logs
        .iter()
        .any(|log| log.topics[0] == IShortchangeToken::AuthorizationUsed::SIGNATURE_HASH)
}

#[tokio::test]
async fn pays_short_or_nothing_while_reporting_success() {
    let devnet = Devnet::start().await.unwrap();
    let token = devnet
        .deploy_shortchange_token(NAME, VERSION, U256::ZERO)
        .await
        .unwrap();
    let name = devnet
        .call(token, IShortchangeToken::nameCall {}.abi_encode())
        .await
        .unwrap();
    assert_eq!(
        IShortchangeToken::nameCall::abi_decode_returns(&name).unwrap(),
        NAME
    );
    let payer = devnet.payer(1).address;
    devnet
        .mint_shortchange_token(token, payer, U256::from(10 * VALUE))
        .await
        .unwrap();
    let relayer = devnet.account(6).address;
    let payee = Address::random();

    // Honest with a zero shortfall: one exact Transfer.
    let receipt = devnet
        .transact(relayer, token, signed_transfer(&devnet, token, 1, payee))
        .await
        .unwrap();
    assert_eq!(transfers(&receipt, token), [(payee, U256::from(VALUE))]);

    // Fee-on-transfer: the payer is charged the value, the payee gets less.
    let owner = devnet.usdc_owner().address;
    let fee = U256::from(3_000);
    let set = IShortchangeToken::setShortfallCall { shortfall: fee };
    devnet
        .transact(owner, token, set.abi_encode())
        .await
        .unwrap();
    let receipt = devnet
        .transact(relayer, token, signed_transfer(&devnet, token, 1, payee))
        .await
        .unwrap();
    assert!(receipt.status && authorization_used(&receipt));
    assert_eq!(
        transfers(&receipt, token),
        [(payee, U256::from(VALUE) - fee), (token, fee)]
    );
    assert_eq!(
        devnet.token_balance(token, payee).await.unwrap(),
        U256::from(2 * VALUE) - fee
    );
    assert_eq!(
        devnet.token_balance(token, payer).await.unwrap(),
        U256::from(8 * VALUE)
    );

    // Shortfall at the value: success, the nonce is used, nothing moves.
    let set = IShortchangeToken::setShortfallCall {
        shortfall: U256::from(VALUE),
    };
    devnet
        .transact(owner, token, set.abi_encode())
        .await
        .unwrap();
    let call = signed_transfer(&devnet, token, 1, payee);
    let receipt = devnet.transact(relayer, token, &call).await.unwrap();
    assert!(receipt.status && authorization_used(&receipt));
    assert!(transfers(&receipt, token).is_empty());
    assert_eq!(
        devnet.token_balance(token, payee).await.unwrap(),
        U256::from(2 * VALUE) - fee
    );

    // Like USDC, it still refuses a used nonce and a stranger's signature.
    devnet
        .call(token, &call)
        .await
        .expect_err("a used nonce reverts");
    devnet
        .call(token, signed_transfer(&devnet, token, 2, payee))
        .await
        .expect_err("a signature by another key reverts");
}
