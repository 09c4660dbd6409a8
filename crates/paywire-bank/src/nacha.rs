//! NACHA ACH files: writing one PPD batch of debits or credits, and reading
//! the returns a bank sends back.
//!
//! Written files are 94-character records joined by `\n` (with a final
//! `\n`), blocked by ten (padded with records of nines): file header (1),
//! batch header (5, SEC code PPD, service class 225 for debits / 220 for
//! credits), entries (6, transaction codes 27/37 debit and 22/32 credit to
//! checking/savings, no addenda, trace number: the ODFI's first eight
//! digits and a seven-digit sequence), batch control (8) and file control
//! (9). Counts,
//! totals and the entry hash (sum of the RDFIs' eight-digit routing
//! identifiers, last ten digits kept) are computed here.
//!
//! Text fields are upper-cased and transliterated to ASCII; names are cut
//! to their field width, identifiers are refused when too long.

use std::fmt::Write as _;

use crate::account::AchAccountType;
use crate::files::{AchEntry, AchFile, AchKind, Date, DateTime, FileError, transliterate};

/// Length of every NACHA record.
pub const RECORD_LEN: usize = 94;
/// Records per block.
pub const BLOCKING_FACTOR: usize = 10;
/// Largest amount of one entry (the field has ten digits: 99 999 999.99 USD).
const MAX_ENTRY_AMOUNT: u64 = 9_999_999_999;
/// Largest batch/file total (twelve digits).
const MAX_TOTAL: u64 = 999_999_999_999;
/// Most entries in one batch (seven-digit trace sequence, six-digit count).
const MAX_ENTRIES: usize = 999_999;

/// One returned entry of a NACHA return file.
///
/// Returns are matched on the individual identification number: the RDFI
/// sends the return entry with the original entry's fields (individual id
/// at positions 40-54), followed by a type `99` addenda carrying the
/// reason code and the original trace number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AchReturn {
    /// The original entry's individual identification number.
    pub id: String,
    /// The return reason code (`R01`, `R02`, ...).
    pub reason_code: String,
}

/// ASCII upper-case text for an alphanumeric field: letters with
/// diacritics transliterated, other characters outside printable ASCII
/// replaced by spaces.
fn ach_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_graphic() || c == ' ' {
            out.push(c.to_ascii_uppercase());
        } else {
            match transliterate(c) {
                Some(plain) => out.push_str(&plain.to_ascii_uppercase()),
                None => out.push(' '),
            }
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `text` upper-cased, cut to `width`, padded with spaces to `width`; an
/// empty result is an error.
fn name_field(text: &str, width: usize, field: &'static str) -> Result<String, FileError> {
    let text = ach_text(text);
    if text.is_empty() {
        return Err(FileError::Characters { field });
    }
    let cut: String = text.chars().take(width).collect();
    Ok(format!("{cut:<width$}"))
}

/// An identifier padded to `width`: refused (never cut) when longer, empty
/// or not printable ASCII.
fn id_field(text: &str, width: usize, field: &'static str) -> Result<String, FileError> {
    if text.len() > width {
        return Err(FileError::TooLong { field, max: width });
    }
    let ok = !text.trim().is_empty() && text.chars().all(|c| c.is_ascii_graphic() || c == ' ');
    if !ok {
        return Err(FileError::Characters { field });
    }
    Ok(format!("{text:<width$}"))
}

/// `YYMMDD` of a checked `YYYY-MM-DD`.
fn yymmdd(text: &str, field: &'static str) -> Result<String, FileError> {
    let d = Date::parse(text, field)?;
    Ok(format!("{:02}{:02}{:02}", d.year % 100, d.month, d.day))
}

/// Transaction code of an entry.
fn transaction_code(kind: AchKind, account: AchAccountType) -> &'static str {
    match (kind, account) {
        (AchKind::Debits, AchAccountType::Checking) => "27",
        (AchKind::Debits, AchAccountType::Savings) => "37",
        (AchKind::Credits, AchAccountType::Checking) => "22",
        (AchKind::Credits, AchAccountType::Savings) => "32",
    }
}

/// Counts, totals and entry hash of the entries, checked against the
/// format's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Totals {
    count: usize,
    total: u64,
    hash: u64,
}

