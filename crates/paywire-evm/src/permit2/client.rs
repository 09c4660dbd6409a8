//! Client side of Permit2 payments, shared by `exact` (Permit2 assets) and
//! `upto`: sign the `permitWitnessTransferFrom` for an x402 proxy, and when
//! the payer's Permit2 allowance is short, add what a sponsoring
//! facilitator needs to set it (an EIP-2612 permit or a signed approval).

use alloy_primitives::{Address, U256};
use paywire_core::{AtomicAmount, CreatedPayment, Extensions, PaymentRequirements, SchemeError};

use super::approval::{
    PermitRequest, permit2_allowance, sign_eip2612_permit, sponsored_approval_info,
};
use super::{
    EIP2612_GAS_SPONSORING, ERC20_APPROVAL_GAS_SPONSORING, Permit2Authorization, Permit2Payload,
    TokenPermissions, Witness,
};
use crate::Eip155ChainId;
use crate::exact::{Clock, NonceSource};
use crate::rpc::{RpcClient, RpcError};
use crate::signer::EvmSigner;

/// Who may spend a Permit2 signature: the proxy, and for `upto` the only
/// facilitator allowed to call it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spender {
    /// The x402 proxy (`permit.spender`).
    pub(crate) proxy: Address,
    /// `witness.facilitator` (`upto` only).
    pub(crate) facilitator: Option<Address>,
}

/// Everything a Permit2 payment is signed with.
pub(crate) struct Permit2Signer<'a, S: ?Sized> {
    pub(crate) signer: &'a S,
    pub(crate) clock: &'a Clock,
    pub(crate) nonces: &'a NonceSource,
    /// A node of the payment's chain, for the allowance check.
    pub(crate) rpc: Option<&'a RpcClient>,
}

/// What the requirements ask the payer to sign.
struct Terms {
    chain_id: u64,
    token: Address,
    pay_to: Address,
    amount: AtomicAmount,
}

fn terms(requirements: &PaymentRequirements) -> Result<Terms, SchemeError> {
    let invalid = |what: &str| SchemeError::InvalidRequirements(what.to_owned());
    let chain_id = requirements.network.eip155_id().ok_or_else(|| {
        SchemeError::Unsupported(format!(
            "{} is not an EVM chain id in canonical form",
            requirements.network
        ))
    })?;
    let token = requirements
        .asset
        .parse()
        .map_err(|_| invalid("asset is not an EVM address"))?;
    let pay_to = requirements
        .pay_to
        .parse()
        .map_err(|_| invalid("payTo is not an EVM address"))?;
    if requirements.amount.is_zero() {
        return Err(invalid("amount must be greater than zero"));
    }
    Ok(Terms {
        chain_id,
        token,
        pay_to,
        amount: requirements.amount,
    })
}

