//! A Permit2 test kit: a devnet with the real Permit2 and the x402 proxies,
//! a facilitator engine with `exact` and `upto` front-ends over it, and a
//! small local signer of Permit2 payloads (the product client is another
//! crate's).
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{Address, B256, Bytes, U256};
use paywire_core::{ChainId, JsonObject, PaymentPayload, PaymentRequirements};
use paywire_evm::Eip155ChainId;
use paywire_evm::exact::{EvmChainConfig, ExactEvmFacilitator, ExactEvmFacilitatorBuilder};
use paywire_evm::networks::EvmAsset;
use paywire_evm::permit2::{
    EXACT_PERMIT2_PROXY, PERMIT2_ADDRESS, Permit2Authorization, Permit2Payload, TokenPermissions,
    UPTO_PERMIT2_PROXY, UptoEvmFacilitator, Witness,
};
use paywire_evm::rpc::RpcClient;
use paywire_evm::{EvmNetwork, EvmSigner, LocalSigner};
use paywire_testkit::Devnet;

/// A devnet and a facilitator serving `exact` (Permit2) and `upto` on it.
pub struct Kit {
    pub devnet: Devnet,
    pub exact: Arc<ExactEvmFacilitator>,
    pub upto: UptoEvmFacilitator,
    /// The facilitator's settlement signers.
    pub signers: Vec<Address>,
}

/// A test token accepted by the facilitator.
fn token(address: Address, symbol: &str, name: &str, version: &str) -> EvmAsset {
    let mut asset = EvmAsset::usdc(address, name);
    asset.symbol = symbol.into();
    asset.eip712_version = version.into();
    asset
}

/// The anvil chain with USDC and both test tokens accepted.
pub fn network(devnet: &Devnet) -> EvmNetwork {
    let mut network = EvmNetwork::anvil(devnet.usdc());
    network
        .other_assets
        .push(token(devnet.plain_token(), "PUSD", "Plain Dollar", "1"));
    network
        .other_assets
        .push(token(devnet.permit_token(), "EUSD", "Permit Dollar", "1"));
    network
}

impl Kit {
    /// One settlement signer, default settings.
    pub async fn start() -> Self {
        Self::start_with(1, |_| {}).await
    }

    /// `signers` settlement signers (funded with ETH); `tune` adjusts the chain.
    pub async fn start_with(signers: usize, tune: impl FnOnce(&mut EvmChainConfig)) -> Self {
        Self::start_tuned(signers, tune, |builder| builder).await
    }

    /// [`Self::start_with`], `build` adjusting the facilitator's builder.
    pub async fn start_tuned(
        signers: usize,
        tune: impl FnOnce(&mut EvmChainConfig),
        build: impl FnOnce(ExactEvmFacilitatorBuilder) -> ExactEvmFacilitatorBuilder,
    ) -> Self {
        let devnet = Devnet::start().await.unwrap();
        let url = devnet.rpc_url().to_owned();
        Self::on(devnet, &url, signers, tune, build).await
    }

    /// [`Self::start_tuned`] on `devnet`, the facilitator reaching it
    /// through `rpc_url` (a proxy in front of it, say).
    pub async fn on(
        devnet: Devnet,
        rpc_url: &str,
        signers: usize,
        tune: impl FnOnce(&mut EvmChainConfig),
        build: impl FnOnce(ExactEvmFacilitatorBuilder) -> ExactEvmFacilitatorBuilder,
    ) -> Self {
        let rpc = RpcClient::new(vec![rpc_url.to_owned()], Duration::from_secs(10)).unwrap();
        let mut keys: Vec<Arc<dyn EvmSigner>> = Vec::new();
        for _ in 0..signers {
            let key = LocalSigner::random();
            devnet
                .set_eth_balance(key.address(), U256::from(10u128.pow(21)))
                .await
                .unwrap();
            keys.push(Arc::new(key));
        }
        let addresses = keys.iter().map(EvmSigner::address).collect();
        let mut chain = EvmChainConfig::new(network(&devnet), Arc::new(rpc), keys);
        tune(&mut chain);
        let builder = build(ExactEvmFacilitator::builder().chain(chain));
        let exact = Arc::new(builder.build().unwrap());
        let upto = UptoEvmFacilitator::new(Arc::clone(&exact));
        Self {
            devnet,
            exact,
            upto,
            signers: addresses,
        }
    }

    /// What a server requires: `amount` of `token` to `pay_to` under
    /// `scheme` (`exact` with `assetTransferMethod: "permit2"`, or `upto`
    /// naming our first signer).
    pub fn requirements(
        &self,
        scheme: &str,
        token: Address,
        pay_to: Address,
        amount: u64,
    ) -> PaymentRequirements {
        let mut extra = JsonObject::new();
        if scheme == "exact" {
            extra.insert("assetTransferMethod".into(), "permit2".into());
        } else {
            extra.insert(
                "facilitatorAddress".into(),
                self.signers[0].to_string().into(),
            );
        }
        PaymentRequirements {
            scheme: scheme.into(),
            network: ChainId::eip155(31337),
            amount: amount.into(),
            asset: token.to_string(),
            pay_to: pay_to.to_string(),
            max_timeout_seconds: 300,
            extra: Some(extra),
        }
    }

