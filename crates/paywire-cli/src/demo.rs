//! `paywire demo`: the whole x402 v2 story on this machine, with nothing
//! configured: a devnet with Circle's USDC, a Solana chain in process
//! (litesvm) with Circle's devnet USDC mint, our facilitator settling on
//! both, a sample paid API, an agent with a budget paying for a sequence of
//! calls, a second agent whose policy prefers Solana, and the first agent
//! calling a paid MCP tool (a gateway route sold through
//! `paywire_gateway::mcp`).
//!
//! Exits 0 only if every step did what it says.

mod credit_row;
mod mcp_row;

use paywire_evm::Eip155ChainId;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Instant;

use alloy_primitives::{Address, U256};
use axum::Router;
use axum::routing::{get, post};
use paywire_client::{
    Budget, BudgetRule, PaymentOutcome, PaymentStatus, SelectionPolicy, X402Client,
};
use paywire_core::{AtomicAmount, ChainId, ChainIdPattern, Facilitator, Secret, ServerConfig};
use paywire_devnet::{DevAccount, Devnet};
use paywire_evm::exact::{ExactEvmClient, ExactEvmServer, ExactEvmSpendProbe};
use paywire_evm::upto::{UptoEvmClient, UptoEvmServer};
use paywire_evm::{EvmNetwork, EvmNetworks, LocalSigner};
use paywire_litesvm::{DEVNET_GENESIS_HASH, Pubkey, RpcServer, SolanaTestChain, TokenProgram};
use paywire_server::{
    HttpFacilitator, PayTo, PayToSpec, PaymentLayer, PaymentLayerBuilder, PaymentOption, PriceSpec,
    PricingError, RequestContext, Route, Usage, money,
};

struct Style {
    color: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
    fn step(&self, text: &str) {
        println!("{} {text}", self.paint("1;36", "==>"));
    }
    fn ok(&self, text: &str) {
        println!("    {} {text}", self.paint("32", "ok"));
    }
    fn fail(&self, text: &str) {
        println!("    {} {text}", self.paint("31", "FAILED"));
    }
}

/// One row of the final table.
struct Row {
    request: String,
    network: String,
    price: String,
    how: String,
    tx: String,
    latency_ms: f64,
}

struct Payees {
    merchant: Address,
    acme: Address,
    globex: Address,
    /// The merchant's Solana wallet (its USDC account is created up front).
    solana_merchant: Pubkey,
}

/// Circle's USDC mint on Solana devnet: the test chain creates its mint at
/// this address, so `$` prices on `solana-devnet` are paid in it.
const SOLANA_DEVNET_USDC: &str = "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU";
/// What the Solana payer starts with: 1 USDC.
const SOLANA_PAYER_USDC: u64 = 1_000_000;

/// A devnet-shaped Solana chain in this process, served over JSON-RPC on
/// loopback: the facilitator and the agent use it as a real node.
struct SolanaStage {
    chain: Arc<SolanaTestChain>,
    rpc: RpcServer,
    usdc: Pubkey,
    network: ChainId,
    /// Throwaway base58 keypairs made for this run.
    fee_payer_key: String,
    payer_key: String,
    payer: Pubkey,
}

/// A fresh Solana keypair: its base58 export (secret ‖ public) and address.
fn solana_keypair() -> (String, Pubkey) {
    let seed = alloy_primitives::B256::random().0;
    let address = paywire_svm::SvmKeypair::from_seed(&seed).address();
    let mut bytes = seed.to_vec();
    bytes.extend_from_slice(address.as_ref());
    (bs58::encode(bytes).into_string(), address)
}

/// The Solana chain: Circle's devnet USDC mint, a fee payer with 10 SOL for
/// the facilitator, a payer with 1 SOL and 1 USDC.
fn start_solana() -> Result<SolanaStage, String> {
    let genesis = DEVNET_GENESIS_HASH
        .parse()
        .map_err(|_| "bad genesis hash")?;
    let chain = Arc::new(SolanaTestChain::with_genesis_hash(genesis));
    let usdc: Pubkey = SOLANA_DEVNET_USDC.parse().map_err(|_| "bad USDC mint")?;
    chain.create_mint_at(&usdc, TokenProgram::Token, 6);
    let (fee_payer_key, fee_payer) = solana_keypair();
    chain.airdrop(&fee_payer, 10_000_000_000);
    let (payer_key, payer) = solana_keypair();
    chain.airdrop(&payer, 1_000_000_000);
    chain.mint_to(&usdc, &payer, SOLANA_PAYER_USDC);
    let rpc = RpcServer::start(Arc::clone(&chain)).map_err(|e| e.to_string())?;
    let network = crate::plugins::networks()
        .resolve("solana-devnet")
        .map_err(|e| e.to_string())?;
    Ok(SolanaStage {
        chain,
        rpc,
        usdc,
        network,
        fee_payer_key,
        payer_key,
        payer,
    })
}

