//! The facilitator, the client and the RPC client against a canned Solana
//! JSON-RPC node (standard wire format, state in memory): every check that
//! needs the chain (mint, lookup tables, destination account, simulation,
//! statuses), settlement, duplicates and lookups.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use base64::Engine as _;
use paywire_core::{
    ChainId, ChainPlugin, ConfigEntry, FacilitatorConfig, PaymentPayload, PaymentRequirements,
    PluginRegistry, RpcErrorKind, SchemeClient, SchemeFacilitator, Secret, SettlementLookup,
    WalletConfig,
};
use paywire_svm::exact::{
    ExactSvmClient, ExactSvmFacilitator, PaymentPlan, SvmChain, build_payment,
};
use paywire_svm::rpc::SvmRpc;
use paywire_svm::tx::{self, TOKEN_2022_PROGRAM, TOKEN_PROGRAM};
use paywire_svm::{SvmKeypair, SvmPlugin, reasons};
use serde_json::{Value, json};
use solana_address::Address;

const NETWORK: &str = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1";
const GENESIS: &str = "EtWTRABZaYq6iMfeYKouRu166VU2xqa1wcaWoxPkrZBG";
const BLOCKHASH: &str = "GHtXQBsoZHVnNFa9YevAzFr17DJjgHXk3ycTKD5xD3Zi";

/// What the fake node knows and what it was asked to do.
#[derive(Default)]
struct Node {
    /// address → (owner, data)
    accounts: HashMap<String, (String, Vec<u8>)>,
    /// signature → confirmation status (None: unknown)
    statuses: HashMap<String, String>,
    sent: Vec<String>,
    simulation_error: Option<Value>,
    blockhash_valid: bool,
    /// Whether a sent transaction is confirmed at once.
    confirm_sends: bool,
}

type Shared = Arc<Mutex<Node>>;

fn account_json(owner: &str, data: &[u8]) -> Value {
    json!({"owner": owner, "lamports": 1_000_000, "executable": false, "rentEpoch": 0,
           "data": [base64::engine::general_purpose::STANDARD.encode(data), "base64"]})
}

async fn rpc(State(node): State<Shared>, Json(request): Json<Value>) -> Json<Value> {
    let mut node = node.lock().unwrap();
    let params = request["params"].clone();
    let context = json!({"slot": 1});
    let account = |node: &Node, address: &Value| {
        node.accounts
            .get(address.as_str().unwrap_or(""))
            .map_or(Value::Null, |(owner, data)| account_json(owner, data))
    };
    let result = match request["method"].as_str().unwrap_or("") {
        "getGenesisHash" => json!(GENESIS),
        "getLatestBlockhash" => {
            json!({"context": context, "value": {"blockhash": BLOCKHASH, "lastValidBlockHeight": 100}})
        }
        "getAccountInfo" => json!({"context": context, "value": account(&node, &params[0])}),
        "getMultipleAccounts" => {
            let values: Vec<Value> = params[0]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| account(&node, a))
                .collect();
            json!({"context": context, "value": values})
        }
        "getBalance" => json!({"context": context, "value": 5_000_000_000u64}),
        "simulateTransaction" => {
            json!({"context": context, "value": {"err": node.simulation_error.clone(), "logs": [], "unitsConsumed": 6000}})
        }
        "sendTransaction" => {
            let transaction = tx::decode_transaction(params[0].as_str().unwrap()).unwrap();
            let signature = transaction.signatures[0].to_string();
            node.sent.push(signature.clone());
            let level = if node.confirm_sends {
                "confirmed"
            } else {
                "processed"
            };
            node.statuses.insert(signature.clone(), level.into());
            json!(signature)
        }
        "getSignatureStatuses" => {
            let values: Vec<Value> = params[0]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    node.statuses.get(s.as_str().unwrap()).map_or(Value::Null, |level| {
                        json!({"slot": 1, "confirmations": 0, "err": null, "confirmationStatus": level})
                    })
                })
                .collect();
            json!({"context": context, "value": values})
        }
        "isBlockhashValid" => json!({"context": context, "value": node.blockhash_valid}),
        other => {
            return Json(
                json!({"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32601, "message": format!("no {other}")}}),
            );
        }
    };
    Json(json!({"jsonrpc": "2.0", "id": request["id"], "result": result}))
}

