//! The filtering engine (LIVE-METRICS.md §10): parses and validates a
//! `CollectionConfigurationInfo`, matches telemetry items against its filters with the
//! JavaScript exporter's semantics, aggregates derived metrics over each post window, builds
//! the documents its streams ask for within the .NET quotas, and keeps the errors to report
//! back in `CollectionConfigurationErrors`.
//!
//! Pure: no I/O and no clock. Time enters only through [`Engine::accrue`] (whole seconds, called
//! by the client at each post) and the windows end when the client calls [`Engine::take`].

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::document::{Document, Item, Kind};

/// Default document quota of a stream per telemetry type (NET `DocumentStream`).
const DEFAULT_INITIAL_QUOTA: f64 = 3.0;
/// Default maximum document quota (NET).
const DEFAULT_MAX_QUOTA: f64 = 30.0;

// ---------------------------------------------------------------------------------------------
// The configuration as the service sends it (PascalCase JSON). Enumerations stay strings here so
// that an unknown value becomes a reported error, not a failure to read the whole body.

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ConfigurationInfo {
    metrics: Vec<DerivedMetricInfo>,
    document_streams: Vec<DocumentStreamInfo>,
    quota_info: Option<QuotaInfo>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DerivedMetricInfo {
    id: String,
    telemetry_type: String,
    filter_groups: Vec<FilterGroupInfo>,
    projection: String,
    aggregation: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DocumentStreamInfo {
    id: String,
    document_filter_groups: Vec<DocumentFilterGroupInfo>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DocumentFilterGroupInfo {
    telemetry_type: String,
    filters: FilterGroupInfo,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct FilterGroupInfo {
    filters: Vec<FilterInfo>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct FilterInfo {
    field_name: String,
    predicate: String,
    comparand: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct QuotaInfo {
    initial_quota: Option<f64>,
    max_quota: Option<f64>,
    quota_accrual_rate_per_sec: Option<f64>,
}

// ---------------------------------------------------------------------------------------------
// Errors reported back to the service.

/// One `CollectionConfigurationError`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ConfigError {
    pub(crate) collection_configuration_error_type: &'static str,
    pub(crate) message: String,
    pub(crate) full_exception: String,
    pub(crate) data: Vec<KeyValue>,
}

/// A `KeyValuePairString` (lower-case member names, as in SPEC).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct KeyValue {
    pub(crate) key: String,
    pub(crate) value: String,
}

impl ConfigError {
    fn new(kind: &'static str, message: String, id_key: &str, id: &str, etag: &str) -> Self {
        ConfigError {
            collection_configuration_error_type: kind,
            message,
            full_exception: String::new(),
            data: vec![
                KeyValue {
                    key: id_key.to_owned(),
                    value: id.to_owned(),
                },
                KeyValue {
                    key: "ETag".to_owned(),
                    value: etag.to_owned(),
                },
            ],
        }
    }
}

const METRIC_ID: &str = "MetricId";
const STREAM_ID: &str = "DocumentStreamInfoId";

// ---------------------------------------------------------------------------------------------
// Validated filters.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Predicate {
    Equal,
    NotEqual,
    LessThan,
    GreaterThan,
    LessThanOrEqual,
    GreaterThanOrEqual,
    Contains,
    DoesNotContain,
}

impl Predicate {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Equal" => Predicate::Equal,
            "NotEqual" => Predicate::NotEqual,
            "LessThan" => Predicate::LessThan,
            "GreaterThan" => Predicate::GreaterThan,
            "LessThanOrEqual" => Predicate::LessThanOrEqual,
            "GreaterThanOrEqual" => Predicate::GreaterThanOrEqual,
            "Contains" => Predicate::Contains,
            "DoesNotContain" => Predicate::DoesNotContain,
            _ => return None,
        })
    }

    fn is_ordering(self) -> bool {
        matches!(
            self,
            Predicate::LessThan
                | Predicate::GreaterThan
                | Predicate::LessThanOrEqual
                | Predicate::GreaterThanOrEqual
        )
    }

    fn is_substring(self) -> bool {
        matches!(self, Predicate::Contains | Predicate::DoesNotContain)
    }
}

/// The fields a filter can name (after `Exception.` is dropped).
#[derive(Clone, Debug, PartialEq)]
enum Field {
    Any,
    Custom(String),
    Name,
    Url,
    ResponseCode,
    ResultCode,
    Success,
    Duration,
    Target,
    Type,
    Data,
    Message,
    StackTrace,
}

