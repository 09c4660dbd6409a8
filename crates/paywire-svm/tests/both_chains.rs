//! One route offering Base-style EVM (anvil with Circle's USDC) and Solana
//! (the litesvm test chain): one facilitator settles both, the gateway lists
//! both, and the paying client's `prefer` / `only` rules decide which chain
//! pays. Each plugin is registered in one line; no other crate names a chain.

use std::net::SocketAddr;
use std::sync::Arc;

use alloy_primitives::Address as EvmAddress;
use axum::routing::get;
use paywire_client::{SelectionPolicy, X402Client};
use paywire_core::codec::decode_payment_response;
use paywire_core::{PluginRegistry, Secret, WalletConfig};
use paywire_evm::EvmPlugin;
use paywire_facilitator::FacilitatorConfig;
use paywire_gateway::{Gateway, GatewayConfig};
use paywire_litesvm::{DEVNET_GENESIS_HASH, RpcServer, SolanaTestChain, TokenProgram};
use paywire_svm::{SvmKeypair, SvmPlugin};
use paywire_testkit::Devnet;
use solana_address::Address;

const DEVNET_USDC: &str = "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU";
const PRICE: u64 = 10_000;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn registry() -> PluginRegistry {
    PluginRegistry::new()
        .with(Arc::new(EvmPlugin))
        .with(Arc::new(SvmPlugin))
}

fn secret_base58(seed: [u8; 32]) -> String {
    let mut bytes = seed.to_vec();
    bytes.extend_from_slice(SvmKeypair::from_seed(&seed).address().as_ref());
    bs58::encode(bytes).into_string()
}

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

/// Both chains, funded: the EVM devnet and a Solana chain with devnet USDC.
struct Chains {
    evm: Devnet,
    solana: Arc<SolanaTestChain>,
    solana_rpc: RpcServer,
    usdc: Address,
    evm_merchant: EvmAddress,
    solana_merchant: Address,
    solana_payer_seed: [u8; 32],
    fee_payer_seed: [u8; 32],
}

impl Chains {
    async fn start() -> Result<Self, Box<dyn std::error::Error>> {
        let evm = Devnet::start().await?;
        let solana = Arc::new(SolanaTestChain::with_genesis_hash(
            DEVNET_GENESIS_HASH.parse()?,
        ));
        let usdc: Address = DEVNET_USDC.parse()?;
        solana.create_mint_at(&usdc, TokenProgram::Token, 6);
        let (fee_payer_seed, solana_payer_seed) = ([0xfe; 32], [0xa1; 32]);
        solana.airdrop(
            &SvmKeypair::from_seed(&fee_payer_seed).address(),
            10_000_000_000,
        );
        let payer = SvmKeypair::from_seed(&solana_payer_seed).address();
        solana.airdrop(&payer, 1_000_000_000);
        solana.mint_to(&usdc, &payer, 1_000_000);
        let solana_merchant = SvmKeypair::from_seed(&[0x3e; 32]).address();
        solana.create_ata(&solana_merchant, &usdc);
        let solana_rpc = RpcServer::start(Arc::clone(&solana))?;
        Ok(Self {
            evm,
            solana,
            solana_rpc,
            usdc,
            evm_merchant: EvmAddress::repeat_byte(0xbe),
            solana_merchant,
            solana_payer_seed,
            fee_payer_seed,
        })
    }

