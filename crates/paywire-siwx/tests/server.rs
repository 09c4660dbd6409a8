//! Server-side sign-in validation: the happy paths (EVM EOA, Solana) and one
//! test per rejection of field lesson 23 and issue 7's security list.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use paywire_core::ChainId;
use paywire_evm::LocalSigner;
use paywire_evm::siwx::{EvmSiwxSigner, EvmVerifier};
use paywire_siwx::time::format_rfc3339;
use paywire_siwx::{
    AccessPolicy, ClientError, EntitlementStore, MemoryStore, NonceStore, SiwxError, SiwxExtension,
    SiwxProof, SiwxServer, SiwxServerConfig, SolanaSiwxSigner, SolanaVerifier, SqliteStore,
    VerifierRegistry, VerifyError, select_chain, sign_in,
};

const ORIGIN: &str = "https://api.example.com";
const HOST: &str = "api.example.com";
const BASE: &str = "eip155:8453";
const SOLANA: &str = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp";
/// 2024-01-15T10:30:00.000Z
const T0: u64 = 1_705_314_600_000;
const MINUTE: u64 = 60_000;

/// EOA-only EVM and Solana verifiers.
fn verifiers() -> VerifierRegistry {
    VerifierRegistry::new()
        .with(Arc::new(EvmVerifier::new()))
        .with(Arc::new(SolanaVerifier))
}

struct Fixture {
    server: SiwxServer,
    clock: Arc<AtomicU64>,
    accepted: Vec<ChainId>,
}

impl Fixture {
    fn with(config: SiwxServerConfig, nonces: Arc<dyn NonceStore>) -> Self {
        let clock = Arc::new(AtomicU64::new(T0));
        let source = clock.clone();
        let server = SiwxServer::new(config, verifiers(), nonces)
            .unwrap()
            .with_clock(Arc::new(move || source.load(Ordering::SeqCst)));
        Self {
            server,
            clock,
            accepted: vec![chain(BASE), chain(SOLANA)],
        }
    }

    fn new() -> Self {
        Self::with(
            SiwxServerConfig::new(ORIGIN).statement("Sign in to access premium data"),
            Arc::new(MemoryStore::new()),
        )
    }

    fn advance(&self, ms: u64) {
        self.clock.fetch_add(ms, Ordering::SeqCst);
    }

    fn now(&self) -> u64 {
        self.clock.load(Ordering::SeqCst)
    }

    async fn challenge(&self, path: &str) -> SiwxExtension {
        self.server.challenge(path, &self.accepted).await.unwrap()
    }

    async fn verify(
        &self,
        proof: &SiwxProof,
        path: &str,
    ) -> Result<paywire_siwx::SignedIn, SiwxError> {
        self.server
            .verify_header(proof.to_header().as_bytes(), path, &self.accepted)
            .await
    }
}

fn chain(id: &str) -> ChainId {
    ChainId::parse(id).unwrap()
}

fn evm_wallet() -> EvmSiwxSigner<LocalSigner> {
    EvmSiwxSigner::new(LocalSigner::random())
}

fn solana_wallet(seed: u8) -> SolanaSiwxSigner {
    SolanaSiwxSigner::from_seed(&[seed; 32])
}

async fn evm_proof(ext: &SiwxExtension, wallet: &EvmSiwxSigner<LocalSigner>) -> SiwxProof {
    sign_in(ext, HOST, &chain(BASE), wallet).await.unwrap()
}

#[tokio::test]
async fn challenge_uses_configured_origin_and_fresh_nonces() {
    let f = Fixture::new();
    let a = f.challenge("/premium-data").await;
    let b = f.challenge("/premium-data").await;
    assert_eq!(a.info.domain, HOST);
    assert_eq!(a.info.uri, "https://api.example.com/premium-data");
    assert_eq!(a.info.resources.as_deref(), Some(&[a.info.uri.clone()][..]));
    assert_eq!(a.info.issued_at, "2024-01-15T10:30:00.000Z");
    assert_eq!(
        a.info.expiration_time.as_deref(),
        Some("2024-01-15T10:35:00.000Z")
    );
    assert_eq!(
        a.info.statement.as_deref(),
        Some("Sign in to access premium data")
    );
    assert_eq!(a.info.nonce.len(), 32);
    assert!(a.info.nonce.bytes().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a.info.nonce, b.info.nonce);
    let chains: Vec<_> = a
        .supported_chains
        .iter()
        .map(|c| (c.chain_id.as_str(), c.kind.as_str()))
        .collect();
    assert_eq!(chains, [(BASE, "eip191"), (SOLANA, "ed25519")]);
    // Networks without a verifier are not advertised.
    let only = f
        .server
        .challenge(
            "/x",
            &[chain("cosmos:cosmoshub-4"), chain(BASE), chain(BASE)],
        )
        .await
        .unwrap();
    assert_eq!(only.supported_chains.len(), 1);
    assert!(matches!(
        f.server.challenge("premium", &f.accepted).await,
        Err(SiwxError::InvalidPath(_))
    ));
}

