//! Delivery to the ingestion endpoint: from "a batch of envelopes" to "the ingestion service
//! said yes". Knows nothing about OpenTelemetry.
//!
//! - [`encode`]: serialize each envelope once; build gzip JSON-array bodies within the
//!   service's limits from any subset of the items.
//! - [`gzip`]: the gzip stream behind the bodies (zlib's C API, for its tuning; the crate's
//!   only `unsafe` code).
//! - [`outcome`]: what an answer of the service means (a pure table).
//! - [`retry`]: the public [`RetryPolicy`] and its backoff schedule.
//! - [`queue`]: the [`Transmitter`](queue::Transmitter) handle: the bounded queue of jobs to the
//!   worker, flush and shutdown.
//! - [`worker`]: one worker thread with its own runtime that runs the jobs.
//! - [`handoff`]: one export's job: a full batch is handed off when its delivery takes too
//!   long; any other export waits until it and the exports before it are delivered or stored.
//! - [`gate`]: the circuit (is the endpoint failing?), the service's `Retry-After`, and the
//!   writes to offline storage.
//! - [`attempt`]: one delivery: posts, retries, redirects ([`attempt::Shared::request`] builds
//!   the HTTP request).
//! - [`replay`]: stored data sent again while the exporter runs.
//! - [`drain`]: what a shutdown does: deliver everything left within its deadline.
//! - [`report`]: the counters behind the public [`DeliveryReport`].
//! - [`storage`]: offline storage of what could not be delivered, sent again later.
//!
//! With offline [`Storage`](storage::Storage), nothing retryable is lost:
//!
//! - what a delivery could not get through by its deadline for a reason that may pass (network
//!   error, timeout, retryable status, retryable items of a 206), or before a shutdown, is
//!   stored, and the export succeeds;
//! - after such a failure the endpoint counts as failing (the "circuit" is open): new exports
//!   (and exports that did not fit in the queue) are stored at once on the caller's thread, and
//!   the worker's replay task probes the endpoint with one stored file at a time, backing off
//!   between probes;
//! - once the service answers, the circuit closes and the replay task sends what is stored,
//!   oldest first, one file after the other; it also does so after every successful delivery
//!   and when the worker starts (data of an earlier process);
//! - a `Retry-After` of the service holds back every request, replays included, until it
//!   passes.

pub(crate) mod attempt;
pub(crate) mod drain;
pub(crate) mod encode;
pub(crate) mod gate;
pub(crate) mod gzip;
pub(crate) mod handoff;
pub(crate) mod outcome;
pub(crate) mod queue;
pub(crate) mod replay;
pub(crate) mod report;
pub(crate) mod retry;
pub(crate) mod storage;
pub(crate) mod worker;

pub use report::DeliveryReport;
pub use retry::RetryPolicy;

pub(crate) use encode::{encode, encode_counted, EncodedItems};
pub(crate) use handoff::Batch;
pub(crate) use queue::{FlushHandle, TransmitConfig, Transmitter};

#[cfg(test)]
mod tests;
