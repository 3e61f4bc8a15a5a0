//! A local Application Insights: the [`IngestionServer`] with web pages that show what it
//! received the way the Azure portal would, for any program on the developer's machine.
//!
//! [`ViewerBuilder::start`] starts an ingestion server (the same one tests use: every item is
//! checked against the Track-API contract) that also serves, on the same port:
//!
//! | Page | Shows |
//! |---|---|
//! | `/` | overview: roles, request rate, failures, slowest operations |
//! | `/map` | application map: roles and dependency targets, calls with count, average duration and failures; a click lists those calls |
//! | `/search` | transaction search over requests, dependencies, traces, exceptions and events, by type, role, time, text and success |
//! | `/transactions/{operation id}` | one end-to-end transaction: the tree across roles with a timeline, each item's fields and properties, logs in place |
//! | `/failures` | failed operations, exceptions by type and operation, failed dependencies |
//! | `/metrics` | custom metrics charted over time |
//! | `/rejected` | items the ingestion contract refused, with the reason |
//! | `/live` | Live Metrics: per role and instance, the last minute of one-second samples, and the latest failing documents |
//!
//! The pages are plain HTML, CSS and JavaScript embedded in the binary (no CDN, no build step);
//! they poll `/api/stats` every two seconds and refresh when something arrived. The JSON API they
//! use is documented on the routes (`/api/...`, see the table in `api.rs` and the README).
//!
//! Memory is bounded: at most [`with_capacity`](ViewerBuilder::with_capacity) items are kept,
//! the oldest evicted first (the pages show how many were evicted). The server binds
//! `127.0.0.1` unless told otherwise; bound to loopback it answers only requests whose `Host`
//! is a loopback name, so that web pages elsewhere cannot read it through DNS rebinding.
//!
//! ```no_run
//! use opentelemetry_azure_monitor::testing::viewer::ViewerBuilder;
//!
//! # fn main() -> std::io::Result<()> {
//! let server = ViewerBuilder::new().with_port(4390).start()?;
//! println!("Viewer: {}", server.viewer_url().unwrap_or_default());
//! println!("APPLICATIONINSIGHTS_CONNECTION_STRING={}", server.connection_string());
//! # Ok(()) }
//! ```
//!
//! The server is also the programs' Live Metrics service (their connection string names it as
//! `LiveEndpoint`): `/live` ("Live metrics") shows, per role and instance, the one-second samples
//! they post (request and dependency rates, durations and failures, exceptions, CPU, memory) as
//! sparklines, and their latest failed requests, failed dependencies, exceptions and traces. The
//! programs are told to post only while a Live page has been read within the last ten seconds;
//! otherwise they only ping, as with the real service when no portal session is open. Samples
//! are kept in a bounded ring per role and instance (five minutes; `live.rs`).

mod api;
mod live;
mod store;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::{IngestionServer, RefusedItem, RequestRecord};

/// The port `demo --serve` and the `azure-monitor-viewer` binary listen on unless told
/// otherwise.
pub const DEFAULT_PORT: u16 = 4390;

/// Items kept by default.
const DEFAULT_CAPACITY: usize = 10_000;
/// Rejections kept (separately from the items).
const REJECTED_CAPACITY: usize = 1_000;

/// Starts an [`IngestionServer`] that also serves the viewer. See the [module docs](self).
#[derive(Clone, Debug)]
#[must_use]
pub struct ViewerBuilder {
    address: IpAddr,
    port: u16,
    capacity: usize,
}

impl Default for ViewerBuilder {
    fn default() -> Self {
        ViewerBuilder {
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            capacity: DEFAULT_CAPACITY,
        }
    }
}

impl ViewerBuilder {
    /// A builder with the defaults: `127.0.0.1`, a free port, 10,000 items.
    pub fn new() -> Self {
        Self::default()
    }

    /// The address to listen on. Defaults to `127.0.0.1` (loopback: only this machine). Any
    /// other address exposes the telemetry, without authentication, to whoever can reach it;
    /// [`exposure_warning`] says so.
    pub fn with_address(mut self, address: IpAddr) -> Self {
        self.address = address;
        self
    }

