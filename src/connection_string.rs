//! The Azure Monitor connection string (MAPPING.md §7).
//!
//! `InstrumentationKey=<GUID>;IngestionEndpoint=https://...;LiveEndpoint=https://...` is parsed
//! into a validated [`ConnectionString`]: the instrumentation key is a GUID, the endpoints are
//! absolute http(s) URLs without a trailing `/`. Parsing is pure; reading the environment goes
//! through a lookup function so that the precedence rules are tested without touching the
//! process environment.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// Environment variable holding the connection string.
const ENV_CONNECTION_STRING: &str = "APPLICATIONINSIGHTS_CONNECTION_STRING";
/// Legacy environment variable holding only the instrumentation key.
const ENV_INSTRUMENTATION_KEY: &str = "APPINSIGHTS_INSTRUMENTATIONKEY";
/// Longest connection string accepted, in characters (NET `ConnectionStringMaxLength`).
const MAX_LENGTH: usize = 4096;
/// Ingestion endpoint used when the connection string names none.
const DEFAULT_INGESTION_ENDPOINT: &str = "https://dc.services.visualstudio.com";
/// Live Metrics endpoint used when the connection string names none.
const DEFAULT_LIVE_ENDPOINT: &str = "https://rt.services.visualstudio.com";

/// A parsed and validated Azure Monitor (Application Insights) connection string.
///
/// Copy the connection string from the Overview page of the Application Insights resource in
/// the Azure portal. The instrumentation key it contains is treated as a secret: `Debug` shows
/// it as `<redacted>` and no [`ConnectionStringError`] ever contains it.
///
/// Parsing rules: segments are separated by `;` (empty segments, such as a trailing `;`, are
/// ignored), each segment is `Key=Value` split at the first `=`, spaces around keys and values
/// are trimmed, keys are case-insensitive and may not repeat, unknown keys are ignored, and the
/// whole string is at most 4096 characters long. A key with an empty value counts as absent.
///
/// | key | use |
/// |---|---|
/// | `InstrumentationKey` | required, a GUID (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, hex digits of either case) |
/// | `IngestionEndpoint` | base URL of the Track API; defaults to `https://dc.services.visualstudio.com` |
/// | `LiveEndpoint` | base URL of Live Metrics; defaults to `https://rt.services.visualstudio.com` |
/// | `EndpointSuffix`, `Location` | build `https://[{Location}.]dc.{EndpointSuffix}` and `https://[{Location}.]live.{EndpointSuffix}` for the endpoints not given explicitly |
/// | `AADAudience` | Entra ID audience |
/// | `ApplicationId` | id of the Application Insights component |
/// | `Authorization` | must be `ikey` if present |
///
/// # Examples
///
/// ```
/// use opentelemetry_azure_monitor::ConnectionString;
///
/// let cs: ConnectionString = "InstrumentationKey=00000000-0000-0000-0000-000000000000;\
///     IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/"
///     .parse()?;
/// assert_eq!(cs.instrumentation_key(), "00000000-0000-0000-0000-000000000000");
/// assert_eq!(cs.ingestion_endpoint(), "https://westeurope-5.in.applicationinsights.azure.com");
/// assert_eq!(cs.live_endpoint(), "https://rt.services.visualstudio.com");
/// assert!(!format!("{cs:?}").contains("00000000-0000"));
/// # Ok::<(), opentelemetry_azure_monitor::ConnectionStringError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    instrumentation_key: String,
    ingestion_endpoint: String,
    live_endpoint: String,
    aad_audience: Option<String>,
    application_id: Option<String>,
}

/// Why a connection string was rejected.
///
/// Every message says what to fix and names the offending key, or the position of the segment
/// (counting from 1, empty segments included) when there is no key to name. Messages never
/// contain the instrumentation key, nor any part of a segment whose key is not recognised.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ConnectionStringError {
    /// No connection string was given in code and neither `APPLICATIONINSIGHTS_CONNECTION_STRING`
    /// nor `APPINSIGHTS_INSTRUMENTATIONKEY` is set (or they are empty).
    #[error(
        "no Azure Monitor connection string: pass one in code or set the \
         APPLICATIONINSIGHTS_CONNECTION_STRING environment variable (copy it from the Overview \
         page of the Application Insights resource in the Azure portal)"
    )]
    NotConfigured,
    /// The connection string is empty or only whitespace.
    #[error(
        "the connection string is empty: copy it from the Overview page of the Application \
         Insights resource in the Azure portal (it starts with `InstrumentationKey=`)"
    )]
    Empty,
    /// The connection string is longer than 4096 characters.
    #[error(
        "the connection string is {length} characters long, at most 4096 are allowed: \
         check that nothing else was pasted with it"
    )]
    TooLong {
        /// Length of the rejected string, in characters.
        length: usize,
    },
    /// A non-empty segment has no `=`. Its text is not shown: it may be a pasted key.
    #[error(
        "segment {position} of the connection string has no `=`: write every segment as \
         `Key=Value` and separate segments with `;` (the segment is not shown, it may be secret)"
    )]
    MissingEquals {
        /// Position of the segment, counting from 1.
        position: usize,
    },
    /// A segment has nothing before its `=`.
    #[error(
        "segment {position} of the connection string has no key before `=`: write it as \
         `Key=Value`"
    )]
    EmptyKey {
        /// Position of the segment, counting from 1.
        position: usize,
    },
    /// Two segments set the same key (keys are compared case-insensitively).
    #[error(
        "segments {first} and {second} of the connection string both set {} (keys are \
         case-insensitive): keep only one",
        .key.unwrap_or("the same key")
    )]
    DuplicateKey {
        /// The key, when it is one this crate recognises (`InstrumentationKey`, ...). Unknown
        /// keys are not named, as nothing of an unknown segment is shown.
        key: Option<&'static str>,
        /// Position of the first segment with the key, counting from 1.
        first: usize,
        /// Position of the repeated segment, counting from 1.
        second: usize,
    },
    /// No source gave an `InstrumentationKey`.
    #[error(
        "the connection string has no InstrumentationKey: add `InstrumentationKey=<GUID>` \
         (copy the whole connection string from the Application Insights resource in the \
         Azure portal)"
    )]
    MissingInstrumentationKey,
    /// The `InstrumentationKey` is not a GUID. The value is not shown.
    #[error(
        "the InstrumentationKey is not a GUID of the form \
         xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx (hex digits, no braces): copy it again from the \
         Application Insights resource (the value is not shown, it is secret)"
    )]
    InvalidInstrumentationKey,
    /// An endpoint (`IngestionEndpoint`, `LiveEndpoint`, or one built from `EndpointSuffix`) is
    /// not an absolute http(s) URL with a host.
    #[error(
        "{key} in the connection string is not a usable endpoint ({reason}): expected an \
         absolute http(s) URL such as https://westeurope-5.in.applicationinsights.azure.com/"
    )]
    InvalidEndpoint {
        /// The key whose value is wrong: `IngestionEndpoint`, `LiveEndpoint` or `EndpointSuffix`.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// `Location` (used with `EndpointSuffix`) contains something other than letters and digits.
    #[error(
        "Location in the connection string must contain only ASCII letters and digits, \
         like an Azure region name such as westus2"
    )]
    InvalidLocation,
    /// `Authorization` is present and is not `ikey`.
    #[error(
        "Authorization in the connection string must be `ikey` when present: remove it, \
         Entra ID authentication is not switched on by the connection string"
    )]
    UnsupportedAuthorization,
    /// The value of an environment variable was rejected.
    #[error("environment variable {variable}: {error}")]
    InEnvironment {
        /// The environment variable: `APPLICATIONINSIGHTS_CONNECTION_STRING` or
        /// `APPINSIGHTS_INSTRUMENTATIONKEY`.
        variable: &'static str,
        /// What is wrong with its value.
        error: Box<ConnectionStringError>,
    },
}

