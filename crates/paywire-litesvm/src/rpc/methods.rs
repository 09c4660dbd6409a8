//! The JSON-RPC methods: parameter parsing and the node's result shapes over [`SolanaTestChain`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use solana_address::Address;
use solana_hash::Hash;
use solana_message::VersionedMessage;
use solana_signature::Signature;
use solana_transaction::versioned::VersionedTransaction;
use solana_transaction_error::TransactionError;

use super::wire::{self, Encoding, RpcError, with_context};
use crate::chain::{SendError, SimulateOptions, Simulation, SolanaTestChain};
use crate::token::TokenAccountView;

/// The methods this node answers, in the order of the Solana RPC reference.
pub const METHODS: &[&str] = &[
    "getAccountInfo",
    "getBalance",
    "getBlockHeight",
    "getFeeForMessage",
    "getGenesisHash",
    "getHealth",
    "getLatestBlockhash",
    "getMinimumBalanceForRentExemption",
    "getMultipleAccounts",
    "getSignatureStatuses",
    "getSlot",
    "getTokenAccountBalance",
    "getTransaction",
    "getVersion",
    "isBlockhashValid",
    "sendTransaction",
    "simulateTransaction",
];

/// Runs one method.
pub(crate) fn call(
    chain: &SolanaTestChain,
    method: &str,
    params: &Value,
) -> Result<Value, RpcError> {
    let params = Params(params);
    match method {
        "getAccountInfo" => get_account_info(chain, &params),
        "getBalance" => Ok(with_context(
            chain.slot(),
            json!(chain.lamports(&params.address(0)?)),
        )),
        "getBlockHeight" | "getSlot" => Ok(json!(chain.slot())),
        "getFeeForMessage" => get_fee_for_message(chain, &params),
        "getGenesisHash" => Ok(json!(chain.genesis_hash().to_string())),
        "getHealth" => Ok(json!("ok")),
        "getLatestBlockhash" => {
            let (hash, last_valid) = chain.latest_blockhash();
            let value =
                json!({ "blockhash": hash.to_string(), "lastValidBlockHeight": last_valid });
            Ok(with_context(chain.slot(), value))
        }
        "getMinimumBalanceForRentExemption" => {
            let len = params.u64(0)?;
            let len = usize::try_from(len)
                .map_err(|_| RpcError::invalid_params("Invalid params: data length"))?;
            Ok(json!(chain.minimum_balance_for_rent_exemption(len)))
        }
        "getMultipleAccounts" => get_multiple_accounts(chain, &params),
        "getSignatureStatuses" => get_signature_statuses(chain, &params),
        "getTokenAccountBalance" => get_token_account_balance(chain, &params),
        "getTransaction" => get_transaction(chain, &params),
        "getVersion" => {
            Ok(json!({ "solana-core": wire::API_VERSION, "feature-set": 3_294_202_862_u32 }))
        }
        "isBlockhashValid" => {
            let hash = params.hash(0)?;
            Ok(with_context(
                chain.slot(),
                json!(chain.is_blockhash_valid(&hash)),
            ))
        }
        "sendTransaction" => send_transaction(chain, &params),
        "simulateTransaction" => simulate_transaction(chain, &params),
        _ => Err(RpcError {
            code: -32601,
            message: "Method not found".into(),
            data: None,
        }),
    }
}

/// Positional parameters.
struct Params<'a>(&'a Value);

impl Params<'_> {
    fn get(&self, index: usize) -> Option<&Value> {
        self.0
            .as_array()
            .and_then(|a| a.get(index))
            .filter(|v| !v.is_null())
    }

    fn str(&self, index: usize) -> Result<&str, RpcError> {
        self.get(index).and_then(Value::as_str).ok_or_else(|| {
            RpcError::invalid_params(format!(
                "Invalid params: expected a string at position {index}"
            ))
        })
    }

    fn u64(&self, index: usize) -> Result<u64, RpcError> {
        self.get(index).and_then(Value::as_u64).ok_or_else(|| {
            RpcError::invalid_params(format!(
                "Invalid params: expected an integer at position {index}"
            ))
        })
    }

    fn address(&self, index: usize) -> Result<Address, RpcError> {
        parse_address(self.str(index)?)
    }

    fn hash(&self, index: usize) -> Result<Hash, RpcError> {
        self.str(index)?
            .parse()
            .map_err(|_| RpcError::invalid_params("Invalid params: invalid hash"))
    }

    /// The config object at `index` (empty when absent).
    fn config(&self, index: usize) -> Config<'_> {
        Config(self.get(index))
    }
}

