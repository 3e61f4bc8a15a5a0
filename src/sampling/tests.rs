#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceState, Tracer, TracerProvider,
};
use opentelemetry::Value;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};

use super::*;

/// The official rule of MAPPING.md §6.1, transcribed independently of the implementation:
/// Python's `((hash << 5) + hash) + ord(c)` on unbounded integers, reduced to a signed 32-bit
/// value after every step; `abs`, with `-2^31` as `2^31 - 1`; divided by `2^31 - 1`.
fn reference_score(trace_id: TraceId) -> f64 {
    let hex = format!("{trace_id:032x}");
    let mut hash: i64 = 5381;
    for c in hex.chars() {
        hash = (hash << 5) + hash + i64::from(u32::from(c));
        // Two's-complement wrap to 32 bits.
        hash = (hash + (1 << 31)).rem_euclid(1 << 32) - (1 << 31);
    }
    let max = (1i64 << 31) - 1;
    let abs = if hash == -(1 << 31) { max } else { hash.abs() };
    abs as f64 / max as f64
}

fn ids(n: usize) -> Vec<TraceId> {
    let mut rng = fastrand::Rng::with_seed(11);
    (0..n).map(|_| TraceId::from(rng.u128(1..))).collect()
}

fn decide(sampler: &impl ShouldSample, parent: Option<&Context>, id: TraceId) -> SamplingResult {
    sampler.should_sample(parent, id, "span", &SpanKind::Server, &[], &[])
}

fn rate_attribute(result: &SamplingResult) -> Option<f64> {
    result
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == SAMPLE_RATE_ATTRIBUTE)
        .map(|kv| match kv.value {
            Value::F64(f) => f,
            _ => f64::NAN,
        })
}

#[test]
fn fixed_percentage_agrees_with_the_official_rule() {
    let ids = ids(20_000);
    for ratio in [
        0.0, 0.001, 0.01, 0.1, 0.25, 0.333, 0.5, 0.75, 0.9, 0.99, 1.0,
    ] {
        let sampler = ApplicationInsightsSampler::new(ratio).unwrap();
        let mut kept = 0;
        for id in &ids {
            let result = decide(&sampler, None, *id);
            let want = ratio == 1.0 || (ratio > 0.0 && reference_score(*id) < ratio);
            let got = result.decision == SamplingDecision::RecordAndSample;
            assert_eq!(got, want, "ratio {ratio}, trace {id}");
            if got {
                kept += 1;
                let rate = rate_attribute(&result);
                if ratio == 1.0 {
                    assert_eq!(rate, None);
                } else {
                    assert_eq!(rate, Some(ratio * 100.0));
                }
            } else {
                assert_eq!(result.decision, SamplingDecision::Drop);
            }
        }
        // The score is about uniform: the kept share is near the ratio.
        let share = f64::from(kept) / ids.len() as f64;
        assert!((share - ratio).abs() < 0.02, "ratio {ratio}: kept {share}");
    }
}

#[test]
fn the_implementation_score_is_the_reference_score() {
    for id in ids(20_000) {
        assert_eq!(score::djb2_score(id), reference_score(id), "{id}");
    }
}

#[test]
fn bad_input_is_refused() {
    for ratio in [f64::NAN, -0.1, 1.000_001, f64::INFINITY, -0.0 - 1e-9] {
        let err = ApplicationInsightsSampler::new(ratio).unwrap_err();
        assert!(matches!(err, SamplerError::InvalidRatio(_)), "{ratio}");
        assert!(err.to_string().contains("between 0 and 1"), "{err}");
    }
    for rate in [f64::NAN, -1.0, f64::INFINITY, f64::NEG_INFINITY] {
        let err = RateLimitedSampler::new(rate).unwrap_err();
        assert!(matches!(err, SamplerError::InvalidRate(_)), "{rate}");
    }
    assert!(ApplicationInsightsSampler::new(0.0).is_ok());
    assert!(ApplicationInsightsSampler::new(-0.0).is_ok());
    assert!(RateLimitedSampler::new(0.0).is_ok());
}

fn parent(sampled: bool, remote: bool, state: TraceState) -> Context {
    let flags = if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let sc = SpanContext::new(
        TraceId::from(0x0123_4567_89ab_cdef_0123_4567_89ab_cdefu128),
        SpanId::from(7u64),
        flags,
        remote,
        state,
    );
    Context::new().with_remote_span_context(sc)
}