#[tokio::test]
async fn evm_eoa_sign_in_succeeds() {
    let f = Fixture::new();
    let ext = f.challenge("/premium-data").await;
    let wallet = evm_wallet();
    assert_eq!(
        select_chain(&ext, &[chain(SOLANA), chain(BASE)]),
        Some(chain(BASE))
    );
    let proof = evm_proof(&ext, &wallet).await;
    assert_eq!(proof.signature_scheme.as_deref(), Some("eip191"));
    f.advance(MINUTE);
    let signed = f.verify(&proof, "/premium-data").await.unwrap();
    assert_eq!(signed.address, wallet.signer_address());
    assert_eq!(signed.network, chain(BASE));
    assert_eq!(signed.nonce, ext.info.nonce);
}

trait SignerAddress {
    fn signer_address(&self) -> String;
}

impl SignerAddress for EvmSiwxSigner<LocalSigner> {
    fn signer_address(&self) -> String {
        paywire_siwx::SiwxSigner::address(self)
    }
}

#[tokio::test]
async fn solana_ed25519_valid_and_invalid() {
    let f = Fixture::new();
    let ext = f.challenge("/premium-data").await;
    let wallet = solana_wallet(1);
    let proof = sign_in(&ext, HOST, &chain(SOLANA), &wallet).await.unwrap();
    let signed = f.verify(&proof, "/premium-data").await.unwrap();
    assert_eq!(signed.network, chain(SOLANA));
    assert_eq!(signed.address, proof.address);

    // Signature by another key for this address.
    let ext = f.challenge("/premium-data").await;
    let mut forged = sign_in(&ext, HOST, &chain(SOLANA), &solana_wallet(2))
        .await
        .unwrap();
    forged.address = proof.address.clone();
    assert!(matches!(
        f.verify(&forged, "/premium-data").await,
        Err(SiwxError::Signature(VerifyError::InvalidSignature))
    ));
    // Garbage signature encoding.
    forged.signature = "0xdeadbeef".into();
    assert!(matches!(
        f.verify(&forged, "/premium-data").await,
        Err(SiwxError::Signature(VerifyError::MalformedSignature(_)))
    ));
}

#[tokio::test]
async fn replayed_proof_is_rejected() {
    let f = Fixture::new();
    let ext = f.challenge("/premium-data").await;
    let proof = evm_proof(&ext, &evm_wallet()).await;
    f.verify(&proof, "/premium-data").await.unwrap();
    assert!(matches!(
        f.verify(&proof, "/premium-data").await,
        Err(SiwxError::NonceReused)
    ));
}

#[tokio::test]
async fn concurrent_replays_let_exactly_one_through() {
    let f = Fixture::with(
        SiwxServerConfig::new(ORIGIN),
        Arc::new(SqliteStore::in_memory().await.unwrap()),
    );
    let ext = f.challenge("/premium-data").await;
    let proof = evm_proof(&ext, &evm_wallet()).await;
    let (a, b, c) = tokio::join!(
        f.verify(&proof, "/premium-data"),
        f.verify(&proof, "/premium-data"),
        f.verify(&proof, "/premium-data"),
    );
    assert_eq!(
        [a.is_ok(), b.is_ok(), c.is_ok()]
            .iter()
            .filter(|ok| **ok)
            .count(),
        1
    );
}

#[tokio::test]
async fn reused_nonce_with_a_new_signature_is_rejected() {
    let f = Fixture::new();
    let ext = f.challenge("/premium-data").await;
    f.verify(&evm_proof(&ext, &evm_wallet()).await, "/premium-data")
        .await
        .unwrap();
    // Another wallet answers the same (already consumed) challenge.
    let second = evm_proof(&ext, &evm_wallet()).await;
    assert!(matches!(
        f.verify(&second, "/premium-data").await,
        Err(SiwxError::NonceReused)
    ));
}

