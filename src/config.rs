//! Options shared by the three exporter builders, and their resolution in `build()`.
//!
//! The builders only collect what the user set ([`Options`]); `build()` resolves it against the
//! environment and the defaults ([`Options::resolve`]): code beats environment beats default.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::connection_string::ConnectionString;
use crate::error::BuildError;
use crate::transmit::storage::{self, Storage, StorageConfig};
use crate::transmit::{EncodedItems, RetryPolicy, TransmitConfig, Transmitter};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};

/// Default deadline of one export. Below the 5 s the SDK's `shutdown()` waits for the last
/// export of its batch processors and periodic reader (and far below its 30 s export timeout):
/// the final export of a process whose endpoint hangs is then still stored before the SDK gives
/// up on it and the process exits. What misses the deadline is stored and sent later, so a
/// short deadline loses nothing.
pub(crate) const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(4);

/// What the user set on a builder; `None` means "not set, use the environment or the default".
#[derive(Clone, Default)]
pub(crate) struct Options {
    pub(crate) connection_string: Option<String>,
    pub(crate) export_timeout: Option<Duration>,
    pub(crate) retry: Option<RetryPolicy>,
    pub(crate) client: Option<reqwest::Client>,
    pub(crate) sample_rate: Option<f64>,
    pub(crate) offline_storage: Option<bool>,
    pub(crate) storage_directory: Option<PathBuf>,
    pub(crate) storage_max_size: Option<u64>,
    pub(crate) storage_retention: Option<Duration>,
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The connection string holds the instrumentation key, a secret; a directory set by the
        // user may too.
        let set = |v: bool| if v { "<set>" } else { "<unset>" };
        f.debug_struct("Options")
            .field("connection_string", &set(self.connection_string.is_some()))
            .field("export_timeout", &self.export_timeout)
            .field("retry", &self.retry)
            .field("client", &self.client)
            .field("sample_rate", &self.sample_rate)
            .field("offline_storage", &self.offline_storage)
            .field("storage_directory", &set(self.storage_directory.is_some()))
            .field("storage_max_size", &self.storage_max_size)
            .field("storage_retention", &self.storage_retention)
            .finish()
    }
}

/// Options after resolution: what every exporter runs with, and the export, flush and
/// shutdown steps the three of them share. The exporters only add their own conversion.
pub(crate) struct Core {
    /// The instrumentation key (a secret: not in `Debug`).
    pub(crate) ikey: String,
    /// Percentage (0, 100] written as `sampleRate` on items that carry no rate of their own.
    pub(crate) sample_rate: Option<f64>,
    pub(crate) transmitter: Transmitter,
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("sample_rate", &self.sample_rate)
            .field("transmitter", &self.transmitter)
            .finish_non_exhaustive()
    }
}

impl Core {
    /// Encodes on the caller's thread (unless shut down) and hands the items to the delivery
    /// thread; the future resolves when they are delivered, stored or given up.
    pub(crate) fn export(
        &self,
        encode: &dyn Fn() -> EncodedItems,
    ) -> impl Future<Output = OTelSdkResult> + Send + 'static {
        let sent = if self.transmitter.is_shutdown() {
            Err(OTelSdkError::AlreadyShutdown)
        } else {
            Ok(self.transmitter.send(encode()))
        };
        async move { sent?.await.map_err(OTelSdkError::from) }
    }

    /// What became of the items exported so far.
    pub(crate) fn delivery_report(&self) -> crate::DeliveryReport {
        self.transmitter.delivery_report()
    }

    /// Waits until everything handed over so far is delivered or stored.
    pub(crate) fn force_flush(&self) -> OTelSdkResult {
        self.transmitter
            .force_flush(FLUSH_TIMEOUT)
            .map_err(Into::into)
    }

    /// Delivers or stores what is pending within `timeout`, then stops the delivery thread.
    pub(crate) fn shutdown(&self, timeout: Duration) -> OTelSdkResult {
        self.transmitter.shutdown(timeout).map_err(Into::into)
    }
}

/// How long `force_flush` waits (the SDK's traits give it no timeout).
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

impl Options {
    /// Resolves the options against the process environment; bodies are compressed at
    /// `gzip_level` (each signal has its own, see `transmit::encode`).
    pub(crate) fn resolve(self, gzip_level: u32) -> Result<Core, BuildError> {
        self.resolve_with(gzip_level, &|name| std::env::var(name).ok())
    }

