//! The small HTML page shown to browsers instead of the JSON 402 body.

use std::fmt::Write as _;

use paywire_core::{PaymentRequired, PaymentRequirements};

/// Display data of an asset.
#[derive(Debug, Clone)]
pub(crate) struct AssetInfo {
    pub(crate) symbol: Option<String>,
    pub(crate) decimals: u8,
}

/// Escapes text for HTML element content and attribute values.
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

fn price_text(
    requirement: &PaymentRequirements,
    assets: &dyn Fn(&PaymentRequirements) -> Option<AssetInfo>,
) -> String {
    match assets(requirement) {
        Some(info) => {
            let amount = requirement.amount.to_decimal_string(info.decimals);
            match info.symbol {
                Some(symbol) => format!("{amount} {symbol}"),
                None => format!("{amount} (asset {})", requirement.asset),
            }
        }
        None => format!(
            "{} atomic units of {}",
            requirement.amount, requirement.asset
        ),
    }
}

/// Renders the paywall page; every interpolated string is escaped.
pub(crate) fn paywall_html(
    required: &PaymentRequired,
    assets: &dyn Fn(&PaymentRequirements) -> Option<AssetInfo>,
    networks: &paywire_core::NetworkDirectory,
) -> String {
    let description = required
        .resource
        .description
        .as_deref()
        .unwrap_or("This resource");
    let mut options = String::new();
    for requirement in &required.accepts {
        let network = networks.name_of(&requirement.network).map_or_else(
            || requirement.network.to_string(),
            |name| format!("{name} ({})", requirement.network),
        );
        // Writing to a String cannot fail.
        let _ = writeln!(
            options,
            "<li><strong>{}</strong> on {} <small>({} scheme)</small></li>",
            escape(&price_text(requirement, assets)),
            escape(&network),
            escape(&requirement.scheme),
        );
    }
    let error = required
        .error
        .as_deref()
        .map(|e| format!("<p class=\"error\">{}</p>\n", escape(e)))
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Payment required</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}}\
         .error{{color:#a00}}code{{word-break:break-all}}</style></head>\n<body>\n\
         <h1>Payment required</h1>\n<p>{}</p>\n{error}<p>Accepted payments:</p>\n<ul>\n{options}</ul>\n\
         <p>Resource: <code>{}</code></p>\n\
         <p>Pay with an x402 client: the payment details are in the <code>PAYMENT-REQUIRED</code> header.</p>\n\
         </body></html>\n",
        escape(description),
        escape(&required.resource.url),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(
            escape("<script>alert('x')&\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;)&amp;&quot;&lt;/script&gt;"
        );
    }
}
