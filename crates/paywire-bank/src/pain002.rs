//! Reading ISO 20022 payment status reports (pain.002): the bank's answer
//! to a pain.008 or pain.001 file.
//!
//! Accepted: a `Document` in a `urn:iso:std:iso:20022:tech:xsd:pain.002.001.NN`
//! namespace (written for .03, the EPC version, and .10; the elements read
//! are the same in both). Read: the original message id and group status
//! (`OrgnlGrpInfAndSts/OrgnlMsgId`, `GrpSts`), each payment information
//! status (`OrgnlPmtInfAndSts/PmtInfSts`) and each transaction status
//! (`TxInfAndSts`: `OrgnlEndToEndId`, `TxSts`, `StsRsnInf/Rsn/Cd` or
//! `Prtry`).
//!
//! A transaction is rejected when its own `TxSts` is `RJCT`, or when its
//! payment information block or the whole group is `RJCT`. Only the
//! transactions the report lists are returned: a report that rejects the
//! whole group without listing transactions yields no items (see
//! [`StatusReport::group_status`] to detect it; the bank rejected the whole
//! original message [`StatusReport::original_message_id`]).
//!
//! Refused: any `<!DOCTYPE` (so no entity can be declared or expanded),
//! entity references other than the five predefined ones, malformed XML,
//! a transaction status without `OrgnlEndToEndId`, nesting deeper than 32.

use quick_xml::NsReader;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;

use crate::files::FileError;

/// Namespace prefix of every pain.002 version (`.001.NN` follows).
const NAMESPACE_PREFIX: &str = "urn:iso:std:iso:20022:tech:xsd:pain.002.001.";
/// Deepest element nesting accepted (a real report needs fewer than 10).
const MAX_DEPTH: usize = 32;
/// The status code of a rejection.
const REJECTED: &str = "RJCT";

/// The status of one original transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusItem {
    /// The original end-to-end id.
    pub end_to_end_id: String,
    /// Rejected (`RJCT` at transaction level, or its payment information
    /// block or its group rejected).
    pub rejected: bool,
    /// The rejection reason code (transaction level, else the payment
    /// information's, else the group's), if any.
    pub reason: Option<String>,
}

/// Everything read from one status report.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatusReport {
    /// `OrgnlGrpInfAndSts/OrgnlMsgId`: the message (our batch id) reported on.
    pub original_message_id: Option<String>,
    /// `OrgnlGrpInfAndSts/GrpSts` (`ACCP`, `RJCT`, `PART`, ...), if given.
    pub group_status: Option<String>,
    /// The group's reason code, if given.
    pub group_reason: Option<String>,
    /// The listed transactions, in document order.
    pub items: Vec<StatusItem>,
}

impl StatusReport {
    /// Whether the whole original message was rejected.
    pub fn group_rejected(&self) -> bool {
        self.group_status.as_deref() == Some(REJECTED)
    }
}

/// Reads a pain.002 status report into its transaction items (see the
/// module docs for the rules).
pub fn parse(text: &str) -> Result<Vec<StatusItem>, FileError> {
    parse_report(text).map(|report| report.items)
}

fn malformed(detail: impl Into<String>) -> FileError {
    FileError::Malformed {
        format: "pain.002",
        detail: detail.into(),
    }
}

/// A transaction status being read.
#[derive(Debug, Default)]
struct Tx {
    end_to_end_id: Option<String>,
    status: Option<String>,
    reason: Option<String>,
}

/// A payment information status being read, with its transactions.
#[derive(Debug, Default)]
struct PmtInf {
    status: Option<String>,
    reason: Option<String>,
    txs: Vec<Tx>,
}

/// The elements whose end matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    MessageId,
    GroupStatus,
    GroupReason,
    TxEnd,
    TxEndToEndId,
    TxStatus,
    TxReason,
    PmtEnd,
    PmtStatus,
    PmtReason,
    Other,
}

/// Reader state: the open elements and what was read so far.
#[derive(Debug, Default)]
struct State {
    path: Vec<String>,
    text: String,
    report: StatusReport,
    pmt: Option<PmtInf>,
    tx: Option<Tx>,
    /// Transactions with the status of their payment information block.
    done: Vec<(Tx, Option<String>, Option<String>)>,
    saw_root: bool,
}

