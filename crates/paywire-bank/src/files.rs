//! The contents of one bank file each, as plain data: SEPA direct debit
//! collections (pain.008), SEPA credit transfer payouts (pain.001) and ACH
//! files (NACHA). The operations build these; [`crate::sepa`] and
//! [`crate::nacha`] write them, computing every count and control sum.
//!
//! Amounts are minor units (cents). Dates are `YYYY-MM-DD` text (the ACH
//! effective date too: the NACHA writer turns it into `YYMMDD`); creation
//! times are unix seconds, written as UTC.
//!
//! `Debug` of the parties and entries hides names and account numbers.

use std::fmt;

use crate::account::{AbaRouting, AchAccount, AchAccountType, Bic, Iban};

/// Why a bank file could not be written or read. The texts name fields and
/// rules, never names or account numbers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// A batch without a single transaction.
    #[error("batch {0:?} has no transactions")]
    EmptyBatch(String),
    /// A field longer than its format allows (ids are never truncated).
    #[error("{field} is longer than {max} characters")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// The format's limit.
        max: usize,
    },
    /// A field empty, or with characters the format cannot carry (and that
    /// have no transliteration).
    #[error("{field} is empty or has characters outside the allowed set")]
    Characters {
        /// Which field.
        field: &'static str,
    },
    /// A date that is not a valid `YYYY-MM-DD` (or creation time out of range).
    #[error("{field} is not a valid date (YYYY-MM-DD)")]
    Date {
        /// Which field.
        field: &'static str,
    },
    /// An amount of zero, or above what the format carries.
    #[error("{field}: amount out of range ({min}..={max} minor units)")]
    Amount {
        /// Which field.
        field: &'static str,
        /// Smallest amount accepted.
        min: u64,
        /// Largest amount accepted.
        max: u64,
    },
    /// A total or count over what the format carries.
    #[error("{0} overflows its field")]
    Overflow(&'static str),
    /// An input file that is not what it should be (what and where, never
    /// the file's text).
    #[error("malformed {format}: {detail}")]
    Malformed {
        /// `pain.002` or `NACHA`.
        format: &'static str,
        /// What is wrong, and where.
        detail: String,
    },
    /// A file name outside `[A-Za-z0-9._-]`, empty, starting with a dot or
    /// containing `..`.
    #[error("invalid outbox file name (allowed: A-Z a-z 0-9 . _ -, no leading dot, no '..')")]
    FileName,
    /// The outbox already has a file of that name (files are never
    /// overwritten).
    #[error("outbox file {0:?} already exists")]
    FileExists(String),
    /// The outbox directory could not be used.
    #[error("outbox {action} failed: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The underlying error (no path in it).
        #[source]
        source: std::io::Error,
    },
}

/// One SEPA account holder: name, IBAN, and the BIC if known (SEPA allows
/// IBAN-only; the writers put `NOTPROVIDED` where an agent is mandatory).
#[derive(Clone, PartialEq, Eq)]
pub struct SepaParty {
    /// Account holder name (transliterated to the SEPA character set and
    /// cut to 70 characters by the writers).
    pub name: String,
    /// Account.
    pub iban: Iban,
    /// Bank, if known.
    pub bic: Option<Bic>,
}

impl fmt::Debug for SepaParty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SepaParty")
            .field("name", &Redacted)
            .field("iban", &self.iban)
            .field("bic", &self.bic)
            .finish()
    }
}

/// A SEPA Core direct debit collection: one pain.008.001.02 file with one
/// payment information block (sequence type `RCUR`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SepaCollection {
    /// Message and payment information id (at most 35 characters).
    pub batch_id: String,
    /// Creation time, unix seconds.
    pub created_at: u64,
    /// Requested collection date, `YYYY-MM-DD`.
    pub collection_date: String,
    /// The collecting party (us).
    pub creditor: SepaParty,
    /// SEPA creditor identifier (e.g. `DE98ZZZ09999999999`).
    pub creditor_scheme_id: String,
    /// The debits (at least one).
    pub debits: Vec<SepaDebit>,
}

