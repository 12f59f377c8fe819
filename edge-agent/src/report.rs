//! The report queue: what the agent tells the server (node status, pod
//! statuses, events, lease renewals), coalesced and batched for
//! `Node.Report`.
//!
//! - Node status, lease renewal: only the latest counts; a newer one replaces
//!   a queued one.
//! - Pod status: the latest per pod (namespace, name).
//! - Events: kept in order, at most `max_events`; past that the oldest are
//!   dropped (and counted), as a flapping container must not grow memory.
//!
//! [`ReportQueue::run`] flushes at most every `flush_interval`, `pod_delay`
//! after a pod's status or a pod action was queued (a pod that started should
//! show Running at once, as the kubelet's status manager sends it at once; the
//! short delay gathers the statuses of pods that change together), or at once
//! when `batch_size` reports are queued, in batches of at most `batch_size`
//! (the hardware profile decides the size). A batch that fails to send goes
//! back into the queue, except what a newer report replaced meanwhile. A
//! report the server refuses (its error in the response) is dropped: sending
//! it again would be refused again.
//!
//! Time is tokio time, so tests run on paused time.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use kedge_proto::v1::node_client::NodeClient;
use kedge_proto::v1::report::Report as Kind;
use kedge_proto::v1::{
    LeaseRenewal, PodDeletion, PodStatusReport, Report, ReportBatch, ReportResponse,
};
use tokio::sync::Notify;
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;

/// How reports are batched.
#[derive(Clone, Debug)]
pub struct ReportConfig {
    /// The most reports in one batch; reaching it triggers a flush.
    pub batch_size: usize,
    /// The longest a report waits before it is sent.
    pub flush_interval: Duration,
    /// How long a pod's status (or a pod deletion, a mirror pod) waits before it is
    /// sent, gathering others that change together.
    pub pod_delay: Duration,
    /// The most events kept while the server cannot be reached.
    pub max_events: usize,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            batch_size: 64,
            flush_interval: Duration::from_secs(1),
            pod_delay: Duration::from_millis(20),
            max_events: 256,
        }
    }
}

/// Where batches go: `Node.Report`, or a test double.
pub trait ReportSink {
    fn send(
        &mut self,
        batch: ReportBatch,
    ) -> impl Future<Output = Result<ReportResponse, tonic::Status>> + Send;
}

impl ReportSink for NodeClient<Channel> {
    fn send(
        &mut self,
        batch: ReportBatch,
    ) -> impl Future<Output = Result<ReportResponse, tonic::Status>> + Send {
        let mut client = self
            .clone()
            .send_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Gzip);
        async move { client.report(batch).await.map(|r| r.into_inner()) }
    }
}

#[derive(Debug, Default)]
struct Pending {
    node: Option<Vec<u8>>,
    lease: Option<LeaseRenewal>,
    pods: BTreeMap<(String, String), PodStatusReport>,
    /// Final deletions and mirror pods, by pod; sent after the statuses.
    actions: BTreeMap<(String, String), Kind>,
    events: VecDeque<Vec<u8>>,
    dropped_events: u64,
}

impl Pending {
    fn len(&self) -> usize {
        usize::from(self.node.is_some())
            + usize::from(self.lease.is_some())
            + self.pods.len()
            + self.actions.len()
            + self.events.len()
    }
}

/// What one batch took out of the queue, to put back if sending fails.
#[derive(Debug, Default)]
struct Taken {
    node: Option<Vec<u8>>,
    lease: Option<LeaseRenewal>,
    pods: Vec<PodStatusReport>,
    actions: Vec<((String, String), Kind)>,
    events: Vec<Vec<u8>>,
}

impl Taken {
    fn batch(&self) -> ReportBatch {
        let mut reports = Vec::new();
        let mut push = |k: Kind| reports.push(Report { report: Some(k) });
        if let Some(n) = &self.node {
            push(Kind::Node(n.clone()));
        }
        if let Some(l) = &self.lease {
            push(Kind::Lease(*l));
        }
        for p in &self.pods {
            push(Kind::PodStatus(p.clone()));
        }
        for (_, a) in &self.actions {
            push(a.clone());
        }
        for e in &self.events {
            push(Kind::Event(e.clone()));
        }
        ReportBatch { reports }
    }
}

