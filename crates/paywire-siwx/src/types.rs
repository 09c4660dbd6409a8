//! Wire types of the `sign-in-with-x` extension: the server-declared
//! [`SiwxInfo`] and [`SupportedChain`]s, the extension object
//! [`SiwxExtension`] (`{info, supportedChains, schema}`) and the client's
//! [`SiwxProof`] carried base64-encoded in the `SIGN-IN-WITH-X` header.

use paywire_core::Extensions;
use paywire_core::codec::{self, DecodeError};
use paywire_core::extensions::SIGN_IN_WITH_X;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The only CAIP-122 message version.
pub const SIWX_VERSION: &str = "1";
/// `type` of EVM sign-in (EIP-191 personal-sign of a SIWE message).
pub const TYPE_EIP191: &str = "eip191";
/// `type` of Solana sign-in (ed25519 over a SIWS message).
pub const TYPE_ED25519: &str = "ed25519";
/// `signatureScheme` hint: EOA personal-sign.
pub const SCHEME_EIP191: &str = "eip191";
/// `signatureScheme` hint: deployed smart wallet.
pub const SCHEME_EIP1271: &str = "eip1271";
/// `signatureScheme` hint: counterfactual smart wallet.
pub const SCHEME_EIP6492: &str = "eip6492";
/// `signatureScheme` hint: Sign-In With Solana.
pub const SCHEME_SIWS: &str = "siws";
/// Header carrying a session token issued after a valid sign-in (response)
/// and presented instead of a proof (request).
pub const SESSION_HEADER: &str = "sign-in-with-x-session";

/// Message metadata the server declares in `extensions["sign-in-with-x"].info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SiwxInfo {
    /// The server's domain (host, with port if not default), from the
    /// configured public origin.
    pub domain: String,
    /// Full URI of the resource being accessed.
    pub uri: String,
    /// CAIP-122 version, always `"1"`.
    pub version: String,
    /// Server-issued single-use nonce (32 hex characters).
    pub nonce: String,
    /// When the challenge was issued (RFC 3339 UTC).
    pub issued_at: String,
    /// When the challenge expires (RFC 3339 UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_time: Option<String>,
    /// Before this time the signature is not valid (RFC 3339 UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    /// Human-readable purpose of the signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// URIs associated with the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Vec<String>>,
}

/// One authentication method the server accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupportedChain {
    /// CAIP-2 chain id, e.g. `eip155:8453`.
    pub chain_id: String,
    /// Signature algorithm: [`TYPE_EIP191`] or [`TYPE_ED25519`].
    #[serde(rename = "type")]
    pub kind: String,
    /// Optional hint for the client's signing UX.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_scheme: Option<String>,
}

/// The extension object placed under `extensions["sign-in-with-x"]` of a
/// `PaymentRequired`: `{info, supportedChains, schema}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SiwxExtension {
    /// The challenge.
    pub info: SiwxInfo,
    /// Accepted chains, in preference order.
    pub supported_chains: Vec<SupportedChain>,
    /// JSON Schema of the proof (see [`proof_schema`]).
    #[serde(default)]
    pub schema: Value,
}

/// Why the extension could not be read from a `PaymentRequired`.
#[derive(Debug, thiserror::Error)]
#[error("malformed sign-in-with-x extension: {0}")]
pub struct ExtensionError(#[source] pub serde_json::Error);

impl SiwxExtension {
    /// Builds the extension object with our proof schema.
    pub fn new(info: SiwxInfo, supported_chains: Vec<SupportedChain>) -> Self {
        Self {
            info,
            supported_chains,
            schema: proof_schema(),
        }
    }

    /// The extension as JSON.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The extension as JSON, moving the schema instead of copying it
    /// through a serializer (this runs for every 402 of a sign-in route).
    pub fn into_value(self) -> Value {
        let mut object = serde_json::Map::with_capacity(3);
        object.insert(
            "info".to_owned(),
            serde_json::to_value(&self.info).unwrap_or(Value::Null),
        );
        object.insert(
            "supportedChains".to_owned(),
            serde_json::to_value(&self.supported_chains).unwrap_or(Value::Null),
        );
        object.insert("schema".to_owned(), self.schema);
        Value::Object(object)
    }

    /// Inserts (or replaces) the extension in a `PaymentRequired.extensions` map.
    pub fn insert_into(&self, extensions: &mut Extensions) {
        self.clone().move_into(extensions);
    }

    /// Like [`SiwxExtension::insert_into`], without copying the extension.
    pub fn move_into(self, extensions: &mut Extensions) {
        extensions
            .0
            .insert(SIGN_IN_WITH_X.to_owned(), self.into_value());
    }

    /// Reads the extension from a `PaymentRequired.extensions` map: `None` if
    /// absent, `Some(Err)` if malformed.
    pub fn from_extensions(extensions: &Extensions) -> Option<Result<Self, ExtensionError>> {
        let value = extensions.get(SIGN_IN_WITH_X)?;
        Some(Self::deserialize(value).map_err(ExtensionError))
    }

    /// The first supported entry for `chain_id` (clients pick the first match).
    pub fn chain(&self, chain_id: &str) -> Option<&SupportedChain> {
        self.supported_chains
            .iter()
            .find(|c| c.chain_id == chain_id)
    }
}

/// The client's proof: every `info` field echoed, plus the wallet's address,
/// chain, signature type and signature. Field order matches the
/// specification's decoded-header example.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SiwxProof {
    /// Echoed `info.domain`.
    pub domain: String,
    /// Wallet address: EIP-55 checksummed hex for EVM, base58 for Solana.
    pub address: String,
    /// Echoed `info.uri`.
    pub uri: String,
    /// Echoed `info.version`.
    pub version: String,
    /// CAIP-2 chain id the wallet signed for.
    pub chain_id: String,
    /// Signature type ([`TYPE_EIP191`] or [`TYPE_ED25519`]).
    #[serde(rename = "type")]
    pub kind: String,
    /// Echoed `info.nonce`.
    pub nonce: String,
    /// Echoed `info.issuedAt`.
    pub issued_at: String,
    /// Echoed `info.expirationTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_time: Option<String>,
    /// Echoed `info.notBefore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    /// Echoed `info.requestId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Echoed `info.statement`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    /// Echoed `info.resources`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Vec<String>>,
    /// Signature scheme hint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_scheme: Option<String>,
    /// `0x`-hex (EVM) or base58 (Solana) signature.
    pub signature: String,
}

