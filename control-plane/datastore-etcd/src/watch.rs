//! Watching a prefix through an etcd watch, gaplessly across broken streams.
//!
//! A watcher is one etcd watch (with `prev_kv`) plus the next revision it has
//! not delivered. etcd sends every event of a revision in one response, so once
//! a response is taken, everything before `next` has been delivered. When the
//! gRPC stream breaks (etcd restarted, the connection dropped), the watcher
//! opens a new watch from `next`, with backoff, and gives up only after
//! [`EtcdConfig::watch_outage_limit`](crate::EtcdConfig::watch_outage_limit)
//! without a working stream.
//!
//! The stream owns everything it uses; no task is spawned, so dropping the
//! stream drops the gRPC stream, and etcd cancels the watch.

use std::collections::VecDeque;
use std::time::Duration;

use etcd_client::{EventType, WatchClient, WatchOptions, WatchResponse};
use futures::stream::{self, StreamExt};
use tokio::time::Instant;
use tracing::{Instrument, debug, info, warn};

use kedge_datastore::{Error, Event, EventKind, KeyValue, Result, Revision, WatchStream, key};

use crate::error::{BACKEND, Failure, Kind, Unexpected, WatchLost, unexpected};
use crate::kv_from_ref;

const OP: &str = "watch";
const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(5);

/// How long to wait before each attempt to re-establish a watch, and when to
/// give up. No I/O and no clock: `now` is passed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Backoff {
    limit: Duration,
    delay: Duration,
    outage_since: Option<Instant>,
}

impl Backoff {
    pub(crate) fn new(limit: Duration) -> Self {
        Backoff {
            limit,
            delay: FIRST_DELAY,
            outage_since: None,
        }
    }

    /// The stream broke, or an attempt to re-establish it failed, at `now`.
    /// Returns how long to wait before the next attempt, or `None` when the
    /// outage has lasted the whole limit.
    pub(crate) fn failed(&mut self, now: Instant) -> Option<Duration> {
        let since = *self.outage_since.get_or_insert(now);
        let left = self
            .limit
            .checked_sub(now.saturating_duration_since(since))
            .filter(|left| !left.is_zero())?;
        let delay = self.delay.min(left);
        self.delay = (self.delay * 2).min(MAX_DELAY);
        Some(delay)
    }

    /// A watch was established: the outage is over.
    pub(crate) fn connected(&mut self) {
        self.delay = FIRST_DELAY;
        self.outage_since = None;
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    pub(crate) request_timeout: Duration,
    pub(crate) outage_limit: Duration,
}

struct Watcher {
    client: WatchClient,
    prefix: String,
    /// The end of the prefix's range; `None` for no end.
    end: Option<Vec<u8>>,
    /// The first revision not yet delivered.
    next: Revision,
    stream: Option<etcd_client::WatchStream>,
    ready: VecDeque<Event>,
    backoff: Backoff,
    settings: Settings,
    /// Why the stream last broke, for the error when the watcher gives up.
    last_failure: String,
    done: bool,
}

/// Watches `prefix` from `start` (inclusive, already checked against the
/// compact revision). Fails now if the first watch cannot be established.
pub(crate) async fn watch(
    client: WatchClient,
    prefix: &str,
    start: Revision,
    settings: Settings,
) -> Result<WatchStream> {
    let mut watcher = Watcher {
        client,
        prefix: prefix.to_string(),
        end: key::prefix_end(prefix.as_bytes()),
        next: start,
        stream: None,
        ready: VecDeque::new(),
        backoff: Backoff::new(settings.outage_limit),
        settings,
        last_failure: String::new(),
        done: false,
    };
    watcher.stream = Some(watcher.open().await.map_err(|f| f.into_error(OP))?);
    let span = tracing::debug_span!("watch", prefix = %prefix, start);
    Ok(stream::unfold(watcher, move |mut w| {
        async move {
            let item = w.next_event().await?;
            Some((item, w))
        }
        .instrument(span.clone())
    })
    .boxed())
}

impl Watcher {
    /// Opens an etcd watch from `next` and waits for etcd to confirm it.
    async fn open(&self) -> Result<etcd_client::WatchStream, Failure> {
        let mut options = WatchOptions::new()
            .with_start_revision(self.next)
            .with_prev_key();
        options = match &self.end {
            Some(end) => options.with_range(end.clone()),
            None => options.with_from_key(),
        };
        let mut client = self.client.clone();
        let key = self.prefix.clone().into_bytes();
        let open = async move {
            let mut stream = client
                .watch(key, Some(options))
                .await
                .map_err(Failure::classify)?;
            // etcd confirms every new watch before it sends any event of it.
            match stream.message().await.map_err(Failure::classify)? {
                Some(resp) if resp.created() && !resp.canceled() => Ok(stream),
                Some(resp) => Err(Failure {
                    kind: Kind::Other,
                    source: Box::new(Unexpected(format!(
                        "etcd refused to create the watch: {}",
                        cancel_reason(&resp)
                    ))),
                }),
                None => Err(Failure {
                    kind: Kind::Unavailable,
                    source: Box::new(Unexpected(
                        "the watch stream ended before etcd confirmed the watch".into(),
                    )),
                }),
            }
        };
        match tokio::time::timeout(self.settings.request_timeout, open).await {
            Ok(result) => result,
            Err(_) => Err(Failure::timed_out(self.settings.request_timeout)),
        }
    }