/// The agent's queue of reports.
#[derive(Debug)]
pub struct ReportQueue {
    config: ReportConfig,
    pending: Mutex<Pending>,
    full: Notify,
    pod_changed: Notify,
}

impl ReportQueue {
    pub fn new(config: ReportConfig) -> ReportQueue {
        ReportQueue {
            config: ReportConfig {
                batch_size: config.batch_size.max(1),
                max_events: config.max_events.max(1),
                ..config
            },
            pending: Mutex::new(Pending::default()),
            full: Notify::new(),
            pod_changed: Notify::new(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Pending) -> T) -> T {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let out = f(&mut p);
        if p.len() >= self.config.batch_size {
            self.full.notify_one();
        }
        out
    }

    /// The node, JSON (registration, labels, annotations, status).
    pub fn node(&self, node_json: Vec<u8>) {
        self.with(|p| p.node = Some(node_json));
    }

    /// Renew the node's lease.
    pub fn lease(&self, duration_seconds: i32) {
        self.with(|p| p.lease = Some(LeaseRenewal { duration_seconds }));
    }

    /// A pod's status; replaces a queued one of the same pod.
    pub fn pod_status(&self, report: PodStatusReport) {
        self.with(|p| {
            p.pods
                .insert((report.namespace.clone(), report.name.clone()), report)
        });
        self.pod_changed.notify_one();
    }

    /// Asks the server to delete a pod the agent stopped (the kubelet's final delete).
    pub fn pod_deletion(&self, namespace: &str, name: &str, uid: &str) {
        let key = (namespace.to_string(), name.to_string());
        let kind = Kind::PodDeletion(PodDeletion {
            namespace: namespace.into(),
            name: name.into(),
            uid: uid.into(),
        });
        self.with(|p| p.actions.insert(key, kind));
        self.pod_changed.notify_one();
    }

    /// Asks the server to create a mirror pod, JSON.
    pub fn mirror_pod(&self, namespace: &str, name: &str, pod_json: Vec<u8>) {
        let key = (namespace.to_string(), name.to_string());
        self.with(|p| p.actions.insert(key, Kind::MirrorPod(pod_json)));
        self.pod_changed.notify_one();
    }

    /// Drops a queued status of a pod that is gone.
    pub fn forget_pod(&self, namespace: &str, name: &str) {
        self.with(|p| p.pods.remove(&(namespace.to_string(), name.to_string())));
    }

    /// An event, JSON; the oldest queued event is dropped past `max_events`.
    pub fn event(&self, event_json: Vec<u8>) {
        let max = self.config.max_events;
        self.with(|p| {
            p.events.push_back(event_json);
            while p.events.len() > max {
                p.events.pop_front();
                p.dropped_events += 1;
            }
        });
    }

    /// Reports queued.
    pub fn len(&self) -> usize {
        self.with(|p| p.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Events dropped because the queue was full.
    pub fn dropped_events(&self) -> u64 {
        self.with(|p| p.dropped_events)
    }

    /// Takes up to `batch_size` reports: node, lease, pod statuses, then
    /// events in order.
    fn take(&self) -> Option<Taken> {
        let room = self.config.batch_size;
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.len() == 0 {
            return None;
        }
        let mut t = Taken::default();
        let mut n = 0;
        if let Some(node) = p.node.take() {
            t.node = Some(node);
            n += 1;
        }
        if n < room
            && let Some(lease) = p.lease.take()
        {
            t.lease = Some(lease);
            n += 1;
        }
        while n < room {
            let Some((_, pod)) = p.pods.pop_first() else {
                break;
            };
            t.pods.push(pod);
            n += 1;
        }
        while n < room {
            let Some(action) = p.actions.pop_first() else {
                break;
            };
            t.actions.push(action);
            n += 1;
        }
        while n < room {
            let Some(ev) = p.events.pop_front() else {
                break;
            };
            t.events.push(ev);
            n += 1;
        }
        Some(t)
    }

    /// Puts back what a failed batch held, unless newer reports replaced it.
    fn put_back(&self, t: Taken) {
        let max = self.config.max_events;
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.node.is_none() {
            p.node = t.node;
        }
        if p.lease.is_none() {
            p.lease = t.lease;
        }
        for pod in t.pods {
            p.pods
                .entry((pod.namespace.clone(), pod.name.clone()))
                .or_insert(pod);
        }
        for (key, action) in t.actions {
            p.actions.entry(key).or_insert(action);
        }
        for ev in t.events.into_iter().rev() {
            p.events.push_front(ev);
        }
        while p.events.len() > max {
            p.events.pop_front();
            p.dropped_events += 1;
        }
    }

    /// Sends everything queued, in batches. On a failed send the batch goes
    /// back into the queue and the error is returned.
    pub async fn flush(&self, sink: &mut impl ReportSink) -> Result<usize, tonic::Status> {
        let mut sent = 0;
        while let Some(taken) = self.take() {
            let batch = taken.batch();
            let count = batch.reports.len();
            match sink.send(batch).await {
                Ok(resp) => {
                    if resp.results.len() != count {
                        tracing::warn!(
                            sent = count,
                            results = resp.results.len(),
                            "report: the server answered with another number of results"
                        );
                    }
                    for (i, r) in resp.results.iter().enumerate() {
                        if !r.error.is_empty() {
                            tracing::warn!(index = i, error = %r.error, "report: refused by the server; dropped");
                        }
                    }
                    sent += count;
                }
                Err(status) => {
                    self.put_back(taken);
                    return Err(status);
                }
            }
        }
        Ok(sent)
    }

    /// Flushes every `flush_interval`, `pod_delay` after a pod report, or at
    /// once when a batch is full, until a send fails; the caller reconnects
    /// and runs it again (nothing is lost).
    pub async fn run(&self, sink: &mut impl ReportSink) -> Result<(), tonic::Status> {
        let mut tick = tokio::time::interval(self.config.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.full.notified() => {}
                _ = self.pod_changed.notified() => {
                    tokio::select! {
                        _ = tokio::time::sleep(self.config.pod_delay) => {}
                        _ = self.full.notified() => {}
                    }
                }
            }
            self.flush(sink).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kedge_proto::v1::ReportResult;

    use super::*;

    /// Records batches; fails while `fail` is set.
    #[derive(Clone, Default)]
    struct Recorder {
        batches: Arc<Mutex<Vec<ReportBatch>>>,
        fail: Arc<std::sync::atomic::AtomicBool>,
    }

    impl ReportSink for Recorder {
        fn send(
            &mut self,
            batch: ReportBatch,
        ) -> impl Future<Output = Result<ReportResponse, tonic::Status>> + Send {
            let fail = self.fail.load(std::sync::atomic::Ordering::SeqCst);
            let results = vec![ReportResult::default(); batch.reports.len()];
            if !fail {
                self.batches.lock().unwrap().push(batch);
            }
            async move {
                if fail {
                    Err(tonic::Status::unavailable("link down"))
                } else {
                    Ok(ReportResponse { results })
                }
            }
        }
    }

    fn pod(name: &str, phase: &str) -> PodStatusReport {
        PodStatusReport {
            namespace: "default".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            status: format!("{{\"phase\":\"{phase}\"}}").into_bytes(),
        }
    }

    fn kinds(b: &ReportBatch) -> Vec<String> {
        b.reports
            .iter()
            .map(|r| match &r.report {
                Some(Kind::Node(n)) => format!("node:{}", String::from_utf8_lossy(n)),
                Some(Kind::Lease(l)) => format!("lease:{}", l.duration_seconds),
                Some(Kind::PodStatus(p)) => {
                    format!("pod:{}:{}", p.name, String::from_utf8_lossy(&p.status))
                }
                Some(Kind::Event(e)) => format!("event:{}", String::from_utf8_lossy(e)),
                Some(Kind::PodDeletion(d)) => format!("delete:{}:{}", d.name, d.uid),
                Some(Kind::MirrorPod(m)) => format!("mirror:{}", String::from_utf8_lossy(m)),
                None => "none".into(),
            })
            .collect()
    }

    #[test]
    fn a_pods_last_status_goes_before_its_final_delete() {
        let q = ReportQueue::new(ReportConfig::default());
        q.pod_deletion("default", "web", "u1");
        q.mirror_pod("default", "static-n1", b"{}".to_vec());
        q.pod_status(pod("web", "Succeeded"));
        let t = q.take().unwrap();
        assert_eq!(
            kinds(&t.batch()),
            [
                "pod:web:{\"phase\":\"Succeeded\"}",
                // Actions go by namespace and name.
                "mirror:{}",
                "delete:web:u1",
            ]
        );
        // A failed send puts them back.
        q.put_back(t);
        assert_eq!(q.len(), 3);
    }

    #[tokio::test]
    async fn coalesces_and_keeps_events_in_order_within_the_bound() {
        let q = ReportQueue::new(ReportConfig {
            batch_size: 100,
            flush_interval: Duration::from_secs(1),
            pod_delay: Duration::from_millis(20),
            max_events: 3,
        });
        q.node(b"n-old".to_vec());
        q.node(b"n-new".to_vec());
        q.lease(40);
        q.lease(41);
        q.pod_status(pod("a", "Pending"));
        q.pod_status(pod("b", "Pending"));
        q.pod_status(pod("a", "Running"));
        q.pod_status(pod("c", "Running"));
        q.forget_pod("default", "c");
        for i in 0..5 {
            q.event(format!("e{i}").into_bytes());
        }
        assert_eq!(q.len(), 1 + 1 + 2 + 3);
        assert_eq!(q.dropped_events(), 2);
        let mut sink = Recorder::default();
        assert_eq!(q.flush(&mut sink).await.unwrap(), 7);
        let batches = sink.batches.lock().unwrap().clone();
        assert_eq!(batches.len(), 1);
        assert_eq!(
            kinds(&batches[0]),
            vec![
                "node:n-new",
                "lease:41",
                "pod:a:{\"phase\":\"Running\"}",
                "pod:b:{\"phase\":\"Pending\"}",
                "event:e2",
                "event:e3",
                "event:e4",
            ]
        );
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn a_failed_send_keeps_what_nothing_newer_replaced() {
        let q = ReportQueue::new(ReportConfig {
            batch_size: 100,
            flush_interval: Duration::from_secs(1),
            pod_delay: Duration::from_millis(20),
            max_events: 10,
        });
        q.pod_status(pod("a", "Pending"));
        q.pod_status(pod("b", "Pending"));
        q.event(b"e1".to_vec());
        let mut sink = Recorder::default();
        sink.fail.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(q.flush(&mut sink).await.is_err());
        // Meanwhile a is running and another event happened.
        q.pod_status(pod("a", "Running"));
        q.event(b"e2".to_vec());
        sink.fail.store(false, std::sync::atomic::Ordering::SeqCst);
        q.flush(&mut sink).await.unwrap();
        let batches = sink.batches.lock().unwrap().clone();
        assert_eq!(
            kinds(&batches[0]),
            vec![
                "pod:a:{\"phase\":\"Running\"}",
                "pod:b:{\"phase\":\"Pending\"}",
                "event:e1",
                "event:e2",
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn flushes_on_the_interval_or_when_a_batch_is_full() {
        let q = Arc::new(ReportQueue::new(ReportConfig {
            batch_size: 3,
            flush_interval: Duration::from_millis(500),
            pod_delay: Duration::from_millis(20),
            max_events: 100,
        }));
        let sink = Recorder::default();
        let batches = sink.batches.clone();
        let runner = {
            let q = q.clone();
            let mut sink = sink.clone();
            tokio::spawn(async move { q.run(&mut sink).await })
        };
        // The first tick fires at once, with nothing to send.
        tokio::time::sleep(Duration::from_millis(10)).await;
        q.event(b"e1".to_vec());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(batches.lock().unwrap().is_empty(), "waits for the interval");
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(batches.lock().unwrap().len(), 1);

        // Seven reports at once: a full batch goes at once, in batches of 3.
        for i in 0..7 {
            q.event(format!("x{i}").into_bytes());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        let sizes: Vec<usize> = batches
            .lock()
            .unwrap()
            .iter()
            .map(|b| b.reports.len())
            .collect();
        assert_eq!(sizes, vec![1, 3, 3, 1]);

        // A pod's status goes after the short pod delay, with what came meanwhile.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = batches.lock().unwrap().len();
        q.pod_status(PodStatusReport {
            namespace: "default".into(),
            name: "web".into(),
            ..Default::default()
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        q.event(b"started".to_vec());
        assert_eq!(
            batches.lock().unwrap().len(),
            before,
            "waits for the pod delay"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        let batches = batches.lock().unwrap();
        assert_eq!(batches.len(), before + 1, "sent well before the interval");
        assert_eq!(batches[before].reports.len(), 2, "the status and the event");
        runner.abort();
    }
}
