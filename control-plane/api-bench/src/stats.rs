//! Latency samples, their percentiles, and how the report prints them.

use std::time::Duration;

/// The nearest-rank percentile of `sorted`: the smallest sample that at
/// least a fraction `q` of all samples are at or below. Zero when empty.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // The small epsilon keeps 0.99 × 100 at rank 99 despite float rounding.
    let rank = (q * sorted.len() as f64 - 1e-9).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What one phase measured: the latencies of the requests that succeeded,
/// and how many failed.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    /// Sorted once [`finish`](Self::finish) has run.
    pub latencies: Vec<Duration>,
    pub errors: u64,
    /// The first failure, for the progress line and the report.
    pub first_error: Option<String>,
    /// From the first request's (scheduled) start to the last completion.
    pub wall: Duration,
}

impl Samples {
    pub fn ok(&mut self, latency: Duration) {
        self.latencies.push(latency);
    }

    pub fn error(&mut self, error: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(error.to_string());
        }
    }

    /// Adds `other`'s samples to these.
    pub fn merge(&mut self, other: Samples) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// Sorts the latencies and records the wall time.
    pub fn finish(mut self, wall: Duration) -> Self {
        self.latencies.sort_unstable();
        self.wall = wall;
        self
    }

    pub fn summary(&self) -> Summary {
        debug_assert!(self.latencies.is_sorted());
        Summary {
            count: self.latencies.len(),
            errors: self.errors,
            per_sec: if self.wall.is_zero() {
                0.0
            } else {
                self.latencies.len() as f64 / self.wall.as_secs_f64()
            },
            p50: percentile(&self.latencies, 0.50),
            p99: percentile(&self.latencies, 0.99),
            max: self.latencies.last().copied().unwrap_or_default(),
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    /// Requests that succeeded.
    pub count: usize,
    pub errors: u64,
    /// Successful requests per second of wall time.
    pub per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ok, {} errors, {:.0}/s, p50 {}, p99 {}, max {}",
            self.count,
            self.errors,
            self.per_sec,
            ms(self.p50),
            ms(self.p99),
            ms(self.max)
        )
    }
}

/// A latency for a table: two decimals below 10 ms, fewer above.
pub fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 100.0 {
        format!("{ms:.1} ms")
    } else if ms < 10_000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

/// 1234567 as "1,234,567".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// KiB as MiB for a table.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// `published / measured`, as "N×" with sensible precision.
pub fn times(ratio: f64) -> String {
    if ratio >= 100.0 {
        format!("{ratio:.0}×")
    } else if ratio >= 10.0 {
        format!("{ratio:.1}×")
    } else {
        format!("{ratio:.2}×")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms_list(values: impl IntoIterator<Item = u64>) -> Vec<Duration> {
        values.into_iter().map(Duration::from_millis).collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        let hundred = ms_list(1..=100);
        assert_eq!(percentile(&hundred, 0.50), Duration::from_millis(50));
        assert_eq!(percentile(&hundred, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&hundred, 1.0), Duration::from_millis(100));
        assert_eq!(percentile(&hundred, 0.0), Duration::from_millis(1));
        let thousand = ms_list(1..=1000);
        assert_eq!(percentile(&thousand, 0.99), Duration::from_millis(990));
        let four = ms_list([10, 20, 30, 40]);
        assert_eq!(percentile(&four, 0.50), Duration::from_millis(20));
        assert_eq!(percentile(&four, 0.99), Duration::from_millis(40));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
        assert_eq!(percentile(&ms_list([7]), 0.99), Duration::from_millis(7));
    }

    #[test]
    fn summary_counts_errors_apart_from_latencies() {
        let mut s = Samples::default();
        for v in [3, 1, 2] {
            s.ok(Duration::from_millis(v));
        }
        s.error("409 Conflict");
        s.error("500");
        let s = s.finish(Duration::from_secs(1));
        let sum = s.summary();
        assert_eq!(sum.count, 3);
        assert_eq!(sum.errors, 2);
        assert_eq!(s.first_error.as_deref(), Some("409 Conflict"));
        assert_eq!(sum.p50, Duration::from_millis(2));
        assert_eq!(sum.max, Duration::from_millis(3));
        assert!((sum.per_sec - 3.0).abs() < 1e-9);
    }

    #[test]
    fn merged_samples_keep_the_first_error() {
        let mut a = Samples::default();
        a.ok(Duration::from_millis(1));
        let mut b = Samples::default();
        b.error("boom");
        b.ok(Duration::from_millis(2));
        a.merge(b);
        let a = a.finish(Duration::from_secs(2));
        assert_eq!(a.summary().count, 2);
        assert_eq!(a.summary().errors, 1);
        assert_eq!(a.first_error.as_deref(), Some("boom"));
    }

    #[test]
    fn formats() {
        assert_eq!(ms(Duration::from_micros(1234)), "1.23 ms");
        assert_eq!(ms(Duration::from_micros(12_340)), "12.3 ms");
        assert_eq!(ms(Duration::from_millis(1234)), "1234 ms");
        assert_eq!(ms(Duration::from_secs(12)), "12.0 s");
        assert_eq!(mib(2048), "2.0 MiB");
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(200_000), "200,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(times(526.3), "526×");
        assert_eq!(times(2.345), "2.35×");
    }
}