    /// One facilitator, one `[[chains]]` entry per chain family.
    async fn facilitator(&self, store: &std::path::Path) -> String {
        let store = store.display().to_string();
        let text = format!(
            "store = {store:?}\nreceipt_timeout_seconds = 20\n\
             [[chains]]\nnetwork = \"{evm}\"\nrpc_urls = [\"{evm_rpc}\"]\n\
             signer_private_keys = [\"{evm_key}\"]\ngas_limit = 300000\nmax_fee_per_gas_gwei = 100\n\
             [[chains.assets]]\naddress = \"{usdc}\"\nsymbol = \"USDC\"\ndecimals = 6\n\
             eip712_name = \"USD Coin\"\neip712_version = \"2\"\n\
             [[chains]]\nnetwork = \"solana-devnet\"\nrpc_urls = [\"{solana_rpc}\"]\n\
             fee_payer_private_keys = [\"{fee_payer}\"]\n",
            evm = self.evm.network(),
            evm_rpc = self.evm.rpc_url(),
            evm_key = self.evm.usdc_owner().private_key,
            usdc = self.evm.usdc(),
            solana_rpc = self.solana_rpc.url(),
            fee_payer = secret_base58(self.fee_payer_seed),
        );
        let config = FacilitatorConfig::parse_with_env(&text, |_| None).expect("config");
        let state = paywire_facilitator::build(&config, &registry())
            .await
            .expect("facilitator builds with both plugins");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let _ = paywire_facilitator::serve(listener, state, std::future::pending()).await;
        });
        format!("http://{address}")
    }

    /// `/report` for `$0.01`, payable on the EVM devnet or on Solana devnet.
    async fn gateway(&self, facilitator: &str) -> String {
        let upstream =
            serve(axum::Router::new().route("/report", get(|| async { "report" }))).await;
        let text = format!(
            "public_origin = \"http://shop.example\"\nupstream = \"http://{upstream}\"\n\
             [[facilitators]]\nurl = \"{facilitator}\"\n\
             [[networks]]\nnetwork = \"{evm}\"\nname = \"Anvil\"\n\
             [networks.asset]\naddress = \"{usdc}\"\nsymbol = \"USDC\"\ndecimals = 6\n\
             eip712_name = \"USD Coin\"\neip712_version = \"2\"\nusd_stable = true\n\
             [[routes]]\nmethod = \"GET\"\npath = \"/report\"\n\
             [[routes.accepts]]\nnetwork = \"{evm}\"\nprice = \"$0.01\"\npay_to = \"{evm_merchant}\"\n\
             [[routes.accepts]]\nnetwork = \"solana-devnet\"\nprice = \"$0.01\"\npay_to = \"{solana_merchant}\"\n",
            evm = self.evm.network(),
            usdc = self.evm.usdc(),
            evm_merchant = self.evm_merchant,
            solana_merchant = self.solana_merchant,
        );
        let config = GatewayConfig::parse_with_env(&text, |_| None).expect("gateway config");
        let gateway = Gateway::from_config(&config, &registry()).expect("gateway builds");
        format!("http://{}/report", serve(gateway.router()).await)
    }

    /// A client holding an EVM and a Solana wallet, choosing by `policy`.
    fn client(&self, policy: SelectionPolicy) -> X402Client {
        let registry = registry();
        let evm_network = registry
            .networks()
            .resolve(self.evm.network())
            .expect("evm");
        let solana_network = registry
            .networks()
            .resolve("solana-devnet")
            .expect("solana");
        let evm_key = self.evm.payer(1).private_key.to_string();
        let mut solana = WalletConfig::new(Secret::new(secret_base58(self.solana_payer_seed)));
        solana.rpc_urls = vec![(solana_network.clone(), Secret::new(self.solana_rpc.url()))];
        let mut builder = X402Client::builder().policy(policy);
        for (network, config) in [
            (evm_network, WalletConfig::new(Secret::new(evm_key))),
            (solana_network, solana),
        ] {
            let wallet = registry
                .plugin_for(&network)
                .expect("plugin")
                .wallet(&config)
                .expect("wallet");
            for registration in wallet.schemes {
                builder = builder.wallet(registration.networks, registration.handler);
            }
        }
        builder.build()
    }

    fn solana_merchant_balance(&self) -> u64 {
        self.solana.token_balance(&self.solana_merchant, &self.usdc)
    }

    async fn evm_merchant_balance(&self) -> u64 {
        let balance = self
            .evm
            .usdc_balance(self.evm_merchant)
            .await
            .expect("balance");
        u64::try_from(balance).expect("small")
    }
}

/// Pays `url` with `client`; the network of the receipt.
async fn pay(client: &X402Client, url: &str) -> String {
    let http = reqwest::Client::new();
    let response = client
        .send(&http, http.get(url).build().expect("request"))
        .await
        .expect("paid");
    assert_eq!(response.status().as_u16(), 200);
    let receipt = response
        .headers()
        .get("payment-response")
        .and_then(|v| decode_payment_response(v.as_bytes()).ok())
        .expect("a receipt");
    assert!(receipt.success);
    receipt.network.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_route_on_both_chains_the_clients_rules_pick_the_chain() -> TestResult {
    let chains = Chains::start().await?;
    let dir = tempfile::tempdir()?;
    let facilitator = chains.facilitator(&dir.path().join("ledger.sqlite")).await;
    let url = chains.gateway(&facilitator).await;
    let networks = registry().networks().clone();
    let solana = chains.solana.caip2();

    // `prefer`: Solana first, though both offers are acceptable.
    let prefer_solana = SelectionPolicy {
        networks: networks.clone(),
        prefer_networks: vec![networks.pattern("solana-devnet")?],
        ..SelectionPolicy::default()
    };
    assert_eq!(pay(&chains.client(prefer_solana), &url).await, solana);
    assert_eq!(chains.solana_merchant_balance(), PRICE);
    assert_eq!(chains.evm_merchant_balance().await, 0);

    // `only`: the EVM chain, whatever else is offered.
    let only_evm = SelectionPolicy {
        networks: networks.clone(),
        allow_networks: vec![networks.pattern(chains.evm.network())?],
        ..SelectionPolicy::default()
    };
    assert_eq!(
        pay(&chains.client(only_evm), &url).await,
        chains.evm.network()
    );
    assert_eq!(chains.evm_merchant_balance().await, PRICE);
    assert_eq!(chains.solana_merchant_balance(), PRICE, "Solana untouched");

    // `prefer` the EVM chain: it pays there.
    let prefer_evm = SelectionPolicy {
        networks: networks.clone(),
        prefer_networks: vec![networks.pattern(chains.evm.network())?],
        ..SelectionPolicy::default()
    };
    assert_eq!(
        pay(&chains.client(prefer_evm), &url).await,
        chains.evm.network()
    );
    assert_eq!(chains.evm_merchant_balance().await, 2 * PRICE);
    assert_eq!(chains.solana_merchant_balance(), PRICE);
    Ok(())
}