type Error = ConnectionStringError;

impl ConnectionStringError {
    fn in_env(variable: &'static str) -> impl FnOnce(Self) -> Self {
        move |error| Error::InEnvironment {
            variable,
            error: Box::new(error),
        }
    }
}

impl ConnectionString {
    /// Reads the connection string from the environment: `APPLICATIONINSIGHTS_CONNECTION_STRING`,
    /// or else the legacy `APPINSIGHTS_INSTRUMENTATIONKEY` (which holds only the key, so the
    /// default endpoints are used).
    ///
    /// # Errors
    ///
    /// [`ConnectionStringError::NotConfigured`] if neither variable is set to a non-empty value;
    /// [`ConnectionStringError::InEnvironment`] naming the variable if its value is rejected;
    /// [`ConnectionStringError::MissingInstrumentationKey`] if the connection string has no key.
    pub fn from_env() -> Result<Self, ConnectionStringError> {
        Self::resolve(None, &|name| {
            // A value that is not Unicode is passed on (lossily) so that it is reported as
            // invalid rather than silently ignored.
            std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
        })
    }

    /// The instrumentation key, exactly as given (a GUID). Treat it as a secret.
    pub fn instrumentation_key(&self) -> &str {
        &self.instrumentation_key
    }

    /// Base URL of the Track API, without a trailing `/` (any path prefix is kept).
    pub fn ingestion_endpoint(&self) -> &str {
        &self.ingestion_endpoint
    }

    /// Base URL of Live Metrics (QuickPulse), without a trailing `/`.
    pub fn live_endpoint(&self) -> &str {
        &self.live_endpoint
    }

    /// The Entra ID audience (`AADAudience`), if given.
    pub fn aad_audience(&self) -> Option<&str> {
        self.aad_audience.as_deref()
    }

    /// The Application Insights component id (`ApplicationId`), if given.
    pub fn application_id(&self) -> Option<&str> {
        self.application_id.as_deref()
    }

    /// The URL telemetry is posted to: `{ingestion_endpoint}/v2.1/track`.
    #[allow(dead_code)] // Used by the transmitter once the builders are wired up.
    pub(crate) fn track_url(&self) -> String {
        format!("{}/v2.1/track", self.ingestion_endpoint)
    }

    /// Resolves the connection string from all sources (MAPPING.md §7.4), field by field:
    /// the connection string given in `code`, then `APPLICATIONINSIGHTS_CONNECTION_STRING`, then
    /// (for the key only) `APPINSIGHTS_INSTRUMENTATIONKEY`, then the default endpoints.
    ///
    /// `env` looks up an environment variable; blank values count as unset. A connection string
    /// that is set must be valid as a whole, even where another source wins; the legacy key
    /// variable is read only when no connection string has a key.
    ///
    /// # Errors
    ///
    /// Any parse error of the code string as is, of the environment string wrapped in
    /// [`ConnectionStringError::InEnvironment`]; `NotConfigured` when no source is set at all;
    /// `MissingInstrumentationKey` when sources are set but none has a key.
    #[allow(dead_code)] // Used by the exporter builders once they are wired up.
    pub(crate) fn resolve(
        code: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConnectionStringError> {
        let lookup = |name: &str| env(name).filter(|v| !v.trim().is_empty());

        let code = code.map(Fields::parse).transpose()?;
        let env_cs = lookup(ENV_CONNECTION_STRING)
            .map(|s| Fields::parse(&s).map_err(Error::in_env(ENV_CONNECTION_STRING)))
            .transpose()?;
        let configured = code.is_some() || env_cs.is_some();
        let mut fields = code.unwrap_or_default().or(env_cs.unwrap_or_default());
        if fields.instrumentation_key.is_none() {
            match lookup(ENV_INSTRUMENTATION_KEY) {
                Some(key) => {
                    let key = key.trim();
                    check_instrumentation_key(key)
                        .map_err(Error::in_env(ENV_INSTRUMENTATION_KEY))?;
                    fields.instrumentation_key = Some(key.to_owned());
                }
                None if !configured => return Err(Error::NotConfigured),
                None => {}
            }
        }
        fields.finish()
    }
}

impl FromStr for ConnectionString {
    type Err = ConnectionStringError;

    /// Parses one connection string; endpoints it does not give take their defaults.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Fields::parse(s)?.finish()
    }
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("instrumentation_key", &format_args!("<redacted>"))
            .field("ingestion_endpoint", &self.ingestion_endpoint)
            .field("live_endpoint", &self.live_endpoint)
            .field("aad_audience", &self.aad_audience)
            .field("application_id", &self.application_id)
            .finish()
    }
}

/// The keys this crate recognises.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum KnownKey {
    InstrumentationKey,
    IngestionEndpoint,
    LiveEndpoint,
    EndpointSuffix,
    Location,
    AadAudience,
    ApplicationId,
    Authorization,
}

