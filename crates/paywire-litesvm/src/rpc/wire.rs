//! Solana JSON-RPC wire shapes (the `Ui*` types of the real node, as JSON).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use solana_account::Account;
use solana_address::Address;
use solana_message::inner_instruction::InnerInstructionsList;
use solana_transaction::versioned::VersionedTransaction;
use solana_transaction_error::TransactionError;

use crate::chain::{SolanaTestChain, TokenBalance};
use crate::token::{ACCOUNT_LEN, MintView, TokenAccountView, TokenProgram};

/// The `apiVersion` of every response context (an Agave 2.x node).
pub(crate) const API_VERSION: &str = "2.3.13";
/// Largest serialized transaction a node accepts (`PACKET_DATA_SIZE`).
pub(crate) const MAX_TRANSACTION_BYTES: usize = 1232;

/// A JSON-RPC error object.
#[derive(Debug, Clone)]
pub(crate) struct RpcError {
    pub(crate) code: i64,
    pub(crate) message: String,
    pub(crate) data: Option<Value>,
}

impl RpcError {
    pub(crate) fn invalid_params(message: impl Into<String>) -> Self {
        Self {
            code: -32602,
            message: message.into(),
            data: None,
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(data) = &self.data {
            error["data"] = data.clone();
        }
        error
    }
}

/// Wire encodings of account data and transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// Legacy default of account data: a bare base58 string.
    Binary,
    Base58,
    Base64,
    JsonParsed,
    Json,
}

impl Encoding {
    pub(crate) fn parse(value: Option<&Value>, default: Self) -> Result<Self, RpcError> {
        match value.and_then(Value::as_str) {
            None => Ok(default),
            Some("binary") => Ok(Self::Binary),
            Some("base58") => Ok(Self::Base58),
            Some("base64") => Ok(Self::Base64),
            Some("jsonParsed") => Ok(Self::JsonParsed),
            Some("json") => Ok(Self::Json),
            Some(other) => Err(RpcError::invalid_params(format!(
                "Invalid params: unsupported encoding: {other}"
            ))),
        }
    }
}

/// `{"context":{"slot":…,"apiVersion":…},"value":…}`.
pub(crate) fn with_context(slot: u64, value: Value) -> Value {
    json!({ "context": { "slot": slot, "apiVersion": API_VERSION }, "value": value })
}

/// A transaction error as the node serializes it (`"BlockhashNotFound"`,
/// `{"InstructionError":[2,{"Custom":1}]}` …).
pub(crate) fn transaction_error(err: &TransactionError) -> Value {
    serde_json::to_value(err).unwrap_or_else(|_| Value::String(err.to_string()))
}

/// An optional transaction error (`null` on success).
pub(crate) fn optional_error(err: Option<&TransactionError>) -> Value {
    err.map_or(Value::Null, transaction_error)
}

/// Decodes a wire transaction in `encoding` (base58 or base64) and checks its size.
pub(crate) fn decode_transaction(
    encoded: &str,
    encoding: Encoding,
) -> Result<VersionedTransaction, RpcError> {
    let bytes = match encoding {
        Encoding::Base58 | Encoding::Binary => bs58::decode(encoded)
            .into_vec()
            .map_err(|e| RpcError::invalid_params(format!("invalid base58 encoding: {e}")))?,
        Encoding::Base64 => B64
            .decode(encoded)
            .map_err(|e| RpcError::invalid_params(format!("invalid base64 encoding: {e}")))?,
        Encoding::Json | Encoding::JsonParsed => {
            return Err(RpcError::invalid_params(
                "Invalid params: unsupported encoding for a transaction",
            ));
        }
    };
    if bytes.len() > MAX_TRANSACTION_BYTES {
        return Err(RpcError::invalid_params(format!(
            "decoded solana_transaction::versioned::VersionedTransaction too large: {} bytes (max: {MAX_TRANSACTION_BYTES} bytes)",
            bytes.len()
        )));
    }
    wincode::deserialize::<VersionedTransaction>(&bytes).map_err(|e| {
        RpcError::invalid_params(format!(
            "failed to deserialize solana_transaction::versioned::VersionedTransaction: {e}"
        ))
    })
}

/// Raw bytes as `[data, encoding]` (or a bare base58 string for `binary`).
pub(crate) fn encoded_bytes(data: &[u8], encoding: Encoding) -> Value {
    match encoding {
        Encoding::Binary => Value::String(bs58::encode(data).into_string()),
        Encoding::Base58 => json!([bs58::encode(data).into_string(), "base58"]),
        _ => json!([B64.encode(data), "base64"]),
    }
}

/// An account in the node's `UiAccount` shape.
pub(crate) fn ui_account(chain: &SolanaTestChain, account: &Account, encoding: Encoding) -> Value {
    let data = match encoding {
        Encoding::JsonParsed => parsed_token_data(chain, account)
            .unwrap_or_else(|| encoded_bytes(&account.data, Encoding::Base64)),
        other => encoded_bytes(&account.data, other),
    };
    json!({
        "data": data,
        "executable": account.executable,
        "lamports": account.lamports,
        "owner": account.owner.to_string(),
        "rentEpoch": account.rent_epoch,
        "space": account.data.len(),
    })
}

