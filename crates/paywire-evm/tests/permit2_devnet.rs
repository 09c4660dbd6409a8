//! `exact` with the Permit2 transfer method end to end on anvil, with the
//! canonical Permit2 and our `x402ExactPermit2Proxy`: one row per way to
//! fail each verification rule (each fails if its rule is removed), the
//! settlement's truth, replays and concurrent settles.

use alloy_primitives::{Address, U256};
use paywire_core::{ErrorReason, PaymentPayload, PaymentRequirements, SchemeFacilitator};
use paywire_evm::LocalSigner;
use paywire_evm::permit2::{EXACT_PERMIT2_PROXY, Permit2Payload, UPTO_PERMIT2_PROXY};
use paywire_evm::reasons;

#[path = "common/permit2.rs"]
mod kit;

mod common;

use kit::{Kit, now, payee, permit_info, permit_info_by, sign, with_extension, wrap};

const PRICE: u64 = 10_000;

/// How a row spoils an otherwise valid payment.
#[derive(Debug, Clone, Copy)]
enum Spoil {
    AmountPlusOne,
    AmountMinusOne,
    OtherRecipient,
    Expired,
    NotYetValid,
    NoAllowance,
    InsufficientBalance,
    WrongSpender,
    WrongToken,
    OtherSigner,
    Eip3009Requirements,
}

/// Verify refuses with `reason`; settle (which re-verifies) refuses with
/// the same reason and sends nothing.
async fn expect_refused(
    kit: &Kit,
    row: &str,
    payload: &PaymentPayload,
    requirements: &PaymentRequirements,
    reason: &ErrorReason,
) {
    let verified = kit.exact.verify(payload, requirements).await.unwrap();
    assert!(!verified.is_valid, "{row}: verified");
    assert_eq!(
        verified.invalid_reason.as_ref(),
        Some(reason),
        "{row}: {verified:?}"
    );
    let before = kit.sent().await;
    let settled = kit.exact.settle(payload, requirements).await.unwrap();
    assert!(!settled.success, "{row}: settled");
    assert_eq!(
        settled.error_reason.as_ref(),
        Some(reason),
        "{row}: {settled:?}"
    );
    assert_eq!(kit.sent().await, before, "{row}: a transaction was sent");
}

impl Spoil {
    /// The spoiled payment by payer #1 (approved) or #2 (not approved), and
    /// its requirements.
    fn apply(self, kit: &Kit) -> (PaymentPayload, PaymentRequirements) {
        let token = kit.devnet.plain_token();
        let mut requirements = kit.requirements("exact", token, payee(), PRICE);
        let payer = match self {
            Self::NoAllowance => 2,
            _ => 1,
        };
        let key = kit.payer(payer);
        let mut auth = kit.authorization(&requirements, key.address());
        match self {
            Self::AmountPlusOne => auth.permitted.amount = (PRICE + 1).into(),
            Self::AmountMinusOne => auth.permitted.amount = (PRICE - 1).into(),
            Self::OtherRecipient => auth.witness.to = Address::repeat_byte(0x77),
            Self::Expired => auth.deadline = (now() + 2).into(),
            Self::NotYetValid => auth.witness.valid_after = (now() + 120).into(),
            Self::WrongSpender => auth.spender = UPTO_PERMIT2_PROXY,
            Self::WrongToken => auth.permitted.token = kit.devnet.permit_token(),
            Self::InsufficientBalance => {
                // Far more than the payer holds, with the allowance in place.
                let amount = 10u64.pow(15);
                requirements.amount = amount.into();
                auth.permitted.amount = amount.into();
            }
            Self::NoAllowance | Self::OtherSigner | Self::Eip3009Requirements => {}
        }
        let signer = match self {
            Self::OtherSigner => LocalSigner::random(),
            _ => key,
        };
        let payload = sign(&signer, auth);
        if let Self::Eip3009Requirements = self {
            requirements.extra = None;
        }
        (wrap(&payload, &requirements), requirements)
    }
}

#[tokio::test]
async fn verification_refusals_table() {
    let kit = Kit::start().await;
    kit.approve(kit.devnet.plain_token(), 1).await;
    let rows = [
        (
            "amount + 1",
            Spoil::AmountPlusOne,
            reasons::PERMIT2_AMOUNT_MISMATCH,
        ),
        (
            "amount - 1",
            Spoil::AmountMinusOne,
            reasons::PERMIT2_AMOUNT_MISMATCH,
        ),
        (
            "witness.to is not payTo",
            Spoil::OtherRecipient,
            reasons::PERMIT2_RECIPIENT_MISMATCH,
        ),
        (
            "deadline inside the buffer",
            Spoil::Expired,
            reasons::PERMIT2_DEADLINE_EXPIRED,
        ),
        (
            "validAfter in the future",
            Spoil::NotYetValid,
            reasons::PERMIT2_NOT_YET_VALID,
        ),
        (
            "no allowance to Permit2",
            Spoil::NoAllowance,
            reasons::PERMIT2_ALLOWANCE,
        ),
        (
            "balance too low",
            Spoil::InsufficientBalance,
            reasons::PERMIT2_INSUFFICIENT_BALANCE,
        ),
        (
            "spender is the upto proxy",
            Spoil::WrongSpender,
            reasons::PERMIT2_INVALID_SPENDER,
        ),
        (
            "permitted token is not the asset",
            Spoil::WrongToken,
            reasons::PERMIT2_TOKEN_MISMATCH,
        ),
        (
            "signed by another key",
            Spoil::OtherSigner,
            reasons::PERMIT2_INVALID_SIGNATURE,
        ),
        (
            "Permit2 payload, EIP-3009 requirements",
            Spoil::Eip3009Requirements,
            ErrorReason::INVALID_PAYLOAD,
        ),
    ];
    for (row, spoil, reason) in rows {
        let (payload, requirements) = spoil.apply(&kit);
        expect_refused(&kit, row, &payload, &requirements, &reason).await;
    }
}