impl Field {
    /// The field `name` of telemetry type `kind` (validator.ts's lists).
    fn parse(name: &str, kind: Kind) -> Option<Self> {
        if name == "*" {
            return Some(Field::Any);
        }
        if let Some(key) = name.strip_prefix("CustomDimensions.") {
            return Some(Field::Custom(key.to_owned()));
        }
        Some(match (kind, name) {
            (Kind::Request, "Url") => Field::Url,
            (Kind::Request, "ResponseCode") => Field::ResponseCode,
            (Kind::Request | Kind::Dependency, "Duration") => Field::Duration,
            (Kind::Request | Kind::Dependency, "Success") => Field::Success,
            (Kind::Request | Kind::Dependency, "Name") => Field::Name,
            (Kind::Dependency, "Target") => Field::Target,
            (Kind::Dependency, "ResultCode") => Field::ResultCode,
            (Kind::Dependency, "Type") => Field::Type,
            (Kind::Dependency, "Data") => Field::Data,
            (Kind::Exception, "Exception.Message") => Field::Message,
            (Kind::Exception, "Exception.StackTrace") => Field::StackTrace,
            (Kind::Trace, "Message") => Field::Message,
            _ => return None,
        })
    }
}

/// What a filter compares with, parsed once.
#[derive(Clone, Debug, PartialEq)]
enum Comparand {
    Text(String),
    Number(f64),
    Bool(bool),
}

/// One validated `FilterInfo`.
#[derive(Clone, Debug, PartialEq)]
struct Filter {
    field: Field,
    predicate: Predicate,
    comparand: Comparand,
}

impl Filter {
    /// Validates `info` for telemetry type `kind` (validator.ts `validateFieldNames`,
    /// `validatePredicateAndComparand`); the error says what is wrong.
    fn parse(info: &FilterInfo, kind: Kind) -> Result<Self, String> {
        let describe = || {
            format!(
                "filter {{FieldName: {:?}, Predicate: {:?}, Comparand: {:?}}}",
                info.field_name, info.predicate, info.comparand
            )
        };
        if info.field_name.starts_with("CustomMetrics.") {
            return Err(format!("{}: CustomMetrics are not supported", describe()));
        }
        let field = Field::parse(&info.field_name, kind).ok_or_else(|| {
            format!(
                "{}: no field {:?} in {} telemetry",
                describe(),
                info.field_name,
                kind.as_str()
            )
        })?;
        if matches!(field, Field::Custom(ref k) if k.is_empty()) {
            return Err(format!("{}: an empty custom dimension name", describe()));
        }
        let predicate = Predicate::parse(&info.predicate)
            .ok_or_else(|| format!("{}: unknown predicate", describe()))?;
        if info.comparand.is_empty() {
            return Err(format!("{}: the comparand is empty", describe()));
        }
        let comparand = match field {
            Field::Any => {
                if !predicate.is_substring() {
                    return Err(format!(
                        "{}: '*' allows only Contains and DoesNotContain",
                        describe()
                    ));
                }
                Comparand::Text(info.comparand.clone())
            }
            Field::Success => {
                if !matches!(predicate, Predicate::Equal | Predicate::NotEqual) {
                    return Err(format!(
                        "{}: Success allows only Equal and NotEqual",
                        describe()
                    ));
                }
                match info.comparand.to_ascii_lowercase().as_str() {
                    "true" => Comparand::Bool(true),
                    "false" => Comparand::Bool(false),
                    _ => {
                        return Err(format!(
                            "{}: Success compares with true or false",
                            describe()
                        ))
                    }
                }
            }
            Field::Duration | Field::ResponseCode | Field::ResultCode => {
                if predicate.is_substring() {
                    return Err(format!(
                        "{}: a numeric field allows no Contains or DoesNotContain",
                        describe()
                    ));
                }
                let number = if field == Field::Duration {
                    duration_ms(&info.comparand)
                } else {
                    info.comparand
                        .trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|n| n.is_finite())
                };
                Comparand::Number(number.ok_or_else(|| {
                    format!(
                        "{}: the comparand is not a valid number or duration",
                        describe()
                    )
                })?)
            }
            _ => {
                if predicate.is_ordering() {
                    return Err(format!(
                        "{}: a text field allows no ordering predicate",
                        describe()
                    ));
                }
                Comparand::Text(info.comparand.clone())
            }
        };
        Ok(Filter {
            field,
            predicate,
            comparand,
        })
    }

    /// filter.ts `checkFilter`.
    fn matches(&self, item: &Item<'_>) -> bool {
        match (&self.field, &self.comparand) {
            (Field::Any, Comparand::Text(c)) => {
                let mut text = String::new();
                item.fields().into_iter().any(|(field, value)| {
                    text.clear();
                    let value = match value {
                        FieldValue::Text(s) => s,
                        FieldValue::Number(n) => {
                            let _ = write!(text, "{n}");
                            &text
                        }
                        FieldValue::Bool(b) => {
                            if b {
                                "true"
                            } else {
                                "false"
                            }
                        }
                    };
                    field.is_some() && string_compare(value, c, self.predicate)
                }) || item
                    .properties
                    .iter()
                    .any(|(_, v)| string_compare(v, c, self.predicate))
            }
            (Field::Custom(key), Comparand::Text(c)) => item
                .properties
                .iter()
                .find(|(k, _)| k == key)
                .is_some_and(|(_, v)| string_compare(v, c, self.predicate)),
            (field, comparand) => {
                let Some(value) = item.field(field) else {
                    return false;
                };
                match (value, comparand) {
                    (FieldValue::Bool(v), Comparand::Bool(c)) => match self.predicate {
                        Predicate::Equal => v == *c,
                        Predicate::NotEqual => v != *c,
                        _ => false,
                    },
                    (FieldValue::Number(v), Comparand::Number(c)) => match self.predicate {
                        Predicate::Equal => v == *c,
                        Predicate::NotEqual => v != *c,
                        Predicate::LessThan => v < *c,
                        Predicate::GreaterThan => v > *c,
                        Predicate::LessThanOrEqual => v <= *c,
                        Predicate::GreaterThanOrEqual => v >= *c,
                        _ => false,
                    },
                    (FieldValue::Text(v), Comparand::Text(c)) => {
                        string_compare(v, c, self.predicate)
                    }
                    _ => false,
                }
            }
        }
    }
}

