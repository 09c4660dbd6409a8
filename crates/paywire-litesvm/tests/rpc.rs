//! The JSON-RPC node seen by a plain client: reqwest + serde_json, transactions built with the
//! Solana split crates.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use paywire_litesvm::token::{self, TokenProgram, associated_token_address};
use paywire_litesvm::{FailureKind, Pubkey, RpcServer, SolanaTestChain};
use serde_json::{Value, json};
use solana_hash::Hash;
use solana_keypair::Keypair;
use solana_message::{AddressLookupTableAccount, Message, VersionedMessage, v0};
use solana_signer::Signer;
use solana_transaction::Transaction;
use solana_transaction::versioned::VersionedTransaction;

struct Fixture {
    chain: Arc<SolanaTestChain>,
    server: RpcServer,
    http: reqwest::Client,
    mint: Pubkey,
    fee_payer: Keypair,
    client: Keypair,
    pay_to: Pubkey,
}

const PRICE: u64 = 10_000;
const CLIENT_FUNDS: u64 = 5_000_000;

impl Fixture {
    fn new(program: TokenProgram) -> Self {
        let chain = Arc::new(SolanaTestChain::new());
        let mint = chain.create_mint(program, 6);
        Self::with_mint(chain, mint)
    }

    fn with_mint(chain: Arc<SolanaTestChain>, mint: Pubkey) -> Self {
        let fee_payer = chain.funded_wallet(1_000_000_000);
        let client = Keypair::new();
        let pay_to = Keypair::new().pubkey();
        chain.mint_to(&mint, &client.pubkey(), CLIENT_FUNDS);
        chain.create_ata(&pay_to, &mint);
        let server = RpcServer::start(chain.clone()).expect("loopback port");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        Self {
            chain,
            server,
            http,
            mint,
            fee_payer,
            client,
            pay_to,
        }
    }

    async fn post(&self, body: &Value) -> reqwest::Response {
        self.http
            .post(self.server.url())
            .json(body)
            .send()
            .await
            .expect("http")
    }

    async fn call(&self, method: &str, params: Value) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        self.post(&body).await.json().await.expect("json")
    }

    async fn result(&self, method: &str, params: Value) -> Value {
        let reply = self.call(method, params).await;
        assert!(reply.get("error").is_none(), "{method} failed: {reply}");
        reply["result"].clone()
    }

    async fn blockhash(&self) -> Hash {
        let value = self
            .result("getLatestBlockhash", json!([{"commitment": "confirmed"}]))
            .await;
        value["value"]["blockhash"]
            .as_str()
            .expect("blockhash")
            .parse()
            .expect("hash")
    }

    fn program(&self) -> TokenProgram {
        TokenProgram::from_owner(&self.chain.account(&self.mint).expect("mint").owner)
            .expect("token mint")
    }

    /// The spec's payment: compute limit, compute price, TransferChecked; fee payer first.
    fn payment_message(&self, amount: u64, blockhash: Hash) -> Message {
        let program = self.program();
        let source = associated_token_address(&self.client.pubkey(), &self.mint, program);
        let destination = associated_token_address(&self.pay_to, &self.mint, program);
        let instructions = [
            token::set_compute_unit_limit(20_000),
            token::set_compute_unit_price(1),
            token::transfer_checked(
                program,
                &source,
                &self.mint,
                &destination,
                &self.client.pubkey(),
                amount,
                6,
            ),
        ];
        Message::new_with_blockhash(&instructions, Some(&self.fee_payer.pubkey()), &blockhash)
    }

    /// The client signs first, the fee payer co-signs (as a facilitator would).
    fn payment(&self, amount: u64, blockhash: Hash) -> Transaction {
        let mut tx = Transaction::new_unsigned(self.payment_message(amount, blockhash));
        tx.partial_sign(&[&self.client], blockhash);
        tx.partial_sign(&[&self.fee_payer], blockhash);
        tx
    }

    fn base64(tx: &Transaction) -> String {
        B64.encode(wincode::serialize(&VersionedTransaction::from(tx.clone())).expect("wire"))
    }

    async fn send(&self, tx: &Transaction, skip_preflight: bool) -> Value {
        let params =
            json!([Self::base64(tx), {"encoding": "base64", "skipPreflight": skip_preflight}]);
        self.call("sendTransaction", params).await
    }

    async fn status(&self, signature: &str) -> Value {
        let value = self
            .result(
                "getSignatureStatuses",
                json!([[signature], {"searchTransactionHistory": true}]),
            )
            .await;
        value["value"][0].clone()
    }

    fn balances(&self) -> (u64, u64) {
        (
            self.chain.token_balance(&self.client.pubkey(), &self.mint),
            self.chain.token_balance(&self.pay_to, &self.mint),
        )
    }
}