#[test]
fn local_parents_decide_and_pass_their_rate_on() {
    let fixed = ApplicationInsightsSampler::new(0.0).unwrap();
    // Ratio 0 drops every root, but a sampled local parent wins.
    let id = TraceId::from(5u128);
    let r = decide(
        &fixed,
        Some(&parent(true, false, TraceState::default())),
        id,
    );
    assert_eq!(r.decision, SamplingDecision::RecordAndSample);
    assert_eq!(rate_attribute(&r), None, "the parent's rate is 100");
    let everything = ApplicationInsightsSampler::new(1.0).unwrap();
    let r = decide(
        &everything,
        Some(&parent(false, false, TraceState::default())),
        id,
    );
    assert_eq!(r.decision, SamplingDecision::Drop);
    let r = decide(
        &everything.clone().with_record_only(true),
        Some(&parent(false, false, TraceState::default())),
        id,
    );
    assert_eq!(r.decision, SamplingDecision::RecordOnly);

    // A remote parent does not decide: the trace id does (services agree by the score).
    let half = ApplicationInsightsSampler::new(0.5).unwrap();
    let remote_id = TraceId::from(0x0123_4567_89ab_cdef_0123_4567_89ab_cdefu128);
    assert!(reference_score(remote_id) < 0.5);
    let r = decide(
        &half,
        Some(&parent(false, true, TraceState::default())),
        remote_id,
    );
    assert_eq!(r.decision, SamplingDecision::RecordAndSample);
    assert_eq!(rate_attribute(&r), Some(50.0));

    // The rate-limited sampler's children inherit the rate from the trace state, and do not
    // move the window.
    let clock = Arc::new(AtomicU64::new(0));
    let c = clock.clone();
    let limited = RateLimitedSampler::new(5.0)
        .unwrap()
        .with_clock(move || Duration::from_nanos(c.load(Ordering::SeqCst)));
    let state = TraceState::from_key_value([(TRACE_STATE_KEY, "12.5")]).unwrap();
    let r = decide(&limited, Some(&parent(true, false, state.clone())), id);
    assert_eq!(r.decision, SamplingDecision::RecordAndSample);
    assert_eq!(rate_attribute(&r), Some(12.5));
    assert_eq!(r.trace_state.get(TRACE_STATE_KEY), Some("12.5"));
    let r = decide(&limited, Some(&parent(false, false, state)), id);
    assert_eq!(r.decision, SamplingDecision::Drop);
    // A remote parent's entry is not inherited: the root decides and writes its own.
    clock.store(1_000_000, Ordering::SeqCst);
    let state = TraceState::from_key_value([(TRACE_STATE_KEY, "50"), ("other", "x")]).unwrap();
    let r = decide(&limited, Some(&parent(true, true, state)), id);
    // 1 ms after construction at 5/s: 0.5%.
    assert_eq!(r.trace_state.get(TRACE_STATE_KEY), Some("0.5"));
    assert_eq!(r.trace_state.get("other"), Some("x"));
}

#[test]
fn children_follow_their_root_through_the_sdk() {
    let exporter = InMemorySpanExporter::default();
    let clock = Arc::new(AtomicU64::new(0));
    let c = clock.clone();
    let sampler = RateLimitedSampler::new(5.0)
        .unwrap()
        .with_clock(move || Duration::from_nanos(c.load(Ordering::SeqCst)));
    let provider = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_simple_exporter(exporter.clone())
        .build();
    let tracer = provider.tracer("test");
    // 10 ms between roots at 5/s: 5% of the traces.
    for i in 1..=400u64 {
        clock.store(i * 10_000_000, Ordering::SeqCst);
        tracer.in_span("root", |cx| {
            let _child = tracer.start_with_context("child", &cx);
        });
    }
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let roots: Vec<_> = spans.iter().filter(|s| s.name == "root").collect();
    let children: Vec<_> = spans.iter().filter(|s| s.name == "child").collect();
    assert!(!roots.is_empty() && roots.len() < 60, "{}", roots.len());
    assert_eq!(roots.len(), children.len());
    for child in children {
        let root = roots
            .iter()
            .find(|r| r.span_context.trace_id() == child.span_context.trace_id())
            .unwrap();
        let rate = |s: &opentelemetry_sdk::trace::SpanData| {
            s.attributes
                .iter()
                .find(|kv| kv.key.as_str() == SAMPLE_RATE_ATTRIBUTE)
                .map(|kv| kv.value.clone())
        };
        assert_eq!(rate(child), rate(root));
        assert!(rate(root).is_some());
    }
}

