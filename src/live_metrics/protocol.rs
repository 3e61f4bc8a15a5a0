//! The `2024-04-01-preview` wire protocol (LIVE-METRICS.md §1–§3, §5–§7): URLs, headers,
//! `MonitoringDataPoint` bodies, .NET ticks, the polling hint and the redirect rule. Pure.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Url;
use serde::Serialize;

use super::document::Document;
use super::filter::ConfigError;
use crate::wire::Timestamp;

/// The API version of every request.
pub(crate) const API_VERSION: &str = "2024-04-01-preview";
/// `x-ms-qps-invariant-version`: 5 says "filtering is supported".
pub(crate) const INVARIANT_VERSION: i32 = 5;

pub(crate) const HEADER_TRANSMISSION_TIME: &str = "x-ms-qps-transmission-time";
pub(crate) const HEADER_MACHINE_NAME: &str = "x-ms-qps-machine-name";
pub(crate) const HEADER_INSTANCE_NAME: &str = "x-ms-qps-instance-name";
pub(crate) const HEADER_STREAM_ID: &str = "x-ms-qps-stream-id";
pub(crate) const HEADER_ROLE_NAME: &str = "x-ms-qps-role-name";
pub(crate) const HEADER_INVARIANT_VERSION: &str = "x-ms-qps-invariant-version";
pub(crate) const HEADER_ETAG: &str = "x-ms-qps-configuration-etag";
pub(crate) const HEADER_SUBSCRIBED: &str = "x-ms-qps-subscribed";
pub(crate) const HEADER_POLLING_HINT: &str = "x-ms-qps-service-polling-interval-hint";
pub(crate) const HEADER_REDIRECT: &str = "x-ms-qps-service-endpoint-redirect-v2";

/// The 11 metric names (§7), old and new names of CPU and memory.
pub(crate) mod names {
    pub(crate) const REQUESTS: &str = r"\ApplicationInsights\Requests/Sec";
    pub(crate) const REQUESTS_FAILED: &str = r"\ApplicationInsights\Requests Failed/Sec";
    pub(crate) const REQUEST_DURATION: &str = r"\ApplicationInsights\Request Duration";
    pub(crate) const DEPENDENCIES: &str = r"\ApplicationInsights\Dependency Calls/Sec";
    pub(crate) const DEPENDENCIES_FAILED: &str =
        r"\ApplicationInsights\Dependency Calls Failed/Sec";
    pub(crate) const DEPENDENCY_DURATION: &str = r"\ApplicationInsights\Dependency Call Duration";
    pub(crate) const EXCEPTIONS: &str = r"\ApplicationInsights\Exceptions/Sec";
    pub(crate) const MEMORY_OLD: &str = r"\Memory\Committed Bytes";
    pub(crate) const MEMORY: &str = r"\Process\Physical Bytes";
    pub(crate) const CPU_OLD: &str = r"\Processor(_Total)\% Processor Time";
    pub(crate) const CPU: &str = r"\% Process\Processor Time Normalized";
}

/// `{base}/QuickPulseService.svc/{ping|post}?api-version=...&ikey=...`.
pub(crate) fn url(base: &Url, operation: &str, ikey: &str) -> Url {
    let mut url = base.clone();
    let path = format!(
        "{}/QuickPulseService.svc/{operation}",
        base.path().trim_end_matches('/')
    );
    url.set_path(&path);
    url.query_pairs_mut()
        .clear()
        .append_pair("api-version", API_VERSION)
        .append_pair("ikey", ikey);
    url
}

/// .NET ticks (100 ns since 0001-01-01 UTC) of `t`.
pub(crate) fn ticks(t: SystemTime) -> i64 {
    const EPOCH_TICKS: i64 = 621_355_968_000_000_000;
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    EPOCH_TICKS + (since.as_nanos() / 100) as i64
}

/// The polling hint in ms, when it is a sensible number (at most a day).
pub(crate) fn polling_hint(value: Option<&str>) -> Option<Duration> {
    let ms: u64 = value?.trim().parse().ok()?;
    (ms > 0 && ms <= 86_400_000).then(|| Duration::from_millis(ms))
}

/// Hosts between which a redirect may move (as the Python exporter, §5).
const ALLOWED_REDIRECT_SUFFIXES: [&str; 8] = [
    ".livediagnostics.monitor.azure.com",
    ".monitor.azure.com",
    ".services.visualstudio.com",
    ".applicationinsights.azure.com",
    ".monitor.azure.us",
    ".applicationinsights.azure.us",
    ".monitor.azure.cn",
    ".applicationinsights.azure.cn",
];

