//! The custom handler's logic, shared by `examples/azure_functions.rs` and
//! `tests/azure_functions.rs`: one HTTP-triggered function, `instrumentation`, traced, logged and
//! exported to Azure Monitor.
//!
//! Per invocation (AZURE-HOSTS.md §3): a request span that continues the caller's W3C
//! `traceparent` (from the forwarded headers, or from `Data.req.Headers` in payload mode), an
//! in-process dependency, an HTTP dependency to `EXTERNAL_DEPENDENCY_URL` (with the trace
//! context injected), an information log line and an error logged as an exception, all in the
//! invocation's operation; then both providers are flushed before the handler answers, since
//! the host may freeze or recycle the process once the invocation is over.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::{
    FutureExt as _, Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_azure_monitor::resource::AzureResourceDetector;
use opentelemetry_azure_monitor::{LogExporter, SpanExporter};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use serde_json::{json, Value};

/// Errors of setting the handler up.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The function's name (the folder of its `function.json`).
pub(crate) const FUNCTION_NAME: &str = "instrumentation";
/// The route the Functions host forwards HTTP requests to (`enableForwardingHttpRequest`).
pub(crate) const ROUTE: &str = "/api/instrumentation";

/// What a handler needs to run.
#[derive(Clone, Debug, Default)]
pub(crate) struct Config {
    /// Where to send telemetry; `None` reads `APPLICATIONINSIGHTS_CONNECTION_STRING`.
    pub(crate) connection_string: Option<String>,
    /// The URL of the HTTP dependency (`EXTERNAL_DEPENDENCY_URL`); `None` skips that call.
    pub(crate) external_dependency_url: Option<String>,
    /// Records the invocation as an `INTERNAL` span (a dependency row) instead of a `SERVER`
    /// span (a request row), for apps where the Functions host already records the request
    /// (`INVOCATION_SPAN_KIND=internal`).
    pub(crate) internal_invocation_span: bool,
}

impl Config {
    /// The configuration from the environment, as the Functions host passes app settings.
    pub(crate) fn from_env() -> Self {
        Config {
            connection_string: None,
            external_dependency_url: std::env::var("EXTERNAL_DEPENDENCY_URL")
                .ok()
                .filter(|s| !s.trim().is_empty()),
            internal_invocation_span: std::env::var("INVOCATION_SPAN_KIND")
                .is_ok_and(|v| v.trim().eq_ignore_ascii_case("internal")),
        }
    }
}

/// The handler: its telemetry pipelines and the HTTP client for the dependency.
pub(crate) struct Handler {
    tracer: SdkTracerProvider,
    logger: SdkLoggerProvider,
    client: reqwest::Client,
    external_dependency_url: Option<String>,
    invocation_kind: SpanKind,
}