    /// The port to listen on. Defaults to 0: a free port chosen by the system.
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// How many accepted items are kept; beyond it the oldest are evicted (and counted). Each
    /// item is kept as received, at most 64 KiB. Defaults to 10,000 (at least 1).
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// Starts the server on its own thread; it serves the Track API and the viewer on one port
    /// until dropped. The server's own lists ([`IngestionServer::envelopes`] and the like) keep
    /// the same number of entries as the viewer, oldest dropped first, and refused items larger
    /// than 64 KiB of JSON are kept cut (a string with their first 4 KiB and their size).
    /// [`IngestionServer::clear`] empties the server's lists, not what the viewer shows.
    ///
    /// # Errors
    ///
    /// When the address cannot be bound (e.g. the port is in use), or the thread or its runtime
    /// cannot be created.
    pub fn start(self) -> std::io::Result<IngestionServer> {
        let addr = SocketAddr::new(self.address, self.port);
        if let Some(warning) = exposure_warning(addr) {
            opentelemetry::otel_warn!(name: "AzureMonitor.Viewer.NotLoopback", message = warning.as_str());
        }
        let hub = Arc::new(Hub {
            store: Mutex::new(store::Store::new(self.capacity, REJECTED_CAPACITY)),
            live: Mutex::default(),
            live_changed: Condvar::new(),
            loopback: self.address.is_loopback(),
        });
        IngestionServer::start_with(addr, Some(hub), Some(self.capacity))
    }
}

/// The warning to show when the viewer listens on `addr`: `None` for a loopback address, else
/// a sentence saying the telemetry is reachable from other machines without authentication.
pub fn exposure_warning(addr: SocketAddr) -> Option<String> {
    (!addr.ip().is_loopback()).then(|| {
        format!(
            "the viewer listens on {addr}, not on loopback: any machine that can reach it can read \
             the telemetry and send to it, without authentication"
        )
    })
}

/// Waits for Ctrl-C (SIGINT) or, on Unix, SIGTERM: what `demo --serve` and the
/// `azure-monitor-viewer` binary wait for before they exit. Needs a Tokio runtime with I/O
/// enabled.
///
/// # Errors
///
/// When the signal handlers cannot be installed.
#[cfg(feature = "viewer")]
#[cfg_attr(docsrs, doc(cfg(feature = "viewer")))]
pub async fn shutdown_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

/// Largest refused item kept whole (compact JSON bytes): accepted items are at most this size,
/// refused ones can be as large as a request.
const MAX_KEPT_ITEM_BYTES: usize = 64 * 1024;
/// How much of a larger refused item is kept.
const CUT_ITEM_PREVIEW_BYTES: usize = 4 * 1024;

/// A refused item as kept by a viewer: as received when it is at most 64 KiB of JSON, else a
/// string with its first 4 KiB and its size.
pub(crate) fn bounded(item: Value) -> Value {
    let text = item.to_string();
    if text.len() <= MAX_KEPT_ITEM_BYTES {
        return item;
    }
    let mut cut = CUT_ITEM_PREVIEW_BYTES;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    Value::String(format!(
        "{}… ({} bytes in all: cut by the viewer)",
        &text[..cut],
        text.len()
    ))
}

