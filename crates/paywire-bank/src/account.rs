//! Bank account identifiers, validated when parsed: IBAN (ISO 13616) and
//! BIC (ISO 9362) for SEPA, ABA routing numbers and account numbers for ACH.
//!
//! Every type here holds a validated, normalised value. Their `Debug` and
//! `Display` output is masked (at most the country code and the last four
//! characters), and [`AccountError`] never quotes the number it refused, so
//! account numbers do not leak into logs or error texts. The full value is
//! only available through `as_str()` (for the bank files) and serde.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why an account identifier was refused. The texts name the rule that
/// failed, never the number itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccountError {
    /// Characters other than letters and digits (after removing spaces).
    #[error("IBAN contains characters other than letters and digits")]
    IbanCharacters,
    /// The first two characters are not a country with IBANs we know.
    #[error("IBAN country code is not a known IBAN country")]
    IbanCountry,
    /// The length does not match the country's IBAN length.
    #[error("IBAN has {found} characters, {country} IBANs have {expected}")]
    IbanLength {
        /// The (public) country code.
        country: String,
        /// The country's IBAN length.
        expected: usize,
        /// The length given.
        found: usize,
    },
    /// The check digits are not `00`-`99` digits or the mod-97 check fails.
    #[error("IBAN check digits do not match (mod 97)")]
    IbanChecksum,
    /// Not 8 or 11 characters of the form bank(4 letters) country(2
    /// letters) location(2 alphanumerics) [branch(3 alphanumerics)].
    #[error(
        "BIC must be 8 or 11 characters: 4 letters, 2 letters, 2 and optionally 3 alphanumerics"
    )]
    BicFormat,
    /// Not exactly nine digits (or all zeros).
    #[error("ABA routing number must be 9 digits")]
    RoutingFormat,
    /// The 3-7-1 weighted checksum fails.
    #[error("ABA routing number checksum fails")]
    RoutingChecksum,
    /// Not 4 to 17 letters and digits.
    #[error("ACH account number must be 4 to 17 letters and digits")]
    AccountFormat,
}

/// IBAN length per country (SWIFT IBAN registry): every SEPA country and
/// the other common IBAN countries.
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NL", 18),
    ("NO", 15),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("SA", 24),
    ("SC", 31),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
];

/// The IBAN length of `country`, if it is in the table.
fn iban_length(country: &str) -> Option<usize> {
    IBAN_LENGTHS
        .iter()
        .find(|(code, _)| *code == country)
        .map(|(_, length)| *length)
}

/// ISO 7064 mod 97-10 over the IBAN rearranged (first four characters moved
/// to the end, letters as 10..35), computed digit by digit so no big
/// integer is needed. Input must be ASCII alphanumerics.
fn iban_mod97(iban: &str) -> u32 {
    let (head, tail) = iban.split_at(4);
    tail.bytes().chain(head.bytes()).fold(0u32, |rem, b| {
        if b.is_ascii_digit() {
            (rem * 10 + u32::from(b - b'0')) % 97
        } else {
            let value = u32::from(b - b'A') + 10;
            (rem * 100 + value) % 97
        }
    })
}

/// `country` + `…` + the last four characters of `value`.
fn mask(country: &str, value: &str) -> String {
    let tail: String = value
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{country}…{tail}")
}

/// A validated International Bank Account Number, normalised to upper case
/// without spaces (electronic format).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Iban(String);

impl Iban {
    /// Parses an IBAN in paper (`DE89 3704 …`) or electronic format, any
    /// case: checks the characters, the country's length and the mod-97
    /// check digits.
    pub fn parse(text: &str) -> Result<Self, AccountError> {
        let compact: String = text
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if compact.len() < 5 || !compact.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(AccountError::IbanCharacters);
        }
        let country = &compact[..2];
        if !country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(AccountError::IbanCountry);
        }
        let expected = iban_length(country).ok_or(AccountError::IbanCountry)?;
        if compact.len() != expected {
            return Err(AccountError::IbanLength {
                country: country.to_owned(),
                expected,
                found: compact.len(),
            });
        }
        if !compact[2..4].bytes().all(|b| b.is_ascii_digit()) || iban_mod97(&compact) != 1 {
            return Err(AccountError::IbanChecksum);
        }
        Ok(Self(compact))
    }

    /// The full IBAN (electronic format): for the bank files only.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The ISO 3166 country code (first two letters).
    pub fn country(&self) -> &str {
        &self.0[..2]
    }
}

impl fmt::Debug for Iban {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Iban({})", mask(self.country(), &self.0))
    }
}

impl fmt::Display for Iban {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask(self.country(), &self.0))
    }
}