/// One direct debit of a [`SepaCollection`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SepaDebit {
    /// End-to-end id (at most 35 characters), returned in status reports.
    pub end_to_end_id: String,
    /// EUR cents (at least 1).
    pub amount: u64,
    /// The debited party.
    pub debtor: SepaParty,
    /// Mandate reference (at most 35 characters).
    pub mandate_id: String,
    /// Mandate signature date, `YYYY-MM-DD`.
    pub mandate_signed_on: String,
}

/// A SEPA credit transfer batch: one pain.001.001.03 file with one payment
/// information block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SepaPayout {
    /// Message and payment information id (at most 35 characters).
    pub batch_id: String,
    /// Creation time, unix seconds.
    pub created_at: u64,
    /// Requested execution date, `YYYY-MM-DD`.
    pub execution_date: String,
    /// The paying party (us).
    pub debtor: SepaParty,
    /// The credits (at least one).
    pub credits: Vec<SepaCredit>,
}

/// One credit transfer of a [`SepaPayout`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SepaCredit {
    /// End-to-end id (at most 35 characters).
    pub end_to_end_id: String,
    /// EUR cents (at least 1).
    pub amount: u64,
    /// The credited party.
    pub creditor: SepaParty,
    /// Unstructured remittance text (transliterated, cut to 140 characters).
    pub remittance: String,
}

/// Direction of an [`AchFile`]'s single batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AchKind {
    /// Debits (service class 225, transaction codes 27/37).
    Debits,
    /// Credits (service class 220, transaction codes 22/32).
    Credits,
}

/// The originator of an ACH file (us) and the file's addressing.
#[derive(Clone, PartialEq, Eq)]
pub struct AchOriginator {
    /// Company name (cut to 16 characters).
    pub company_name: String,
    /// Company identification (1 to 10 characters, usually `1` + EIN).
    pub company_id: String,
    /// The originating bank (ODFI).
    pub odfi_routing: AbaRouting,
    /// Immediate destination (the ACH operator or receiving point).
    pub immediate_destination: AbaRouting,
    /// Immediate destination name (cut to 23 characters).
    pub destination_name: String,
    /// Immediate origin name (cut to 23 characters).
    pub origin_name: String,
}

impl fmt::Debug for AchOriginator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AchOriginator")
            .field("company_name", &Redacted)
            .field("company_id", &Redacted)
            .field("odfi_routing", &self.odfi_routing)
            .field("immediate_destination", &self.immediate_destination)
            .finish_non_exhaustive()
    }
}

/// One NACHA file with one PPD batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AchFile {
    /// Our batch id (logged and used for the file name; the NACHA file
    /// itself carries no free id field long enough for it).
    pub batch_id: String,
    /// Creation time, unix seconds (file creation date and time, UTC).
    pub created_at: u64,
    /// Effective entry date, `YYYY-MM-DD` (written as `YYMMDD`).
    pub effective_date: String,
    /// The originator.
    pub originator: AchOriginator,
    /// Debits or credits.
    pub kind: AchKind,
    /// The entries (at least one).
    pub entries: Vec<AchEntry>,
}

/// One entry of an [`AchFile`].
#[derive(Clone, PartialEq, Eq)]
pub struct AchEntry {
    /// Individual identification number (1 to 15 characters): how returns
    /// are matched back to this entry.
    pub id: String,
    /// Individual name (cut to 22 characters).
    pub name: String,
    /// The receiver's bank (RDFI).
    pub routing: AbaRouting,
    /// The receiver's account.
    pub account: AchAccount,
    /// Checking or savings.
    pub account_type: AchAccountType,
    /// USD cents (at least 1).
    pub amount: u64,
}

impl fmt::Debug for AchEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AchEntry")
            .field("id", &self.id)
            .field("name", &Redacted)
            .field("routing", &self.routing)
            .field("account", &self.account)
            .field("account_type", &self.account_type)
            .field("amount", &self.amount)
            .finish()
    }
}

/// Placeholder shown by `Debug` instead of a name.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A calendar date checked from `YYYY-MM-DD` text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Date {
    pub(crate) year: u32,
    pub(crate) month: u32,
    pub(crate) day: u32,
}

