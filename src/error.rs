//! Errors of the crate.
//!
//! [`TransmitError`] is internal: the exporters turn it into an `OTelSdkError` at the trait
//! boundary. Its messages never contain the instrumentation key or a token (the track URL holds
//! neither).

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
    /// The gzip compressor could not be set up (zlib could not allocate its state).
    #[error("could not set up gzip compression: {0}")]
    Gzip(#[source] std::io::Error),
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

/// Why an exporter could not be built. Messages say what to fix, and never contain the
/// instrumentation key or a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No usable connection string: it is missing or malformed.
    #[error(transparent)]
    ConnectionString(#[from] crate::ConnectionStringError),
    /// The sample rate is not a percentage in (0, 100].
    #[error("the sample rate must be a percentage greater than 0 and at most 100, got {0}")]
    InvalidSampleRate(f64),
    /// The export timeout is zero.
    #[error("the export timeout must be greater than zero")]
    InvalidExportTimeout,
    /// Entra ID authentication is asked for but cannot be set up: a malformed
    /// `APPLICATIONINSIGHTS_AUTHENTICATION_STRING`, or a managed identity that cannot be used
    /// here.
    #[error("Entra ID authentication: {0}")]
    Authentication(String),
    /// An Entra ID token would be sent over plain http to a host that is not loopback (the
    /// ingestion endpoint named here, from the connection string).
    #[error(
        "an Entra ID token is never sent over plain http, except to localhost, 127.0.0.0/8 or \
         ::1: the ingestion endpoint {0} must use https"
    )]
    InsecureEndpoint(String),
    /// The standard metrics' export interval is zero.
    #[error("the export interval of the standard metrics must be greater than zero")]
    InvalidExportInterval,
    /// The HTTP client or the background delivery thread could not be started.
    #[error("could not start the exporter's delivery: {0}")]
    Transport(String),
}

impl From<TransmitError> for BuildError {
    fn from(e: TransmitError) -> Self {
        BuildError::Transport(e.to_string())
    }
}

impl From<TransmitError> for opentelemetry_sdk::error::OTelSdkError {
    fn from(e: TransmitError) -> Self {
        use opentelemetry_sdk::error::OTelSdkError;
        match e {
            TransmitError::AlreadyShutdown => OTelSdkError::AlreadyShutdown,
            TransmitError::Timeout(d) => OTelSdkError::Timeout(d),
            other => OTelSdkError::InternalFailure(other.to_string()),
        }
    }
}