/// Without the proxy's code there is nothing to call: refused before any
/// simulation, nothing sent.
#[tokio::test]
async fn a_missing_proxy_is_refused() {
    let kit = Kit::start().await;
    let token = kit.devnet.plain_token();
    kit.approve(token, 1).await;
    kit.devnet
        .rpc(
            "anvil_setCode",
            serde_json::json!([EXACT_PERMIT2_PROXY, "0x"]),
        )
        .await
        .unwrap();
    let requirements = kit.requirements("exact", token, payee(), PRICE);
    let key = kit.payer(1);
    let payload = sign(&key, kit.authorization(&requirements, key.address()));
    let reason = reasons::PERMIT2_PROXY_NOT_DEPLOYED;
    expect_refused(
        &kit,
        "no proxy",
        &wrap(&payload, &requirements),
        &requirements,
        &reason,
    )
    .await;
}

fn signed_payment(
    kit: &Kit,
    payer: usize,
    requirements: &PaymentRequirements,
) -> (Permit2Payload, PaymentPayload) {
    let key = kit.payer(payer);
    let payload = sign(&key, kit.authorization(requirements, key.address()));
    let wrapped = wrap(&payload, requirements);
    (payload, wrapped)
}

#[tokio::test]
async fn settlement_moves_exactly_the_amount_and_replays_are_refused() {
    let kit = Kit::start().await;
    let token = kit.devnet.plain_token();
    kit.approve(token, 1).await;
    let requirements = kit.requirements("exact", token, payee(), PRICE);
    let (_, payment) = signed_payment(&kit, 1, &requirements);
    let payer = kit.devnet.payer(1).address;
    let (payer_before, payee_before) = (
        kit.balance(token, payer).await,
        kit.balance(token, payee()).await,
    );

    let verified = kit.exact.verify(&payment, &requirements).await.unwrap();
    assert!(verified.is_valid, "{verified:?}");
    let settled = kit.exact.settle(&payment, &requirements).await.unwrap();
    assert!(settled.success, "{settled:?}");
    assert_eq!(settled.amount, Some(PRICE.into()));
    assert_eq!(settled.payer.as_deref(), Some(payer.to_string().as_str()));
    assert_eq!(
        kit.balance(token, payer).await,
        payer_before - U256::from(PRICE)
    );
    assert_eq!(
        kit.balance(token, payee()).await,
        payee_before + U256::from(PRICE)
    );
    assert_eq!(kit.sent().await, 1);

    // The settled nonce: verify refuses it; settling it again reports the
    // same transaction truthfully (as EIP-3009 does; the facilitator's
    // ledger answers replays) and broadcasts nothing.
    let verified = kit.exact.verify(&payment, &requirements).await.unwrap();
    assert_eq!(verified.invalid_reason, Some(reasons::NONCE_USED));
    let again = kit.exact.settle(&payment, &requirements).await.unwrap();
    assert!(again.success, "{again:?}");
    assert_eq!(again.transaction, settled.transaction);
    assert_eq!(kit.sent().await, 1);
    assert_eq!(
        kit.balance(token, payee()).await,
        payee_before + U256::from(PRICE),
        "paid once"
    );
    assert_eq!(kit.exact.replay_reason(), reasons::NONCE_USED);
}

