//! Load generators: open loop (a fixed schedule) and closed loop (N clients
//! as fast as each one's responses allow).

use std::future::Future;
use std::time::Duration;

use anyhow::Result;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::Conn;
use crate::stats::Samples;

/// A request that takes longer than this counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What an open-loop phase measured.
#[derive(Debug)]
pub struct OpenLoop<T> {
    /// Latency from each request's scheduled send time to its whole
    /// response, so a slow response does not hide the requests queued
    /// behind it (no coordinated omission).
    pub samples: Samples,
    /// What each successful request returned, by its index.
    pub outputs: Vec<(usize, T)>,
    /// How late the bench's own timer woke for each request; part of the
    /// latencies above.
    pub lag: Samples,
}

/// Issues `count` requests at `rate` per second, request `i` at
/// `start + i / rate`, each as its own task so none waits for another.
pub async fn open_loop<T, F, Fut>(rate: f64, count: usize, mut op: F) -> OpenLoop<T>
where
    T: Send + 'static,
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<T>> + Send + 'static,
{
    let period = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now() + Duration::from_millis(20);
    let mut tasks = JoinSet::new();
    let mut lag = Samples::default();
    for i in 0..count {
        let scheduled = start + period.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled).await;
        lag.ok(scheduled.elapsed());
        let request = op(i);
        tasks.spawn(async move {
            let result = tokio::time::timeout(REQUEST_TIMEOUT, request).await;
            (i, scheduled.elapsed(), result)
        });
    }
    let mut samples = Samples::default();
    let mut outputs = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((i, latency, Ok(Ok(out)))) => {
                samples.ok(latency);
                outputs.push((i, out));
            }
            Ok((_, _, Ok(Err(e)))) => samples.error(format!("{e:#}")),
            Ok((_, _, Err(_))) => samples.error(format!("no response within {REQUEST_TIMEOUT:?}")),
            Err(e) => samples.error(format!("request task failed: {e}")),
        }
    }
    outputs.sort_unstable_by_key(|(i, _)| *i);
    let wall = start.elapsed();
    OpenLoop {
        samples: samples.finish(wall),
        outputs,
        lag: lag.finish(wall),
    }
}

/// Runs one client per connection in `conns` for `duration`; each issues
/// `op(conn, client, seq)` one after another. Latency is per request.
pub async fn closed_loop<F, Fut>(conns: &[Conn], duration: Duration, op: F) -> Samples
where
    F: Fn(Conn, usize, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = JoinSet::new();
    for (client, conn) in conns.iter().enumerate() {
        let (conn, op) = (conn.clone(), op.clone());
        tasks.spawn(async move {
            let mut samples = Samples::default();
            let mut seq = 0;
            while Instant::now() < deadline {
                let sent = Instant::now();
                match tokio::time::timeout(REQUEST_TIMEOUT, op(conn.clone(), client, seq)).await {
                    Ok(Ok(())) => samples.ok(sent.elapsed()),
                    Ok(Err(e)) => samples.error(format!("{e:#}")),
                    Err(_) => samples.error(format!("no response within {REQUEST_TIMEOUT:?}")),
                }
                seq += 1;
            }
            samples
        });
    }
    let mut all = Samples::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(samples) => all.merge(samples),
            Err(e) => all.error(format!("client task failed: {e}")),
        }
    }
    all.finish(start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn open_loop_keeps_its_schedule_when_responses_are_slow() {
        // Every response takes 1 s; at 100/s the requests must still start
        // every 10 ms, and each latency is counted from its scheduled time.
        let started = Instant::now();
        let run = open_loop(100.0, 50, |i| async move {
            let sent = Instant::now();
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok((i, sent))
        })
        .await;
        assert_eq!(run.outputs.len(), 50);
        assert_eq!(run.samples.errors, 0);
        for (i, (j, sent)) in &run.outputs {
            assert_eq!(i, j);
            let offset = sent.duration_since(started);
            let expected = Duration::from_millis(20 + 10 * *i as u64);
            assert!(offset >= expected && offset < expected + Duration::from_millis(2));
        }
        let summary = run.samples.summary();
        assert!(summary.p50 >= Duration::from_secs(1));
        assert!(summary.max < Duration::from_millis(1010));
        // The whole run takes 20 ms + 490 ms of sends + 1 s of the last one.
        assert!(run.samples.wall < Duration::from_millis(1520));
    }

    #[tokio::test(start_paused = true)]
    async fn open_loop_counts_failures_apart() {
        let run = open_loop(1000.0, 10, |i| async move {
            if i % 2 == 0 {
                Ok(i)
            } else {
                Err(anyhow::anyhow!("409 Conflict"))
            }
        })
        .await;
        assert_eq!(run.outputs.len(), 5);
        assert_eq!(run.samples.errors, 5);
        assert_eq!(run.samples.first_error.as_deref(), Some("409 Conflict"));
    }
}