impl State {
    fn start(&mut self, ns: &ResolveResult<'_>, element: &BytesStart<'_>) -> Result<(), FileError> {
        let name = String::from_utf8_lossy(element.local_name().as_ref()).into_owned();
        if self.path.is_empty() {
            check_root(&name, ns, self.saw_root)?;
            self.saw_root = true;
        }
        if self.path.len() >= MAX_DEPTH {
            return Err(malformed("elements nested too deeply"));
        }
        match name.as_str() {
            "OrgnlPmtInfAndSts" => self.pmt = Some(PmtInf::default()),
            "TxInfAndSts" => self.tx = Some(Tx::default()),
            _ => {}
        }
        self.path.push(name);
        self.text.clear();
        Ok(())
    }

    /// Whether the open elements end with `suffix`.
    fn at(&self, suffix: &[&str]) -> bool {
        self.path.len() >= suffix.len()
            && self.path[self.path.len() - suffix.len()..]
                .iter()
                .zip(suffix)
                .all(|(a, b)| a == b)
    }

    /// The reason code element under `scope` (`StsRsnInf/Rsn/Cd|Prtry`).
    fn at_reason(&self, scope: &str) -> bool {
        self.at(&[scope, "StsRsnInf", "Rsn", "Cd"])
            || self.at(&[scope, "StsRsnInf", "Rsn", "Prtry"])
    }

    /// What the element being closed is.
    fn closing(&self) -> Field {
        let in_tx = self.tx.is_some();
        let in_pmt = self.pmt.is_some();
        if self.at(&["OrgnlGrpInfAndSts", "OrgnlMsgId"]) {
            Field::MessageId
        } else if self.at(&["OrgnlGrpInfAndSts", "GrpSts"]) {
            Field::GroupStatus
        } else if self.at_reason("OrgnlGrpInfAndSts") {
            Field::GroupReason
        } else if in_tx && self.at(&["TxInfAndSts"]) {
            Field::TxEnd
        } else if in_tx && self.at(&["TxInfAndSts", "OrgnlEndToEndId"]) {
            Field::TxEndToEndId
        } else if in_tx && self.at(&["TxInfAndSts", "TxSts"]) {
            Field::TxStatus
        } else if in_tx && self.at_reason("TxInfAndSts") {
            Field::TxReason
        } else if in_pmt && self.at(&["OrgnlPmtInfAndSts"]) {
            Field::PmtEnd
        } else if in_pmt && self.at(&["OrgnlPmtInfAndSts", "PmtInfSts"]) {
            Field::PmtStatus
        } else if in_pmt && self.at_reason("OrgnlPmtInfAndSts") {
            Field::PmtReason
        } else {
            Field::Other
        }
    }

    fn end(&mut self) -> Result<(), FileError> {
        let value = std::mem::take(&mut self.text).trim().to_owned();
        let set = |slot: &mut Option<String>| {
            if slot.is_none() {
                *slot = Some(value.clone());
            }
        };
        match self.closing() {
            Field::MessageId => set(&mut self.report.original_message_id),
            Field::GroupStatus => set(&mut self.report.group_status),
            Field::GroupReason => set(&mut self.report.group_reason),
            Field::TxEnd => self.finish_tx()?,
            Field::TxEndToEndId => self.tx.as_mut().map_or((), |tx| set(&mut tx.end_to_end_id)),
            Field::TxStatus => self.tx.as_mut().map_or((), |tx| set(&mut tx.status)),
            Field::TxReason => self.tx.as_mut().map_or((), |tx| set(&mut tx.reason)),
            Field::PmtEnd => self.finish_pmt(),
            Field::PmtStatus => self.pmt.as_mut().map_or((), |p| set(&mut p.status)),
            Field::PmtReason => self.pmt.as_mut().map_or((), |p| set(&mut p.reason)),
            Field::Other => {}
        }
        self.path.pop();
        Ok(())
    }

    fn finish_tx(&mut self) -> Result<(), FileError> {
        let tx = self.tx.take().unwrap_or_default();
        if tx.end_to_end_id.as_deref().is_none_or(str::is_empty) {
            return Err(malformed("transaction status without OrgnlEndToEndId"));
        }
        match self.pmt.as_mut() {
            Some(pmt) => pmt.txs.push(tx),
            None => self.done.push((tx, None, None)),
        }
        Ok(())
    }

