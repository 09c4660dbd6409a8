//! The `extensions` envelope: a map from extension identifier to
//! `{info, schema}`. Unknown identifiers and members are preserved verbatim.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Identifier of the `payment-identifier` extension.
pub const PAYMENT_IDENTIFIER: &str = "payment-identifier";
/// Identifier of the `sign-in-with-x` extension.
pub const SIGN_IN_WITH_X: &str = "sign-in-with-x";
/// Identifier of the `bazaar` discovery extension.
pub const BAZAAR: &str = "bazaar";

/// One extension's envelope as the specification defines it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Extension {
    /// Extension-specific data.
    pub info: Value,
    /// JSON Schema describing `info`.
    pub schema: Value,
}

/// The `extensions` object of `PaymentRequired`, `PaymentPayload` and
/// `SettleResponse`. Stored as raw JSON so that extensions this crate does not
/// know survive a round trip untouched; typed access goes through
/// [`Extensions::info_as`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Extensions(pub Map<String, Value>);

/// Why an extension's `info` could not be read as the expected type.
#[derive(Debug, thiserror::Error)]
#[error("extension {key:?} has malformed info: {source}")]
pub struct ExtensionInfoError {
    /// The extension identifier.
    pub key: String,
    /// The decoding error.
    #[source]
    pub source: serde_json::Error,
}

impl Extensions {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether no extension is present.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// The raw value stored under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// The `info` member of extension `key`.
    pub fn info(&self, key: &str) -> Option<&Value> {
        self.0.get(key)?.get("info")
    }

    /// Decodes the `info` member of extension `key` as `T`.
    /// `None` if the extension is absent, `Some(Err)` if it is malformed.
    pub fn info_as<T: DeserializeOwned>(&self, key: &str) -> Option<Result<T, ExtensionInfoError>> {
        let info = self.info(key)?;
        Some(T::deserialize(info).map_err(|source| ExtensionInfoError {
            key: key.to_owned(),
            source,
        }))
    }

    /// Inserts (or replaces) an extension envelope.
    pub fn insert(&mut self, key: impl Into<String>, extension: Extension) {
        let mut envelope = Map::new();
        envelope.insert("info".into(), extension.info);
        envelope.insert("schema".into(), extension.schema);
        self.0.insert(key.into(), Value::Object(envelope));
    }

    /// Merges `additions` into the `info` of extension `key`, keeping every
    /// existing member: the protocol lets a client append to what the server
    /// sent but never delete or overwrite it. Returns false if `key` is absent
    /// or its `info` is not an object.
    pub fn append_info(&mut self, key: &str, additions: Map<String, Value>) -> bool {
        let Some(Value::Object(info)) = self.0.get_mut(key).and_then(|e| e.get_mut("info")) else {
            return false;
        };
        for (name, value) in additions {
            info.entry(name).or_insert(value);
        }
        true
    }

    /// Iterates over identifiers and raw envelopes.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_extensions_round_trip() {
        let raw = json!({
            "payment-identifier": {"info": {"required": false}, "schema": {"type": "object"}},
            "x-vendor": {"info": {"anything": [1, 2, 3]}, "schema": {}, "extraMember": true}
        });
        let parsed: Extensions = serde_json::from_value(raw.clone()).unwrap();
        assert!(parsed.contains("x-vendor"));
        assert_eq!(serde_json::to_value(&parsed).unwrap(), raw);
    }

    #[test]
    fn typed_info_access() {
        #[derive(Deserialize)]
        struct Info {
            required: bool,
        }
        let parsed: Extensions = serde_json::from_value(json!({
            "payment-identifier": {"info": {"required": true}, "schema": {}},
            "broken": {"info": {"required": "yes"}, "schema": {}}
        }))
        .unwrap();
        let info: Info = parsed.info_as(PAYMENT_IDENTIFIER).unwrap().unwrap();
        assert!(info.required);
        assert!(parsed.info_as::<Info>("broken").unwrap().is_err());
        assert!(parsed.info_as::<Info>("absent").is_none());
    }

    #[test]
    fn append_never_overwrites() {
        let mut parsed: Extensions = serde_json::from_value(json!({
            "payment-identifier": {"info": {"required": false}, "schema": {}}
        }))
        .unwrap();
        let mut additions = Map::new();
        additions.insert("required".into(), json!(true));
        additions.insert("id".into(), json!("pay_0123456789abcdef"));
        assert!(parsed.append_info(PAYMENT_IDENTIFIER, additions));
        let info = parsed.info(PAYMENT_IDENTIFIER).unwrap();
        assert_eq!(info["required"], json!(false), "server value kept");
        assert_eq!(info["id"], json!("pay_0123456789abcdef"));
        assert!(!parsed.append_info("absent", Map::new()));
    }
}
