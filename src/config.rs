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
use crate::processor::{self, Processor};
use crate::transmit::gzip::Level;
use crate::transmit::storage::{self, Storage, StorageConfig};
use crate::transmit::{Batch, EncodedItems, RetryPolicy, TransmitConfig, Transmitter};
use crate::wire::Envelope;
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
    /// Telemetry processors, in the order they were added.
    pub(crate) processors: Vec<Arc<Processor>>,
    pub(crate) token_provider: Option<crate::auth::ProviderRef>,
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
            .field("processors", &self.processors.len())
            .field("token_provider", &set(self.token_provider.is_some()))
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
    /// Telemetry processors, run on every item just before it is encoded.
    pub(crate) processors: Vec<Arc<Processor>>,
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("sample_rate", &self.sample_rate)
            .field("transmitter", &self.transmitter)
            .field("processors", &self.processors.len())
            .finish_non_exhaustive()
    }
}

impl Core {
    /// Runs the telemetry processors on the converted items (dropping what they discard) and
    /// encodes the rest: the one place where the three exporters' items meet the processors.
    pub(crate) fn encode<'a>(
        &self,
        envelopes: impl IntoIterator<Item = Envelope<'a>>,
    ) -> EncodedItems {
        let envelopes = envelopes.into_iter();
        if self.processors.is_empty() {
            return crate::transmit::encode(envelopes);
        }
        let n = envelopes.size_hint().0;
        self.encode_counted(n, envelopes)
    }

    /// [`Core::encode`] for an iterator that does not know its length: `n` is how many items
    /// to expect.
    pub(crate) fn encode_counted<'a>(
        &self,
        n: usize,
        envelopes: impl IntoIterator<Item = Envelope<'a>>,
    ) -> EncodedItems {
        if self.processors.is_empty() {
            return crate::transmit::encode_counted(n, envelopes);
        }
        crate::transmit::encode_counted(
            n,
            envelopes
                .into_iter()
                .filter_map(|e| processor::apply(&self.processors, e)),
        )
    }

    /// Encodes on the caller's thread (unless shut down) and hands the items to the delivery
    /// thread; the future resolves when they are delivered, stored or given up. `batch` is
    /// what the SDK handed over: whether the export may be handed off depends on it (see
    /// `transmit::handoff`).
    pub(crate) fn export(
        &self,
        batch: Batch,
        encode: &dyn Fn() -> EncodedItems,
    ) -> impl Future<Output = OTelSdkResult> + Send + 'static {
        let sent = if self.transmitter.is_shutdown() {
            Err(OTelSdkError::AlreadyShutdown)
        } else {
            Ok(self.transmitter.send(encode(), batch))
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
    pub(crate) fn resolve(self, gzip_level: Level) -> Result<Core, BuildError> {
        self.resolve_with(gzip_level, &|name| std::env::var(name).ok())
    }

    /// Resolves the options against an environment given as a lookup function.
    pub(crate) fn resolve_with(
        self,
        gzip_level: Level,
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
        let track_url = connection_string.track_url();
        let auth = crate::auth::resolve(
            self.token_provider.clone(),
            connection_string.aad_audience(),
            &track_url,
            env,
        )?;
        let storage = self.open_storage(connection_string.instrumentation_key());
        let transmitter = Transmitter::new(TransmitConfig {
            track_url,
            timeout,
            retry: self.retry.unwrap_or_default(),
            client: self.client,
            storage,
            gzip_level,
            auth,
        })?;
        Ok(Core {
            ikey: connection_string.instrumentation_key().to_owned(),
            sample_rate,
            transmitter,
            processors: self.processors,
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

            /// Adds a telemetry processor: a closure that sees every item this exporter sends,
            /// after conversion and before encoding, through a [`TelemetryItem`](crate::TelemetryItem),
            /// and may change it or [`discard`](crate::TelemetryItem::discard) it. Processors run
            /// in the order they were added. One that panics changes and drops nothing; its
            /// first panic is reported in the internal log. See [`processor`](crate::processor).
            ///
            /// Defaults to none.
            pub fn with_processor(
                mut self,
                processor: impl Fn(&mut crate::TelemetryItem<'_>) + Send + Sync + 'static,
            ) -> Self {
                self.options
                    .processors
                    .push(crate::processor::Processor::new(processor));
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

            /// Authenticates with Entra ID: every request carries `Authorization: Bearer
            /// <token>` with a token of this provider for the scope
            /// `https://monitor.azure.com//.default`, or `{AADAudience}/.default` when the
            /// connection string has an `AADAudience`. The identity needs the "Monitoring Metrics
            /// Publisher" role on the Application Insights resource. Exporters given the same
            /// provider (the same `Arc`) share one token, refreshed before it expires; see
            /// [`TokenProvider`](crate::auth::TokenProvider).
            ///
            /// Defaults to the managed identity named by the
            /// `APPLICATIONINSIGHTS_AUTHENTICATION_STRING` environment variable
            /// (`Authorization=AAD`, or `Authorization=AAD;ClientId=<guid>`) with the
            /// `azure-identity` feature, else to no token (instrumentation-key authentication).
            /// `build()` fails when a token would go over plain http to a host other than
            /// localhost.
            pub fn with_token_provider(
                mut self,
                provider: std::sync::Arc<dyn crate::auth::TokenProvider>,
            ) -> Self {
                self.options.token_provider = Some(crate::auth::ProviderRef::new(provider));
                self
            }

            /// Authenticates with Entra ID through an Azure SDK credential, such as
            /// `azure_identity::ManagedIdentityCredential` or `WorkloadIdentityCredential`, as
            /// [`with_token_provider`](Self::with_token_provider) does (exporters given the
            /// same credential share one token). Tokens are fetched on the exporter's own Tokio
            /// runtime, so the credential's HTTP client works under the SDK's thread-based
            /// processors too.
            ///
            /// Defaults as `with_token_provider` does.
            #[cfg(feature = "azure-identity")]
            #[cfg_attr(docsrs, doc(cfg(feature = "azure-identity")))]
            pub fn with_credential(
                mut self,
                credential: std::sync::Arc<dyn azure_core::credentials::TokenCredential>,
            ) -> Self {
                self.options.token_provider =
                    Some(crate::auth::ProviderRef::credential(credential));
                self
            }

            /// Replaces every option above at once: the one-call setup forwards its own to the
            /// three exporters' builders this way.
            #[allow(dead_code)]
            pub(crate) fn with_options(mut self, options: crate::config::Options) -> Self {
                self.options = options;
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
    fn the_authentication_string_is_read_unless_code_gives_a_provider() {
        struct Never;
        impl crate::auth::TokenProvider for Never {
            fn get_token<'a>(&'a self, _: &'a str) -> crate::auth::TokenFuture<'a> {
                Box::pin(async { Err(crate::auth::TokenError::new("never")) })
            }
        }
        let dir = TestDir::new("config-auth");
        let env = |name: &str| {
            (name == "APPLICATIONINSIGHTS_AUTHENTICATION_STRING")
                .then(|| "Authorization=AAD;ClientId=my-identity".to_owned())
        };
        let error = options(&dir.0)
            .resolve_with(crate::transmit::encode::GZIP_LEVEL, &env)
            .unwrap_err();
        assert!(matches!(error, BuildError::Authentication(_)), "{error:?}");
        assert_eq!(
            error.to_string(),
            "Entra ID authentication: APPLICATIONINSIGHTS_AUTHENTICATION_STRING is malformed: \
             `ClientId` must be the client id (a GUID) of a user-assigned managed identity"
        );
        // Code beats the environment, which is then not read.
        let with_provider = Options {
            token_provider: Some(crate::auth::ProviderRef::new(std::sync::Arc::new(Never))),
            ..options(&dir.0)
        };
        assert!(format!("{with_provider:?}").contains("token_provider: \"<set>\""));
        let resolved = with_provider
            .resolve_with(crate::transmit::encode::GZIP_LEVEL, &env)
            .unwrap();
        resolved
            .transmitter
            .shutdown(Duration::from_secs(5))
            .unwrap();
    }

    #[test]
    fn debug_hides_the_connection_string() {
        let dir = TestDir::new("config-debug");
        let text = format!("{:?}", options(&dir.0));
        assert!(!text.contains(KEY), "{text}");
        assert!(text.contains("connection_string: \"<set>\""), "{text}");
    }
}
