//! `upto` end to end on anvil with the canonical Permit2 and our
//! `x402UptoPermit2Proxy`: the facilitator binding, settlement of the
//! actual amount, the maximum, zero usage and replays.

use alloy_primitives::{Address, U256};
use paywire_core::{ChainId, ErrorReason, PaymentPayload, PaymentRequirements, SchemeFacilitator};
use paywire_evm::permit2::EXACT_PERMIT2_PROXY;
use paywire_evm::reasons;
use paywire_evm::{Eip155ChainId, LocalSigner};

#[path = "common/permit2.rs"]
mod kit;

use kit::{Kit, now, payee, permit_info, sign, with_extension, wrap};

/// The signed maximum.
const MAX: u64 = 50_000;

/// A valid `upto` payment of at most [`MAX`] by payer #1 (approved).
async fn payment(kit: &Kit) -> (PaymentPayload, PaymentRequirements) {
    let token = kit.devnet.plain_token();
    kit.approve(token, 1).await;
    let requirements = kit.requirements("upto", token, payee(), MAX);
    let key = kit.payer(1);
    let payload = sign(&key, kit.authorization(&requirements, key.address()));
    (wrap(&payload, &requirements), requirements)
}

/// The settle-time requirements: the same, charging `amount`.
fn charging(requirements: &PaymentRequirements, amount: u64) -> PaymentRequirements {
    let mut settle = requirements.clone();
    settle.amount = amount.into();
    settle
}

async fn expect_verify_refused(
    kit: &Kit,
    row: &str,
    payment: &PaymentPayload,
    requirements: &PaymentRequirements,
    reason: &ErrorReason,
) {
    let verified = kit.upto.verify(payment, requirements).await.unwrap();
    assert!(!verified.is_valid, "{row}");
    assert_eq!(
        verified.invalid_reason.as_ref(),
        Some(reason),
        "{row}: {verified:?}"
    );
}

async fn expect_settle_refused(
    kit: &Kit,
    row: &str,
    payment: &PaymentPayload,
    requirements: &PaymentRequirements,
    reason: &ErrorReason,
) {
    let before = kit.sent().await;
    let settled = kit.upto.settle(payment, requirements).await.unwrap();
    assert!(!settled.success, "{row}: {settled:?}");
    assert_eq!(
        settled.error_reason.as_ref(),
        Some(reason),
        "{row}: {settled:?}"
    );
    assert_eq!(kit.sent().await, before, "{row}: a transaction was sent");
}

#[tokio::test]
async fn supported_kind_names_our_signer() {
    let kit = Kit::start_with(2, |_| {}).await;
    assert_eq!(kit.upto.scheme(), "upto");
    assert_eq!(kit.upto.networks(), vec![ChainId::eip155(31337)]);
    let extra = kit.upto.kind_extra(&ChainId::eip155(31337)).unwrap();
    assert_eq!(
        extra["facilitatorAddress"],
        kit.signers[0].to_checksum(None)
    );
    assert_eq!(kit.upto.signers(&ChainId::eip155(31337)).len(), 2);
}

#[tokio::test]
async fn settles_the_actual_amount_below_the_maximum() {
    let kit = Kit::start().await;
    let (payment, requirements) = payment(&kit).await;
    let token = kit.devnet.plain_token();
    let payer = kit.devnet.payer(1).address;
    assert!(
        kit.upto
            .verify(&payment, &requirements)
            .await
            .unwrap()
            .is_valid
    );
    let (payer_before, payee_before) = (
        kit.balance(token, payer).await,
        kit.balance(token, payee()).await,
    );
    let used = 1_858;
    let settled = kit
        .upto
        .settle(&payment, &charging(&requirements, used))
        .await
        .unwrap();
    assert!(settled.success, "{settled:?}");
    assert_eq!(settled.amount, Some(used.into()));
    assert!(!settled.transaction.is_empty());
    assert_eq!(
        kit.balance(token, payer).await,
        payer_before - U256::from(used)
    );
    assert_eq!(
        kit.balance(token, payee()).await,
        payee_before + U256::from(used)
    );
    // Reuse, for any amount: the nonce is spent.
    for amount in [used, 1, 0] {
        expect_settle_refused(
            &kit,
            "reuse",
            &payment,
            &charging(&requirements, amount),
            &reasons::PERMIT2_INVALID_NONCE,
        )
        .await;
    }
    expect_verify_refused(
        &kit,
        "reuse",
        &payment,
        &requirements,
        &reasons::PERMIT2_INVALID_NONCE,
    )
    .await;
}

