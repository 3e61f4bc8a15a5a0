//! Samplers that agree with the other Application Insights exporters (MAPPING.md §6,
//! AZURE-HOSTS.md §4): [`ApplicationInsightsSampler`] keeps a fixed percentage of traces,
//! [`RateLimitedSampler`] about a number of traces per second; [`sampler_from_env`] picks one
//! from `OTEL_TRACES_SAMPLER`, as the distros do.
//!
//! Both decide a root span (or a span whose parent is remote) by the DJB2 score of its
//! lower-case hex trace id, as the Python and JavaScript exporters do, so that a trace that
//! crosses services sampled at the same percentage is kept or dropped in all of them. A span
//! whose parent is in the same process follows the parent's decision and inherits its rate.
//!
//! A kept span carries the attribute `microsoft.sample_rate` (the percentage, when below
//! 100); the [`SpanExporter`](crate::SpanExporter) sends it as the item's `sampleRate`, and
//! the portal counts each kept item as `100 / sampleRate` items.
//!
//! # Sampled-out spans: `Drop` or `RecordOnly`
//!
//! By default a sampled-out span is dropped (`SamplingDecision::Drop`): it costs almost
//! nothing. With [`with_record_only(true)`](ApplicationInsightsSampler::with_record_only) it
//! is recorded but not sampled (`RecordOnly`), so that span processors see it: the
//! [`StandardMetricsProcessor`](crate::StandardMetricsProcessor) needs that to count every
//! request and dependency. The exporter never sends a span that is not sampled. A recorded
//! span costs its attributes and events, and the SDK's batch processor queues it: that is the
//! price of exact standard metrics.

mod score;
mod window;

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use opentelemetry::trace::{Link, SpanKind, TraceContextExt, TraceId, TraceState};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SamplingDecision, SamplingResult, ShouldSample};

use score::djb2_score;
use window::RateWindow;

/// The span attribute with the sample rate (percentage) of a kept span (MAPPING.md §6.1 R,
/// the JavaScript and .NET key). The exporter also reads the Python key `_MS.sampleRate`.
pub const SAMPLE_RATE_ATTRIBUTE: &str = "microsoft.sample_rate";

/// The trace-state entry that carries the rate chosen for a trace (when below 100) to the
/// local children of its root.
///
/// The other exporters read the rate from the parent span's attributes, which the Rust API
/// does not expose to a sampler: the entry is the one place a child can find it. It travels
/// with the trace context to downstream services (W3C `tracestate`), which ignore it; a
/// remote parent's entry is never read.
const TRACE_STATE_KEY: &str = "microsoft_sample_rate";

/// Environment variable that selects the sampler (OpenTelemetry's).
pub const ENV_SAMPLER: &str = "OTEL_TRACES_SAMPLER";
/// Environment variable with the sampler's argument (OpenTelemetry's).
pub const ENV_SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";

/// A sampler that cannot be built: the argument is out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SamplerError {
    /// The ratio of a fixed-percentage sampler is not a number in [0, 1].
    #[error("the sampling ratio {0} is not a number between 0 and 1: use for example 0.1 to keep 10% of traces")]
    InvalidRatio(f64),
    /// The traces per second of a rate-limited sampler are not a finite number ≥ 0.
    #[error(
        "the traces per second {0} are not a finite number of at least 0: use for example 5.0"
    )]
    InvalidRate(f64),
    /// `OTEL_TRACES_SAMPLER_ARG` is not a number.
    #[error("OTEL_TRACES_SAMPLER_ARG=\"{value}\" is not a number: set it to the ratio (0 to 1) for microsoft.fixed_percentage, or to the traces per second for microsoft.rate_limited")]
    InvalidArgument {
        /// The variable's value.
        value: String,
    },
}