impl<S: EvmSigner + ?Sized> Permit2Signer<'_, S> {
    /// Signs the Permit2 authorization of `requirements` for `spender`.
    pub(crate) async fn sign(
        &self,
        requirements: &PaymentRequirements,
        spender: Spender,
    ) -> Result<Permit2Payload, SchemeError> {
        let terms = terms(requirements)?;
        let now = (self.clock)();
        let authorization = Permit2Authorization {
            from: self.signer.address(),
            permitted: TokenPermissions {
                token: terms.token,
                amount: terms.amount,
            },
            spender: spender.proxy,
            // 256 random bits: Permit2 nonces are unordered (a bitmap), so
            // any unused value works and a random one never collides.
            nonce: U256::from_be_bytes((self.nonces)().0),
            deadline: now.saturating_add(requirements.max_timeout_seconds).into(),
            witness: Witness {
                to: terms.pay_to,
                facilitator: spender.facilitator,
                // Valid at once, as for EIP-3009: a payer whose clock runs
                // ahead of the chain's must not be refused as too early.
                valid_after: AtomicAmount::ZERO,
            },
        };
        let digest = authorization.signing_hash(terms.chain_id);
        let signature = self
            .signer
            .sign_hash(&digest)
            .await
            .map_err(|e| SchemeError::Signing(e.to_string()))?;
        Ok(Permit2Payload {
            signature: signature.as_bytes().into(),
            permit2_authorization: authorization,
        })
    }

    /// Signs the payment and, when the payer's Permit2 allowance is short,
    /// the approval a sponsoring facilitator `offered` to submit. The route
    /// is chosen before anything is signed, so a payer who must approve
    /// first is told so without a wasted signature.
    pub(crate) async fn create_payment(
        &self,
        requirements: &PaymentRequirements,
        offered: Option<&Extensions>,
        spender: Spender,
    ) -> Result<CreatedPayment, SchemeError> {
        let terms = terms(requirements)?;
        let approval = match self.rpc {
            Some(rpc) => approval_route(self.signer.address(), rpc, requirements, &terms, offered)
                .await?
                .map(|route| (rpc, route)),
            // No node: sign without checking; a facilitator answers
            // `permit2_allowance_required` if the approval is missing.
            None => None,
        };
        let payload = self.sign(requirements, spender).await?;
        let created = CreatedPayment::new(payload.to_json());
        match approval {
            None => Ok(created),
            Some((rpc, Approval::Permit { name, version })) => {
                let request = PermitRequest {
                    chain_id: terms.chain_id,
                    token: terms.token,
                    name,
                    version,
                    value: terms.amount.as_u256(),
                    deadline: payload.permit2_authorization.deadline.as_u256(),
                };
                let info = sign_eip2612_permit(self.signer, rpc, &request).await?;
                Ok(created.with_extension(EIP2612_GAS_SPONSORING, info_envelope(info)))
            }
            Some((rpc, Approval::Transaction)) => {
                let info =
                    sponsored_approval_info(self.signer, rpc, terms.chain_id, terms.token).await?;
                Ok(created.with_extension(ERC20_APPROVAL_GAS_SPONSORING, info_envelope(info)))
            }
        }
    }
}

/// How a short Permit2 allowance gets set for this payment.
enum Approval<'a> {
    /// An EIP-2612 permit (the token's domain from the requirements).
    Permit { name: &'a str, version: &'a str },
    /// A signed `approve(Permit2, MAX)` transaction.
    Transaction,
}

/// `None` when the allowance covers the payment (or cannot be read: the
/// facilitator then judges), else the sponsored approval to add, or an
/// error telling the payer to approve Permit2 once when none is offered.
async fn approval_route<'a>(
    owner: Address,
    rpc: &RpcClient,
    requirements: &'a PaymentRequirements,
    terms: &Terms,
    offered: Option<&Extensions>,
) -> Result<Option<Approval<'a>>, SchemeError> {
    match permit2_allowance(rpc, terms.chain_id, terms.token, owner).await {
        Ok(allowance) if allowance >= terms.amount.as_u256() => return Ok(None),
        Ok(_) => {}
        Err(error) => {
            // Only the kind: transport errors name the endpoint.
            tracing::warn!(
                network = %requirements.network,
                error = rpc_error_kind(&error),
                "could not read the Permit2 allowance; paying without an approval"
            );
            return Ok(None);
        }
    }
    let offers = |id: &str| offered.is_some_and(|extensions| extensions.contains(id));
    let domain = requirements
        .extra_str("name")
        .zip(requirements.extra_str("version"));
    if let (true, Some((name, version))) = (offers(EIP2612_GAS_SPONSORING), domain) {
        return Ok(Some(Approval::Permit { name, version }));
    }
    if offers(ERC20_APPROVAL_GAS_SPONSORING) {
        return Ok(Some(Approval::Transaction));
    }
    Err(SchemeError::Unsupported(format!(
        "{owner} has not approved the Permit2 contract for token {} on {}: approve it once \
         (paywire_evm::permit2::approve_permit2), or pay through a facilitator that \
         sponsors the approval",
        terms.token, requirements.network
    )))
}

/// `{"info": info}`, the shape of an extension entry in a payment payload.
fn info_envelope(info: serde_json::Value) -> serde_json::Value {
    serde_json::json!({ "info": info })
}