#[tokio::test]
async fn a_co_signed_transfer_simulates_sends_confirms_and_moves_exactly_the_amount() {
    let f = Fixture::new(TokenProgram::Token);
    let fee_payer_before = f.chain.lamports(&f.fee_payer.pubkey());
    let tx = f.payment(PRICE, f.blockhash().await);

    let simulated = f
        .result("simulateTransaction", json!([Fixture::base64(&tx), {"encoding": "base64", "sigVerify": true, "commitment": "confirmed"}]))
        .await;
    assert_eq!(simulated["context"]["apiVersion"], "2.3.13");
    assert_eq!(simulated["value"]["err"], Value::Null, "{simulated}");
    assert!(simulated["value"]["unitsConsumed"].as_u64().unwrap() > 0);
    assert!(
        simulated["value"]["logs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap() == format!("Program {} success", token::TOKEN_PROGRAM_ID))
    );
    assert_eq!(
        f.balances(),
        (CLIENT_FUNDS, 0),
        "simulation changes nothing"
    );

    let sent = f.send(&tx, false).await;
    assert_eq!(sent["result"], tx.signatures[0].to_string(), "{sent}");
    let status = f.status(&tx.signatures[0].to_string()).await;
    assert_eq!(status["confirmationStatus"], "confirmed", "{status}");
    assert_eq!(status["err"], Value::Null);
    assert_eq!(status["status"], json!({"Ok": null}));
    assert_eq!(status["confirmations"], 0);
    assert_eq!(f.balances(), (CLIENT_FUNDS - PRICE, PRICE));
    assert_eq!(
        f.chain.lamports(&f.fee_payer.pubkey()),
        fee_payer_before - 2 * 5000 - 1,
        "two signatures + 1 µlamport × 20k CU, rounded up to 1 lamport"
    );

    let destination = associated_token_address(&f.pay_to, &f.mint, TokenProgram::Token).to_string();
    let balance = f
        .result("getTokenAccountBalance", json!([destination]))
        .await;
    assert_eq!(
        balance["value"],
        json!({"amount": "10000", "decimals": 6, "uiAmount": 0.01, "uiAmountString": "0.01"})
    );

    let got = f.result("getTransaction", json!([tx.signatures[0].to_string(), {"encoding": "json", "maxSupportedTransactionVersion": 0}])).await;
    assert_eq!(got["version"], "legacy");
    // Token balances are listed by account index; read them by owner.
    let amount = |list: &Value, owner: &Pubkey| -> String {
        let entry = list
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["owner"] == owner.to_string())
            .unwrap();
        entry["uiTokenAmount"]["amount"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (pre, post) = (
        &got["meta"]["preTokenBalances"],
        &got["meta"]["postTokenBalances"],
    );
    assert_eq!(amount(pre, &f.client.pubkey()), "5000000");
    assert_eq!(amount(pre, &f.pay_to), "0");
    assert_eq!(amount(post, &f.client.pubkey()), "4990000");
    assert_eq!(amount(post, &f.pay_to), "10000");
    assert_eq!(post[0]["mint"], f.mint.to_string());

    f.chain.warp_slots(32);
    assert_eq!(
        f.status(&tx.signatures[0].to_string()).await["confirmationStatus"],
        "finalized"
    );
}

#[tokio::test]
async fn a_replay_is_already_processed_and_moves_nothing() {
    let f = Fixture::new(TokenProgram::Token);
    let tx = f.payment(PRICE, f.blockhash().await);
    assert!(f.send(&tx, false).await.get("result").is_some());

    let replay = f.send(&tx, false).await;
    assert_eq!(replay["error"]["code"], -32002, "{replay}");
    assert_eq!(
        replay["error"]["message"],
        "Transaction simulation failed: This transaction has already been processed"
    );
    assert_eq!(replay["error"]["data"]["err"], "AlreadyProcessed");

    let skipped = f.send(&tx, true).await;
    assert_eq!(
        skipped["result"],
        tx.signatures[0].to_string(),
        "the node accepts and drops it"
    );
    assert_eq!(f.balances(), (CLIENT_FUNDS - PRICE, PRICE));
    assert_eq!(f.chain.sends().received, 3);
    assert_eq!(f.chain.sends().executed, 1);
}

#[tokio::test]
async fn an_expired_blockhash_is_not_found() {
    let f = Fixture::new(TokenProgram::Token);
    let blockhash = f.blockhash().await;
    let last_valid =
        f.result("getLatestBlockhash", json!([])).await["value"]["lastValidBlockHeight"]
            .as_u64()
            .unwrap();
    let tx = f.payment(PRICE, blockhash);
    f.chain.expire_blockhash();

    assert!(
        f.result("getBlockHeight", json!([]))
            .await
            .as_u64()
            .unwrap()
            > last_valid
    );
    let valid = f
        .result("isBlockhashValid", json!([blockhash.to_string()]))
        .await;
    assert_eq!(valid["value"], false);
    let simulated = f
        .result(
            "simulateTransaction",
            json!([Fixture::base64(&tx), {"encoding": "base64"}]),
        )
        .await;
    assert_eq!(simulated["value"]["err"], "BlockhashNotFound");
    let sent = f.send(&tx, false).await;
    assert_eq!(sent["error"]["data"]["err"], "BlockhashNotFound", "{sent}");

    // replaceRecentBlockhash simulates with the new one (signatures then unchecked).
    let replaced = f
        .result(
            "simulateTransaction",
            json!([Fixture::base64(&tx), {"encoding": "base64", "replaceRecentBlockhash": true}]),
        )
        .await;
    assert_eq!(replaced["value"]["err"], Value::Null, "{replaced}");
    assert_eq!(
        replaced["value"]["replacementBlockhash"]["blockhash"],
        f.blockhash().await.to_string()
    );
    let both = f
        .call("simulateTransaction", json!([Fixture::base64(&tx), {"encoding": "base64", "replaceRecentBlockhash": true, "sigVerify": true}]))
        .await;
    assert_eq!(both["error"]["code"], -32602);
}

#[tokio::test]
async fn simulation_reports_signature_and_instruction_errors_in_the_node_form() {
    let f = Fixture::new(TokenProgram::Token);
    let blockhash = f.blockhash().await;
    // Only the client signed: fine without sigVerify, a failure with it and in preflight.
    let mut partial = Transaction::new_unsigned(f.payment_message(PRICE, blockhash));
    partial.partial_sign(&[&f.client], blockhash);
    let unsigned = Fixture::base64(&partial);
    let lax = f
        .result(
            "simulateTransaction",
            json!([unsigned, {"encoding": "base64", "sigVerify": false}]),
        )
        .await;
    assert_eq!(lax["value"]["err"], Value::Null, "{lax}");
    let strict = f
        .result(
            "simulateTransaction",
            json!([unsigned, {"encoding": "base64", "sigVerify": true}]),
        )
        .await;
    assert_eq!(strict["value"]["err"], "SignatureFailure");
    let sent = f.send(&partial, false).await;
    assert_eq!(sent["error"]["code"], -32003, "{sent}");

    let too_much = f.payment(CLIENT_FUNDS + 1, blockhash);
    let base58 =
        bs58::encode(wincode::serialize(&VersionedTransaction::from(too_much.clone())).unwrap())
            .into_string();
    let failed = f
        .result(
            "simulateTransaction",
            json!([base58, {"innerInstructions": true}]),
        )
        .await;
    assert_eq!(
        failed["value"]["err"],
        json!({"InstructionError": [2, {"Custom": 1}]}),
        "insufficient funds"
    );
    assert!(failed["value"]["innerInstructions"].is_array());
    let preflight = f.send(&too_much, false).await;
    assert_eq!(preflight["error"]["code"], -32002);
    assert_eq!(
        preflight["error"]["data"]["err"],
        json!({"InstructionError": [2, {"Custom": 1}]})
    );
    assert!(preflight["error"]["data"]["logs"].as_array().unwrap().len() > 1);

    // Without preflight it lands, fails and still pays the fee.
    let landed = f.send(&too_much, true).await;
    let status = f.status(landed["result"].as_str().unwrap()).await;
    assert_eq!(
        status["err"],
        json!({"InstructionError": [2, {"Custom": 1}]})
    );
    assert_eq!(
        status["status"],
        json!({"Err": {"InstructionError": [2, {"Custom": 1}]}})
    );
    assert_eq!(f.balances(), (CLIENT_FUNDS, 0));
}

#[tokio::test]
async fn a_held_send_has_no_status_until_released_and_a_duplicate_lands_once() {
    let f = Fixture::new(TokenProgram::Token);
    let tx = f.payment(PRICE, f.blockhash().await);
    let signature = tx.signatures[0].to_string();
    f.chain.hold_sends(true);
    assert_eq!(f.send(&tx, false).await["result"], signature);
    assert_eq!(f.send(&tx, true).await["result"], signature);
    assert_eq!(f.status(&signature).await, Value::Null);
    assert_eq!(f.balances(), (CLIENT_FUNDS, 0));

    assert_eq!(f.chain.release_held(), 2);
    assert_eq!(
        f.status(&signature).await["confirmationStatus"],
        "confirmed"
    );
    assert_eq!(f.balances(), (CLIENT_FUNDS - PRICE, PRICE));
    assert_eq!(f.chain.sends().received, 2);
    assert_eq!(f.chain.sends().executed, 1);
}

#[tokio::test]
async fn a_transfer_fee_mint_delivers_less_than_the_amount() {
    let chain = Arc::new(SolanaTestChain::new());
    let mint = chain.create_mint_with_transfer_fee(6, 100, 1_000_000);
    let f = Fixture::with_mint(chain, mint);
    let tx = f.payment(1_000_000, f.blockhash().await);
    assert!(f.send(&tx, false).await.get("result").is_some());
    assert_eq!(
        f.balances(),
        (CLIENT_FUNDS - 1_000_000, 990_000),
        "1% withheld at the destination"
    );

    let data = f.chain.account(&mint).unwrap().data;
    assert_eq!(
        data.len(),
        token::mint_len_with_extensions(&[token::TRANSFER_FEE_CONFIG_LEN])
    );
    assert_eq!(data[token::ACCOUNT_LEN], 1, "account type: mint");
    assert_eq!(
        u16::from_le_bytes([data[166], data[167]]),
        token::EXTENSION_TRANSFER_FEE_CONFIG
    );
}

#[tokio::test]
async fn a_transfer_hook_mint_carries_the_extension_and_parses_as_a_mint() {
    let chain = Arc::new(SolanaTestChain::new());
    let hook = Keypair::new().pubkey();
    let mint = chain.create_mint_with_transfer_hook(6, Some(&hook));
    let data = chain.account(&mint).unwrap().data;
    assert_eq!(
        u16::from_le_bytes([data[166], data[167]]),
        token::EXTENSION_TRANSFER_HOOK
    );
    assert_eq!(
        &data[170 + 32..170 + 64],
        hook.as_ref(),
        "hook program id after the authority"
    );
    assert_eq!(chain.mint(&mint).unwrap().decimals, 6);
}

#[tokio::test]
async fn accounts_come_back_in_base64_base58_and_json_parsed() {
    let f = Fixture::new(TokenProgram::Token2022);
    let ata = associated_token_address(&f.client.pubkey(), &f.mint, TokenProgram::Token2022);
    let parsed = f
        .result(
            "getAccountInfo",
            json!([ata.to_string(), {"encoding": "jsonParsed"}]),
        )
        .await;
    let info = &parsed["value"]["data"]["parsed"]["info"];
    assert_eq!(parsed["value"]["data"]["program"], "spl-token-2022");
    assert_eq!(info["tokenAmount"]["amount"], CLIENT_FUNDS.to_string());
    assert_eq!(info["owner"], f.client.pubkey().to_string());
    assert_eq!(info["mint"], f.mint.to_string());

    let mint = f
        .result(
            "getAccountInfo",
            json!([f.mint.to_string(), {"encoding": "jsonParsed"}]),
        )
        .await;
    assert_eq!(mint["value"]["data"]["parsed"]["type"], "mint");
    assert_eq!(
        mint["value"]["data"]["parsed"]["info"]["supply"],
        CLIENT_FUNDS.to_string()
    );

    let raw = f
        .result(
            "getAccountInfo",
            json!([f.mint.to_string(), {"encoding": "base64"}]),
        )
        .await;
    assert_eq!(
        raw["value"]["owner"],
        token::TOKEN_2022_PROGRAM_ID.to_string()
    );
    assert_eq!(raw["value"]["space"], 82);
    let bytes = B64
        .decode(raw["value"]["data"][0].as_str().unwrap())
        .unwrap();
    assert_eq!(bytes[44], 6, "decimals");

    let many = f
        .result("getMultipleAccounts", json!([[f.mint.to_string(), Keypair::new().pubkey().to_string()], {"encoding": "base58"}]))
        .await;
    assert_eq!(many["value"][0]["data"][1], "base58");
    assert_eq!(many["value"][1], Value::Null);
    let lamports = f
        .result("getBalance", json!([f.fee_payer.pubkey().to_string()]))
        .await;
    assert_eq!(lamports["value"], 1_000_000_000);
    let rent = f
        .result("getMinimumBalanceForRentExemption", json!([165]))
        .await;
    assert_eq!(rent, 2_039_280);
}

#[tokio::test]
async fn a_lookup_table_resolves_over_rpc_and_in_a_v0_transaction() {
    let f = Fixture::new(TokenProgram::Token);
    let program = TokenProgram::Token;
    let source = associated_token_address(&f.client.pubkey(), &f.mint, program);
    let destination = associated_token_address(&f.pay_to, &f.mint, program);
    let table = f
        .chain
        .create_lookup_table(&f.fee_payer.pubkey(), &[destination, f.mint]);

    let raw = f
        .result(
            "getAccountInfo",
            json!([table.to_string(), {"encoding": "base64"}]),
        )
        .await;
    assert_eq!(
        raw["value"]["owner"],
        "AddressLookupTab1e1111111111111111111111111"
    );
    let bytes = B64
        .decode(raw["value"]["data"][0].as_str().unwrap())
        .unwrap();
    assert_eq!(&bytes[56..88], destination.as_ref());
    assert_eq!(&bytes[88..120], f.mint.as_ref());

    let lookup = AddressLookupTableAccount {
        key: table,
        addresses: vec![destination, f.mint],
    };
    let blockhash = f.blockhash().await;
    let transfer = token::transfer_checked(
        program,
        &source,
        &f.mint,
        &destination,
        &f.client.pubkey(),
        PRICE,
        6,
    );
    let message =
        v0::Message::try_compile(&f.fee_payer.pubkey(), &[transfer], &[lookup], blockhash).unwrap();
    assert_eq!(
        message.address_table_lookups.len(),
        1,
        "the destination comes from the table"
    );
    let tx =
        VersionedTransaction::try_new(VersionedMessage::V0(message), &[&f.fee_payer, &f.client])
            .unwrap();
    let encoded = B64.encode(wincode::serialize(&tx).unwrap());
    let sent = f
        .call("sendTransaction", json!([encoded, {"encoding": "base64"}]))
        .await;
    assert_eq!(sent["result"], tx.signatures[0].to_string(), "{sent}");
    assert_eq!(f.balances(), (CLIENT_FUNDS - PRICE, PRICE));

    let signature = tx.signatures[0].to_string();
    let refused = f
        .call("getTransaction", json!([signature, {"encoding": "json"}]))
        .await;
    assert_eq!(refused["error"]["code"], -32015);
    let got = f
        .result(
            "getTransaction",
            json!([signature, {"encoding": "json", "maxSupportedTransactionVersion": 0}]),
        )
        .await;
    assert_eq!(got["version"], 0);
    assert_eq!(
        got["meta"]["loadedAddresses"]["writable"],
        json!([destination.to_string()])
    );
}

#[tokio::test]
async fn batches_unknown_methods_and_bad_input_get_json_rpc_answers() {
    let f = Fixture::new(TokenProgram::Token);
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "getSlot"},
        {"jsonrpc": "2.0", "id": "two", "method": "getHealth"},
        {"jsonrpc": "2.0", "id": 3, "method": "getGenesisHash"},
        {"jsonrpc": "2.0", "id": 4, "method": "eth_chainId"},
    ]);
    let replies: Value = f.post(&batch).await.json().await.unwrap();
    assert_eq!(replies[0], json!({"jsonrpc": "2.0", "result": 0, "id": 1}));
    assert_eq!(replies[1]["result"], "ok");
    assert_eq!(replies[1]["id"], "two");
    assert_eq!(replies[2]["result"], f.chain.genesis_hash().to_string());
    assert_eq!(replies[3]["error"]["code"], -32601);
    assert_eq!(replies[3]["id"], 4);

    assert_eq!(
        f.call("getBalance", json!(["not-an-address"])).await["error"]["code"],
        -32602
    );
    assert_eq!(
        f.call("sendTransaction", json!(["AAAA", {"encoding": "base64"}]))
            .await["error"]["code"],
        -32602
    );
    let garbage: Value = f
        .http
        .post(f.server.url())
        .body("{")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(garbage["error"]["code"], -32700);
    assert_eq!(f.server.request_count("getSlot"), 1);
    assert_eq!(
        f.server.requests()[..4],
        ["getSlot", "getHealth", "getGenesisHash", "eth_chainId"]
    );
}