    async fn next_event(&mut self) -> Option<Result<Event>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(Ok(event));
            }
            if self.done {
                return None;
            }
            let Some(stream) = self.stream.as_mut() else {
                if let Err(err) = self.reconnect().await {
                    self.done = true;
                    return Some(Err(err));
                }
                continue;
            };
            let broken = match stream.message().await {
                Ok(Some(resp)) => match self.take(&resp) {
                    Ok(()) => continue,
                    Err(err) => {
                        self.done = true;
                        self.stream = None;
                        return Some(Err(err));
                    }
                },
                Ok(None) => "etcd closed the watch stream".to_string(),
                Err(err) => err.to_string(),
            };
            warn!(next = self.next, error = %broken, "watch stream broke; re-establishing it");
            self.stream = None;
            self.last_failure = broken;
        }
    }

    /// Takes one watch response: its events become ready, and a cancel ends
    /// the watch.
    fn take(&mut self, resp: &WatchResponse) -> Result<()> {
        if resp.compact_revision() > 0 {
            return Err(Error::Compacted {
                requested: self.next,
                compacted: resp.compact_revision(),
            });
        }
        if resp.canceled() {
            return Err(unexpected(
                OP,
                format!("etcd canceled the watch: {}", cancel_reason(resp)),
            ));
        }
        // Progress notifications and other empty responses carry nothing to
        // deliver; they are not used to move `next`.
        let events = resp
            .events()
            .iter()
            .map(convert)
            .collect::<Result<Vec<_>>>()?;
        if let Some(last) = events.last() {
            self.next = last.revision() + 1;
        }
        self.ready.extend(events);
        Ok(())
    }

    /// Re-establishes the watch from `next`, waiting between attempts, until
    /// it works or the outage limit has passed.
    async fn reconnect(&mut self) -> Result<()> {
        loop {
            let Some(delay) = self.backoff.failed(Instant::now()) else {
                return Err(Error::Unavailable {
                    backend: BACKEND,
                    op: OP,
                    source: Box::new(WatchLost {
                        limit: self.settings.outage_limit,
                        last: std::mem::take(&mut self.last_failure),
                    }),
                });
            };
            tokio::time::sleep(delay).await;
            match self.open().await {
                Ok(stream) => {
                    info!(next = self.next, "watch re-established");
                    self.backoff.connected();
                    self.stream = Some(stream);
                    return Ok(());
                }
                Err(failure) => {
                    debug!(error = %failure.source, "re-establishing the watch failed");
                    self.last_failure = failure.source.to_string();
                }
            }
        }
    }
}

fn cancel_reason(resp: &WatchResponse) -> &str {
    match resp.cancel_reason() {
        "" => "no reason given",
        reason => reason,
    }
}

/// An etcd watch event as a store event.
fn convert(event: &etcd_client::Event) -> Result<Event> {
    let kv = event
        .kv()
        .ok_or_else(|| unexpected(OP, "etcd sent a watch event without a key"))?;
    let kv = kv_from_ref(kv, OP)?;
    let prev_kv = event.prev_kv().map(|p| kv_from_ref(p, OP)).transpose()?;
    Ok(match event.event_type() {
        EventType::Put if kv.create_revision == kv.mod_revision => Event {
            kind: EventKind::Create,
            kv,
            prev_kv: None,
        },
        EventType::Put => Event {
            kind: EventKind::Update,
            kv,
            prev_kv,
        },
        EventType::Delete => match prev_kv {
            Some(prev) => Event::deleted(prev, kv.mod_revision),
            None => {
                // Only when the previous value is compacted away, which the
                // store's compaction (one revision behind) avoids.
                warn!(key = %kv.key, revision = kv.mod_revision, "delete event without the deleted value");
                Event {
                    kind: EventKind::Delete,
                    kv: KeyValue {
                        create_revision: 0,
                        ..kv
                    },
                    prev_kv: None,
                }
            }
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        let t0 = Instant::now();
        let mut backoff = Backoff::new(Duration::from_secs(600));
        let delays: Vec<_> = (0..8).map(|_| backoff.failed(t0).unwrap()).collect();
        let ms: Vec<u128> = delays.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    }

    #[test]
    fn backoff_gives_up_after_the_limit_and_resets_on_success() {
        let t0 = Instant::now();
        let mut backoff = Backoff::new(Duration::from_secs(60));
        assert_eq!(backoff.failed(t0), Some(FIRST_DELAY));
        let late = t0 + Duration::from_millis(59_950);
        assert_eq!(
            backoff.failed(late),
            Some(Duration::from_millis(50)),
            "the last wait ends at the limit"
        );
        assert_eq!(backoff.failed(t0 + Duration::from_secs(60)), None);

        backoff.connected();
        let t1 = t0 + Duration::from_secs(120);
        assert_eq!(
            backoff.failed(t1),
            Some(FIRST_DELAY),
            "a new outage starts over"
        );
        assert!(backoff.failed(t1 + Duration::from_secs(59)).is_some());
    }
}