struct Config<'a>(Option<&'a Value>);

impl Config<'_> {
    fn field(&self, name: &str) -> Option<&Value> {
        self.0.and_then(|c| c.get(name)).filter(|v| !v.is_null())
    }

    fn flag(&self, name: &str) -> bool {
        self.field(name).and_then(Value::as_bool).unwrap_or(false)
    }

    fn encoding(&self, default: Encoding) -> Result<Encoding, RpcError> {
        Encoding::parse(self.field("encoding"), default)
    }
}

fn parse_address(text: &str) -> Result<Address, RpcError> {
    text.parse()
        .map_err(|_| RpcError::invalid_params("Invalid param: Invalid"))
}

fn parse_signature(text: &str) -> Result<Signature, RpcError> {
    text.parse()
        .map_err(|_| RpcError::invalid_params("Invalid param: Invalid"))
}

fn get_account_info(chain: &SolanaTestChain, params: &Params<'_>) -> Result<Value, RpcError> {
    let address = params.address(0)?;
    let encoding = params.config(1).encoding(Encoding::Binary)?;
    let value = chain
        .account(&address)
        .map_or(Value::Null, |a| wire::ui_account(chain, &a, encoding));
    Ok(with_context(chain.slot(), value))
}

fn get_multiple_accounts(chain: &SolanaTestChain, params: &Params<'_>) -> Result<Value, RpcError> {
    let list = params.get(0).and_then(Value::as_array).ok_or_else(|| {
        RpcError::invalid_params("Invalid params: expected an array of addresses")
    })?;
    let encoding = params.config(1).encoding(Encoding::Base64)?;
    let values = list
        .iter()
        .map(|v| {
            let address = parse_address(v.as_str().unwrap_or_default())?;
            Ok(chain
                .account(&address)
                .map_or(Value::Null, |a| wire::ui_account(chain, &a, encoding)))
        })
        .collect::<Result<Vec<_>, RpcError>>()?;
    Ok(with_context(chain.slot(), Value::Array(values)))
}

fn get_token_account_balance(
    chain: &SolanaTestChain,
    params: &Params<'_>,
) -> Result<Value, RpcError> {
    let address = params.address(0)?;
    let account = chain
        .account(&address)
        .ok_or_else(|| RpcError::invalid_params("Invalid param: could not find account"))?;
    let view = crate::token::TokenProgram::from_owner(&account.owner)
        .and_then(|_| TokenAccountView::parse(&account.data))
        .ok_or_else(|| RpcError::invalid_params("Invalid param: not a Token account"))?;
    let decimals = chain
        .mint(&view.mint)
        .ok_or_else(|| RpcError::invalid_params("Invalid param: could not find mint"))?
        .decimals;
    Ok(with_context(
        chain.slot(),
        wire::token_amount(view.amount, decimals),
    ))
}

fn get_signature_statuses(chain: &SolanaTestChain, params: &Params<'_>) -> Result<Value, RpcError> {
    let list = params.get(0).and_then(Value::as_array).ok_or_else(|| {
        RpcError::invalid_params("Invalid params: expected an array of signatures")
    })?;
    if list.len() > 256 {
        return Err(RpcError::invalid_params(
            "Too many inputs provided; max 256",
        ));
    }
    let values = list
        .iter()
        .map(|v| {
            let signature = parse_signature(v.as_str().unwrap_or_default())?;
            Ok(chain.signature_status(&signature).map_or(Value::Null, |s| {
                let status = match &s.err {
                    None => json!({ "Ok": null }),
                    Some(err) => json!({ "Err": wire::transaction_error(err) }),
                };
                let level = if s.confirmations.is_none() {
                    "finalized"
                } else {
                    "confirmed"
                };
                json!({
                    "slot": s.slot,
                    "confirmations": s.confirmations,
                    "err": wire::optional_error(s.err.as_ref()),
                    "status": status,
                    "confirmationStatus": level,
                })
            }))
        })
        .collect::<Result<Vec<_>, RpcError>>()?;
    Ok(with_context(chain.slot(), Value::Array(values)))
}

