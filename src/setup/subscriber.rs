//! Feature `tracing`: the `tracing` subscriber the one-call setup installs.
//!
//! Two OpenTelemetry layers share one filter: `tracing-opentelemetry` turns `tracing` spans
//! into OpenTelemetry spans, and `opentelemetry-appender-tracing` turns `tracing` events into
//! log records. The span layer sees spans only: `tracing-opentelemetry` would also copy every
//! event into its span as a span event, which Azure Monitor shows as a second trace item next
//! to the log record. What the span layer did with an ERROR event, marking its span failed, is
//! done by [`ErrorStatus`] instead.

use std::sync::OnceLock;

use opentelemetry::trace::{Status, TraceContextExt as _, TracerProvider as _};
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use tracing::dispatcher::{Dispatch, WeakDispatch};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::{filter_fn, EnvFilter, FilterExt as _, LevelFilter};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use super::{AzureMonitor, AzureMonitorBuilder, SetupError};

/// The environment variable read for the filter when the code sets none, as `tracing` users
/// expect.
const ENV_FILTER: &str = "RUST_LOG";

/// The filter when neither the code nor `RUST_LOG` sets one.
const DEFAULT_FILTER: &str = "info";

/// The target of the spans that `tracing-opentelemetry-instrumentation-sdk` (and so
/// `axum-tracing-opentelemetry`, `tonic-tracing-opentelemetry`) makes, at `TRACE`: its users
/// enable it with `otel::tracing=trace` in every filter, so the filter gets it unless it names
/// that target itself.
const INSTRUMENTATION_TARGET: &str = "otel::tracing";

/// Crates whose `tracing` output is the exporter's own HTTP traffic (reqwest on hyper, h2,
/// tower and rustls): sent as telemetry, its export would produce more of it. Matched as whole
/// crate names, so that `tower_http` (the server middleware) is kept.
const TRANSPORT_CRATES: [&str; 6] = ["hyper", "hyper_util", "reqwest", "h2", "rustls", "tower"];

/// Whether a `tracing` target belongs to the exporter's own work: its transport crates, or
/// OpenTelemetry itself (`opentelemetry`, `opentelemetry_sdk`, this crate's internal log,
/// whose targets are `opentelemetry-azure-monitor` and the like).
pub(super) fn is_own_telemetry(target: &str) -> bool {
    target.starts_with("opentelemetry")
        || TRANSPORT_CRATES.iter().any(|name| {
            target
                .strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
}

/// What the builder was told about `tracing`.
#[derive(Debug)]
pub(super) struct TracingOptions {
    pub(super) install: bool,
    pub(super) filter: Option<String>,
    pub(super) stderr_warnings: bool,
}

impl Default for TracingOptions {
    fn default() -> Self {
        TracingOptions {
            install: true,
            filter: None,
            stderr_warnings: true,
        }
    }
}

impl TracingOptions {
    /// Resolves the filter: code beats `RUST_LOG` beats `info`. Directives set in code must
    /// parse; `RUST_LOG` is read leniently, as `tracing-subscriber` does (bad directives are
    /// skipped).
    pub(super) fn filter(&self) -> Result<TracingFilter, SetupError> {
        self.filter_with(&|name| std::env::var(name).ok())
    }

    fn filter_with(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<TracingFilter, SetupError> {
        let directives = match &self.filter {
            Some(code) => {
                EnvFilter::builder()
                    .parse(code)
                    .map_err(|e| SetupError::InvalidTracingFilter {
                        directives: code.clone(),
                        reason: e.to_string(),
                    })?;
                code.clone()
            }
            None => env(ENV_FILTER)
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_FILTER.to_owned()),
        };
        let directives = if directives.contains(INSTRUMENTATION_TARGET) {
            directives
        } else {
            format!("{directives},{INSTRUMENTATION_TARGET}=trace")
        };
        Ok(TracingFilter { directives })
    }
}

/// The resolved filter of the OpenTelemetry layers. An `EnvFilter` cannot be cloned, and each
/// layer needs its own, so the directives are kept.
#[derive(Debug)]
pub(super) struct TracingFilter {
    directives: String,
}

impl TracingFilter {
    /// The directives' filter, without the exporter's own traffic.
    fn filter<S>(&self) -> impl tracing_subscriber::layer::Filter<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        EnvFilter::builder()
            .parse_lossy(&self.directives)
            .and(filter_fn(|meta: &Metadata<'_>| {
                !is_own_telemetry(meta.target())
            }))
    }
}