impl Date {
    /// Parses `YYYY-MM-DD` (years 2000..=2099, real day of month).
    pub(crate) fn parse(text: &str, field: &'static str) -> Result<Self, FileError> {
        let err = || FileError::Date { field };
        let b = text.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(err());
        }
        let number = |range: std::ops::Range<usize>| -> Result<u32, FileError> {
            let part = text.get(range).ok_or_else(err)?;
            if !part.bytes().all(|c| c.is_ascii_digit()) {
                return Err(err());
            }
            part.parse().map_err(|_| err())
        };
        let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
        let days_in_month = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return Err(err()),
        };
        if !(2000..=2099).contains(&year) || day == 0 || day > days_in_month {
            return Err(err());
        }
        Ok(Self { year, month, day })
    }
}

/// A UTC date and time from unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DateTime {
    pub(crate) date: Date,
    pub(crate) hour: u32,
    pub(crate) minute: u32,
    pub(crate) second: u32,
}

impl DateTime {
    /// From unix seconds (civil-from-days; years 2000..=2099 only, as the
    /// file formats need).
    pub(crate) fn from_unix(seconds: u64, field: &'static str) -> Result<Self, FileError> {
        let days = seconds / 86_400;
        let rem = seconds % 86_400;
        // Days since 0000-03-01 in the proleptic Gregorian calendar.
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z % 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + u64::from(month <= 2);
        if !(2000..=2099).contains(&year) {
            return Err(FileError::Date { field });
        }
        let small = |v: u64| u32::try_from(v).map_err(|_| FileError::Date { field });
        Ok(Self {
            date: Date {
                year: small(year)?,
                month: small(month)?,
                day: small(day)?,
            },
            hour: small(rem / 3600)?,
            minute: small(rem % 3600 / 60)?,
            second: small(rem % 60)?,
        })
    }
}

/// Letters with diacritics and ligatures mapped to plain Latin letters
/// (the common ones of European names).
pub(crate) fn transliterate(c: char) -> Option<&'static str> {
    Some(match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' | 'Ā' | 'Ă' | 'Ą' => "A",
        'ç' | 'ć' | 'č' | 'ĉ' | 'ċ' => "c",
        'Ç' | 'Ć' | 'Č' | 'Ĉ' | 'Ċ' => "C",
        'ď' | 'đ' | 'ð' => "d",
        'Ď' | 'Đ' | 'Ð' => "D",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' => "e",
        'È' | 'É' | 'Ê' | 'Ë' | 'Ē' | 'Ė' | 'Ę' | 'Ě' => "E",
        'ğ' | 'ģ' => "g",
        'Ğ' | 'Ģ' => "G",
        'ì' | 'í' | 'î' | 'ï' | 'ī' | 'į' | 'ı' => "i",
        'Ì' | 'Í' | 'Î' | 'Ï' | 'Ī' | 'Į' | 'İ' => "I",
        'ķ' => "k",
        'Ķ' => "K",
        'ĺ' | 'ļ' | 'ľ' | 'ł' => "l",
        'Ĺ' | 'Ļ' | 'Ľ' | 'Ł' => "L",
        'ñ' | 'ń' | 'ņ' | 'ň' => "n",
        'Ñ' | 'Ń' | 'Ņ' | 'Ň' => "N",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => "o",
        'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' | 'Ø' | 'Ō' | 'Ő' => "O",
        'ŕ' | 'ř' => "r",
        'Ŕ' | 'Ř' => "R",
        'ś' | 'š' | 'ş' | 'ș' => "s",
        'Ś' | 'Š' | 'Ş' | 'Ș' => "S",
        'ť' | 'ţ' | 'ț' => "t",
        'Ť' | 'Ţ' | 'Ț' => "T",
        'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' | 'ų' => "u",
        'Ù' | 'Ú' | 'Û' | 'Ü' | 'Ū' | 'Ů' | 'Ű' | 'Ų' => "U",
        'ý' | 'ÿ' => "y",
        'Ý' | 'Ÿ' => "Y",
        'ź' | 'ż' | 'ž' => "z",
        'Ź' | 'Ż' | 'Ž' => "Z",
        'ß' => "ss",
        'æ' => "ae",
        'Æ' => "AE",
        'œ' => "oe",
        'Œ' => "OE",
        'þ' => "th",
        'Þ' => "TH",
        '&' => "+",
        '_' | '–' | '—' => "-",
        '‘' | '’' | '`' | '´' | '"' | '“' | '”' => "'",
        _ => return None,
    })
}

