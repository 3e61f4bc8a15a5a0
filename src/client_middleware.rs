//! Feature `reqwest-middleware`: HTTP client spans and W3C trace context for
//! `reqwest-middleware` clients, in place of `reqwest-tracing` (whose 0.7 release stops at
//! opentelemetry 0.32, so with 0.33 its spans live in another OpenTelemetry and it propagates
//! no context to the services called).

use opentelemetry::propagation::Injector;
use opentelemetry::trace::{FutureExt as _, SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{global, Context, InstrumentationScope, KeyValue};
use reqwest_middleware::reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest_middleware::reqwest::{Method, Request, Response, Url};
use reqwest_middleware::{Middleware, Next};

/// A `reqwest-middleware` middleware that makes each request a `CLIENT` span of the global
/// tracer provider (an HTTP dependency in Azure Monitor) and sends the W3C `traceparent` with
/// it, so that the service called continues the same operation.
///
/// ```no_run
/// use opentelemetry_azure_monitor::ReqwestTracingMiddleware;
///
/// let client = reqwest_middleware::ClientBuilder::new(reqwest_middleware::reqwest::Client::new())
///     .with(ReqwestTracingMiddleware::default())
///     .build();
/// ```
///
/// The span's parent is the current OpenTelemetry context: the current `tracing` span when
/// `tracing-opentelemetry` is installed (as [`AzureMonitor`](crate::AzureMonitor) does with the
/// feature `tracing`), or a span attached with the OpenTelemetry API. It is named by the method
/// (`GET`) and carries the stable HTTP semantic conventions: `http.request.method`,
/// `url.full` (credentials replaced by `REDACTED`), `server.address`, `server.port`,
/// `http.response.status_code`, and `error.type` with an error status for a status of 400 or
/// more or a failed request. The context is injected with the global propagator, which
/// [`AzureMonitor`](crate::AzureMonitor) sets to W3C Trace Context.
#[derive(Debug, Clone, Default)]
pub struct ReqwestTracingMiddleware {
    _private: (),
}

#[async_trait::async_trait]
impl Middleware for ReqwestTracingMiddleware {
    async fn handle(
        &self,
        mut req: Request,
        extensions: &mut http::Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let tracer = global::tracer_with_scope(
            InstrumentationScope::builder(env!("CARGO_PKG_NAME"))
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        );
        let (method, original) = method(req.method());
        let mut attributes = vec![
            KeyValue::new("http.request.method", method),
            KeyValue::new("url.full", redacted(req.url())),
        ];
        if let Some(original) = original {
            attributes.push(KeyValue::new("http.request.method_original", original));
        }
        if let Some(host) = req.url().host_str() {
            attributes.push(KeyValue::new("server.address", host.to_owned()));
        }
        if let Some(port) = req.url().port_or_known_default() {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
        let parent = Context::current();
        let span = tracer
            .span_builder(method)
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(&tracer, &parent);
        let cx = parent.with_span(span);
        global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&cx, &mut HeaderInjector(req.headers_mut()));
        });

        let result = next.run(req, extensions).with_context(cx.clone()).await;
        let span = cx.span();
        match &result {
            Ok(response) => {
                let code = response.status().as_u16();
                span.set_attribute(KeyValue::new("http.response.status_code", i64::from(code)));
                if code >= 400 {
                    span.set_attribute(KeyValue::new("error.type", code.to_string()));
                    span.set_status(Status::error(""));
                }
            }
            Err(e) => {
                span.set_attribute(KeyValue::new("error.type", error_type(e)));
                span.set_status(Status::error(e.to_string()));
            }
        }
        span.end();
        result
    }
}

/// The method as the semantic conventions name it: one of the known methods, else `_OTHER`
/// with the original beside it.
fn method(method: &Method) -> (&'static str, Option<String>) {
    const KNOWN: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    match KNOWN.iter().find(|known| **known == method.as_str()) {
        Some(known) => (known, None),
        None => ("_OTHER", Some(method.as_str().to_owned())),
    }
}

/// The URL without credentials (`https://REDACTED:REDACTED@host/...`), as the semantic
/// conventions require.
fn redacted(url: &Url) -> String {
    if url.username().is_empty() && url.password().is_none() {
        return url.as_str().to_owned();
    }
    let mut url = url.clone();
    // Only fails for URLs that cannot have credentials, which then have none.
    let _ = url.set_username("REDACTED");
    let _ = url.set_password(Some("REDACTED"));
    url.into()
}

/// A low-cardinality name for a request that got no response.
fn error_type(e: &reqwest_middleware::Error) -> &'static str {
    match e {
        reqwest_middleware::Error::Reqwest(e) if e.is_timeout() => "timeout",
        reqwest_middleware::Error::Reqwest(e) if e.is_connect() => "connect",
        reqwest_middleware::Error::Reqwest(_) => "reqwest::Error",
        reqwest_middleware::Error::Middleware(_) => "middleware",
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn methods_are_named_as_the_conventions_say() {
        assert_eq!(method(&Method::GET), ("GET", None));
        assert_eq!(method(&Method::PATCH), ("PATCH", None));
        let purge = Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(method(&purge), ("_OTHER", Some("PURGE".to_owned())));
    }

    #[test]
    fn credentials_never_reach_the_url() {
        let url = Url::parse("https://user:secret@shop.example.com:8443/a?b=c").unwrap();
        assert_eq!(
            redacted(&url),
            "https://REDACTED:REDACTED@shop.example.com:8443/a?b=c"
        );
        let plain = Url::parse("http://127.0.0.1:8080/orders/7").unwrap();
        assert_eq!(redacted(&plain), "http://127.0.0.1:8080/orders/7");
    }
}
