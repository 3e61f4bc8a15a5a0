//! What an answer of the ingestion service means for the items of a request: a pure
//! classification, tested as a table (INGESTION.md §4, §5; MAPPING.md §8.3).

use std::time::{Duration, SystemTime};

use crate::auth::AuthFailure;
use crate::transmit::RetryPolicy;
use crate::wire::TrackResponse;

/// The per-item message of an item that was accepted but sampled out by the service. Such an
/// item is never re-sent and is not an error.
const SAMPLED_OUT: &str = "Telemetry sampled out.";

/// Longest service message kept from a response body, in characters.
const MAX_MESSAGE_CHARS: usize = 512;

/// What to do with the items of one request after the service's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Everything was accepted (or sampled out by the service).
    Accepted,
    /// Some items were accepted; some may be re-sent, some are refused for good. Indices are
    /// positions inside the request body, sorted, without duplicates.
    Partial {
        /// Items to send again.
        retry: Vec<usize>,
        /// Items refused for good: index, the item's status code, the service's message.
        rejected: Vec<(usize, u16, String)>,
        /// Not before this delay (the response's `Retry-After`).
        retry_after: Option<Duration>,
    },
    /// Nothing was accepted, but sending the same request again may succeed.
    RetryAll {
        /// Not before this delay (the response's `Retry-After`).
        after: Option<Duration>,
        /// The status and the service's message, for the logs.
        reason: String,
    },
    /// Send the same request to this URL (from `Location`, not yet checked or resolved).
    Redirect(String),
    /// Nothing was accepted, and sending again would not help: drop the items.
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The service's message, or a description of the answer.
        message: String,
    },
}

/// Whole-response and per-item status codes after which the items are sent again: AAD
/// failures (401, 403), timeouts (408), throttling (429, legacy 439) and server errors (500,
/// 502, 503, 504).
pub(crate) fn is_retryable(status: u16) -> bool {
    matches!(status, 401 | 403 | 408 | 429 | 439 | 500 | 502 | 503 | 504)
}

/// Whether a whole-request status is the service refusing the request's Entra ID credentials
/// (ENTRA-ID.md §1, §3). Both are also retryable ([`is_retryable`]): the data is kept.
pub(crate) fn auth_failure(status: u16) -> Option<AuthFailure> {
    match status {
        401 => Some(AuthFailure::Unauthorized),
        403 => Some(AuthFailure::Forbidden),
        _ => None,
    }
}

impl AuthFailure {
    /// How long every request of the transmitter waits after this answer, at least: nothing
    /// after a 401 (the next attempt waits for a new token instead); after a 403, the retry
    /// policy's longest delay, as for a `Retry-After`, because a missing role assignment takes
    /// minutes to be made and to apply (with the default policy, 5 s: longer than an export
    /// may last, so exports go to offline storage at once until a probe gets through).
    pub(crate) fn min_wait(self, policy: &RetryPolicy) -> Option<Duration> {
        match self {
            AuthFailure::Unauthorized => None,
            AuthFailure::Forbidden => Some(policy.max_delay().max(policy.initial_delay())),
        }
    }
}

/// Classifies one answer of the ingestion service.
///
/// `retry_after` and `location` are the raw header values, `body` the (possibly cut) response
/// body, `now` the time the answer arrived (for an HTTP-date `Retry-After`).
pub(crate) fn classify(
    status: u16,
    retry_after: Option<&str>,
    location: Option<&str>,
    body: &[u8],
    now: SystemTime,
) -> Outcome {
    match status {
        206 => partial(body, parse_retry_after(retry_after, now)),
        200..=299 => Outcome::Accepted,
        307 | 308 => match location.map(str::trim).filter(|l| !l.is_empty()) {
            Some(l) => Outcome::Redirect(l.to_owned()),
            None => Outcome::Rejected {
                status,
                message: "redirect without a Location header".to_owned(),
            },
        },
        s if is_retryable(s) => Outcome::RetryAll {
            after: parse_retry_after(retry_after, now),
            reason: format!("HTTP {s}: {}", service_message(body, s)),
        },
        s => Outcome::Rejected {
            status: s,
            message: service_message(body, s),
        },
    }
}

