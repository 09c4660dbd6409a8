//! CAIP-122 message text: SIWE (EIP-4361) for `eip155:*` and SIWS
//! (Sign-In With Solana) for `solana:*`, formatted exactly as the reference
//! implementations write them and parsed back strictly.
//!
//! The two formats differ only in the account name of the header line, the
//! `Chain ID` value (the numeric EIP-155 id vs the CAIP-2 reference) and,
//! when there is no statement, the number of blank lines after the address
//! (two for SIWE, as EIP-4361's ABNF and the `siwe` library write; one for
//! SIWS, as `@x402/extensions` writes).

use paywire_core::ChainId;
use sha3::{Digest, Keccak256};

use crate::time::{TimeError, parse_rfc3339};
use crate::types::{SIWX_VERSION, SiwxProof};

/// The chain families this module can format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Family {
    /// `eip155:*`, SIWE text.
    Ethereum,
    /// `solana:*`, SIWS text.
    Solana,
}

impl Family {
    /// The family of a chain id, if supported.
    pub fn of(chain: &ChainId) -> Option<Self> {
        match chain.namespace() {
            "eip155" => Some(Self::Ethereum),
            "solana" => Some(Self::Solana),
            _ => None,
        }
    }

    fn namespace(self) -> &'static str {
        match self {
            Self::Ethereum => "eip155",
            Self::Solana => "solana",
        }
    }

    fn account(self) -> &'static str {
        match self {
            Self::Ethereum => "Ethereum",
            Self::Solana => "Solana",
        }
    }
}

/// Why a message could not be formatted or parsed. Each variant names the
/// offending line or field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The chain's namespace has no message format here.
    #[error("no sign-in message format for chain namespace {0:?}")]
    UnsupportedNamespace(String),
    /// The chain id is not valid CAIP-2 (or not numeric for EIP-155).
    #[error("invalid chain id {0:?}")]
    ChainId(String),
    /// The first line is not `<domain> wants you to sign in with your <X> account:`.
    #[error("invalid header line")]
    Header,
    /// The domain is empty or holds characters not allowed in an authority.
    #[error("invalid domain {0:?}")]
    Domain(String),
    /// The address is not valid for the chain (EVM: EIP-55 checksummed hex;
    /// Solana: base58 of 32 bytes).
    #[error("invalid address {0:?}")]
    Address(String),
    /// The statement is empty, holds a line break, or could be mistaken for a field.
    #[error("invalid statement")]
    Statement,
    /// A line was expected to be empty.
    #[error("line {0}: expected an empty line")]
    ExpectedBlank(usize),
    /// A required field line is missing or out of order.
    #[error("line {line}: expected `{field}: ...`")]
    MissingField {
        /// 1-based line number.
        line: usize,
        /// The field expected there.
        field: &'static str,
    },
    /// A field value is malformed (bad URI, version, nonce, request id or resource).
    #[error("invalid {field}: {value:?}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// The value (truncated).
        value: String,
    },
    /// A timestamp is not strict RFC 3339 UTC.
    #[error("invalid {field}: {source}")]
    Timestamp {
        /// The field.
        field: &'static str,
        /// Why.
        #[source]
        source: TimeError,
    },
    /// Lines remain after the last field, or the text has a trailing newline.
    #[error("line {0}: unexpected content")]
    Trailing(usize),
}

/// The fields of a CAIP-122 sign-in message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiwxMessage {
    /// RFC 3986 authority requesting the sign-in.
    pub domain: String,
    /// Signing account.
    pub address: String,
    /// Optional human-readable statement (never empty, single line).
    pub statement: Option<String>,
    /// Resource URI.
    pub uri: String,
    /// Always `"1"`.
    pub version: String,
    /// CAIP-2 chain.
    pub chain_id: ChainId,
    /// Nonce.
    pub nonce: String,
    /// Issue time, RFC 3339 text.
    pub issued_at: String,
    /// Expiry, RFC 3339 text.
    pub expiration_time: Option<String>,
    /// Start of validity, RFC 3339 text.
    pub not_before: Option<String>,
    /// Correlation id.
    pub request_id: Option<String>,
    /// Resource URIs (an empty list is written as no `Resources:` section).
    pub resources: Vec<String>,
}