/// The base URL a `x-ms-qps-service-endpoint-redirect-v2` value moves to, from `current`
/// (§5 R): scheme, host and port only; no user info; the same host, or for Azure hosts both
/// hosts ending with the same allowed suffix; `https`, except that a plain-`http` endpoint
/// (a local fake or proxy) may move to the same host on another port. The error says why not.
pub(crate) fn redirect_target(current: &Url, value: &str) -> Result<Url, String> {
    let next = Url::parse(value.trim()).map_err(|e| format!("an unreadable URL ({e})"))?;
    let host = next
        .host_str()
        .map(str::to_ascii_lowercase)
        .filter(|h| !h.is_empty())
        .ok_or("a URL without a host")?;
    if !next.username().is_empty() || next.password().is_some() {
        return Err("a URL with user information".to_owned());
    }
    let from = current.host_str().unwrap_or_default().to_ascii_lowercase();
    let same_host = host == from;
    match next.scheme() {
        "https" => {}
        "http" if same_host && current.scheme() == "http" => {}
        s => return Err(format!("a {s} URL (only https is followed)")),
    }
    let same_suffix = ALLOWED_REDIRECT_SUFFIXES
        .iter()
        .any(|suffix| from.ends_with(suffix) && host.ends_with(suffix));
    if !(same_host || same_suffix) {
        return Err(format!("host {host:?} is outside the Live Metrics domains"));
    }
    let mut base = next;
    base.set_path("");
    base.set_query(None);
    base.set_fragment(None);
    Ok(base)
}

/// Who sends: the same for every request of the process.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Identity {
    /// `ai.internal.sdkVersion`.
    pub(crate) version: String,
    /// `ai.cloud.roleInstance`.
    pub(crate) instance: String,
    /// `ai.cloud.role`.
    pub(crate) role_name: String,
    pub(crate) machine_name: String,
    /// 32 hex digits, random per process.
    pub(crate) stream_id: String,
    /// `WEBSITE_SITE_NAME` is set.
    pub(crate) is_web_app: bool,
}

/// One `{Name, Value, Weight}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct MetricPoint {
    pub(crate) name: String,
    pub(crate) value: f64,
    pub(crate) weight: i32,
}

/// A `MonitoringDataPoint` (§6).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DataPoint<'a> {
    version: &'a str,
    invariant_version: i32,
    instance: &'a str,
    role_name: &'a str,
    machine_name: &'a str,
    stream_id: &'a str,
    timestamp: String,
    is_web_app: bool,
    performance_collection_supported: bool,
    metrics: &'a [MetricPoint],
    documents: &'a [Document],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    collection_configuration_errors: &'a [ConfigError],
}

impl<'a> DataPoint<'a> {
    pub(crate) fn new(
        id: &'a Identity,
        now: SystemTime,
        metrics: &'a [MetricPoint],
        documents: &'a [Document],
        errors: &'a [ConfigError],
    ) -> Self {
        let stamp = Timestamp(now).to_bytes();
        DataPoint {
            version: &id.version,
            invariant_version: INVARIANT_VERSION,
            instance: &id.instance,
            role_name: &id.role_name,
            machine_name: &id.machine_name,
            stream_id: &id.stream_id,
            timestamp: String::from_utf8_lossy(&stamp).into_owned(),
            is_web_app: id.is_web_app,
            performance_collection_supported: true,
            metrics,
            documents,
            collection_configuration_errors: errors,
        }
    }
}

/// The ping body: one data point without metrics.
pub(crate) fn ping_body(id: &Identity, now: SystemTime) -> Vec<u8> {
    serde_json::to_vec(&DataPoint::new(id, now, &[], &[], &[])).unwrap_or_default()
}

/// The post body: an array of one data point.
pub(crate) fn post_body(point: &DataPoint<'_>) -> Vec<u8> {
    serde_json::to_vec(&[point]).unwrap_or_default()
}