#[tokio::test]
async fn foreign_nonce_is_rejected() {
    let f = Fixture::new();
    let mut ext = f.challenge("/premium-data").await;
    ext.info.nonce = "0123456789abcdef0123456789abcdef".into();
    let proof = evm_proof(&ext, &evm_wallet()).await;
    assert!(matches!(
        f.verify(&proof, "/premium-data").await,
        Err(SiwxError::UnknownNonce)
    ));
    // A nonce issued by another server (its own store) is foreign too.
    let other = Fixture::new();
    let theirs = other.challenge("/premium-data").await;
    let proof = evm_proof(&theirs, &evm_wallet()).await;
    assert!(matches!(
        f.verify(&proof, "/premium-data").await,
        Err(SiwxError::UnknownNonce)
    ));
}

#[tokio::test]
async fn old_issued_at_is_rejected() {
    let f = Fixture::new();
    let ext = f.challenge("/premium-data").await;
    let proof = evm_proof(&ext, &evm_wallet()).await;
    f.advance(5 * MINUTE + 1);
    assert!(matches!(
        f.verify(&proof, "/premium-data").await,
        Err(SiwxError::IssuedTooLongAgo { .. })
    ));
}

#[tokio::test]
async fn future_issued_at_is_rejected() {
    let f = Fixture::new();
    let mut ext = f.challenge("/premium-data").await;
    ext.info.issued_at = format_rfc3339(f.now() + MINUTE);
    let proof = evm_proof(&ext, &evm_wallet()).await;
    assert!(matches!(
        f.verify(&proof, "/premium-data").await,
        Err(SiwxError::IssuedInFuture)
    ));
}

#[tokio::test]
async fn passed_expiration_time_is_rejected() {
    let mut config = SiwxServerConfig::new(ORIGIN);
    config.challenge_ttl_ms = MINUTE;
    let f = Fixture::with(config, Arc::new(MemoryStore::new()));
    let ext = f.challenge("/premium-data").await;
    let proof = evm_proof(&ext, &evm_wallet()).await;
    f.advance(2 * MINUTE);
    assert!(matches!(
        f.verify(&proof, "/premium-data").await,
        Err(SiwxError::Expired)
    ));
    // Stripping expirationTime does not help: the nonce itself expired.
    let mut ext = f.challenge("/premium-data").await;
    ext.info.expiration_time = None;
    let proof = evm_proof(&ext, &evm_wallet()).await;
    f.advance(2 * MINUTE);
    assert!(matches!(
        f.verify(&proof, "/premium-data").await,
        Err(SiwxError::NonceExpired)
    ));
}

#[tokio::test]
async fn not_before_in_the_future_is_rejected() {
    let f = Fixture::new();
    let mut ext = f.challenge("/premium-data").await;
    ext.info.not_before = Some(format_rfc3339(f.now() + MINUTE));
    let proof = evm_proof(&ext, &evm_wallet()).await;
    assert!(matches!(
        f.verify(&proof, "/premium-data").await,
        Err(SiwxError::NotYetValid)
    ));
    // Once notBefore has passed (and everything else still holds) it is accepted.
    f.advance(MINUTE);
    f.verify(&proof, "/premium-data").await.unwrap();
}

#[tokio::test]
async fn wrong_domain_is_rejected() {
    let f = Fixture::new();
    let mut ext = f.challenge("/premium-data").await;
    ext.info.domain = "evil.example.com".into();
    let proof = sign_in(&ext, "evil.example.com", &chain(BASE), &evm_wallet())
        .await
        .unwrap();
    assert!(matches!(
        f.verify(&proof, "/premium-data").await,
        Err(SiwxError::DomainMismatch { .. })
    ));
}

