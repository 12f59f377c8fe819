//! Watch fan-out: many watches on one namespace, each on its own connection
//! as separate clients would hold them, and writes at a modest rate. Every
//! watcher must receive every event, once and in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use http::Method;
use http_body_util::BodyExt;
use serde::Deserialize;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

use crate::client::{Api, Conn, objects};
use crate::load::{OpenLoop, open_loop};
use crate::stats::Samples;

/// How many watches connect at once while they are being opened.
const OPEN_CONCURRENCY: usize = 32;
/// How long after the last write the watchers get to catch up.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What the fan-out measured.
#[derive(Debug)]
pub struct FanOut {
    pub watchers: usize,
    /// Writes that succeeded (each should reach every watcher).
    pub writes: usize,
    /// How long opening every watch took.
    pub open_time: Duration,
    /// Delivery latency: from the write's response reaching the writer to
    /// the event reaching a watcher, over every (watcher, event).
    pub delivery: Samples,
    /// Deliveries that arrived before the write's own response did
    /// (counted as 0 in `delivery`).
    pub before_response: u64,
    pub expected: u64,
    pub delivered: u64,
    /// (watcher, event) pairs that never arrived.
    pub missed: u64,
    pub duplicates: u64,
    /// Events whose resourceVersion was not above the one before.
    pub out_of_order: u64,
    /// Events for objects the writer did not write, ERROR events, and
    /// events whose resourceVersion differs from the one the write returned.
    pub unexpected: u64,
    /// Watches the server ended before the bench did.
    pub ended_early: usize,
    pub first_problem: Option<String>,
    /// The writes themselves: when each response arrived, and the
    /// resourceVersion it carried.
    pub write: OpenLoop<(Instant, u64)>,
}

impl FanOut {
    /// Whether every watcher got every event exactly once, in order.
    pub fn exact(&self) -> bool {
        self.missed == 0
            && self.duplicates == 0
            && self.out_of_order == 0
            && self.unexpected == 0
            && self.ended_early == 0
    }
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    object: EventObject,
}

#[derive(Deserialize)]
struct EventObject {
    #[serde(default)]
    metadata: Option<EventMeta>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    resource_version: Option<String>,
}

/// What one watcher saw.
#[derive(Debug, Default)]
struct Seen {
    /// ((write index, resourceVersion), when its event arrived); `None` for
    /// an event that is not one of the writer's ADDED events.
    events: Vec<(Option<(usize, u64)>, Instant)>,
    ended_early: bool,
    problem: Option<String>,
}

fn write_name(i: usize) -> String {
    format!("w-{i:06}")
}

/// The write index and resourceVersion of one of the writer's ADDED events.
fn parse_event(line: &[u8]) -> Option<(usize, u64)> {
    let event: Event = serde_json::from_slice(line).ok()?;
    if event.kind != "ADDED" {
        return None;
    }
    let meta = event.object.metadata?;
    let index = meta.name?.strip_prefix("w-")?.parse().ok()?;
    Some((index, meta.resource_version?.parse().ok()?))
}

