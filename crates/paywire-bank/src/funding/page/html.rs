//! The purchase form and receipt pages: self-contained HTML (no external
//! resources, one inline style allowed by its hash), every echoed value
//! escaped, served with a strict Content-Security-Policy.

use std::fmt::Write as _;

use base64::Engine as _;
use paywire_core::PluginResponse;
use sha2::{Digest as _, Sha256};

use super::{Done, network_label};
use crate::funding::{FundingContext, PURCHASE_PATH, Rail};

/// The pages' only style.
const STYLE: &str = "body{font-family:sans-serif;max-width:40em;margin:2em auto;padding:0 1em}\
label{display:block;margin:.6em 0}input[type=text]{width:100%}\
.error{color:#a00}.secret{font-family:monospace;word-break:break-all;background:#eee;padding:.5em}";

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The Content-Security-Policy of the pages: nothing but the inline style
/// (by hash) and form posts to ourselves.
fn csp() -> String {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE.as_bytes()));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'"
    )
}

fn respond(status: u16, title: &str, body: &str) -> PluginResponse {
    let document = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>\n",
        escape(title)
    );
    PluginResponse::new(status, "text/html; charset=utf-8", document)
        .with_header("content-security-policy", csp())
        .with_header("cache-control", "no-store")
        .with_header("x-content-type-options", "nosniff")
        .with_header("x-frame-options", "DENY")
        .with_header("referrer-policy", "no-referrer")
}

/// The purchase form (status 200), or the form again with `error`
/// (status 400). Nothing the principal typed is echoed back.
pub(super) fn page(ctx: &FundingContext, error: Option<&str>) -> PluginResponse {
    let config = &ctx.config;
    let currency = config.currency();
    let mut body = format!(
        "<h1>Buy credits</h1><p>Credits for {} at {}, paid by {}.</p>",
        escape(&network_label(ctx)),
        escape(&ctx.authority),
        match config.rail {
            Rail::Sepa => "SEPA direct debit",
            Rail::Ach => "ACH debit",
        }
    );
    if let Some(error) = error {
        let _ = write!(
            body,
            "<p class=\"error\" role=\"alert\">{}</p>",
            escape(error)
        );
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"{PURCHASE_PATH}\"><fieldset><legend>Tier</legend>"
    );
    for (index, tier) in config.tiers.iter().enumerate() {
        let _ = write!(
            body,
            "<label><input type=\"radio\" name=\"tier\" value=\"{index}\" required{}> \
             {} {currency} of credits for {} {currency}</label>",
            if index == 0 { " checked" } else { "" },
            currency.format(tier.credits),
            currency.format(tier.price),
        );
    }
    body.push_str("</fieldset>");
    body.push_str(match config.rail {
        Rail::Sepa => SEPA_FIELDS,
        Rail::Ach => ACH_FIELDS,
    });
    body.push_str(
        "<label><input type=\"checkbox\" name=\"offSession\" value=\"on\"> \
         Allow top-ups with my bundle credential, without visiting this page again</label>\
         <button type=\"submit\">Buy</button></form>",
    );
    let status = if error.is_some() { 400 } else { 200 };
    respond(status, "Buy credits", &body)
}

const SEPA_FIELDS: &str = "<fieldset><legend>SEPA direct debit mandate</legend>\
<label>Account holder <input type=\"text\" name=\"name\" required maxlength=\"70\" autocomplete=\"name\"></label>\
<label>IBAN <input type=\"text\" name=\"iban\" required maxlength=\"42\" autocomplete=\"off\"></label>\
<label>BIC (optional) <input type=\"text\" name=\"bic\" maxlength=\"11\" autocomplete=\"off\"></label>\
<label><input type=\"checkbox\" name=\"accept\" value=\"on\" required> I authorise the creditor to \
send instructions to my bank to debit my account, and my bank to debit my account in accordance \
with those instructions (SEPA Core direct debit mandate).</label></fieldset>";

const ACH_FIELDS: &str = "<fieldset><legend>ACH debit authorization</legend>\
<label>Account holder <input type=\"text\" name=\"name\" required maxlength=\"70\" autocomplete=\"name\"></label>\
<label>Routing number <input type=\"text\" name=\"routing\" required inputmode=\"numeric\" maxlength=\"9\" autocomplete=\"off\"></label>\
<label>Account number <input type=\"text\" name=\"account\" required maxlength=\"17\" autocomplete=\"off\"></label>\
<label><input type=\"radio\" name=\"accountType\" value=\"checking\" checked> Checking</label>\
<label><input type=\"radio\" name=\"accountType\" value=\"savings\"> Savings</label>\
<label><input type=\"checkbox\" name=\"accept\" value=\"on\" required> I authorize the originator \
to debit my account for this purchase and, if I allow top-ups, for later purchases I request.</label>\
</fieldset>";

/// The receipt of a purchase (status 201): the credential, shown once.
pub(super) fn receipt(ctx: &FundingContext, done: &Done) -> PluginResponse {
    let currency = ctx.config.currency();
    let mut body = format!(
        "<h1>Purchase recorded</h1><p>Bundle <code>{}</code>, purchase <code>{}</code>, \
         mandate <code>{}</code>, debited from the account ending {}.</p>\
         <p>{} {currency} of credits, {} {currency} spendable now, the rest from {} (UTC).</p>",
        escape(&done.bundle_id),
        escape(&done.purchase_id),
        escape(&done.mandate_id),
        escape(&done.account),
        currency.format(done.tier.credits),
        currency.format(done.spendable_now),
        crate::funding::iso_date(done.spendable_at, "spendable date")
            .unwrap_or_else(|_| done.spendable_at.to_string()),
    );
    if let Some(credential) = &done.credential {
        let _ = write!(
            body,
            "<p>Your bundle credential. It is shown only this once: store it now, \
             it cannot be recovered.</p><p class=\"secret\">{}</p>",
            escape(credential)
        );
    }
    respond(201, "Purchase recorded", &body)
}
