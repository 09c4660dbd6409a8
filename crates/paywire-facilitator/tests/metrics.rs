//! `/metrics` as a scraper reads it: parsed by an OpenMetrics/Prometheus
//! text parser after a known sequence of verifies and settles, with hostile
//! payloads that must not become label values.

mod common;

use std::collections::HashSet;

use alloy_primitives::Address;
use common::*;
use openmetrics_parser::{MetricFamily, MetricsExposition, OpenMetricsType, OpenMetricsValue};
use paywire_facilitator::metrics::{OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE};
use serde_json::{Value, json};

type Exposition = MetricsExposition<OpenMetricsType, OpenMetricsValue>;
type Family = MetricFamily<OpenMetricsType, OpenMetricsValue>;

const NETWORK: &str = "eip155:31337";

/// The family `name` (counters may be keyed with or without `_total`).
fn family<'a>(exposition: &'a Exposition, name: &str) -> &'a Family {
    exposition
        .families
        .get(name)
        .or_else(|| exposition.families.get(&format!("{name}_total")))
        .unwrap_or_else(|| panic!("no family {name} in {:?}", exposition.families.keys()))
}

/// The value of the sample of `family` whose labels include `labels`
/// (a histogram's count); `None` when there is no such sample.
fn value(family: &Family, labels: &[(&str, &str)]) -> Option<f64> {
    let sample = family.iter_samples().find(|sample| {
        sample.get_labelset().is_ok_and(|set| {
            labels
                .iter()
                .all(|(name, value)| set.get_label_value(name) == Some(*value))
        })
    })?;
    Some(match &sample.value {
        OpenMetricsValue::Counter(counter) => counter.value.as_f64(),
        OpenMetricsValue::Gauge(gauge) => gauge.as_f64(),
        #[allow(clippy::cast_precision_loss)] // Small test counts.
        OpenMetricsValue::Histogram(histogram) => histogram.count.unwrap_or(0) as f64,
        other => panic!("unexpected value {other:?}"),
    })
}

/// Every value of label `name` across all families.
fn label_values(exposition: &Exposition, name: &str) -> HashSet<String> {
    exposition
        .families
        .values()
        .flat_map(Family::iter_samples)
        .filter_map(|sample| {
            let set = sample.get_labelset().ok()?;
            set.get_label_value(name).map(str::to_owned)
        })
        .collect()
}

/// The request with both its payload's and its requirements' network
/// replaced by `network`.
fn with_network(request: &Value, network: &str) -> Value {
    let mut request = request.clone();
    request["paymentRequirements"]["network"] = json!(network);
    request["paymentPayload"]["accepted"]["network"] = json!(network);
    request
}

