//! Atomic token amounts (unsigned 256-bit, decimal strings on the wire) and
//! exact decimal money parsing for configuration (`"$0.01"`, `"1.5 USDC"`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Unsigned 256-bit integer, the same type as `alloy_primitives::U256`.
pub type U256 = ruint::Uint<256, 4>;

/// Why a string is not a valid amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AmountError {
    /// The string is empty.
    #[error("amount is empty")]
    Empty,
    /// The string holds something other than ASCII decimal digits.
    #[error("amount {0:?} must be a plain decimal integer (no sign, hex, spaces or fraction)")]
    NotDecimal(String),
    /// The digits have leading zeros (`"010000"`): two spellings of one
    /// amount would let payloads that are equal on chain differ on the wire.
    #[error("amount {0:?} must not have leading zeros")]
    LeadingZero(String),
    /// The value does not fit in 256 bits.
    #[error("amount {0:?} does not fit in 256 bits")]
    Overflow(String),
    /// A money string could not be parsed.
    #[error("money {0:?} is not of the form `$1.23`, `1.23` or `1.23 SYMBOL`")]
    InvalidMoney(String),
    /// A money string is more precise than the asset.
    #[error("money {money:?} has more than {decimals} fractional digits")]
    TooPrecise {
        /// The money string as given.
        money: String,
        /// Decimals of the asset it was converted to.
        decimals: u8,
    },
}

/// An amount in the asset's smallest unit. Serialises as a decimal string,
/// as the x402 wire format requires, and parses strictly: only the canonical
/// spelling (`0`, or a non-zero digit followed by digits).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct AtomicAmount(U256);

/// Longest decimal representation of a 256-bit number.
const MAX_U256_DIGITS: usize = 78;

impl AtomicAmount {
    /// Zero.
    pub const ZERO: Self = Self(U256::ZERO);

    /// Parses the canonical decimal spelling of an amount: `0`, or a
    /// non-zero digit followed by digits. Leading zeros, signs, whitespace,
    /// hex prefixes, fractions and overflow are rejected.
    pub fn parse(text: &str) -> Result<Self, AmountError> {
        if text.is_empty() {
            return Err(AmountError::Empty);
        }
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AmountError::NotDecimal(text.to_owned()));
        }
        if text == "0" {
            return Ok(Self::ZERO);
        }
        if text.starts_with('0') {
            return Err(AmountError::LeadingZero(text.to_owned()));
        }
        if text.len() > MAX_U256_DIGITS {
            return Err(AmountError::Overflow(text.to_owned()));
        }
        U256::from_str_radix(text, 10)
            .map(Self)
            .map_err(|_| AmountError::Overflow(text.to_owned()))
    }

    /// The value as a 256-bit integer.
    pub const fn as_u256(&self) -> U256 {
        self.0
    }

    /// Wraps a 256-bit integer.
    pub const fn from_u256(value: U256) -> Self {
        Self(value)
    }

    /// The value as `u128` if it fits.
    pub fn to_u128(&self) -> Option<u128> {
        u128::try_from(self.0).ok()
    }

    /// Whether the amount is zero.
    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }

    /// Sum, or `None` on overflow.
    pub fn checked_add(self, other: Self) -> Option<Self> {
        self.0.checked_add(other.0).map(Self)
    }

    /// Difference, or `None` if `other` is larger.
    pub fn checked_sub(self, other: Self) -> Option<Self> {
        self.0.checked_sub(other.0).map(Self)
    }

    /// Renders the amount as a decimal number of whole tokens, e.g. `10000`
    /// with 6 decimals is `0.01`. Trailing fractional zeros are dropped.
    pub fn to_decimal_string(&self, decimals: u8) -> String {
        let digits = self.0.to_string();
        let decimals = usize::from(decimals);
        if decimals == 0 {
            return digits;
        }
        let padded = if digits.len() <= decimals {
            format!("{}{}", "0".repeat(decimals + 1 - digits.len()), digits)
        } else {
            digits
        };
        let (whole, fraction) = padded.split_at(padded.len() - decimals);
        let fraction = fraction.trim_end_matches('0');
        if fraction.is_empty() {
            whole.to_owned()
        } else {
            format!("{whole}.{fraction}")
        }
    }
}

