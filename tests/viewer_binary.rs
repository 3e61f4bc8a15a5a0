//! The `azure-monitor-viewer` binary: it prints its URL and connection string, serves the
//! viewer and the track endpoint, and exits 0 on SIGTERM.

#![cfg(unix)]
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use support::get_json;

#[test]
fn serves_until_sigterm_then_exits_cleanly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_azure-monitor-viewer"))
        .args(["--port", "0", "--capacity", "50"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let viewer = lines.next().unwrap().unwrap();
    let connection = lines.next().unwrap().unwrap();
    let url = viewer.trim_start_matches("Viewer:").trim();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with('/'),
        "{viewer}"
    );
    let endpoint = url.trim_end_matches('/');
    assert!(
        connection.ends_with(&format!(
            "InstrumentationKey=11111111-2222-4333-8444-555555555555;IngestionEndpoint={endpoint};LiveEndpoint={endpoint}"
        )),
        "{connection}"
    );
    let stats = get_json(endpoint, "/api/stats");
    assert_eq!(
        (stats["capacity"].as_u64(), stats["stored"].as_u64()),
        (Some(50), Some(0))
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn bad_arguments_are_refused_with_the_usage() {
    let output = Command::new(env!("CARGO_BIN_EXE_azure-monitor-viewer"))
        .args(["--port", "many"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--port needs a number"), "{stderr}");
    assert!(stderr.contains("Usage: azure-monitor-viewer"), "{stderr}");
}