async fn start(node: Shared) -> String {
    let app = axum::Router::new()
        .route("/", axum::routing::post(rpc))
        .with_state(node);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn mint_data(decimals: u8, extensions: &[(u16, usize)]) -> Vec<u8> {
    let mut data = vec![0u8; 82];
    data[44] = decimals;
    data[45] = 1;
    if !extensions.is_empty() {
        data.resize(165, 0);
        data.push(1);
        for (kind, len) in extensions {
            data.extend_from_slice(&kind.to_le_bytes());
            data.extend_from_slice(&u16::try_from(*len).unwrap().to_le_bytes());
            data.extend(std::iter::repeat_n(0u8, *len));
        }
    }
    data
}

struct World {
    node: Shared,
    url: String,
    payer: SvmKeypair,
    fee_payer: SvmKeypair,
    mint: Address,
    pay_to: Address,
    facilitator: ExactSvmFacilitator,
}

impl World {
    async fn start(program: Address, extensions: &[(u16, usize)]) -> Self {
        let node: Shared = Arc::new(Mutex::new(Node {
            blockhash_valid: true,
            confirm_sends: true,
            ..Node::default()
        }));
        let url = start(Arc::clone(&node)).await;
        let payer = SvmKeypair::from_seed(&[1; 32]);
        let fee_payer = SvmKeypair::from_seed(&[2; 32]);
        let mint = Address::new_from_array([6; 32]);
        let pay_to = Address::new_from_array([5; 32]);
        {
            let mut node = node.lock().unwrap();
            node.accounts.insert(
                mint.to_string(),
                (program.to_string(), mint_data(6, extensions)),
            );
            let destination = tx::associated_token_address(&pay_to, &mint, &program);
            node.accounts
                .insert(destination.to_string(), (program.to_string(), vec![0; 165]));
        }
        let rpc =
            Arc::new(SvmRpc::new(std::slice::from_ref(&url), Duration::from_secs(2)).unwrap());
        let mut chain = SvmChain::new(
            ChainId::parse(NETWORK).unwrap(),
            rpc,
            vec![fee_payer.clone()],
        );
        chain.assets = vec![mint];
        let facilitator = ExactSvmFacilitator::new(vec![chain], Duration::from_millis(600));
        Self {
            node,
            url,
            payer,
            fee_payer,
            mint,
            pay_to,
            facilitator,
        }
    }

    fn requirements(&self) -> PaymentRequirements {
        serde_json::from_value(json!({
            "scheme": "exact", "network": NETWORK, "amount": "10000",
            "asset": self.mint.to_string(), "payTo": self.pay_to.to_string(),
            "maxTimeoutSeconds": 60, "extra": {"feePayer": self.fee_payer.address().to_string()}
        }))
        .unwrap()
    }

    fn plan(&self, program: Address) -> PaymentPlan {
        PaymentPlan {
            fee_payer: self.fee_payer.address(),
            mint: self.mint,
            token_program: program,
            decimals: 6,
            pay_to: self.pay_to,
            amount: 10_000,
            memo: "0011".into(),
            compute_units: 20_000,
            compute_unit_price: 1,
            blockhash: BLOCKHASH.parse().unwrap(),
        }
    }

    fn payload_of(&self, transaction: &str) -> PaymentPayload {
        serde_json::from_value(json!({
            "x402Version": 2, "payload": {"transaction": transaction},
            "accepted": self.requirements()
        }))
        .unwrap()
    }

    fn payload(&self, program: Address) -> PaymentPayload {
        let transaction = build_payment(&self.plan(program), &self.payer).unwrap();
        self.payload_of(&tx::encode_transaction(&transaction))
    }
}

#[tokio::test]
async fn our_client_pays_and_a_resubmission_is_never_a_second_success() {
    let world = World::start(TOKEN_PROGRAM, &[]).await;
    let rpc =
        Arc::new(SvmRpc::new(std::slice::from_ref(&world.url), Duration::from_secs(2)).unwrap());
    let client =
        ExactSvmClient::new(world.payer.clone()).network(ChainId::parse(NETWORK).unwrap(), rpc);
    let requirements = world.requirements();
    let payload = client.create_payload(&requirements).await.unwrap();
    let payload = world.payload_of(payload["transaction"].as_str().unwrap());
    let verified = world
        .facilitator
        .verify(&payload, &requirements)
        .await
        .unwrap();
    assert!(verified.is_valid, "{verified:?}");
    assert_eq!(
        verified.payer.as_deref(),
        Some(world.payer.address().to_string().as_str())
    );
    assert_eq!(
        world
            .facilitator
            .authenticated_payer(&payload, &requirements),
        Some(world.payer.address().to_string())
    );
    let settled = world
        .facilitator
        .settle(&payload, &requirements)
        .await
        .unwrap();
    assert!(settled.success, "{settled:?}");
    assert_eq!(
        world.node.lock().unwrap().sent,
        std::slice::from_ref(&settled.transaction)
    );
    let again = world
        .facilitator
        .settle(&payload, &requirements)
        .await
        .unwrap();
    assert!(!again.success);
    assert_eq!(
        again.error_reason,
        Some(paywire_core::ErrorReason::DUPLICATE_SETTLEMENT)
    );
    assert_eq!(world.node.lock().unwrap().sent.len(), 1, "sent once");
    let key = world
        .facilitator
        .spend_key(&payload, &requirements)
        .unwrap();
    assert!(key.starts_with("svm-exact:"));
    let lookup = world
        .facilitator
        .lookup_settlement(&payload, &requirements, Some(&settled.transaction))
        .await
        .unwrap();
    assert!(
        matches!(lookup, Some(SettlementLookup::Settled(ref r)) if r.transaction == settled.transaction)
    );
    // Without a recorded signature nothing was sent, and the fee payer
    // signs nothing to find out.
    let lookup = world
        .facilitator
        .lookup_settlement(&payload, &requirements, None)
        .await
        .unwrap();
    assert!(lookup.is_none(), "{lookup:?}");
}

/// A second facilitator (another process) that sees the signature already
/// known to the chain refuses it as a duplicate without sending.
#[tokio::test]
async fn a_transaction_the_chain_already_knows_is_a_duplicate() {
    let world = World::start(TOKEN_PROGRAM, &[]).await;
    let payload = world.payload(TOKEN_PROGRAM);
    let requirements = world.requirements();
    let first = world
        .facilitator
        .settle(&payload, &requirements)
        .await
        .unwrap();
    assert!(first.success);
    let other = World::start(TOKEN_PROGRAM, &[]).await;
    {
        let known = world.node.lock().unwrap().statuses.clone();
        other.node.lock().unwrap().statuses = known;
    }
    let second = other
        .facilitator
        .settle(&payload, &requirements)
        .await
        .unwrap();
    assert_eq!(
        second.error_reason,
        Some(paywire_core::ErrorReason::DUPLICATE_SETTLEMENT)
    );
    assert!(other.node.lock().unwrap().sent.is_empty());
}

#[tokio::test]
async fn an_unconfirmed_settlement_answers_pending_with_its_signature() {
    let world = World::start(TOKEN_PROGRAM, &[]).await;
    world.node.lock().unwrap().confirm_sends = false;
    let payload = world.payload(TOKEN_PROGRAM);
    let requirements = world.requirements();
    let settled = world
        .facilitator
        .settle(&payload, &requirements)
        .await
        .unwrap();
    assert!(settled.is_pending(), "{settled:?}");
    assert_eq!(
        world.node.lock().unwrap().sent,
        std::slice::from_ref(&settled.transaction)
    );
    let lookup = world
        .facilitator
        .lookup_settlement(&payload, &requirements, Some(&settled.transaction))
        .await
        .unwrap();
    assert_eq!(lookup, Some(SettlementLookup::Open));
}

#[tokio::test]
async fn an_expired_blockhash_is_refused_and_an_unsent_payment_is_unsettleable() {
    let world = World::start(TOKEN_PROGRAM, &[]).await;
    {
        let mut node = world.node.lock().unwrap();
        node.simulation_error = Some(json!("BlockhashNotFound"));
        node.blockhash_valid = false;
    }
    let payload = world.payload(TOKEN_PROGRAM);
    let requirements = world.requirements();
    let verified = world
        .facilitator
        .verify(&payload, &requirements)
        .await
        .unwrap();
    assert_eq!(verified.invalid_reason, Some(reasons::BLOCKHASH_EXPIRED));
    // A signature recorded before a crash that never reached the chain.
    let never_sent = bs58::encode([5_u8; 64]).into_string();
    let lookup = world
        .facilitator
        .lookup_settlement(&payload, &requirements, Some(&never_sent))
        .await
        .unwrap();
    assert!(
        matches!(lookup, Some(SettlementLookup::Unsettleable(_))),
        "{lookup:?}"
    );
}

#[tokio::test]
async fn a_failing_simulation_is_refused() {
    let world = World::start(TOKEN_PROGRAM, &[]).await;
    world.node.lock().unwrap().simulation_error =
        Some(json!({"InstructionError": [2, {"Custom": 1}]}));
    let verified = world
        .facilitator
        .verify(&world.payload(TOKEN_PROGRAM), &world.requirements())
        .await
        .unwrap();
    assert_eq!(verified.invalid_reason, Some(reasons::SIMULATION_FAILED));
}

#[tokio::test]
async fn token_2022_mints_with_a_transfer_fee_are_refused_but_metadata_is_fine() {
    let world = World::start(TOKEN_2022_PROGRAM, &[(1, 108)]).await;
    let verified = world
        .facilitator
        .verify(&world.payload(TOKEN_2022_PROGRAM), &world.requirements())
        .await
        .unwrap();
    assert_eq!(verified.invalid_reason, Some(reasons::MINT_NOT_ACCEPTED));
    let world = World::start(TOKEN_2022_PROGRAM, &[(18, 64)]).await;
    let verified = world
        .facilitator
        .verify(&world.payload(TOKEN_2022_PROGRAM), &world.requirements())
        .await
        .unwrap();
    assert!(verified.is_valid, "{verified:?}");
}

#[tokio::test]
async fn a_missing_destination_account_is_refused() {
    let world = World::start(TOKEN_PROGRAM, &[]).await;
    let destination = tx::associated_token_address(&world.pay_to, &world.mint, &TOKEN_PROGRAM);
    world
        .node
        .lock()
        .unwrap()
        .accounts
        .remove(&destination.to_string());
    let verified = world
        .facilitator
        .verify(&world.payload(TOKEN_PROGRAM), &world.requirements())
        .await
        .unwrap();
    assert_eq!(
        verified.invalid_reason,
        Some(reasons::RECEIVER_ATA_NOT_FOUND)
    );
}

#[tokio::test]
async fn an_unresolvable_lookup_table_is_refused() {
    let world = World::start(TOKEN_PROGRAM, &[]).await;
    let mut transaction = build_payment(&world.plan(TOKEN_PROGRAM), &world.payer).unwrap();
    let solana_message::VersionedMessage::V0(message) = &mut transaction.message else {
        unreachable!()
    };
    message
        .address_table_lookups
        .push(solana_message::v0::MessageAddressTableLookup {
            account_key: Address::new_from_array([3; 32]),
            writable_indexes: vec![],
            readonly_indexes: vec![0],
        });
    let bytes = tx::message_bytes(&transaction.message);
    transaction.signatures[1] = world.payer.sign(&bytes);
    let payload = world.payload_of(&tx::encode_transaction(&transaction));
    let verified = world
        .facilitator
        .verify(&payload, &world.requirements())
        .await
        .unwrap();
    assert_eq!(verified.invalid_reason, Some(reasons::ALT_RESOLUTION));
}

#[tokio::test]
async fn garbage_payloads_are_invalid_not_errors() {
    let world = World::start(TOKEN_PROGRAM, &[]).await;
    for garbage in ["", "AAAA", "////", &"QUFB".repeat(600)] {
        let verified = world
            .facilitator
            .verify(&world.payload_of(garbage), &world.requirements())
            .await
            .unwrap();
        assert_eq!(
            verified.invalid_reason,
            Some(reasons::UNDECODABLE),
            "{garbage}"
        );
    }
}

#[tokio::test]
async fn rpc_fails_over_counts_errors_and_never_shows_the_url_path() {
    let node: Shared = Arc::new(Mutex::new(Node::default()));
    let live = start(node).await;
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!(
            "http://{}/v2/SECRETAPIKEY123",
            listener.local_addr().unwrap()
        )
    };
    let rpc = SvmRpc::new(&[dead.clone(), live], Duration::from_secs(2)).unwrap();
    assert_eq!(rpc.genesis_hash().await.unwrap(), GENESIS);
    let counts = rpc.error_counts();
    assert_eq!(counts.len(), 1);
    assert_eq!(counts[0].kind, RpcErrorKind::Connect);
    assert!(!counts[0].host.contains("SECRET"));
    let only_dead = SvmRpc::new(&[dead], Duration::from_millis(500)).unwrap();
    let error = only_dead.genesis_hash().await.unwrap_err().to_string();
    assert!(!error.contains("SECRETAPIKEY"), "{error}");
}