fn truncated(value: &str) -> String {
    value.chars().take(80).collect()
}

fn invalid(field: &'static str, value: &str) -> MessageError {
    MessageError::InvalidField {
        field,
        value: truncated(value),
    }
}

/// RFC 3986 `authority` characters (userinfo excluded; host, IPv6 literal, port).
fn valid_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= 255
        && !domain.contains('@')
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~:[]!$&'()*+,;=%".contains(&b))
}

/// An absolute URI: `scheme:` followed by visible ASCII without spaces.
fn valid_uri(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    let mut scheme_bytes = scheme.bytes();
    scheme_bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && scheme_bytes.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        && !rest.is_empty()
        && uri.len() <= 2048
        && uri.bytes().all(|b| b.is_ascii_graphic())
}

/// EIP-4361 nonce: at least 8 alphanumeric characters.
fn valid_nonce(nonce: &str) -> bool {
    (8..=128).contains(&nonce.len()) && nonce.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// EIP-4361 request id: `*pchar` (no spaces, no line breaks).
fn valid_request_id(id: &str) -> bool {
    id.len() <= 256 && id.bytes().all(|b| b.is_ascii_graphic())
}

fn valid_statement(statement: &str) -> bool {
    !statement.is_empty()
        && statement.len() <= 1024
        && !statement.contains(['\n', '\r'])
        && !statement.starts_with("URI: ")
}

/// Validates an address's textual form for `family`.
pub(crate) fn valid_address(family: Family, address: &str) -> bool {
    match family {
        Family::Ethereum => is_eip55_checksummed(address),
        Family::Solana => bs58::decode(address)
            .into_vec()
            .is_ok_and(|bytes| bytes.len() == 32),
    }
}

/// Whether `address` is `0x` and 40 hex digits whose letters are cased as
/// EIP-55 prescribes: upper case where the matching nibble of the Keccak-256
/// hash of the lower-case digits is 8 or more, lower case elsewhere (EIP-4361
/// requires the checksummed form).
fn is_eip55_checksummed(address: &str) -> bool {
    let Some(digits) = address.strip_prefix("0x") else {
        return false;
    };
    if digits.len() != 40 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    let hash = Keccak256::digest(digits.to_ascii_lowercase().as_bytes());
    digits.bytes().enumerate().all(|(i, digit)| {
        let byte = hash[i / 2];
        let nibble = if i % 2 == 0 { byte >> 4 } else { byte & 0x0f };
        match digit {
            b'0'..=b'9' => true,
            _ if nibble >= 8 => digit.is_ascii_uppercase(),
            _ => digit.is_ascii_lowercase(),
        }
    })
}

fn check_time(field: &'static str, value: &str) -> Result<u64, MessageError> {
    parse_rfc3339(value).map_err(|source| MessageError::Timestamp { field, source })
}

impl SiwxMessage {
    /// The message a proof's signature must cover.
    pub fn from_proof(proof: &SiwxProof) -> Result<Self, MessageError> {
        let chain_id = ChainId::parse(&proof.chain_id)
            .map_err(|_| MessageError::ChainId(truncated(&proof.chain_id)))?;
        Ok(Self {
            domain: proof.domain.clone(),
            address: proof.address.clone(),
            statement: proof.statement.clone().filter(|s| !s.is_empty()),
            uri: proof.uri.clone(),
            version: proof.version.clone(),
            chain_id,
            nonce: proof.nonce.clone(),
            issued_at: proof.issued_at.clone(),
            expiration_time: proof.expiration_time.clone(),
            not_before: proof.not_before.clone(),
            request_id: proof.request_id.clone(),
            resources: proof.resources.clone().unwrap_or_default(),
        })
    }

    /// The message's chain family.
    pub fn family(&self) -> Result<Family, MessageError> {
        Family::of(&self.chain_id)
            .ok_or_else(|| MessageError::UnsupportedNamespace(self.chain_id.namespace().into()))
    }

    /// Checks every field, so that [`SiwxMessage::to_text`] output always
    /// parses back to the same value.
    pub fn validate(&self) -> Result<Family, MessageError> {
        let family = self.family()?;
        if family == Family::Ethereum && !valid_eip155_reference(self.chain_id.reference()) {
            return Err(MessageError::ChainId(self.chain_id.to_string()));
        }
        if !valid_domain(&self.domain) {
            return Err(MessageError::Domain(truncated(&self.domain)));
        }
        if !valid_address(family, &self.address) {
            return Err(MessageError::Address(truncated(&self.address)));
        }
        if let Some(statement) = &self.statement
            && !valid_statement(statement)
        {
            return Err(MessageError::Statement);
        }
        if !valid_uri(&self.uri) {
            return Err(invalid("URI", &self.uri));
        }
        if self.version != SIWX_VERSION {
            return Err(invalid("Version", &self.version));
        }
        if !valid_nonce(&self.nonce) {
            return Err(invalid("Nonce", &self.nonce));
        }
        check_time("Issued At", &self.issued_at)?;
        if let Some(value) = &self.expiration_time {
            check_time("Expiration Time", value)?;
        }
        if let Some(value) = &self.not_before {
            check_time("Not Before", value)?;
        }
        if let Some(id) = &self.request_id
            && !valid_request_id(id)
        {
            return Err(invalid("Request ID", id));
        }
        if let Some(resource) = self.resources.iter().find(|r| !valid_uri(r)) {
            return Err(invalid("Resources", resource));
        }
        Ok(family)
    }

    /// The exact text to sign (no trailing newline).
    pub fn to_text(&self) -> Result<String, MessageError> {
        let family = self.validate()?;
        let mut lines: Vec<String> = vec![
            format!(
                "{} wants you to sign in with your {} account:",
                self.domain,
                family.account()
            ),
            self.address.clone(),
            String::new(),
        ];
        match &self.statement {
            Some(statement) => {
                lines.push(statement.clone());
                lines.push(String::new());
            }
            // EIP-4361's ABNF keeps the statement's blank line; SIWS drops it.
            None if family == Family::Ethereum => lines.push(String::new()),
            None => {}
        }
        lines.push(format!("URI: {}", self.uri));
        lines.push(format!("Version: {}", self.version));
        lines.push(format!("Chain ID: {}", self.chain_id.reference()));
        lines.push(format!("Nonce: {}", self.nonce));
        lines.push(format!("Issued At: {}", self.issued_at));
        if let Some(value) = &self.expiration_time {
            lines.push(format!("Expiration Time: {value}"));
        }
        if let Some(value) = &self.not_before {
            lines.push(format!("Not Before: {value}"));
        }
        if let Some(value) = &self.request_id {
            lines.push(format!("Request ID: {value}"));
        }
        if !self.resources.is_empty() {
            lines.push("Resources:".into());
            lines.extend(self.resources.iter().map(|r| format!("- {r}")));
        }
        Ok(lines.join("\n"))
    }

    /// Parses message text strictly: every line in its place, every field
    /// valid, nothing extra.
    pub fn parse(text: &str) -> Result<Self, MessageError> {
        let lines: Vec<&str> = text.split('\n').collect();
        let mut cursor = Cursor { lines, next: 0 };

        let header = cursor.take().ok_or(MessageError::Header)?;
        let (domain, family) = parse_header(header)?;
        let address = cursor
            .take()
            .ok_or_else(|| MessageError::Address(String::new()))?
            .to_owned();
        cursor.blank()?;
        let statement = match cursor.peek() {
            Some(line) if line.starts_with("URI: ") && family == Family::Solana => None,
            Some("") if family == Family::Ethereum => {
                cursor.next += 1;
                None
            }
            Some(line) => {
                cursor.next += 1;
                cursor.blank()?;
                Some(line.to_owned())
            }
            None => {
                return Err(MessageError::MissingField {
                    line: 3,
                    field: "URI",
                });
            }
        };

        let uri = cursor.field("URI")?.to_owned();
        let version = cursor.field("Version")?.to_owned();
        let chain_reference = cursor.field("Chain ID")?;
        let chain_id = ChainId::new(family.namespace(), chain_reference)
            .map_err(|_| MessageError::ChainId(truncated(chain_reference)))?;
        let nonce = cursor.field("Nonce")?.to_owned();
        let issued_at = cursor.field("Issued At")?.to_owned();
        let expiration_time = cursor.optional_field("Expiration Time");
        let not_before = cursor.optional_field("Not Before");
        let request_id = cursor.optional_field("Request ID");
        let mut resources = Vec::new();
        if cursor.peek() == Some("Resources:") {
            cursor.next += 1;
            while let Some(resource) = cursor.peek().and_then(|l| l.strip_prefix("- ")) {
                resources.push(resource.to_owned());
                cursor.next += 1;
            }
            if resources.is_empty() {
                return Err(invalid("Resources", "(empty list)"));
            }
        }
        if cursor.next < cursor.lines.len() {
            return Err(MessageError::Trailing(cursor.next + 1));
        }

        let message = Self {
            domain,
            address,
            statement,
            uri,
            version,
            chain_id,
            nonce,
            issued_at,
            expiration_time,
            not_before,
            request_id,
            resources,
        };
        message.validate()?;
        Ok(message)
    }
}

fn valid_eip155_reference(reference: &str) -> bool {
    !reference.is_empty()
        && reference.bytes().all(|b| b.is_ascii_digit())
        && !reference.starts_with('0')
        && reference.parse::<u64>().is_ok()
}

fn parse_header(line: &str) -> Result<(String, Family), MessageError> {
    for family in [Family::Ethereum, Family::Solana] {
        let suffix = format!(
            " wants you to sign in with your {} account:",
            family.account()
        );
        if let Some(domain) = line.strip_suffix(suffix.as_str()) {
            if !valid_domain(domain) {
                return Err(MessageError::Domain(truncated(domain)));
            }
            return Ok((domain.to_owned(), family));
        }
    }
    Err(MessageError::Header)
}

struct Cursor<'a> {
    lines: Vec<&'a str>,
    next: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<&'a str> {
        self.lines.get(self.next).copied()
    }

    fn take(&mut self) -> Option<&'a str> {
        let line = self.peek()?;
        self.next += 1;
        Some(line)
    }

    fn blank(&mut self) -> Result<(), MessageError> {
        match self.take() {
            Some("") => Ok(()),
            _ => Err(MessageError::ExpectedBlank(self.next)),
        }
    }

    fn field(&mut self, field: &'static str) -> Result<&'a str, MessageError> {
        let line = self.next + 1;
        self.optional_value(field)
            .ok_or(MessageError::MissingField { line, field })
    }

    fn optional_field(&mut self, field: &'static str) -> Option<String> {
        self.optional_value(field).map(str::to_owned)
    }

    fn optional_value(&mut self, field: &'static str) -> Option<&'a str> {
        let value = self.peek()?.strip_prefix(field)?.strip_prefix(": ")?;
        self.next += 1;
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The examples of EIP-55 pass; one letter's case flipped, no prefix,
    /// a short address or a non-hex digit fail.
    #[test]
    fn eip55_checksums() {
        for valid in [
            "0x52908400098527886E0F7030069857D2E4169EE7",
            "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
            "0xde709f2102306220921060314715629080e2fb77",
            "0x27b1fdb04752bbc536007a920d24acb045561c26",
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
            "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
            "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
        ] {
            assert!(is_eip55_checksummed(valid), "{valid}");
            let (at, letter) = valid
                .char_indices()
                .skip(2)
                .find(|(_, c)| c.is_ascii_alphabetic())
                .unwrap();
            let mut flipped = valid.to_owned();
            let toggled = if letter.is_ascii_uppercase() {
                letter.to_ascii_lowercase()
            } else {
                letter.to_ascii_uppercase()
            };
            flipped.replace_range(at..=at, &toggled.to_string());
            assert!(!is_eip55_checksummed(&flipped), "{flipped}");
            assert!(!is_eip55_checksummed(&valid[2..]), "no prefix: {valid}");
            assert!(!is_eip55_checksummed(&valid[..41]), "short: {valid}");
            assert!(!is_eip55_checksummed(&valid.replacen("0x", "0X", 1)));
            assert!(!is_eip55_checksummed(&format!("{}g", &valid[..41])));
        }
    }

    pub(crate) const SPEC_SIWE: &str =
        "api.example.com wants you to sign in with your Ethereum account:
0x857b06519E91e3A54538791bDbb0E22373e36b66

Sign in to access premium data

URI: https://api.example.com/premium-data
Version: 1
Chain ID: 8453
Nonce: a1b2c3d4e5f67890a1b2c3d4e5f67890
Issued At: 2024-01-15T10:30:00.000Z
Expiration Time: 2024-01-15T10:35:00.000Z
Resources:
- https://api.example.com/premium-data";

    pub(crate) const SPEC_SIWS: &str =
        "api.example.com wants you to sign in with your Solana account:
BSmWDgE9ex6dZYbiTsJGcwMEgFp8q4aWh92hdErQPeVW

Sign in to access premium data

URI: https://api.example.com/premium-data
Version: 1
Chain ID: 5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp
Nonce: a1b2c3d4e5f67890a1b2c3d4e5f67890
Issued At: 2024-01-15T10:30:00.000Z
Expiration Time: 2024-01-15T10:35:00.000Z
Resources:
- https://api.example.com/premium-data";

    fn spec_message(chain: &str, address: &str) -> SiwxMessage {
        SiwxMessage {
            domain: "api.example.com".into(),
            address: address.into(),
            statement: Some("Sign in to access premium data".into()),
            uri: "https://api.example.com/premium-data".into(),
            version: "1".into(),
            chain_id: ChainId::parse(chain).unwrap(),
            nonce: "a1b2c3d4e5f67890a1b2c3d4e5f67890".into(),
            issued_at: "2024-01-15T10:30:00.000Z".into(),
            expiration_time: Some("2024-01-15T10:35:00.000Z".into()),
            not_before: None,
            request_id: None,
            resources: vec!["https://api.example.com/premium-data".into()],
        }
    }

    fn siwe() -> SiwxMessage {
        spec_message("eip155:8453", "0x857b06519E91e3A54538791bDbb0E22373e36b66")
    }

    fn siws() -> SiwxMessage {
        spec_message(
            "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp",
            "BSmWDgE9ex6dZYbiTsJGcwMEgFp8q4aWh92hdErQPeVW",
        )
    }

    #[test]
    fn golden_siwe() {
        assert_eq!(siwe().to_text().unwrap(), SPEC_SIWE);
        assert_eq!(SiwxMessage::parse(SPEC_SIWE).unwrap(), siwe());
    }

    #[test]
    fn golden_siws() {
        assert_eq!(siws().to_text().unwrap(), SPEC_SIWS);
        assert_eq!(SiwxMessage::parse(SPEC_SIWS).unwrap(), siws());
    }

    #[test]
    fn golden_from_spec_proof() {
        let proof = SiwxProof::from_header(crate::types::tests::SPEC_HEADER.as_bytes()).unwrap();
        let message = SiwxMessage::from_proof(&proof).unwrap();
        assert_eq!(message.to_text().unwrap(), SPEC_SIWE);
    }

    #[test]
    fn round_trips_with_every_optional_field_combination() {
        for base in [siwe(), siws()] {
            for mask in 0..32u8 {
                let mut m = base.clone();
                if mask & 1 == 0 {
                    m.statement = None;
                }
                if mask & 2 == 0 {
                    m.expiration_time = None;
                }
                if mask & 4 != 0 {
                    m.not_before = Some("2024-01-15T10:29:00Z".into());
                }
                if mask & 8 != 0 {
                    m.request_id = Some("req-42".into());
                }
                if mask & 16 == 0 {
                    m.resources.clear();
                } else {
                    m.resources.push(
                        "ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/"
                            .into(),
                    );
                }
                let text = m.to_text().unwrap();
                assert_eq!(SiwxMessage::parse(&text).unwrap(), m, "{text}");
            }
        }
    }

    #[test]
    fn blank_lines_without_statement() {
        let mut m = siwe();
        m.statement = None;
        assert!(m.to_text().unwrap().contains("b66\n\n\nURI: "));
        let mut m = siws();
        m.statement = None;
        assert!(m.to_text().unwrap().contains("VW\n\nURI: "));
    }

    fn replace(text: &str, from: &str, to: &str) -> String {
        assert!(text.contains(from), "{from:?}");
        text.replacen(from, to, 1)
    }

    #[test]
    fn rejects_every_malformed_line() {
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "empty"),
            (
                replace(SPEC_SIWE, "Ethereum account", "Bitcoin account"),
                "header",
            ),
            (
                replace(
                    SPEC_SIWE,
                    "api.example.com wants",
                    "https://api.example.com wants",
                ),
                "scheme in domain",
            ),
            (
                replace(SPEC_SIWE, "api.example.com wants", " wants"),
                "empty domain",
            ),
            (
                replace(
                    SPEC_SIWE,
                    "api.example.com wants",
                    "user@api.example.com wants",
                ),
                "userinfo",
            ),
            (
                replace(
                    SPEC_SIWE,
                    "0x857b06519E91e3A54538791bDbb0E22373e36b66",
                    "0x857b06519e91e3a54538791bdbb0e22373e36b66",
                ),
                "unchecksummed address",
            ),
            (
                replace(
                    SPEC_SIWE,
                    "0x857b06519E91e3A54538791bDbb0E22373e36b66",
                    "0x857b06519E91e3A5",
                ),
                "short address",
            ),
            (
                replace(
                    SPEC_SIWS,
                    "BSmWDgE9ex6dZYbiTsJGcwMEgFp8q4aWh92hdErQPeVW",
                    "BSmWDgE9ex6dZYbiTsJG0wMEgFp8q4aWh92hdErQPeVW",
                ),
                "non-base58",
            ),
            (
                replace(
                    SPEC_SIWS,
                    "BSmWDgE9ex6dZYbiTsJGcwMEgFp8q4aWh92hdErQPeVW",
                    "BSmWDgE9ex6dZYbiTsJG",
                ),
                "short solana key",
            ),
            (
                replace(SPEC_SIWE, "b66\n\nSign", "b66\nSign"),
                "missing blank after address",
            ),
            (
                replace(SPEC_SIWE, "data\n\nURI", "data\nURI"),
                "missing blank after statement",
            ),
            (
                replace(
                    SPEC_SIWE,
                    "b66\n\nSign in to access premium data\n\n",
                    "b66\n\n",
                ),
                "siwe without statement needs two blanks",
            ),
            (
                replace(SPEC_SIWE, "URI: https://api.example.com/premium-data\n", ""),
                "missing URI",
            ),
            (
                replace(SPEC_SIWE, "URI: https://", "URI: not a uri "),
                "bad URI",
            ),
            (replace(SPEC_SIWE, "URI: ", "Uri: "), "field name case"),
            (replace(SPEC_SIWE, "URI: ", "URI:"), "missing space"),
            (replace(SPEC_SIWE, "Version: 1", "Version: 2"), "version"),
            (replace(SPEC_SIWE, "Version: 1\n", ""), "missing version"),
            (
                replace(SPEC_SIWE, "Chain ID: 8453", "Chain ID: 08453"),
                "leading zero chain",
            ),
            (
                replace(SPEC_SIWE, "Chain ID: 8453", "Chain ID: base"),
                "named chain",
            ),
            (
                replace(SPEC_SIWE, "Chain ID: 8453", "Chain ID: "),
                "empty chain",
            ),
            (
                replace(
                    SPEC_SIWS,
                    "Chain ID: 5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp",
                    "Chain ID: 5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp:x",
                ),
                "bad solana reference",
            ),
            (
                replace(
                    SPEC_SIWE,
                    "Nonce: a1b2c3d4e5f67890a1b2c3d4e5f67890",
                    "Nonce: a1b2",
                ),
                "short nonce",
            ),
            (
                replace(
                    SPEC_SIWE,
                    "Nonce: a1b2c3d4e5f67890a1b2c3d4e5f67890",
                    "Nonce: a1b2c3d4-e5f67890",
                ),
                "nonce punctuation",
            ),
            (
                replace(
                    SPEC_SIWE,
                    "Issued At: 2024-01-15T10:30:00.000Z",
                    "Issued At: 2024-01-15T10:30:00+01:00",
                ),
                "offset time",
            ),
            (
                replace(
                    SPEC_SIWE,
                    "Issued At: 2024-01-15T10:30:00.000Z",
                    "Issued At: yesterday",
                ),
                "issued at",
            ),
            (
                replace(SPEC_SIWE, "Issued At: 2024-01-15T10:30:00.000Z\n", ""),
                "missing issued at",
            ),
            (
                replace(
                    SPEC_SIWE,
                    "Expiration Time: 2024-01-15T10:35:00.000Z",
                    "Expiration Time: 2024-02-30T10:35:00.000Z",
                ),
                "expiration",
            ),
            (
                replace(
                    SPEC_SIWE,
                    "Expiration Time: 2024-01-15T10:35:00.000Z",
                    "Not Before: 2024-01-15T10:35:00",
                ),
                "not before",
            ),
            (
                replace(
                    SPEC_SIWE,
                    "Expiration Time: 2024-01-15T10:35:00.000Z",
                    "Request ID: has space",
                ),
                "request id",
            ),
            (
                replace(
                    SPEC_SIWE,
                    "Nonce: a1b2c3d4e5f67890a1b2c3d4e5f67890\nIssued At: 2024-01-15T10:30:00.000Z",
                    "Issued At: 2024-01-15T10:30:00.000Z\nNonce: a1b2c3d4e5f67890a1b2c3d4e5f67890",
                ),
                "out of order",
            ),
            (
                replace(
                    SPEC_SIWE,
                    "Expiration Time: 2024-01-15T10:35:00.000Z\nResources:",
                    "Resources:\nExpiration Time: 2024-01-15T10:35:00.000Z",
                ),
                "optional out of order",
            ),
            (
                replace(
                    SPEC_SIWE,
                    "- https://api.example.com/premium-data",
                    "- not a uri",
                ),
                "resource",
            ),
            (
                replace(
                    SPEC_SIWE,
                    "Resources:\n- https://api.example.com/premium-data",
                    "Resources:",
                ),
                "empty resources",
            ),
            (
                replace(SPEC_SIWE, "- https://", "-https://"),
                "resource dash",
            ),
            (format!("{SPEC_SIWE}\n"), "trailing newline"),
            (format!("{SPEC_SIWE}\nExtra: 1"), "extra field"),
            (replace(SPEC_SIWE, "\n", "\r\n"), "CRLF"),
            (
                format!("{SPEC_SIWE}\nURI: https://evil.example"),
                "duplicate field",
            ),
        ];
        for (text, what) in cases {
            assert!(
                SiwxMessage::parse(&text).is_err(),
                "accepted: {what}\n{text}"
            );
        }
    }

    #[test]
    fn formatting_rejects_unsafe_fields() {
        let mut m = siwe();
        m.statement = Some("line one\nURI: https://evil.example".into());
        assert_eq!(m.to_text(), Err(MessageError::Statement));
        let mut m = siws();
        m.statement = Some("URI: https://evil.example".into());
        assert_eq!(m.to_text(), Err(MessageError::Statement));
        let mut m = siwe();
        m.uri = "https://a.example/\nVersion: 1".into();
        assert!(m.to_text().is_err());
        let mut m = siwe();
        m.domain = "evil.example\nx".into();
        assert!(m.to_text().is_err());
        let mut m = siwe();
        m.chain_id = ChainId::parse("cosmos:cosmoshub-4").unwrap();
        assert!(matches!(
            m.to_text(),
            Err(MessageError::UnsupportedNamespace(_))
        ));
    }
}
