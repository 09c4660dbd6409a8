//! Exact money: amounts are integers in an ISO 4217 currency's minor unit
//! (cents), never floats; decimal text is produced and parsed exactly.

use std::fmt;

/// Why an amount or currency was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MoneyError {
    /// Not a currency this rail settles in.
    #[error("unsupported currency {0:?} (supported: EUR, USD)")]
    UnsupportedCurrency(String),
    /// Not a decimal amount with at most the currency's minor digits.
    #[error("invalid amount {0:?}")]
    InvalidAmount(String),
    /// Over the largest amount handled.
    #[error("amount too large")]
    Overflow,
}

/// An ISO 4217 currency this rail handles (the bank formats are euro for
/// SEPA and US dollar for ACH).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Currency {
    /// Euro (SEPA).
    Eur,
    /// US dollar (ACH).
    Usd,
}

/// The largest amount in minor units any operation accepts (10^15 cents,
/// ten trillion): sums of many of them stay far below `u64::MAX`.
pub const MAX_MINOR: u64 = 1_000_000_000_000_000;

impl Currency {
    /// From its ISO 4217 code (upper case only: the wire is exact).
    pub fn from_code(code: &str) -> Result<Self, MoneyError> {
        match code {
            "EUR" => Ok(Self::Eur),
            "USD" => Ok(Self::Usd),
            other => Err(MoneyError::UnsupportedCurrency(
                other.chars().take(8).collect(),
            )),
        }
    }

    /// Its ISO 4217 code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Eur => "EUR",
            Self::Usd => "USD",
        }
    }

    /// Digits of its minor unit (2 for both).
    pub fn exponent(self) -> u32 {
        2
    }

    /// `minor` as decimal text with exactly [`Currency::exponent`] digits
    /// after the point (`1234` → `12.34`), as the bank files want it.
    pub fn format(self, minor: u64) -> String {
        let scale = 10u64.pow(self.exponent());
        format!(
            "{}.{:0width$}",
            minor / scale,
            minor % scale,
            width = self.exponent() as usize
        )
    }

    /// Parses decimal text (`12.34`, `12.3`, `12`) into minor units,
    /// refusing more fraction digits than the currency has, signs,
    /// exponents and amounts over [`MAX_MINOR`].
    pub fn parse(self, text: &str) -> Result<u64, MoneyError> {
        let invalid = || MoneyError::InvalidAmount(text.chars().take(32).collect());
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || (text.contains('.') && !digits(fraction)) {
            return Err(invalid());
        }
        let exponent = self.exponent() as usize;
        if fraction.len() > exponent || whole.len() > 16 {
            return Err(invalid());
        }
        let whole: u64 = whole.parse().map_err(|_| invalid())?;
        let padded = format!("{fraction:0<exponent$}");
        let fraction: u64 = if padded.is_empty() {
            0
        } else {
            padded.parse().map_err(|_| invalid())?
        };
        let minor = whole
            .checked_mul(10u64.pow(self.exponent()))
            .and_then(|w| w.checked_add(fraction))
            .ok_or(MoneyError::Overflow)?;
        if minor > MAX_MINOR {
            return Err(MoneyError::Overflow);
        }
        Ok(minor)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Parses a wire amount in minor units (`"50"`): plain decimal digits, no
/// sign, no leading zeros but `"0"` itself, at most [`MAX_MINOR`].
pub fn parse_minor(text: &str) -> Result<u64, MoneyError> {
    let invalid = || MoneyError::InvalidAmount(text.chars().take(32).collect());
    let canonical = !text.is_empty()
        && text.len() <= 19
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if !canonical {
        return Err(invalid());
    }
    let value: u64 = text.parse().map_err(|_| invalid())?;
    if value > MAX_MINOR {
        return Err(MoneyError::Overflow);
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_text_round_trips_exactly() {
        let eur = Currency::Eur;
        assert_eq!(eur.format(1234), "12.34");
        assert_eq!(eur.format(5), "0.05");
        assert_eq!(eur.parse("12.34"), Ok(1234));
        assert_eq!(eur.parse("12.3"), Ok(1230));
        assert_eq!(eur.parse("12"), Ok(1200));
        for bad in ["", ".5", "1.", "1.234", "-1", "+1", "1e3", "1,00", " 1"] {
            assert!(eur.parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            eur.parse("99999999999999999"),
            Err(MoneyError::InvalidAmount("99999999999999999".into()))
        );
    }

    #[test]
    fn wire_amounts_are_canonical_integers() {
        assert_eq!(parse_minor("50"), Ok(50));
        assert_eq!(parse_minor("0"), Ok(0));
        for bad in ["", "050", "-1", "1.0", "1e2", "99999999999999999999"] {
            assert!(parse_minor(bad).is_err(), "{bad:?}");
        }
        assert!(Currency::from_code("eur").is_err());
    }
}