fn simulate_transaction(chain: &SolanaTestChain, params: &Params<'_>) -> Result<Value, RpcError> {
    let config = params.config(1);
    let tx = wire::decode_transaction(params.str(0)?, config.encoding(Encoding::Base58)?)?;
    let sig_verify = config.flag("sigVerify");
    let replace = config.flag("replaceRecentBlockhash");
    if sig_verify && replace {
        return Err(RpcError::invalid_params(
            "sigVerify may not be used with replaceRecentBlockhash",
        ));
    }
    let accounts_config = config.field("accounts");
    let requested: Vec<Address> = accounts_config
        .and_then(|a| a.get("addresses"))
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|v| parse_address(v.as_str().unwrap_or_default()))
                .collect()
        })
        .transpose()?
        .unwrap_or_default();
    let accounts_encoding = Encoding::parse(
        accounts_config.and_then(|a| a.get("encoding")),
        Encoding::Base64,
    )?;
    let options = SimulateOptions {
        sig_verify,
        replace_recent_blockhash: replace,
        accounts: requested,
    };
    let simulation = chain.simulate(tx, &options);
    let mut value = simulation_json(&simulation, config.flag("innerInstructions"));
    if accounts_config.is_some() {
        value["accounts"] = simulation
            .accounts
            .iter()
            .map(|a| {
                a.as_ref().map_or(Value::Null, |a| {
                    wire::ui_account(chain, a, accounts_encoding)
                })
            })
            .collect();
    }
    Ok(with_context(chain.slot(), value))
}

/// `RpcSimulateTransactionResult`.
fn simulation_json(simulation: &Simulation, with_inner: bool) -> Value {
    json!({
        "err": wire::optional_error(simulation.err.as_ref()),
        "logs": simulation.logs,
        "accounts": null,
        "unitsConsumed": simulation.units_consumed,
        "returnData": simulation.return_data.as_ref().map(|(program, data)| json!({
            "programId": program.to_string(),
            "data": [B64.encode(data), "base64"],
        })),
        "innerInstructions": with_inner.then(|| wire::inner_instructions(&simulation.inner_instructions)),
        "replacementBlockhash": simulation.replacement_blockhash.map(|(hash, last_valid)| json!({
            "blockhash": hash.to_string(),
            "lastValidBlockHeight": last_valid,
        })),
        "fee": simulation.fee,
    })
}

fn send_transaction(chain: &SolanaTestChain, params: &Params<'_>) -> Result<Value, RpcError> {
    let config = params.config(1);
    let tx = wire::decode_transaction(params.str(0)?, config.encoding(Encoding::Base58)?)?;
    match chain.send(tx, config.flag("skipPreflight")) {
        Ok(signature) => Ok(json!(signature.to_string())),
        Err(SendError::Preflight(simulation)) => Err(preflight_error(&simulation)),
    }
}

/// The node's preflight failure: `-32003` for a bad signature, otherwise `-32002` carrying the
/// simulation result as `data`.
fn preflight_error(simulation: &Simulation) -> RpcError {
    let err = simulation.err.as_ref();
    if matches!(err, Some(TransactionError::SignatureFailure)) {
        return RpcError {
            code: -32003,
            message: "Transaction signature verification failure".into(),
            data: None,
        };
    }
    RpcError {
        code: -32002,
        message: format!(
            "Transaction simulation failed: {}",
            err.map_or_else(String::new, ToString::to_string)
        ),
        data: Some(simulation_json(simulation, false)),
    }
}

fn get_fee_for_message(chain: &SolanaTestChain, params: &Params<'_>) -> Result<Value, RpcError> {
    let bytes = B64
        .decode(params.str(0)?)
        .map_err(|e| RpcError::invalid_params(format!("invalid base64 encoding: {e}")))?;
    let message = wincode::deserialize::<VersionedMessage>(&bytes)
        .map_err(|e| RpcError::invalid_params(format!("failed to deserialize message: {e}")))?;
    if !chain.is_blockhash_valid(message.recent_blockhash()) {
        return Ok(with_context(chain.slot(), Value::Null));
    }
    let signatures = usize::from(message.header().num_required_signatures);
    let tx = VersionedTransaction {
        signatures: vec![Signature::default(); signatures],
        message,
    };
    let simulation = chain.simulate(tx, &SimulateOptions::new(false));
    let fee = if simulation.fee > 0 {
        simulation.fee
    } else {
        5000 * signatures as u64
    };
    Ok(with_context(chain.slot(), json!(fee)))
}