impl KnownKey {
    const ALL: [KnownKey; 8] = [
        KnownKey::InstrumentationKey,
        KnownKey::IngestionEndpoint,
        KnownKey::LiveEndpoint,
        KnownKey::EndpointSuffix,
        KnownKey::Location,
        KnownKey::AadAudience,
        KnownKey::ApplicationId,
        KnownKey::Authorization,
    ];

    /// The key as documented.
    fn name(self) -> &'static str {
        match self {
            KnownKey::InstrumentationKey => "InstrumentationKey",
            KnownKey::IngestionEndpoint => "IngestionEndpoint",
            KnownKey::LiveEndpoint => "LiveEndpoint",
            KnownKey::EndpointSuffix => "EndpointSuffix",
            KnownKey::Location => "Location",
            KnownKey::AadAudience => "AADAudience",
            KnownKey::ApplicationId => "ApplicationId",
            KnownKey::Authorization => "Authorization",
        }
    }

    fn recognise(key: &str) -> Option<KnownKey> {
        KnownKey::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(key))
    }
}

/// What one connection string gives; every field is optional until sources are merged.
#[derive(Default)]
struct Fields {
    instrumentation_key: Option<String>,
    /// Explicit, or built from `EndpointSuffix`; already normalised.
    ingestion_endpoint: Option<String>,
    live_endpoint: Option<String>,
    aad_audience: Option<String>,
    application_id: Option<String>,
}

impl Fields {
    /// Parses and validates one connection string, without requiring a key or applying defaults.
    fn parse(s: &str) -> Result<Self, Error> {
        // Bytes bound characters from above: count characters only when it can matter.
        if s.len() > MAX_LENGTH {
            let length = s.chars().count();
            if length > MAX_LENGTH {
                return Err(Error::TooLong { length });
            }
        }
        if s.trim().is_empty() {
            return Err(Error::Empty);
        }

        let mut values: [Option<&str>; KnownKey::ALL.len()] = [None; KnownKey::ALL.len()];
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (index, segment) in s.split(';').enumerate() {
            let position = index + 1;
            if segment.trim().is_empty() {
                continue;
            }
            let Some((key, value)) = segment.split_once('=') else {
                return Err(Error::MissingEquals { position });
            };
            let key = key.trim();
            if key.is_empty() {
                return Err(Error::EmptyKey { position });
            }
            let known = KnownKey::recognise(key);
            if let Some(first) = seen.insert(key.to_lowercase(), position) {
                return Err(Error::DuplicateKey {
                    key: known.map(KnownKey::name),
                    first,
                    second: position,
                });
            }
            if let Some(slot) = known.and_then(|k| values.get_mut(k as usize)) {
                *slot = Some(value.trim()).filter(|v| !v.is_empty());
            }
        }
        let get = |key: KnownKey| values.get(key as usize).copied().flatten();

        if let Some(auth) = get(KnownKey::Authorization) {
            if !auth.eq_ignore_ascii_case("ikey") {
                return Err(Error::UnsupportedAuthorization);
            }
        }
        let instrumentation_key = get(KnownKey::InstrumentationKey);
        if let Some(key) = instrumentation_key {
            check_instrumentation_key(key)?;
        }
        let suffix = get(KnownKey::EndpointSuffix);
        let location = get(KnownKey::Location);
        let endpoint = |explicit: KnownKey, prefix: &str| -> Result<Option<String>, Error> {
            match (get(explicit), suffix) {
                (Some(url), _) => normalize_endpoint(explicit.name(), url).map(Some),
                (None, Some(suffix)) => build_endpoint(prefix, suffix, location).map(Some),
                (None, None) => Ok(None),
            }
        };
        Ok(Fields {
            instrumentation_key: instrumentation_key.map(str::to_owned),
            ingestion_endpoint: endpoint(KnownKey::IngestionEndpoint, "dc")?,
            live_endpoint: endpoint(KnownKey::LiveEndpoint, "live")?,
            aad_audience: get(KnownKey::AadAudience).map(str::to_owned),
            application_id: get(KnownKey::ApplicationId).map(str::to_owned),
        })
    }

    /// Field by field: `self` where it has a value, `other` where it has not.
    fn or(self, other: Fields) -> Fields {
        Fields {
            instrumentation_key: self.instrumentation_key.or(other.instrumentation_key),
            ingestion_endpoint: self.ingestion_endpoint.or(other.ingestion_endpoint),
            live_endpoint: self.live_endpoint.or(other.live_endpoint),
            aad_audience: self.aad_audience.or(other.aad_audience),
            application_id: self.application_id.or(other.application_id),
        }
    }

    /// Requires the key and fills in the default endpoints.
    fn finish(self) -> Result<ConnectionString, Error> {
        Ok(ConnectionString {
            instrumentation_key: self
                .instrumentation_key
                .ok_or(Error::MissingInstrumentationKey)?,
            ingestion_endpoint: self
                .ingestion_endpoint
                .unwrap_or_else(|| DEFAULT_INGESTION_ENDPOINT.to_owned()),
            live_endpoint: self
                .live_endpoint
                .unwrap_or_else(|| DEFAULT_LIVE_ENDPOINT.to_owned()),
            aad_audience: self.aad_audience,
            application_id: self.application_id,
        })
    }
}

/// Accepts a GUID `8-4-4-4-12` of hex digits of either case, without braces.
fn check_instrumentation_key(key: &str) -> Result<(), Error> {
    let bytes = key.as_bytes();
    let is_guid = bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    if is_guid {
        Ok(())
    } else {
        Err(Error::InvalidInstrumentationKey)
    }
}

/// `https://` + `{location}.` (if any) + `{prefix}.` + `{suffix}` (MAPPING.md §7.3).
fn build_endpoint(prefix: &str, suffix: &str, location: Option<&str>) -> Result<String, Error> {
    let location = location
        .map(|l| l.trim().trim_end_matches('.'))
        .unwrap_or("");
    if !location.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Error::InvalidLocation);
    }
    let suffix = suffix.trim().trim_start_matches('.');
    if suffix.is_empty() {
        return Err(Error::InvalidEndpoint {
            key: KnownKey::EndpointSuffix.name(),
            reason: "it is empty once leading dots are removed".to_owned(),
        });
    }
    let dot = if location.is_empty() { "" } else { "." };
    let url = format!("https://{location}{dot}{prefix}.{suffix}");
    normalize_endpoint(KnownKey::EndpointSuffix.name(), &url)
}