impl From<u64> for AtomicAmount {
    fn from(value: u64) -> Self {
        Self(U256::from(value))
    }
}

impl From<u128> for AtomicAmount {
    fn from(value: u128) -> Self {
        Self(U256::from(value))
    }
}

impl From<U256> for AtomicAmount {
    fn from(value: U256) -> Self {
        Self(value)
    }
}

impl From<AtomicAmount> for U256 {
    fn from(value: AtomicAmount) -> Self {
        value.0
    }
}

impl FromStr for AtomicAmount {
    type Err = AmountError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for AtomicAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for AtomicAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AtomicAmount({})", self.0)
    }
}

impl Serialize for AtomicAmount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for AtomicAmount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A human-entered decimal amount of money, parsed exactly (no floats).
///
/// Accepted forms: `"$0.01"` (US dollars), `"0.01"` (no unit), and
/// `"1.5 USDC"` (a unit symbol after whitespace). The value is kept as an
/// integer mantissa and a decimal scale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    mantissa: U256,
    scale: u32,
    unit: MoneyUnit,
    text: String,
}

/// The unit a [`Money`] value was written in.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MoneyUnit {
    /// Written with a leading `$`: US dollars.
    Usd,
    /// No unit given: the caller's default asset.
    Unspecified,
    /// A trailing symbol such as `USDC`.
    Symbol(String),
}

impl Money {
    /// Parses a money string. See the type documentation for accepted forms.
    pub fn parse(text: &str) -> Result<Self, AmountError> {
        let invalid = || AmountError::InvalidMoney(text.to_owned());
        let trimmed = text.trim();
        let (number, unit) = if let Some(rest) = trimmed.strip_prefix('$') {
            (rest, MoneyUnit::Usd)
        } else if let Some((number, symbol)) = trimmed.split_once(char::is_whitespace) {
            let symbol = symbol.trim();
            if symbol.is_empty()
                || symbol.len() > 16
                || !symbol
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.')
            {
                return Err(invalid());
            }
            (number, MoneyUnit::Symbol(symbol.to_owned()))
        } else {
            (trimmed, MoneyUnit::Unspecified)
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() && fraction.is_empty()
            || !digits_only(whole)
            || !digits_only(fraction)
            || number.ends_with('.')
        {
            return Err(invalid());
        }
        // Trailing fractional zeros add no precision: "0.010" is one cent.
        let fraction = fraction.trim_end_matches('0');
        let all_digits = format!("{whole}{fraction}");
        let significant = all_digits.trim_start_matches('0');
        let mantissa = if significant.is_empty() {
            U256::ZERO
        } else if significant.len() > MAX_U256_DIGITS {
            return Err(AmountError::Overflow(text.to_owned()));
        } else {
            U256::from_str_radix(significant, 10)
                .map_err(|_| AmountError::Overflow(text.to_owned()))?
        };
        Ok(Self {
            mantissa,
            scale: u32::try_from(fraction.len())
                .map_err(|_| AmountError::Overflow(text.to_owned()))?,
            unit,
            text: text.to_owned(),
        })
    }

    /// The unit the amount was written in.
    pub fn unit(&self) -> &MoneyUnit {
        &self.unit
    }

    /// Converts to atomic units of an asset with `decimals` decimals, exactly.
    /// Fails if the amount has more fractional digits than the asset.
    pub fn to_atomic(&self, decimals: u8) -> Result<AtomicAmount, AmountError> {
        if self.scale > u32::from(decimals) {
            return Err(AmountError::TooPrecise {
                money: self.text.clone(),
                decimals,
            });
        }
        let factor = U256::from(10u8)
            .checked_pow(U256::from(u32::from(decimals) - self.scale))
            .ok_or_else(|| AmountError::Overflow(self.text.clone()))?;
        self.mantissa
            .checked_mul(factor)
            .map(AtomicAmount)
            .ok_or_else(|| AmountError::Overflow(self.text.clone()))
    }
}

impl FromStr for Money {
    type Err = AmountError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_strings() {
        assert_eq!(AtomicAmount::parse("0").unwrap(), AtomicAmount::ZERO);
        assert_eq!(
            AtomicAmount::parse("10000").unwrap(),
            AtomicAmount::from(10_000u64)
        );
        let max = U256::MAX.to_string();
        assert_eq!(AtomicAmount::parse(&max).unwrap().as_u256(), U256::MAX);
    }