fn get_transaction(chain: &SolanaTestChain, params: &Params<'_>) -> Result<Value, RpcError> {
    let signature = parse_signature(params.str(0)?)?;
    let config = params.config(1);
    let encoding = config.encoding(Encoding::Json)?;
    let Some(record) = chain.transaction(&signature) else {
        return Ok(Value::Null);
    };
    let version = match &record.transaction.message {
        VersionedMessage::Legacy(_) => json!("legacy"),
        VersionedMessage::V0(_) => {
            if config
                .field("maxSupportedTransactionVersion")
                .and_then(Value::as_u64)
                .is_none()
            {
                return Err(RpcError {
                    code: -32015,
                    message: "Transaction version (0) is not supported by the requesting client. Please try the request again with the following configuration parameter: \"maxSupportedTransactionVersion\": 0".into(),
                    data: None,
                });
            }
            json!(0)
        }
        VersionedMessage::V1(_) => json!(1),
    };
    let transaction = match encoding {
        Encoding::Base64 | Encoding::Base58 | Encoding::Binary => {
            let bytes = wincode::serialize(&record.transaction).unwrap_or_default();
            wire::encoded_bytes(&bytes, encoding)
        }
        Encoding::Json | Encoding::JsonParsed => transaction_json(&record.transaction),
    };
    let (writable, readonly) = record.loaded;
    let statics = record.account_keys.len() - writable - readonly;
    let meta = json!({
        "err": wire::optional_error(record.err.as_ref()),
        "status": match &record.err { None => json!({"Ok": null}), Some(e) => json!({"Err": wire::transaction_error(e)}) },
        "fee": record.fee,
        "preBalances": record.balances.0,
        "postBalances": record.balances.1,
        "preTokenBalances": record.token_balances.0.iter().map(wire::token_balance).collect::<Vec<_>>(),
        "postTokenBalances": record.token_balances.1.iter().map(wire::token_balance).collect::<Vec<_>>(),
        "innerInstructions": wire::inner_instructions(&record.inner_instructions),
        "logMessages": record.logs,
        "loadedAddresses": {
            "writable": wire::addresses(&record.account_keys[statics..statics + writable]),
            "readonly": wire::addresses(&record.account_keys[statics + writable..]),
        },
        "rewards": [],
        "computeUnitsConsumed": record.units_consumed,
    });
    Ok(json!({
        "slot": record.slot,
        "blockTime": null,
        "transaction": transaction,
        "meta": meta,
        "version": version,
    }))
}

/// `UiTransaction` with a raw (compiled) message.
fn transaction_json(tx: &VersionedTransaction) -> Value {
    let message = &tx.message;
    let header = message.header();
    let instructions: Vec<Value> = message
        .instructions()
        .iter()
        .map(|ix| {
            json!({
                "programIdIndex": ix.program_id_index,
                "accounts": ix.accounts,
                "data": bs58::encode(&ix.data).into_string(),
                "stackHeight": null,
            })
        })
        .collect();
    let mut json_message = json!({
        "accountKeys": wire::addresses(message.static_account_keys()),
        "header": {
            "numRequiredSignatures": header.num_required_signatures,
            "numReadonlySignedAccounts": header.num_readonly_signed_accounts,
            "numReadonlyUnsignedAccounts": header.num_readonly_unsigned_accounts,
        },
        "recentBlockhash": message.recent_blockhash().to_string(),
        "instructions": instructions,
    });
    if let Some(lookups) = message.address_table_lookups() {
        json_message["addressTableLookups"] = lookups
            .iter()
            .map(|l| {
                json!({
                    "accountKey": l.account_key.to_string(),
                    "writableIndexes": l.writable_indexes,
                    "readonlyIndexes": l.readonly_indexes,
                })
            })
            .collect();
    }
    json!({
        "signatures": tx.signatures.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "message": json_message,
    })
}