/// Validates an absolute http(s) URL with a host, and returns it without a trailing `/`.
///
/// The reasons never quote the value: it may be a mis-pasted secret.
fn normalize_endpoint(key: &'static str, value: &str) -> Result<String, Error> {
    let invalid = |reason: &str| Error::InvalidEndpoint {
        key,
        reason: reason.to_owned(),
    };
    // The URL parser silently drops tabs and newlines; a value with them is a mistake.
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("it contains whitespace or control characters"));
    }
    let url = reqwest::Url::parse(value).map_err(|e| invalid(&format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    // The parser forgives `https:/host`, `https:////host` and backslashes; .NET does not, and
    // neither should we: require exactly `scheme://` followed by the host.
    let rest = value.get(url.scheme().len()..).unwrap_or("");
    let after_slashes = rest.strip_prefix("://").unwrap_or("/");
    if after_slashes.starts_with(['/', '\\']) {
        return Err(invalid(
            "it must start with http:// or https:// followed by a host",
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("it must not contain a user name or password"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("it must not have a query (`?`) or fragment (`#`)"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "1234abcd-5678-4efa-8abc-1234567890ab";

    fn parse(s: &str) -> Result<ConnectionString, Error> {
        s.parse()
    }

    fn with_key(rest: &str) -> String {
        format!("InstrumentationKey={KEY};{rest}")
    }

    fn endpoints(s: &str) -> (String, String) {
        let cs = parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"));
        (
            cs.ingestion_endpoint().to_owned(),
            cs.live_endpoint().to_owned(),
        )
    }

    /// Whether an error is the expected one.
    type Check<'a> = &'a dyn Fn(&Error) -> bool;
    /// Environment variables of a fake environment.
    type Vars<'a> = &'a [(&'static str, &'a str)];

    fn invalid_endpoint(key: &'static str) -> impl Fn(&Error) -> bool {
        move |e| matches!(e, Error::InvalidEndpoint { key: k, .. } if *k == key)
    }

    #[test]
    fn minimal_string_takes_the_defaults() {
        let cs = parse(&format!("InstrumentationKey={KEY}")).unwrap();
        assert_eq!(cs.instrumentation_key(), KEY);
        assert_eq!(cs.ingestion_endpoint(), DEFAULT_INGESTION_ENDPOINT);
        assert_eq!(cs.live_endpoint(), DEFAULT_LIVE_ENDPOINT);
        assert_eq!(cs.aad_audience(), None);
        assert_eq!(cs.application_id(), None);
        assert_eq!(
            cs.track_url(),
            "https://dc.services.visualstudio.com/v2.1/track"
        );
    }

    #[test]
    fn grammar_cases_that_parse() {
        let upper = KEY.to_uppercase();
        // (case, input, expected key, expected ingestion endpoint)
        let cases: &[(&str, String, &str, &str)] = &[
            (
                "net-cs-case-insensitive",
                format!("instrumentationKEY={KEY};INGESTIONENDPOINT=https://a.example"),
                KEY,
                "https://a.example",
            ),
            (
                "net-cs-extra-spaces",
                format!(
                    "  InstrumentationKey =  {KEY}   ; IngestionEndpoint = https://a.example/  "
                ),
                KEY,
                "https://a.example",
            ),
            (
                "net-cs-trailing-semicolon",
                format!("InstrumentationKey={KEY};"),
                KEY,
                DEFAULT_INGESTION_ENDPOINT,
            ),
            (
                "empty segments anywhere",
                format!(";; ;InstrumentationKey={KEY};;  ;"),
                KEY,
                DEFAULT_INGESTION_ENDPOINT,
            ),
            (
                "upper-case key is sent as given",
                format!("InstrumentationKey={upper}"),
                &upper,
                DEFAULT_INGESTION_ENDPOINT,
            ),
            (
                "unknown keys are ignored, their values may hold `=`",
                format!("Foo=a=b==;InstrumentationKey={KEY};Bar=;Baz=x"),
                KEY,
                DEFAULT_INGESTION_ENDPOINT,
            ),
            (
                "py-cs-ikey-code-cs: Authorization=ikey",
                format!("Authorization=ikey;InstrumentationKey={KEY}"),
                KEY,
                DEFAULT_INGESTION_ENDPOINT,
            ),
            (
                "Authorization is case-insensitive",
                format!("Authorization=IKey;InstrumentationKey={KEY}"),
                KEY,
                DEFAULT_INGESTION_ENDPOINT,
            ),
            (
                "py-cs-region-*: a regional endpoint is kept, region is not extracted",
                format!(
                    "InstrumentationKey={KEY};IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/;LiveEndpoint=https://westeurope.livediagnostics.monitor.azure.com/"
                ),
                KEY,
                "https://westeurope-5.in.applicationinsights.azure.com",
            ),
            (
                "exactly 4096 characters",
                {
                    let base = format!("InstrumentationKey={KEY};Pad=");
                    format!("{base}{}", "x".repeat(MAX_LENGTH - base.len()))
                },
                KEY,
                DEFAULT_INGESTION_ENDPOINT,
            ),
        ];
        for (case, input, key, ingestion) in cases {
            let cs = parse(input).unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(cs.instrumentation_key(), *key, "{case}");
            assert_eq!(cs.ingestion_endpoint(), *ingestion, "{case}");
        }
    }

    #[test]
    fn grammar_cases_that_fail() {
        // (case, input, expected error)
        type Case = (&'static str, String, fn(&Error) -> bool);
        let cases: &[Case] = &[
            ("py-cs-invalid-key-empty", String::new(), |e| {
                *e == Error::Empty
            }),
            ("blank", "  \t ".to_owned(), |e| *e == Error::Empty),
            (
                "only semicolons",
                ";;".to_owned(),
                |e| *e == Error::MissingInstrumentationKey,
            ),
            (
                "net-cs-duplicate-keys",
                "key1=value1;key1=value2".to_owned(),
                |e| {
                    *e == Error::DuplicateKey {
                        key: None,
                        first: 1,
                        second: 2,
                    }
                },
            ),
            (
                "net-cs-duplicate-keys-with-spaces",
                "key1=value1;key1  =value2".to_owned(),
                |e| matches!(e, Error::DuplicateKey { first: 1, second: 2, .. }),
            ),
            (
                "duplicate known key in other case",
                format!("InstrumentationKey={KEY};;instrumentationkey={KEY}"),
                |e| {
                    *e == Error::DuplicateKey {
                        key: Some("InstrumentationKey"),
                        first: 1,
                        second: 3,
                    }
                },
            ),
            (
                "duplicate key with an empty value",
                format!("InstrumentationKey={KEY};IngestionEndpoint=;IngestionEndpoint=https://a.example"),
                |e| matches!(e, Error::DuplicateKey { key: Some("IngestionEndpoint"), .. }),
            ),
            (
                "net-cs-invalid-delimiters",
                "key1;key2=value2".to_owned(),
                |e| *e == Error::MissingEquals { position: 1 },
            ),
            (
                "py-cs-invalid-no-equals",
                "asd".to_owned(),
                |e| *e == Error::MissingEquals { position: 1 },
            ),
            (
                "a pasted bare key",
                format!("IngestionEndpoint=https://a.example;{KEY}"),
                |e| *e == Error::MissingEquals { position: 2 },
            ),
            (
                "empty key",
                format!("InstrumentationKey={KEY}; =x"),
                |e| *e == Error::EmptyKey { position: 2 },
            ),
            (
                "net-cs-too-long",
                "*".repeat(MAX_LENGTH + 1),
                |e| *e == Error::TooLong { length: 4097 },
            ),
            (
                "too long in characters, not bytes",
                "é".repeat(MAX_LENGTH + 1),
                |e| *e == Error::TooLong { length: 4097 },
            ),
            (
                "net-cs-instrumentation-key-required",
                "EndpointSuffix=ingestion.azuremonitor.com".to_owned(),
                |e| *e == Error::MissingInstrumentationKey,
            ),
            (
                "net-cs-no-instrumentation-key",
                "key1=value1;key2=value2;key3=value3".to_owned(),
                |e| *e == Error::MissingInstrumentationKey,
            ),
            (
                "net-cs-instrumentation-key-empty",
                "InstrumentationKey=;EndpointSuffix=ingestion.azuremonitor.com".to_owned(),
                |e| *e == Error::MissingInstrumentationKey,
            ),
            (
                "py-cs-invalid-authorization",
                "Authorization=asd".to_owned(),
                |e| *e == Error::UnsupportedAuthorization,
            ),
            (
                "Authorization=AAD is not how Entra ID is enabled",
                format!("InstrumentationKey={KEY};Authorization=AAD"),
                |e| *e == Error::UnsupportedAuthorization,
            ),
        ];
        for (case, input, check) in cases {
            match parse(input) {
                Ok(cs) => panic!("{case}: parsed as {cs:?}"),
                Err(e) => assert!(check(&e), "{case}: unexpected {e:?}"),
            }
        }
    }

    #[test]
    fn instrumentation_key_must_be_a_guid() {
        // py-cs-invalid-key-* plus braces, spaces inside and the .NET "N" form.
        let bad = [
            "test1234abcd-5678-4efa-8abc-1234567890ab",
            "1234abcd-5678-4efa-8abc-1234567890abtest",
            "1234abcd-5678-4efa-8abc-12234567890ab",
            "1234abcda5678-4efa-8abc-1234567890ab",
            "1234abcda-678-4efa-8abc-1234567890ab",
            "1234abcd-678-a4efa-8abc-1234567890ab",
            "1234abcd-6789-4ef-8cabc-1234567890ab",
            "1234abcd-678-4efa-8bc-11234567890ab",
            "234abcd-678-4efa-8abc-11234567890ab",
            "x234abcd-5678-4efa-8abc-1234567890ab",
            "1234abcd-x678-4efa-8abc-1234567890ab",
            "1234abcd-5678-4xfa-8abc-1234567890ab",
            "1234abcd-5678-4efa-8abx-1234567890ab",
            "1234abcd-5678-4efa-8abc-1234567890ax",
            "{1234abcd-5678-4efa-8abc-1234567890ab}",
            "1234abcd5678-4efa8abc-1234567890ab--",
            "1234abcd56784efa8abc1234567890ab",
            "1234abcd-5678-4efa 8abc-1234567890ab",
            "１２３４abcd-5678-4efa-8abc-1234567890ab",
            "101112",
        ];
        for key in bad {
            let e = parse(&format!("InstrumentationKey={key}")).unwrap_err();
            assert_eq!(e, Error::InvalidInstrumentationKey, "{key}");
            assert!(!e.to_string().contains(key));
        }
        // Versions and variants are not checked (PY 1.0.0b58 no longer does either).
        for key in [
            "00000000-0000-0000-0000-000000000000",
            "1234ABCD-5678-6EFA-2ABC-1234567890AB",
        ] {
            assert_eq!(
                parse(&format!("InstrumentationKey={key}"))
                    .unwrap()
                    .instrumentation_key(),
                key
            );
        }
    }

    #[test]
    fn endpoint_resolution() {
        let suffix = "EndpointSuffix=ingestion.azuremonitor.com";
        // (case, rest of the connection string, ingestion, live)
        let cases: &[(&str, String, &str, &str)] = &[
            (
                "net-cs-default-endpoints",
                String::new(),
                DEFAULT_INGESTION_ENDPOINT,
                DEFAULT_LIVE_ENDPOINT,
            ),
            (
                "net-cs-endpoint-suffix",
                suffix.to_owned(),
                "https://dc.ingestion.azuremonitor.com",
                "https://live.ingestion.azuremonitor.com",
            ),
            (
                "net-cs-endpoint-suffix-with-location (py-cs-suffix-location)",
                format!("{suffix};Location=westus2"),
                "https://westus2.dc.ingestion.azuremonitor.com",
                "https://westus2.live.ingestion.azuremonitor.com",
            ),
            (
                "net-cs-extra-periods",
                "Location=westus2.;EndpointSuffix=.applicationinsights.azure.com".to_owned(),
                "https://westus2.dc.applicationinsights.azure.com",
                "https://westus2.live.applicationinsights.azure.com",
            ),
            (
                "net-cs-build-uri-extra-spaces",
                "Location= westus2 ;EndpointSuffix=   applicationinsights.azure.com   "
                    .to_owned(),
                "https://westus2.dc.applicationinsights.azure.com",
                "https://westus2.live.applicationinsights.azure.com",
            ),
            (
                "an empty Location adds no prefix",
                format!("{suffix};Location=."),
                "https://dc.ingestion.azuremonitor.com",
                "https://live.ingestion.azuremonitor.com",
            ),
            (
                "net-cs-endpoint-suffix-explicit-override",
                format!("{suffix};IngestionEndpoint=https://custom.contoso.com:444/"),
                "https://custom.contoso.com:444",
                "https://live.ingestion.azuremonitor.com",
            ),
            (
                "net-cs-endpoint-suffix-location-explicit-override",
                format!(
                    "{suffix};Location=westus2;IngestionEndpoint=https://custom.contoso.com:444/;LiveEndpoint=https://live.contoso.com"
                ),
                "https://custom.contoso.com:444",
                "https://live.contoso.com",
            ),
            (
                "explicit endpoints ignore an invalid Location",
                "EndpointSuffix=x.com;Location=!!;IngestionEndpoint=https://a.example;LiveEndpoint=https://b.example"
                    .to_owned(),
                "https://a.example",
                "https://b.example",
            ),
            (
                "Location without EndpointSuffix is ignored",
                "Location=~!@#$".to_owned(),
                DEFAULT_INGESTION_ENDPOINT,
                DEFAULT_LIVE_ENDPOINT,
            ),
            (
                "net-cs-explicit-http-preserved",
                "IngestionEndpoint=http://custom.contoso.com:444/".to_owned(),
                "http://custom.contoso.com:444",
                DEFAULT_LIVE_ENDPOINT,
            ),
            (
                "a local receiver",
                "IngestionEndpoint=http://127.0.0.1:1234;LiveEndpoint=http://[::1]:9/".to_owned(),
                "http://127.0.0.1:1234",
                "http://[::1]:9",
            ),
            (
                "a path prefix is kept, trailing slashes go",
                "IngestionEndpoint=https://proxy.example.com/ai//".to_owned(),
                "https://proxy.example.com/ai",
                DEFAULT_LIVE_ENDPOINT,
            ),
            (
                "the scheme is kept, only its case changes",
                "IngestionEndpoint=HTTP://Custom.Contoso.com".to_owned(),
                "http://custom.contoso.com",
                DEFAULT_LIVE_ENDPOINT,
            ),
            (
                "an empty endpoint value counts as absent",
                format!("IngestionEndpoint=;{suffix}"),
                "https://dc.ingestion.azuremonitor.com",
                "https://live.ingestion.azuremonitor.com",
            ),
        ];
        for (case, rest, ingestion, live) in cases {
            let (got_ingestion, got_live) = endpoints(&with_key(rest));
            assert_eq!(got_ingestion, *ingestion, "{case}");
            assert_eq!(got_live, *live, "{case}");
        }
        let cs = parse(&with_key("IngestionEndpoint=https://proxy.example.com/ai/")).unwrap();
        assert_eq!(cs.track_url(), "https://proxy.example.com/ai/v2.1/track");
    }

    #[test]
    fn endpoint_errors() {
        let ingestion = invalid_endpoint("IngestionEndpoint");
        let live = invalid_endpoint("LiveEndpoint");
        let suffix = invalid_endpoint("EndpointSuffix");
        let location = |e: &Error| *e == Error::InvalidLocation;
        let cases: &[(&str, &str, Check<'_>)] = &[
            (
                "net-cs-explicit-invalid-1",
                "IngestionEndpoint=https:////custom.contoso.com",
                &ingestion,
            ),
            (
                "net-cs-explicit-invalid-2",
                "IngestionEndpoint=https://www.~!@#$%&^*()_{}{}><?<?>:L\":\"_+_+_",
                &ingestion,
            ),
            (
                "net-cs-explicit-invalid-3",
                "EndpointSuffix=~!@#$%&^*()_{}{}><?<?>:L\":\"_+_+_",
                &suffix,
            ),
            (
                "net-cs-location-invalid",
                "EndpointSuffix=ingestion.azuremonitor.com;Location=~!@#$%&^*()_{}{}><?<?>:L\":\"_+_+_",
                &location,
            ),
            (
                "net-cs-build-uri-invalid-char-in-location",
                "EndpointSuffix=applicationinsights.azure.com;Location=westus2/",
                &location,
            ),
            (
                "a hyphen is not alphanumeric (.NET rule)",
                "EndpointSuffix=applicationinsights.azure.com;Location=west-us",
                &location,
            ),
            (
                "py-cs-endpoint-code-cs: `123` is not a URL",
                "IngestionEndpoint=123",
                &ingestion,
            ),
            (
                "py-cs-suffix: `123` gives no valid host",
                "EndpointSuffix=123;Location=US",
                &suffix,
            ),
            ("suffix of dots only", "EndpointSuffix=..", &suffix),
            ("no scheme", "IngestionEndpoint=dc.example.com", &ingestion),
            ("other scheme", "IngestionEndpoint=ftp://dc.example.com", &ingestion),
            ("one slash", "IngestionEndpoint=https:/dc.example.com", &ingestion),
            ("backslashes", "IngestionEndpoint=https:\\\\dc.example.com", &ingestion),
            ("no host", "IngestionEndpoint=https://", &ingestion),
            ("inner space", "IngestionEndpoint=https://dc.exa mple.com", &ingestion),
            ("tab", "IngestionEndpoint=https://dc.exa\tmple.com", &ingestion),
            ("user info", "IngestionEndpoint=https://u:p@dc.example.com", &ingestion),
            ("query", "IngestionEndpoint=https://dc.example.com/?a=b", &ingestion),
            ("fragment", "IngestionEndpoint=https://dc.example.com/#x", &ingestion),
            ("bad port", "LiveEndpoint=https://dc.example.com:99999", &live),
        ];
        for (case, rest, check) in cases {
            match parse(&with_key(rest)) {
                Ok(cs) => panic!("{case}: parsed as {cs:?}"),
                Err(e) => assert!(check(&e), "{case}: unexpected {e:?}"),
            }
        }
    }

    #[test]
    fn audience_and_application_id_are_kept() {
        let cs = parse(&with_key(
            "AADAudience= https://monitor.azure.us/ ;applicationid=4b4a2a3e-0000-4000-8000-000000000001",
        ))
        .unwrap();
        assert_eq!(cs.aad_audience(), Some("https://monitor.azure.us/"));
        assert_eq!(
            cs.application_id(),
            Some("4b4a2a3e-0000-4000-8000-000000000001")
        );
        let cs = parse(&with_key("AADAudience=api://x?a=b")).unwrap();
        assert_eq!(cs.aad_audience(), Some("api://x?a=b"));
    }

    /// A fake environment.
    fn env(vars: &[(&'static str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(&'static str, String)> =
            vars.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        }
    }

    const OTHER_KEY: &str = "00000000-1111-2222-3333-444444444444";
    const LEGACY_KEY: &str = "99999999-8888-7777-6666-555555555555";

    #[test]
    fn precedence_merges_field_by_field() {
        let env_cs = format!(
            "Authorization=ikey;IngestionEndpoint=https://env.example;InstrumentationKey={OTHER_KEY};AADAudience=https://env-aud"
        );
        let full_env = [
            (ENV_CONNECTION_STRING, env_cs.as_str()),
            (ENV_INSTRUMENTATION_KEY, LEGACY_KEY),
        ];
        let code_full = format!("Authorization=ikey;InstrumentationKey={KEY}");
        // (case, code, environment, key, ingestion, audience)
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            Vars<'a>,
            &'a str,
            &'a str,
            Option<&'a str>,
        );
        let cases: &[Case<'_>] = &[
            (
                "py-cs-ikey-code-cs",
                Some(&code_full),
                &full_env,
                KEY,
                "https://env.example",
                Some("https://env-aud"),
            ),
            (
                "py-cs-ikey-env-cs",
                None,
                &full_env,
                OTHER_KEY,
                "https://env.example",
                Some("https://env-aud"),
            ),
            (
                "py-cs-ikey-env-ikey",
                None,
                &[(ENV_INSTRUMENTATION_KEY, LEGACY_KEY)],
                LEGACY_KEY,
                DEFAULT_INGESTION_ENDPOINT,
                None,
            ),
            (
                "py-cs-endpoint-code-cs",
                Some("Authorization=ikey;IngestionEndpoint=https://code.example"),
                &full_env,
                OTHER_KEY,
                "https://code.example",
                Some("https://env-aud"),
            ),
            (
                "py-cs-endpoint-env-cs",
                Some(&code_full),
                &[(ENV_CONNECTION_STRING, &env_cs)],
                KEY,
                "https://env.example",
                Some("https://env-aud"),
            ),
            (
                "py-cs-endpoint-default",
                Some(&code_full),
                &[],
                KEY,
                DEFAULT_INGESTION_ENDPOINT,
                None,
            ),
            (
                "code suffix beats env explicit endpoint",
                Some("EndpointSuffix=example.net"),
                &full_env,
                OTHER_KEY,
                "https://dc.example.net",
                Some("https://env-aud"),
            ),
            (
                "code audience beats env audience",
                Some("AADAudience=https://code-aud"),
                &full_env,
                OTHER_KEY,
                "https://env.example",
                Some("https://code-aud"),
            ),
            (
                "legacy key fills in a key-less code string",
                Some("IngestionEndpoint=https://code.example"),
                &[(ENV_INSTRUMENTATION_KEY, LEGACY_KEY)],
                LEGACY_KEY,
                "https://code.example",
                None,
            ),
            (
                "blank env connection string counts as unset",
                None,
                &[
                    (ENV_CONNECTION_STRING, "  "),
                    (ENV_INSTRUMENTATION_KEY, LEGACY_KEY),
                ],
                LEGACY_KEY,
                DEFAULT_INGESTION_ENDPOINT,
                None,
            ),
            (
                "legacy key is trimmed",
                None,
                &[(
                    ENV_INSTRUMENTATION_KEY,
                    " 99999999-8888-7777-6666-555555555555\n",
                )],
                LEGACY_KEY,
                DEFAULT_INGESTION_ENDPOINT,
                None,
            ),
            (
                "an invalid legacy key is not read when not needed",
                None,
                &[
                    (ENV_CONNECTION_STRING, &env_cs),
                    (ENV_INSTRUMENTATION_KEY, "101112"),
                ],
                OTHER_KEY,
                "https://env.example",
                Some("https://env-aud"),
            ),
        ];
        for (case, code, vars, key, ingestion, audience) in cases {
            let cs = ConnectionString::resolve(*code, &env(vars))
                .unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(cs.instrumentation_key(), *key, "{case}");
            assert_eq!(cs.ingestion_endpoint(), *ingestion, "{case}");
            assert_eq!(cs.aad_audience(), *audience, "{case}");
        }
    }

    #[test]
    fn precedence_errors() {
        let key_only = format!("InstrumentationKey={KEY}");
        let env_error = |variable, error| Error::InEnvironment {
            variable,
            error: Box::new(error),
        };
        // (case, code, environment, error)
        let cases: &[(&str, Option<&str>, Vars<'_>, Error)] = &[
            ("nothing set", None, &[], Error::NotConfigured),
            (
                "blank variables",
                None,
                &[(ENV_CONNECTION_STRING, ""), (ENV_INSTRUMENTATION_KEY, " ")],
                Error::NotConfigured,
            ),
            ("empty code string", Some(""), &[], Error::Empty),
            (
                "code string without key",
                Some("IngestionEndpoint=https://a.example"),
                &[],
                Error::MissingInstrumentationKey,
            ),
            (
                "env string without key",
                None,
                &[(ENV_CONNECTION_STRING, "IngestionEndpoint=https://a.example")],
                Error::MissingInstrumentationKey,
            ),
            (
                "a malformed env string is reported even when code has a key",
                Some(&key_only),
                &[(ENV_CONNECTION_STRING, "a;b=c")],
                env_error(ENV_CONNECTION_STRING, Error::MissingEquals { position: 1 }),
            ),
            (
                "an invalid env key is reported with its variable",
                None,
                &[(ENV_CONNECTION_STRING, "InstrumentationKey=789")],
                env_error(ENV_CONNECTION_STRING, Error::InvalidInstrumentationKey),
            ),
            (
                "an invalid legacy key is reported with its variable",
                None,
                &[(ENV_INSTRUMENTATION_KEY, "101112")],
                env_error(ENV_INSTRUMENTATION_KEY, Error::InvalidInstrumentationKey),
            ),
            (
                "code errors are not wrapped",
                Some("InstrumentationKey=789"),
                &[(ENV_CONNECTION_STRING, "InstrumentationKey=101112")],
                Error::InvalidInstrumentationKey,
            ),
        ];
        for (case, code, vars, expected) in cases {
            let got = ConnectionString::resolve(*code, &env(vars));
            assert_eq!(got.as_ref().err(), Some(expected), "{case}: {got:?}");
        }
    }

    #[test]
    fn debug_redacts_the_key() {
        let cs = parse(&with_key("IngestionEndpoint=https://a.example")).unwrap();
        let debug = format!("{cs:?}");
        assert!(!debug.contains(KEY), "{debug}");
        assert!(!debug.contains("1234abcd"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
        assert!(debug.contains("https://a.example"), "{debug}");
        assert!(!format!("{cs:#?}").contains(KEY));
    }

    #[test]
    fn no_error_message_shows_the_key() {
        let inputs = [
            KEY.to_owned(),
            format!("{KEY};InstrumentationKey={KEY}"),
            format!("InstrumentationKey={KEY};{KEY}"),
            format!("InstrumentationKey={KEY};={KEY}"),
            format!("{KEY}={KEY};{KEY}={KEY}"),
            format!("InstrumentationKey={KEY};InstrumentationKey={KEY}"),
            format!("InstrumentationKey={KEY}x"),
            format!("InstrumentationKey={{{KEY}}}"),
            format!("InstrumentationKey={KEY};IngestionEndpoint={KEY}"),
            format!("InstrumentationKey={KEY};IngestionEndpoint=https://{KEY}:x"),
            format!("InstrumentationKey={KEY};IngestionEndpoint=ftp://{KEY}"),
            format!("InstrumentationKey={KEY};EndpointSuffix={KEY}/?"),
            format!("InstrumentationKey={KEY};EndpointSuffix=x.com;Location={KEY}"),
            format!("InstrumentationKey={KEY};Authorization={KEY}"),
            format!("InstrumentationKey={KEY};Pad={}", "x".repeat(MAX_LENGTH)),
        ];
        for input in &inputs {
            let e = parse(input).unwrap_err();
            for shown in [e.to_string(), format!("{e:?}")] {
                assert!(!shown.contains(KEY), "{input}: {shown}");
            }
            let e = ConnectionString::resolve(None, &env(&[(ENV_CONNECTION_STRING, input)]))
                .unwrap_err();
            assert!(!e.to_string().contains(KEY), "{input}: {e}");
        }
        let e = ConnectionString::resolve(
            None,
            &env(&[(ENV_INSTRUMENTATION_KEY, &format!("{{{KEY}}}"))]),
        )
        .unwrap_err();
        assert!(!e.to_string().contains(KEY), "{e}");
    }

    #[test]
    fn messages_name_what_to_fix() {
        let e = parse("IngestionEndpoint=https://a.example;secret").unwrap_err();
        assert_eq!(
            e.to_string(),
            "segment 2 of the connection string has no `=`: write every segment as `Key=Value` \
             and separate segments with `;` (the segment is not shown, it may be secret)"
        );
        let e = parse(&with_key("LiveEndpoint=ftp://x")).unwrap_err();
        assert!(e.to_string().starts_with(
            "LiveEndpoint in the connection string is not a usable endpoint (the scheme must be"
        ));
        let e = parse("A=1;a=2").unwrap_err();
        assert!(e.to_string().contains("segments 1 and 2"), "{e}");
        assert!(e.to_string().contains("the same key"), "{e}");
        let e = parse(&format!("InstrumentationKey={KEY};INSTRUMENTATIONKEY=x")).unwrap_err();
        assert!(e.to_string().contains("both set InstrumentationKey"), "{e}");
        let e = ConnectionString::resolve(None, &env(&[(ENV_CONNECTION_STRING, "x")])).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "environment variable APPLICATIONINSIGHTS_CONNECTION_STRING: segment 1"
            ),
            "{e}"
        );
        let e = parse(&"x".repeat(5000)).unwrap_err();
        assert!(e.to_string().contains("5000 characters"), "{e}");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn guid() -> impl Strategy<Value = String> {
            "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
        }

        /// Connection-string-like text: pieces of the grammar, known keys, URLs, noise, and the
        /// GUID in every kind of place.
        fn with_guid() -> impl Strategy<Value = (String, String)> {
            guid().prop_flat_map(|g| {
                let piece = prop_oneof![
                    Just(g.clone()),
                    Just(format!("InstrumentationKey={g}")),
                    Just(format!("IngestionEndpoint=https://{g}.example")),
                    Just(format!("{{{g}}}")),
                    Just(";".to_owned()),
                    Just("=".to_owned()),
                    Just(" ".to_owned()),
                    prop::sample::select(KnownKey::ALL.map(KnownKey::name).to_vec())
                        .prop_map(str::to_owned),
                    Just("https://".to_owned()),
                    Just("http://127.0.0.1:1/".to_owned()),
                    Just("ikey".to_owned()),
                    "[a-zA-Z0-9./:@?#\\\\-]{0,8}",
                    any::<String>(),
                ];
                (
                    Just(g),
                    prop::collection::vec(piece, 0..16).prop_map(|p| p.concat()),
                )
            })
        }

        proptest! {
            #[test]
            fn parser_never_panics(s in any::<String>()) {
                let _ = parse(&s);
                let _ = ConnectionString::resolve(Some(&s), &|_| None);
                let _ = ConnectionString::resolve(None, &|_| Some(s.clone()));
            }

            #[test]
            fn parser_never_panics_on_near_misses(s in "([A-Za-z ]{0,20}=[ -~]{0,40};?){0,6}") {
                let _ = parse(&s);
            }

            #[test]
            fn errors_never_show_the_key((g, s) in with_guid()) {
                if let Err(e) = parse(&s) {
                    prop_assert!(!e.to_string().contains(&g), "{}", e);
                    prop_assert!(!format!("{:?}", e).contains(&g), "{:?}", e);
                }
                let env_lookup = |name: &str| (name == ENV_CONNECTION_STRING).then(|| s.clone());
                if let Err(e) = ConnectionString::resolve(None, &env_lookup) {
                    prop_assert!(!e.to_string().contains(&g), "{}", e);
                }
            }

            #[test]
            fn valid_strings_round_trip(g in guid(), host in "[a-z][a-z0-9]{0,10}(\\.[a-z0-9]{1,8}){0,3}\\.[a-z]{2,5}", path in "(/[a-z0-9]{1,5}){0,2}/?", spaces in " {0,3}") {
                let s = format!("{spaces}instrumentationkey{spaces}={spaces}{g};IngestionEndpoint=https://{host}{path};");
                let cs = parse(&s).unwrap();
                prop_assert_eq!(cs.instrumentation_key(), g.as_str());
                prop_assert_eq!(cs.ingestion_endpoint(), format!("https://{host}{}", path.trim_end_matches('/')));
                let debug = format!("{cs:?}");
                prop_assert!(!debug.contains(&g), "{}", debug);
            }
        }
    }
}