/// The viewer's side of a server: its store, fed by the request handler.
#[derive(Debug)]
pub(crate) struct Hub {
    store: Mutex<store::Store>,
    /// What the programs posted to the Live Metrics paths.
    live: Mutex<live::Live>,
    /// Notified after every Live Metrics ping or post.
    live_changed: Condvar,
    loopback: bool,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Hub {
    /// Records what one track request brought (called by the server for every request).
    pub(crate) fn record(
        &self,
        request: &RequestRecord,
        accepted: &[Value],
        refused: &[RefusedItem],
    ) {
        let whole = request
            .error
            .as_ref()
            .filter(|_| refused.is_empty() && accepted.is_empty())
            .map(|reason| {
                let status = request.status.unwrap_or(0);
                (
                    None,
                    status,
                    reason.clone(),
                    Value::Null,
                    request.fault.is_some(),
                )
            });
        let refused = refused
            .iter()
            .map(|(index, status, message, item, scripted)| {
                (
                    Some(*index),
                    *status,
                    message.clone(),
                    item.clone(),
                    *scripted,
                )
            })
            .chain(whole);
        self.store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(accepted.iter().cloned(), refused, now_ms());
    }

    /// Answers a request for a viewer route.
    pub(crate) fn respond(
        &self,
        method: &str,
        path: &str,
        query: &str,
        host: Option<&str>,
    ) -> api::Reply {
        if self.loopback && !host.is_some_and(api::is_loopback_host) {
            return api::Reply {
                status: 421,
                content_type: "text/plain; charset=utf-8",
                body: "This viewer answers only to http://127.0.0.1 or http://localhost".to_owned(),
            };
        }
        let now = now_ms();
        if method == "GET" && (path == "/live" || path == "/api/live") {
            self.lock_live().watch(now);
        }
        let store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        let live = self.lock_live();
        api::route(&store, &live, method, path, query, now)
    }

    fn lock_live(&self) -> std::sync::MutexGuard<'_, live::Live> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answers a Live Metrics ping (`post == false`) or post: the request's headers and its
    /// decoded body (or why it could not be read). Returns whether the program is subscribed, and the configuration ETag
    /// and body to answer with when it is.
    pub(crate) fn live(
        &self,
        post: bool,
        headers: &[(String, String)],
        body: Result<&[u8], String>,
    ) -> (bool, Option<(&'static str, String)>) {
        let operation = if post {
            live::Operation::Post
        } else {
            live::Operation::Ping
        };
        let answer = self.lock_live().receive(operation, headers, body, now_ms());
        self.live_changed.notify_all();
        (answer.subscribed, answer.configuration)
    }
}

impl IngestionServer {
    /// Waits until `done` holds for what `GET /api/live` would answer (without counting as a
    /// watching page), at most `timeout`; re-checked after every Live Metrics ping or post.
    /// Returns whether it held, and `false` at once for a server without a viewer. Blocks the
    /// calling thread, like [`wait_for_envelopes`](IngestionServer::wait_for_envelopes).
    pub fn wait_for_live(&self, timeout: Duration, done: impl Fn(&Value) -> bool) -> bool {
        let Some(hub) = self.shared.viewer.as_ref() else {
            return false;
        };
        let deadline = Instant::now().checked_add(timeout);
        let mut live = hub.lock_live();
        loop {
            if done(&live.snapshot(now_ms())) {
                return true;
            }
            let left = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return false;
            }
            live = match hub.live_changed.wait_timeout(live, left) {
                Ok((live, _)) => live,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

pub(crate) use api::Reply;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn refused_items_are_kept_whole_up_to_64_kib_then_cut_on_a_char_boundary() {
        let small = json!({"message": "é".repeat(100)});
        assert_eq!(bounded(small.clone()), small);
        let huge = json!({"message": "é".repeat(40_000)});
        let Value::String(cut) = bounded(huge) else {
            panic!("a huge item is kept as a string");
        };
        assert!(cut.len() < CUT_ITEM_PREVIEW_BYTES + 100, "{}", cut.len());
        assert!(cut.starts_with("{\"message\":\"éé"));
        assert!(
            cut.ends_with("(80014 bytes in all: cut by the viewer)"),
            "{cut}"
        );
    }

    #[test]
    fn only_loopback_addresses_go_without_a_warning() {
        assert_eq!(
            exposure_warning(SocketAddr::from(([127, 0, 0, 1], 1))),
            None
        );
        assert_eq!(exposure_warning("[::1]:1".parse().unwrap()), None);
        let warning = exposure_warning(SocketAddr::from(([0, 0, 0, 0], 4390)));
        assert!(warning
            .is_some_and(|w| w.contains("0.0.0.0:4390") && w.contains("without authentication")));
    }
}