/// The headers of a request (§2): identity headers on pings only.
pub(crate) fn headers(
    id: &Identity,
    ping: bool,
    etag: &str,
    now: SystemTime,
) -> Vec<(&'static str, String)> {
    let mut h = vec![
        (HEADER_TRANSMISSION_TIME, ticks(now).to_string()),
        (HEADER_ETAG, etag.to_owned()),
    ];
    if ping {
        h.extend([
            (HEADER_MACHINE_NAME, id.machine_name.clone()),
            (HEADER_INSTANCE_NAME, id.instance.clone()),
            (HEADER_STREAM_ID, id.stream_id.clone()),
            (HEADER_ROLE_NAME, id.role_name.clone()),
            (HEADER_INVARIANT_VERSION, INVARIANT_VERSION.to_string()),
        ]);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s)
            .unwrap_or_else(|_| Url::parse("http://invalid").unwrap_or_else(|_| unreachable!()))
    }

    #[test]
    fn urls_carry_the_api_version_and_the_key() {
        let base = u("https://westus.livediagnostics.monitor.azure.com");
        assert_eq!(
            url(&base, "ping", "k").as_str(),
            "https://westus.livediagnostics.monitor.azure.com/QuickPulseService.svc/ping?api-version=2024-04-01-preview&ikey=k"
        );
        let base = u("http://127.0.0.1:9/prefix/");
        assert_eq!(
            url(&base, "post", "k").as_str(),
            "http://127.0.0.1:9/prefix/QuickPulseService.svc/post?api-version=2024-04-01-preview&ikey=k"
        );
    }

    #[test]
    fn ticks_count_from_year_one() {
        assert_eq!(ticks(UNIX_EPOCH), 621_355_968_000_000_000);
        assert_eq!(
            ticks(UNIX_EPOCH + Duration::from_millis(1_706_650_381_702)),
            638_422_471_817_020_000
        );
    }

    #[test]
    fn polling_hints() {
        assert_eq!(polling_hint(Some("300")), Some(Duration::from_millis(300)));
        assert_eq!(polling_hint(Some("0")), None);
        assert_eq!(polling_hint(Some("x")), None);
        assert_eq!(polling_hint(None), None);
    }

    #[test]
    fn redirects_follow_the_allow_list() {
        let azure = u("https://rt.services.visualstudio.com");
        let ok = redirect_target(
            &u("https://global.livediagnostics.monitor.azure.com"),
            "https://westus.livediagnostics.monitor.azure.com/QuickPulseService.svc",
        );
        assert_eq!(
            ok.map(|u| u.to_string()),
            Ok("https://westus.livediagnostics.monitor.azure.com/".to_owned())
        );
        assert!(redirect_target(&azure, "https://westus.rt.services.visualstudio.com").is_ok());
        for refused in [
            "http://westus.rt.services.visualstudio.com",
            "https://evil.example",
            "https://user:pw@westus.rt.services.visualstudio.com",
            "https://evil.example/.services.visualstudio.com",
            "not a url",
            "ftp://rt.services.visualstudio.com",
        ] {
            assert!(redirect_target(&azure, refused).is_err(), "{refused}");
        }
        let fake = u("http://127.0.0.1:4000");
        assert_eq!(
            redirect_target(&fake, "http://127.0.0.1:4001/QuickPulseService.svc")
                .map(|u| u.to_string()),
            Ok("http://127.0.0.1:4001/".to_owned())
        );
        assert!(redirect_target(&fake, "http://localhost:4001").is_err());
        assert!(redirect_target(&fake, "https://evil.example").is_err());
    }

    #[test]
    fn data_points_have_every_required_field() {
        let id = Identity {
            version: "ulm_rust:otel:ext0.1.0".into(),
            instance: "host-1".into(),
            role_name: "shop".into(),
            machine_name: "host-1".into(),
            stream_id: "0123456789abcdef0123456789abcdef".into(),
            is_web_app: false,
        };
        let body: serde_json::Value =
            serde_json::from_slice(&ping_body(&id, UNIX_EPOCH)).unwrap_or_default();
        assert_eq!(body["InvariantVersion"], 5);
        assert_eq!(body["Timestamp"], "1970-01-01T00:00:00.000000Z");
        assert_eq!(body["PerformanceCollectionSupported"], true);
        assert_eq!(body["IsWebApp"], false);
        assert_eq!(body["Metrics"], serde_json::json!([]));
        assert!(body.get("CollectionConfigurationErrors").is_none());
        let h = headers(&id, true, "", UNIX_EPOCH);
        assert_eq!(h.len(), 7);
        assert_eq!(headers(&id, false, "e", UNIX_EPOCH).len(), 2);
    }
}