impl TryFrom<String> for Iban {
    type Error = AccountError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Iban> for String {
    fn from(value: Iban) -> Self {
        value.0
    }
}

/// A validated Business Identifier Code (8 or 11 characters, upper case).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Bic(String);

impl Bic {
    /// Parses a BIC: 4 letters (institution), 2 letters (country), 2
    /// alphanumerics (location), optionally 3 alphanumerics (branch). Lower
    /// case is accepted and normalised; surrounding spaces are ignored.
    pub fn parse(text: &str) -> Result<Self, AccountError> {
        let bic = text.trim().to_ascii_uppercase();
        let b = bic.as_bytes();
        let well_formed = (b.len() == 8 || b.len() == 11)
            && b[..6].iter().all(u8::is_ascii_uppercase)
            && b[6..].iter().all(u8::is_ascii_alphanumeric);
        if !well_formed {
            return Err(AccountError::BicFormat);
        }
        Ok(Self(bic))
    }

    /// The full BIC: for the bank files only.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The ISO 3166 country code (characters 5 and 6).
    pub fn country(&self) -> &str {
        &self.0[4..6]
    }
}

impl fmt::Debug for Bic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bic({})", mask(self.country(), &self.0))
    }
}

impl fmt::Display for Bic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask(self.country(), &self.0))
    }
}

impl TryFrom<String> for Bic {
    type Error = AccountError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Bic> for String {
    fn from(value: Bic) -> Self {
        value.0
    }
}

/// A validated ABA routing transit number (nine digits, 3-7-1 checksum).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AbaRouting(String);

impl AbaRouting {
    /// Parses nine digits whose weighted sum (weights 3, 7, 1 repeated) is
    /// a multiple of ten; all zeros is refused. Surrounding spaces are
    /// ignored.
    pub fn parse(text: &str) -> Result<Self, AccountError> {
        let digits = text.trim();
        if digits.len() != 9
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || digits.bytes().all(|b| b == b'0')
        {
            return Err(AccountError::RoutingFormat);
        }
        let sum: u32 = digits
            .bytes()
            .zip([3u32, 7, 1].iter().cycle())
            .map(|(b, w)| u32::from(b - b'0') * w)
            .sum();
        if !sum.is_multiple_of(10) {
            return Err(AccountError::RoutingChecksum);
        }
        Ok(Self(digits.to_owned()))
    }

    /// The nine digits: for the bank files only.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first eight digits (the Federal Reserve routing symbol and ABA
    /// institution identifier: NACHA's "DFI identification").
    pub fn dfi(&self) -> &str {
        &self.0[..8]
    }

    /// The ninth digit (the check digit).
    pub fn check_digit(&self) -> &str {
        &self.0[8..]
    }
}

impl fmt::Debug for AbaRouting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AbaRouting({})", mask("", &self.0))
    }
}

impl fmt::Display for AbaRouting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask("", &self.0))
    }
}

impl TryFrom<String> for AbaRouting {
    type Error = AccountError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<AbaRouting> for String {
    fn from(value: AbaRouting) -> Self {
        value.0
    }
}

/// A validated ACH (DFI) account number: 4 to 17 ASCII letters and digits,
/// letters upper-cased.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AchAccount(String);

impl AchAccount {
    /// Parses 4 to 17 ASCII letters and digits (surrounding spaces
    /// ignored; inner spaces and punctuation refused).
    pub fn parse(text: &str) -> Result<Self, AccountError> {
        let account = text.trim();
        if !(4..=17).contains(&account.len()) || !account.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(AccountError::AccountFormat);
        }
        Ok(Self(account.to_ascii_uppercase()))
    }

    /// The full account number: for the bank files only.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AchAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AchAccount({})", mask("", &self.0))
    }
}

impl fmt::Display for AchAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask("", &self.0))
    }
}

impl TryFrom<String> for AchAccount {
    type Error = AccountError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<AchAccount> for String {
    fn from(value: AchAccount) -> Self {
        value.0
    }
}

/// The kind of a US deposit account (selects the NACHA transaction code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AchAccountType {
    /// Demand deposit (checking) account.
    Checking,
    /// Savings account.
    Savings,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Published examples: the SWIFT IBAN registry / EC examples.
    const IBANS: &[&str] = &[
        "DE89 3704 0044 0532 0130 00",
        "GB82 WEST 1234 5698 7654 32",
        "FR14 2004 1010 0505 0001 3M02 606",
        "NL91 ABNA 0417 1643 00",
        "BE68 5390 0754 7034",
        "CH93 0076 2011 6238 5295 7",
        "NO93 8601 1117 947",
        "MT84 MALT 0110 0001 2345 MTLC AST0 01S",
    ];

    #[test]
    fn published_ibans_parse_and_normalise() {
        for text in IBANS {
            let iban = Iban::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(iban.as_str(), text.replace(' ', ""));
        }
        let lower = Iban::parse("de89370400440532013000").unwrap();
        assert_eq!(lower.as_str(), "DE89370400440532013000");
        assert_eq!(lower.country(), "DE");
    }