#[tokio::test]
async fn settling_above_the_maximum_is_refused() {
    let kit = Kit::start().await;
    let (payment, requirements) = payment(&kit).await;
    let reason = reasons::UPTO_SETTLEMENT_EXCEEDS_AMOUNT;
    expect_settle_refused(
        &kit,
        "max + 1",
        &payment,
        &charging(&requirements, MAX + 1),
        &reason,
    )
    .await;
    // The maximum itself is fine.
    let settled = kit
        .upto
        .settle(&payment, &charging(&requirements, MAX))
        .await
        .unwrap();
    assert!(settled.success, "{settled:?}");
    assert_eq!(settled.amount, Some(MAX.into()));
}

#[tokio::test]
async fn zero_usage_sends_nothing_and_spends_the_authorization() {
    let kit = Kit::start().await;
    let (payment, requirements) = payment(&kit).await;
    let token = kit.devnet.plain_token();
    let payer = kit.devnet.payer(1).address;
    let before = kit.balance(token, payer).await;
    let settled = kit
        .upto
        .settle(&payment, &charging(&requirements, 0))
        .await
        .unwrap();
    assert!(settled.success, "{settled:?}");
    assert_eq!(settled.transaction, "");
    assert_eq!(settled.amount, Some(0u64.into()));
    assert_eq!(kit.sent().await, 0);
    assert_eq!(kit.balance(token, payer).await, before);
    for amount in [0, 1_000] {
        expect_settle_refused(
            &kit,
            "second settle",
            &payment,
            &charging(&requirements, amount),
            &kit.upto.replay_reason(),
        )
        .await;
    }
    assert_eq!(kit.balance(token, payer).await, before);
}

#[tokio::test]
async fn verification_refusals() {
    let kit = Kit::start().await;
    let token = kit.devnet.plain_token();
    kit.approve(token, 1).await;
    let requirements = kit.requirements("upto", token, payee(), MAX);
    let key = kit.payer(1);
    let valid = kit.authorization(&requirements, key.address());
    type Spoil = Box<dyn Fn(&mut paywire_evm::permit2::Permit2Authorization)>;
    let rows: Vec<(&str, Spoil, ErrorReason, ErrorReason)> = vec![
        (
            "facilitator not ours",
            Box::new(|a| a.witness.facilitator = Some(Address::repeat_byte(0x42))),
            reasons::UPTO_FACILITATOR_MISMATCH,
            reasons::UPTO_FACILITATOR_MISMATCH,
        ),
        (
            "payTo mismatch",
            Box::new(|a| a.witness.to = Address::repeat_byte(0x77)),
            reasons::PERMIT2_RECIPIENT_MISMATCH,
            reasons::PERMIT2_RECIPIENT_MISMATCH,
        ),
        (
            "exact proxy as spender",
            Box::new(|a| a.spender = EXACT_PERMIT2_PROXY),
            reasons::PERMIT2_INVALID_SPENDER,
            reasons::PERMIT2_INVALID_SPENDER,
        ),
        // At settlement the client's accepted maximum must be the signed one.
        (
            "maximum differs at verify",
            Box::new(|a| a.permitted.amount = (MAX - 1).into()),
            reasons::PERMIT2_AMOUNT_MISMATCH,
            ErrorReason::INVALID_PAYMENT_REQUIREMENTS,
        ),
    ];
    for (row, spoil, at_verify, at_settle) in rows {
        let mut auth = valid.clone();
        spoil(&mut auth);
        let payment = wrap(&sign(&key, auth), &requirements);
        expect_verify_refused(&kit, row, &payment, &requirements, &at_verify).await;
        let settle = charging(&requirements, 1_000);
        expect_settle_refused(&kit, row, &payment, &settle, &at_settle).await;
    }
    let forged = wrap(&sign(&LocalSigner::random(), valid.clone()), &requirements);
    expect_verify_refused(
        &kit,
        "other key",
        &forged,
        &requirements,
        &reasons::PERMIT2_INVALID_SIGNATURE,
    )
    .await;
}