fn usdc(amount: U256) -> String {
    format!("{} USDC", AtomicAmount::from(amount).to_decimal_string(6))
}

async fn start_facilitator(
    devnet: &Devnet,
    solana: &SolanaStage,
    dir: &std::path::Path,
) -> Result<String, String> {
    let key = alloy_primitives::B256::random().to_string();
    let signer = LocalSigner::from_hex(&key).map_err(|e| e.to_string())?;
    devnet
        .set_eth_balance(signer.address(), U256::from(10u128.pow(21)))
        .await
        .map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let config = format!(
        r#"listen = "{address}"
store = "{store}"
[[chains]]
network = "eip155:31337"
rpc_urls = ["{rpc}"]
signer_private_keys = ["{key}"]
max_fee_per_gas_gwei = 1000
# The metered route is paid with Permit2; a first-time payer's EIP-2612 permit
# for Permit2 is submitted with the settlement, at the facilitator's gas.
eip2612_gas_sponsoring = true
[[chains.assets]]
address = "{usdc}"
symbol = "USDC"
decimals = 6
eip712_name = "USD Coin"
eip712_version = "2"
eip2612 = true
[[chains]]
network = "solana-devnet"
rpc_urls = ["{solana_rpc}"]
fee_payer_private_keys = ["{fee_payer}"]
# The demo's paid API is on loopback; a public facilitator leaves this off.
[bazaar]
confirm_private_addresses = true
"#,
        store = dir.join("facilitator.sqlite").display(),
        rpc = devnet.rpc_url(),
        usdc = devnet.usdc(),
        solana_rpc = solana.rpc.url(),
        fee_payer = solana.fee_payer_key,
    );
    let config =
        paywire_facilitator::FacilitatorConfig::parse(&config).map_err(|e| e.to_string())?;
    let state = paywire_facilitator::build(&config, &crate::plugins::registry())
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = paywire_facilitator::serve(listener, state, std::future::pending()).await;
    });
    Ok(format!("http://{address}"))
}

async fn start_api(
    devnet: &Devnet,
    solana: &ChainId,
    facilitator_url: &str,
    payees: &Payees,
) -> Result<String, String> {
    // The public origin is the address the agent calls: sign-in-with-x binds
    // every challenge to it (domain and URI), never to a Host header.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let url = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let layer = payment_layer(devnet, solana, facilitator_url, payees, &url)?;
    let app = api_handlers().layer(layer);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(url)
}

/// A one-hour pass for `/premium/*`: whoever paid signs in with the same
/// wallet to come back.
fn premium_pass_sign_in(url: &str) -> Result<paywire_siwx::SiwxHooks, String> {
    let store = Arc::new(paywire_siwx::MemoryStore::new());
    let siwx = paywire_siwx::SiwxServer::new(
        paywire_siwx::SiwxServerConfig::new(url.to_owned())
            .statement("Sign in to use your paywire demo pass"),
        paywire_siwx::VerifierRegistry::new()
            .with(Arc::new(paywire_evm::siwx::EvmVerifier::new()))
            .with(Arc::new(paywire_siwx::SolanaVerifier)),
        store.clone(),
    )
    .map_err(|e| e.to_string())?;
    Ok(
        paywire_siwx::SiwxHooks::new(Arc::new(siwx), store).scoped_route(
            "GET /premium/*",
            paywire_siwx::AccessPolicy::Pass {
                duration_ms: 3_600_000,
            },
            "premium",
        ),
    )
}