/// Keeps a fixed percentage of traces, deciding by the DJB2 score of the trace id as the
/// Python and JavaScript exporters do (MAPPING.md §6.1): a root span is kept when the score
/// of its lower-case hex trace id is below the ratio.
///
/// ```
/// use opentelemetry_azure_monitor::ApplicationInsightsSampler;
/// use opentelemetry_sdk::trace::SdkTracerProvider;
///
/// let sampler = ApplicationInsightsSampler::new(0.1)?; // keep 10% of traces
/// let provider = SdkTracerProvider::builder().with_sampler(sampler).build();
/// # Ok::<(), opentelemetry_azure_monitor::SamplerError>(())
/// ```
///
/// A span whose parent is local follows the parent's decision and inherits its rate (from the
/// trace-state entry `microsoft_sample_rate` that the root's sampler wrote). A span with a
/// remote parent is decided by its trace id like a root: services sampling at the same ratio
/// agree without looking at the `sampled` flag. Kept spans carry `microsoft.sample_rate` = 100 × ratio
/// (unless 100). Unlike .NET's, the hash is of the lower-case hex (see the module docs of
/// [`sampling`](crate::sampling)).
#[derive(Clone, Debug)]
pub struct ApplicationInsightsSampler {
    ratio: f64,
    record_only: bool,
}

impl ApplicationInsightsSampler {
    /// A sampler that keeps `ratio` of the traces (0.1 keeps 10%).
    ///
    /// # Errors
    ///
    /// [`SamplerError::InvalidRatio`] when `ratio` is NaN or outside [0, 1].
    pub fn new(ratio: f64) -> Result<Self, SamplerError> {
        if !(0.0..=1.0).contains(&ratio) {
            return Err(SamplerError::InvalidRatio(ratio));
        }
        Ok(ApplicationInsightsSampler {
            ratio,
            record_only: false,
        })
    }

    /// Records sampled-out spans (`RecordOnly`) instead of dropping them, so that span
    /// processors such as the [`StandardMetricsProcessor`](crate::StandardMetricsProcessor)
    /// see them; the exporter still sends only the kept ones.
    ///
    /// Defaults to `false` (`Drop`).
    #[must_use]
    pub fn with_record_only(mut self, record_only: bool) -> Self {
        self.record_only = record_only;
        self
    }

    /// The ratio of traces kept.
    pub fn ratio(&self) -> f64 {
        self.ratio
    }

    fn decide(&self, parent: Option<&Context>, trace_id: TraceId) -> SamplingResult {
        let rate = self.ratio * 100.0;
        let local = local_parent(parent);
        let (sampled, rate) = match &local {
            Some(p) => (p.sampled, p.rate),
            None if rate == 0.0 => (false, rate),
            None if rate == 100.0 => (true, rate),
            None => (djb2_score(trace_id) < self.ratio, rate),
        };
        let own = local.is_none().then_some(rate);
        result(
            sampled,
            rate,
            self.record_only,
            trace_state(local, parent, own),
        )
    }
}

impl ShouldSample for ApplicationInsightsSampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        _name: &str,
        _span_kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        self.decide(parent_context, trace_id)
    }
}

/// The monotonic clock of a [`RateLimitedSampler`]: the time since a fixed origin.
type Clock = Arc<dyn Fn() -> Duration + Send + Sync>;

/// Keeps about a number of traces per second, exactly as the Python, JavaScript and .NET
/// exporters' rate-limited samplers (AZURE-HOSTS.md §4), which the distros use by default
/// at 5 traces per second.
///
/// ```
/// use opentelemetry_azure_monitor::RateLimitedSampler;
/// use opentelemetry_sdk::trace::SdkTracerProvider;
///
/// let sampler = RateLimitedSampler::new(5.0)?;
/// let provider = SdkTracerProvider::builder().with_sampler(sampler).build();
/// # Ok::<(), opentelemetry_azure_monitor::SamplerError>(())
/// ```
///
/// Each root span (or span with a remote parent) updates a window of the recent span rate
/// that adapts over 0.1 s, from which follows the percentage `p` that would keep the target
/// rate (rounded down so that `100 / p` is an integer); the span is kept when 100 × its trace
/// id's DJB2 score is below `p`, and carries `microsoft.sample_rate = p` (unless 100). A
/// span whose parent is local follows the parent's decision and inherits its rate without
/// touching the window. The first span after construction is not automatically kept: its
/// percentage is the time since construction × the rate.
///
/// Clones share the window.
#[derive(Clone)]
pub struct RateLimitedSampler {
    traces_per_second: f64,
    record_only: bool,
    clock: Clock,
    window: Arc<Mutex<RateWindow>>,
}

impl fmt::Debug for RateLimitedSampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitedSampler")
            .field("traces_per_second", &self.traces_per_second)
            .field("record_only", &self.record_only)
            .finish_non_exhaustive()
    }
}

