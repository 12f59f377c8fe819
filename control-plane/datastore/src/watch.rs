//! Watching, for backends whose history lives in SQL tables (SQLite, PostgreSQL).
//!
//! Every write gets the next revision, and revisions are handed out in commit
//! order, so a backend's history is a dense sequence with no holes. That makes
//! watching simple: a watcher is nothing but the next revision it wants.
//!
//! - Recent events sit in an in-memory [`EventWindow`], appended once per store
//!   instance in revision order (by the writer after commit, or by the tailer
//!   that reads other servers' commits).
//! - A watcher reads from the window when its next revision is there, from the
//!   database ([`History`]) when it has fallen out of the window, and waits when
//!   it is ahead of the window.
//!
//! Because a watcher advances only ever by one revision past the event it just
//! took, it cannot skip, repeat or reorder an event: each of those would need a
//! hole or a duplicate in the sequence, and [`EventWindow::append`] refuses both.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::types::{Event, Revision};

/// A stream of events in revision order. It ends after yielding an error (the
/// watch fell behind compaction, or the backend failed) or when the store closes.
pub type WatchStream = BoxStream<'static, Result<Event>>;

/// How much recent history one store instance keeps in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowLimits {
    pub max_events: usize,
    /// Key and value bytes of the events kept.
    pub max_bytes: usize,
}

impl Default for WindowLimits {
    fn default() -> Self {
        WindowLimits {
            max_events: 1024,
            max_bytes: 8 << 20,
        }
    }
}

/// The tail of the history, in memory, with its newest revision published to
/// waiting watchers.
#[derive(Debug)]
pub struct EventWindow {
    inner: RwLock<Window>,
    progress: watch::Sender<Progress>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Progress {
    latest: Revision,
    closed: bool,
}

#[derive(Debug)]
struct Window {
    /// Revision of `events[0]`; when empty, the revision the next append must have.
    first: Revision,
    events: VecDeque<Arc<Event>>,
    bytes: usize,
    limits: WindowLimits,
}

/// `append` was handed an event out of sequence. The backend broke its promise
/// of a dense, ordered history; it must [`reset`](EventWindow::reset) the window.
#[derive(Debug, thiserror::Error)]
#[error("event at revision {got} out of sequence: expected revision {expected}")]
pub struct OutOfSequence {
    pub expected: Revision,
    pub got: Revision,
}

enum WindowRead {
    Events(Vec<Arc<Event>>),
    /// The revision is not committed yet.
    Ahead,
    /// The revision has fallen out of the window: read it from the database.
    Behind,
    Closed,
}

impl EventWindow {
    /// An empty window whose next event will be `after + 1`.
    pub fn new(after: Revision, limits: WindowLimits) -> Self {
        EventWindow {
            inner: RwLock::new(Window {
                first: after + 1,
                events: VecDeque::new(),
                bytes: 0,
                limits,
            }),
            progress: watch::Sender::new(Progress {
                latest: after,
                closed: false,
            }),
        }
    }

    /// The newest revision appended.
    pub fn latest(&self) -> Revision {
        self.progress.borrow().latest
    }

    /// Appends events that directly follow the newest one, in order. On a gap
    /// or a repeat it appends nothing and says so.
    pub fn append(&self, events: impl IntoIterator<Item = Event>) -> Result<(), OutOfSequence> {
        let mut window = self.inner.write().unwrap();
        let next = window.first + window.events.len() as Revision;
        let events: Vec<Event> = events.into_iter().collect();
        for (expected, event) in (next..).zip(&events) {
            if event.revision() != expected {
                return Err(OutOfSequence {
                    expected,
                    got: event.revision(),
                });
            }
        }
        let Some(latest) = events.last().map(Event::revision) else {
            return Ok(());
        };
        for event in events {
            window.bytes += event_bytes(&event);
            window.events.push_back(Arc::new(event));
        }
        while window.events.len() > window.limits.max_events
            || (window.bytes > window.limits.max_bytes && window.events.len() > 1)
        {
            let old = window.events.pop_front().expect("window is not empty");
            window.bytes -= event_bytes(&old);
            window.first += 1;
        }
        drop(window);
        self.progress.send_modify(|p| p.latest = latest);
        Ok(())
    }

