//! Solana `exact` end to end on the real Solana runtime (litesvm behind the
//! test chain's JSON-RPC server): our client → our gateway → our facilitator
//! service → the chain, replays (sequential, after a restart, and concurrent
//! on two facilitator instances sharing one PostgreSQL ledger), the official
//! TypeScript client as a peer, and the official client's payload vectors.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::routing::get;
use base64::Engine as _;
use paywire_client::X402Client;
use paywire_core::codec::{PAYMENT_SIGNATURE_HEADER, decode_payment_response};
use paywire_core::{PaymentPayload, PluginRegistry, Secret, WalletConfig};
use paywire_facilitator::FacilitatorConfig;
use paywire_gateway::{Gateway, GatewayConfig};
use paywire_litesvm::{DEVNET_GENESIS_HASH, RpcServer, SolanaTestChain, TokenProgram};
use paywire_svm::{SvmKeypair, SvmPlugin};
use serde_json::{Value, json};
use solana_address::Address;
use solana_hash::Hash;

/// Circle's devnet USDC: money prices on `solana-devnet` are paid in it.
const DEVNET_USDC: &str = "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU";
const DEVNET: &str = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1";
/// `$0.01` of a 6-decimal stablecoin.
const PRICE: u64 = 10_000;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The base58 64-byte secret key (`seed ‖ public key`) of `seed`, as
/// wallets export it.
fn secret_base58(seed: [u8; 32]) -> String {
    let address = SvmKeypair::from_seed(&seed).address();
    let mut bytes = seed.to_vec();
    bytes.extend_from_slice(address.as_ref());
    bs58::encode(bytes).into_string()
}

fn registry() -> PluginRegistry {
    PluginRegistry::new().with(Arc::new(SvmPlugin))
}

/// A devnet-shaped chain: Circle's devnet USDC mint, a funded fee payer, a
/// payer holding 1 USDC, a merchant with its token account.
struct Devnet {
    chain: Arc<SolanaTestChain>,
    rpc: RpcServer,
    usdc: Address,
    fee_payer_seed: [u8; 32],
    payer_seed: [u8; 32],
    merchant: Address,
}

impl Devnet {
    fn start() -> std::io::Result<Self> {
        let genesis: Hash = DEVNET_GENESIS_HASH.parse().expect("genesis hash");
        let chain = Arc::new(SolanaTestChain::with_genesis_hash(genesis));
        let usdc: Address = DEVNET_USDC.parse().expect("mint");
        chain.create_mint_at(&usdc, TokenProgram::Token, 6);
        let (fee_payer_seed, payer_seed) = ([0xfe; 32], [0xa1; 32]);
        chain.airdrop(
            &SvmKeypair::from_seed(&fee_payer_seed).address(),
            10_000_000_000,
        );
        let payer = SvmKeypair::from_seed(&payer_seed).address();
        chain.airdrop(&payer, 1_000_000_000);
        chain.mint_to(&usdc, &payer, 1_000_000);
        let merchant = SvmKeypair::from_seed(&[0x3e; 32]).address();
        chain.create_ata(&merchant, &usdc);
        let rpc = RpcServer::start(Arc::clone(&chain))?;
        Ok(Self {
            chain,
            rpc,
            usdc,
            fee_payer_seed,
            payer_seed,
            merchant,
        })
    }

    fn payer(&self) -> Address {
        SvmKeypair::from_seed(&self.payer_seed).address()
    }

    fn balances(&self) -> (u64, u64) {
        (
            self.chain.token_balance(&self.payer(), &self.usdc),
            self.chain.token_balance(&self.merchant, &self.usdc),
        )
    }

    fn facilitator_config(&self, store: &str) -> String {
        format!(
            "store = {store:?}\nreceipt_timeout_seconds = 10\n\
             [[chains]]\nnetwork = \"solana-devnet\"\nrpc_urls = [\"{}\"]\n\
             fee_payer_private_keys = [\"{}\"]\n",
            self.rpc.url(),
            secret_base58(self.fee_payer_seed)
        )
    }