    /// A valid authorization for `requirements` by `from`: random nonce,
    /// deadline five minutes away, valid since 0; `upto` names our first
    /// signer.
    pub fn authorization(
        &self,
        requirements: &PaymentRequirements,
        from: Address,
    ) -> Permit2Authorization {
        let upto = requirements.scheme == "upto";
        Permit2Authorization {
            from,
            permitted: TokenPermissions {
                token: requirements.asset.parse().unwrap(),
                amount: requirements.amount,
            },
            spender: if upto {
                UPTO_PERMIT2_PROXY
            } else {
                EXACT_PERMIT2_PROXY
            },
            nonce: U256::from_be_bytes(B256::random().0),
            deadline: (now() + 300).into(),
            witness: Witness {
                to: requirements.pay_to.parse().unwrap(),
                facilitator: upto.then_some(self.signers[0]),
                valid_after: 0u64.into(),
            },
        }
    }

    /// Dev account #`index` as a signer.
    pub fn payer(&self, index: usize) -> LocalSigner {
        LocalSigner::new(self.devnet.payer(index).signer())
    }

    /// Approves Permit2 for everything of `token` from payer #`index`.
    pub async fn approve(&self, token: Address, index: usize) {
        self.devnet
            .approve_permit2(token, self.devnet.payer(index), U256::MAX)
            .await
            .unwrap();
    }

    /// The number of transactions `address` sent (its nonce).
    pub async fn sent_by(&self, address: Address) -> u64 {
        let count: U256 = serde_json::from_value(
            self.devnet
                .rpc(
                    "eth_getTransactionCount",
                    serde_json::json!([address, "latest"]),
                )
                .await
                .unwrap(),
        )
        .unwrap();
        count.to::<u64>()
    }

    /// Transactions sent by every settlement signer.
    pub async fn sent(&self) -> u64 {
        let mut total = 0;
        for signer in &self.signers {
            total += self.sent_by(*signer).await;
        }
        total
    }

    pub async fn balance(&self, token: Address, owner: Address) -> U256 {
        self.devnet.token_balance(token, owner).await.unwrap()
    }
}

/// `auth` signed by `key` over its Permit2 digest on anvil.
pub fn sign(key: &LocalSigner, auth: Permit2Authorization) -> Permit2Payload {
    let signature = key.sign_hash_sync(&auth.signing_hash(31337)).unwrap();
    Permit2Payload {
        signature: Bytes::copy_from_slice(&signature.as_bytes()),
        permit2_authorization: auth,
    }
}

/// The payment a client sends: `payload` for `accepted`.
pub fn wrap(payload: &Permit2Payload, accepted: &PaymentRequirements) -> PaymentPayload {
    PaymentPayload {
        x402_version: 2,
        payload: payload.to_json(),
        extensions: None,
        resource: None,
        accepted: accepted.clone(),
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn payee() -> Address {
    Address::repeat_byte(0x5e)
}

/// Permit2's address, re-exported for the tests.
pub const PERMIT2: Address = PERMIT2_ADDRESS;

/// `payment` with `extensions.<key>.info = info`.
pub fn with_extension(
    mut payment: PaymentPayload,
    key: &str,
    info: serde_json::Value,
) -> PaymentPayload {
    let extensions = serde_json::json!({ key: { "info": info } });
    payment.extensions = Some(serde_json::from_value(extensions).unwrap());
    payment
}

/// An EIP-2612 permit for Permit2 by `key` on the permit token, as the
/// `eip2612GasSponsoring` info.
pub async fn permit_info(kit: &Kit, key: &LocalSigner, deadline: u64) -> serde_json::Value {
    permit_info_by(kit, key, key.address(), U256::ZERO, deadline)
}

/// An EIP-2612 permit for Permit2 of `owner`'s permit tokens, signed by
/// `signer` with `nonce`.
pub fn permit_info_by(
    kit: &Kit,
    signer: &LocalSigner,
    owner: Address,
    nonce: U256,
    deadline: u64,
) -> serde_json::Value {
    use alloy_sol_types::SolStruct;
    let token = kit.devnet.permit_token();
    let domain = paywire_evm::exact::eip712_domain("Permit Dollar", "1", 31337, token);
    let permit = paywire_evm::contracts::Permit {
        owner,
        spender: PERMIT2,
        value: U256::MAX,
        nonce,
        deadline: U256::from(deadline),
    };
    let signature = signer
        .sign_hash_sync(&permit.eip712_signing_hash(&domain))
        .unwrap();
    serde_json::json!({
        "from": owner.to_string(),
        "asset": token.to_string(),
        "spender": PERMIT2.to_string(),
        "amount": U256::MAX.to_string(),
        "nonce": nonce.to_string(),
        "deadline": deadline.to_string(),
        "signature": Bytes::copy_from_slice(&signature.as_bytes()).to_string(),
        "version": "1",
    })
}
