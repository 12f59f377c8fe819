//! Jittered exponential backoff. Pure: the caller passes in the random number generator,
//! so tests are deterministic.

use std::time::Duration;

use rand::Rng;

/// How a backoff delay is randomised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// No randomness: `min(cap, base * factor^n)`. For tests and debugging only; a fleet
    /// that lost its server must not come back in lockstep.
    None,
    /// "Full jitter": uniform in `[0, min(cap, base * factor^n)]`.
    Full,
    /// "Decorrelated jitter": uniform in `[base, previous * 3]`, capped. Grows about as
    /// fast as full jitter but never retries immediately.
    Decorrelated,
}

/// The state of one backoff sequence.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    factor: f64,
    cap: Duration,
    jitter: Jitter,
    attempt: u32,
    previous: Duration,
}

impl Backoff {
    /// A fresh sequence. `factor` below 1 is treated as 1; `cap` below `base` as `base`.
    pub fn new(base: Duration, factor: f64, cap: Duration, jitter: Jitter) -> Backoff {
        let factor = if factor.is_finite() && factor >= 1.0 {
            factor
        } else {
            1.0
        };
        Backoff {
            base,
            factor,
            cap: cap.max(base),
            jitter,
            attempt: 0,
            previous: base,
        }
    }

    /// How many delays were handed out since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Starts the sequence over (after a stable connection).
    pub fn reset(&mut self) {
        self.attempt = 0;
        self.previous = self.base;
    }

    /// The delay before the next try, without jitter: `min(cap, base * factor^attempt)`.
    pub fn ceiling(&self) -> Duration {
        let exp = i32::try_from(self.attempt).unwrap_or(i32::MAX);
        let secs = self.base.as_secs_f64() * self.factor.powi(exp);
        if !secs.is_finite() || secs >= self.cap.as_secs_f64() {
            self.cap
        } else {
            Duration::from_secs_f64(secs)
        }
    }

    /// The next delay, and advances the sequence.
    pub fn next_delay<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Duration {
        let delay = match self.jitter {
            Jitter::None => self.ceiling(),
            Jitter::Full => uniform(rng, Duration::ZERO, self.ceiling()),
            Jitter::Decorrelated => {
                let upper = self.previous.saturating_mul(3).min(self.cap);
                uniform(rng, self.base, upper.max(self.base))
            }
        };
        self.previous = delay.max(self.base);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }
}

/// Uniform in `[low, high]`, at nanosecond resolution.
fn uniform<R: Rng + ?Sized>(rng: &mut R, low: Duration, high: Duration) -> Duration {
    let low_ns = u64::try_from(low.as_nanos()).unwrap_or(u64::MAX);
    let high_ns = u64::try_from(high.as_nanos()).unwrap_or(u64::MAX);
    if high_ns <= low_ns {
        return low;
    }
    Duration::from_nanos(rng.random_range(low_ns..=high_ns))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn no_jitter_grows_geometrically_up_to_the_cap() {
        let mut b = Backoff::new(100 * MS, 2.0, 1000 * MS, Jitter::None);
        let mut rng = StdRng::seed_from_u64(1);
        let delays: Vec<_> = (0..7).map(|_| b.next_delay(&mut rng)).collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1000, 1000, 1000].map(|n| n * MS)
        );
    }

    #[test]
    fn huge_attempt_counts_stay_at_the_cap() {
        let mut b = Backoff::new(100 * MS, 10.0, 5000 * MS, Jitter::Full);
        let mut rng = StdRng::seed_from_u64(2);
        for _ in 0..10_000 {
            assert!(b.next_delay(&mut rng) <= 5000 * MS);
        }
        assert_eq!(b.ceiling(), 5000 * MS);
    }

    #[test]
    fn full_jitter_stays_within_zero_and_the_ceiling() {
        let mut rng = StdRng::seed_from_u64(3);
        for attempt in 0..12 {
            let mut b = Backoff::new(100 * MS, 2.0, 3000 * MS, Jitter::Full);
            for _ in 0..attempt {
                b.next_delay(&mut rng);
            }
            let ceiling = b.ceiling();
            let mut seen_low = false;
            let mut seen_high = false;
            for _ in 0..400 {
                let mut probe = b.clone();
                let d = probe.next_delay(&mut rng);
                assert!(d <= ceiling, "{d:?} > {ceiling:?} at attempt {attempt}");
                seen_low |= d < ceiling / 4;
                seen_high |= d > ceiling * 3 / 4;
            }
            assert!(seen_low && seen_high, "jitter does not spread at {attempt}");
        }
    }

    #[test]
    fn decorrelated_jitter_stays_between_base_and_cap() {
        let mut rng = StdRng::seed_from_u64(4);
        let mut b = Backoff::new(100 * MS, 2.0, 2000 * MS, Jitter::Decorrelated);
        let mut max = Duration::ZERO;
        for _ in 0..1000 {
            let d = b.next_delay(&mut rng);
            assert!(d >= 100 * MS && d <= 2000 * MS, "{d:?}");
            max = max.max(d);
        }
        assert!(max > 1500 * MS, "never came near the cap: {max:?}");
    }

    #[test]
    fn same_seed_same_sequence() {
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut b = Backoff::new(100 * MS, 2.0, 10_000 * MS, Jitter::Full);
            (0..10).map(|_| b.next_delay(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Backoff::new(100 * MS, 2.0, 10_000 * MS, Jitter::None);
        let mut rng = StdRng::seed_from_u64(5);
        for _ in 0..5 {
            b.next_delay(&mut rng);
        }
        assert_eq!(b.attempt(), 5);
        b.reset();
        assert_eq!(b.next_delay(&mut rng), 100 * MS);
    }
}