    /// Our paying client with the payer's key and the chain's node.
    fn client(&self, seed: [u8; 32]) -> X402Client {
        let registry = registry();
        let network = registry.networks().resolve(DEVNET).expect("devnet");
        let mut config = WalletConfig::new(Secret::new(secret_base58(seed)));
        config.rpc_urls = vec![(network.clone(), Secret::new(self.rpc.url()))];
        let wallet = registry
            .plugin_for(&network)
            .expect("solana plugin")
            .wallet(&config)
            .expect("wallet side");
        let mut builder = X402Client::builder();
        for registration in wallet.schemes {
            builder = builder.wallet(registration.networks, registration.handler);
        }
        builder.build()
    }
}

/// Serves `router` on a free loopback port.
async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let app = router.into_make_service_with_connect_info::<SocketAddr>();
        let _ = axum::serve(listener, app).await;
    });
    address
}

/// Our facilitator service from `text`, over HTTP; stops when the sender drops.
async fn facilitator(text: &str) -> (String, tokio::sync::oneshot::Sender<()>) {
    let config = FacilitatorConfig::parse_with_env(text, |_| None).expect("facilitator config");
    let state = paywire_facilitator::build(&config, &registry())
        .await
        .expect("facilitator builds with the solana plugin");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        let _ = paywire_facilitator::serve(listener, state, shutdown).await;
    });
    (format!("http://{address}"), stop)
}

/// Our gateway selling `/report` for `$0.01` on Solana devnet to `merchant`.
async fn gateway(facilitator: &str, merchant: &Address) -> String {
    let upstream =
        serve(axum::Router::new().route("/report", get(|| async { "solana report" }))).await;
    let text = format!(
        "public_origin = \"http://shop.example\"\nupstream = \"http://{upstream}\"\n\
         [[facilitators]]\nurl = \"{facilitator}\"\n\
         [[routes]]\nmethod = \"GET\"\npath = \"/report\"\n\
         [[routes.accepts]]\nnetwork = \"solana-devnet\"\nprice = \"$0.01\"\npay_to = \"{merchant}\"\n"
    );
    let config = GatewayConfig::parse_with_env(&text, |_| None).expect("gateway config");
    let gateway = Gateway::from_config(&config, &registry()).expect("gateway builds");
    format!("http://{}/report", serve(gateway.router()).await)
}

fn sqlite_store(dir: &Path) -> String {
    dir.join("ledger.sqlite").display().to_string()
}

/// A signed payment for `url`'s offer, not sent.
async fn signed_header(client: &X402Client, http: &reqwest::Client, url: &str) -> String {
    let unpaid = http.get(url).send().await.expect("unpaid request");
    assert_eq!(unpaid.status().as_u16(), 402);
    let required = client.read_payment_required(unpaid).await.expect("offer");
    client.prepare(&required).await.expect("signed").header
}

fn decode_header(header: &str) -> PaymentPayload {
    let json = base64::engine::general_purpose::STANDARD
        .decode(header)
        .expect("base64");
    serde_json::from_slice(&json).expect("payment payload")
}

/// The `payment-identifier` id a payment carries, if any.
fn payment_id(payment: &PaymentPayload) -> Option<String> {
    let extensions = serde_json::to_value(payment.extensions.as_ref()?).ok()?;
    extensions["payment-identifier"]["info"]["id"]
        .as_str()
        .map(str::to_owned)
}

