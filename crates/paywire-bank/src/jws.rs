//! Attestations as compact JWS, `alg: "EdDSA"` (Ed25519, RFC 8037), and the
//! authority's key set: one active signing key, retired keys kept for
//! verification (and published) until their attestations' holds lapsed.
//!
//! Parsing is strict: exactly three base64url parts without padding, a
//! header with exactly `alg`, `kid` and `typ` (`EdDSA`, a known key id,
//! [`ATTESTATION_TYPE`]): `none`, other algorithms, `crit` and any other
//! header parameter are refused. Sizes are capped before decoding.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::wire::{ATTESTATION_TYPE, Claims};

/// The only algorithm accepted.
pub const ALGORITHM: &str = "EdDSA";
/// The longest compact JWS accepted (bytes).
pub const MAX_TOKEN_LEN: usize = 4096;
/// The longest key id accepted.
pub const MAX_KID_LEN: usize = 64;

/// Why a token or a key was refused. Texts never quote key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwsError {
    /// Not a well-formed compact JWS (parts, base64url, JSON, size).
    #[error("malformed attestation: {0}")]
    Malformed(&'static str),
    /// The header names another algorithm (`none` included).
    #[error("unsupported attestation algorithm")]
    Algorithm,
    /// The header's `typ` is not the attestation type.
    #[error("wrong attestation type")]
    Type,
    /// The header's `kid` is not a published key.
    #[error("unknown attestation key id")]
    UnknownKey,
    /// The signature does not verify.
    #[error("attestation signature does not verify")]
    Signature,
    /// A configured key is unusable.
    #[error("signing key {kid:?}: {detail}")]
    Key {
        /// The key id (never the key).
        kid: String,
        /// What is wrong.
        detail: &'static str,
    },
}

/// The protected header of an attestation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Always [`ALGORITHM`].
    pub alg: String,
    /// The signing key's id.
    pub kid: String,
    /// Always [`ATTESTATION_TYPE`].
    pub typ: String,
}

/// One configured key: its id, its 32-byte Ed25519 seed, and whether it
/// signs new attestations (exactly one does) or only verifies.
pub struct KeyMaterial {
    /// The key id.
    pub kid: String,
    /// The Ed25519 seed (secret).
    pub seed: [u8; 32],
    /// Whether it is the signing key.
    pub active: bool,
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("kid", &self.kid)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

impl KeyMaterial {
    /// Decodes a base64url (no padding) 32-byte seed.
    ///
    /// # Errors
    /// [`JwsError::Key`] when it is not 32 bytes of base64url.
    pub fn from_base64(kid: &str, seed: &str, active: bool) -> Result<Self, JwsError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(seed.trim())
            .map_err(|_| key_error(kid, "the secret is not base64url without padding"))?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|_| key_error(kid, "the secret is not a 32-byte Ed25519 seed"))?;
        Ok(Self {
            kid: kid.to_owned(),
            seed,
            active,
        })
    }
}

fn key_error(kid: &str, detail: &'static str) -> JwsError {
    JwsError::Key {
        kid: kid.chars().take(MAX_KID_LEN).collect(),
        detail,
    }
}

struct Key {
    kid: String,
    verifying: VerifyingKey,
}

/// The authority's keys: the active signer and every published verifier.
pub struct KeySet {
    signer: SigningKey,
    signer_kid: String,
    keys: Vec<Key>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|key| key.kid.as_str()).collect();
        f.debug_struct("KeySet")
            .field("active", &self.signer_kid)
            .field("published", &kids)
            .finish_non_exhaustive()
    }
}

fn valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= MAX_KID_LEN
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

impl KeySet {
    /// A key set from configured keys: ids unique and well-formed
    /// (`[A-Za-z0-9._:-]`, at most 64), exactly one active.
    ///
    /// # Errors
    /// [`JwsError::Key`] naming the offending key id.
    pub fn new(material: Vec<KeyMaterial>) -> Result<Self, JwsError> {
        let mut signer = None;
        let mut keys: Vec<Key> = Vec::with_capacity(material.len());
        for item in material {
            if !valid_kid(&item.kid) {
                return Err(key_error(&item.kid, "key ids are 1-64 of [A-Za-z0-9._:-]"));
            }
            if keys.iter().any(|key| key.kid == item.kid) {
                return Err(key_error(&item.kid, "duplicate key id"));
            }
            let signing = SigningKey::from_bytes(&item.seed);
            keys.push(Key {
                kid: item.kid.clone(),
                verifying: signing.verifying_key(),
            });
            if item.active {
                if signer.is_some() {
                    return Err(key_error(&item.kid, "more than one key is active"));
                }
                signer = Some((signing, item.kid));
            }
        }
        let (signer, signer_kid) =
            signer.ok_or_else(|| key_error("", "exactly one key must be active"))?;
        Ok(Self {
            signer,
            signer_kid,
            keys,
        })
    }

    /// The active key's id.
    pub fn active_kid(&self) -> &str {
        &self.signer_kid
    }

