//! SEPA files (ISO 20022 XML, EPC implementation rules): SEPA Core direct
//! debit collections as pain.008.001.02 and SEPA credit transfers as
//! pain.001.001.03, each with one group header and one payment information
//! block.
//!
//! The documents are written by hand: every text goes through the SEPA
//! character set ([`crate::files`]: names and remittance transliterated and
//! cut to 70 / 140 characters, ids refused unless valid and at most 35
//! characters) and then through an XML escaper. Counts and control sums
//! are computed here from the transactions.

use std::fmt::Write as _;

use crate::files::{
    Date, DateTime, FileError, SepaCollection, SepaCredit, SepaDebit, SepaParty, SepaPayout,
    sepa_id, sepa_text,
};
use crate::money::Currency;

/// pain.008.001.02 namespace.
pub const PAIN008_NS: &str = "urn:iso:std:iso:20022:tech:xsd:pain.008.001.02";
/// pain.001.001.03 namespace.
pub const PAIN001_NS: &str = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03";

/// Longest id (message, payment information, end-to-end, mandate).
const MAX_ID: usize = 35;
/// Longest party name.
const MAX_NAME: usize = 70;
/// Longest unstructured remittance text.
const MAX_REMITTANCE: usize = 140;
/// Smallest SEPA transaction amount (0.01 EUR).
const MIN_AMOUNT: u64 = 1;
/// Largest SEPA transaction amount (999 999 999.99 EUR, EPC rule).
const MAX_AMOUNT: u64 = 99_999_999_999;
/// Most transactions in one file (keeps `NbOfTxs` and sums small).
const MAX_TRANSACTIONS: usize = 100_000;

/// Escapes text for XML element content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A document under construction: indented elements with escaped text.
struct Xml {
    out: String,
    depth: usize,
}

impl Xml {
    fn new(namespace: &str, root: &str) -> Self {
        let mut xml = Self {
            out: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"),
            depth: 0,
        };
        let _ = writeln!(xml.out, "<Document xmlns=\"{}\">", escape(namespace));
        xml.depth = 1;
        xml.open(root);
        xml
    }

    fn indent(&mut self) {
        for _ in 0..self.depth {
            self.out.push_str("  ");
        }
    }

    fn open(&mut self, name: &str) {
        self.indent();
        let _ = writeln!(self.out, "<{name}>");
        self.depth += 1;
    }

    fn close(&mut self, name: &str) {
        self.depth = self.depth.saturating_sub(1);
        self.indent();
        let _ = writeln!(self.out, "</{name}>");
    }

    /// `<name>text</name>` (text escaped here).
    fn leaf(&mut self, name: &str, text: &str) {
        self.indent();
        let _ = writeln!(self.out, "<{name}>{}</{name}>", escape(text));
    }

    /// `<name Ccy="EUR">amount</name>`.
    fn amount(&mut self, name: &str, minor: u64) {
        self.indent();
        let currency = Currency::Eur;
        let _ = writeln!(
            self.out,
            "<{name} Ccy=\"{}\">{}</{name}>",
            currency.code(),
            currency.format(minor)
        );
    }

    fn finish(mut self, root: &str) -> String {
        self.close(root);
        self.close("Document");
        self.out
    }
}

/// `YYYY-MM-DD` checked, returned as given.
fn date<'a>(text: &'a str, field: &'static str) -> Result<&'a str, FileError> {
    Date::parse(text, field)?;
    Ok(text)
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) of unix seconds.
fn timestamp(seconds: u64) -> Result<String, FileError> {
    let t = DateTime::from_unix(seconds, "created_at")?;
    Ok(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.date.year, t.date.month, t.date.day, t.hour, t.minute, t.second
    ))
}

/// Checks the transaction count and amounts and returns their sum.
fn control_sum(
    batch_id: &str,
    amounts: impl ExactSizeIterator<Item = u64>,
) -> Result<u64, FileError> {
    if amounts.len() == 0 {
        return Err(FileError::EmptyBatch(batch_id.to_owned()));
    }
    if amounts.len() > MAX_TRANSACTIONS {
        return Err(FileError::Overflow("NbOfTxs"));
    }
    amounts.into_iter().try_fold(0u64, |sum, amount| {
        if !(MIN_AMOUNT..=MAX_AMOUNT).contains(&amount) {
            return Err(FileError::Amount {
                field: "InstdAmt",
                min: MIN_AMOUNT,
                max: MAX_AMOUNT,
            });
        }
        sum.checked_add(amount)
            .ok_or(FileError::Overflow("CtrlSum"))
    })
}