/// A field's value as the matcher compares it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum FieldValue<'a> {
    Text(&'a str),
    Number(f64),
    Bool(bool),
}

impl<'a> Item<'a> {
    /// The value of a known field, `None` when the item's type has no such field.
    fn field(&self, field: &Field) -> Option<FieldValue<'a>> {
        let span = matches!(self.kind, Kind::Request | Kind::Dependency);
        Some(match field {
            Field::Name if span => FieldValue::Text(self.name),
            Field::Url if self.kind == Kind::Request => FieldValue::Text(self.url),
            Field::ResponseCode if self.kind == Kind::Request => {
                FieldValue::Number(code(self.code))
            }
            Field::ResultCode if self.kind == Kind::Dependency => {
                FieldValue::Number(code(self.code))
            }
            Field::Success if span => FieldValue::Bool(self.success),
            Field::Duration if span => FieldValue::Number(self.duration_ms),
            Field::Target if self.kind == Kind::Dependency => FieldValue::Text(self.target),
            Field::Type if self.kind == Kind::Dependency => FieldValue::Text(self.type_),
            Field::Data if self.kind == Kind::Dependency => FieldValue::Text(self.data),
            Field::Message if matches!(self.kind, Kind::Exception | Kind::Trace) => {
                FieldValue::Text(self.message)
            }
            Field::StackTrace if self.kind == Kind::Exception => FieldValue::Text(self.stack),
            _ => return None,
        })
    }

    /// Every known field of the item's type, for `*` (the keys of the JS telemetry data).
    fn fields(&self) -> Vec<(Option<Field>, FieldValue<'a>)> {
        let fields: &[Field] = match self.kind {
            Kind::Request => &[
                Field::Url,
                Field::Duration,
                Field::ResponseCode,
                Field::Success,
                Field::Name,
            ],
            Kind::Dependency => &[
                Field::Target,
                Field::Duration,
                Field::Success,
                Field::Name,
                Field::ResultCode,
                Field::Type,
                Field::Data,
            ],
            Kind::Exception => &[Field::Message, Field::StackTrace],
            Kind::Trace => &[Field::Message],
        };
        fields
            .iter()
            .filter_map(|f| self.field(f).map(|v| (Some(f.clone()), v)))
            .collect()
    }
}