/// Whether `c` is in the EPC's SEPA basic Latin character set.
pub(crate) fn is_sepa_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || " /-?:().,'+".contains(c)
}

/// Free text (names, remittance) for a SEPA file: transliterated to the
/// SEPA character set, other characters replaced by spaces, runs of spaces
/// collapsed, trimmed, cut to `max` characters. Empty after that → error.
pub(crate) fn sepa_text(text: &str, field: &'static str, max: usize) -> Result<String, FileError> {
    let mut mapped = String::with_capacity(text.len());
    for c in text.chars() {
        match transliterate(c) {
            Some(plain) => mapped.push_str(plain),
            None if is_sepa_char(c) => mapped.push(c),
            None => mapped.push(' '),
        }
    }
    let collapsed = mapped.split_whitespace().collect::<Vec<_>>().join(" ");
    let cut: String = collapsed.chars().take(max).collect();
    let cut = cut.trim_end().to_owned();
    if cut.is_empty() {
        return Err(FileError::Characters { field });
    }
    Ok(cut)
}

/// An identifier for a SEPA file: 1..=`max` characters of the SEPA set
/// without spaces, not starting or ending with `/` and without `//` (EPC
/// rules). Never altered: anything else is an error.
pub(crate) fn sepa_id<'a>(
    text: &'a str,
    field: &'static str,
    max: usize,
) -> Result<&'a str, FileError> {
    if text.chars().count() > max {
        return Err(FileError::TooLong { field, max });
    }
    let valid = !text.is_empty()
        && text.chars().all(|c| c != ' ' && is_sepa_char(c))
        && !text.starts_with('/')
        && !text.ends_with('/')
        && !text.contains("//");
    if !valid {
        return Err(FileError::Characters { field });
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_checked() {
        assert_eq!(
            Date::parse("2024-02-29", "d").unwrap(),
            Date {
                year: 2024,
                month: 2,
                day: 29
            }
        );
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-1-01",
            "24-01-01",
            "2024/01/01",
            "1999-12-31",
            "2024-01-+1",
        ] {
            assert!(Date::parse(bad, "d").is_err(), "{bad}");
        }
    }

    #[test]
    fn unix_times_convert_to_utc() {
        // 2024-02-29T12:34:56Z
        let t = DateTime::from_unix(1_709_210_096, "t").unwrap();
        assert_eq!(
            t.date,
            Date {
                year: 2024,
                month: 2,
                day: 29
            }
        );
        assert_eq!((t.hour, t.minute, t.second), (12, 34, 56));
        // 2000-01-01T00:00:00Z
        let t = DateTime::from_unix(946_684_800, "t").unwrap();
        assert_eq!(
            t.date,
            Date {
                year: 2000,
                month: 1,
                day: 1
            }
        );
        assert!(DateTime::from_unix(0, "t").is_err());
        assert!(DateTime::from_unix(u64::MAX, "t").is_err());
    }

    #[test]
    fn text_is_restricted_to_the_sepa_set() {
        assert_eq!(
            sepa_text("Zoë Müller-Ørsted & Söhne", "n", 70).unwrap(),
            "Zoe Muller-Orsted + Sohne"
        );
        assert_eq!(sepa_text("a  <b>\t c", "n", 70).unwrap(), "a b c");
        assert_eq!(sepa_text("abcdef", "n", 3).unwrap(), "abc");
        assert!(sepa_text("日本", "n", 70).is_err());
        assert!(sepa_text("   ", "n", 70).is_err());
        assert_eq!(sepa_id("E2E-1.a", "id", 35).unwrap(), "E2E-1.a");
        for bad in ["", "a b", "/a", "a/", "a//b", "é"] {
            assert!(sepa_id(bad, "id", 35).is_err(), "{bad:?}");
        }
        assert!(matches!(
            sepa_id(&"x".repeat(36), "id", 35),
            Err(FileError::TooLong { max: 35, .. })
        ));
    }
}