/// `POST /settle` of `payment` at `facilitator`, as a resource server sends it.
async fn settle(http: &reqwest::Client, facilitator: &str, payment: &PaymentPayload) -> Value {
    let body = json!({
        "x402Version": 2,
        "paymentPayload": payment,
        "paymentRequirements": payment.accepted,
    });
    http.post(format!("{facilitator}/settle"))
        .json(&body)
        .send()
        .await
        .expect("settle answered")
        .json()
        .await
        .expect("settle JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_pays_our_gateway_through_our_facilitator_on_the_solana_runtime() -> TestResult {
    let devnet = Devnet::start()?;
    let dir = tempfile::tempdir()?;
    let (facilitator, _stop) =
        facilitator(&devnet.facilitator_config(&sqlite_store(dir.path()))).await;
    let url = gateway(&facilitator, &devnet.merchant).await;
    let http = reqwest::Client::new();

    let unpaid = http.get(&url).send().await?;
    assert_eq!(unpaid.status().as_u16(), 402);
    let required = devnet
        .client(devnet.payer_seed)
        .read_payment_required(unpaid)
        .await?;
    let offer = &required.accepts[0];
    assert_eq!(
        (offer.network.as_str(), offer.asset.as_str()),
        (DEVNET, DEVNET_USDC)
    );
    let fee_payer = SvmKeypair::from_seed(&devnet.fee_payer_seed)
        .address()
        .to_string();
    assert_eq!(
        offer.extra.as_ref().and_then(|e| e["feePayer"].as_str()),
        Some(fee_payer.as_str()),
        "the fee payer comes from the facilitator's /supported"
    );

    let client = devnet.client(devnet.payer_seed);
    let response = client.send(&http, http.get(&url).build()?).await?;
    assert_eq!(response.status().as_u16(), 200);
    let receipt = response
        .headers()
        .get("payment-response")
        .and_then(|v| decode_payment_response(v.as_bytes()).ok())
        .expect("a receipt");
    assert!(receipt.success);
    assert_eq!(
        receipt.payer.as_deref(),
        Some(devnet.payer().to_string().as_str())
    );
    assert_eq!(response.text().await?, "solana report");
    assert_eq!(
        devnet.balances(),
        (1_000_000 - PRICE, PRICE),
        "exactly the price moved"
    );
    let signature = receipt.transaction.parse()?;
    assert!(
        devnet.chain.signature_status(&signature).is_some(),
        "the receipt names the landed transaction"
    );

    // The very same signed transaction again: nothing is served, nothing moves.
    let header = signed_header(&client, &http, &url).await;
    let first = http
        .get(&url)
        .header(PAYMENT_SIGNATURE_HEADER, &header)
        .send()
        .await?;
    assert_eq!(first.status().as_u16(), 200);
    let again = http
        .get(&url)
        .header(PAYMENT_SIGNATURE_HEADER, &header)
        .send()
        .await?;
    assert_ne!(
        again.status().as_u16(),
        200,
        "a replayed transaction buys nothing"
    );
    assert_eq!(devnet.balances(), (1_000_000 - 2 * PRICE, 2 * PRICE));
    assert_eq!(devnet.chain.sends().executed, 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_transaction_settles_once_also_after_a_facilitator_restart() -> TestResult {
    let devnet = Devnet::start()?;
    let dir = tempfile::tempdir()?;
    let store = sqlite_store(dir.path());
    let (first, stop_first) = facilitator(&devnet.facilitator_config(&store)).await;
    let url = gateway(&first, &devnet.merchant).await;
    let http = reqwest::Client::new();
    let signed =
        decode_header(&signed_header(&devnet.client(devnet.payer_seed), &http, &url).await);
    // Our client sends a `payment-identifier`: a retry carrying it is
    // idempotent (the same answer, nothing sent again).
    assert!(payment_id(&signed).is_some());
    let settled = settle(&http, &first, &signed).await;
    assert_eq!(settled["success"], true, "{settled}");
    let retried = settle(&http, &first, &signed).await;
    assert_eq!(
        retried, settled,
        "the same answer to the same payment identifier"
    );
    assert_eq!(devnet.chain.sends().received, 1, "nothing was sent again");

    // The same transaction without the identifier: a replay.
    let mut payment = signed.clone();
    payment.extensions = None;
    let again = settle(&http, &first, &payment).await;
    assert_eq!(again["success"], false, "{again}");
    assert_eq!(again["transaction"], "", "{again}");

    // A new process on the same ledger: the in-memory guard is gone, the
    // ledger still knows the transaction.
    drop(stop_first);
    let (second, _stop) = facilitator(&devnet.facilitator_config(&store)).await;
    let after_restart = settle(&http, &second, &payment).await;
    assert_eq!(after_restart["success"], false, "{after_restart}");
    let mut reworded = payment.clone();
    reworded.accepted.max_timeout_seconds += 1;
    let reworded = settle(&http, &second, &reworded).await;
    assert_eq!(reworded["success"], false, "{reworded}");
    assert_eq!(devnet.balances(), (1_000_000 - PRICE, PRICE), "moved once");
    assert_eq!(devnet.chain.sends().executed, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_facilitators_on_one_postgres_settle_one_transaction_once() -> TestResult {
    let Some(cluster) = paywire_testkit::postgres::PgCluster::start_or_skip().await? else {
        return Ok(());
    };
    let devnet = Devnet::start()?;
    let text = devnet.facilitator_config(cluster.url());
    let (first, _stop_first) = facilitator(&text).await;
    let (second, _stop_second) = facilitator(&text).await;
    let url = gateway(&first, &devnet.merchant).await;
    let http = reqwest::Client::new();
    let client = devnet.client(devnet.payer_seed);
    let mut payment = decode_header(&signed_header(&client, &http, &url).await);
    // Anonymous callers: no payment identifier makes one a retry of another.
    payment.extensions = None;
    // The same transaction under other requirements: one spend, two spellings.
    let mut reworded = payment.clone();
    reworded.accepted.max_timeout_seconds += 1;

    // Hold the chain's execution so both settlements are in flight together.
    devnet.chain.hold_sends(true);
    let (a, b, c) = tokio::join!(
        settle(&http, &first, &payment),
        settle(&http, &second, &payment),
        async {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            devnet.chain.release_held();
            devnet.chain.hold_sends(false);
            settle(&http, &second, &reworded).await
        }
    );
    let answers = [&a, &b, &c];
    let successes = answers
        .iter()
        .filter(|answer| answer["success"] == true)
        .count();
    assert_eq!(successes, 1, "exactly one success: {answers:?}");
    assert_eq!(devnet.balances(), (1_000_000 - PRICE, PRICE), "moved once");
    assert_eq!(devnet.chain.sends().executed, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_typescript_client_pays_our_gateway_through_our_facilitator() -> TestResult {
    let devnet = Devnet::start()?;
    let dir = tempfile::tempdir()?;
    let (facilitator, _stop) =
        facilitator(&devnet.facilitator_config(&sqlite_store(dir.path()))).await;
    let url = gateway(&facilitator, &devnet.merchant).await;

    let paid = paywire_testkit::peer::ts_svm_client_fetch(
        &secret_base58(devnet.payer_seed),
        devnet.rpc.url(),
        DEVNET,
        &url,
    )
    .await?;
    assert_eq!(paid.client_address, devnet.payer().to_string());
    assert_eq!(paid.response.status, 200, "{:?}", paid.response.body);
    assert_eq!(paid.response.body, "solana report");
    assert_eq!(paid.payment_signature_headers.len(), 1, "paid once");
    let receipt = paid
        .response
        .payment_response
        .expect("the SDK decoded our receipt");
    assert_eq!(receipt["success"], true, "{receipt}");
    assert_eq!(receipt["network"], DEVNET);
    assert_eq!(
        devnet.balances(),
        (1_000_000 - PRICE, PRICE),
        "exactly the price moved"
    );
    Ok(())
}

/// One payload the official client produced for fixed inputs
/// (`tests/svm-interop/payloads-exact-svm.json`, made by its generator).
struct Vector {
    name: String,
    payment: PaymentPayload,
    network: String,
    genesis: &'static str,
    mint: Address,
    token_program: TokenProgram,
    decimals: u8,
    amount: u64,
    client: Address,
    fee_payer_seed: [u8; 32],
    pay_to: Address,
}

fn seed(hex: &Value) -> [u8; 32] {
    let text = hex.as_str().expect("seed hex");
    let bytes: Vec<u8> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect();
    bytes.try_into().expect("32 bytes")
}

fn address(value: &Value) -> Address {
    value
        .as_str()
        .expect("address")
        .parse()
        .expect("base58 address")
}

fn vectors() -> Vec<Vector> {
    let text = include_str!("../../../tests/svm-interop/payloads-exact-svm.json");
    let all: Vec<Value> = serde_json::from_str(text).expect("vectors");
    all.into_iter()
        .map(|v| {
            let inputs = &v["inputs"];
            let network = v["requirements"]["network"]
                .as_str()
                .expect("network")
                .to_owned();
            let genesis = if network == DEVNET {
                DEVNET_GENESIS_HASH
            } else {
                paywire_litesvm::MAINNET_GENESIS_HASH
            };
            let token_program =
                if inputs["tokenProgram"] == paywire_svm::tx::TOKEN_2022_PROGRAM.to_string() {
                    TokenProgram::Token2022
                } else {
                    TokenProgram::Token
                };
            Vector {
                name: v["name"].as_str().expect("name").to_owned(),
                payment: serde_json::from_value(v["paymentPayload"].clone()).expect("payload"),
                network,
                genesis,
                mint: address(&inputs["mint"]),
                token_program,
                decimals: u8::try_from(inputs["decimals"].as_u64().expect("decimals")).expect("u8"),
                amount: v["requirements"]["amount"]
                    .as_str()
                    .expect("amount")
                    .parse()
                    .expect("u64"),
                client: address(&inputs["clientAddress"]),
                fee_payer_seed: seed(&inputs["feePayerSeedHex"]),
                pay_to: address(&inputs["payTo"]),
            }
        })
        .collect()
}

/// A chain holding what `vector` pays with. Its blockhash is made up (the
/// generator had no chain), so the runtime's blockhash check is off: every
/// other check, signatures included, runs as on any cluster.
fn chain_for(vector: &Vector) -> Arc<SolanaTestChain> {
    let chain = Arc::new(SolanaTestChain::with_genesis_hash(
        vector.genesis.parse().expect("genesis hash"),
    ));
    chain.with_svm(|svm| *svm = std::mem::take(svm).with_blockhash_check(false));
    chain.create_mint_at(&vector.mint, vector.token_program, vector.decimals);
    chain.airdrop(
        &SvmKeypair::from_seed(&vector.fee_payer_seed).address(),
        1_000_000_000,
    );
    chain.airdrop(&vector.client, 1_000_000_000);
    chain.mint_to(&vector.mint, &vector.client, vector.amount);
    chain.create_ata(&vector.pay_to, &vector.mint);
    chain
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_of_the_official_client_verify_and_settle_on_our_facilitator() -> TestResult {
    let http = reqwest::Client::new();
    let vectors = vectors();
    assert_eq!(vectors.len(), 6);
    for vector in vectors {
        let chain = chain_for(&vector);
        let rpc = RpcServer::start(Arc::clone(&chain))?;
        let dir = tempfile::tempdir()?;
        // The facilitator sponsors only the mints it lists (the clusters'
        // USDC by default): the vectors' other mints are configured.
        let text = format!(
            "store = {:?}\n[[chains]]\nnetwork = \"{}\"\nrpc_urls = [\"{}\"]\n\
             fee_payer_private_keys = [\"{}\"]\n\
             [[chains.assets]]\nmint = \"{}\"\nsymbol = \"TKN\"\ndecimals = {}\n",
            sqlite_store(dir.path()),
            vector.network,
            rpc.url(),
            secret_base58(vector.fee_payer_seed),
            vector.mint,
            vector.decimals
        );
        let (facilitator, _stop) = facilitator(&text).await;
        let body = json!({
            "x402Version": 2,
            "paymentPayload": vector.payment,
            "paymentRequirements": vector.payment.accepted,
        });
        let verified: Value = http
            .post(format!("{facilitator}/verify"))
            .json(&body)
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(verified["isValid"], true, "{}: {verified}", vector.name);
        assert_eq!(
            verified["payer"],
            vector.client.to_string(),
            "{}",
            vector.name
        );
        let settled = settle(&http, &facilitator, &vector.payment).await;
        assert_eq!(settled["success"], true, "{}: {settled}", vector.name);
        assert_eq!(
            (
                chain.token_balance(&vector.client, &vector.mint),
                chain.token_balance(&vector.pay_to, &vector.mint)
            ),
            (0, vector.amount),
            "{}: exactly the amount moved",
            vector.name
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_whose_blockhash_expired_is_refused_and_moves_nothing() -> TestResult {
    let devnet = Devnet::start()?;
    let dir = tempfile::tempdir()?;
    let (facilitator, _stop) =
        facilitator(&devnet.facilitator_config(&sqlite_store(dir.path()))).await;
    let url = gateway(&facilitator, &devnet.merchant).await;
    let http = reqwest::Client::new();
    let header = signed_header(&devnet.client(devnet.payer_seed), &http, &url).await;
    devnet.chain.expire_blockhash();

    let refused = http
        .get(&url)
        .header(PAYMENT_SIGNATURE_HEADER, &header)
        .send()
        .await?;
    assert_eq!(refused.status().as_u16(), 402);
    let settled = settle(&http, &facilitator, &decode_header(&header)).await;
    assert_eq!(settled["success"], false, "{settled}");
    assert_eq!(
        settled["errorReason"],
        paywire_svm::reasons::BLOCKHASH_EXPIRED.as_str(),
        "{settled}"
    );
    assert_eq!(devnet.balances(), (1_000_000, 0));
    assert_eq!(devnet.chain.sends().received, 0, "nothing was sent");
    Ok(())
}

/// A payer who signs two payments that each spend their whole balance and
/// settles both at once: one settlement at a time per payer, so the second
/// is simulated after the first landed and refused before anything is sent
/// (else it would fail on chain, with the sponsor paying its fee).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_payments_of_one_payer_that_cannot_both_land_send_one_transaction() -> TestResult {
    let devnet = Devnet::start()?;
    let poor_seed = [0xb2; 32];
    let poor = SvmKeypair::from_seed(&poor_seed).address();
    devnet.chain.airdrop(&poor, 1_000_000_000);
    devnet.chain.mint_to(&devnet.usdc, &poor, PRICE);
    let dir = tempfile::tempdir()?;
    let (facilitator, _stop) =
        facilitator(&devnet.facilitator_config(&sqlite_store(dir.path()))).await;
    let url = gateway(&facilitator, &devnet.merchant).await;
    let http = reqwest::Client::new();
    let client = devnet.client(poor_seed);
    let first = decode_header(&signed_header(&client, &http, &url).await);
    let second = decode_header(&signed_header(&client, &http, &url).await);
    assert_ne!(
        first.payload, second.payload,
        "two transactions (two memos)"
    );

    let (a, b) = tokio::join!(
        settle(&http, &facilitator, &first),
        settle(&http, &facilitator, &second)
    );
    let successes = [&a, &b]
        .iter()
        .filter(|answer| answer["success"] == true)
        .count();
    assert_eq!(successes, 1, "{a} {b}");
    assert_eq!(
        devnet.chain.sends().received,
        1,
        "the second was never sent"
    );
    assert_eq!(devnet.chain.token_balance(&poor, &devnet.usdc), 0);
    Ok(())
}

/// A stranger's transaction (the client's signature does not verify) is
/// refused before the facilitator asks the node anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_payment_costs_no_node_call() -> TestResult {
    let devnet = Devnet::start()?;
    let dir = tempfile::tempdir()?;
    let (facilitator, _stop) =
        facilitator(&devnet.facilitator_config(&sqlite_store(dir.path()))).await;
    let url = gateway(&facilitator, &devnet.merchant).await;
    let http = reqwest::Client::new();
    let mut payment =
        decode_header(&signed_header(&devnet.client(devnet.payer_seed), &http, &url).await);
    let engine = base64::engine::general_purpose::STANDARD;
    let mut wire = engine.decode(
        payment.payload["transaction"]
            .as_str()
            .expect("transaction"),
    )?;
    // One compact-u16 byte (2 signatures), then the fee payer's 64 bytes,
    // then the client's signature.
    wire[1 + 64 + 10] ^= 0x01;
    payment
        .payload
        .insert("transaction".into(), json!(engine.encode(&wire)));

    devnet.rpc.clear_requests();
    let body = json!({"x402Version": 2, "paymentPayload": payment,
                      "paymentRequirements": payment.accepted});
    let verified: Value = http
        .post(format!("{facilitator}/verify"))
        .json(&body)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(verified["isValid"], false);
    assert_eq!(
        verified["invalidReason"],
        paywire_svm::reasons::SIGNATURE.as_str(),
        "{verified}"
    );
    assert_eq!(
        devnet.rpc.requests().len(),
        0,
        "{:?}",
        devnet.rpc.requests()
    );
    Ok(())
}
