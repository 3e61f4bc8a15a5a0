//! `azure-monitor-viewer`: a local Application Insights for any program on this machine.
//!
//! ```sh
//! cargo install opentelemetry-azure-monitor --features viewer
//! azure-monitor-viewer --port 4390
//! ```
//!
//! It starts the crate's local Track-API ingestion server with the viewer's pages on one port,
//! prints the viewer's URL and a connection string for programs to send to, and serves until
//! Ctrl-C or SIGTERM (then exits 0).

use std::net::IpAddr;
use std::process::ExitCode;

use opentelemetry_azure_monitor::testing::viewer::{
    exposure_warning, shutdown_signal, ViewerBuilder, DEFAULT_PORT,
};

const USAGE: &str = "\
Usage: azure-monitor-viewer [--port N] [--address IP] [--capacity N]

A local Application Insights: a Track-API ingestion endpoint and web pages that show what it
received (overview, application map, transaction search, end-to-end transactions, failures,
metrics, rejected items), and a Live Metrics endpoint with its live page. Serves until Ctrl-C
or SIGTERM.

Options:
  --port N        port to listen on (default 4390; 0 picks a free port)
  --address IP    address to listen on (default 127.0.0.1; anything else exposes the telemetry)
  --capacity N    items kept before the oldest are evicted (default 10000)
  -h, --help      this help";

struct Args {
    port: u16,
    address: IpAddr,
    capacity: usize,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut parsed = Args {
        port: DEFAULT_PORT,
        address: IpAddr::from([127, 0, 0, 1]),
        capacity: 10_000,
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--port" => {
                parsed.port = value("--port")?
                    .parse()
                    .map_err(|_| "--port needs a number from 0 to 65535".to_owned())?;
            }
            "--address" => {
                parsed.address = value("--address")?
                    .parse()
                    .map_err(|_| "--address needs an IP address, e.g. 127.0.0.1".to_owned())?;
            }
            "--capacity" => {
                parsed.capacity = value("--capacity")?
                    .parse()
                    .map_err(|_| "--capacity needs a positive number".to_owned())?;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(parsed))
}

#[allow(clippy::print_stderr)] // a command-line tool reports its errors on stderr
fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("azure-monitor-viewer: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let server = match ViewerBuilder::new()
        .with_address(args.address)
        .with_port(args.port)
        .with_capacity(args.capacity)
        .start()
    {
        Ok(server) => server,
        Err(error) => {
            eprintln!(
                "azure-monitor-viewer: cannot listen on {}:{}: {error} (choose another --port)",
                args.address, args.port
            );
            return ExitCode::FAILURE;
        }
    };
    let endpoint = server.endpoint();
    let port = endpoint.rsplit(':').next().unwrap_or("0");
    if let Some(warning) = exposure_warning(std::net::SocketAddr::new(
        args.address,
        port.parse().unwrap_or(0),
    )) {
        eprintln!("WARNING: {warning}");
    }
    println!(
        "Viewer:            {}",
        server.viewer_url().unwrap_or_default()
    );
    println!("Connection string: {}", server.connection_string());
    println!("Send telemetry with APPLICATIONINSIGHTS_CONNECTION_STRING set to it. Ctrl-C stops.");

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("azure-monitor-viewer: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(error) = runtime.block_on(shutdown_signal()) {
        eprintln!("azure-monitor-viewer: cannot wait for Ctrl-C: {error}");
        return ExitCode::FAILURE;
    }
    drop(server);
    ExitCode::SUCCESS
}