/// Solana's server side, built by its plugin: `exact` requirements carrying
/// the facilitator's fee payer, and Circle's USDC for `$` prices.
fn with_solana(
    mut builder: PaymentLayerBuilder,
    solana: &ChainId,
) -> Result<PaymentLayerBuilder, String> {
    let mut well_known = ServerConfig::default();
    well_known.well_known = true;
    let parts = crate::plugins::registry()
        .plugin_for(solana)
        .and_then(|plugin| plugin.server(&well_known))
        .map_err(|e| e.to_string())?;
    for registration in parts.schemes {
        builder = builder.scheme(registration.networks, registration.handler);
    }
    for asset in parts.assets {
        builder = builder.asset(
            &asset.network,
            &asset.asset,
            &asset.info.symbol,
            asset.info.decimals,
        );
    }
    Ok(builder)
}

/// The payment layer in front of the API: its three priced routes, paid to
/// the merchant or, for `/summarise`, to the tenant named in `x-tenant`.
fn payment_layer(
    devnet: &Devnet,
    solana: &ChainId,
    facilitator_url: &str,
    payees: &Payees,
    url: &str,
) -> Result<PaymentLayer, String> {
    let fail = |e: &dyn std::fmt::Display| e.to_string();
    let hooks = premium_pass_sign_in(url)?;
    let mut table = EvmNetworks::empty();
    table.insert(EvmNetwork::anvil(devnet.usdc()));
    let chain = ChainId::eip155(31337);
    let facilitator: Arc<dyn Facilitator> =
        Arc::new(HttpFacilitator::new(facilitator_url).map_err(|e| fail(&e))?);
    let (acme, globex) = (payees.acme, payees.globex);
    let merchant = PayTo::address(payees.merchant.to_string());
    let evm = ChainIdPattern::namespace("eip155").map_err(|e| fail(&e))?;
    let mut builder = PaymentLayer::builder(facilitator)
        .scheme(evm.clone(), Arc::new(ExactEvmServer::new(table.clone())))
        .scheme(evm, Arc::new(UptoEvmServer::new(table)))
        .public_origin(url.to_owned())
        .hooks(Arc::new(hooks))
        .asset(&chain, &devnet.usdc().to_string(), "USDC", 6)
        .pay_to_resolver(move |role: &str, _: &ChainId, _: &RequestContext| {
            let address = match role {
                "tenant:globex" => Some(globex),
                "tenant:acme" => Some(acme),
                _ => None,
            };
            let role = role.to_owned();
            async move {
                address
                    .map(|a| a.to_string())
                    .ok_or_else(|| PricingError::Callback(format!("unknown tenant {role}")))
            }
        });
    builder = with_solana(builder, solana)?;
    let solana_merchant = PayTo::address(payees.solana_merchant.to_string());
    for route in priced_routes(&chain, merchant, (solana, solana_merchant))? {
        builder = builder.route(route);
    }
    builder.build().map_err(|e| fail(&e))
}

/// `/weather` (on the EVM chain or on Solana) and `/premium/*` at a fixed
/// price to the merchant; `/summarise` priced by size, paid to the tenant;
/// `/generate` charged by the tokens it produced (`upto`, at most $0.05).
/// The bazaar declarations let facilitators that keep a catalog list these
/// endpoints once a buyer has paid for them.
fn priced_routes(
    chain: &ChainId,
    merchant: PayTo,
    (solana, solana_merchant): (&ChainId, PayTo),
) -> Result<[Route; 4], String> {
    let fail = |e: &dyn std::fmt::Display| e.to_string();
    // $0.01 per KiB of input, at least $0.01.
    let by_size = PriceSpec::dynamic(|ctx: &RequestContext| {
        let kib = ctx.body_len().div_ceil(1024).max(1);
        async move { money(&format!("$0.{kib:02}")).map_err(|e| PricingError::Callback(e.to_string())) }
    });
    let per_tenant = PayToSpec::dynamic(|ctx: &RequestContext| {
        let tenant = ctx.header("x-tenant").unwrap_or("acme").to_owned();
        async move { Ok(PayTo::role(format!("tenant:{tenant}"))) }
    });
    let (weather_key, weather_declaration) = paywire_bazaar::Declaration::get()
        .output_json(serde_json::json!({"forecast": "sunny", "celsius": 21}))
        .into_extension();
    let (summarise_key, summarise_declaration) = paywire_bazaar::Declaration::body_method(
        "POST",
        paywire_bazaar::BodyType::Text,
        serde_json::json!("a text to summarise"),
    )
    .output_json(serde_json::json!({"summary_of_bytes": 19}))
    .into_extension();
    Ok([
        Route::new("GET /weather")
            .map_err(|e| fail(&e))?
            .description("Today's weather")
            .service("Demo Weather", ["weather"], None)
            .extension(weather_key, weather_declaration)
            .accept(PaymentOption::exact(
                chain.clone(),
                money("$0.01").map_err(|e| fail(&e))?,
                merchant.clone(),
            ))
            .accept(PaymentOption::exact(
                solana.clone(),
                money("$0.01").map_err(|e| fail(&e))?,
                solana_merchant,
            )),
        Route::new("GET /premium/*")
            .map_err(|e| fail(&e))?
            .description("One hour of /premium/*; sign in with your wallet to come back")
            .accept(PaymentOption::exact(
                chain.clone(),
                money("$0.05").map_err(|e| fail(&e))?,
                merchant.clone(),
            )),
        Route::new("POST /summarise")
            .map_err(|e| fail(&e))?
            .description("Summarise a text; $0.01 per KiB, paid to the tenant")
            .extension(summarise_key, summarise_declaration)
            .with_body(16 * 1024)
            .accept(PaymentOption::exact(chain.clone(), by_size, per_tenant)),
        Route::new("GET /generate")
            .map_err(|e| fail(&e))?
            .description("Text generation, $0.00001 per token produced, at most $0.05")
            .accept(PaymentOption::new(
                "upto",
                chain.clone(),
                money("$0.05").map_err(|e| fail(&e))?,
                merchant,
            )),
    ])
}