/// A response or result code as a number (JS `parseFloat`): NaN when it is not one, which
/// equals nothing.
fn code(s: &str) -> f64 {
    s.trim().parse().unwrap_or(f64::NAN)
}

/// filter.ts `stringCompare`: Equal/NotEqual case-sensitive, Contains/DoesNotContain
/// case-insensitive substring tests.
fn string_compare(value: &str, comparand: &str, predicate: Predicate) -> bool {
    match predicate {
        Predicate::Equal => value == comparand,
        Predicate::NotEqual => value != comparand,
        Predicate::Contains => value.to_lowercase().contains(&comparand.to_lowercase()),
        Predicate::DoesNotContain => !value.to_lowercase().contains(&comparand.to_lowercase()),
        _ => false,
    }
}

/// A filter duration `[days].[hours]:[minutes]:[seconds]` in ms (JS
/// `getMsFromFilterTimestampString`): `"14.6:56:7.89"` is 1234567890 ms, `"0.0:0:10"` is 10 s.
/// A plain `hh:mm:ss` (no days) is also read.
pub(crate) fn duration_ms(s: &str) -> Option<f64> {
    let mut parts = s.trim().split(':');
    let (first, minutes, seconds) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let (days, hours) = match first.split_once('.') {
        Some((d, h)) => (d.parse::<u64>().ok()?, h.parse::<u64>().ok()?),
        None => (0, first.parse::<u64>().ok()?),
    };
    let minutes = minutes.parse::<u64>().ok()?;
    let seconds = seconds
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)?;
    let whole = ((days * 24 + hours) * 60 + minutes) as f64 * 60.0;
    Some(((whole + seconds) * 1000.0 * 1000.0).round() / 1000.0)
}

// ---------------------------------------------------------------------------------------------
// Derived metrics.

#[derive(Clone, Debug, PartialEq)]
enum Projection {
    Count,
    Duration,
    Custom(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Aggregation {
    Avg,
    Sum,
    Min,
    Max,
}

/// A valid derived metric and its window's aggregate.
#[derive(Clone, Debug)]
struct DerivedMetric {
    id: String,
    kind: Kind,
    /// OR of ANDs; no group at all matches everything (filter.ts `checkMetricFilters`).
    groups: Vec<Vec<Filter>>,
    projection: Projection,
    aggregation: Aggregation,
    sum: f64,
    count: u64,
    min: f64,
    max: f64,
}

impl DerivedMetric {
    fn reset(&mut self) {
        self.sum = 0.0;
        self.count = 0;
        self.min = f64::INFINITY;
        self.max = f64::NEG_INFINITY;
    }

    fn value(&self) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        match self.aggregation {
            Aggregation::Sum => self.sum,
            Aggregation::Avg => self.sum / self.count as f64,
            Aggregation::Min => self.min,
            Aggregation::Max => self.max,
        }
    }
}

fn matches_any(groups: &[Vec<Filter>], item: &Item<'_>) -> bool {
    groups.is_empty() || groups.iter().any(|g| g.iter().all(|f| f.matches(item)))
}

// ---------------------------------------------------------------------------------------------
// Document streams and their quotas.

/// A token bucket (NET `QuickPulseQuotaTracker`): accrues in whole seconds, one token a document.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Quota {
    tokens: f64,
    max: f64,
    rate: f64,
}

impl Quota {
    fn take(&mut self) -> bool {
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Clone, Debug)]
struct Stream {
    id: String,
    /// The groups per telemetry type (index [`Kind::index`]); a type without groups is not
    /// collected by this stream (NET: "no filters for the telemetry type - filter out").
    groups: [Vec<Vec<Filter>>; 4],
    quotas: [Quota; 4],
}

/// What one post sends from the engine.
#[derive(Debug, Default)]
pub(crate) struct Window {
    /// `(Id, value)` of each derived metric.
    pub(crate) metrics: Vec<(String, f64)>,
    pub(crate) documents: Vec<Document>,
    pub(crate) errors: Vec<ConfigError>,
}

/// The applied configuration and what has been collected under it since the last post.
#[derive(Debug, Default)]
pub(crate) struct Engine {
    etag: String,
    metrics: Vec<DerivedMetric>,
    streams: Vec<Stream>,
    validation_errors: Vec<ConfigError>,
    runtime_errors: Vec<ConfigError>,
    documents: Vec<Document>,
}

