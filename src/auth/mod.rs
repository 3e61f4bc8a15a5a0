//! Entra ID (formerly Azure AD) authentication of the exporters (ENTRA-ID.md).
//!
//! Application Insights resources with local authentication turned off accept telemetry only
//! with an `Authorization: Bearer <token>` header, a token for the audience
//! `https://monitor.azure.com` (or the `AADAudience` of a sovereign cloud) of an identity that
//! has the **Monitoring Metrics Publisher** role on the resource.
//!
//! - [`TokenProvider`] is the crate's own, dependency-free way to supply tokens; pass one with
//!   `with_token_provider` on any exporter builder.
//! - With the `azure-identity` feature, `with_credential` takes any `azure_core`
//!   `TokenCredential` (a `ManagedIdentityCredential`, a `WorkloadIdentityCredential`, ...),
//!   and `APPLICATIONINSIGHTS_AUTHENTICATION_STRING=Authorization=AAD` (or
//!   `Authorization=AAD;ClientId=<guid>`) makes the exporters use the managed identity on
//!   their own, as the official distros do.
//!
//! Inside the crate, the token cache (`TokenCache`, `pub(crate)`) holds one token per provider
//! and scope for the whole process, shared by every exporter (and Live Metrics), refreshed
//! before it expires; the transmitter only asks it for a bearer and tells it about 401 and 403
//! answers.

mod cache;
mod settings;

#[cfg(feature = "azure-identity")]
mod azure;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

#[allow(unused_imports)] // `Bearer` is for Live Metrics.
pub(crate) use cache::{refused, AuthFailure, Bearer, TokenCache};
pub(crate) use settings::resolve;

/// The future returned by [`TokenProvider::get_token`].
pub type TokenFuture<'a> =
    Pin<Box<dyn Future<Output = Result<AccessToken, TokenError>> + Send + 'a>>;

/// A source of Entra ID access tokens for the exporters.
///
/// The exporters ask for a token with one scope (see [`get_token`](Self::get_token)), keep it
/// and share it between every exporter of the process that uses the same provider (the same
/// `Arc`) and scope, and ask again shortly before it expires (five minutes before, unless the
/// token says otherwise with [`AccessToken::with_refresh_at`]), after the service refused it
/// (HTTP 401), or after a failure (with a backoff of 3 seconds doubling up to a minute). A
/// provider therefore needs no cache of its own, and is never called per batch.
///
/// `get_token` is awaited on the exporter's own background thread, inside a Tokio
/// current-thread runtime: the future may use Tokio's timers and I/O (an HTTP client such as
/// `reqwest`), whichever processor or reader drives the exporter.
///
/// ```
/// use std::sync::Arc;
/// use std::time::{Duration, SystemTime};
/// use opentelemetry_azure_monitor::auth::{AccessToken, TokenError, TokenFuture, TokenProvider};
///
/// /// Tokens from somewhere of the application's own (a vault, a sidecar...).
/// struct FromSidecar;
///
/// impl TokenProvider for FromSidecar {
///     fn get_token<'a>(&'a self, scope: &'a str) -> TokenFuture<'a> {
///         Box::pin(async move {
///             assert_eq!(scope, "https://monitor.azure.com//.default");
///             let token = std::env::var("MY_TOKEN").map_err(TokenError::new)?;
///             Ok(AccessToken::new(token, SystemTime::now() + Duration::from_secs(3600)))
///         })
///     }
/// }
///
/// let provider: Arc<dyn TokenProvider> = Arc::new(FromSidecar);
/// # #[cfg(feature = "trace")]
/// let exporter = opentelemetry_azure_monitor::SpanExporter::builder()
///     .with_token_provider(Arc::clone(&provider));
/// ```
pub trait TokenProvider: Send + Sync + 'static {
    /// Gets an access token for `scope`, such as `https://monitor.azure.com//.default` (the
    /// public cloud's, or `{AADAudience}/.default` from the connection string).
    ///
    /// # Errors
    ///
    /// Why no token could be had. The telemetry waiting for it is kept and sent later; the
    /// message shows up in the exporter's internal logs, so it must not contain a secret.
    fn get_token<'a>(&'a self, scope: &'a str) -> TokenFuture<'a>;

    /// Called when the ingestion service refused `token` (HTTP 401), before the next
    /// [`get_token`](Self::get_token). A provider with a cache of its own should drop the
    /// token there, so that the next call fetches a new one.
    ///
    /// Defaults to doing nothing. If the provider then hands back the same token, the
    /// exporters send it again only after a backoff (3 s, doubling up to a minute, while it
    /// keeps being refused).
    fn token_refused(&self, token: &AccessToken) {
        let _ = token;
    }
}

/// An access token and when it expires. Its `Debug` output never shows the token.
#[derive(Clone)]
pub struct AccessToken {
    secret: Arc<str>,
    expires_at: SystemTime,
    refresh_at: Option<SystemTime>,
}

impl AccessToken {
    /// A token (without the `Bearer ` prefix) valid until `expires_at`.
    pub fn new(secret: impl Into<String>, expires_at: SystemTime) -> Self {
        AccessToken {
            secret: Arc::from(secret.into()),
            expires_at,
            refresh_at: None,
        }
    }

    /// Asks the exporters to get a new token from this time on, while still using this one
    /// until it expires (as `refresh_on` of the Azure SDKs for Python and .NET).
    ///
    /// Defaults to five minutes before [`expires_at`](Self::expires_at) (at least 30 seconds
    /// after the token was received).
    #[must_use]
    pub fn with_refresh_at(mut self, refresh_at: SystemTime) -> Self {
        self.refresh_at = Some(refresh_at);
        self
    }

    /// The token itself, to put after `Bearer `. Keep it out of logs.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// When the token expires.
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }

    /// When a new token should be fetched, if the provider said so.
    pub fn refresh_at(&self) -> Option<SystemTime> {
        self.refresh_at
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("secret", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("refresh_at", &self.refresh_at)
            .finish()
    }
}

/// Why a [`TokenProvider`] could not supply a token. Its message appears in the exporter's
/// internal logs and errors: it must not contain a secret.
#[derive(Debug)]
pub struct TokenError {
    source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl TokenError {
    /// Wraps the reason: an error, or a message (`TokenError::new("vault unreachable")`).
    pub fn new(reason: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        TokenError {
            source: reason.into(),
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)
    }
}

impl std::error::Error for TokenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.source()
    }
}

/// A provider as the builders hold it: the provider, and the identity its token cache is
/// shared by (the address of the user's `Arc`, the provider's or the credential's).
#[derive(Clone)]
pub(crate) struct ProviderRef {
    pub(crate) provider: Arc<dyn TokenProvider>,
    pub(crate) identity: usize,
}

impl ProviderRef {
    /// A provider given with `with_token_provider`.
    pub(crate) fn new(provider: Arc<dyn TokenProvider>) -> Self {
        let identity = Arc::as_ptr(&provider).cast::<()>() as usize;
        ProviderRef { provider, identity }
    }

    /// A credential given with `with_credential`: exporters given the same credential share
    /// one token.
    #[cfg(feature = "azure-identity")]
    pub(crate) fn credential(
        credential: Arc<dyn azure_core::credentials::TokenCredential>,
    ) -> Self {
        let identity = Arc::as_ptr(&credential).cast::<()>() as usize;
        ProviderRef {
            provider: Arc::new(azure::Credential(credential)),
            identity,
        }
    }
}

impl fmt::Debug for ProviderRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<token provider>")
    }
}