#[tokio::test]
async fn parallel_settles_of_one_authorization_send_one_transaction() {
    let kit = Kit::start_with(2, |_| {}).await;
    let token = kit.devnet.plain_token();
    kit.approve(token, 1).await;
    let requirements = kit.requirements("exact", token, payee(), PRICE);
    let (_, payment) = signed_payment(&kit, 1, &requirements);
    let before = kit.balance(token, payee()).await;
    let (a, b) = tokio::join!(
        kit.exact.settle(&payment, &requirements),
        kit.exact.settle(&payment, &requirements)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    // The second finds the nonce used by the first's transaction and
    // reports it (as EIP-3009 does).
    assert!(a.success && b.success, "{a:?} {b:?}");
    assert_eq!(a.transaction, b.transaction);
    assert_eq!(kit.sent().await, 1, "one transaction");
    assert_eq!(
        kit.balance(token, payee()).await,
        before + U256::from(PRICE)
    );
}

/// Permit2 nonces belong to the owner across tokens: the spend key ignores
/// the token, and a used nonce is refused on another token too.
#[tokio::test]
async fn the_nonce_is_spent_across_tokens() {
    let kit = Kit::start().await;
    let (plain, permit) = (kit.devnet.plain_token(), kit.devnet.permit_token());
    kit.approve(plain, 1).await;
    kit.approve(permit, 1).await;
    let key = kit.payer(1);
    let first = kit.requirements("exact", plain, payee(), PRICE);
    let auth = kit.authorization(&first, key.address());
    let mut other = auth.clone();
    other.permitted.token = permit;
    let second = kit.requirements("exact", permit, payee(), PRICE);
    let (one, two) = (
        wrap(&sign(&key, auth), &first),
        wrap(&sign(&key, other), &second),
    );
    assert_eq!(
        kit.exact.spend_key(&one, &first),
        kit.exact.spend_key(&two, &second)
    );
    assert!(kit.exact.settle(&one, &first).await.unwrap().success);
    expect_refused(
        &kit,
        "same nonce, other token",
        &two,
        &second,
        &reasons::NONCE_USED,
    )
    .await;
}

/// After a crash the chain tells what happened without anything being
/// sent: the recorded transaction proves the payment.
#[tokio::test]
async fn lookup_finds_the_settlement_and_sends_nothing() {
    let kit = Kit::start().await;
    let token = kit.devnet.plain_token();
    kit.approve(token, 1).await;
    let requirements = kit.requirements("exact", token, payee(), PRICE);
    let (_, payment) = signed_payment(&kit, 1, &requirements);
    let open = kit
        .exact
        .lookup_settlement(&payment, &requirements, None)
        .await
        .unwrap();
    assert_eq!(open, Some(paywire_core::SettlementLookup::Open));
    let settled = kit.exact.settle(&payment, &requirements).await.unwrap();
    let sent = kit.sent().await;
    let found = kit
        .exact
        .lookup_settlement(&payment, &requirements, Some(&settled.transaction))
        .await
        .unwrap();
    match found {
        Some(paywire_core::SettlementLookup::Settled(response)) => {
            assert_eq!(response.transaction, settled.transaction);
            assert_eq!(response.amount, Some(PRICE.into()));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(kit.sent().await, sent);
    // Without the transaction, the chain's logs find it.
    match kit
        .exact
        .lookup_settlement(&payment, &requirements, None)
        .await
        .unwrap()
    {
        Some(paywire_core::SettlementLookup::Settled(response)) => {
            assert_eq!(response.transaction, settled.transaction);
        }
        other => panic!("{other:?}"),
    }
    // An unsettled payment whose deadline the chain passed can never land.
    let mut auth = kit.authorization(&requirements, kit.devnet.payer(1).address);
    auth.deadline = (now() + 30).into();
    let expiring = wrap(&sign(&kit.payer(1), auth), &requirements);
    kit.devnet.increase_time(120).await.unwrap();
    match kit
        .exact
        .lookup_settlement(&expiring, &requirements, None)
        .await
        .unwrap()
    {
        Some(paywire_core::SettlementLookup::Unsettleable(failed)) => {
            assert_eq!(failed.error_reason, Some(reasons::PERMIT2_DEADLINE_EXPIRED));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(kit.sent().await, sent);
}

/// Per-payer limits key on a payer proven offline: the Permit2 signature
/// must recover to `from`.
#[tokio::test]
async fn the_payer_is_authenticated_by_its_signature() {
    let kit = Kit::start().await;
    let requirements = kit.requirements("exact", kit.devnet.plain_token(), payee(), PRICE);
    let (_, payment) = signed_payment(&kit, 1, &requirements);
    let payer = kit.devnet.payer(1).address.to_string().to_ascii_lowercase();
    assert_eq!(
        kit.exact.authenticated_payer(&payment, &requirements),
        Some(payer)
    );
    let mut auth = kit.authorization(&requirements, kit.devnet.payer(1).address);
    auth.witness.valid_after = 1u64.into();
    let forged = wrap(&sign(&LocalSigner::random(), auth), &requirements);
    assert_eq!(kit.exact.authenticated_payer(&forged, &requirements), None);
}

#[tokio::test]
async fn eip2612_sponsoring_settles_without_a_prior_approval() {
    let kit = Kit::start_with(1, |chain| chain.eip2612_gas_sponsoring = true).await;
    let token = kit.devnet.permit_token();
    let key = kit.payer(3);
    let requirements = kit.requirements("exact", token, payee(), PRICE);
    let plain = wrap(
        &sign(&key, kit.authorization(&requirements, key.address())),
        &requirements,
    );
    let payment = with_extension(
        plain,
        "eip2612GasSponsoring",
        permit_info(&kit, &key, now() + 300).await,
    );
    assert_eq!(
        kit.devnet
            .allowance(token, key.address(), kit::PERMIT2)
            .await
            .unwrap(),
        U256::ZERO
    );
    let verified = kit.exact.verify(&payment, &requirements).await.unwrap();
    assert!(verified.is_valid, "{verified:?}");
    let before = kit.balance(token, payee()).await;
    let settled = kit.exact.settle(&payment, &requirements).await.unwrap();
    assert!(settled.success, "{settled:?}");
    assert_eq!(
        kit.balance(token, payee()).await,
        before + U256::from(PRICE)
    );
    // Permit2 spent PRICE out of the unlimited allowance the permit set.
    assert!(
        kit.devnet
            .allowance(token, key.address(), kit::PERMIT2)
            .await
            .unwrap()
            > U256::from(PRICE)
    );

    // A permit signed by someone else is refused, nothing sent.
    let other = kit.payer(4);
    let requirements = kit.requirements("exact", token, payee(), PRICE);
    let plain = wrap(
        &sign(&other, kit.authorization(&requirements, other.address())),
        &requirements,
    );
    let forged = with_extension(
        plain,
        "eip2612GasSponsoring",
        permit_info(&kit, &key, now() + 300).await,
    );
    expect_refused(
        &kit,
        "permit from another owner",
        &forged,
        &requirements,
        &reasons::EIP2612_FROM_MISMATCH,
    )
    .await;
}

#[tokio::test]
async fn sponsoring_is_ignored_unless_configured() {
    let kit = Kit::start().await;
    let token = kit.devnet.permit_token();
    let key = kit.payer(3);
    let requirements = kit.requirements("exact", token, payee(), PRICE);
    let plain = wrap(
        &sign(&key, kit.authorization(&requirements, key.address())),
        &requirements,
    );
    let payment = with_extension(
        plain,
        "eip2612GasSponsoring",
        permit_info(&kit, &key, now() + 300).await,
    );
    expect_refused(
        &kit,
        "sponsoring off",
        &payment,
        &requirements,
        &reasons::PERMIT2_ALLOWANCE,
    )
    .await;
}

/// The payer's own signed `approve(Permit2, MAX)` on `token`.
fn signed_approval(
    key: &LocalSigner,
    token: Address,
    nonce: u64,
    gas_limit: u64,
) -> alloy_primitives::Bytes {
    ApprovalTx::new(token, nonce, gas_limit).sign(key)
}

/// An approval transaction, to spoil field by field.
#[derive(Clone)]
struct ApprovalTx {
    chain_id: u64,
    to: Address,
    spender: Address,
    amount: U256,
    nonce: u64,
    gas_limit: u64,
    max_fee_per_gas: u128,
    /// The EIP-2718 type: 2 (EIP-1559), 1 (EIP-2930) or 0 (legacy).
    kind: u8,
}

impl ApprovalTx {
    fn new(token: Address, nonce: u64, gas_limit: u64) -> Self {
        Self {
            chain_id: 31337,
            to: token,
            spender: kit::PERMIT2,
            amount: U256::MAX,
            nonce,
            gas_limit,
            // Within twice anvil's gas price (at least 1 gwei) plus a tip.
            max_fee_per_gas: 2_000_000_000,
            kind: 2,
        }
    }

    fn sign(&self, key: &LocalSigner) -> alloy_primitives::Bytes {
        use alloy_consensus::{SignableTransaction, TxEip2930, TxLegacy};
        use alloy_sol_types::SolCall;
        let input = paywire_evm::contracts::IErc20::approveCall {
            spender: self.spender,
            amount: self.amount,
        }
        .abi_encode();
        let to = alloy_primitives::TxKind::Call(self.to);
        match self.kind {
            0 => {
                let tx = TxLegacy {
                    chain_id: Some(self.chain_id),
                    nonce: self.nonce,
                    gas_price: self.max_fee_per_gas,
                    gas_limit: self.gas_limit,
                    to,
                    value: U256::ZERO,
                    input: input.into(),
                };
                let signature = key.sign_hash_sync(&tx.signature_hash()).unwrap();
                encode(tx.into_signed(signature))
            }
            1 => {
                let tx = TxEip2930 {
                    chain_id: self.chain_id,
                    nonce: self.nonce,
                    gas_price: self.max_fee_per_gas,
                    gas_limit: self.gas_limit,
                    to,
                    value: U256::ZERO,
                    access_list: Default::default(),
                    input: input.into(),
                };
                let signature = key.sign_hash_sync(&tx.signature_hash()).unwrap();
                encode(tx.into_signed(signature))
            }
            _ => signed_call(
                key,
                (self.chain_id, self.nonce),
                self.to,
                input,
                (self.gas_limit, self.max_fee_per_gas),
            ),
        }
    }
}

fn encode<T>(signed: alloy_consensus::Signed<T>) -> alloy_primitives::Bytes
where
    alloy_consensus::TxEnvelope: From<alloy_consensus::Signed<T>>,
{
    use alloy_eips::eip2718::Encodable2718;
    alloy_consensus::TxEnvelope::from(signed)
        .encoded_2718()
        .into()
}

/// `key`'s EIP-1559 transaction calling `to` with `input`.
fn signed_call(
    key: &LocalSigner,
    (chain_id, nonce): (u64, u64),
    to: Address,
    input: Vec<u8>,
    (gas_limit, max_fee_per_gas): (u64, u128),
) -> alloy_primitives::Bytes {
    use alloy_consensus::{SignableTransaction, TxEip1559};
    let tx = TxEip1559 {
        chain_id,
        nonce,
        gas_limit,
        max_fee_per_gas,
        max_priority_fee_per_gas: 1_000_000_000,
        to: alloy_primitives::TxKind::Call(to),
        value: U256::ZERO,
        access_list: Default::default(),
        input: input.into(),
    };
    let signature = key.sign_hash_sync(&tx.signature_hash()).unwrap();
    encode(tx.into_signed(signature))
}

fn approval_info(
    key: &LocalSigner,
    token: Address,
    raw: &alloy_primitives::Bytes,
) -> serde_json::Value {
    serde_json::json!({
        "from": key.address().to_string(),
        "asset": token.to_string(),
        "spender": kit::PERMIT2.to_string(),
        "amount": U256::MAX.to_string(),
        "signedTransaction": raw.to_string(),
        "version": "1",
    })
}

#[tokio::test]
async fn erc20_approval_sponsoring_funds_approves_and_settles() {
    let kit = Kit::start_with(1, |chain| chain.erc20_approval_gas_sponsoring = true).await;
    let token = kit.devnet.plain_token();
    let key = LocalSigner::random();
    kit.devnet
        .mint_token(token, key.address(), U256::from(1_000_000))
        .await
        .unwrap();
    assert_eq!(
        kit.devnet.eth_balance(key.address()).await.unwrap(),
        U256::ZERO
    );
    let requirements = kit.requirements("exact", token, payee(), PRICE);
    let plain = wrap(
        &sign(&key, kit.authorization(&requirements, key.address())),
        &requirements,
    );

    // Over the gas cap: refused, nothing sent.
    let greedy = signed_approval(&key, token, 0, 200_000);
    let refused = with_extension(
        plain.clone(),
        "erc20ApprovalGasSponsoring",
        approval_info(&key, token, &greedy),
    );
    expect_refused(
        &kit,
        "approval gas above the cap",
        &refused,
        &requirements,
        &reasons::ERC20_APPROVAL_FAILED,
    )
    .await;

    // A fee far above the network's price (within the funding cap): the
    // payer would choose what the facilitator pays it.
    let mut pricey = ApprovalTx::new(token, 0, 60_000);
    pricey.max_fee_per_gas = 15_000_000_000;
    let refused = with_extension(
        plain.clone(),
        "erc20ApprovalGasSponsoring",
        approval_info(&key, token, &pricey.sign(&key)),
    );
    expect_refused(
        &kit,
        "approval fee above the network's price",
        &refused,
        &requirements,
        &reasons::ERC20_APPROVAL_FAILED,
    )
    .await;

    let raw = signed_approval(&key, token, 0, 60_000);
    let payment = with_extension(
        plain,
        "erc20ApprovalGasSponsoring",
        approval_info(&key, token, &raw),
    );
    let verified = kit.exact.verify(&payment, &requirements).await.unwrap();
    assert!(verified.is_valid, "{verified:?}");
    let settled = kit.exact.settle(&payment, &requirements).await.unwrap();
    assert!(settled.success, "{settled:?}");
    assert_eq!(
        kit.balance(token, key.address()).await,
        U256::from(1_000_000 - PRICE)
    );
    assert!(
        kit.devnet
            .allowance(token, key.address(), kit::PERMIT2)
            .await
            .unwrap()
            > U256::ZERO
    );
    // Funding, then the settlement.
    assert_eq!(kit.sent().await, 2);
    assert_eq!(kit.sent_by(key.address()).await, 1);
    // Unlimited: the next payment needs no sponsoring.
    assert_eq!(
        kit.devnet
            .allowance(token, key.address(), kit::PERMIT2)
            .await
            .unwrap(),
        U256::MAX
    );
}

/// The payer queues a transfer of all its tokens right behind its
/// approval: once the approval lands the settlement would fail, so it is
/// simulated again and not sent.
#[tokio::test]
async fn a_settlement_failing_after_the_sponsored_approval_is_not_sent() {
    let kit = Kit::start_with(1, |chain| chain.erc20_approval_gas_sponsoring = true).await;
    let token = kit.devnet.plain_token();
    let key = LocalSigner::random();
    let held = U256::from(1_000_000);
    kit.devnet
        .mint_token(token, key.address(), held)
        .await
        .unwrap();
    // Gas of its own: no funding, so only a settlement could be sent.
    kit.devnet
        .set_eth_balance(key.address(), U256::from(10u128.pow(18)))
        .await
        .unwrap();
    let requirements = kit.requirements("exact", token, payee(), PRICE);
    let payment = with_extension(
        wrap(
            &sign(&key, kit.authorization(&requirements, key.address())),
            &requirements,
        ),
        "erc20ApprovalGasSponsoring",
        approval_info(&key, token, &signed_approval(&key, token, 0, 60_000)),
    );
    let verified = kit.exact.verify(&payment, &requirements).await.unwrap();
    assert!(verified.is_valid, "{verified:?}");
    // Nonce 1 waits in the pool for the approval (nonce 0).
    let drain = {
        use alloy_sol_types::SolCall;
        alloy_sol_types::sol! {
            function transfer(address to, uint256 amount) external returns (bool);
        }
        transferCall {
            to: Address::repeat_byte(0x99),
            amount: held,
        }
        .abi_encode()
    };
    let drain = signed_call(&key, (31337, 1), token, drain, (100_000, 2_000_000_000));
    kit.devnet
        .rpc("eth_sendRawTransaction", serde_json::json!([drain]))
        .await
        .unwrap();
    let settled = kit.exact.settle(&payment, &requirements).await.unwrap();
    assert!(!settled.success, "{settled:?}");
    assert_eq!(
        settled.error_reason,
        Some(reasons::PERMIT2_INSUFFICIENT_BALANCE),
        "{settled:?}"
    );
    assert_eq!(kit.sent().await, 0, "a settlement was sent");
    // The approval itself stays.
    assert_eq!(
        kit.devnet
            .allowance(token, key.address(), kit::PERMIT2)
            .await
            .unwrap(),
        U256::MAX
    );
}

/// One row per EIP-2612 sponsoring rule: refused with its reason at
/// verify and settle, nothing sent.
#[tokio::test]
async fn eip2612_sponsoring_refusals() {
    let kit = Kit::start_with(1, |chain| chain.eip2612_gas_sponsoring = true).await;
    let token = kit.devnet.permit_token();
    let key = kit.payer(3);
    let requirements = kit.requirements("exact", token, payee(), PRICE);
    let plain = wrap(
        &sign(&key, kit.authorization(&requirements, key.address())),
        &requirements,
    );
    let valid = permit_info(&kit, &key, now() + 300).await;
    let with = |field: &str, value: serde_json::Value| {
        let mut info = valid.clone();
        info[field] = value;
        info
    };
    let rows = [
        (
            "permit for another token",
            with("asset", kit.devnet.plain_token().to_string().into()),
            reasons::EIP2612_ASSET_MISMATCH,
        ),
        (
            "permit for another spender",
            with("spender", EXACT_PERMIT2_PROXY.to_string().into()),
            reasons::EIP2612_SPENDER_NOT_PERMIT2,
        ),
        (
            "permit below the payment",
            with("amount", (PRICE - 1).to_string().into()),
            reasons::EIP2612_AMOUNT_MISMATCH,
        ),
        (
            "permit expiring within the buffer",
            with("deadline", (now() + 2).to_string().into()),
            reasons::EIP2612_DEADLINE_EXPIRED,
        ),
        (
            "permit signature not 65 bytes",
            with("signature", "0x1234".into()),
            reasons::EIP2612_INVALID_FORMAT,
        ),
        (
            "permit info missing a field",
            with("from", serde_json::Value::Null),
            reasons::EIP2612_INVALID_FORMAT,
        ),
        (
            "permit signed by another key",
            permit_info_by(&kit, &kit.payer(4), key.address(), U256::ZERO, now() + 300),
            reasons::PERMIT2_INVALID_SIGNATURE,
        ),
        (
            "permit with a nonce the token has not reached",
            permit_info_by(&kit, &key, key.address(), U256::from(1), now() + 300),
            reasons::PERMIT2_SIMULATION_FAILED,
        ),
    ];
    for (row, info, reason) in rows {
        let payment = with_extension(plain.clone(), "eip2612GasSponsoring", info);
        expect_refused(&kit, row, &payment, &requirements, &reason).await;
    }
    assert_eq!(
        kit.devnet
            .allowance(token, key.address(), kit::PERMIT2)
            .await
            .unwrap(),
        U256::ZERO
    );
}

/// One row per sponsored-approval rule: refused with its reason at verify
/// and settle; nothing sent, no funding.
#[tokio::test]
async fn erc20_approval_sponsoring_refusals() {
    let kit = Kit::start_with(1, |chain| {
        chain.erc20_approval_gas_sponsoring = true;
        chain.max_approval_funding_wei = 100_000_000_000_000;
    })
    .await;
    let token = kit.devnet.plain_token();
    let key = LocalSigner::random();
    kit.devnet
        .mint_token(token, key.address(), U256::from(1_000_000))
        .await
        .unwrap();
    let requirements = kit.requirements("exact", token, payee(), PRICE);
    let plain = wrap(
        &sign(&key, kit.authorization(&requirements, key.address())),
        &requirements,
    );
    // 60k gas at 1 gwei: 6e13 wei, within the 1e14 funding cap.
    let mut valid = ApprovalTx::new(token, 0, 60_000);
    valid.max_fee_per_gas = 1_000_000_000;
    let spoiled = |change: &dyn Fn(&mut ApprovalTx)| {
        let mut tx = valid.clone();
        change(&mut tx);
        approval_info(&key, token, &tx.sign(&key))
    };
    let rows: Vec<(&str, serde_json::Value, ErrorReason)> = vec![
        (
            "signed by another key",
            approval_info(&key, token, &valid.sign(&LocalSigner::random())),
            reasons::ERC20_APPROVAL_SIGNER_MISMATCH,
        ),
        (
            "calls another contract",
            spoiled(&|tx| tx.to = kit.devnet.usdc()),
            reasons::ERC20_APPROVAL_WRONG_TARGET,
        ),
        (
            "approves another spender",
            spoiled(&|tx| tx.spender = payee()),
            reasons::ERC20_APPROVAL_INVALID_CALLDATA,
        ),
        (
            "approves less than the payment",
            spoiled(&|tx| tx.amount = U256::from(PRICE - 1)),
            reasons::ERC20_APPROVAL_INVALID_CALLDATA,
        ),
        (
            "approves a bounded amount covering the payment",
            {
                let bounded = U256::from(1_000_000);
                let mut info = spoiled(&|tx| tx.amount = bounded);
                info["amount"] = bounded.to_string().into();
                info
            },
            reasons::ERC20_APPROVAL_INVALID_CALLDATA,
        ),
        (
            "an EIP-2930 transaction",
            spoiled(&|tx| tx.kind = 1),
            reasons::ERC20_APPROVAL_FAILED,
        ),
        (
            "signed for another chain",
            spoiled(&|tx| tx.chain_id = 1),
            reasons::ERC20_APPROVAL_FAILED,
        ),
        (
            "not the payer's next nonce",
            spoiled(&|tx| tx.nonce = 5),
            reasons::ERC20_APPROVAL_FAILED,
        ),
        (
            "funding above the cap",
            // 90k gas at 2 gwei (a fee the network accepts): 1.8e14 wei.
            spoiled(&|tx| {
                tx.max_fee_per_gas = 2_000_000_000;
                tx.gas_limit = 90_000;
            }),
            reasons::ERC20_APPROVAL_FAILED,
        ),
        (
            "info names another payer",
            {
                let mut info = approval_info(&key, token, &valid.sign(&key));
                info["from"] = payee().to_string().into();
                info
            },
            reasons::ERC20_APPROVAL_FROM_MISMATCH,
        ),
        (
            "info names another token",
            approval_info(&key, kit.devnet.usdc(), &valid.sign(&key)),
            reasons::ERC20_APPROVAL_ASSET_MISMATCH,
        ),
        (
            "not a transaction",
            approval_info(
                &key,
                token,
                &alloy_primitives::Bytes::from(vec![0x02, 0xff]),
            ),
            reasons::ERC20_APPROVAL_PARSE_FAILED,
        ),
    ];
    for (row, info, reason) in rows {
        let payment = with_extension(plain.clone(), "erc20ApprovalGasSponsoring", info);
        expect_refused(&kit, row, &payment, &requirements, &reason).await;
    }
    assert_eq!(
        kit.devnet.eth_balance(key.address()).await.unwrap(),
        U256::ZERO
    );
    // The valid one goes through.
    let payment = with_extension(
        plain,
        "erc20ApprovalGasSponsoring",
        approval_info(&key, token, &valid.sign(&key)),
    );
    let verified = kit.exact.verify(&payment, &requirements).await.unwrap();
    assert!(verified.is_valid, "{verified:?}");
    // So does a legacy one.
    let payment = with_extension(
        payment,
        "erc20ApprovalGasSponsoring",
        spoiled(&|tx| tx.kind = 0),
    );
    let verified = kit.exact.verify(&payment, &requirements).await.unwrap();
    assert!(verified.is_valid, "{verified:?}");
}

/// A settlement that runs again while its transaction is still unmined
/// waits for that transaction (answering `pending` with it) and never signs
/// a second one; once mined, the re-run reports it.
#[tokio::test]
async fn a_rerun_waits_for_the_transaction_under_way() {
    let kit = Kit::start_tuned(
        1,
        |_| {},
        |builder| builder.receipt_timeout(std::time::Duration::from_millis(300)),
    )
    .await;
    let token = kit.devnet.plain_token();
    kit.approve(token, 1).await;
    let requirements = kit.requirements("exact", token, payee(), PRICE);
    let (_, payment) = signed_payment(&kit, 1, &requirements);
    for (method, params) in [
        ("evm_setAutomine", serde_json::json!([false])),
        ("evm_setIntervalMining", serde_json::json!([0])),
    ] {
        kit.devnet.rpc(method, params).await.unwrap();
    }
    let first = kit.exact.settle(&payment, &requirements).await.unwrap();
    assert_eq!(
        first.error_reason,
        Some(ErrorReason::TRANSACTION_PENDING),
        "{first:?}"
    );
    let again = kit.exact.settle(&payment, &requirements).await.unwrap();
    assert_eq!(
        again.error_reason,
        Some(ErrorReason::TRANSACTION_PENDING),
        "{again:?}"
    );
    assert_eq!(again.transaction, first.transaction, "the same transaction");
    let pending: U256 = serde_json::from_value(
        kit.devnet
            .rpc(
                "eth_getTransactionCount",
                serde_json::json!([kit.signers[0], "pending"]),
            )
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(pending, U256::from(1), "one transaction signed");
    kit.devnet.mine().await.unwrap();
    let settled = kit.exact.settle(&payment, &requirements).await.unwrap();
    assert!(settled.success, "{settled:?}");
    assert_eq!(settled.transaction, first.transaction);
    assert_eq!(kit.balance(token, payee()).await, U256::from(PRICE));
}

/// A payer whose balance covers one payment signs two (distinct nonces)
/// and both are settled at once, on a node whose `pending` reads show
/// nothing of the pool (so each passes its own balance read and
/// simulation): the facilitator counts the first transfer in flight and
/// refuses the second before sending it, rather than broadcasting a
/// transaction that reverts at its expense.
#[tokio::test]
async fn one_balance_pays_for_one_permit2_transfer_in_flight() {
    let devnet = paywire_testkit::Devnet::start().await.unwrap();
    let proxy = common::RpcProxy::start(devnet.rpc_url()).await;
    proxy.set_rule(common::without_pending_state);
    let kit = Kit::on(
        devnet,
        proxy.url(),
        1,
        |_| {},
        |builder| builder.receipt_timeout(std::time::Duration::from_millis(300)),
    )
    .await;
    let token = kit.devnet.plain_token();
    kit.approve(token, 1).await;
    let payer = kit.devnet.payer(1).address;
    // The price is the payer's whole balance: it pays for one payment.
    let price = kit.balance(token, payer).await.to::<u64>();
    let requirements = kit.requirements("exact", token, payee(), price);
    let (first, _) = signed_payment(&kit, 1, &requirements);
    let (second, _) = signed_payment(&kit, 1, &requirements);
    assert_ne!(
        first.permit2_authorization.nonce,
        second.permit2_authorization.nonce
    );
    let (first, second) = (wrap(&first, &requirements), wrap(&second, &requirements));
    for (method, params) in [
        ("evm_setAutomine", serde_json::json!([false])),
        ("evm_setIntervalMining", serde_json::json!([0])),
    ] {
        kit.devnet.rpc(method, params).await.unwrap();
    }
    let (a, b) = tokio::join!(
        kit.exact.settle(&first, &requirements),
        kit.exact.settle(&second, &requirements)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let pending = Some(ErrorReason::TRANSACTION_PENDING);
    let (sent, refused) = if a.error_reason == pending {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(sent.error_reason, pending, "{sent:?}");
    assert_eq!(
        refused.error_reason,
        Some(reasons::PERMIT2_INSUFFICIENT_BALANCE),
        "{refused:?}"
    );
    assert!(refused.transaction.is_empty());
    let signed: U256 = serde_json::from_value(
        kit.devnet
            .rpc(
                "eth_getTransactionCount",
                serde_json::json!([kit.signers[0], "pending"]),
            )
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(signed, U256::from(1), "one transaction signed");
    kit.devnet.mine().await.unwrap();
    assert_eq!(kit.balance(token, payee()).await, U256::from(price));
    assert_eq!(kit.balance(token, payer).await, U256::ZERO);
}

/// EIP-3009 and Permit2 transfers of one token count against one balance:
/// with an EIP-3009 payment of the payer's whole USDC in flight, a Permit2
/// payment of that USDC is refused unsent, and the other way round.
#[tokio::test]
async fn eip3009_and_permit2_transfers_in_flight_share_the_balance() {
    let devnet = paywire_testkit::Devnet::start().await.unwrap();
    let proxy = common::RpcProxy::start(devnet.rpc_url()).await;
    proxy.set_rule(common::without_pending_state);
    let kit = Kit::on(
        devnet,
        proxy.url(),
        1,
        |_| {},
        |builder| builder.receipt_timeout(std::time::Duration::from_millis(300)),
    )
    .await;
    let usdc = kit.devnet.usdc();
    kit.approve(usdc, 1).await;
    let payer = kit.devnet.payer(1).address;
    let price = kit.balance(usdc, payer).await.to::<u64>();
    let permit2 = kit.requirements("exact", usdc, payee(), price);
    let mut eip3009 = permit2.clone();
    let mut extra = paywire_core::JsonObject::new();
    extra.insert("name".into(), "USD Coin".into());
    extra.insert("version".into(), "2".into());
    eip3009.extra = Some(extra);
    let client = paywire_evm::exact::ExactEvmClient::new(kit.payer(1));
    let by_eip3009 = |requirements: PaymentRequirements| {
        let client = &client;
        async move {
            let exact = client.sign(&requirements).await.unwrap();
            PaymentPayload {
                x402_version: 2,
                payload: exact.to_json(),
                extensions: None,
                resource: None,
                accepted: requirements,
            }
        }
    };
    let by_permit2 = || signed_payment(&kit, 1, &permit2).1;
    for (method, params) in [
        ("evm_setAutomine", serde_json::json!([false])),
        ("evm_setIntervalMining", serde_json::json!([0])),
    ] {
        kit.devnet.rpc(method, params).await.unwrap();
    }
    let pending = Some(ErrorReason::TRANSACTION_PENDING);

    let first = by_eip3009(eip3009.clone()).await;
    let sent = kit.exact.settle(&first, &eip3009).await.unwrap();
    assert_eq!(sent.error_reason, pending, "{sent:?}");
    let refused = kit.exact.settle(&by_permit2(), &permit2).await.unwrap();
    assert_eq!(
        refused.error_reason,
        Some(reasons::PERMIT2_INSUFFICIENT_BALANCE),
        "{refused:?}"
    );
    kit.devnet.mine().await.unwrap();
    assert_eq!(kit.balance(usdc, payer).await, U256::ZERO);

    let automine = |on: bool| kit.devnet.rpc("evm_setAutomine", serde_json::json!([on]));
    automine(true).await.unwrap();
    kit.devnet
        .mint_usdc(payer, U256::from(price))
        .await
        .unwrap();
    automine(false).await.unwrap();
    let sent = kit.exact.settle(&by_permit2(), &permit2).await.unwrap();
    assert_eq!(sent.error_reason, pending, "{sent:?}");
    let second = by_eip3009(eip3009.clone()).await;
    let refused = kit.exact.settle(&second, &eip3009).await.unwrap();
    assert_eq!(
        refused.error_reason,
        Some(ErrorReason::INSUFFICIENT_FUNDS),
        "{refused:?}"
    );
    assert_eq!(kit.sent_by(kit.signers[0]).await, 1, "mined so far");
    kit.devnet.mine().await.unwrap();
    assert_eq!(kit.sent().await, 2, "one transaction per balance");
    assert_eq!(kit.balance(usdc, payee()).await, U256::from(2 * price));
}

/// The exact proxy's `settle` of `payload`, as anyone holding it may send.
fn proxy_settle(payload: &Permit2Payload) -> Vec<u8> {
    use alloy_sol_types::SolCall;
    use paywire_evm::contracts::exact_permit2_proxy::{
        PermitTransferFrom, TokenPermissions, Witness, settleCall,
    };
    let auth = &payload.permit2_authorization;
    settleCall {
        permit: PermitTransferFrom {
            permitted: TokenPermissions {
                token: auth.permitted.token,
                amount: auth.permitted.amount.as_u256(),
            },
            nonce: auth.nonce,
            deadline: auth.deadline.as_u256(),
        },
        owner: auth.from,
        witness: Witness {
            to: auth.witness.to,
            validAfter: auth.witness.valid_after.as_u256(),
        },
        signature: payload.signature.clone(),
    }
    .abi_encode()
}

/// Field lesson 16 for Permit2: a third party (a mempool copier, the
/// resource server) calls the exact proxy with the payer's signature first.
/// The payee was paid, so settle answers success with that transaction and
/// sends nothing; the payment stays spent for verify; crash lookup finds it.
#[tokio::test]
async fn a_front_run_payment_is_settled_by_the_front_runners_transaction() {
    let kit = Kit::start().await;
    let token = kit.devnet.plain_token();
    kit.approve(token, 1).await;
    let requirements = kit.requirements("exact", token, payee(), PRICE);
    let (payload, payment) = signed_payment(&kit, 1, &requirements);
    let before = kit.balance(token, payee()).await;
    let copier = kit.devnet.payer(3).address;
    let front_run = kit
        .devnet
        .transact(copier, EXACT_PERMIT2_PROXY, proxy_settle(&payload))
        .await
        .unwrap();
    assert_eq!(
        kit.balance(token, payee()).await,
        before + U256::from(PRICE)
    );

    let settled = kit.exact.settle(&payment, &requirements).await.unwrap();
    assert!(settled.success, "{settled:?}");
    assert_eq!(settled.transaction, front_run.transaction_hash.to_string());
    assert_eq!(settled.amount, Some(PRICE.into()));
    let payer = kit.devnet.payer(1).address.to_string();
    assert_eq!(settled.payer.as_deref(), Some(payer.as_str()));
    assert_eq!(kit.sent().await, 0, "the facilitator sent a transaction");
    assert_eq!(
        kit.balance(token, payee()).await,
        before + U256::from(PRICE),
        "paid once"
    );

    let verified = kit.exact.verify(&payment, &requirements).await.unwrap();
    assert!(!verified.is_valid, "{verified:?}");
    assert_eq!(verified.invalid_reason, Some(reasons::NONCE_USED));

    match kit
        .exact
        .lookup_settlement(&payment, &requirements, None)
        .await
        .unwrap()
    {
        Some(paywire_core::SettlementLookup::Settled(response)) => {
            assert_eq!(response.transaction, settled.transaction);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(kit.sent().await, 0);
}

/// Another payment of the same payer reusing the nonce, executed by a third
/// party with the same token, recipient and amount (so the same `Transfer`
/// event), is not this payment: settle refuses it as a replay.
#[tokio::test]
async fn another_payment_reusing_the_nonce_is_not_misattributed() {
    let kit = Kit::start().await;
    let token = kit.devnet.plain_token();
    kit.approve(token, 1).await;
    let requirements = kit.requirements("exact", token, payee(), PRICE);
    let key = kit.payer(1);
    let auth = kit.authorization(&requirements, key.address());
    let mut later = auth.clone();
    later.deadline = (later.deadline.as_u256() + U256::from(1u64)).into();
    let (ours, theirs) = (sign(&key, auth), sign(&key, later));
    let copier = kit.devnet.payer(3).address;
    let executed = kit
        .devnet
        .transact(copier, EXACT_PERMIT2_PROXY, proxy_settle(&theirs))
        .await
        .unwrap();
    assert!(executed.status);

    let payment = wrap(&ours, &requirements);
    let settled = kit.exact.settle(&payment, &requirements).await.unwrap();
    assert!(!settled.success, "{settled:?}");
    assert_eq!(settled.error_reason, Some(reasons::NONCE_USED));
    assert_eq!(kit.sent().await, 0);
    match kit
        .exact
        .lookup_settlement(&payment, &requirements, None)
        .await
        .unwrap()
    {
        Some(paywire_core::SettlementLookup::Unsettleable(failed)) => {
            assert_eq!(failed.error_reason, Some(reasons::NONCE_USED));
        }
        other => panic!("{other:?}"),
    }
}

/// The race itself: our settlement passed verification and is in the pool
/// when a third party's call of the same payment, paying a higher tip, is
/// mined first. Our transaction reverts; the answer is success with the
/// third party's transaction.
#[tokio::test]
async fn a_settlement_losing_the_race_reports_the_winner() {
    let kit = Kit::start().await;
    let token = kit.devnet.plain_token();
    kit.approve(token, 1).await;
    let requirements = kit.requirements("exact", token, payee(), PRICE);
    let (payload, payment) = signed_payment(&kit, 1, &requirements);
    let before = kit.balance(token, payee()).await;
    // No mining (neither per transaction nor per second) until both wait.
    for (method, arg) in [
        ("evm_setAutomine", serde_json::Value::from(false)),
        ("evm_setIntervalMining", 0.into()),
    ] {
        kit.devnet
            .rpc(method, serde_json::json!([arg]))
            .await
            .unwrap();
    }
    let settle = {
        let (exact, payment, requirements) = (kit.exact.clone(), payment.clone(), requirements);
        tokio::spawn(async move { exact.settle(&payment, &requirements).await })
    };
    // Wait for our transaction in the pool.
    let signer = kit.signers[0];
    for _ in 0..500 {
        let pending = kit
            .devnet
            .rpc(
                "eth_getTransactionCount",
                serde_json::json!([signer, "pending"]),
            )
            .await
            .unwrap();
        if pending != serde_json::json!("0x0") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let copier = kit.payer(3);
    let raw = signed_call(
        &copier,
        (31337, kit.sent_by(copier.address()).await),
        EXACT_PERMIT2_PROXY,
        proxy_settle(&payload),
        // Anvil orders its pool by the fee cap: above the facilitator's.
        (300_000, 1_000_000_000_000),
    );
    let winner = kit
        .devnet
        .rpc("eth_sendRawTransaction", serde_json::json!([raw]))
        .await
        .unwrap();
    kit.devnet.mine().await.unwrap();
    for (method, arg) in [
        ("evm_setAutomine", serde_json::Value::from(true)),
        ("evm_setIntervalMining", 1.into()),
    ] {
        kit.devnet
            .rpc(method, serde_json::json!([arg]))
            .await
            .unwrap();
    }
    let settled = settle.await.unwrap().unwrap();
    assert!(settled.success, "{settled:?}");
    assert_eq!(
        serde_json::json!(settled.transaction),
        winner,
        "{settled:?}"
    );
    assert_eq!(kit.sent().await, 1, "ours was sent and reverted");
    assert_eq!(
        kit.balance(token, payee()).await,
        before + U256::from(PRICE)
    );
}
