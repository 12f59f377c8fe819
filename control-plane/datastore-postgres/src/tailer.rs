//! The tailer: one task per store instance that follows the shared history in
//! `kedge_log` and appends it to the instance's event window, whichever server
//! wrote it.
//!
//! It reads in one snapshot the current revision and every row up to it. A row
//! is visible only after its transaction committed, and a revision is handed
//! out only after the one before it committed, so the rows up to the current
//! revision are all there: no hole to wait for, no gap to fill. It wakes when
//! this server's writer commits, on NOTIFY from any other server's writer, and
//! on a poll, so a lost notification costs a delay, never an event.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::{PgPool, Row};
use tokio::sync::Notify;
use tracing::{debug, error, warn};

use crate::db_error;
use crate::reader::{self, select_events};
use crate::schema::CHANNEL;
use kedge_datastore::watch::EventWindow;
use kedge_datastore::{Event, Result};

const PAGE: i64 = 1000;

/// Follows the history into `window`, waking on `wake` (this server's writer
/// and [`relay_notifications`]) or every `poll`.
pub async fn run(pool: PgPool, window: Arc<EventWindow>, wake: Arc<Notify>, poll: Duration) {
    let mut failures = 0u32;
    loop {
        match read_new(&pool, &window).await {
            Ok(true) => continue,
            Ok(false) => failures = 0,
            Err(err) => {
                failures += 1;
                warn!(error = %err, failures, "tailing the history failed; retrying");
                let pause = poll.min(Duration::from_millis(100) * failures.min(20));
                tokio::time::sleep(pause).await;
                continue;
            }
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// Turns NOTIFY from every server's writer into a wake-up of the tailer. It
/// runs on its own, so a notification is never cancelled half-read; when
/// the connection drops it wakes the tailer anyway (something may have been
/// missed) and reconnects.
pub async fn relay_notifications(pool: PgPool, wake: Arc<Notify>, retry: Duration) {
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(err) => {
                debug!(error = %err, "cannot listen for notifications; retrying");
                tokio::time::sleep(retry).await;
                continue;
            }
        };
        if let Err(err) = listener.listen(CHANNEL).await {
            debug!(error = %err, "cannot listen for notifications; retrying");
            tokio::time::sleep(retry).await;
            continue;
        }
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => wake.notify_one(),
                Ok(None) => {
                    debug!("notification connection lost; reconnecting");
                    wake.notify_one();
                }
                Err(err) => {
                    debug!(error = %err, "notification listener failed; reconnecting");
                    wake.notify_one();
                    tokio::time::sleep(retry).await;
                    break;
                }
            }
        }
    }
}

/// Appends what was committed since the window's newest revision. Returns true
/// if there may be more to read right away.
///
/// One statement is one snapshot, so bounding the rows by the current
/// revision in a subquery reads exactly the committed prefix of the history,
/// and the compact revision read with them says whether compaction has cut
/// rows out of it: compaction records its revision before it deletes a row.
async fn read_new(pool: &PgPool, window: &EventWindow) -> Result<bool> {
    let last = window.latest();
    let rows = sqlx::query(select_events!(
        ", (SELECT value FROM kedge_meta WHERE name = 'compact_revision') AS compacted"
        WHERE "l.revision > $1
           AND l.revision <= (SELECT value FROM kedge_meta WHERE name = 'revision')
         ORDER BY l.revision LIMIT $2"
    ))
    .bind(last)
    .bind(PAGE)
    .fetch_all(pool)
    .await
    .map_err(db_error("tail the history"))?;
    if let Some(row) = rows.first() {
        let compacted: i64 = row
            .try_get("compacted")
            .map_err(db_error("tail the history"))?;
        if last + 1 < compacted {
            // This server fell behind a compaction (it was cut off, or slow).
            // Its watchers still behind get "compacted" from the database; the
            // window restarts at the oldest revision kept.
            warn!(
                last,
                compacted, "history compacted past this server's window"
            );
            window.reset(compacted - 1);
            return Ok(true);
        }
    }
    let full = rows.len() as i64 == PAGE;
    let events = rows
        .iter()
        .map(reader::event_row)
        .collect::<Result<Vec<Event>>>()?;
    if let Err(gap) = window.append(events) {
        // The design rules this out; if it happens, say so loudly and read again
        // rather than hand watchers a history with a hole in it.
        error!(error = %gap, "history has a hole; re-reading");
        return Ok(false);
    }
    Ok(full)
}
