//! The Azure Functions custom handler (`examples/azure_functions.rs`): invoked three times
//! with a `traceparent` as the Functions host forwards it, it must deliver for each invocation
//! a correlated request, an in-process and an HTTP dependency, a log line and an exception,
//! all with the role and instance from `WEBSITE_SITE_NAME` and `WEBSITE_INSTANCE_ID`, and exit
//! 0 on SIGTERM with everything delivered.
//!
//! Two ways: the handler's logic in this process (shared with the example through
//! `examples/azure_functions/handler.rs`), in both forwarding and payload mode; and the example
//! binary itself as a child process, stopped with `kill -TERM`.

#![allow(clippy::unwrap_used, dead_code)]

#[path = "../examples/azure_functions/handler.rs"]
mod handler;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use opentelemetry_azure_monitor::testing::IngestionServer;
use serde_json::Value;

const SITE: &str = "rust-func-test";
const INSTANCE: &str = "instance-42";
const PARENT_SPAN: &str = "b7ad6b7169203331";

fn trace_id(i: usize) -> String {
    format!("0af7651916cd43dd8448eb211c8031{i:02x}")
}

/// A local "external dependency": answers 200 to every request and keeps the `traceparent`
/// headers it received.
struct External {
    url: String,
    traceparents: Arc<Mutex<Vec<String>>>,
}

impl External {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/status", listener.local_addr().unwrap());
        let traceparents = Arc::new(Mutex::new(Vec::new()));
        let seen = traceparents.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                let mut request = Vec::new();
                let mut buf = [0u8; 2048];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                if let Some(line) = text.lines().find(|l| l.starts_with("traceparent:")) {
                    let value = line["traceparent:".len()..].trim().to_owned();
                    seen.lock().unwrap().push(value);
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            }
        });
        External { url, traceparents }
    }
}

fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .fold(v, |cur, p| match p.parse::<usize>() {
            Ok(i) if cur.is_array() => &cur[i],
            _ => &cur[*p],
        })
        .as_str()
        .unwrap_or("")
}

/// Checks what the ingestion server received for the invocations of `trace_ids`.
fn assert_invocations(server: &IngestionServer, external: &External, trace_ids: &[String]) {
    let rejected = server.rejected();
    assert!(rejected.is_empty(), "{rejected:#?}");
    let items = server.envelopes();
    for trace in trace_ids {
        let op: Vec<&Value> = items
            .iter()
            .filter(|i| text(i, &["tags", "ai.operation.id"]) == trace)
            .collect();
        let of = |base: &str| -> Vec<&Value> {
            op.iter()
                .copied()
                .filter(|i| i["data"]["baseType"] == base)
                .collect()
        };
        let requests = of("RequestData");
        assert_eq!(requests.len(), 1, "{trace}: {op:#?}");
        let request = requests[0];
        // The request continues the caller's trace: its parent is the caller's span.
        assert_eq!(
            text(request, &["tags", "ai.operation.parentId"]),
            PARENT_SPAN
        );
        assert_eq!(
            text(request, &["data", "baseData", "name"]),
            "GET /api/instrumentation"
        );
        assert_eq!(text(request, &["data", "baseData", "responseCode"]), "200");
        let request_id = text(request, &["data", "baseData", "id"]);
        let dependencies = of("RemoteDependencyData");
        let types: Vec<&str> = dependencies
            .iter()
            .map(|d| text(d, &["data", "baseData", "type"]))
            .collect();
        assert!(types.contains(&"InProc"), "{trace}: {types:?}");
        let http = dependencies
            .iter()
            .find(|d| text(d, &["data", "baseData", "type"]) == "HTTP")
            .unwrap_or_else(|| panic!("{trace}: no HTTP dependency in {op:#?}"));
        assert_eq!(text(http, &["data", "baseData", "resultCode"]), "200");
        for d in &dependencies {
            assert_eq!(text(d, &["tags", "ai.operation.parentId"]), request_id);
        }
        let messages = of("MessageData");
        assert!(
            messages
                .iter()
                .any(|m| text(m, &["data", "baseData", "message"]) == "instrumentation invoked"),
            "{trace}: {messages:#?}"
        );
        let exceptions = of("ExceptionData");
        assert_eq!(exceptions.len(), 1, "{trace}: {op:#?}");
        let message = text(
            exceptions[0],
            &["data", "baseData", "exceptions", "0", "message"],
        );
        assert!(
            message.contains("simulated failure"),
            "{:#?}",
            exceptions[0]
        );
        for item in &op {
            assert_eq!(text(item, &["tags", "ai.cloud.role"]), SITE, "{item}");
            assert_eq!(
                text(item, &["tags", "ai.cloud.roleInstance"]),
                INSTANCE,
                "{item}"
            );
        }
        // The dependency call carried the invocation's trace context on.
        let traceparents = external.traceparents.lock().unwrap().clone();
        assert!(
            traceparents
                .iter()
                .any(|t| t.starts_with(&format!("00-{trace}-"))),
            "{trace}: {traceparents:?}"
        );
    }
}