fn totals(file: &AchFile) -> Result<Totals, FileError> {
    if file.entries.is_empty() {
        return Err(FileError::EmptyBatch(file.batch_id.clone()));
    }
    if file.entries.len() > MAX_ENTRIES {
        return Err(FileError::Overflow("entry count"));
    }
    let mut totals = Totals {
        count: file.entries.len(),
        total: 0,
        hash: 0,
    };
    for entry in &file.entries {
        if !(1..=MAX_ENTRY_AMOUNT).contains(&entry.amount) {
            return Err(FileError::Amount {
                field: "entry amount",
                min: 1,
                max: MAX_ENTRY_AMOUNT,
            });
        }
        totals.total += entry.amount;
        // Eight digits, parsed from a validated routing number: cannot fail.
        totals.hash += entry.routing.dfi().parse::<u64>().unwrap_or(0);
    }
    if totals.total > MAX_TOTAL {
        return Err(FileError::Overflow("batch total"));
    }
    totals.hash %= 10_000_000_000;
    Ok(totals)
}

/// Writes one NACHA file with one PPD batch (see the module docs). Errors:
/// no entries, an amount of zero or over 99 999 999.99, a total over twelve
/// digits, invalid dates, ids too long, empty names.
pub fn write(file: &AchFile) -> Result<String, FileError> {
    let totals = totals(file)?;
    let mut records = vec![file_header(file)?, batch_header(file)?];
    let odfi = file.originator.odfi_routing.dfi();
    for (index, entry) in file.entries.iter().enumerate() {
        records.push(entry_record(file.kind, entry, odfi, index + 1)?);
    }
    records.push(batch_control(file, totals)?);
    let count_so_far = records.len() + 1;
    let blocks = count_so_far.div_ceil(BLOCKING_FACTOR);
    records.push(file_control(totals, blocks, file.kind));
    while records.len() % BLOCKING_FACTOR != 0 {
        records.push("9".repeat(RECORD_LEN));
    }
    let mut out = String::with_capacity(records.len() * (RECORD_LEN + 1));
    for record in &records {
        debug_assert_eq!(record.len(), RECORD_LEN, "{}", &record[..1]);
        out.push_str(record);
        out.push('\n');
    }
    tracing::debug!(batch = %file.batch_id, entries = totals.count, "NACHA file written");
    Ok(out)
}

fn file_header(file: &AchFile) -> Result<String, FileError> {
    let o = &file.originator;
    let t = DateTime::from_unix(file.created_at, "created_at")?;
    let mut r = String::with_capacity(RECORD_LEN);
    r.push_str("101");
    let _ = write!(r, " {}", o.immediate_destination.as_str());
    let _ = write!(r, " {}", o.odfi_routing.as_str());
    let _ = write!(
        r,
        "{:02}{:02}{:02}",
        t.date.year % 100,
        t.date.month,
        t.date.day
    );
    let _ = write!(r, "{:02}{:02}", t.hour, t.minute);
    r.push('A'); // file id modifier
    r.push_str("094101");
    r.push_str(&name_field(&o.destination_name, 23, "destination_name")?);
    r.push_str(&name_field(&o.origin_name, 23, "origin_name")?);
    r.push_str(&" ".repeat(8)); // reference code
    Ok(r)
}

fn service_class(kind: AchKind) -> &'static str {
    match kind {
        AchKind::Debits => "225",
        AchKind::Credits => "220",
    }
}

fn batch_header(file: &AchFile) -> Result<String, FileError> {
    let o = &file.originator;
    let mut r = String::with_capacity(RECORD_LEN);
    r.push('5');
    r.push_str(service_class(file.kind));
    r.push_str(&name_field(&o.company_name, 16, "company_name")?);
    r.push_str(&" ".repeat(20)); // company discretionary data
    r.push_str(&id_field(&o.company_id, 10, "company_id")?);
    r.push_str("PPD");
    r.push_str(match file.kind {
        AchKind::Debits => "CREDITS   ",
        AchKind::Credits => "PAYOUT    ",
    });
    r.push_str(&" ".repeat(6)); // company descriptive date
    r.push_str(&yymmdd(&file.effective_date, "effective_date")?);
    r.push_str("   "); // settlement date: inserted by the ACH operator
    r.push('1'); // originator status code
    r.push_str(o.odfi_routing.dfi());
    r.push_str("0000001"); // batch number
    Ok(r)
}