impl AzureMonitorBuilder {
    /// Sets which `tracing` spans and events become telemetry, in `tracing-subscriber`'s
    /// `EnvFilter` syntax (`"info"`, `"warn,my_service=debug"`). The exporter's own HTTP
    /// traffic (`hyper`, `hyper_util`, `reqwest`, `h2`, `rustls`, `tower`) and OpenTelemetry's
    /// internal log (`opentelemetry*`) never do, whatever the filter says.
    ///
    /// Defaults to the `RUST_LOG` environment variable, else `info`. Spans are filtered by their
    /// level too: middleware that makes its spans at `DEBUG` (tower-http's `TraceLayer` by
    /// default) needs `debug` for its target, or its spans made at `INFO`. The directive
    /// `otel::tracing=trace` is added unless the filter names `otel::tracing`: that is where
    /// `axum-tracing-opentelemetry` and its siblings make their spans, at `TRACE`. Directives set here
    /// that do not parse make `install()` fail; bad directives in `RUST_LOG` are skipped.
    pub fn with_tracing_filter(mut self, directives: impl Into<String>) -> Self {
        self.tracing.filter = Some(directives.into());
        self
    }

    /// Whether `install()` sets a global `tracing` subscriber (a `tracing-subscriber` registry
    /// with [`AzureMonitor::tracing_layer`] and the warnings on standard error). Turn it off to
    /// compose your own subscriber with [`AzureMonitor::tracing_layer`].
    ///
    /// Defaults to `true`.
    pub fn with_tracing_subscriber(mut self, install: bool) -> Self {
        self.tracing.install = install;
        self
    }

    /// Whether the installed subscriber also writes warnings and errors to standard error, of
    /// every target: the application's, and the exporter's own (which never become telemetry,
    /// so this is where a failing endpoint or a full storage shows).
    ///
    /// Defaults to `true`.
    pub fn with_stderr_warnings(mut self, enabled: bool) -> Self {
        self.tracing.stderr_warnings = enabled;
        self
    }
}

impl AzureMonitor {
    /// The `tracing` layer that sends `tracing` spans (through `tracing-opentelemetry`) and
    /// events (through `opentelemetry-appender-tracing`) to Azure Monitor, with the filter of
    /// [`AzureMonitorBuilder::with_tracing_filter`], for a subscriber of your own (after
    /// [`with_tracing_subscriber(false)`](AzureMonitorBuilder::with_tracing_subscriber)):
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tracing_subscriber::prelude::*;
    ///
    /// let azure_monitor = opentelemetry_azure_monitor::AzureMonitor::builder()
    ///     .with_tracing_subscriber(false)
    ///     .install()?;
    /// tracing_subscriber::registry()
    ///     .with(azure_monitor.tracing_layer())
    ///     .with(tracing_subscriber::fmt::layer())
    ///     .init();
    /// # Ok(()) }
    /// ```
    ///
    /// Each `tracing` event becomes one log record, correlated with its span; it is not also
    /// copied into the span as a span event. An ERROR event marks its span failed, as
    /// `tracing-opentelemetry` does. `tracing` spans take their kind, name and status from the
    /// fields `otel.kind`, `otel.name` and `otel.status_code`.
    pub fn tracing_layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        let tracer = self.tracer.tracer("tracing-opentelemetry");
        let spans = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            // Thread names and ids, busy and idle times: noise in every item's properties.
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_filter(
                self.tracing
                    .filter()
                    .and(filter_fn(|meta: &Metadata<'_>| meta.is_span())),
            );
        let errors = ErrorStatus::default().with_filter(self.tracing.filter());
        let events =
            OpenTelemetryTracingBridge::new(&self.logger).with_filter(self.tracing.filter());
        spans.and_then(errors).and_then(events)
    }
}

/// Installs the global subscriber.
pub(super) fn install(monitor: &AzureMonitor, stderr_warnings: bool) -> Result<(), SetupError> {
    let warnings = stderr_warnings.then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(LevelFilter::WARN)
    });
    let subscriber = tracing_subscriber::registry()
        .with(monitor.tracing_layer())
        .with(warnings);
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|_| SetupError::SubscriberAlreadySet)
}