impl RateLimitedSampler {
    /// A sampler that keeps about `traces_per_second` traces per second.
    ///
    /// # Errors
    ///
    /// [`SamplerError::InvalidRate`] when `traces_per_second` is NaN, infinite or negative.
    pub fn new(traces_per_second: f64) -> Result<Self, SamplerError> {
        if !(traces_per_second.is_finite() && traces_per_second >= 0.0) {
            return Err(SamplerError::InvalidRate(traces_per_second));
        }
        let origin = Instant::now();
        Ok(Self::with_clock_inner(
            traces_per_second,
            Arc::new(move || origin.elapsed()),
        ))
    }

    fn with_clock_inner(traces_per_second: f64, clock: Clock) -> Self {
        let now = nanos(clock());
        RateLimitedSampler {
            traces_per_second,
            record_only: false,
            clock,
            window: Arc::new(Mutex::new(RateWindow::new(traces_per_second, now))),
        }
    }

    /// Uses `clock` (the time elapsed since any fixed origin; it must not go back) instead of
    /// the system's monotonic clock, and starts the window anew at its current time: for
    /// tests that drive the sampler with a fake clock.
    ///
    /// Defaults to [`Instant`] since the sampler's construction.
    #[must_use]
    pub fn with_clock(self, clock: impl Fn() -> Duration + Send + Sync + 'static) -> Self {
        let record_only = self.record_only;
        Self::with_clock_inner(self.traces_per_second, Arc::new(clock))
            .with_record_only(record_only)
    }

    /// Records sampled-out spans (`RecordOnly`) instead of dropping them, so that span
    /// processors such as the [`StandardMetricsProcessor`](crate::StandardMetricsProcessor)
    /// see them; the exporter still sends only the kept ones.
    ///
    /// Defaults to `false` (`Drop`).
    #[must_use]
    pub fn with_record_only(mut self, record_only: bool) -> Self {
        self.record_only = record_only;
        self
    }

    /// The target number of traces per second.
    pub fn traces_per_second(&self) -> f64 {
        self.traces_per_second
    }

    fn decide(&self, parent: Option<&Context>, trace_id: TraceId) -> SamplingResult {
        let local = local_parent(parent);
        let (sampled, rate) = match &local {
            // Local children do not advance the window (as Python).
            Some(p) => (p.sampled, p.rate),
            None => {
                let now = nanos((self.clock)());
                let p = self
                    .window
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .percentage(now);
                (djb2_score(trace_id) * 100.0 < p, p)
            }
        };
        let own = local.is_none().then_some(rate);
        result(
            sampled,
            rate,
            self.record_only,
            trace_state(local, parent, own),
        )
    }
}

impl ShouldSample for RateLimitedSampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        _name: &str,
        _span_kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        self.decide(parent_context, trace_id)
    }
}

/// One of this crate's samplers, as chosen by [`sampler_from_env`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum AzureMonitorSampler {
    /// `OTEL_TRACES_SAMPLER=microsoft.fixed_percentage`.
    FixedPercentage(ApplicationInsightsSampler),
    /// `OTEL_TRACES_SAMPLER=microsoft.rate_limited`.
    RateLimited(RateLimitedSampler),
}

impl AzureMonitorSampler {
    /// See [`ApplicationInsightsSampler::with_record_only`].
    #[must_use]
    pub fn with_record_only(self, record_only: bool) -> Self {
        match self {
            Self::FixedPercentage(s) => Self::FixedPercentage(s.with_record_only(record_only)),
            Self::RateLimited(s) => Self::RateLimited(s.with_record_only(record_only)),
        }
    }
}

impl ShouldSample for AzureMonitorSampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        _name: &str,
        _span_kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        match self {
            Self::FixedPercentage(s) => s.decide(parent_context, trace_id),
            Self::RateLimited(s) => s.decide(parent_context, trace_id),
        }
    }
}