fn rpc_error_kind(error: &RpcError) -> &'static str {
    match error {
        RpcError::Transport(_) => "transport",
        RpcError::Node { .. } => "node",
        RpcError::Decode(_) => "decode",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use alloy_primitives::{B256, Signature};
    use paywire_core::{ChainId, SchemeClient};
    use serde_json::json;

    use super::*;
    use crate::exact::ExactEvmClient;
    use crate::permit2::{EXACT_PERMIT2_PROXY, UPTO_PERMIT2_PROXY};
    use crate::signer::LocalSigner;
    use crate::upto::UptoEvmClient;

    const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
    const TOKEN: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
    const PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
    const FACILITATOR: &str = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";

    fn requirements(scheme: &str, extra: serde_json::Value) -> PaymentRequirements {
        PaymentRequirements {
            scheme: scheme.into(),
            network: ChainId::eip155(84532),
            amount: AtomicAmount::from(10_000u64),
            asset: TOKEN.into(),
            pay_to: PAY_TO.into(),
            max_timeout_seconds: 60,
            extra: extra.as_object().cloned(),
        }
    }

    fn signer() -> LocalSigner {
        LocalSigner::from_hex(KEY).unwrap_or_else(|_| unreachable!())
    }

    fn fixed_nonce() -> NonceSource {
        Arc::new(|| B256::repeat_byte(0x42))
    }

    fn clock() -> Clock {
        Arc::new(|| 1_740_672_094)
    }

    fn exact() -> ExactEvmClient<LocalSigner> {
        ExactEvmClient::new(signer())
            .with_clock(clock())
            .with_nonce_source(fixed_nonce())
    }

    fn upto() -> UptoEvmClient<LocalSigner> {
        UptoEvmClient::new(signer())
            .with_clock(clock())
            .with_nonce_source(fixed_nonce())
    }

    fn recovered(payload: &Permit2Payload, chain_id: u64) -> Address {
        let digest = payload.permit2_authorization.signing_hash(chain_id);
        let signature = Signature::try_from(payload.signature.as_ref()).unwrap();
        signature.recover_address_from_prehash(&digest).unwrap()
    }

    #[tokio::test]
    async fn exact_permit2_payload_has_the_typescript_shape_and_digest() {
        let requirements = requirements("exact", json!({"assetTransferMethod": "permit2"}));
        let created = exact().create_payment(&requirements, None).await.unwrap();
        assert!(created.extensions.is_empty());
        let nonce = U256::from_be_bytes([0x42; 32]).to_string();
        let text = serde_json::to_string(&created.payload).unwrap();
        let expected_tail = format!(
            r#""permit2Authorization":{{"from":"0x70997970C51812dc3A010C7d01b50e0d17dc79C8","permitted":{{"token":"{TOKEN}","amount":"10000"}},"spender":"0x402085c248EeA27D92E8b30b2C58ed07f9E20001","nonce":"{nonce}","deadline":"1740672154","witness":{{"to":"{PAY_TO}","validAfter":"0"}}}}}}"#
        );
        assert!(text.starts_with(r#"{"signature":"0x"#), "{text}");
        assert!(text.ends_with(&expected_tail), "{text}");
        let payload = Permit2Payload::from_json(&created.payload).unwrap();
        assert_eq!(payload.signature.len(), 65);
        assert_eq!(recovered(&payload, 84532), signer().address());
        assert_eq!(payload.permit2_authorization.spender, EXACT_PERMIT2_PROXY);
        // The same through `create_payload` and `sign_permit2`.
        let again = exact().create_payload(&requirements).await.unwrap();
        assert_eq!(again, created.payload);
        assert_eq!(exact().sign_permit2(&requirements).await.unwrap(), payload);
    }

    #[tokio::test]
    async fn eip3009_requirements_still_sign_eip3009() {
        for extra in [
            json!({"name": "USDC", "version": "2"}),
            json!({"name": "USDC", "version": "2", "assetTransferMethod": "eip3009"}),
        ] {
            let created = exact()
                .create_payment(&requirements("exact", extra), None)
                .await
                .unwrap();
            assert!(created.payload.contains_key("authorization"));
            assert!(!created.payload.contains_key("permit2Authorization"));
        }
        let unknown = requirements("exact", json!({"assetTransferMethod": "permit3"}));
        assert!(matches!(
            exact().create_payment(&unknown, None).await,
            Err(SchemeError::Unsupported(_))
        ));
    }

    #[tokio::test]
    async fn upto_payload_binds_the_facilitator_and_the_upto_proxy() {
        let requirements = requirements(
            "upto",
            json!({"name": "USDC", "version": "2", "assetTransferMethod": "permit2",
                   "facilitatorAddress": FACILITATOR.to_lowercase()}),
        );
        let created = upto().create_payment(&requirements, None).await.unwrap();
        let witness = &created.payload["permit2Authorization"]["witness"];
        assert_eq!(
            serde_json::to_string(witness).unwrap(),
            format!(r#"{{"to":"{PAY_TO}","facilitator":"{FACILITATOR}","validAfter":"0"}}"#)
        );
        let payload = Permit2Payload::from_json(&created.payload).unwrap();
        assert_eq!(payload.permit2_authorization.spender, UPTO_PERMIT2_PROXY);
        assert_eq!(recovered(&payload, 84532), signer().address());
        // The exact digest is another one: the signature is not reusable there.
        let mut as_exact = payload.permit2_authorization.clone();
        as_exact.witness.facilitator = None;
        assert_ne!(
            as_exact.signing_hash(84532),
            payload.permit2_authorization.signing_hash(84532)
        );
    }

    #[tokio::test]
    async fn malformed_requirements_are_refused_without_panicking() {
        let good = json!({"assetTransferMethod": "permit2", "facilitatorAddress": FACILITATOR});
        let with = |scheme: &str, change: &dyn Fn(&mut PaymentRequirements)| {
            let mut requirements = requirements(scheme, good.clone());
            change(&mut requirements);
            requirements
        };
        let cases: Vec<(&str, PaymentRequirements)> = vec![
            ("asset", with("upto", &|r| r.asset = "0x1234".into())),
            ("payTo", with("upto", &|r| r.pay_to = "nobody".into())),
            (
                "zero amount",
                with("upto", &|r| r.amount = AtomicAmount::ZERO),
            ),
            (
                "no facilitator",
                with("upto", &|r| {
                    r.extra = json!({"assetTransferMethod": "permit2"})
                        .as_object()
                        .cloned();
                }),
            ),
            (
                "bad facilitator",
                with("upto", &|r| {
                    r.extra = json!({"facilitatorAddress": "0xabc"}).as_object().cloned();
                }),
            ),
            (
                "zero facilitator",
                with("upto", &|r| {
                    r.extra = json!({"facilitatorAddress": Address::ZERO.to_string()})
                        .as_object()
                        .cloned();
                }),
            ),
            (
                "numeric facilitator",
                with("upto", &|r| {
                    r.extra = json!({"facilitatorAddress": 7}).as_object().cloned();
                }),
            ),
            (
                "eip3009 upto",
                with("upto", &|r| {
                    r.extra = json!({"assetTransferMethod": "eip3009", "facilitatorAddress": FACILITATOR})
                    .as_object()
                    .cloned();
                }),
            ),
            ("wrong scheme", with("exact", &|_| {})),
        ];
        for (what, requirements) in &cases {
            let error = upto().create_payment(requirements, None).await.unwrap_err();
            assert!(
                matches!(error, SchemeError::InvalidRequirements(_)),
                "{what}: {error}"
            );
        }
        type Change = fn(&mut PaymentRequirements);
        let changes: [(&str, Change); 3] = [
            ("asset", |r| r.asset = "USDC".into()),
            ("payTo", |r| r.pay_to = String::new()),
            ("zero amount", |r| r.amount = AtomicAmount::ZERO),
        ];
        for (what, change) in changes {
            let requirements = with("exact", &change);
            let error = exact()
                .create_payment(&requirements, None)
                .await
                .unwrap_err();
            assert!(
                matches!(error, SchemeError::InvalidRequirements(_)),
                "{what}: {error}"
            );
        }
        let mut solana = requirements("exact", json!({"assetTransferMethod": "permit2"}));
        solana.network = ChainId::parse("solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp").unwrap();
        assert!(matches!(
            exact().create_payment(&solana, None).await,
            Err(SchemeError::Unsupported(_))
        ));
    }
}