    #[test]
    fn corrupted_ibans_are_refused() {
        // One digit changed.
        assert_eq!(
            Iban::parse("DE89 3704 0044 0532 0130 01"),
            Err(AccountError::IbanChecksum)
        );
        // Two adjacent digits transposed.
        assert_eq!(
            Iban::parse("DE89 3704 0044 0523 0130 00"),
            Err(AccountError::IbanChecksum)
        );
        // Check digits changed.
        assert_eq!(
            Iban::parse("GB83 WEST 1234 5698 7654 32"),
            Err(AccountError::IbanChecksum)
        );
        assert!(matches!(
            Iban::parse("DE89 3704 0044 0532 0130 0"),
            Err(AccountError::IbanLength {
                expected: 22,
                found: 21,
                ..
            })
        ));
        assert_eq!(Iban::parse("ZZ89 3704"), Err(AccountError::IbanCountry));
        assert_eq!(
            Iban::parse("DE89-3704-0044"),
            Err(AccountError::IbanCharacters)
        );
        assert_eq!(Iban::parse(""), Err(AccountError::IbanCharacters));
        assert_eq!(
            Iban::parse("DEAB370400440532013000"),
            Err(AccountError::IbanChecksum)
        );
        assert_eq!(
            Iban::parse("ÄÖ89370400440532013000"),
            Err(AccountError::IbanCharacters)
        );
    }

    #[test]
    fn masked_output_never_shows_the_number() {
        let iban = Iban::parse("DE89 3704 0044 0532 0130 00").unwrap();
        assert_eq!(format!("{iban}"), "DE…3000");
        assert_eq!(format!("{iban:?}"), "Iban(DE…3000)");
        let routing = AbaRouting::parse("021000021").unwrap();
        assert_eq!(format!("{routing:?}"), "AbaRouting(…0021)");
        let account = AchAccount::parse("12345678901").unwrap();
        assert!(!format!("{account:?} {account}").contains("12345678901"));
        let error = Iban::parse("DE89 3704 0044 0532 0130 01").unwrap_err();
        assert!(!error.to_string().contains("3704"));
    }

    #[test]
    fn bics_are_checked() {
        for good in ["DEUTDEFF", "deutdeff500", "NEDSZAJJXXX", "BNPAFRPP"] {
            assert!(Bic::parse(good).is_ok(), "{good}");
        }
        assert_eq!(Bic::parse("deutdeff500").unwrap().as_str(), "DEUTDEFF500");
        for bad in [
            "DEUTDEF",
            "DEUTDEFF5",
            "DEU1DEFF",
            "DEUTD3FF",
            "DEUTDEFF50!",
            "",
        ] {
            assert_eq!(Bic::parse(bad), Err(AccountError::BicFormat), "{bad}");
        }
    }

    #[test]
    fn aba_routing_numbers_use_the_3_7_1_checksum() {
        // Federal Reserve Bank of Boston; JPMorgan Chase (New York); Bank of America.
        for good in ["011000015", "021000021", "026009593", "011000028"] {
            assert!(AbaRouting::parse(good).is_ok(), "{good}");
        }
        assert_eq!(
            AbaRouting::parse("011000016"),
            Err(AccountError::RoutingChecksum)
        );
        assert_eq!(
            AbaRouting::parse("012000015"),
            Err(AccountError::RoutingChecksum)
        );
        assert_eq!(
            AbaRouting::parse("01100001"),
            Err(AccountError::RoutingFormat)
        );
        assert_eq!(
            AbaRouting::parse("0110000150"),
            Err(AccountError::RoutingFormat)
        );
        assert_eq!(
            AbaRouting::parse("01100001A"),
            Err(AccountError::RoutingFormat)
        );
        assert_eq!(
            AbaRouting::parse("000000000"),
            Err(AccountError::RoutingFormat)
        );
        let r = AbaRouting::parse("021000021").unwrap();
        assert_eq!((r.dfi(), r.check_digit()), ("02100002", "1"));
    }

    #[test]
    fn ach_accounts_are_4_to_17_alphanumerics() {
        assert_eq!(AchAccount::parse("1234").unwrap().as_str(), "1234");
        assert_eq!(
            AchAccount::parse("12345678901234567")
                .unwrap()
                .as_str()
                .len(),
            17
        );
        assert_eq!(AchAccount::parse("ab12cd").unwrap().as_str(), "AB12CD");
        for bad in ["123", "123456789012345678", "1234 5678", "1234-5678", ""] {
            assert_eq!(
                AchAccount::parse(bad),
                Err(AccountError::AccountFormat),
                "{bad}"
            );
        }
    }

    #[test]
    fn serde_validates_on_deserialize() {
        let iban: Iban = serde_json::from_str("\"GB82 WEST 1234 5698 7654 32\"").unwrap();
        assert_eq!(
            serde_json::to_string(&iban).unwrap(),
            "\"GB82WEST12345698765432\""
        );
        assert!(serde_json::from_str::<Iban>("\"GB82 WEST 1234 5698 7654 33\"").is_err());
        assert!(serde_json::from_str::<AbaRouting>("\"011000016\"").is_err());
        assert!(serde_json::from_str::<Bic>("\"DEUTDEFF\"").is_ok());
        assert!(serde_json::from_str::<AchAccount>("\"12\"").is_err());
        assert_eq!(
            serde_json::from_str::<AchAccountType>("\"savings\"").unwrap(),
            AchAccountType::Savings
        );
    }
}