/// The proxy only accepts the witness's facilitator as caller: with two
/// signers, the settlement goes out from the one the payer named.
#[tokio::test]
async fn settles_from_the_signer_named_in_the_witness() {
    let kit = Kit::start_with(2, |_| {}).await;
    let token = kit.devnet.plain_token();
    kit.approve(token, 1).await;
    let requirements = kit.requirements("upto", token, payee(), MAX);
    let key = kit.payer(1);
    for round in 0..2 {
        let mut auth = kit.authorization(&requirements, key.address());
        auth.witness.facilitator = Some(kit.signers[1]);
        let payment = wrap(&sign(&key, auth), &requirements);
        let settled = kit
            .upto
            .settle(&payment, &charging(&requirements, 100))
            .await
            .unwrap();
        assert!(settled.success, "{settled:?}");
        assert_eq!(kit.sent_by(kit.signers[1]).await, round + 1);
        assert_eq!(kit.sent_by(kit.signers[0]).await, 0);
    }
}

/// `upto` with an EIP-2612 permit instead of a prior approval: the
/// upto proxy's `settleWithPermit` charges the actual amount and sets the
/// allowance.
#[tokio::test]
async fn eip2612_sponsoring_settles_upto() {
    let kit = Kit::start_with(1, |chain| chain.eip2612_gas_sponsoring = true).await;
    let token = kit.devnet.permit_token();
    let key = kit.payer(5);
    let requirements = kit.requirements("upto", token, payee(), MAX);
    let plain = wrap(
        &sign(&key, kit.authorization(&requirements, key.address())),
        &requirements,
    );
    let info = permit_info(&kit, &key, now() + 300).await;
    let payment = with_extension(plain.clone(), "eip2612GasSponsoring", info);
    // Without the permit: the allowance is required.
    expect_verify_refused(
        &kit,
        "no permit",
        &plain,
        &requirements,
        &reasons::PERMIT2_ALLOWANCE,
    )
    .await;
    assert!(
        kit.upto
            .verify(&payment, &requirements)
            .await
            .unwrap()
            .is_valid
    );
    let used = 777;
    let settled = kit
        .upto
        .settle(&payment, &charging(&requirements, used))
        .await
        .unwrap();
    assert!(settled.success, "{settled:?}");
    assert_eq!(settled.amount, Some(used.into()));
    assert_eq!(kit.balance(token, payee()).await, U256::from(used));
    assert!(
        kit.devnet
            .allowance(token, key.address(), kit::PERMIT2)
            .await
            .unwrap()
            > U256::ZERO
    );
}

/// A minimal resource server selling `exact`/Permit2 on `/permit2` and
/// `upto` (charging [`USAGE`]) on `/metered`, verifying and settling through
/// our scheme facilitators.
struct Seller {
    exact: std::sync::Arc<paywire_evm::exact::ExactEvmFacilitator>,
    upto: paywire_evm::permit2::UptoEvmFacilitator,
    permit2: PaymentRequirements,
    metered: PaymentRequirements,
}

const USAGE: u64 = 1_858;

