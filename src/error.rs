//! Errors of the crate.
//!
//! [`TransmitError`] is internal: the exporters turn it into an `OTelSdkError` at the trait
//! boundary. Its messages never contain the instrumentation key or a token (the track URL holds
//! neither).

// Not used by the exporters yet.
#![allow(dead_code)]

use std::time::Duration;

/// Why a delivery, a flush or a shutdown of the transmitter did not succeed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransmitError {
    /// The track URL is not an absolute `http` or `https` URL.
    #[error("invalid ingestion URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// The worker thread or its runtime could not be started.
    #[error("could not start the transmit worker: {0}")]
    Worker(#[source] std::io::Error),
    /// Too many exports are already waiting for the worker; this one was not accepted.
    #[error("the transmit queue is full; {items} telemetry items were not sent")]
    QueueFull {
        /// How many items were refused.
        items: usize,
    },
    /// The transmitter was shut down (or is shutting down).
    #[error("the transmitter is already shut down")]
    AlreadyShutdown,
    /// The worker stopped without answering (it was shut down or dropped meanwhile).
    #[error("the transmit worker stopped before the export finished")]
    WorkerStopped,
    /// A flush or shutdown did not finish within its timeout.
    #[error("the transmitter did not finish within {0:?}")]
    Timeout(Duration),
    /// Items that could have been delivered later (retryable failures) were not delivered within
    /// the export deadline or the retry budget.
    #[error("{items} telemetry items were not delivered: {reason}")]
    Undelivered {
        /// How many items.
        items: usize,
        /// The last failure (status and service message, network error, deadline).
        reason: String,
    },
    /// The service refused items for good (for example 400 invalid data, 402 quota), or a
    /// redirect could not be followed. They were dropped.
    #[error(
        "{items} telemetry items were rejected by the ingestion service (HTTP {status}): {message}"
    )]
    Rejected {
        /// How many items were dropped.
        items: usize,
        /// The first rejection's status code.
        status: u16,
        /// The first rejection's message, from the service when it gave one.
        message: String,
    },
}