#[tokio::test]
async fn host_header_spoofing_cannot_change_the_domain() {
    // The server never reads a Host header: a client that talks to us
    // through `localhost:8080` (or lies in Host) still gets, and must sign,
    // the configured domain.
    let f = Fixture::new();
    let ext = f.challenge("/premium-data").await;
    assert_eq!(ext.info.domain, HOST);
    let mut spoofed = ext.clone();
    spoofed.info.domain = "localhost:8080".into();
    spoofed.info.uri = "http://localhost:8080/premium-data".into();
    let proof = sign_in(&spoofed, "localhost:8080", &chain(BASE), &evm_wallet())
        .await
        .unwrap();
    assert!(matches!(
        f.verify(&proof, "/premium-data").await,
        Err(SiwxError::DomainMismatch { .. })
    ));
}

#[tokio::test]
async fn client_refuses_a_challenge_for_another_host() {
    let f = Fixture::new();
    let ext = f.challenge("/premium-data").await;
    assert!(matches!(
        sign_in(&ext, "phisher.example", &chain(BASE), &evm_wallet()).await,
        Err(ClientError::DomainMismatch { .. })
    ));
    assert!(matches!(
        sign_in(&ext, HOST, &chain("eip155:1"), &evm_wallet()).await,
        Err(ClientError::NoMatchingChain)
    ));
    assert!(matches!(
        sign_in(&ext, HOST, &chain(SOLANA), &evm_wallet()).await,
        Err(ClientError::NoMatchingChain)
    ));
}

#[tokio::test]
async fn proof_for_resource_a_is_not_usable_on_b() {
    let f = Fixture::new();
    let ext = f.challenge("/a").await;
    let proof = evm_proof(&ext, &evm_wallet()).await;
    assert!(matches!(
        f.verify(&proof, "/b").await,
        Err(SiwxError::UriMismatch { .. })
    ));
    // Re-signing A's nonce with B's URI: the nonce is bound to A.
    let mut moved = ext.clone();
    moved.info.uri = "https://api.example.com/b".into();
    let proof = evm_proof(&moved, &evm_wallet()).await;
    assert!(matches!(
        f.verify(&proof, "/b").await,
        Err(SiwxError::NonceForOtherResource)
    ));
    // The untouched proof still works where it belongs.
    let proof = evm_proof(&ext, &evm_wallet()).await;
    f.verify(&proof, "/a").await.unwrap();
}

#[tokio::test]
async fn signature_by_another_key_is_rejected() {
    let f = Fixture::new();
    let ext = f.challenge("/premium-data").await;
    let victim = evm_wallet();
    let mut proof = evm_proof(&ext, &evm_wallet()).await;
    proof.address = victim.signer_address();
    assert!(matches!(
        f.verify(&proof, "/premium-data").await,
        Err(SiwxError::Signature(VerifyError::InvalidSignature))
    ));
    // A failed attempt does not burn the nonce for the real wallet.
    let proof = evm_proof(&ext, &victim).await;
    f.verify(&proof, "/premium-data").await.unwrap();
}

#[tokio::test]
async fn field_changed_after_signing_is_rejected() {
    let f = Fixture::new();
    let ext = f.challenge("/premium-data").await;
    let mut proof = evm_proof(&ext, &evm_wallet()).await;
    proof.statement = Some("Something else".into());
    assert!(matches!(
        f.verify(&proof, "/premium-data").await,
        Err(SiwxError::Signature(VerifyError::InvalidSignature))
    ));
}

#[tokio::test]
async fn unsupported_chain_and_type_are_rejected() {
    let f = Fixture::new();
    let mut ext = f.challenge("/premium-data").await;
    let mut entry = ext.supported_chains[0].clone();
    entry.chain_id = "eip155:1".into();
    ext.supported_chains.push(entry);
    let proof = sign_in(&ext, HOST, &chain("eip155:1"), &evm_wallet())
        .await
        .unwrap();
    assert!(matches!(
        f.verify(&proof, "/premium-data").await,
        Err(SiwxError::UnsupportedChain(_))
    ));

    let ext = f.challenge("/premium-data").await;
    let mut proof = evm_proof(&ext, &evm_wallet()).await;
    proof.kind = "ed25519".into();
    assert!(matches!(
        f.verify(&proof, "/premium-data").await,
        Err(SiwxError::TypeMismatch { .. })
    ));
    proof.kind = "eip191".into();
    proof.chain_id = "not a chain".into();
    assert!(matches!(
        f.verify(&proof, "/premium-data").await,
        Err(SiwxError::UnsupportedChain(_))
    ));
}