#[tokio::test]
async fn the_genesis_hash_is_chosen_by_the_test() {
    let devnet: Hash = paywire_litesvm::DEVNET_GENESIS_HASH.parse().unwrap();
    let chain = SolanaTestChain::with_genesis_hash(devnet);
    assert_eq!(chain.caip2(), "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1");
    let server = RpcServer::start(Arc::new(chain)).unwrap();
    let reply: Value = reqwest::Client::new()
        .post(server.url())
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "getGenesisHash"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["result"], paywire_litesvm::DEVNET_GENESIS_HASH);
}

#[tokio::test]
async fn injected_failures_503_rpc_error_and_hang_then_recovery() {
    let f = Fixture::new(TokenProgram::Token);
    f.server.fail_next(1, FailureKind::Http503);
    f.server.fail_next(1, FailureKind::RpcError);
    f.server.fail_next(1, FailureKind::Hang);
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "getSlot"});

    assert_eq!(f.post(&body).await.status(), 503);
    let error: Value = f.post(&body).await.json().await.unwrap();
    assert_eq!(error["error"]["code"], -32005);
    assert_eq!(error["id"], 7);
    let hung = f
        .http
        .post(f.server.url())
        .json(&body)
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(hung.unwrap_err().is_timeout());
    assert_eq!(f.result("getSlot", json!([])).await, 0, "answers again");
    assert_eq!(f.server.request_count("getSlot"), 4);
}

#[tokio::test]
async fn fee_for_message_and_a_mint_at_a_chosen_address() {
    let f = Fixture::new(TokenProgram::Token);
    let message = f.payment_message(PRICE, f.blockhash().await);
    let encoded =
        B64.encode(wincode::serialize(&VersionedMessage::Legacy(message.clone())).unwrap());
    let fee = f
        .result(
            "getFeeForMessage",
            json!([encoded, {"commitment": "confirmed"}]),
        )
        .await;
    assert_eq!(fee["value"], 10_001, "two signatures and the priority fee");
    f.chain.expire_blockhash();
    assert_eq!(
        f.result("getFeeForMessage", json!([encoded])).await["value"],
        Value::Null
    );

    let usdc: Pubkey = "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU"
        .parse()
        .unwrap();
    f.chain.create_mint_at(&usdc, TokenProgram::Token, 6);
    f.chain.mint_to(&usdc, &f.client.pubkey(), 7);
    assert_eq!(f.chain.token_balance(&f.client.pubkey(), &usdc), 7);
    assert_eq!(f.chain.mint(&usdc).unwrap().supply, 7);
}