async fn sell(
    axum::extract::State(seller): axum::extract::State<std::sync::Arc<Seller>>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use paywire_core::codec::{
        PAYMENT_REQUIRED_HEADER, PAYMENT_RESPONSE_HEADER, PAYMENT_SIGNATURE_HEADER, decode_header,
        encode_header,
    };
    let metered = uri.path() == "/metered";
    let requirements = if metered {
        &seller.metered
    } else {
        &seller.permit2
    };
    let facilitator: &dyn SchemeFacilitator = if metered {
        &seller.upto
    } else {
        seller.exact.as_ref()
    };
    let Some(signature) = headers.get(PAYMENT_SIGNATURE_HEADER) else {
        let required = serde_json::json!({
            "x402Version": 2,
            "resource": {"url": format!("http://localhost{}", uri.path())},
            "accepts": [requirements],
        });
        let header = encode_header(&required);
        return (
            axum::http::StatusCode::PAYMENT_REQUIRED,
            [(PAYMENT_REQUIRED_HEADER, header)],
            "{}",
        )
            .into_response();
    };
    let refused = |what: String| (axum::http::StatusCode::PAYMENT_REQUIRED, what).into_response();
    let payment: PaymentPayload = match decode_header(signature.as_bytes()) {
        Ok(payment) => payment,
        Err(error) => return refused(format!("undecodable payment: {error}")),
    };
    match facilitator.verify(&payment, requirements).await {
        Ok(verified) if verified.is_valid => {}
        other => return refused(format!("verify: {other:?}")),
    }
    let charged = if metered {
        charging(requirements, USAGE)
    } else {
        requirements.clone()
    };
    match facilitator.settle(&payment, &charged).await {
        Ok(settled) if settled.success => {
            let header = encode_header(&settled);
            ([(PAYMENT_RESPONSE_HEADER, header)], "paid").into_response()
        }
        other => refused(format!("settle: {other:?}")),
    }
}

/// Interop: the official TypeScript SDK 2.27 client pays `exact` with
/// Permit2 and `upto` to a server settling through OUR scheme facilitators
/// (the client signs the `facilitatorAddress` our requirements name).
#[tokio::test]
async fn the_official_client_pays_through_our_facilitator() {
    use paywire_testkit::peer::ts_client_fetch_asset;
    const PRICE: u64 = 10_000;
    let kit = Kit::start().await;
    let token = kit.devnet.plain_token();
    let seller = std::sync::Arc::new(Seller {
        exact: std::sync::Arc::clone(&kit.exact),
        upto: paywire_evm::permit2::UptoEvmFacilitator::new(std::sync::Arc::clone(&kit.exact)),
        permit2: kit.requirements("exact", token, payee(), PRICE),
        metered: kit.requirements("upto", token, payee(), MAX),
    });
    let app = axum::Router::new()
        .route("/permit2", axum::routing::get(sell))
        .route("/metered", axum::routing::get(sell))
        .with_state(seller);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let payer = kit.devnet.payer(4);
    kit.approve(token, 4).await;
    let before = kit.balance(token, payer.address).await;

    let fixed = ts_client_fetch_asset(
        &kit.devnet,
        payer.private_key,
        &format!("{base}/permit2"),
        token,
    )
    .await
    .unwrap();
    assert_eq!(fixed.status, 200, "{fixed:#?}");
    assert_eq!(
        fixed
            .payment_response
            .as_ref()
            .map(|r| r["success"].clone()),
        Some(true.into())
    );
    let metered = ts_client_fetch_asset(
        &kit.devnet,
        payer.private_key,
        &format!("{base}/metered"),
        token,
    )
    .await
    .unwrap();
    assert_eq!(metered.status, 200, "{metered:#?}");
    let settled = metered.payment_response.clone().unwrap_or_default();
    assert_eq!(settled["amount"], USAGE.to_string(), "{settled}");
    assert_eq!(kit.balance(token, payee()).await, U256::from(PRICE + USAGE));
    assert_eq!(
        kit.balance(token, payer.address).await,
        before - U256::from(PRICE + USAGE)
    );
    server.abort();
}