/// Group header: message id, creation time, count, control sum, initiator.
fn group_header(
    xml: &mut Xml,
    batch_id: &str,
    created_at: u64,
    count: usize,
    sum: u64,
    initiator: &str,
) -> Result<(), FileError> {
    xml.open("GrpHdr");
    xml.leaf("MsgId", sepa_id(batch_id, "MsgId", MAX_ID)?);
    xml.leaf("CreDtTm", &timestamp(created_at)?);
    xml.leaf("NbOfTxs", &count.to_string());
    xml.leaf("CtrlSum", &Currency::Eur.format(sum));
    xml.open("InitgPty");
    xml.leaf("Nm", &sepa_text(initiator, "InitgPty/Nm", MAX_NAME)?);
    xml.close("InitgPty");
    xml.close("GrpHdr");
    Ok(())
}

/// Payment information header fields up to and including `PmtTpInf`.
fn payment_info_head(
    xml: &mut Xml,
    batch_id: &str,
    method: &str,
    count: usize,
    sum: u64,
    local_instrument: Option<&str>,
) -> Result<(), FileError> {
    xml.leaf("PmtInfId", sepa_id(batch_id, "PmtInfId", MAX_ID)?);
    xml.leaf("PmtMtd", method);
    xml.leaf("BtchBookg", "true");
    xml.leaf("NbOfTxs", &count.to_string());
    xml.leaf("CtrlSum", &Currency::Eur.format(sum));
    xml.open("PmtTpInf");
    xml.open("SvcLvl");
    xml.leaf("Cd", "SEPA");
    xml.close("SvcLvl");
    if let Some(code) = local_instrument {
        xml.open("LclInstrm");
        xml.leaf("Cd", code);
        xml.close("LclInstrm");
        xml.leaf("SeqTp", "RCUR");
    }
    xml.close("PmtTpInf");
    Ok(())
}

/// `<Nm>` of a party inside `element`.
fn party(xml: &mut Xml, element: &'static str, who: &SepaParty) -> Result<(), FileError> {
    xml.open(element);
    xml.leaf("Nm", &sepa_text(&who.name, element, MAX_NAME)?);
    xml.close(element);
    Ok(())
}

/// `<element><Id><IBAN>` of a party.
fn account(xml: &mut Xml, element: &str, who: &SepaParty) {
    xml.open(element);
    xml.open("Id");
    xml.leaf("IBAN", who.iban.as_str());
    xml.close("Id");
    xml.close(element);
}

/// `<element><FinInstnId>` with the BIC, or `Othr/Id NOTPROVIDED`.
fn agent(xml: &mut Xml, element: &str, who: &SepaParty) {
    xml.open(element);
    xml.open("FinInstnId");
    if let Some(bic) = &who.bic {
        xml.leaf("BIC", bic.as_str());
    } else {
        xml.open("Othr");
        xml.leaf("Id", "NOTPROVIDED");
        xml.close("Othr");
    }
    xml.close("FinInstnId");
    xml.close(element);
}

/// Writes a SEPA Core direct debit collection (pain.008.001.02, one
/// `PmtInf` with `PmtMtd` DD, `LclInstrm` CORE, `SeqTp` RCUR, `ChrgBr`
/// SLEV). Errors: no debits, amounts outside 0.01..=999 999 999.99,
/// invalid ids or dates, names without a single SEPA character.
pub fn pain008(collection: &SepaCollection) -> Result<String, FileError> {
    let c = collection;
    let sum = control_sum(&c.batch_id, c.debits.iter().map(|d| d.amount))?;
    let count = c.debits.len();
    let root = "CstmrDrctDbtInitn";
    let mut xml = Xml::new(PAIN008_NS, root);
    group_header(
        &mut xml,
        &c.batch_id,
        c.created_at,
        count,
        sum,
        &c.creditor.name,
    )?;
    xml.open("PmtInf");
    payment_info_head(&mut xml, &c.batch_id, "DD", count, sum, Some("CORE"))?;
    xml.leaf("ReqdColltnDt", date(&c.collection_date, "ReqdColltnDt")?);
    party(&mut xml, "Cdtr", &c.creditor)?;
    account(&mut xml, "CdtrAcct", &c.creditor);
    agent(&mut xml, "CdtrAgt", &c.creditor);
    xml.leaf("ChrgBr", "SLEV");
    xml.open("CdtrSchmeId");
    xml.open("Id");
    xml.open("PrvtId");
    xml.open("Othr");
    xml.leaf("Id", sepa_id(&c.creditor_scheme_id, "CdtrSchmeId", MAX_ID)?);
    xml.open("SchmeNm");
    xml.leaf("Prtry", "SEPA");
    xml.close("SchmeNm");
    xml.close("Othr");
    xml.close("PrvtId");
    xml.close("Id");
    xml.close("CdtrSchmeId");
    for debit in &c.debits {
        debit_transaction(&mut xml, debit)?;
    }
    xml.close("PmtInf");
    tracing::debug!(batch = %c.batch_id, count, "pain.008 written");
    Ok(xml.finish(root))
}

