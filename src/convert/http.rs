//! HTTP URLs, status codes and dependency targets (MAPPING.md §3.3, §3.4): the rules that
//! request and dependency items and the HTTP standard metrics share.

use std::borrow::Cow;

use opentelemetry::Value;

use super::attributes::{join, render, to_int};
use super::semconv::{
    Key, Known, DB_SYSTEM, HTTP_STATUS_CODE, NET_HOST, NET_PEER_HOST, PEER_SERVICE, URL_FULL,
    URL_SCHEME,
};

/// The HTTP status code as an integer; 0 when missing or not a number (PY `int()`).
pub(crate) fn status_code(k: &Known<'_>) -> i64 {
    k.first(HTTP_STATUS_CODE).and_then(to_int).unwrap_or(0)
}

/// Where the host of a composed URL comes from when neither `server.address` nor `http.host`
/// is there: the server's own name (requests) or the peer (dependencies).
#[derive(Clone, Copy)]
pub(crate) enum HostFallback {
    Server,
    Peer,
}

/// The URL of an HTTP span (§3.3 request algorithm; for dependencies §3.4 R, the same with
/// the peer as the last host fallback): `url.full`, else `http.url`, else composed from the
/// scheme, the host and the target (`url.path` + `?` + `url.query`, or `http.target`). A
/// request without a scheme is taken to be `http`.
pub(crate) fn http_url<'a>(k: &Known<'a>, fallback: HostFallback) -> Option<Cow<'a, str>> {
    if let Some(url) = k.text(URL_FULL) {
        return Some(url);
    }
    let scheme = match (k.text(URL_SCHEME), fallback) {
        (Some(scheme), _) => scheme,
        // Beyond PY: a server span with a path and a host but no (or an empty) scheme, as
        // axum-tracing-opentelemetry records a plain HTTP/1.1 request, whose request line has
        // no scheme: it came over plain HTTP (TLS ends in front of such a server).
        (None, HostFallback::Server) => Cow::Borrowed("http"),
        (None, HostFallback::Peer) => return None,
    };
    let (target, query) = match k.text(&[Key::UrlPath]) {
        Some(path) => (path, k.text(&[Key::UrlQuery])),
        None => (k.text(&[Key::HttpTarget])?, None),
    };
    let (host, port) = if let Some(address) = k.text(&[Key::ServerAddress]) {
        (address, k.first(&[Key::ServerPort]).map(render))
    } else if let Some(host) = k.text(&[Key::HttpHost]) {
        (host, None)
    } else {
        match fallback {
            HostFallback::Server => (k.text(NET_HOST)?, k.text(&[Key::NetHostPort])),
            HostFallback::Peer => (k.text(NET_PEER_HOST)?, k.text(&[Key::NetPeerPort])),
        }
    };
    let mut url = String::with_capacity(
        scheme.len()
            + 3
            + host.len()
            + port.as_ref().map_or(0, |p| p.len() + 1)
            + target.len()
            + query.as_ref().map_or(0, |q| q.len() + 1),
    );
    url.push_str(&scheme);
    url.push_str("://");
    url.push_str(&host);
    if let Some(port) = &port {
        url.push(':');
        url.push_str(port);
    }
    url.push_str(&target);
    if let Some(query) = &query {
        // R: no second `?` when the query already starts with one.
        if !query.starts_with('?') {
            url.push('?');
        }
        url.push_str(query);
    }
    Some(Cow::Owned(url))
}

/// The parts of a URL that the mapping needs, as Python's `urlparse` splits them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct UrlParts<'u> {
    pub(crate) scheme: &'u str,
    pub(crate) netloc: &'u str,
    pub(crate) path: &'u str,
}

pub(crate) fn split_url(url: &str) -> UrlParts<'_> {
    let mut parts = UrlParts::default();
    let mut rest = url;
    if let Some((scheme, after)) = rest.split_once(':') {
        let mut bytes = scheme.bytes();
        let valid = bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
            && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if valid {
            parts.scheme = scheme;
            rest = after;
        }
    }
    if let Some(after) = rest.strip_prefix("//") {
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let (netloc, tail) = after.split_at(end);
        parts.netloc = netloc;
        rest = tail;
    }
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    parts.path = rest.split_at(end).0;
    parts
}

