//! Optional OpenTelemetry trace export (cargo feature `otel`).
//!
//! When `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, tracing
//! spans are exported over OTLP/HTTP (protobuf) by a batch span processor running on the
//! command's tokio runtime. The standard `OTEL_*` variables of the OpenTelemetry SDK apply
//! (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_BSP_*`, …).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};

/// The tracing layer type the CLI composes its subscriber from.
pub type BoxedLayer = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

/// Flushes and shuts the exporter down when dropped. Drop it while the runtime it was created on
/// is still alive (the batch processor runs there).
pub struct Guard {
    provider: SdkTracerProvider,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("warning: cannot flush OpenTelemetry spans: {error}");
        }
    }
}

/// Whether trace export was asked for through the environment.
fn endpoint_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()))
}

/// Whether the environment names the service (`OTEL_SERVICE_NAME` or a `service.name` in
/// `OTEL_RESOURCE_ATTRIBUTES`), which then wins over our default.
fn service_name_from_env() -> bool {
    std::env::var("OTEL_SERVICE_NAME").is_ok_and(|value| !value.trim().is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|value| {
            value
                .split(',')
                .any(|pair| pair.split('=').next().map(str::trim) == Some("service.name"))
        })
}

/// The OpenTelemetry layer and its shutdown guard, or `None` if no OTLP endpoint is configured.
/// Must be called with `runtime` alive: the batch span processor is spawned on it.
pub fn layer(
    default_service_name: &'static str,
    runtime: &tokio::runtime::Handle,
) -> Result<Option<(BoxedLayer, Guard)>, String> {
    if !endpoint_configured() {
        return Ok(None);
    }
    // The async reqwest client and the batch processor's worker need the runtime's context.
    let _entered = runtime.enter();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .build()
        .map_err(|e| format!("cannot create the OTLP span exporter: {e}"))?;
    let processor =
        BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
    let mut resource = Resource::builder();
    if !service_name_from_env() {
        resource = resource.with_service_name(default_service_name);
    }
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("paywire");
    // The exporter's own HTTP stack must not feed spans back into the exporter.
    let no_exporter_internals = Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_target("hyper", LevelFilter::OFF)
        .with_target("hyper_util", LevelFilter::OFF)
        .with_target("h2", LevelFilter::OFF)
        .with_target("reqwest", LevelFilter::OFF)
        .with_target("opentelemetry", LevelFilter::OFF)
        .with_target("opentelemetry_sdk", LevelFilter::OFF)
        .with_target("opentelemetry_otlp", LevelFilter::OFF)
        .with_target("opentelemetry_http", LevelFilter::OFF);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(no_exporter_internals)
        .boxed();
    Ok(Some((layer, Guard { provider })))
}