fn traceparent(i: usize) -> String {
    format!("00-{}-{PARENT_SPAN}-01", trace_id(i))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocations_in_process_forwarded_and_payload() {
    let server = IngestionServer::start().unwrap();
    let external = External::start();
    // The app settings the Functions host passes on.
    std::env::set_var("FUNCTIONS_WORKER_RUNTIME", "Custom");
    std::env::set_var("WEBSITE_SITE_NAME", SITE);
    std::env::set_var("WEBSITE_INSTANCE_ID", INSTANCE);
    let handler = Arc::new(
        handler::Handler::new(handler::Config {
            connection_string: Some(server.connection_string()),
            external_dependency_url: Some(external.url.clone()),
            internal_invocation_span: false,
        })
        .unwrap(),
    );
    handler.install_tracing().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(handler.clone().serve(listener, async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    // Forwarding mode: the caller's request as it is.
    for i in 1..=3 {
        let answer = client
            .get(format!("{base}{}", handler::ROUTE))
            .header("traceparent", traceparent(i))
            .header("X-Azure-Functions-InvocationId", format!("inv-{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        assert!(answer.text().await.unwrap().contains(&trace_id(i)));
    }
    // Payload mode: the caller's headers in `Data.req.Headers`, names in any case.
    let payload = serde_json::json!({
        "Data": { "req": {
            "Url": "http://localhost:7071/api/instrumentation",
            "Method": "GET",
            "Query": {},
            "Headers": { "Traceparent": [traceparent(4)], "Accept": ["*/*"] },
            "Params": {},
        }},
        "Metadata": { "sys": { "MethodName": "instrumentation" } },
    });
    let answer = client
        .post(format!("{base}/{}", handler::FUNCTION_NAME))
        .header("content-type", "application/json")
        .body(payload.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let body: Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
    assert_eq!(body["Outputs"]["res"]["statusCode"], 200);
    assert!(text(&body, &["Outputs", "res", "body"]).contains(&trace_id(4)));

    stop.send(()).unwrap();
    serving.await.unwrap();
    let pipelines = handler.clone();
    tokio::task::spawn_blocking(move || pipelines.shutdown())
        .await
        .unwrap()
        .unwrap();
    let ids: Vec<String> = (1..=4).map(trace_id).collect();
    assert_invocations(&server, &external, &ids);
}

/// The example binary: `cargo test` builds the examples beside the tests (with the same
/// features); built by cargo for this test only if it is not there (a test run on its own with
/// `--test azure_functions`).
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/azure_functions-<hash> → target/<profile>/examples/azure_functions
    let profile_dir = exe.parent().and_then(|p| p.parent()).unwrap().to_owned();
    let built = profile_dir
        .join("examples")
        .join(format!("azure_functions{}", std::env::consts::EXE_SUFFIX));
    if built.is_file() {
        return built;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    // The same target directory as this test's, however it was chosen (assumes the host
    // target: with `--target <triple>` the binary would be elsewhere).
    let target_dir = profile_dir.parent().unwrap();
    let mut build = Command::new(cargo);
    build
        .args(["build", "--example", "azure_functions", "--target-dir"])
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let status = build.status().unwrap();
    assert!(status.success(), "cargo build --example azure_functions");
    let binary = profile_dir
        .join("examples")
        .join(format!("azure_functions{}", std::env::consts::EXE_SUFFIX));
    assert!(binary.is_file(), "{}", binary.display());
    binary
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_binary_delivers_everything_and_exits_0_on_sigterm() {
    let binary = tokio::task::spawn_blocking(example_binary).await.unwrap();
    let server = IngestionServer::start().unwrap();
    let external = External::start();
    let port = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut child = Command::new(binary)
        .env_remove("OTEL_SERVICE_NAME")
        .env_remove("OTEL_RESOURCE_ATTRIBUTES")
        .env_remove("APPLICATIONINSIGHTS_CLOUD_ROLE_NAME")
        .env_remove("APPLICATIONINSIGHTS_CLOUD_ROLE_INSTANCE")
        .env_remove("INVOCATION_SPAN_KIND")
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        // Only the port marks the Functions host here: `FUNCTIONS_WORKER_RUNTIME` is left out.
        .env_remove("FUNCTIONS_WORKER_RUNTIME")
        .env("WEBSITE_SITE_NAME", SITE)
        .env("WEBSITE_INSTANCE_ID", INSTANCE)
        .env(
            "APPLICATIONINSIGHTS_CONNECTION_STRING",
            server.connection_string(),
        )
        .env("EXTERNAL_DEPENDENCY_URL", &external.url)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it listens (its first line), without sleeping.
    let stdout = child.stdout.take().unwrap();
    let (first_line, rest) = tokio::task::spawn_blocking(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        (line, reader)
    })
    .await
    .unwrap();
    assert!(first_line.contains("listening on"), "{first_line:?}");

    let client = reqwest::Client::new();
    for i in 1..=3 {
        let answer = client
            .get(format!("http://127.0.0.1:{port}/api/instrumentation"))
            .header("traceparent", traceparent(i))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
    let mut output = String::new();
    let mut rest = rest;
    rest.read_to_string(&mut output).unwrap();
    assert!(output.contains("shut down"), "{output}");
    // Everything was delivered before the process exited.
    let ids: Vec<String> = (1..=3).map(trace_id).collect();
    assert_invocations(&server, &external, &ids);
    // The resource, as the span exporter's `_OTELRESOURCE_` metric reports it.
    let items = server.envelopes();
    let resource = items
        .iter()
        .find(|i| text(i, &["data", "baseData", "metrics", "0", "name"]) == "_OTELRESOURCE_")
        .unwrap_or_else(|| panic!("no _OTELRESOURCE_ metric in {items:#?}"));
    let properties = &resource["data"]["baseData"]["properties"];
    assert_eq!(
        properties["cloud.platform"], "azure.functions",
        "{properties}"
    );
    assert_eq!(properties["service.name"], SITE);
    assert_eq!(properties["faas.instance"], INSTANCE);
}