    fn finish_pmt(&mut self) {
        if let Some(pmt) = self.pmt.take() {
            for tx in pmt.txs {
                self.done.push((tx, pmt.status.clone(), pmt.reason.clone()));
            }
        }
    }

    fn into_report(self) -> StatusReport {
        let mut report = self.report;
        let group_rejected = report.group_rejected();
        for (tx, pmt_status, pmt_reason) in self.done {
            let tx_rejected = tx.status.as_deref() == Some(REJECTED);
            let pmt_rejected = pmt_status.as_deref() == Some(REJECTED);
            let rejected = tx_rejected || pmt_rejected || group_rejected;
            let reason = if rejected {
                tx.reason
                    .or(if pmt_rejected { pmt_reason } else { None })
                    .or_else(|| report.group_reason.clone().filter(|_| group_rejected))
            } else {
                None
            };
            report.items.push(StatusItem {
                end_to_end_id: tx.end_to_end_id.unwrap_or_default(),
                rejected,
                reason,
            });
        }
        report
    }
}

/// The root must be a `Document` in a pain.002 namespace, and only one.
fn check_root(name: &str, ns: &ResolveResult<'_>, saw_root: bool) -> Result<(), FileError> {
    if saw_root {
        return Err(malformed("more than one root element"));
    }
    let namespace = match ns {
        ResolveResult::Bound(ns) => std::str::from_utf8(ns.as_ref()).unwrap_or(""),
        _ => "",
    };
    let version_ok = namespace
        .strip_prefix(NAMESPACE_PREFIX)
        .is_some_and(|v| v.len() == 2 && v.bytes().all(|b| b.is_ascii_digit()));
    if name != "Document" || !version_ok {
        return Err(malformed("not a pain.002 Document"));
    }
    Ok(())
}

/// Reads a pain.002 status report, with its group-level information (see
/// the module docs for the rules).
pub fn parse_report(text: &str) -> Result<StatusReport, FileError> {
    let mut reader = NsReader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut state = State::default();
    loop {
        let position = reader.buffer_position();
        let (ns, event) = reader.read_resolved_event().map_err(|e| {
            malformed(format!(
                "XML error near byte {position}: {}",
                xml_error_kind(&e)
            ))
        })?;
        match event {
            Event::Start(element) => state.start(&ns, &element)?,
            Event::Empty(element) => {
                state.start(&ns, &element)?;
                state.end()?;
            }
            Event::End(_) => state.end()?,
            Event::Text(text) => {
                let decoded = text
                    .xml10_content()
                    .map_err(|_| malformed("text is not valid UTF-8"))?;
                state.text.push_str(&decoded);
            }
            Event::CData(data) => {
                let decoded = data
                    .decode()
                    .map_err(|_| malformed("CDATA is not valid UTF-8"))?;
                state.text.push_str(&decoded);
            }
            Event::GeneralRef(reference) => state.text.push(resolve_reference(&reference)?),
            Event::DocType(_) => return Err(malformed("DOCTYPE declarations are refused")),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !state.saw_root || !state.path.is_empty() {
        return Err(malformed("no complete Document element"));
    }
    Ok(state.into_report())
}

/// A character reference, or one of the five predefined entities.
fn resolve_reference(reference: &quick_xml::events::BytesRef<'_>) -> Result<char, FileError> {
    if reference.is_char_ref() {
        return reference
            .resolve_char_ref()
            .ok()
            .flatten()
            .ok_or_else(|| malformed("invalid character reference"));
    }
    match reference.decode().as_deref() {
        Ok("amp") => Ok('&'),
        Ok("lt") => Ok('<'),
        Ok("gt") => Ok('>'),
        Ok("quot") => Ok('"'),
        Ok("apos") => Ok('\''),
        _ => Err(malformed("undeclared entity reference")),
    }
}

/// The kind of an XML error, without quoting the document.
fn xml_error_kind(error: &quick_xml::Error) -> &'static str {
    match error {
        quick_xml::Error::Io(_) => "read failure",
        quick_xml::Error::Syntax(_) => "syntax error",
        quick_xml::Error::IllFormed(_) => "ill-formed document",
        quick_xml::Error::InvalidAttr(_) => "invalid attribute",
        quick_xml::Error::Encoding(_) => "invalid encoding",
        quick_xml::Error::Escape(_) => "invalid escape",
        quick_xml::Error::Namespace(_) => "namespace error",
    }
}