/// Opens `watchers` watches on the ConfigMaps of `namespace` from its
/// current resourceVersion, then creates `writes` ConfigMaps there at
/// `rate` per second through `writer`, and waits for every watcher to see
/// every one. `progress` is called once the watches are open.
pub async fn fan_out(
    api: &Api,
    writer: &Conn,
    namespace: &str,
    watchers: usize,
    rate: f64,
    writes: usize,
    progress: impl FnOnce(Duration),
) -> Result<FanOut> {
    let list = objects::configmaps_path(namespace);
    let rv = objects::resource_version(
        &writer
            .call(Method::GET, &format!("{list}?limit=1"), None)
            .await?,
    )?;
    let watch_path = format!("{list}?watch=1&resourceVersion={rv}");

    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::channel::<Result<()>>(watchers.max(1));
    let received = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(Semaphore::new(OPEN_CONCURRENCY));
    let opening = Instant::now();
    let mut tasks = Vec::with_capacity(watchers);
    for w in 0..watchers {
        let (api, path, gate) = (api.clone(), watch_path.clone(), gate.clone());
        let (ready, mut stop, received) = (ready_tx.clone(), stop_rx.clone(), received.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen = Seen::default();
            let opened = async {
                let _permit = gate.acquire().await?;
                let conn = api.connect().await?;
                let resp = conn.send(Method::GET, &path, None).await?;
                if !resp.status().is_success() {
                    let status = resp.status();
                    let body = resp.into_body().collect().await?.to_bytes();
                    bail!("{status}: {}", String::from_utf8_lossy(&body));
                }
                anyhow::Ok((conn, resp))
            }
            .await
            .with_context(|| format!("open watch {w}"));
            let (_conn, resp) = match opened {
                Ok(opened) => {
                    let _ = ready.send(Ok(())).await;
                    opened
                }
                Err(e) => {
                    seen.problem = Some(format!("{e:#}"));
                    let _ = ready.send(Err(e)).await;
                    return seen;
                }
            };
            let mut body = resp.into_body();
            let mut buf: Vec<u8> = Vec::new();
            loop {
                let frame = tokio::select! {
                    frame = body.frame() => frame,
                    _ = stop.wait_for(|stop| *stop) => break,
                };
                let data = match frame {
                    None => {
                        seen.ended_early = true;
                        break;
                    }
                    Some(Err(e)) => {
                        seen.ended_early = true;
                        seen.problem = Some(format!("watch {w}: {e}"));
                        break;
                    }
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => data,
                        Err(_) => continue,
                    },
                };
                let now = Instant::now();
                buf.extend_from_slice(&data);
                while let Some(end) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=end).collect();
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let index = parse_event(&line);
                    if index.is_none() && seen.problem.is_none() {
                        seen.problem = Some(format!(
                            "watch {w} got an unexpected event: {}",
                            String::from_utf8_lossy(&line[..line.len().min(300)])
                        ));
                    }
                    seen.events.push((index, now));
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
            seen
        }));
    }
    drop(ready_tx);
    let mut open_failure = None;
    for _ in 0..watchers {
        match tokio::time::timeout(Duration::from_secs(120), ready_rx.recv()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(e))) => {
                open_failure.get_or_insert(e);
            }
            Ok(None) => break,
            Err(_) => {
                open_failure
                    .get_or_insert(anyhow::anyhow!("the watches did not all open within 120 s"));
                break;
            }
        }
    }
    if let Some(e) = open_failure {
        let _ = stop_tx.send(true);
        for t in tasks {
            t.abort();
        }
        return Err(e.context(format!("open {watchers} watches")));
    }
    let open_time = opening.elapsed();
    progress(open_time);

    let write = open_loop(rate, writes, |i| {
        let (conn, ns) = (writer.clone(), namespace.to_string());
        async move {
            let name = write_name(i);
            let body = conn
                .call(
                    Method::POST,
                    &objects::configmaps_path(&ns),
                    Some(objects::configmap(&ns, &name, i, None)),
                )
                .await?;
            let at = Instant::now();
            Ok((at, objects::resource_version(&body)?.parse()?))
        }
    })
    .await;

    // Wait until every watcher saw every successful write, or give up.
    let expected = (write.outputs.len() * watchers) as u64;
    let drain_deadline = Instant::now() + DRAIN_TIMEOUT;
    while received.load(Ordering::Relaxed) < expected && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_tx.send(true);

    let mut responded: Vec<Option<(Instant, u64)>> = vec![None; writes];
    for (i, out) in &write.outputs {
        responded[*i] = Some(*out);
    }
    let mut out = FanOut {
        watchers,
        writes: write.outputs.len(),
        open_time,
        delivery: Samples::default(),
        before_response: 0,
        expected,
        delivered: 0,
        missed: 0,
        duplicates: 0,
        out_of_order: 0,
        unexpected: 0,
        ended_early: 0,
        first_problem: None,
        write,
    };
    let mut delivery = Samples::default();
    for task in tasks {
        let seen = task.await.context("a watcher task failed")?;
        out.ended_early += usize::from(seen.ended_early);
        if out.first_problem.is_none() {
            out.first_problem = seen.problem;
        }
        let mut got = vec![false; writes];
        let mut last_rv = 0;
        for (event, at) in seen.events {
            let Some((i, rv, (responded_at, written_rv))) =
                event.and_then(|(i, rv)| Some((i, rv, (*responded.get(i)?)?)))
            else {
                out.unexpected += 1;
                continue;
            };
            if rv != written_rv {
                out.unexpected += 1;
                if out.first_problem.is_none() {
                    out.first_problem = Some(format!(
                        "write {i} returned resourceVersion {written_rv}, its event carried {rv}"
                    ));
                }
                continue;
            }
            if got[i] {
                out.duplicates += 1;
                continue;
            }
            got[i] = true;
            // Concurrent writes may commit in any order; the stream must
            // follow commit (resourceVersion) order.
            if rv <= last_rv {
                out.out_of_order += 1;
            }
            last_rv = last_rv.max(rv);
            out.delivered += 1;
            if at < responded_at {
                out.before_response += 1;
            }
            delivery.ok(at.saturating_duration_since(responded_at));
        }
        out.missed += responded
            .iter()
            .zip(&got)
            .filter(|(r, g)| r.is_some() && !**g)
            .count() as u64;
    }
    let wall = out.write.samples.wall;
    out.delivery = delivery.finish(wall);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_write_index_and_revision_of_added_events() {
        let added = br#"{"type":"ADDED","object":{"kind":"ConfigMap","metadata":{"name":"w-000042","resourceVersion":"9"},"data":{}}}"#;
        assert_eq!(parse_event(added), Some((42, 9)));
        let modified = br#"{"type":"MODIFIED","object":{"metadata":{"name":"w-000042","resourceVersion":"10"}}}"#;
        assert_eq!(parse_event(modified), None);
        let error = br#"{"type":"ERROR","object":{"kind":"Status","code":410}}"#;
        assert_eq!(parse_event(error), None);
        let no_revision = br#"{"type":"ADDED","object":{"metadata":{"name":"w-000001"}}}"#;
        assert_eq!(parse_event(no_revision), None);
        assert_eq!(parse_event(b"not json"), None);
        assert_eq!(write_name(42), "w-000042");
    }
}