impl SiwxProof {
    /// The `SIGN-IN-WITH-X` header value (standard base64 of the JSON).
    pub fn to_header(&self) -> String {
        codec::encode_header(self)
    }

    /// Decodes a `SIGN-IN-WITH-X` header value (size-capped by the codec).
    pub fn from_header(value: &[u8]) -> Result<Self, DecodeError> {
        codec::decode_header(value)
    }

    /// The server-declared part of the proof.
    pub fn info(&self) -> SiwxInfo {
        SiwxInfo {
            domain: self.domain.clone(),
            uri: self.uri.clone(),
            version: self.version.clone(),
            nonce: self.nonce.clone(),
            issued_at: self.issued_at.clone(),
            expiration_time: self.expiration_time.clone(),
            not_before: self.not_before.clone(),
            statement: self.statement.clone(),
            request_id: self.request_id.clone(),
            resources: self.resources.clone(),
        }
    }
}

/// Our JSON Schema (draft 2020-12) of the proof, per the specification's
/// field list.
pub fn proof_schema() -> Value {
    static SCHEMA: std::sync::LazyLock<Value> = std::sync::LazyLock::new(build_proof_schema);
    SCHEMA.clone()
}

fn build_proof_schema() -> Value {
    let date_time = json!({"type": "string", "format": "date-time"});
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "domain": {"type": "string"},
            "address": {"type": "string"},
            "statement": {"type": "string"},
            "uri": {"type": "string", "format": "uri"},
            "version": {"type": "string", "const": SIWX_VERSION},
            "chainId": {"type": "string"},
            "type": {"type": "string", "enum": [TYPE_EIP191, TYPE_ED25519]},
            "nonce": {"type": "string", "pattern": "^[0-9a-fA-F]{32}$"},
            "issuedAt": date_time,
            "expirationTime": date_time,
            "notBefore": date_time,
            "requestId": {"type": "string"},
            "resources": {"type": "array", "items": {"type": "string", "format": "uri"}},
            "signatureScheme": {
                "type": "string",
                "enum": [SCHEME_EIP191, SCHEME_EIP1271, SCHEME_EIP6492, SCHEME_SIWS]
            },
            "signature": {"type": "string"}
        },
        "required": [
            "domain", "address", "uri", "version", "chainId", "type", "nonce", "issuedAt",
            "signature"
        ]
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The specification's example header, byte for byte.
    pub(crate) const SPEC_HEADER: &str = "eyJkb21haW4iOiJhcGkuZXhhbXBsZS5jb20iLCJhZGRyZXNzIjoiMHg4NTdiMDY1MTlFOTFlM0E1NDUzODc5MWJEYmIwRTIyMzczZTM2YjY2IiwidXJpIjoiaHR0cHM6Ly9hcGkuZXhhbXBsZS5jb20vcHJlbWl1bS1kYXRhIiwidmVyc2lvbiI6IjEiLCJjaGFpbklkIjoiZWlwMTU1Ojg0NTMiLCJ0eXBlIjoiZWlwMTkxIiwibm9uY2UiOiJhMWIyYzNkNGU1ZjY3ODkwYTFiMmMzZDRlNWY2Nzg5MCIsImlzc3VlZEF0IjoiMjAyNC0wMS0xNVQxMDozMDowMC4wMDBaIiwiZXhwaXJhdGlvblRpbWUiOiIyMDI0LTAxLTE1VDEwOjM1OjAwLjAwMFoiLCJzdGF0ZW1lbnQiOiJTaWduIGluIHRvIGFjY2VzcyBwcmVtaXVtIGRhdGEiLCJyZXNvdXJjZXMiOlsiaHR0cHM6Ly9hcGkuZXhhbXBsZS5jb20vcHJlbWl1bS1kYXRhIl0sInNpZ25hdHVyZVNjaGVtZSI6ImVpcDE5MSIsInNpZ25hdHVyZSI6IjB4MmQ2YTc1ODhkNmFjY2E1MDVjYmYwZDlhNGEyMjdlMGM1MmM2YzM0MDA4YzhlODk4NmExMjgzMjU5NzY0MTczNjA4YTJjZTY0OTY2NDJlMzc3ZDZkYThkYmJmNTgzNmU5YmQxNTA5MmY5ZWNhYjA1ZGVkM2Q2MjkzYWYxNDhiNTcxYyJ9";

    #[test]
    fn moved_and_serialized_extensions_are_the_same_json() {
        let extension = SiwxExtension::new(
            SiwxInfo {
                domain: "api.example.com".into(),
                uri: "https://api.example.com/data".into(),
                version: SIWX_VERSION.into(),
                nonce: "a1b2c3d4e5f67890a1b2c3d4e5f67890".into(),
                issued_at: "2024-01-15T10:30:00.000Z".into(),
                expiration_time: None,
                not_before: None,
                statement: Some("hello".into()),
                request_id: None,
                resources: Some(vec!["https://api.example.com/data".into()]),
            },
            vec![SupportedChain {
                chain_id: "eip155:8453".into(),
                kind: TYPE_EIP191.into(),
                signature_scheme: None,
            }],
        );
        assert_eq!(extension.clone().into_value(), extension.to_value());
        assert_eq!(extension.schema, build_proof_schema());
    }

    #[test]
    fn spec_header_round_trips_byte_for_byte() {
        let proof = SiwxProof::from_header(SPEC_HEADER.as_bytes()).unwrap();
        assert_eq!(proof.address, "0x857b06519E91e3A54538791bDbb0E22373e36b66");
        assert_eq!(proof.chain_id, "eip155:8453");
        assert_eq!(proof.kind, TYPE_EIP191);
        assert_eq!(proof.signature_scheme.as_deref(), Some(SCHEME_EIP191));
        assert_eq!(
            proof.expiration_time.as_deref(),
            Some("2024-01-15T10:35:00.000Z")
        );
        assert_eq!(proof.to_header(), SPEC_HEADER);
    }

    #[test]
    fn header_size_is_capped() {
        let huge = "A".repeat(codec::MAX_HEADER_LEN + 4);
        assert!(matches!(
            SiwxProof::from_header(huge.as_bytes()),
            Err(DecodeError::TooLarge { .. })
        ));
        assert!(
            SiwxProof::from_header(b"e30=").is_err(),
            "{{}} lacks fields"
        );
    }

    #[test]
    fn extension_object_matches_spec_shape() {
        let info = SiwxInfo {
            domain: "api.example.com".into(),
            uri: "https://api.example.com/premium-data".into(),
            version: "1".into(),
            nonce: "a1b2c3d4e5f67890a1b2c3d4e5f67890".into(),
            issued_at: "2024-01-15T10:30:00.000Z".into(),
            expiration_time: Some("2024-01-15T10:35:00.000Z".into()),
            not_before: None,
            statement: Some("Sign in to access premium data".into()),
            request_id: None,
            resources: Some(vec!["https://api.example.com/premium-data".into()]),
        };
        let ext = SiwxExtension::new(
            info,
            vec![SupportedChain {
                chain_id: "eip155:8453".into(),
                kind: TYPE_EIP191.into(),
                signature_scheme: None,
            }],
        );
        let mut extensions = Extensions::new();
        ext.insert_into(&mut extensions);
        let value = extensions.get(SIGN_IN_WITH_X).unwrap();
        let keys: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["info", "supportedChains", "schema"]);
        assert_eq!(
            value["info"].to_string(),
            r#"{"domain":"api.example.com","uri":"https://api.example.com/premium-data","version":"1","nonce":"a1b2c3d4e5f67890a1b2c3d4e5f67890","issuedAt":"2024-01-15T10:30:00.000Z","expirationTime":"2024-01-15T10:35:00.000Z","statement":"Sign in to access premium data","resources":["https://api.example.com/premium-data"]}"#
        );
        assert_eq!(
            value["supportedChains"].to_string(),
            r#"[{"chainId":"eip155:8453","type":"eip191"}]"#
        );
        assert_eq!(value["schema"]["required"].as_array().unwrap().len(), 9);
        let back = SiwxExtension::from_extensions(&extensions)
            .unwrap()
            .unwrap();
        assert_eq!(back, ext);
        assert_eq!(back.chain("eip155:8453").unwrap().kind, TYPE_EIP191);
    }
}