#[tokio::test]
async fn metrics_parse_and_count_a_known_sequence_without_hostile_labels() -> TestResult {
    let stack = Stack::start().await?;
    let (devnet, server) = (stack.devnet(), stack.facilitator());
    let client = reqwest::Client::new();
    let requirements = requirements(devnet, Address::random());
    let payload = pay(devnet, 1, &requirements, None).await?;
    let request = body(&payload, &requirements);

    for _ in 0..2 {
        let (status, verify) = post(&client, &server.url("/verify"), &request).await?;
        assert_eq!(
            (status, &verify["isValid"]),
            (200, &json!(true)),
            "{verify}"
        );
    }
    let (status, settle) = post(&client, &server.url("/settle"), &request).await?;
    assert_eq!(
        (status, &settle["success"]),
        (200, &json!(true)),
        "{settle}"
    );
    let (_, replay) = post(&client, &server.url("/settle"), &request).await?;
    assert_eq!(replay["success"], json!(false), "{replay}");
    // Hostile networks: unsupported but well-formed, and garbage.
    let hostile = [
        "eip155:999999".to_owned(),
        format!("evil:\"quoted\"\n{}", "x".repeat(5000)),
    ];
    for network in &hostile {
        let bad = with_network(&request, network);
        post(&client, &server.url("/verify"), &bad).await?;
        post(&client, &server.url("/settle"), &bad).await?;
    }

    let response = client
        .get(server.url("/metrics"))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await?;
    let content_type = response.headers().get("content-type").cloned();
    assert_eq!(
        content_type.as_ref().and_then(|v| v.to_str().ok()),
        Some(OPENMETRICS_CONTENT_TYPE)
    );
    let text = response.text().await?;
    let parsed = openmetrics_parser::openmetrics::parse_openmetrics(&text)
        .map_err(|error| format!("{error:?} in {text}"))?;

    let kind = [("network", NETWORK), ("scheme", "exact")];
    let settle_seconds = family(&parsed, "paywire_settle_duration_seconds");
    assert_eq!(settle_seconds.family_type, OpenMetricsType::Histogram);
    assert_eq!(value(settle_seconds, &kind), Some(1.0), "{text}");
    let verify_seconds = family(&parsed, "paywire_verify_duration_seconds");
    assert_eq!(verify_seconds.family_type, OpenMetricsType::Histogram);
    assert_eq!(value(verify_seconds, &kind), Some(2.0), "{text}");

    let verify = family(&parsed, "paywire_verify");
    assert_eq!(verify.family_type, OpenMetricsType::Counter);
    let valid = [kind[0], kind[1], ("outcome", "valid"), ("reason", "")];
    assert_eq!(value(verify, &valid), Some(2.0), "{text}");
    let settle = family(&parsed, "paywire_settle");
    let confirmed = [kind[0], kind[1], ("outcome", "confirmed")];
    assert_eq!(value(settle, &confirmed), Some(1.0), "{text}");
    let replayed = [kind[0], kind[1], ("outcome", "replay")];
    assert_eq!(value(settle, &replayed), Some(1.0), "{text}");

    let states = family(&parsed, "paywire_ledger_settlements");
    assert_eq!(states.family_type, OpenMetricsType::Gauge);
    assert_eq!(value(states, &[("state", "confirmed")]), Some(1.0));
    assert_eq!(value(states, &[("state", "pending")]), Some(0.0));
    let balances = family(&parsed, "paywire_signer_balance");
    let balance = value(balances, &[("network", NETWORK), ("unit", "wei")]);
    assert!(balance.is_some_and(|wei| wei > 0.0), "{text}");
    let requests = family(&parsed, "paywire_http_requests");
    let settled = [("route", "/settle"), ("status", "200")];
    assert!(
        value(requests, &settled).is_some_and(|n| n >= 2.0),
        "{text}"
    );

    // Only supported values (or `other`) label anything; the hostile
    // strings appear nowhere.
    let networks = label_values(&parsed, "network");
    let allowed: HashSet<String> = [NETWORK, "other"].map(str::to_owned).into();
    assert!(networks.is_subset(&allowed), "{networks:?}");
    assert!(networks.contains("other"), "{networks:?}");
    for scheme in label_values(&parsed, "scheme") {
        assert!(["exact", "other"].contains(&scheme.as_str()), "{scheme}");
    }
    // (The whole network id, not its digits: a signer's balance in wei may
    // well contain "999999".)
    assert!(!text.contains("eip155:999999") && !text.contains("evil") && !text.contains("xxxx"));

    // Without asking for OpenMetrics: the classic text format, parseable too.
    let response = client.get(server.url("/metrics")).send().await?;
    let content_type = response.headers().get("content-type").cloned();
    assert_eq!(
        content_type.as_ref().and_then(|v| v.to_str().ok()),
        Some(TEXT_CONTENT_TYPE)
    );
    let text = response.text().await?;
    let classic = openmetrics_parser::prometheus::parse_prometheus(&text)
        .map_err(|error| format!("{error:?} in {text}"))?;
    assert!(
        classic
            .families
            .contains_key("paywire_settle_duration_seconds"),
        "{:?}",
        classic.families.keys()
    );
    stack.stop().await;
    Ok(())
}