    #[test]
    fn rejects_non_canonical_amounts() {
        for bad in [
            "", "-1", "+1", "0x10", " 1", "1 ", "1.0", "1e6", "１", "1_000", "1,000", "010000",
            "00", "007", "+0", "-0",
        ] {
            assert!(AtomicAmount::parse(bad).is_err(), "{bad:?} must fail");
        }
        assert_eq!(
            AtomicAmount::parse("010000"),
            Err(AmountError::LeadingZero("010000".into()))
        );
        let too_big = format!("{}0", U256::MAX);
        assert!(matches!(
            AtomicAmount::parse(&too_big),
            Err(AmountError::Overflow(_))
        ));
        let max_plus_one =
            "115792089237316195423570985008687907853269984665640564039457584007913129639936";
        assert!(matches!(
            AtomicAmount::parse(max_plus_one),
            Err(AmountError::Overflow(_))
        ));
    }

    #[test]
    fn serde_uses_strings() {
        let amount: AtomicAmount = serde_json::from_str("\"10000\"").unwrap();
        assert_eq!(serde_json::to_string(&amount).unwrap(), "\"10000\"");
        assert!(serde_json::from_str::<AtomicAmount>("10000").is_err());
        assert!(serde_json::from_str::<AtomicAmount>("\"-5\"").is_err());
        assert!(serde_json::from_str::<AtomicAmount>("\"010000\"").is_err());
    }

    #[test]
    fn money_to_atomic() {
        let cases = [
            ("$0.01", 6, "10000"),
            ("0.01", 6, "10000"),
            ("1.5 USDC", 6, "1500000"),
            ("$1", 6, "1000000"),
            ("$.5", 2, "50"),
            ("0.010", 2, "1"),
            ("$0.000001", 6, "1"),
            ("2", 0, "2"),
            ("1 ETH", 18, "1000000000000000000"),
        ];
        for (text, decimals, expected) in cases {
            let money = Money::parse(text).unwrap();
            assert_eq!(
                money.to_atomic(decimals).unwrap().to_string(),
                expected,
                "{text} with {decimals} decimals"
            );
        }
        assert_eq!(Money::parse("$1").unwrap().unit(), &MoneyUnit::Usd);
        assert_eq!(
            Money::parse("1.5 USDC").unwrap().unit(),
            &MoneyUnit::Symbol("USDC".into())
        );
    }

    #[test]
    fn money_rejects_bad_input() {
        for bad in [
            "",
            "$",
            "abc",
            "$-1",
            "-1",
            "1.2.3",
            "1.",
            "$1,000",
            "1e3",
            "1.5 US DC",
            "0x10",
            "$ 1",
            "1.5 USDC!",
        ] {
            assert!(Money::parse(bad).is_err(), "{bad:?} must fail");
        }
        let precise = Money::parse("$0.0000001").unwrap();
        assert!(matches!(
            precise.to_atomic(6),
            Err(AmountError::TooPrecise { decimals: 6, .. })
        ));
    }

    #[test]
    fn renders_decimal_strings() {
        let amount = AtomicAmount::from(10_000u64);
        assert_eq!(amount.to_decimal_string(6), "0.01");
        assert_eq!(AtomicAmount::from(1_500_000u64).to_decimal_string(6), "1.5");
        assert_eq!(AtomicAmount::from(7u64).to_decimal_string(0), "7");
        assert_eq!(AtomicAmount::ZERO.to_decimal_string(6), "0");
        assert_eq!(AtomicAmount::from(3_000_000u64).to_decimal_string(6), "3");
    }
}