pub(crate) fn path_or_root(path: &str) -> &str {
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

/// `host[:port]` (or `[v6][:port]`) without any `user@`; the port only if it is a number.
pub(crate) fn split_host_port(netloc: &str) -> (&str, Option<i64>) {
    let hostport = netloc.rsplit_once('@').map_or(netloc, |(_, h)| h);
    let (host, port) = if hostport.starts_with('[') {
        match hostport.find(']') {
            Some(end) => {
                let (host, rest) = hostport.split_at(end + 1);
                (host, rest.strip_prefix(':'))
            }
            None => (hostport, None),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    match port {
        None => (host, None),
        Some(p) => match p.parse::<u16>() {
            Ok(n) if p.bytes().all(|b| b.is_ascii_digit()) => (host, Some(i64::from(n))),
            // Not a port: keep everything as the host.
            _ => (hostport, None),
        },
    }
}

pub(crate) fn default_http_port(scheme: &str) -> i64 {
    if scheme.eq_ignore_ascii_case("http") {
        80
    } else if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        0
    }
}

/// PY `_get_default_port_db`, with the stable `db.system.name` values as well.
fn default_db_port(system: &str) -> i64 {
    match system {
        "postgresql" => 5432,
        "cassandra" => 9042,
        "mysql" | "mariadb" => 3306,
        "mssql" | "microsoft.sql_server" => 1433,
        "memcached" => 11211,
        "db2" | "ibm.db2" => 50000,
        "oracle" | "oracle.db" => 1521,
        "h2" | "h2database" => 8082,
        "derby" => 1527,
        "redis" => 6379,
        _ => 0,
    }
}

/// `host` or `host:port`, leaving out a port that is the default for the span's URL scheme
/// or database system.
fn with_port<'a>(k: &Known<'a>, host: Cow<'a, str>, port: Option<&'a Value>) -> Cow<'a, str> {
    let Some(port) = port else {
        return host;
    };
    if let Some(n) = to_int(port) {
        let http = k.str(URL_SCHEME).map_or(0, default_http_port);
        let db = k.str(DB_SYSTEM).map_or(0, default_db_port);
        if (http != 0 && n == http) || (db != 0 && n == db) {
            return host;
        }
    }
    Cow::Owned(join(&host, ":", &render(port)))
}

/// PY `_get_target_for_dependency_from_peer` (§3.4): `peer.service`, else the legacy peer
/// name or IP with its port unless default; beyond PY, then the stable `server.address` and
/// `server.port` the same way.
pub(crate) fn peer_target<'a>(k: &Known<'a>) -> Option<Cow<'a, str>> {
    if let Some(service) = k.text(PEER_SERVICE) {
        return Some(service);
    }
    let (host, port) = match k.text(NET_PEER_HOST) {
        Some(host) => (host, k.first(&[Key::NetPeerPort])),
        None => (k.text(&[Key::ServerAddress])?, k.first(&[Key::ServerPort])),
    };
    Some(with_port(k, host, port))
}

/// A slice of a borrowed or owned string, borrowed when the string is.
fn map_slice<'a>(s: &Cow<'a, str>, f: impl for<'s> Fn(&'s str) -> &'s str) -> Cow<'a, str> {
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(f(b)),
        Cow::Owned(o) => Cow::Owned(f(o).to_owned()),
    }
}

/// The target of an HTTP dependency (PY `_get_target_and_path_for_http_dependency` with the R
/// fixes of §3.4): `server.address[:port]`, `peer.service`, `http.host`, the URL's host, else
/// the peer target; a port that is the scheme's default is left out, and the scheme comes
/// from the URL when no scheme attribute is set.
pub(crate) fn http_dependency_target<'a>(
    k: &Known<'a>,
    url: Option<&Cow<'a, str>>,
) -> Option<Cow<'a, str>> {
    let scheme = k
        .str(URL_SCHEME)
        .or_else(|| url.map(|u| split_url(u).scheme))
        .unwrap_or("");
    let default_port = default_http_port(scheme);
    if let Some(address) = k.text(&[Key::ServerAddress]) {
        return Some(match k.first(&[Key::ServerPort]) {
            Some(port) if to_int(port) != Some(default_port) => {
                Cow::Owned(join(&address, ":", &render(port)))
            }
            _ => address,
        });
    }
    if let Some(service) = k.text(PEER_SERVICE) {
        return Some(service);
    }
    let is_default = |port: Option<i64>| default_port != 0 && port == Some(default_port);
    if let Some(host) = k.text(&[Key::HttpHost]) {
        return Some(if is_default(split_host_port(&host).1) {
            map_slice(&host, |h| split_host_port(h).0)
        } else {
            host
        });
    }
    if let Some(url) = url {
        let target = if is_default(split_host_port(split_url(url).netloc).1) {
            map_slice(url, |u| split_host_port(split_url(u).netloc).0)
        } else {
            // The whole `host:port`, without any credentials.
            map_slice(url, |u| {
                let netloc = split_url(u).netloc;
                netloc.rsplit_once('@').map_or(netloc, |(_, h)| h)
            })
        };
        if !target.is_empty() {
            return Some(target);
        }
    }
    peer_target(k)
}