/// `jsonParsed` data of a token account or mint (base layout; Token-2022 extensions are not
/// listed). `None` for anything else, which the node then sends as base64.
fn parsed_token_data(chain: &SolanaTestChain, account: &Account) -> Option<Value> {
    let program = match TokenProgram::from_owner(&account.owner)? {
        TokenProgram::Token => "spl-token",
        _ => "spl-token-2022",
    };
    let is_token_account = account.data.len() == ACCOUNT_LEN
        || (account.data.len() > ACCOUNT_LEN && account.data[ACCOUNT_LEN] == 2);
    let parsed = if is_token_account {
        let view = TokenAccountView::parse(&account.data)?;
        let decimals = chain.mint(&view.mint).map_or(0, |m| m.decimals);
        json!({
            "info": {
                "isNative": false,
                "mint": view.mint.to_string(),
                "owner": view.owner.to_string(),
                "state": if view.state == 2 { "frozen" } else { "initialized" },
                "tokenAmount": token_amount(view.amount, decimals),
            },
            "type": "account",
        })
    } else {
        let mint = MintView::parse(&account.data)?;
        json!({
            "info": {
                "decimals": mint.decimals,
                "freezeAuthority": mint.freeze_authority.map(|a| a.to_string()),
                "isInitialized": true,
                "mintAuthority": mint.mint_authority.map(|a| a.to_string()),
                "supply": mint.supply.to_string(),
            },
            "type": "mint",
        })
    };
    Some(json!({ "parsed": parsed, "program": program, "space": account.data.len() }))
}

/// `UiTokenAmount`: `{amount, decimals, uiAmount, uiAmountString}`.
pub(crate) fn token_amount(amount: u64, decimals: u8) -> Value {
    let text = ui_amount_string(amount, decimals);
    let ui_amount = text.parse::<f64>().ok();
    json!({
        "amount": amount.to_string(),
        "decimals": decimals,
        "uiAmount": ui_amount,
        "uiAmountString": text,
    })
}

/// `amount / 10^decimals` in decimal, trailing zeros trimmed (`1500000`, 6 → `"1.5"`).
pub(crate) fn ui_amount_string(amount: u64, decimals: u8) -> String {
    let digits = amount.to_string();
    let decimals = usize::from(decimals);
    if decimals == 0 {
        return digits;
    }
    let padded = format!("{digits:0>width$}", width = decimals + 1);
    let (whole, fraction) = padded.split_at(padded.len() - decimals);
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        whole.to_owned()
    } else {
        format!("{whole}.{fraction}")
    }
}

/// Inner instructions in the compiled form: `[{index, instructions:[{programIdIndex, accounts,
/// data (base58), stackHeight}]}]`.
pub(crate) fn inner_instructions(list: &InnerInstructionsList) -> Value {
    let entries: Vec<Value> = list
        .iter()
        .enumerate()
        .filter(|(_, inner)| !inner.is_empty())
        .map(|(index, inner)| {
            let instructions: Vec<Value> = inner
                .iter()
                .map(|ix| {
                    json!({
                        "programIdIndex": ix.instruction.program_id_index,
                        "accounts": ix.instruction.accounts,
                        "data": bs58::encode(&ix.instruction.data).into_string(),
                        "stackHeight": ix.stack_height,
                    })
                })
                .collect();
            json!({ "index": index, "instructions": instructions })
        })
        .collect();
    Value::Array(entries)
}

/// `UiTransactionTokenBalance`.
pub(crate) fn token_balance(balance: &TokenBalance) -> Value {
    json!({
        "accountIndex": balance.account_index,
        "mint": balance.mint.to_string(),
        "owner": balance.owner.to_string(),
        "programId": balance.program.to_string(),
        "uiTokenAmount": token_amount(balance.amount, balance.decimals),
    })
}

/// Base58 strings of addresses.
pub(crate) fn addresses(keys: &[Address]) -> Vec<String> {
    keys.iter().map(ToString::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ui_amount_string_trims_like_the_node() {
        assert_eq!(ui_amount_string(1_500_000, 6), "1.5");
        assert_eq!(ui_amount_string(1_000_000, 6), "1");
        assert_eq!(ui_amount_string(1, 6), "0.000001");
        assert_eq!(ui_amount_string(0, 6), "0");
        assert_eq!(ui_amount_string(42, 0), "42");
    }

    #[test]
    fn transaction_errors_use_the_node_json_form() {
        use solana_transaction_error::TransactionError as E;
        let custom = E::InstructionError(2, solana_instruction::error::InstructionError::Custom(1));
        assert_eq!(
            transaction_error(&custom),
            json!({"InstructionError": [2, {"Custom": 1}]})
        );
        assert_eq!(
            transaction_error(&E::BlockhashNotFound),
            json!("BlockhashNotFound")
        );
    }
}