    /// Resolves the options against an environment given as a lookup function.
    pub(crate) fn resolve_with(
        self,
        gzip_level: u32,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Core, BuildError> {
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
        let storage = self.open_storage(connection_string.instrumentation_key());
        let transmitter = Transmitter::new(TransmitConfig {
            track_url: connection_string.track_url(),
            timeout,
            retry: self.retry.unwrap_or_default(),
            client: self.client,
            storage,
            gzip_level,
        })?;
        Ok(Core {
            ikey: connection_string.instrumentation_key().to_owned(),
            sample_rate,
            transmitter,
        })
    }
}

impl Options {
    /// Opens the offline storage, unless it is turned off. A directory that cannot be used is
    /// not an error: the exporter warns and runs without storage.
    fn open_storage(&self, ikey: &str) -> Option<Arc<Storage>> {
        let max_size = self.storage_max_size.unwrap_or(storage::DEFAULT_MAX_SIZE);
        let retention = self.storage_retention.unwrap_or(storage::DEFAULT_RETENTION);
        if self.offline_storage == Some(false) || max_size == 0 || retention.is_zero() {
            return None;
        }
        let (directory, private_parent) = match &self.storage_directory {
            Some(dir) => (dir.clone(), false),
            None => (storage::default_directory(ikey), true),
        };
        let config = StorageConfig {
            directory,
            private_parent,
            max_size,
            retention,
            secret: ikey.to_owned(),
        };
        match Storage::open(config) {
            Ok(storage) => Some(Arc::new(storage)),
            Err(e) => {
                opentelemetry::otel_warn!(
                    name: "AzureMonitor.Storage.Unavailable",
                    message = "offline storage cannot be used; the exporter runs without it, so telemetry that cannot be delivered within the export timeout is lost",
                    error = e.to_string()
                );
                None
            }
        }
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
            /// not delivered by then for a reason that may pass (the service unreachable,
            /// throttling, server errors) goes to offline storage and is sent later; without
            /// offline storage, it is dropped and the export fails.
            ///
            /// Defaults to 4 seconds: below the 5 seconds the SDK's `shutdown()` waits for the
            /// last export, so that it is delivered or stored before the process exits. Keep it
            /// below the timeouts of the processor or reader that calls the exporter.
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

            /// Turns offline storage on or off. With it, telemetry that could not be delivered
            /// within the export timeout for a reason that may pass (the service unreachable,
            /// throttling, server errors, a shutdown cutting delivery short) is written to disk
            /// and sent again in the background once the service answers, also by the next run
            /// of the program; the export then succeeds. While the service is known to be down,
            /// exports go to disk at once, so they never wait for the network. Without it, such
            /// telemetry is dropped and the export fails.
            ///
            /// Defaults to `true`. A storage directory that cannot be used (not writable, or
            /// belonging to another user) does not fail `build()`: the exporter logs a warning
            /// and runs without offline storage.
            pub fn with_offline_storage(mut self, enabled: bool) -> Self {
                self.options.offline_storage = Some(enabled);
                self
            }

            /// Sets the offline storage directory: one file of JSON lines (one telemetry item
            /// per line) per stored batch, readable by its owner only. It is created with mode
            /// 0700 if missing, made owner-only if it is open to others, and refused if it
            /// belongs to another user. Several exporters (and processes) may share it: each
            /// file is sent by one of them.
            ///
            /// Defaults to
            /// `{temp}/Microsoft-AzureMonitor-{sha256(ikey;user;exe;cwd)}/opentelemetry-rust-{ikey}`
            /// like the official exporters: `temp` is [`std::env::temp_dir`], the hash (hex) is
            /// of the instrumentation key, the user name, the executable's path and the working
            /// directory, so that each program keeps its own data across restarts.
            pub fn with_storage_directory(
                mut self,
                directory: impl Into<std::path::PathBuf>,
            ) -> Self {
                self.options.storage_directory = Some(directory.into());
                self
            }

            /// Sets the most bytes offline storage may hold. When it is full, the oldest stored
            /// telemetry is dropped to make room, with a warning saying how much. `0` turns
            /// offline storage off.
            ///
            /// Defaults to 50 MiB (52,428,800 bytes).
            pub fn with_storage_max_size(mut self, bytes: u64) -> Self {
                self.options.storage_max_size = Some(bytes);
                self
            }

            /// Sets how long telemetry is kept in offline storage; older data is dropped, with a
            /// warning saying how much. The service refuses items older than 48 hours anyway.
            /// Zero turns offline storage off.
            ///
            /// Defaults to 48 hours.
            pub fn with_storage_retention(mut self, retention: std::time::Duration) -> Self {
                self.options.storage_retention = Some(retention);
                self
            }
        }
    };
}

pub(crate) use builder_options;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::transmit::storage::tests::TestDir;

    const KEY: &str = "0f0e0d0c-0b0a-4909-8807-060504030201";

    fn options(storage: &std::path::Path) -> Options {
        Options {
            connection_string: Some(format!(
                "InstrumentationKey={KEY};IngestionEndpoint=http://127.0.0.1:9"
            )),
            storage_directory: Some(storage.join(format!("store-{KEY}"))),
            ..Options::default()
        }
    }

    fn storage_of(options: Options) -> Option<String> {
        let resolved = options
            .resolve_with(crate::transmit::encode::GZIP_LEVEL, &|_| None)
            .unwrap();
        let text = format!("{:?}", resolved.transmitter);
        assert!(!text.contains(KEY), "{text}");
        resolved
            .transmitter
            .shutdown(Duration::from_secs(5))
            .unwrap();
        text.contains("storage: Some").then_some(text)
    }

    #[test]
    fn offline_storage_is_on_by_default_and_can_be_turned_off() {
        let dir = TestDir::new("config");
        let on = storage_of(options(&dir.0)).unwrap();
        assert!(on.contains("store-<instrumentation key>"), "{on}");
        assert!(dir.0.join(format!("store-{KEY}")).is_dir());
        for off in [
            Options {
                offline_storage: Some(false),
                ..options(&dir.0)
            },
            Options {
                storage_max_size: Some(0),
                ..options(&dir.0)
            },
            Options {
                storage_retention: Some(Duration::ZERO),
                ..options(&dir.0)
            },
        ] {
            assert_eq!(storage_of(off), None);
        }
    }

    #[test]
    fn an_unusable_directory_is_not_an_error() {
        let dir = TestDir::new("config-unusable");
        std::fs::create_dir_all(&dir.0).unwrap();
        let file = dir.0.join("file");
        std::fs::write(&file, "x").unwrap();
        let unusable = Options {
            storage_directory: Some(file.join("storage")),
            ..options(&dir.0)
        };
        assert_eq!(storage_of(unusable), None);
    }

    #[test]
    fn debug_hides_the_connection_string() {
        let dir = TestDir::new("config-debug");
        let text = format!("{:?}", options(&dir.0));
        assert!(!text.contains(KEY), "{text}");
        assert!(text.contains("connection_string: \"<set>\""), "{text}");
    }
}