fn entry_record(
    kind: AchKind,
    entry: &AchEntry,
    odfi: &str,
    sequence: usize,
) -> Result<String, FileError> {
    let mut r = String::with_capacity(RECORD_LEN);
    r.push('6');
    r.push_str(transaction_code(kind, entry.account_type));
    r.push_str(entry.routing.as_str());
    let _ = write!(r, "{:<17}", entry.account.as_str());
    let _ = write!(r, "{:010}", entry.amount);
    r.push_str(&id_field(&entry.id, 15, "entry id")?);
    r.push_str(&name_field(&entry.name, 22, "entry name")?);
    r.push_str("  "); // discretionary data
    r.push('0'); // no addenda
    let _ = write!(r, "{odfi}{sequence:07}");
    Ok(r)
}

fn batch_control(file: &AchFile, totals: Totals) -> Result<String, FileError> {
    let (debit, credit) = split(file.kind, totals.total);
    let mut r = String::with_capacity(RECORD_LEN);
    r.push('8');
    r.push_str(service_class(file.kind));
    let _ = write!(
        r,
        "{:06}{:010}{debit:012}{credit:012}",
        totals.count, totals.hash
    );
    r.push_str(&id_field(&file.originator.company_id, 10, "company_id")?);
    r.push_str(&" ".repeat(25)); // message authentication code, reserved
    r.push_str(file.originator.odfi_routing.dfi());
    r.push_str("0000001");
    Ok(r)
}

/// (total debit, total credit).
fn split(kind: AchKind, total: u64) -> (u64, u64) {
    match kind {
        AchKind::Debits => (total, 0),
        AchKind::Credits => (0, total),
    }
}

fn file_control(totals: Totals, blocks: usize, kind: AchKind) -> String {
    let (debit, credit) = split(kind, totals.total);
    let mut r = String::with_capacity(RECORD_LEN);
    let _ = write!(
        r,
        "9{:06}{blocks:06}{:08}{:010}{debit:012}{credit:012}",
        1, totals.count, totals.hash
    );
    r.push_str(&" ".repeat(39));
    r
}

/// Reads the returned entries of a NACHA return file: every entry detail
/// record (6) followed by a return addenda (7, type `99`) yields the
/// entry's individual identification number (positions 40-54, which the
/// RDFI copies from the original entry) and the reason code (addenda
/// positions 4-6, `R` + two digits). Entries without a return addenda
/// (e.g. notifications of change, addenda type `98`) are skipped.
///
/// Errors (never panics): a first record that is not a file header, a
/// record that is not 94 ASCII characters, an unknown record type, an
/// addenda without an entry, a reason code that is not `R` + two digits.
pub fn parse_returns(text: &str) -> Result<Vec<AchReturn>, FileError> {
    let malformed = |line: usize, what: &str| FileError::Malformed {
        format: "NACHA",
        detail: format!("record {line}: {what}"),
    };
    let mut returns = Vec::new();
    let mut current: Option<String> = None;
    let mut seen_header = false;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let record = raw.strip_suffix('\r').unwrap_or(raw);
        if record.is_empty() {
            continue;
        }
        if record.len() != RECORD_LEN || !record.is_ascii() {
            return Err(malformed(line, "not a 94-character ASCII record"));
        }
        if !seen_header {
            if !record.starts_with('1') {
                return Err(malformed(
                    line,
                    "the file does not start with a file header",
                ));
            }
            seen_header = true;
            continue;
        }
        match &record[..1] {
            "6" => current = Some(record[39..54].trim().to_owned()),
            "7" if &record[1..3] == "99" => {
                let id = current
                    .take()
                    .ok_or_else(|| malformed(line, "return addenda without an entry"))?;
                let code = &record[3..6];
                let well_formed =
                    code.starts_with('R') && code[1..].bytes().all(|b| b.is_ascii_digit());
                if !well_formed {
                    return Err(malformed(line, "return reason code is not R + two digits"));
                }
                if id.is_empty() {
                    return Err(malformed(line, "returned entry without an individual id"));
                }
                returns.push(AchReturn {
                    id,
                    reason_code: code.to_owned(),
                });
            }
            "1" | "5" | "7" | "8" | "9" => current = None,
            _ => return Err(malformed(line, "unknown record type")),
        }
    }
    if !seen_header {
        return Err(malformed(0, "empty file"));
    }
    Ok(returns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_fields_are_ascii_upper_case() {
        assert_eq!(ach_text("Zoë  Müller"), "ZOE MULLER");
        assert_eq!(name_field("Ab", 4, "n").unwrap(), "AB  ");
        assert!(name_field("日本", 4, "n").is_err());
        assert!(id_field("0123456789abcdef", 15, "id").is_err());
        assert_eq!(id_field("X1", 4, "id").unwrap(), "X1  ");
    }
}