/// At most this many documents wait for one post, whatever the quotas allow (a configuration
/// with many streams and a generous `QuotaInfo` must not grow memory without bound).
const MAX_DOCUMENTS_PER_POST: usize = 1000;

impl Engine {
    /// The ETag of the applied configuration (`""` for none).
    pub(crate) fn etag(&self) -> &str {
        &self.etag
    }

    /// Whether any derived metric or stream looks at items of type `kind`.
    pub(crate) fn wants(&self, kind: Kind) -> bool {
        self.metrics.iter().any(|m| m.kind == kind)
            || self
                .streams
                .iter()
                .any(|s| !s.groups[kind.index()].is_empty())
    }

    /// Forgets the configuration and everything collected (ETag `""`): on a return to Ping.
    pub(crate) fn reset(&mut self) {
        *self = Engine::default();
    }

    /// Applies a configuration received with `etag` (§10 "Applying a new configuration").
    /// A body that is not a configuration applies an empty one and reports the error.
    pub(crate) fn apply(&mut self, etag: &str, body: &[u8]) {
        self.reset();
        self.etag = etag.to_owned();
        if body.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let info: ConfigurationInfo = match serde_json::from_slice(body) {
            Ok(info) => info,
            Err(e) => {
                self.validation_errors.push(ConfigError {
                    collection_configuration_error_type:
                        "CollectionConfigurationFailureToCreateUnexpected",
                    message: format!("the collection configuration is not valid JSON: {e}"),
                    full_exception: String::new(),
                    data: vec![KeyValue {
                        key: "ETag".to_owned(),
                        value: etag.to_owned(),
                    }],
                });
                return;
            }
        };
        let quota = info.quota_info.unwrap_or_default();
        let max = quota
            .max_quota
            .filter(|m| m.is_finite() && *m >= 0.0)
            .unwrap_or(DEFAULT_MAX_QUOTA);
        let template = Quota {
            tokens: quota
                .initial_quota
                .filter(|q| q.is_finite() && *q >= 0.0)
                .unwrap_or(DEFAULT_INITIAL_QUOTA)
                .min(max),
            max,
            rate: quota
                .quota_accrual_rate_per_sec
                .filter(|r| r.is_finite() && *r >= 0.0)
                .unwrap_or(max / 60.0),
        };
        for info in &info.metrics {
            match self.metric(info) {
                Ok(m) => self.metrics.push(m),
                Err((kind, message)) => self
                    .validation_errors
                    .push(ConfigError::new(kind, message, METRIC_ID, &info.id, etag)),
            }
        }
        for info in &info.document_streams {
            if self.streams.iter().any(|s| s.id == info.id) {
                self.validation_errors.push(ConfigError::new(
                    "DocumentStreamDuplicateIds",
                    format!("duplicate document stream id {:?}", info.id),
                    STREAM_ID,
                    &info.id,
                    etag,
                ));
                continue;
            }
            let mut stream = Stream {
                id: info.id.clone(),
                groups: Default::default(),
                quotas: [template; 4],
            };
            for group in &info.document_filter_groups {
                let kind = match group.telemetry_type.as_str() {
                    // NET accepts Event groups (the service's default stream has one); no Event
                    // documents come from OpenTelemetry, so they are kept out without an error.
                    "Event" => continue,
                    t => Kind::parse(t),
                };
                let Some(kind) = kind else {
                    self.validation_errors.push(ConfigError::new(
                        "CollectionConfigurationFailureToCreateUnexpected",
                        format!(
                            "document streams of telemetry type {:?} are not supported",
                            group.telemetry_type
                        ),
                        STREAM_ID,
                        &info.id,
                        etag,
                    ));
                    continue;
                };
                match parse_group(&group.filters, kind) {
                    Ok(filters) => stream.groups[kind.index()].push(filters),
                    Err(message) => self.validation_errors.push(ConfigError::new(
                        "DocumentStreamFailureToCreateFilterUnexpected",
                        message,
                        STREAM_ID,
                        &info.id,
                        etag,
                    )),
                }
            }
            self.streams.push(stream);
        }
    }