fn partial(body: &[u8], retry_after: Option<Duration>) -> Outcome {
    let Ok(response) = serde_json::from_slice::<TrackResponse>(body) else {
        return Outcome::Rejected {
            status: 206,
            message: "partial success without a readable list of failed items; \
                      the failed items cannot be told apart and are not re-sent"
                .to_owned(),
        };
    };
    let mut retry = Vec::new();
    let mut rejected: Vec<(usize, u16, String)> = Vec::new();
    for e in response.errors {
        // A per-item 206 is the service's code for "sampled out", whatever the message.
        if e.status_code == 206 || e.message.trim().eq_ignore_ascii_case(SAMPLED_OUT) {
            continue;
        }
        if (200..300).contains(&e.status_code) {
            continue;
        }
        if is_retryable(e.status_code) {
            retry.push(e.index);
        } else {
            rejected.push((e.index, e.status_code, cut(e.message.trim())));
        }
    }
    retry.sort_unstable();
    retry.dedup();
    rejected.sort_by_key(|r| r.0);
    rejected.dedup_by_key(|r| r.0);
    // An index cannot be both retried and dropped: retrying wins (a duplicate beats a loss).
    rejected.retain(|r| retry.binary_search(&r.0).is_err());
    if retry.is_empty() && rejected.is_empty() {
        Outcome::Accepted
    } else {
        Outcome::Partial {
            retry,
            rejected,
            retry_after,
        }
    }
}