/// The plugin through the registry, as the facilitator drives it.
#[tokio::test]
async fn the_plugin_builds_a_facilitator_probe_and_wallet_from_tables() {
    let world = World::start(TOKEN_PROGRAM, &[]).await;
    let key = bs58::encode({
        let mut bytes = [2u8; 64];
        bytes[32..].copy_from_slice(world.fee_payer.address().as_ref());
        bytes
    })
    .into_string();
    let registry = PluginRegistry::new().with(Arc::new(SvmPlugin));
    let tables = vec![
        json!({"network": "solana-devnet", "rpc_urls": [world.url.clone()],
        "fee_payer_private_keys": [key], "max_compute_unit_price_micro_lamports": 1000,
        "assets": [{"mint": world.mint.to_string(), "symbol": "TST", "decimals": 6}]}),
    ];
    let routed = registry
        .route_entries(tables, |i| format!("chains[{i}]"))
        .unwrap();
    let (plugin, entries) = routed
        .iter()
        .find(|(p, _)| p.namespace() == "solana")
        .unwrap();
    let mut config = FacilitatorConfig::default();
    config.entries = entries.clone();
    let parts = plugin.facilitator(&config).await.unwrap();
    let network = ChainId::parse(NETWORK).unwrap();
    let extra = parts.schemes[0].kind_extra(&network).unwrap();
    assert_eq!(extra["feePayer"], world.fee_payer.address().to_string());
    assert_eq!(extra["maxComputeUnitPriceMicroLamports"], 1000);
    assert_eq!(parts.probes[0].balance_unit(), "lamports");
    parts.probes[0].ready().await.unwrap();
    assert_eq!(parts.probes[0].signer_balances().await.len(), 1);

    let secret_url = "https://rpc.example/SECRETAPIKEY";
    for (table, named) in [
        (
            json!({"network": NETWORK, "rpc_urls": [secret_url], "fee_payer_private_keys": ["5ec7e7notakey"]}),
            "chains[3].fee_payer_private_keys[0]",
        ),
        (
            json!({"network": NETWORK, "rpc_urls": [secret_url], "fee_payer_private_keys": [], "colour": 1}),
            "chains[3]",
        ),
        (
            json!({"network": NETWORK, "rpc_urls": [secret_url], "fee_payer_private_keys": [],
                "allowed_mint_extensions": ["transfer_fees"]}),
            "chains[3]",
        ),
    ] {
        config.entries = vec![ConfigEntry::new(network.clone(), "chains[3]", table)];
        let error = SvmPlugin
            .facilitator(&config)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.starts_with(named), "{named}: {error}");
        assert!(
            !error.contains("SECRETAPIKEY") && !error.contains("5ec7e7"),
            "{error}"
        );
    }

    // Risky settings are refused: token account creation without API keys
    // on /settle (anyone could farm the rent), `processed` settlements (they
    // may roll back), and two entries for one cluster.
    let good = json!({"network": NETWORK, "rpc_urls": [world.url.clone()],
        "fee_payer_private_keys": [key.clone()]});
    let with = |key: &str, value: Value| {
        let mut table = good.clone();
        table[key] = value;
        table
    };
    let create = with("create_destination_ata", json!(true));
    let processed = with("commitment", json!("processed"));
    for (tables, named) in [
        (vec![create.clone()], "chains[0].create_destination_ata"),
        (vec![processed], "chains[0].commitment"),
        (vec![good.clone(), good.clone()], "chains[1].network"),
    ] {
        config.entries = tables
            .into_iter()
            .enumerate()
            .map(|(i, table)| ConfigEntry::new(network.clone(), format!("chains[{i}]"), table))
            .collect();
        let error = SvmPlugin
            .facilitator(&config)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.starts_with(named), "{named}: {error}");
    }
    config.entries = vec![ConfigEntry::new(network.clone(), "chains[0]", create)];
    config.settle_authenticated = true;
    assert!(
        SvmPlugin.facilitator(&config).await.is_ok(),
        "with API keys on /settle, creation may be turned on"
    );
    config.settle_authenticated = false;

    let mut wallet = WalletConfig::new(Secret::new(
        bs58::encode({
            let mut bytes = [1u8; 64];
            bytes[32..].copy_from_slice(world.payer.address().as_ref());
            bytes
        })
        .into_string(),
    ));
    wallet.rpc_urls = vec![(network.clone(), Secret::new(world.url.clone()))];
    let parts = SvmPlugin.wallet(&wallet).unwrap();
    assert_eq!(parts.addresses, [world.payer.address().to_string()]);
    assert_eq!(
        parts.schemes[0].handler.payer(&network),
        Some(world.payer.address().to_string())
    );
    let error = SvmPlugin
        .wallet(&WalletConfig::new(Secret::new("5ec7e7")))
        .unwrap_err()
        .to_string();
    assert!(!error.contains("5ec7e7"), "{error}");
}

/// Field lesson 14, concurrently: two settlements of one transaction in
/// flight at once give one success and one duplicate, and one send.
#[tokio::test]
async fn concurrent_settlements_of_one_transaction_succeed_once() {
    let world = World::start(TOKEN_PROGRAM, &[]).await;
    world.node.lock().unwrap().confirm_sends = false;
    let payload = world.payload(TOKEN_PROGRAM);
    let requirements = world.requirements();
    let (first, second) = tokio::join!(
        world.facilitator.settle(&payload, &requirements),
        world.facilitator.settle(&payload, &requirements)
    );
    let answers = [first.unwrap(), second.unwrap()];
    let duplicates = answers
        .iter()
        .filter(|a| a.error_reason == Some(paywire_core::ErrorReason::DUPLICATE_SETTLEMENT))
        .count();
    assert_eq!(duplicates, 1, "{answers:?}");
    assert!(answers.iter().any(paywire_core::SettleResponse::is_pending));
    assert_eq!(world.node.lock().unwrap().sent.len(), 1);
}