    fn metric(&self, info: &DerivedMetricInfo) -> Result<DerivedMetric, (&'static str, String)> {
        if self.metrics.iter().any(|m| m.id == info.id) {
            return Err((
                "MetricDuplicateIds",
                format!("duplicate metric id {:?}", info.id),
            ));
        }
        let kind = Kind::parse(&info.telemetry_type).ok_or_else(|| {
            (
                "MetricTelemetryTypeUnsupported",
                format!(
                    "derived metrics of telemetry type {:?} are not supported",
                    info.telemetry_type
                ),
            )
        })?;
        let projection = match info.projection.as_str() {
            "Count()" => Projection::Count,
            "Duration" if matches!(kind, Kind::Request | Kind::Dependency) => Projection::Duration,
            p if p.starts_with("CustomDimensions.") && p.len() > "CustomDimensions.".len() => {
                Projection::Custom(p["CustomDimensions.".len()..].to_owned())
            }
            p => {
                return Err((
                    "MetricFailureToCreate",
                    format!(
                        "projection {p:?} is not supported for {} telemetry",
                        kind.as_str()
                    ),
                ))
            }
        };
        let aggregation = match info.aggregation.as_str() {
            "Avg" => Aggregation::Avg,
            "Sum" => Aggregation::Sum,
            "Min" => Aggregation::Min,
            "Max" => Aggregation::Max,
            a => {
                return Err((
                    "MetricFailureToCreate",
                    format!("aggregation {a:?} is not supported"),
                ))
            }
        };
        let groups = info
            .filter_groups
            .iter()
            .map(|g| parse_group(g, kind))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| ("MetricFailureToCreateFilterUnexpected", m))?;
        let mut metric = DerivedMetric {
            id: info.id.clone(),
            kind,
            groups,
            projection,
            aggregation,
            sum: 0.0,
            count: 0,
            min: 0.0,
            max: 0.0,
        };
        metric.reset();
        Ok(metric)
    }

    /// Matches one item against the derived metrics and the streams of its type.
    pub(crate) fn observe(&mut self, item: &Item<'_>) {
        for m in self.metrics.iter_mut().filter(|m| m.kind == item.kind) {
            if !matches_any(&m.groups, item) {
                continue;
            }
            let value = match &m.projection {
                Projection::Count => 1.0,
                Projection::Duration => item.duration_ms,
                Projection::Custom(key) => {
                    match item
                        .properties
                        .iter()
                        .find(|(k, _)| k == key)
                        .and_then(|(_, v)| v.trim().parse::<f64>().ok())
                        .filter(|v| v.is_finite())
                    {
                        Some(v) => v,
                        None => {
                            if !self.runtime_errors.iter().any(|e| e.data[0].value == m.id) {
                                self.runtime_errors.push(ConfigError::new(
                                    "MetricFailureToCreate",
                                    format!("custom dimension {key:?} is missing or not a number"),
                                    METRIC_ID,
                                    &m.id,
                                    &self.etag,
                                ));
                            }
                            continue;
                        }
                    }
                }
            };
            m.sum += value;
            m.count += 1;
            m.min = m.min.min(value);
            m.max = m.max.max(value);
        }
        let mut ids = Vec::new();
        for s in &mut self.streams {
            let i = item.kind.index();
            if !s.groups[i].is_empty()
                && s.groups[i]
                    .iter()
                    .any(|g| g.iter().all(|f| f.matches(item)))
                && s.quotas[i].take()
            {
                ids.push(s.id.clone());
            }
        }
        if !ids.is_empty() && self.documents.len() < MAX_DOCUMENTS_PER_POST {
            self.documents.push(Document::new(item, ids));
        }
    }

    /// Adds `seconds` whole seconds of quota to every stream.
    pub(crate) fn accrue(&mut self, seconds: u64) {
        for q in self.streams.iter_mut().flat_map(|s| s.quotas.iter_mut()) {
            q.tokens = (q.tokens + q.rate * seconds as f64).min(q.max);
        }
    }

    /// Ends the window: the derived metrics' values (then reset), the documents, and the
    /// errors (validation errors stay until the next configuration, run-time errors go).
    pub(crate) fn take(&mut self) -> Window {
        let metrics = self
            .metrics
            .iter_mut()
            .map(|m| {
                let v = (m.id.clone(), m.value());
                m.reset();
                v
            })
            .collect();
        let mut errors = self.validation_errors.clone();
        errors.append(&mut self.runtime_errors);
        Window {
            metrics,
            documents: std::mem::take(&mut self.documents),
            errors,
        }
    }
}

fn parse_group(group: &FilterGroupInfo, kind: Kind) -> Result<Vec<Filter>, String> {
    group
        .filters
        .iter()
        .map(|f| Filter::parse(f, kind))
        .collect()
}

#[cfg(test)]
mod tests;