/// `Retry-After` as delta-seconds or an HTTP-date, relative to `now`. Zero, negative, past or
/// unreadable values mean "no delay asked".
pub(crate) fn parse_retry_after(value: Option<&str>, now: SystemTime) -> Option<Duration> {
    let value = value?.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Only digits: delta-seconds. Too many digits to fit is "very long", not garbage.
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return (secs > 0).then(|| Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    at.duration_since(now).ok().filter(|d| !d.is_zero())
}

/// The service's explanation of a failed request: the first per-item message of a
/// `TrackResponse`, else the body as text, else the status alone.
fn service_message(body: &[u8], status: u16) -> String {
    if let Ok(r) = serde_json::from_slice::<TrackResponse>(body) {
        if let Some(m) = r
            .errors
            .iter()
            .map(|e| e.message.trim())
            .find(|m| !m.is_empty())
        {
            return cut(m);
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() || text == "{}" {
        format!("no message (HTTP {status})")
    } else {
        cut(text)
    }
}

fn cut(s: &str) -> String {
    let kept = crate::wire::limits::truncate_str(s, MAX_MESSAGE_CHARS);
    if kept.len() < s.len() {
        format!("{kept}…")
    } else {
        kept.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> SystemTime {
        // Fri, 22 Apr 2016 23:59:00 GMT
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_461_369_540)
    }

    fn retry_all(after: Option<u64>, reason: &str) -> Outcome {
        Outcome::RetryAll {
            after: after.map(Duration::from_secs),
            reason: reason.to_owned(),
        }
    }

    fn rejected(status: u16, message: &str) -> Outcome {
        Outcome::Rejected {
            status,
            message: message.to_owned(),
        }
    }

    const ERR_BODY: &str = r#"{"itemsReceived":1,"itemsAccepted":0,"errors":[{"index":0,"statusCode":400,"message":"109: Field 'name' is required"}]}"#;
    const PARTIAL: &str = r#"{"itemsReceived":9,"itemsAccepted":2,"errors":[
        {"index":0,"statusCode":400,"message":"103: Field 'time' is older than the allowed min date"},
        {"index":1,"statusCode":206,"message":"Telemetry sampled out."},
        {"index":2,"statusCode":500,"message":"Internal Server Error"},
        {"index":3,"statusCode":429,"message":"Too many requests"},
        {"index":4,"statusCode":400,"message":"telemetry SAMPLED OUT."},
        {"index":5,"statusCode":439,"message":"legacy throttle"},
        {"index":6,"statusCode":402,"message":"quota"},
        {"index":7,"statusCode":401,"message":"no token"},
        {"index":8,"statusCode":404,"message":"wrong stamp"},
        {"index":2,"statusCode":500,"message":"duplicate"}]}"#;

    #[test]
    fn table() {
        type Case = (
            u16,
            Option<&'static str>,
            Option<&'static str>,
            &'static str,
            Outcome,
        );
        let cases: Vec<Case> = vec![
            // Accepted.
            (
                200,
                None,
                None,
                r#"{"itemsReceived":1,"itemsAccepted":1,"errors":[]}"#,
                Outcome::Accepted,
            ),
            (200, Some("5"), None, "", Outcome::Accepted),
            (204, None, None, "", Outcome::Accepted),
            // Partial success.
            (
                206,
                Some("3"),
                None,
                PARTIAL,
                Outcome::Partial {
                    retry: vec![2, 3, 5, 7],
                    rejected: vec![
                        (
                            0,
                            400,
                            "103: Field 'time' is older than the allowed min date".into(),
                        ),
                        (6, 402, "quota".into()),
                        (8, 404, "wrong stamp".into()),
                    ],
                    retry_after: Some(Duration::from_secs(3)),
                },
            ),
            (
                206,
                None,
                None,
                r#"{"errors":[{"index":0,"statusCode":206,"message":"Telemetry sampled out."}]}"#,
                Outcome::Accepted,
            ),
            (
                206,
                None,
                None,
                r#"{"itemsReceived":2,"itemsAccepted":2,"errors":[]}"#,
                Outcome::Accepted,
            ),
            (
                206,
                None,
                None,
                r#"{"errors":[{"index":1,"statusCode":503,"message":"busy"}]}"#,
                Outcome::Partial {
                    retry: vec![1],
                    rejected: vec![],
                    retry_after: None,
                },
            ),
            (
                206,
                None,
                None,
                "not json",
                rejected(
                    206,
                    "partial success without a readable list of failed items; \
                 the failed items cannot be told apart and are not re-sent",
                ),
            ),
            // Redirects.
            (
                307,
                None,
                Some("https://westeurope-5.in.applicationinsights.azure.com/v2.1/track"),
                "",
                Outcome::Redirect(
                    "https://westeurope-5.in.applicationinsights.azure.com/v2.1/track".into(),
                ),
            ),
            (
                308,
                None,
                Some(" /v2.1/track "),
                "",
                Outcome::Redirect("/v2.1/track".into()),
            ),
            (
                307,
                None,
                None,
                "",
                rejected(307, "redirect without a Location header"),
            ),
            (
                308,
                None,
                Some(""),
                "",
                rejected(308, "redirect without a Location header"),
            ),
            // Retry the whole request.
            (
                401,
                None,
                None,
                ERR_BODY,
                retry_all(None, "HTTP 401: 109: Field 'name' is required"),
            ),
            (
                403,
                None,
                None,
                "",
                retry_all(None, "HTTP 403: no message (HTTP 403)"),
            ),
            (
                408,
                None,
                None,
                "timeout",
                retry_all(None, "HTTP 408: timeout"),
            ),
            (
                429,
                Some("1"),
                None,
                "{}",
                retry_all(Some(1), "HTTP 429: no message (HTTP 429)"),
            ),
            (
                439,
                Some("120"),
                None,
                "",
                retry_all(Some(120), "HTTP 439: no message (HTTP 439)"),
            ),
            (
                500,
                None,
                None,
                "",
                retry_all(None, "HTTP 500: no message (HTTP 500)"),
            ),
            (
                502,
                None,
                None,
                "",
                retry_all(None, "HTTP 502: no message (HTTP 502)"),
            ),
            (
                503,
                Some("Fri, 22 Apr 2016 23:59:59 GMT"),
                None,
                "",
                retry_all(Some(59), "HTTP 503: no message (HTTP 503)"),
            ),
            (
                504,
                Some("0"),
                None,
                "",
                retry_all(None, "HTTP 504: no message (HTTP 504)"),
            ),
            // Rejected: the service's message is kept.
            (
                400,
                None,
                None,
                ERR_BODY,
                rejected(400, "109: Field 'name' is required"),
            ),
            (
                400,
                None,
                None,
                "Invalid instrumentation key",
                rejected(400, "Invalid instrumentation key"),
            ),
            (402, None, None, "", rejected(402, "no message (HTTP 402)")),
            (
                404,
                None,
                None,
                "ingestion is allowed only from stamp specific endpoint",
                rejected(
                    404,
                    "ingestion is allowed only from stamp specific endpoint",
                ),
            ),
            (405, None, None, "", rejected(405, "no message (HTTP 405)")),
            (
                413,
                Some("5"),
                None,
                "",
                rejected(413, "no message (HTTP 413)"),
            ),
            (
                301,
                None,
                Some("https://elsewhere/"),
                "",
                rejected(301, "no message (HTTP 301)"),
            ),
            (100, None, None, "", rejected(100, "no message (HTTP 100)")),
            (501, None, None, "", rejected(501, "no message (HTTP 501)")),
        ];
        for (status, retry_after, location, body, expected) in cases {
            let got = classify(status, retry_after, location, body.as_bytes(), now());
            assert_eq!(got, expected, "status {status}, body {body}");
        }
    }

    #[test]
    fn retry_after_forms() {
        let cases: [(Option<&str>, Option<u64>); 14] = [
            (None, None),
            (Some("1"), Some(1)),
            (Some(" 120 "), Some(120)),
            (Some("0"), None),
            (Some("-5"), None),
            (Some("1.5"), None),
            (Some("soon"), None),
            (Some(""), None),
            (Some("99999999999999999999999"), Some(u64::MAX)),
            (Some("Fri, 22 Apr 2016 23:59:59 GMT"), Some(59)),
            (Some("Sat, 23 Apr 2016 00:59:00 GMT"), Some(3600)),
            // Now and in the past: no delay.
            (Some("Fri, 22 Apr 2016 23:59:00 GMT"), None),
            (Some("Fri, 22 Apr 2016 23:00:00 GMT"), None),
            (Some("Fri, 31 Feb 2016 23:00:00 GMT"), None),
        ];
        for (value, expected) in cases {
            assert_eq!(
                parse_retry_after(value, now()),
                expected.map(Duration::from_secs),
                "{value:?}"
            );
        }
    }

    #[test]
    fn auth_failures() {
        let policy = RetryPolicy::default()
            .with_initial_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(7));
        let cases: [(u16, Option<AuthFailure>, Option<Duration>); 6] = [
            (401, Some(AuthFailure::Unauthorized), None),
            (
                403,
                Some(AuthFailure::Forbidden),
                Some(Duration::from_secs(7)),
            ),
            (200, None, None),
            (400, None, None),
            (404, None, None),
            (429, None, None),
        ];
        for (status, failure, wait) in cases {
            assert_eq!(auth_failure(status), failure, "{status}");
            assert_eq!(failure.and_then(|f| f.min_wait(&policy)), wait, "{status}");
            if failure.is_some() {
                assert!(is_retryable(status), "{status} keeps the data");
            }
        }
        // A policy whose maximum is below its minimum waits the minimum.
        let odd = RetryPolicy::default()
            .with_initial_delay(Duration::from_secs(2))
            .with_max_delay(Duration::from_secs(1));
        assert_eq!(
            AuthFailure::Forbidden.min_wait(&odd),
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn retryable_codes() {
        let retryable: Vec<u16> = (0..1000).filter(|s| is_retryable(*s)).collect();
        assert_eq!(retryable, [401, 403, 408, 429, 439, 500, 502, 503, 504]);
    }

    #[test]
    fn long_messages_are_cut_at_a_character() {
        let body = "é".repeat(2000);
        let Outcome::Rejected { message, .. } = classify(400, None, None, body.as_bytes(), now())
        else {
            panic!("expected a rejection");
        };
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(message.ends_with('…'));
    }

    #[test]
    fn garbage_never_panics() {
        for status in [0, 99, 206, 307, 400, 429, 999, u16::MAX] {
            for body in [
                &b"\xff\xfe"[..],
                b"[",
                b"{\"errors\":[{\"index\":-1}]}",
                b"",
            ] {
                let _ = classify(status, Some("\u{1F600}"), Some("\u{0}"), body, now());
            }
        }
    }
}
