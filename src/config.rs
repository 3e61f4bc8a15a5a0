//! Options shared by the three exporter builders, and their resolution in `build()`.
//!
//! The builders only collect what the user set ([`Options`]); `build()` resolves it against the
//! environment and the defaults ([`Options::resolve`]): code beats environment beats default.

use std::time::Duration;

use crate::connection_string::ConnectionString;
use crate::error::BuildError;
use crate::transmit::{RetryPolicy, TransmitConfig, Transmitter};

/// Default deadline of one export: below the SDK's 30 s export timeout, so that the exporter
/// always answers before the SDK gives up on it.
pub(crate) const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the user set on a builder; `None` means "not set, use the environment or the default".
#[derive(Clone, Debug, Default)]
pub(crate) struct Options {
    pub(crate) connection_string: Option<String>,
    pub(crate) export_timeout: Option<Duration>,
    pub(crate) retry: Option<RetryPolicy>,
    pub(crate) client: Option<reqwest::Client>,
    pub(crate) sample_rate: Option<f64>,
}

/// Options after resolution: what an exporter runs with.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub(crate) connection_string: ConnectionString,
    /// Percentage (0, 100] written as `sampleRate` on items that carry no rate of their own.
    pub(crate) sample_rate: Option<f64>,
    pub(crate) transmitter: Transmitter,
}

impl Options {
    /// Resolves the options against the process environment.
    pub(crate) fn resolve(self) -> Result<Resolved, BuildError> {
        self.resolve_with(&|name| std::env::var(name).ok())
    }

    /// Resolves the options against an environment given as a lookup function.
    pub(crate) fn resolve_with(
        self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Resolved, BuildError> {
        let connection_string = ConnectionString::resolve(self.connection_string.as_deref(), env)?;
        let sample_rate = match self.sample_rate {
            None => None,
            Some(r) if r > 0.0 && r <= 100.0 => (r != 100.0).then_some(r),
            Some(r) => return Err(BuildError::InvalidSampleRate(r)),
        };
        let timeout = self.export_timeout.unwrap_or(DEFAULT_EXPORT_TIMEOUT);
        if timeout.is_zero() {
            return Err(BuildError::InvalidExportTimeout);
        }
        let transmitter = Transmitter::new(TransmitConfig {
            track_url: connection_string.track_url(),
            timeout,
            retry: self.retry.unwrap_or_default(),
            client: self.client,
        })?;
        Ok(Resolved {
            connection_string,
            sample_rate,
            transmitter,
        })
    }
}

/// The `with_*` methods every exporter builder has, documented once.
macro_rules! builder_options {
    ($builder:ident) => {
        impl $builder {
            /// Sets the connection string (`InstrumentationKey=...;IngestionEndpoint=...`), as
            /// copied from the Application Insights resource in the Azure portal.
            ///
            /// Defaults to the `APPLICATIONINSIGHTS_CONNECTION_STRING` environment variable. A
            /// connection string set here wins; fields it lacks are taken from the environment.
            /// It is parsed in `build()`, which reports what is wrong with it.
            pub fn with_connection_string(mut self, connection_string: impl Into<String>) -> Self {
                self.options.connection_string = Some(connection_string.into());
                self
            }

            /// Sets the deadline of one export: delivery, retries and backoff included. What is
            /// not delivered by then fails the export.
            ///
            /// Defaults to 10 seconds, below the SDK's own 30-second export timeout. Keep it
            /// below the timeout of the processor or reader that calls the exporter.
            pub fn with_export_timeout(mut self, timeout: std::time::Duration) -> Self {
                self.options.export_timeout = Some(timeout);
                self
            }

            /// Sets how failed requests are retried within the export deadline.
            ///
            /// Defaults to [`RetryPolicy::default()`](crate::RetryPolicy).
            pub fn with_retry_policy(mut self, policy: crate::RetryPolicy) -> Self {
                self.options.retry = Some(policy);
                self
            }

            /// Uses this HTTP client instead of the exporter's own, for a proxy, custom TLS roots
            /// or timeouts. Build it with `redirect(reqwest::redirect::Policy::none())`: the
            /// exporter follows the service's redirects itself, only to trusted hosts.
            ///
            /// Defaults to a client with rustls and the platform's certificate roots, which
            /// honours the `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` environment variables.
            pub fn with_http_client(mut self, client: reqwest::Client) -> Self {
                self.options.client = Some(client);
                self
            }

            /// Declares that telemetry was sampled at this percentage (0, 100], so that the portal
            /// counts each item as `100 / percentage` items. Sent as `sampleRate` on every item
            /// that does not carry a rate of its own (`microsoft.sample_rate` or
            /// `_MS.sampleRate` attribute).
            ///
            /// Defaults to 100 (not sampled). Values outside (0, 100] make `build()` fail.
            pub fn with_sample_rate(mut self, percentage: f64) -> Self {
                self.options.sample_rate = Some(percentage);
                self
            }
        }
    };
}

pub(crate) use builder_options;
