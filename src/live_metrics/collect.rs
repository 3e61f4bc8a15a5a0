//! The counters behind the 11 metrics (LIVE-METRICS.md §7) and the process's CPU and memory.
//!
//! The counters are atomics, updated by the application's threads (only while a portal session
//! is subscribed) and taken by the client at each post.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::protocol::{names, MetricPoint};
use crate::wire::Data;

/// Counts since the last post.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    requests_failed: AtomicU64,
    /// Sum of request durations in µs.
    request_micros: AtomicU64,
    dependencies: AtomicU64,
    dependencies_failed: AtomicU64,
    dependency_micros: AtomicU64,
    exceptions: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Counts {
    pub(crate) requests: u64,
    pub(crate) requests_failed: u64,
    pub(crate) request_micros: u64,
    pub(crate) dependencies: u64,
    pub(crate) dependencies_failed: u64,
    pub(crate) dependency_micros: u64,
    pub(crate) exceptions: u64,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Counters {
    /// Counts one Track item: requests and dependencies with the Track mapping's `success`,
    /// exceptions (from span events and log records).
    pub(crate) fn record(&self, data: &Data<'_>) {
        match data {
            Data::Request(r) => {
                self.requests.fetch_add(1, Relaxed);
                if !r.success {
                    self.requests_failed.fetch_add(1, Relaxed);
                }
                self.request_micros.fetch_add(micros(r.duration.0), Relaxed);
            }
            Data::RemoteDependency(d) => {
                self.dependencies.fetch_add(1, Relaxed);
                if !d.success {
                    self.dependencies_failed.fetch_add(1, Relaxed);
                }
                self.dependency_micros
                    .fetch_add(micros(d.duration.0), Relaxed);
            }
            Data::Exception(_) => {
                self.exceptions.fetch_add(1, Relaxed);
            }
            _ => {}
        }
    }

    /// The counts since the last call, and zero again.
    pub(crate) fn take(&self) -> Counts {
        Counts {
            requests: self.requests.swap(0, Relaxed),
            requests_failed: self.requests_failed.swap(0, Relaxed),
            request_micros: self.request_micros.swap(0, Relaxed),
            dependencies: self.dependencies.swap(0, Relaxed),
            dependencies_failed: self.dependencies_failed.swap(0, Relaxed),
            dependency_micros: self.dependency_micros.swap(0, Relaxed),
            exceptions: self.exceptions.swap(0, Relaxed),
        }
    }
}

/// The 11 metrics of one post (§7 R: every name every time, 0 when nothing happened): rates are
/// counts per second of `elapsed`, durations are means in ms.
pub(crate) fn metrics(
    c: &Counts,
    elapsed: Duration,
    cpu_percent: f64,
    rss: u64,
) -> Vec<MetricPoint> {
    let secs = elapsed.as_secs_f64().max(1e-3);
    let rate = |n: u64| n as f64 / secs;
    let mean_ms = |sum: u64, n: u64| {
        if n == 0 {
            0.0
        } else {
            sum as f64 / n as f64 / 1000.0
        }
    };
    [
        (names::REQUESTS, rate(c.requests)),
        (names::REQUESTS_FAILED, rate(c.requests_failed)),
        (
            names::REQUEST_DURATION,
            mean_ms(c.request_micros, c.requests),
        ),
        (names::DEPENDENCIES, rate(c.dependencies)),
        (names::DEPENDENCIES_FAILED, rate(c.dependencies_failed)),
        (
            names::DEPENDENCY_DURATION,
            mean_ms(c.dependency_micros, c.dependencies),
        ),
        (names::EXCEPTIONS, rate(c.exceptions)),
        (names::MEMORY_OLD, rss as f64),
        (names::MEMORY, rss as f64),
        (names::CPU_OLD, cpu_percent),
        (names::CPU, cpu_percent),
    ]
    .into_iter()
    .map(|(name, value)| MetricPoint {
        name: name.to_owned(),
        value,
        weight: 1,
    })
    .collect()
}

/// Samples the process's CPU time and resident memory.
///
/// On Linux from `/proc/self/stat` (user + system time in clock ticks of 1/100 s, the
/// `USER_HZ` that `/proc` uses on every mainstream architecture) and `/proc/self/status`
/// (`VmRSS`, in kB, which needs no page size). Elsewhere both are reported as 0.
#[derive(Debug, Default)]
pub(crate) struct ProcessSampler {
    /// CPU seconds at the previous sample and the wall time between.
    last_cpu: Option<f64>,
}

impl ProcessSampler {
    /// CPU % of the process over `wall` (the time since the previous sample), normalized by
    /// the number of cores and capped at 100 (0 on the first sample), and the RSS in bytes.
    pub(crate) fn sample(&mut self, wall: Duration) -> (f64, u64) {
        let cpu = read_cpu_seconds();
        let percent = match (self.last_cpu, cpu) {
            (Some(before), Some(now)) => cpu_percent(now - before, wall, cores()),
            _ => 0.0,
        };
        self.last_cpu = cpu;
        (percent, read_rss().unwrap_or(0))
    }

    /// Forgets the previous CPU sample (on entering Ping, as .NET).
    pub(crate) fn reset(&mut self) {
        self.last_cpu = None;
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// `cpu` seconds used over `wall`, as a percentage of `cores` cores, within 0..=100.
pub(crate) fn cpu_percent(cpu: f64, wall: Duration, cores: usize) -> f64 {
    let wall = wall.as_secs_f64();
    if wall <= 0.0 || !cpu.is_finite() {
        return 0.0;
    }
    (cpu / wall / cores.max(1) as f64 * 100.0).clamp(0.0, 100.0)
}

#[cfg(target_os = "linux")]
fn read_cpu_seconds() -> Option<f64> {
    parse_stat_cpu(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

#[cfg(not(target_os = "linux"))]
fn read_cpu_seconds() -> Option<f64> {
    None
}

#[cfg(target_os = "linux")]
fn read_rss() -> Option<u64> {
    parse_status_rss(&std::fs::read_to_string("/proc/self/status").ok()?)
}

#[cfg(not(target_os = "linux"))]
fn read_rss() -> Option<u64> {
    None
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line, in seconds. The command name
/// (field 2) is in parentheses and may contain spaces and parentheses: fields are counted after
/// the last `)`.
pub(crate) fn parse_stat_cpu(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // `rest` starts at field 3 (state); utime is field 14.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// `VmRSS` of `/proc/<pid>/status`, in bytes.
pub(crate) fn parse_status_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line["VmRSS:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eleven_names_every_time_with_rates_and_mean_durations() {
        let c = Counts {
            requests: 4,
            requests_failed: 1,
            request_micros: 40_000,
            dependencies: 0,
            exceptions: 2,
            ..Counts::default()
        };
        let m = metrics(&c, Duration::from_secs(2), 12.5, 4096);
        assert_eq!(m.len(), 11);
        let get = |n: &str| m.iter().find(|p| p.name == n).map(|p| p.value);
        assert_eq!(get(names::REQUESTS), Some(2.0));
        assert_eq!(get(names::REQUESTS_FAILED), Some(0.5));
        assert_eq!(get(names::REQUEST_DURATION), Some(10.0));
        assert_eq!(get(names::DEPENDENCY_DURATION), Some(0.0));
        assert_eq!(get(names::EXCEPTIONS), Some(1.0));
        assert_eq!(get(names::MEMORY_OLD), get(names::MEMORY));
        assert_eq!(get(names::CPU_OLD), Some(12.5));
        assert_eq!(get(names::CPU), Some(12.5));
        assert!(m.iter().all(|p| p.weight == 1));
    }

    #[test]
    fn proc_files_parse() {
        let stat = "1234 (my (odd) app) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 8 0 100 2000 30";
        assert_eq!(parse_stat_cpu(stat), Some(3.0));
        assert_eq!(parse_stat_cpu("garbage"), None);
        let status = "Name:\tapp\nVmPeak:\t  100 kB\nVmRSS:\t    2048 kB\n";
        assert_eq!(parse_status_rss(status), Some(2048 * 1024));
        assert_eq!(parse_status_rss("Name: x"), None);
    }

    #[test]
    fn cpu_is_normalized_and_capped() {
        assert_eq!(cpu_percent(1.0, Duration::from_secs(1), 4), 25.0);
        assert_eq!(cpu_percent(8.0, Duration::from_secs(1), 4), 100.0);
        assert_eq!(cpu_percent(1.0, Duration::ZERO, 4), 0.0);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_process_is_measured_on_linux() {
        let mut p = ProcessSampler::default();
        let (first, rss) = p.sample(Duration::from_secs(1));
        assert_eq!(first, 0.0);
        assert!(rss > 0);
    }
}