    /// Forgets every event and restarts the window after `after`. Watchers that
    /// were behind it read the database next; if that history is gone they get
    /// [`Error::Compacted`].
    pub fn reset(&self, after: Revision) {
        let mut window = self.inner.write().unwrap();
        window.events.clear();
        window.bytes = 0;
        window.first = after + 1;
        drop(window);
        self.progress.send_modify(|p| p.latest = after);
    }

    /// Ends every watch stream of this window.
    pub fn close(&self) {
        self.progress.send_modify(|p| p.closed = true);
    }

    fn read(&self, from: Revision, max: usize) -> WindowRead {
        if self.progress.borrow().closed {
            return WindowRead::Closed;
        }
        let window = self.inner.read().unwrap();
        let end = window.first + window.events.len() as Revision;
        if from >= end {
            return WindowRead::Ahead;
        }
        if from < window.first {
            return WindowRead::Behind;
        }
        let skip = (from - window.first) as usize;
        WindowRead::Events(window.events.iter().skip(skip).take(max).cloned().collect())
    }
}

fn event_bytes(event: &Event) -> usize {
    let kv = |kv: &crate::types::KeyValue| kv.key.len() + kv.value.len();
    kv(&event.kv) + event.prev_kv.as_ref().map_or(0, kv)
}

/// A page of history read from the database.
#[derive(Debug, Default)]
pub struct HistoryPage {
    /// Events under the prefix, in revision order.
    pub events: Vec<Event>,
    /// The first revision this page did not cover; greater than the `from` asked for.
    pub next: Revision,
}

/// Where watchers read history that has left the window.
#[async_trait]
pub trait History: Send + Sync + 'static {
    /// Events under `prefix` from revision `from` on, scanning at most
    /// `max_revisions` revisions, all committed. Fails with
    /// [`Error::Compacted`] if `from` is older than the oldest revision kept.
    async fn read_history(
        &self,
        prefix: &str,
        from: Revision,
        max_revisions: i64,
    ) -> Result<HistoryPage>;
}

const WINDOW_BATCH: usize = 256;
const HISTORY_BATCH: i64 = 1000;

struct Watcher {
    window: Arc<EventWindow>,
    history: Arc<dyn History>,
    progress: watch::Receiver<Progress>,
    prefix: String,
    next: Revision,
    ready: VecDeque<Event>,
    done: bool,
}

/// A watch of `prefix` from revision `start` (inclusive). The caller has
/// already checked that `start` is not compacted and resolved 0 to "now".
pub fn watch(
    window: Arc<EventWindow>,
    history: Arc<dyn History>,
    prefix: String,
    start: Revision,
) -> WatchStream {
    let watcher = Watcher {
        progress: window.progress.subscribe(),
        window,
        history,
        prefix,
        next: start,
        ready: VecDeque::new(),
        done: false,
    };
    stream::unfold(watcher, |mut w| async move {
        let item = w.next_event().await?;
        Some((item, w))
    })
    .boxed()
}