/// One `DrctDbtTxInf`.
fn debit_transaction(xml: &mut Xml, debit: &SepaDebit) -> Result<(), FileError> {
    xml.open("DrctDbtTxInf");
    xml.open("PmtId");
    xml.leaf(
        "EndToEndId",
        sepa_id(&debit.end_to_end_id, "EndToEndId", MAX_ID)?,
    );
    xml.close("PmtId");
    xml.amount("InstdAmt", debit.amount);
    xml.open("DrctDbtTx");
    xml.open("MndtRltdInf");
    xml.leaf("MndtId", sepa_id(&debit.mandate_id, "MndtId", MAX_ID)?);
    xml.leaf("DtOfSgntr", date(&debit.mandate_signed_on, "DtOfSgntr")?);
    xml.close("MndtRltdInf");
    xml.close("DrctDbtTx");
    agent(xml, "DbtrAgt", &debit.debtor);
    party(xml, "Dbtr", &debit.debtor)?;
    account(xml, "DbtrAcct", &debit.debtor);
    xml.close("DrctDbtTxInf");
    Ok(())
}

/// Writes a SEPA credit transfer batch (pain.001.001.03, one `PmtInf`
/// with `PmtMtd` TRF, service level SEPA, `ChrgBr` SLEV; the creditor
/// agent only when its BIC is known). Errors as for [`pain008`].
pub fn pain001(payout: &SepaPayout) -> Result<String, FileError> {
    let p = payout;
    let sum = control_sum(&p.batch_id, p.credits.iter().map(|c| c.amount))?;
    let count = p.credits.len();
    let root = "CstmrCdtTrfInitn";
    let mut xml = Xml::new(PAIN001_NS, root);
    group_header(
        &mut xml,
        &p.batch_id,
        p.created_at,
        count,
        sum,
        &p.debtor.name,
    )?;
    xml.open("PmtInf");
    payment_info_head(&mut xml, &p.batch_id, "TRF", count, sum, None)?;
    xml.leaf("ReqdExctnDt", date(&p.execution_date, "ReqdExctnDt")?);
    party(&mut xml, "Dbtr", &p.debtor)?;
    account(&mut xml, "DbtrAcct", &p.debtor);
    agent(&mut xml, "DbtrAgt", &p.debtor);
    xml.leaf("ChrgBr", "SLEV");
    for credit in &p.credits {
        credit_transaction(&mut xml, credit)?;
    }
    xml.close("PmtInf");
    tracing::debug!(batch = %p.batch_id, count, "pain.001 written");
    Ok(xml.finish(root))
}

/// One `CdtTrfTxInf`.
fn credit_transaction(xml: &mut Xml, credit: &SepaCredit) -> Result<(), FileError> {
    xml.open("CdtTrfTxInf");
    xml.open("PmtId");
    xml.leaf(
        "EndToEndId",
        sepa_id(&credit.end_to_end_id, "EndToEndId", MAX_ID)?,
    );
    xml.close("PmtId");
    xml.open("Amt");
    xml.amount("InstdAmt", credit.amount);
    xml.close("Amt");
    if credit.creditor.bic.is_some() {
        agent(xml, "CdtrAgt", &credit.creditor);
    }
    party(xml, "Cdtr", &credit.creditor)?;
    account(xml, "CdtrAcct", &credit.creditor);
    let remittance = credit.remittance.trim();
    if !remittance.is_empty() {
        xml.open("RmtInf");
        xml.leaf("Ustrd", &sepa_text(remittance, "Ustrd", MAX_REMITTANCE)?);
        xml.close("RmtInf");
    }
    xml.close("CdtTrfTxInf");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaper_covers_the_five_xml_specials() {
        assert_eq!(escape("a&b<c>d\"e'f"), "a&amp;b&lt;c&gt;d&quot;e&apos;f");
        assert_eq!(escape("plain"), "plain");
    }
}