/// Marks the span of an ERROR event failed (`Status::Error`, described by the event's `error`
/// field, else its message), which `tracing-opentelemetry` would have done had it seen the
/// event.
#[derive(Default)]
struct ErrorStatus {
    dispatch: OnceLock<WeakDispatch>,
}

impl<S> Layer<S> for ErrorStatus
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if *event.metadata().level() != Level::ERROR {
            return;
        }
        let Some(id) = ctx.event_span(event).map(|span| span.id()) else {
            return;
        };
        let Some(dispatch) = self.dispatch.get().and_then(WeakDispatch::upgrade) else {
            return;
        };
        let mut description = Description::default();
        event.record(&mut description);
        if let Some(cx) = tracing_opentelemetry::get_otel_context(&id, &dispatch) {
            cx.span().set_status(Status::error(
                description
                    .error
                    .or(description.message)
                    .unwrap_or_default(),
            ));
        }
    }
}

/// The `error` and `message` fields of an event.
#[derive(Default)]
struct Description {
    error: Option<String>,
    message: Option<String>,
}

impl Visit for Description {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "error" => self.error = Some(format!("{value:?}")),
            "message" => self.message = Some(format!("{value:?}")),
            _ => {}
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "error" => self.error = Some(value.to_owned()),
            "message" => self.message = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if field.name() == "error" {
            self.error = Some(value.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn own_telemetry_is_the_transport_and_opentelemetry() {
        for own in [
            "hyper",
            "hyper::proto::h1::conn",
            "hyper_util::client::legacy::pool",
            "reqwest::connect",
            "h2::codec",
            "rustls::client::hs",
            "tower::buffer::worker",
            "opentelemetry",
            "opentelemetry_sdk",
            "opentelemetry-azure-monitor",
            "opentelemetry_azure_monitor::transmit",
        ] {
            assert!(is_own_telemetry(own), "{own}");
        }
        for app in [
            "tower_http::trace::on_response",
            "otel::tracing",
            "axum::serve",
            "sqlx::query",
            "hyperion",
            "my_service::orders",
            "tracing_opentelemetry",
        ] {
            assert!(!is_own_telemetry(app), "{app}");
        }
    }

    #[test]
    fn the_filter_is_code_then_rust_log_then_info() {
        let code = TracingOptions {
            filter: Some("warn,shop=debug".into()),
            ..TracingOptions::default()
        };
        let env = |name: &str| (name == "RUST_LOG").then(|| "debug".to_owned());
        assert_eq!(
            code.filter_with(&env).unwrap().directives,
            "warn,shop=debug,otel::tracing=trace"
        );
        let none = TracingOptions::default();
        assert_eq!(
            none.filter_with(&env).unwrap().directives,
            "debug,otel::tracing=trace"
        );
        assert_eq!(
            none.filter_with(&|_| None).unwrap().directives,
            "info,otel::tracing=trace"
        );
        assert_eq!(
            none.filter_with(&|_| Some(" ".into())).unwrap().directives,
            "info,otel::tracing=trace"
        );
        let own = TracingOptions {
            filter: Some("info,otel::tracing=off".into()),
            ..TracingOptions::default()
        };
        assert_eq!(
            own.filter_with(&|_| None).unwrap().directives,
            "info,otel::tracing=off"
        );
    }

    #[test]
    fn a_bad_filter_in_code_is_an_error_that_names_it() {
        let bad = TracingOptions {
            filter: Some("info,shop=loud".into()),
            ..TracingOptions::default()
        };
        let e = bad.filter_with(&|_| None).unwrap_err();
        assert!(
            matches!(e, SetupError::InvalidTracingFilter { .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("shop=loud"), "{e}");
    }
}