impl Watcher {
    async fn next_event(&mut self) -> Option<Result<Event>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(event) = self.ready.pop_front() {
                return Some(Ok(event));
            }
            match self.window.read(self.next, WINDOW_BATCH) {
                WindowRead::Events(events) => {
                    for event in events {
                        self.next = event.revision() + 1;
                        if event.kv.key.starts_with(&self.prefix) {
                            self.ready.push_back(Event::clone(&event));
                        }
                    }
                }
                WindowRead::Ahead => {
                    let next = self.next;
                    let waited = self
                        .progress
                        .wait_for(|p| p.closed || p.latest >= next)
                        .await;
                    if waited.is_err() {
                        self.done = true;
                    }
                }
                WindowRead::Behind => {
                    match self
                        .history
                        .read_history(&self.prefix, self.next, HISTORY_BATCH)
                        .await
                    {
                        Ok(page) if page.next > self.next => {
                            self.next = page.next;
                            self.ready.extend(page.events);
                        }
                        Ok(page) => {
                            self.done = true;
                            return Some(Err(Error::Backend {
                                backend: "watch",
                                op: "read history",
                                source: format!(
                                    "history read from revision {} did not advance (next {})",
                                    self.next, page.next
                                )
                                .into(),
                            }));
                        }
                        Err(err) => {
                            self.done = true;
                            return Some(Err(err));
                        }
                    }
                }
                WindowRead::Closed => self.done = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{EventKind, KeyValue};
    use bytes::Bytes;
    use std::sync::Mutex;

    fn put(key: &str, rev: Revision) -> Event {
        Event {
            kind: EventKind::Create,
            kv: KeyValue {
                key: key.into(),
                value: Bytes::from_static(b"v"),
                create_revision: rev,
                mod_revision: rev,
            },
            prev_kv: None,
        }
    }

    /// A database that holds the whole history in a vector.
    struct VecHistory {
        events: Mutex<Vec<Event>>,
        compacted: Revision,
    }

    #[async_trait]
    impl History for VecHistory {
        async fn read_history(
            &self,
            prefix: &str,
            from: Revision,
            max: i64,
        ) -> Result<HistoryPage> {
            if from < self.compacted {
                return Err(Error::Compacted {
                    requested: from,
                    compacted: self.compacted,
                });
            }
            let events = self.events.lock().unwrap();
            let latest = events.last().map_or(0, Event::revision);
            let upto = latest.min(from + max - 1);
            Ok(HistoryPage {
                events: events
                    .iter()
                    .filter(|e| e.revision() >= from && e.revision() <= upto)
                    .filter(|e| e.kv.key.starts_with(prefix))
                    .cloned()
                    .collect(),
                next: upto + 1,
            })
        }
    }

    #[test]
    fn append_refuses_gaps_and_repeats() {
        let window = EventWindow::new(0, WindowLimits::default());
        window.append([put("/a", 1), put("/a", 2)]).unwrap();
        let gap = window.append([put("/a", 4)]).unwrap_err();
        assert_eq!((gap.expected, gap.got), (3, 4));
        assert!(window.append([put("/a", 2)]).is_err());
        assert_eq!(window.latest(), 2);
    }

    #[test]
    fn window_keeps_its_limits() {
        let limits = WindowLimits {
            max_events: 3,
            max_bytes: 1 << 20,
        };
        let window = EventWindow::new(0, limits);
        window.append((1..=10).map(|r| put("/a", r))).unwrap();
        assert!(matches!(window.read(7, 10), WindowRead::Behind));
        match window.read(8, 10) {
            WindowRead::Events(e) => assert_eq!(e.len(), 3),
            _ => panic!("8..=10 should be in the window"),
        }
        assert!(matches!(window.read(11, 10), WindowRead::Ahead));
    }

    /// A watcher that starts behind the window reads the database, then the
    /// window, then waits for new events: one gapless sequence.
    #[tokio::test]
    async fn watcher_joins_database_and_window_without_gaps() {
        let all: Vec<Event> = (1..=3000)
            .map(|r| put(if r % 3 == 0 { "/b/x" } else { "/a/x" }, r))
            .collect();
        let history = Arc::new(VecHistory {
            events: Mutex::new(all.clone()),
            compacted: 0,
        });
        let limits = WindowLimits {
            max_events: 100,
            max_bytes: 1 << 20,
        };
        let window = Arc::new(EventWindow::new(0, limits));
        window.append(all.clone()).unwrap();
        let mut stream = watch(window.clone(), history.clone(), "/a/".into(), 5);

        let more: Vec<Event> = (3001..=3010).map(|r| put("/a/y", r)).collect();
        history.events.lock().unwrap().extend(more.clone());
        let feeder = {
            let window = window.clone();
            tokio::spawn(async move {
                tokio::task::yield_now().await;
                window.append(more).unwrap();
            })
        };
        let want: Vec<Revision> = (5..=3010).filter(|r| r > &3000 || r % 3 != 0).collect();
        let mut got = Vec::new();
        while got.len() < want.len() {
            got.push(stream.next().await.unwrap().unwrap().revision());
        }
        assert_eq!(got, want);
        feeder.await.unwrap();
        window.close();
        assert!(
            stream.next().await.is_none(),
            "stream ends when the store closes"
        );
    }

    #[tokio::test]
    async fn watcher_behind_compaction_gets_an_error() {
        let history = Arc::new(VecHistory {
            events: Mutex::new((1..=50).map(|r| put("/a", r)).collect()),
            compacted: 10,
        });
        let window = Arc::new(EventWindow::new(50, WindowLimits::default()));
        let mut stream = watch(window, history, "/".into(), 3);
        assert!(matches!(
            stream.next().await,
            Some(Err(Error::Compacted { compacted: 10, .. }))
        ));
        assert!(stream.next().await.is_none());
    }
}