impl Handler {
    /// Builds the pipelines. The resource comes from the Azure detectors, which under the
    /// Functions host (`FUNCTIONS_WORKER_RUNTIME=Custom`, `FUNCTIONS_CUSTOMHANDLER_PORT`) are the
    /// Functions detector: the role is `WEBSITE_SITE_NAME` and the instance
    /// `WEBSITE_INSTANCE_ID`, unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` say
    /// otherwise. (Run by hand with only `WEBSITE_SITE_NAME` set, the App Service detector
    /// gives the same role and instance.)
    pub(crate) fn new(config: Config) -> Result<Self, BoxError> {
        let resource = Resource::builder()
            .with_detector(Box::new(AzureResourceDetector::new()))
            .build();
        let mut spans = SpanExporter::builder();
        let mut logs = LogExporter::builder();
        if let Some(cs) = &config.connection_string {
            spans = spans.with_connection_string(cs).with_offline_storage(false);
            logs = logs.with_connection_string(cs).with_offline_storage(false);
        }
        let (spans, logs) = (spans.build()?, logs.build()?);
        // Each invocation ends with `force_flush`, and the host may freeze the process right
        // after: the flush processors make it wait for every delivery, also one the batch
        // processor handed off before the flush (with offline storage on).
        let (spans_flush, logs_flush) = (spans.flush_processor(), logs.flush_processor());
        Ok(Handler {
            tracer: SdkTracerProvider::builder()
                .with_resource(resource.clone())
                .with_batch_exporter(spans)
                .with_span_processor(spans_flush)
                .build(),
            logger: SdkLoggerProvider::builder()
                .with_resource(resource)
                .with_batch_exporter(logs)
                .with_log_processor(logs_flush)
                .build(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            external_dependency_url: config.external_dependency_url,
            invocation_kind: if config.internal_invocation_span {
                SpanKind::Internal
            } else {
                SpanKind::Server
            },
        })
    }

    /// Sends the process's `tracing` events at INFO and above to this handler's log pipeline
    /// (`RUST_LOG` overrides the level). The HTTP stack's and the exporters' own events stay
    /// out: they would be telemetry about sending telemetry.
    pub(crate) fn install_tracing(&self) -> Result<(), BoxError> {
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::Layer as _;
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
            .add_directive("hyper=off".parse()?)
            .add_directive("hyper_util=off".parse()?)
            .add_directive("reqwest=off".parse()?)
            .add_directive("h2=off".parse()?)
            .add_directive("opentelemetry=off".parse()?)
            .add_directive("opentelemetry_sdk=off".parse()?)
            .add_directive("opentelemetry_azure_monitor=off".parse()?);
        let layer = OpenTelemetryTracingBridge::new(&self.logger).with_filter(filter);
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))?;
        Ok(())
    }

    /// Serves invocations on `listener` until `shutdown` resolves; connections in progress
    /// finish on their own tasks.
    pub(crate) async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(_) => continue,
                },
                () = &mut shutdown => return,
            };
            let handler = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler.handle(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    /// Delivers what is pending and stops the pipelines (blocking: call it off the async
    /// threads).
    pub(crate) fn shutdown(&self) -> Result<(), BoxError> {
        self.tracer.shutdown()?;
        self.logger.shutdown()?;
        Ok(())
    }

    /// Waits until everything recorded so far is exported (blocking).
    pub(crate) fn flush(&self) -> Result<(), BoxError> {
        self.tracer.force_flush()?;
        self.logger.force_flush()?;
        Ok(())
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        let headers = req.headers().clone();
        let (status, body) = if method == Method::GET && path == ROUTE {
            // HTTP forwarding: the caller's request as it was sent.
            let parent = TraceContextPropagator::new().extract(&HeaderExtractor(&headers));
            let (status, text) = self.invoke(parent, &headers, "GET", ROUTE).await;
            (status, Bytes::from(text))
        } else if method == Method::POST && path.trim_start_matches('/') == FUNCTION_NAME {
            // Payload mode: the caller's request is in the JSON body, under `Data.req`.
            let payload: Value = match req.into_body().collect().await {
                Ok(body) => serde_json::from_slice(&body.to_bytes()).unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
            let forwarded = PayloadHeaders::from_payload(&payload);
            let parent = TraceContextPropagator::new().extract(&forwarded);
            let req_method = payload["Data"]["req"]["Method"]
                .as_str()
                .unwrap_or("GET")
                .to_owned();
            let (status, text) = self.invoke(parent, &headers, &req_method, ROUTE).await;
            let answer = json!({
                "Outputs": { "res": { "statusCode": status.as_u16(), "body": text } },
                "Logs": [format!("{FUNCTION_NAME} invoked")],
                "ReturnValue": null,
            });
            (StatusCode::OK, Bytes::from(answer.to_string()))
        } else {
            (StatusCode::NOT_FOUND, Bytes::from_static(b"not found"))
        };
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = status;
        response
    }

    /// One invocation of the function, in the operation of `parent` (a new one if it holds
    /// no remote span context). Answers once everything is exported.
    async fn invoke(
        &self,
        parent: Context,
        host_headers: &hyper::HeaderMap,
        method: &str,
        route: &str,
    ) -> (StatusCode, String) {
        let tracer = self.tracer.tracer("azure_functions");
        let invocation_id = host_headers
            .get("x-azure-functions-invocationid")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let span = tracer
            .span_builder(FUNCTION_NAME)
            .with_kind(self.invocation_kind.clone())
            .with_attributes([
                KeyValue::new("faas.name", FUNCTION_NAME),
                KeyValue::new("faas.trigger", "http"),
                KeyValue::new("faas.invocation_id", invocation_id.clone()),
                KeyValue::new("http.request.method", method.to_owned()),
                KeyValue::new("http.route", route.to_owned()),
                KeyValue::new("url.scheme", "http"),
                KeyValue::new("url.path", route.to_owned()),
            ])
            .start_with_context(&tracer, &parent);
        let cx = parent.with_span(span);

        // An in-process dependency.
        {
            let _guard = cx.clone().attach();
            let mut work = tracer
                .span_builder("compute greeting")
                .with_kind(SpanKind::Internal)
                .start_with_context(&tracer, &cx);
            let greeting: String = "hello from rust".chars().rev().collect();
            work.set_attribute(KeyValue::new("greeting.length", greeting.len() as i64));
            work.end();
        }

        // An HTTP dependency, with the trace context passed on.
        let mut dependency_status = None;
        if let Some(url) = &self.external_dependency_url {
            let call = tracer
                .span_builder("GET")
                .with_kind(SpanKind::Client)
                .with_attributes([
                    KeyValue::new("http.request.method", "GET"),
                    KeyValue::new("url.full", url.clone()),
                ])
                .start_with_context(&tracer, &cx);
            let call_cx = cx.with_span(call);
            let mut headers = reqwest::header::HeaderMap::new();
            TraceContextPropagator::new()
                .inject_context(&call_cx, &mut HeaderInjector(&mut headers));
            let result = self
                .client
                .get(url)
                .headers(headers)
                .send()
                .with_context(call_cx.clone())
                .await;
            let call = call_cx.span();
            match &result {
                Ok(response) => {
                    let code = response.status().as_u16();
                    call.set_attribute(KeyValue::new("http.response.status_code", i64::from(code)));
                    if code >= 400 {
                        call.set_status(Status::error(format!("answered {code}")));
                    }
                    dependency_status = Some(code);
                }
                Err(e) => {
                    call.set_attribute(KeyValue::new("error.type", "request_failed"));
                    call.set_status(Status::error(e.to_string()));
                }
            }
            call.end();
        }

        // A log line and an error, in the invocation's operation (log records take the trace
        // context from the current context).
        {
            let _guard = cx.clone().attach();
            tracing::info!(
                invocation_id = invocation_id.as_str(),
                dependency_status = dependency_status.map(i64::from).unwrap_or(-1),
                "instrumentation invoked"
            );
            let err = std::io::Error::other("simulated failure in instrumentation");
            // `exception.type` makes the record an exception item, with the body as its
            // message (as in the Python exporter, the body wins over `exception.message`).
            tracing::error!(exception.r#type = "std::io::Error", "{err}");
        }

        let span = cx.span();
        span.set_attribute(KeyValue::new("http.response.status_code", 200));
        span.end();

        // Export before answering: after the answer the host may freeze the process.
        if let Err(e) = self.flush() {
            tracing::warn!(error = %e, "telemetry flush failed");
        }
        (
            StatusCode::OK,
            format!(
                "{{\"function\":\"{FUNCTION_NAME}\",\"traceId\":\"{}\"}}",
                cx.span().span_context().trace_id()
            ),
        )
    }
}

/// Headers from the forwarded HTTP request.
struct HeaderExtractor<'a>(&'a hyper::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The caller's headers in payload mode: `Data.req.Headers`, names in any case, each value an
/// array of strings (the first is used) or a string.
struct PayloadHeaders(HashMap<String, String>);

impl PayloadHeaders {
    fn from_payload(payload: &Value) -> Self {
        let mut map = HashMap::new();
        if let Some(headers) = payload["Data"]["req"]["Headers"].as_object() {
            for (name, value) in headers {
                let value = match value {
                    Value::Array(values) => values.first().and_then(Value::as_str),
                    Value::String(s) => Some(s.as_str()),
                    _ => None,
                };
                if let Some(value) = value {
                    map.insert(name.to_ascii_lowercase(), value.to_owned());
                }
            }
        }
        PayloadHeaders(map)
    }
}

impl Extractor for PayloadHeaders {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(&key.to_ascii_lowercase()).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut reqwest::header::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(key.as_bytes()),
            reqwest::header::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}