    /// Signs `claims` with the active key.
    ///
    /// # Errors
    /// [`JwsError::Malformed`] if the claims cannot be serialized.
    pub fn sign(&self, claims: &Claims) -> Result<String, JwsError> {
        let header = Header {
            alg: ALGORITHM.to_owned(),
            kid: self.signer_kid.clone(),
            typ: ATTESTATION_TYPE.to_owned(),
        };
        let header = serde_json::to_vec(&header).map_err(|_| JwsError::Malformed("header"))?;
        let claims = serde_json::to_vec(claims).map_err(|_| JwsError::Malformed("claims"))?;
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature = self.signer.sign(input.as_bytes());
        Ok(format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        ))
    }

    /// Verifies `token` (structure, header, signature with a published key)
    /// and returns its claims. Claims are not checked here (times,
    /// audience): that is the caller's policy.
    ///
    /// # Errors
    /// See [`JwsError`].
    pub fn verify(&self, token: &str) -> Result<Verified, JwsError> {
        let parts = split(token)?;
        let header = parse_header(parts.header)?;
        let key = self
            .keys
            .iter()
            .find(|key| key.kid == header.kid)
            .ok_or(JwsError::UnknownKey)?;
        key.verifying
            .verify_strict(parts.signing_input.as_bytes(), &parts.signature)
            .map_err(|_| JwsError::Signature)?;
        let claims: Claims =
            serde_json::from_slice(&parts.claims).map_err(|_| JwsError::Malformed("claims"))?;
        Ok(Verified {
            kid: header.kid,
            claims,
        })
    }

    /// The JWKS document of every published key (active and retired).
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .keys
            .iter()
            .map(|key| {
                serde_json::json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": URL_SAFE_NO_PAD.encode(key.verifying.as_bytes()),
                    "kid": key.kid,
                    "use": "sig",
                    "alg": ALGORITHM,
                })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

/// A token whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The key that signed it.
    pub kid: String,
    /// Its claims (unchecked).
    pub claims: Claims,
}

struct Parts<'a> {
    header: &'a str,
    signing_input: &'a str,
    claims: Vec<u8>,
    signature: Signature,
}

fn split(token: &str) -> Result<Parts<'_>, JwsError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwsError::Malformed("too long"));
    }
    let mut pieces = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (pieces.next(), pieces.next(), pieces.next(), pieces.next())
    else {
        return Err(JwsError::Malformed("not three parts"));
    };
    let signing_input = &token[..header.len() + 1 + claims.len()];
    let claims = URL_SAFE_NO_PAD
        .decode(claims)
        .map_err(|_| JwsError::Malformed("claims are not base64url"))?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| JwsError::Malformed("signature is not base64url"))?;
    let signature: [u8; 64] = signature
        .try_into()
        .map_err(|_| JwsError::Malformed("signature is not 64 bytes"))?;
    Ok(Parts {
        header,
        signing_input,
        claims,
        signature: Signature::from_bytes(&signature),
    })
}

fn parse_header(encoded: &str) -> Result<Header, JwsError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| JwsError::Malformed("header is not base64url"))?;
    // Check `alg` before anything else, so `none` (or any other algorithm)
    // is named as such even with extra header parameters.
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| JwsError::Malformed("header is not JSON"))?;
    if value.get("alg").and_then(serde_json::Value::as_str) != Some(ALGORITHM) {
        return Err(JwsError::Algorithm);
    }
    let header: Header = serde_json::from_value(value)
        .map_err(|_| JwsError::Malformed("header has missing or extra parameters"))?;
    if header.typ != ATTESTATION_TYPE {
        return Err(JwsError::Type);
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            iss: "https://credits.example".into(),
            sub: "bdl_1".into(),
            aud: "https://api.example".into(),
            exp: 10,
            hold_exp: 20,
            iat: 5,
            jti: "att_1".into(),
            amount: "50".into(),
            asset: "USD".into(),
            resource: "https://api.example/x".into(),
        }
    }

    fn keys() -> KeySet {
        KeySet::new(vec![
            KeyMaterial {
                kid: "k1".into(),
                seed: [1; 32],
                active: false,
            },
            KeyMaterial {
                kid: "k2".into(),
                seed: [2; 32],
                active: true,
            },
        ])
        .unwrap()
    }

    #[test]
    fn round_trip_and_tamper() {
        let keys = keys();
        let token = keys.sign(&claims()).unwrap();
        let verified = keys.verify(&token).unwrap();
        assert_eq!(verified.kid, "k2");
        assert_eq!(verified.claims, claims());
        let mut tampered = token.clone();
        tampered.insert(token.find('.').unwrap() + 3, 'A');
        assert!(keys.verify(&tampered).is_err());
        assert_eq!(
            keys.verify(&format!("{token}.x")),
            Err(JwsError::Malformed("not three parts"))
        );
    }

    #[test]
    fn refuses_none_and_crit() {
        let keys = keys();
        let token = keys.sign(&claims()).unwrap();
        let rest = &token[token.find('.').unwrap()..];
        let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"k2","typ":"x402-credit+jwt"}"#);
        assert_eq!(
            keys.verify(&format!("{none}{rest}")),
            Err(JwsError::Algorithm)
        );
        let crit = URL_SAFE_NO_PAD
            .encode(br#"{"alg":"EdDSA","kid":"k2","typ":"x402-credit+jwt","crit":["b64"]}"#);
        assert!(matches!(
            keys.verify(&format!("{crit}{rest}")),
            Err(JwsError::Malformed(_))
        ));
    }

    #[test]
    fn key_set_rules() {
        assert!(KeySet::new(vec![]).is_err());
        let two_active = vec![
            KeyMaterial {
                kid: "a".into(),
                seed: [1; 32],
                active: true,
            },
            KeyMaterial {
                kid: "b".into(),
                seed: [2; 32],
                active: true,
            },
        ];
        assert!(KeySet::new(two_active).is_err());
        let debug = format!("{:?}", KeyMaterial::from_base64("a", &"A".repeat(43), true));
        assert!(!debug.contains("AAAA"));
    }
}