#[test]
fn the_rate_limiter_holds_its_target() {
    for (target, spans_per_second) in [(5.0, 1000u64), (20.0, 500), (1.0, 200)] {
        let clock = Arc::new(AtomicU64::new(0));
        let c = clock.clone();
        let sampler = RateLimitedSampler::new(target)
            .unwrap()
            .with_clock(move || Duration::from_nanos(c.load(Ordering::SeqCst)));
        let seconds = 30;
        let gap = 1_000_000_000 / spans_per_second;
        let mut kept = 0u32;
        for (i, id) in ids((spans_per_second * seconds) as usize)
            .into_iter()
            .enumerate()
        {
            clock.store((i as u64 + 1) * gap, Ordering::SeqCst);
            if decide(&sampler, None, id).decision == SamplingDecision::RecordAndSample {
                kept += 1;
            }
        }
        let rate = f64::from(kept) / seconds as f64;
        assert!(
            rate > target * 0.6 && rate < target * 1.4,
            "target {target}/s at {spans_per_second} spans/s: kept {rate}/s"
        );
    }
    // Below the target every trace is kept, at rate 100 (no attribute).
    let clock = Arc::new(AtomicU64::new(0));
    let c = clock.clone();
    let sampler = RateLimitedSampler::new(5.0)
        .unwrap()
        .with_clock(move || Duration::from_nanos(c.load(Ordering::SeqCst)));
    for (i, id) in ids(50).into_iter().enumerate() {
        clock.store((i as u64 + 1) * 500_000_000, Ordering::SeqCst);
        let r = decide(&sampler, None, id);
        assert_eq!(r.decision, SamplingDecision::RecordAndSample);
        assert_eq!(rate_attribute(&r), None);
        assert_eq!(r.trace_state.get(TRACE_STATE_KEY), None);
    }
}

#[test]
fn environment() {
    let env = |sampler: Option<&'static str>, arg: Option<&'static str>| {
        move |name: &str| match name {
            ENV_SAMPLER => sampler.map(str::to_owned),
            ENV_SAMPLER_ARG => arg.map(str::to_owned),
            _ => None,
        }
    };
    let fixed = |s: Option<AzureMonitorSampler>| match s {
        Some(AzureMonitorSampler::FixedPercentage(s)) => Some(s.ratio()),
        _ => None,
    };
    let limited = |s: Option<AzureMonitorSampler>| match s {
        Some(AzureMonitorSampler::RateLimited(s)) => Some(s.traces_per_second()),
        _ => None,
    };
    let pick = |s, a| sampler_from(&env(s, a));
    assert!(pick(None, Some("0.5")).unwrap().is_none());
    assert!(pick(Some("traceidratio"), Some("0.5")).unwrap().is_none());
    assert_eq!(
        fixed(pick(Some("microsoft.fixed_percentage"), Some("0.25")).unwrap()),
        Some(0.25)
    );
    assert_eq!(
        fixed(pick(Some("microsoft.fixed.percentage"), None).unwrap()),
        Some(1.0)
    );
    assert_eq!(
        limited(pick(Some("microsoft.rate_limited"), Some(" 2.5 ")).unwrap()),
        Some(2.5)
    );
    assert_eq!(
        limited(pick(Some("microsoft.rate_limited"), Some("")).unwrap()),
        Some(5.0)
    );
    assert!(matches!(
        pick(Some("microsoft.fixed_percentage"), Some("2")),
        Err(SamplerError::InvalidRatio(_))
    ));
    assert!(matches!(
        pick(Some("microsoft.rate_limited"), Some("-1")),
        Err(SamplerError::InvalidRate(_))
    ));
    let err = pick(Some("microsoft.rate_limited"), Some("five")).unwrap_err();
    assert!(err.to_string().contains("\"five\""), "{err}");
}