/// The API itself, unaware of payments.
fn api_handlers() -> Router {
    Router::new()
        .route(
            "/weather",
            get(|| async { r#"{"forecast":"sunny","celsius":21}"# }),
        )
        .route(
            "/premium/report",
            get(|| async { r#"{"report":"premium insights"}"# }),
        )
        .route(
            "/summarise",
            post(|body: String| async move { format!(r#"{{"summary_of_bytes":{}}}"#, body.len()) }),
        )
        .route("/generate", get(generate))
}

/// Produces `?tokens=N` tokens and reports their price, $0.00001 (10 atomic
/// USDC) each, as the request's usage: the buyer authorized at most $0.05
/// and is charged this.
async fn generate(uri: axum::http::Uri) -> axum::response::Response {
    use axum::response::IntoResponse;
    let tokens: u64 = uri
        .query()
        .and_then(|query| query.strip_prefix("tokens="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_default();
    let mut response = format!(r#"{{"tokens":{tokens}}}"#).into_response();
    response
        .extensions_mut()
        .insert(Usage::atomic(tokens.saturating_mul(10)));
    response
}

/// What the first steps started: the chain, our facilitator and the paid API.
struct Stage {
    devnet: Devnet,
    solana: SolanaStage,
    /// The facilitator's SQLite ledger lives here.
    dir: std::path::PathBuf,
    facilitator_url: String,
    api: String,
    /// The MCP endpoint selling `GET /forecast/:city` as a paid tool.
    mcp: String,
    payees: Payees,
}

async fn set_the_stage(style: &Style) -> Result<Stage, String> {
    style.step("Starting a local EVM chain (anvil) with Circle's real USDC contract");
    let devnet = Devnet::start().await.map_err(|e| e.to_string())?;
    style.ok(&format!("{} · USDC at {}", devnet.rpc_url(), devnet.usdc()));

    style
        .step("Starting a local Solana chain (litesvm, in process) with Circle's devnet USDC mint");
    let solana = start_solana()?;
    style.ok(&format!("{} · USDC mint {}", solana.rpc.url(), solana.usdc));

    style.step("Starting our facilitator (verify + settle on both chains, SQLite ledger)");
    let dir = std::env::temp_dir().join(format!("paywire-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let facilitator_url = start_facilitator(&devnet, &solana, &dir).await?;
    style.ok(&facilitator_url);

    let (_, solana_merchant) = solana_keypair();
    solana.chain.create_ata(&solana_merchant, &solana.usdc);
    let payees = Payees {
        merchant: Address::random(),
        acme: Address::random(),
        globex: Address::random(),
        solana_merchant,
    };
    style.step("Starting a sample paid API");
    let api = start_api(&devnet, &solana.network, &facilitator_url, &payees).await?;
    style.ok(&format!(
        "{api}  GET /weather $0.01 (anvil or Solana) · POST /summarise $0.01/KiB to the tenant · \
         GET /premium/* $0.05 for a one-hour pass (sign-in-with-x) · GET /generate \
         $0.00001/token, at most $0.05 (upto, Permit2)"
    ));
    style.step("Selling a gateway route as a paid MCP tool (paywire mcp serve, streamable HTTP)");
    let mcp = mcp_row::start(&devnet, &facilitator_url, payees.merchant).await?;
    style.ok(&format!(
        "{mcp}  tool get_forecast_city $0.01 (GET /forecast/:city upstream)"
    ));
    Ok(Stage {
        devnet,
        solana,
        dir,
        facilitator_url,
        api,
        mcp,
        payees,
    })
}

/// An agent paying from `payer`'s wallet within a $0.25 budget (returned
/// too, to show what it counts); the same wallet signs in (SIWE) when it
/// returns for the pass.
async fn budgeted_agent(
    devnet: &Devnet,
    payer: &DevAccount,
) -> Result<(X402Client, Arc<Budget>), String> {
    let budget = Arc::new(
        Budget::in_memory(vec![BudgetRule {
            total: Some(250_000),
            ..BudgetRule::usd()
        }])
        .await
        .map_err(|e| e.to_string())?,
    );
    let mut catalog = EvmNetworks::empty();
    catalog.insert(EvmNetwork::anvil(devnet.usdc()));
    let wallet = LocalSigner::new(payer.signer());
    // The node lets the usage-based client see that the payer has not
    // approved Permit2 yet and attach a gas-sponsored EIP-2612 permit.
    let rpc = Arc::new(
        paywire_evm::rpc::RpcClient::new(
            vec![devnet.rpc_url().to_owned()],
            std::time::Duration::from_secs(10),
        )
        .map_err(|e| e.to_string())?,
    );
    let upto = UptoEvmClient::new(wallet.clone()).with_rpc(ChainId::eip155(31337), rpc.clone());
    // The budget counts what the chain shows a metered call moved, not what
    // the server's receipt claims.
    let probe = ExactEvmSpendProbe::new().network(ChainId::eip155(31337), rpc);
    let sign_in = paywire_siwx::SiwxSignIn::new(
        Arc::new(paywire_evm::siwx::EvmSiwxSigner::new(wallet.clone())),
        vec![ChainId::eip155(31337)],
    );
    let agent = X402Client::builder()
        .wallet(
            ChainIdPattern::namespace("eip155").map_err(|e| e.to_string())?,
            Arc::new(ExactEvmClient::new(wallet)),
        )
        .wallet(
            ChainIdPattern::namespace("eip155").map_err(|e| e.to_string())?,
            Arc::new(upto),
        )
        .sign_in(Arc::new(sign_in))
        .spend_probe(Arc::new(probe))
        .catalog(Arc::new(catalog))
        .policy(SelectionPolicy::default())
        .budget(Arc::clone(&budget))
        .build();
    Ok((agent, budget))
}

/// A second agent with the same EVM wallet and a Solana wallet (both built
/// by their plugins), whose policy prefers Solana: offered both on one
/// route at the same value, it pays on Solana.
fn solana_preferring_agent(stage: &Stage, payer: &DevAccount) -> Result<X402Client, String> {
    let solana = &stage.solana;
    let nodes = [(solana.network.clone(), Secret::new(solana.rpc.url()))];
    let wallets = crate::wallet::build(
        Some(Secret::new(payer.private_key_hex())),
        Some(Secret::new(solana.payer_key.as_str())),
        &nodes,
        true,
    )?;
    let mut anvil = EvmNetworks::empty();
    anvil.insert(EvmNetwork::anvil(stage.devnet.usdc()));
    let policy = SelectionPolicy {
        prefer_networks: vec![ChainIdPattern::namespace("solana").map_err(|e| e.to_string())?],
        ..SelectionPolicy::default()
    };
    let mut builder = X402Client::builder()
        .sign_in(Arc::new(wallets.sign_in))
        .catalog(Arc::new(anvil))
        .catalog(Arc::new(crate::plugins::known_assets()))
        .policy(policy);
    for registration in wallets.schemes {
        builder = builder.wallet(registration.networks, registration.handler);
    }
    Ok(builder.build())
}

/// A `/summarise` request of `body` on behalf of `tenant`.
fn summarise(
    http: &reqwest::Client,
    api: &str,
    tenant: &str,
    body: String,
) -> reqwest::RequestBuilder {
    http.post(format!("{api}/summarise"))
        .header("x-tenant", tenant)
        .body(body)
}

/// The calls the agent makes, each with the label it is reported under.
fn planned_calls(
    http: &reqwest::Client,
    api: &str,
) -> Result<Vec<(&'static str, reqwest::Request)>, String> {
    let premium = || http.get(format!("{api}/premium/report"));
    let weather = || http.get(format!("{api}/weather"));
    [
        ("GET /weather", weather()),
        (
            "POST /summarise (0.5 KiB, acme)",
            summarise(http, api, "acme", "x".repeat(512)),
        ),
        (
            "POST /summarise (3 KiB, globex)",
            summarise(http, api, "globex", "y".repeat(3 * 1024)),
        ),
        ("GET /weather", weather()),
        (
            "GET /generate (1858 tokens, metered)",
            http.get(format!("{api}/generate?tokens=1858")),
        ),
        ("GET /premium/report (buys the pass)", premium()),
        ("GET /premium/report (returning)", premium()),
        ("GET /premium/report (returning)", premium()),
    ]
    .into_iter()
    .map(|(label, request)| Ok((label, request.build().map_err(|e| e.to_string())?)))
    .collect()
}

/// Makes every call, printing a line per call; returns the table rows of
/// the calls that did what they should and how many did not.
async fn pay_for_calls(
    style: &Style,
    agent: &X402Client,
    http: &reqwest::Client,
    calls: Vec<(&'static str, reqwest::Request)>,
) -> (Vec<Row>, usize) {
    let mut rows = Vec::new();
    let mut failures = 0;
    for (label, request) in calls {
        let began = Instant::now();
        if style.color {
            // A transient progress line, erased when the call returns.
            print!("    … {label}");
            let _ = std::io::stdout().flush();
        }
        let result = agent.send(http, request).await;
        let latency_ms = began.elapsed().as_secs_f64() * 1000.0;
        if style.color {
            print!("\r\x1b[2K");
        }
        match report_call(style, label, result, latency_ms) {
            Some(row) => rows.push(row),
            None => failures += 1,
        }
    }
    (rows, failures)
}

/// Prints how one call went; its table row if it was paid, or served to a
/// returning visitor without payment, `None` if it failed.
fn report_call(
    style: &Style,
    label: &str,
    result: Result<reqwest::Response, paywire_client::ClientError>,
    latency_ms: f64,
) -> Option<Row> {
    let response = match result {
        Ok(response) => response,
        Err(error) => {
            style.fail(&format!("{label}: {error}"));
            return None;
        }
    };
    let outcome = response.extensions().get::<PaymentOutcome>().cloned();
    let status = response.status();
    match outcome {
        Some(outcome) if outcome.status == PaymentStatus::Paid && status.is_success() => {
            let network = &outcome.requirements.network;
            // A usage-based receipt names the charge (the requirements
            // carry the authorized maximum).
            let charged = outcome
                .receipt
                .as_ref()
                .and_then(|r| r.amount)
                .unwrap_or(outcome.requirements.amount);
            let paid = if charged == outcome.requirements.amount {
                usdc(charged.as_u256())
            } else {
                format!(
                    "{} (authorized at most {})",
                    usdc(charged.as_u256()),
                    usdc(outcome.requirements.amount.as_u256())
                )
            };
            let tx = outcome.receipt.map(|r| r.transaction).unwrap_or_default();
            style.ok(&format!("{label}: HTTP {status}, paid {paid}"));
            Some(Row {
                request: label.to_owned(),
                network: crate::plugins::networks()
                    .name_of(network)
                    .map_or_else(|| network.to_string(), str::to_owned),
                price: usdc(charged.as_u256()),
                how: "paid".into(),
                tx,
                latency_ms,
            })
        }
        None if status.is_success() && label.contains("returning") => {
            style.ok(&format!(
                "{label}: HTTP {status}, signed in with the wallet: no payment, no transaction"
            ));
            Some(Row {
                request: label.to_owned(),
                network: "-".into(),
                price: "-".into(),
                how: "session".into(),
                tx: "-".into(),
                latency_ms,
            })
        }
        other => {
            style.fail(&format!("{label}: HTTP {status}, {other:?}"));
            None
        }
    }
}

/// Whether the catalog lists what was paid for; prints the verdict.
async fn check_discovery(style: &Style, stage: &Stage) -> bool {
    match discover(&stage.facilitator_url, &stage.devnet).await {
        Ok(line) => {
            style.ok(&line);
            true
        }
        Err(error) => {
            style.fail(&error);
            false
        }
    }
}

/// Whether a call above the remaining budget is refused before anything is
/// signed; prints the verdict.
async fn check_budget_refusal(
    style: &Style,
    agent: &X402Client,
    http: &reqwest::Client,
    api: &str,
) -> Result<bool, String> {
    let expensive = summarise(http, api, "acme", "z".repeat(16 * 1024))
        .build()
        .map_err(|e| e.to_string())?;
    match agent.send(http, expensive).await {
        Err(paywire_client::ClientError::NoAcceptableOption(why)) if why.contains("budget") => {
            style.ok("a $0.16 call is refused: it would exceed the $0.25 budget (nothing signed)");
            Ok(true)
        }
        other => {
            style.fail(&format!(
                "expected a budget refusal, got {:?}",
                other.map(|r| r.status())
            ));
            Ok(false)
        }
    }
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "{:<38} {:<13} {:>12}  {:<7} {:<88} {:>9}",
        "request", "network", "price", "how", "transaction", "latency"
    );
    for row in rows {
        println!(
            "{:<38} {:<13} {:>12}  {:<7} {:<88} {:>7.1}ms",
            row.request, row.network, row.price, row.how, row.tx, row.latency_ms
        );
    }
}

/// Prints what the payer spent and each payee received since `before`;
/// whether both match the prices of the calls made.
async fn check_balances(
    style: &Style,
    stage: &Stage,
    payer: Address,
    before: U256,
) -> Result<bool, String> {
    let devnet = &stage.devnet;
    let after = devnet
        .usdc_balance(payer)
        .await
        .map_err(|e| e.to_string())?;
    let spent = before.saturating_sub(after);
    println!();
    println!("payer {payer}  spent {}", usdc(spent));
    let mut received = U256::ZERO;
    for (name, who) in [
        ("merchant", stage.payees.merchant),
        ("acme", stage.payees.acme),
        ("globex", stage.payees.globex),
    ] {
        let balance = devnet.usdc_balance(who).await.map_err(|e| e.to_string())?;
        received += balance;
        println!("{name:<8} {who}  received {}", usdc(balance));
    }
    // 0.01 + 0.01 + 0.03 + 0.01 + 0.01858 for 1858 generated tokens + 0.05
    // for the pass + 0.01 for the MCP tool call = 0.13858 USDC; the
    // returning visits cost nothing.
    let expected = U256::from(138_580u64);
    if spent != expected || received != expected {
        style.fail(&format!(
            "balances: spent {} and received {}, expected {}",
            usdc(spent),
            usdc(received),
            usdc(expected)
        ));
        return Ok(false);
    }
    Ok(true)
}

/// Prints what the Solana payer spent and the Solana merchant's USDC
/// account received; whether both moved by exactly the one call's price.
fn check_solana_balances(style: &Style, stage: &Stage) -> bool {
    let solana = &stage.solana;
    let merchant = stage.payees.solana_merchant;
    let left = solana.chain.token_balance(&solana.payer, &solana.usdc);
    let spent = SOLANA_PAYER_USDC.saturating_sub(left);
    let received = solana.chain.token_balance(&merchant, &solana.usdc);
    println!(
        "solana payer    {}  spent {}",
        solana.payer,
        usdc(U256::from(spent))
    );
    println!(
        "solana merchant {merchant}  received {}",
        usdc(U256::from(received))
    );
    // One $0.01 call on Solana.
    let expected = 10_000;
    if spent != expected || received != expected {
        style.fail(&format!(
            "Solana balances: spent {} and received {}, expected {}",
            usdc(U256::from(spent)),
            usdc(U256::from(received)),
            usdc(U256::from(expected))
        ));
        return false;
    }
    true
}

/// The second agent's one call: `/weather`, offered on both chains.
async fn pay_preferring_solana(
    style: &Style,
    stage: &Stage,
    payer: &DevAccount,
    http: &reqwest::Client,
) -> Result<(Vec<Row>, usize), String> {
    let agent = solana_preferring_agent(stage, payer)?;
    let weather = http
        .get(format!("{}/weather", stage.api))
        .build()
        .map_err(|e| e.to_string())?;
    let calls = vec![("GET /weather (prefers Solana)", weather)];
    Ok(pay_for_calls(style, &agent, http, calls).await)
}

async fn run_demo(style: &Style) -> Result<(), String> {
    let started = Instant::now();
    let stage = set_the_stage(style).await?;

    style.step("An agent with a $0.25 budget pays for a sequence of calls");
    let payer = stage.devnet.payer(1);
    let (agent, budget) = budgeted_agent(&stage.devnet, payer).await?;
    let agent = Arc::new(agent);
    let before = stage
        .devnet
        .usdc_balance(payer.address)
        .await
        .map_err(|e| e.to_string())?;
    let http = reqwest::Client::new();
    let calls = planned_calls(&http, &stage.api)?;
    let (mut rows, mut failures) = pay_for_calls(style, &agent, &http, calls).await;

    style.step(
        "A second agent, whose policy prefers Solana, buys /weather (offered on both chains)",
    );
    let (solana_rows, solana_failures) = pay_preferring_solana(style, &stage, payer, &http).await?;
    rows.extend(solana_rows);
    failures += solana_failures;

    style.step("The first agent pays for a tool call on the MCP server, within the same budget");
    match mcp_row::pay_for_tool(style, &stage, &agent, &budget).await {
        Ok(row) => rows.push(row),
        Err(error) => {
            style.fail(&error);
            failures += 1;
        }
    }

    style.step(
        "A buyer with a SEPA mandate buys euro credits, pays two calls from the bundle, \
         and the payout run pays the seller (pain.001)",
    );
    match pay_with_credits(style, &stage.dir).await {
        Ok(credit_rows) => rows.extend(credit_rows),
        Err(error) => {
            style.fail(&error);
            failures += 1;
        }
    }

    style.step("The agent finds paid APIs in the facilitator's bazaar catalog");
    failures += usize::from(!check_discovery(style, &stage).await);

    style.step("The budget stops the agent before it overspends");
    failures += usize::from(!check_budget_refusal(style, &agent, &http, &stage.api).await?);

    print_table(&rows);
    failures += usize::from(!check_balances(style, &stage, payer.address, before).await?);
    failures += usize::from(!check_solana_balances(style, &stage));
    let _ = std::fs::remove_dir_all(&stage.dir);
    println!();
    if failures == 0 && rows.len() == 12 {
        println!(
            "{} every step did what it says ({:.1}s)",
            style.paint("1;32", "demo complete:"),
            started.elapsed().as_secs_f64()
        );
        Ok(())
    } else {
        Err(format!("{failures} step(s) failed"))
    }
}

/// The bank-rail row: a bundle authority and a credit-priced shop, a
/// bundle bought by SEPA mandate, two calls paid from it, the payout.
async fn pay_with_credits(style: &Style, dir: &std::path::Path) -> Result<Vec<Row>, String> {
    let credit = credit_row::start(dir).await?;
    credit_row::run(style, &credit).await
}

/// What the facilitator cataloged from the payments above, and the cheapest
/// weather source an agent would pick from it.
async fn discover(facilitator: &str, devnet: &Devnet) -> Result<String, String> {
    let client = paywire_bazaar::DiscoveryClient::new(facilitator).map_err(|e| e.to_string())?;
    // The facilitator confirms each declaration with its origin after the
    // settlement has answered: give it a moment.
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    let all = loop {
        let all = client
            .list(&paywire_bazaar::ResourceFilter::default(), None, 0)
            .await
            .map_err(|e| e.to_string())?;
        if all.pagination.total >= 2 || Instant::now() > deadline {
            break all;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let found = client
        .search(
            "weather",
            &paywire_bazaar::ResourceFilter::default(),
            None,
            None,
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut assets = EvmNetworks::empty();
    assets.insert(EvmNetwork::anvil(devnet.usdc()));
    let (resource, option) = paywire_bazaar::cheapest(&found.resources, &assets, |_, _| true)
        .ok_or_else(|| {
            format!(
                "the catalog has {} entries but no comparable weather source",
                all.pagination.total
            )
        })?;
    if all.pagination.total != 2 {
        return Err(format!(
            "expected /weather and /summarise in the catalog, found {}",
            all.pagination.total
        ));
    }
    Ok(format!(
        "{} paid endpoints cataloged after settlement; cheapest for \"weather\": {} at {}",
        all.pagination.total,
        resource.resource,
        usdc(option.amount.as_u256())
    ))
}

/// Runs the demo; everything it started stops when it returns.
pub fn run() -> Result<(), String> {
    let style = Style {
        color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        tokio::select! {
            result = run_demo(&style) => result,
            _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
        }
    })
}
