//! Which token provider and scope an exporter uses (pure rules), and `resolve`, which applies
//! them in `build()`.

use std::net::IpAddr;

use super::{ProviderRef, TokenCache};
use crate::error::BuildError;

/// The environment variable that turns Entra ID on without code (ENTRA-ID.md §2).
pub(crate) const ENV_AUTHENTICATION_STRING: &str = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING";

/// The public cloud's scope: audience `https://monitor.azure.com/` + `/.default`, as the
/// Python and .NET exporters ask for it (ENTRA-ID.md §1).
pub(crate) const DEFAULT_SCOPE: &str = "https://monitor.azure.com//.default";

/// The scope to ask tokens for: [`DEFAULT_SCOPE`], or `{AADAudience}/.default` (an audience
/// with a trailing `/` gives the double slash, which is valid), or the audience unchanged when
/// it already ends in `/.default` (ENTRA-ID.md §1, R).
pub(crate) fn scope(aad_audience: Option<&str>) -> String {
    match aad_audience.map(str::trim).filter(|a| !a.is_empty()) {
        None => DEFAULT_SCOPE.to_owned(),
        Some(a) if a.ends_with("/.default") => a.to_owned(),
        Some(a) => format!("{a}/.default"),
    }
}

/// `APPLICATIONINSIGHTS_AUTHENTICATION_STRING`, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AuthenticationString {
    /// `Authorization=AAD`: the system-assigned managed identity.
    SystemAssigned,
    /// `Authorization=AAD;ClientId=<guid>`: the user-assigned managed identity with this client
    /// id.
    UserAssigned(String),
}

/// Parses `APPLICATIONINSIGHTS_AUTHENTICATION_STRING` as the Python and JavaScript exporters
/// do: `;`-separated `Key=Value` segments, keys case-insensitive, spaces around keys and values
/// ignored, the value `AAD` compared case-sensitively. Unknown keys are ignored.
///
/// # Errors
///
/// What is wrong, naming the key; the official exporters log and ignore a malformed string,
/// here `build()` fails so that the mistake is seen (the value holds no secret, but the
/// message quotes only what is needed).
pub(crate) fn parse_authentication_string(s: &str) -> Result<AuthenticationString, String> {
    let mut authorization = None;
    let mut client_id = None;
    for (n, segment) in s.split(';').enumerate() {
        if segment.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = segment.split_once('=') else {
            return Err(format!(
                "segment {} is not `Key=Value` (expected `Authorization=AAD` or \
                 `Authorization=AAD;ClientId=<client id of a user-assigned identity>`)",
                n + 1
            ));
        };
        let (key, value) = (key.trim(), value.trim());
        if key.eq_ignore_ascii_case("Authorization") {
            authorization = Some(value);
        } else if key.eq_ignore_ascii_case("ClientId") {
            // An empty value counts as absent, as in connection strings.
            client_id = Some(value).filter(|v| !v.is_empty());
        }
    }
    match authorization {
        Some("AAD") => {}
        Some(other) => {
            return Err(format!(
                "`Authorization` must be `AAD` (upper case), got {:?}",
                cut(other)
            ))
        }
        None => return Err("`Authorization=AAD` is missing".to_owned()),
    }
    match client_id {
        None => Ok(AuthenticationString::SystemAssigned),
        Some(id) if is_guid(id) => Ok(AuthenticationString::UserAssigned(id.to_owned())),
        Some(_) => Err(
            "`ClientId` must be the client id (a GUID) of a user-assigned managed identity"
                .to_owned(),
        ),
    }
}

fn cut(s: &str) -> &str {
    crate::wire::limits::truncate_str(s, 16)
}

fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether a bearer token may be sent to `url`: over https, or over http to a loopback host
/// (`localhost`, `127.0.0.0/8`, `::1`), so that local fakes work (ENTRA-ID.md §3, R). The Azure
/// SDKs refuse http altogether.
pub(crate) fn bearer_allowed(url: &reqwest::Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => url.host_str().is_some_and(is_loopback),
        _ => false,
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The token cache of an exporter, or `None` without Entra ID: the provider given in code,
/// else the one `APPLICATIONINSIGHTS_AUTHENTICATION_STRING` asks for (feature
/// `azure-identity`), for the scope of `aad_audience`.
///
/// # Errors
///
/// [`BuildError::Authentication`] for a malformed authentication string or a managed identity
/// that cannot be used; [`BuildError::InsecureEndpoint`] when a token would go to `track_url`
/// over plain http to a host that is not loopback.
pub(crate) fn resolve(
    code: Option<ProviderRef>,
    aad_audience: Option<&str>,
    track_url: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<TokenCache>, BuildError> {
    let provider = match code {
        Some(provider) => provider,
        None => match from_env(env)? {
            Some(provider) => provider,
            None => return Ok(None),
        },
    };
    // An unparsable URL is reported by the transmitter.
    if let Ok(url) = reqwest::Url::parse(track_url) {
        if !bearer_allowed(&url) {
            return Err(BuildError::InsecureEndpoint(track_url.to_owned()));
        }
    }
    Ok(Some(TokenCache::shared(provider, scope(aad_audience))))
}

/// The provider `APPLICATIONINSIGHTS_AUTHENTICATION_STRING` asks for, if it is set.
fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<ProviderRef>, BuildError> {
    let Some(value) = env(ENV_AUTHENTICATION_STRING).filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    let parsed = parse_authentication_string(&value).map_err(|why| {
        BuildError::Authentication(format!("{ENV_AUTHENTICATION_STRING} is malformed: {why}"))
    })?;
    managed_identity(&parsed)
}

#[cfg(feature = "azure-identity")]
fn managed_identity(parsed: &AuthenticationString) -> Result<Option<ProviderRef>, BuildError> {
    super::azure::managed_identity(parsed)
        .map(Some)
        .map_err(|why| {
            BuildError::Authentication(format!(
                "{ENV_AUTHENTICATION_STRING} asks for a managed identity, which cannot be used \
                 here: {why}"
            ))
        })
}

/// Without the `azure-identity` feature there is no managed identity client: the exporters run
/// without a token (which works while the resource accepts local authentication) and say so.
#[cfg(not(feature = "azure-identity"))]
fn managed_identity(_: &AuthenticationString) -> Result<Option<ProviderRef>, BuildError> {
    opentelemetry::otel_warn!(
        name: "AzureMonitor.Auth.FeatureMissing",
        message = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING asks for Entra ID with a managed identity, but this build lacks the `azure-identity` feature; telemetry is sent without a token and is refused if the resource disables local authentication. Enable the feature or pass a token provider with `with_token_provider`."
    );
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        let cases = [
            (None, "https://monitor.azure.com//.default"),
            (Some(""), "https://monitor.azure.com//.default"),
            (
                Some("https://monitor.azure.us"),
                "https://monitor.azure.us/.default",
            ),
            (
                Some("https://monitor.azure.cn/"),
                "https://monitor.azure.cn//.default",
            ),
            (
                Some("https://monitor.azure.com/.default"),
                "https://monitor.azure.com/.default",
            ),
            (Some(" api://custom "), "api://custom/.default"),
        ];
        for (audience, expected) in cases {
            assert_eq!(scope(audience), expected, "{audience:?}");
        }
    }

    #[test]
    fn authentication_strings() {
        use AuthenticationString::*;
        let id = "4b4a2a3e-0000-4000-8000-00000000000A";
        let ok = [
            ("Authorization=AAD", SystemAssigned),
            (" authorization = AAD ;", SystemAssigned),
            ("AUTHORIZATION=AAD;Other=x", SystemAssigned),
            ("Authorization=AAD;ClientId=", SystemAssigned),
            (
                &format!("Authorization=AAD;clientid={id}"),
                UserAssigned(id.into()),
            ),
            (
                &format!("ClientId={id};Authorization=AAD"),
                UserAssigned(id.into()),
            ),
        ];
        for (s, expected) in ok {
            assert_eq!(parse_authentication_string(s), Ok(expected), "{s}");
        }
        let bad = [
            (
                "Authorization=aad",
                "`Authorization` must be `AAD` (upper case), got \"aad\"",
            ),
            (
                "Authorization=ikey",
                "`Authorization` must be `AAD` (upper case), got \"ikey\"",
            ),
            ("ClientId=x", "`Authorization=AAD` is missing"),
            ("AAD", "segment 1 is not `Key=Value`"),
            (
                "Authorization=AAD;ClientId=not-a-guid",
                "`ClientId` must be the client id",
            ),
            (
                "Authorization=AAD;ClientId=4b4a2a3e-0000-4000-8000-00000000000",
                "`ClientId`",
            ),
        ];
        for (s, expected) in bad {
            let err = parse_authentication_string(s).unwrap_err();
            assert!(err.starts_with(expected), "{s}: {err}");
        }
        // A long value is quoted cut short.
        let long = format!("Authorization={}", "x".repeat(100));
        let err = parse_authentication_string(&long).unwrap_err();
        assert!(err.len() < 80, "{err}");
    }

    #[test]
    fn bearer_only_over_https_or_loopback() {
        let cases = [
            ("https://dc.services.visualstudio.com/v2.1/track", true),
            ("https://10.0.0.1/v2.1/track", true),
            ("http://127.0.0.1:8080/v2.1/track", true),
            ("http://127.8.9.10/v2.1/track", true),
            ("http://localhost:1/v2.1/track", true),
            ("http://LOCALHOST./v2.1/track", true),
            ("http://[::1]:9/v2.1/track", true),
            ("http://dc.services.visualstudio.com/v2.1/track", false),
            ("http://10.0.0.1/v2.1/track", false),
            ("http://localhost.example.com/v2.1/track", false),
            ("http://[::2]/v2.1/track", false),
            ("ftp://127.0.0.1/", false),
        ];
        for (url, expected) in cases {
            let url = reqwest::Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(bearer_allowed(&url), expected, "{url}");
        }
    }
}