/// The sampler that `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` select, as in the
/// Azure Monitor distros (AZURE-HOSTS.md §4):
///
/// | `OTEL_TRACES_SAMPLER` | `OTEL_TRACES_SAMPLER_ARG` | sampler |
/// |---|---|---|
/// | `microsoft.fixed_percentage` (or `microsoft.fixed.percentage`) | ratio in [0, 1], default 1 | [`ApplicationInsightsSampler`] |
/// | `microsoft.rate_limited` | traces per second ≥ 0, default 5 | [`RateLimitedSampler`] |
/// | anything else, or unset | | `None`: the SDK's own (it reads the standard values such as `traceidratio` itself) |
///
/// Both sample out with `Drop`; call
/// [`with_record_only(true)`](AzureMonitorSampler::with_record_only) when the
/// [`StandardMetricsProcessor`](crate::StandardMetricsProcessor) is installed.
///
/// # Errors
///
/// [`SamplerError`] when the argument is not a number or out of range for the sampler.
pub fn sampler_from_env() -> Result<Option<AzureMonitorSampler>, SamplerError> {
    sampler_from(&|name| std::env::var(name).ok())
}

/// [`sampler_from_env`] over an environment given as a lookup function.
fn sampler_from(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<AzureMonitorSampler>, SamplerError> {
    let Some(name) = env(ENV_SAMPLER) else {
        return Ok(None);
    };
    let argument = |default: f64| match env(ENV_SAMPLER_ARG) {
        None => Ok(default),
        Some(v) if v.trim().is_empty() => Ok(default),
        Some(v) => v
            .trim()
            .parse::<f64>()
            .map_err(|_| SamplerError::InvalidArgument { value: v }),
    };
    Ok(match name.trim() {
        "microsoft.fixed_percentage" | "microsoft.fixed.percentage" => Some(
            AzureMonitorSampler::FixedPercentage(ApplicationInsightsSampler::new(argument(1.0)?)?),
        ),
        "microsoft.rate_limited" => Some(AzureMonitorSampler::RateLimited(
            RateLimitedSampler::new(argument(5.0)?)?,
        )),
        _ => None,
    })
}

/// What a sampler needs to know of a local parent.
struct LocalParent {
    sampled: bool,
    /// The rate the parent's trace was kept at (100 when its trace state does not say).
    rate: f64,
    trace_state: TraceState,
}

/// The parent span if it is valid and in this process (not remote).
fn local_parent(parent: Option<&Context>) -> Option<LocalParent> {
    let cx = parent?;
    if !cx.has_active_span() {
        return None;
    }
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() || sc.is_remote() {
        return None;
    }
    let rate = sc
        .trace_state()
        .get(TRACE_STATE_KEY)
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|r| (0.0..=100.0).contains(r))
        .unwrap_or(100.0);
    Some(LocalParent {
        sampled: sc.is_sampled(),
        rate,
        trace_state: sc.trace_state().clone(),
    })
}

/// The trace state of a new span: a local parent's as it is; for a span decided here, the
/// parent's (remote, if any) with `own_rate` written in [`TRACE_STATE_KEY`] (removed when
/// 100 or not given, so that no stale rate of another service is inherited).
fn trace_state(
    local: Option<LocalParent>,
    parent: Option<&Context>,
    own_rate: Option<f64>,
) -> TraceState {
    if let Some(p) = local {
        return p.trace_state;
    }
    let inherited = parent
        .filter(|cx| cx.has_active_span())
        .map(|cx| cx.span().span_context().trace_state().clone())
        .unwrap_or_default();
    inherited.with_rate(own_rate)
}

trait WithRate: Sized {
    fn with_rate(self, rate: Option<f64>) -> Self;
}

impl WithRate for TraceState {
    fn with_rate(self, rate: Option<f64>) -> Self {
        match rate {
            Some(r) if r < 100.0 => self.insert(TRACE_STATE_KEY, r.to_string()).unwrap_or(self),
            _ => self.delete(TRACE_STATE_KEY).unwrap_or(self),
        }
    }
}

/// The sampling result: kept spans carry the rate (unless 100).
fn result(sampled: bool, rate: f64, record_only: bool, trace_state: TraceState) -> SamplingResult {
    let decision = match (sampled, record_only) {
        (true, _) => SamplingDecision::RecordAndSample,
        (false, true) => SamplingDecision::RecordOnly,
        (false, false) => SamplingDecision::Drop,
    };
    let attributes = if sampled && rate < 100.0 {
        vec![KeyValue::new(SAMPLE_RATE_ATTRIBUTE, rate)]
    } else {
        Vec::new()
    };
    SamplingResult {
        decision,
        attributes,
        trace_state,
    }
}

/// A duration in nanoseconds, saturating.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