#[tokio::test]
async fn malformed_inputs_are_typed_errors() {
    let f = Fixture::new();
    let accepted = f.accepted.clone();
    assert!(matches!(
        f.server.verify_header(b"!!!", "/p", &accepted).await,
        Err(SiwxError::MalformedHeader(_))
    ));
    let ext = f.challenge("/p").await;
    let good = evm_proof(&ext, &evm_wallet()).await;

    let mut proof = good.clone();
    proof.version = "2".into();
    assert!(matches!(
        f.verify(&proof, "/p").await,
        Err(SiwxError::UnsupportedVersion(_))
    ));
    let mut proof = good.clone();
    proof.issued_at = "2024-01-15 10:30:00".into();
    assert!(matches!(
        f.verify(&proof, "/p").await,
        Err(SiwxError::InvalidTimestamp {
            field: "issuedAt",
            ..
        })
    ));
    let mut proof = good.clone();
    proof.expiration_time = Some("tomorrow".into());
    assert!(matches!(
        f.verify(&proof, "/p").await,
        Err(SiwxError::InvalidTimestamp {
            field: "expirationTime",
            ..
        })
    ));
    let mut proof = good.clone();
    proof.address = proof.address.to_ascii_lowercase();
    assert!(matches!(
        f.verify(&proof, "/p").await,
        Err(SiwxError::InvalidMessage(_))
    ));
    let mut proof = good.clone();
    proof.statement = Some("two\nlines".into());
    assert!(matches!(
        f.verify(&proof, "/p").await,
        Err(SiwxError::InvalidMessage(_))
    ));
    // After all those, the genuine proof is still accepted.
    f.verify(&good, "/p").await.unwrap();
}

#[tokio::test]
async fn returning_wallet_with_entitlements_and_pass_expiry() {
    let f = Fixture::new();
    let store = SqliteStore::in_memory().await.unwrap();
    let payer = evm_wallet();
    let stranger = evm_wallet();
    let scope = "/api/*";
    // Settlement succeeded for `payer`: record a one-hour pass.
    let pass = AccessPolicy::Pass {
        duration_ms: 60 * MINUTE,
    };
    store
        .grant(&pass.entitlement(&payer.signer_address(), BASE, scope, f.now()))
        .await
        .unwrap();

    for (wallet, expected) in [(&payer, true), (&stranger, false)] {
        let ext = f.challenge("/api/data").await;
        let signed = f
            .verify(&evm_proof(&ext, wallet).await, "/api/data")
            .await
            .unwrap();
        let access = store
            .check(&signed.address, signed.network.as_str(), scope, f.now())
            .await
            .unwrap();
        assert_eq!(access.is_some(), expected);
    }

    f.advance(61 * MINUTE);
    let ext = f.challenge("/api/data").await;
    let signed = f
        .verify(&evm_proof(&ext, &payer).await, "/api/data")
        .await
        .unwrap();
    assert!(
        store
            .check(&signed.address, signed.network.as_str(), scope, f.now())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn rpc_outage_is_a_server_fault_not_an_invalid_signature() {
    use paywire_evm::rpc::RpcClient;
    let rpc = RpcClient::new(
        vec!["http://127.0.0.1:9".into()],
        std::time::Duration::from_secs(2),
    )
    .unwrap();
    let mut verifiers = verifiers();
    verifiers.register(Arc::new(
        EvmVerifier::new().with_rpc(&chain(BASE), Arc::new(rpc)),
    ));
    let server = SiwxServer::new(
        SiwxServerConfig::new(ORIGIN),
        verifiers,
        Arc::new(MemoryStore::new()),
    )
    .unwrap();
    let accepted = [chain(BASE)];
    let ext = server.challenge("/p", &accepted).await.unwrap();
    // Claims to be some smart wallet: ECDSA recovery fails, the RPC check is needed.
    let wallet = EvmSiwxSigner::for_wallet(LocalSigner::random(), LocalSigner::random().address());
    let proof = sign_in(&ext, HOST, &chain(BASE), &wallet).await.unwrap();
    let error = server
        .verify_proof(&proof, "/p", &accepted)
        .await
        .unwrap_err();
    assert!(
        matches!(error, SiwxError::Signature(VerifyError::Rpc(_))),
        "{error:?}"
    );
    assert!(error.is_server_fault());
    assert_eq!(error.reason(), "siwx_verifier_unavailable");
}
