//! One task per pod: it syncs the pod with the runtime whenever something may have
//! changed, and reports the pod's status.
//!
//! A sync is level-triggered: it observes what the runtime holds, decides with
//! [`plan::compute`] and carries the actions out (the kubelet's `SyncPod`), then
//! computes the status and reports it if it changed. It runs when the pod's spec
//! changes, when one of its containers exits, when a probe's verdict flips, when a
//! back-off ends, and every [`RESYNC`] anyway.
//!
//! Deletion is a state: once the pod has a deletionTimestamp (or is gone from the
//! store), the worker runs the preStop hooks, stops the containers within the grace
//! period, stops the sandbox, reports the final status, tells the server the pod may
//! go, removes what is left, and ends.
//!
//! Eviction is a state too: an evicted pod (the eviction manager's
//! [`WorkerMsg::Evict`], or a status the store holds that says `Evicted`) has its
//! containers stopped within the eviction's grace period and is reported `Failed`
//! with reason `Evicted`; nothing of it starts again. It stays until it is deleted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::backoff::Backoff;
use super::events::{EventType, Recorder, container_field_path};
use super::plan::{self, ProbeVerdicts};
use super::probe::{Outcome, ProbeKind, ProbeTracker, Prober, Verdict};
use super::runtime::{ContainerState, PodObserved, PodRuntime, RuntimeError, container_hash};
use super::status::{self, StatusInput, Waiting};

/// How often a pod is synced even when nothing was heard.
pub const RESYNC: Duration = Duration::from_secs(10);

/// Where a pod's status goes: the report queue, or a test's list.
pub trait StatusSink: Send + Sync + std::fmt::Debug {
    /// The pod's status changed.
    fn pod_status(&self, pod: &Pod, status: &PodStatus);
    /// The pod, which the API is deleting, has stopped: it may be deleted for good.
    fn pod_terminated(&self, pod: &Pod);
    /// The static pods the node runs now, so that their mirror pods follow.
    fn static_pods(&self, _statics: &[Pod]) {}
}

/// What every worker shares.
#[derive(Debug, Clone)]
pub struct PodContext {
    pub runtime: Arc<dyn PodRuntime>,
    pub events: Recorder,
    pub statuses: Arc<dyn StatusSink>,
    /// The node's address: the pods' hostIP, and hostNetwork pods' IP.
    pub host_ip: Option<IpAddr>,
    /// Wall-clock now; injected so that tests can move it.
    pub clock: fn() -> Timestamp,
}

/// A message to a worker.
#[derive(Debug)]
pub enum WorkerMsg {
    /// The pod as the store now holds it.
    Update(Arc<Pod>),
    /// The pod is gone from the store (deleted without grace, or no longer bound here).
    Removed,
    /// Something may have changed (a container exited): sync now.
    Wake,
    /// The node is short of a resource: stop the pod for good.
    Evict(PodEviction),
}

/// The status reason of an evicted pod.
pub const EVICTED_REASON: &str = "Evicted";

/// An eviction, as the eviction manager decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEviction {
    /// status.message and the `Evicted` event's message, worded as the kubelet's
    /// ("The node was low on resource: memory. ...").
    pub message: String,
    /// How long the containers may take to stop: zero for a hard threshold.
    pub grace_period: Duration,
}

impl PodEviction {
    /// The eviction a pod's status records, if it was evicted (an agent restarted
    /// after evicting it finds it so in the store).
    pub fn recorded(pod: &Pod) -> Option<PodEviction> {
        let status = pod.status.as_ref()?;
        (status.phase.as_deref() == Some("Failed")
            && status.reason.as_deref() == Some(EVICTED_REASON))
        .then(|| PodEviction {
            message: status.message.clone().unwrap_or_default(),
            grace_period: Duration::ZERO,
        })
    }
}

/// The pod's name as the kubelet's messages write it: `name_namespace(uid)`.
pub fn pod_ref(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or_default()
}

/// The QoS class of a pod, by upstream's rules (requests and limits of every
/// container and init container).
pub fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = pod.spec.as_ref() else {
        return "BestEffort";
    };
    let all: Vec<&Container> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    let mut any_set = false;
    let mut guaranteed = true;
    for c in &all {
        let res = c.resources.as_ref();
        let requests = res.and_then(|r| r.requests.as_ref());
        let limits = res.and_then(|r| r.limits.as_ref());
        for name in ["cpu", "memory"] {
            let req = requests
                .and_then(|r| r.get(name))
                .filter(|q| !is_zero(&q.0));
            let lim = limits.and_then(|l| l.get(name)).filter(|q| !is_zero(&q.0));
            if req.is_some() || lim.is_some() {
                any_set = true;
            }
            match (req, lim) {
                (_, None) => guaranteed = false,
                (Some(r), Some(l)) if r.0 != l.0 => guaranteed = false,
                _ => {}
            }
        }
    }
    if !any_set {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// "0", "0m", "0.0Mi": a quantity whose digits are all zero.
fn is_zero(q: &str) -> bool {
    let mantissa = q.split(['e', 'E']).next().unwrap_or(q);
    mantissa
        .chars()
        .filter(|c| c.is_ascii_digit())
        .all(|c| c == '0')
}

/// How a worker ended.
#[derive(Debug, PartialEq, Eq)]
pub enum WorkerEnd {
    /// The pod was terminated and everything of it removed.
    Terminated,
    /// The manager stopped the worker (the agent is shutting down); the pod keeps
    /// running.
    Stopped,
}

/// The state of one pod's worker.
#[derive(Debug)]
pub struct Worker {
    ctx: PodContext,
    pod: Arc<Pod>,
    removed: bool,
    probes: ProbeTracker,
    prober: Prober,
    backoff: Backoff,
    /// Image pulls that failed: back-off per (container, image), as the kubelet's
    /// ImagePullBackOff, with when and why the last pull failed.
    image_backoff: Backoff,
    image_failures: HashMap<String, (Timestamp, String)>,
    waiting: HashMap<String, Waiting>,
    /// When each running container was first seen running, for probe delays.
    seen_running: HashMap<String, Instant>,
    last_status: Option<PodStatus>,
    /// The earliest moment a back-off ends, to sync again then.
    backoff_ends: Option<Instant>,
    /// Set once the pod is evicted: it is stopped and never started again.
    evicted: Option<PodEviction>,
}

fn secs(n: i64) -> Duration {
    Duration::from_secs(u64::try_from(n.max(0)).unwrap_or(0))
}

impl Worker {
    pub fn new(ctx: PodContext, pod: Arc<Pod>) -> Worker {
        let prober = Prober::new(ctx.runtime.clone());
        let evicted = PodEviction::recorded(&pod);
        Worker {
            ctx,
            pod,
            removed: false,
            probes: ProbeTracker::default(),
            prober,
            backoff: Backoff::default(),
            image_backoff: Backoff::default(),
            image_failures: HashMap::new(),
            waiting: HashMap::new(),
            seen_running: HashMap::new(),
            last_status: None,
            backoff_ends: None,
            evicted,
        }
    }

    /// A worker for a pod that is already gone: it only terminates it.
    pub fn removed(mut self) -> Worker {
        self.removed = true;
        self
    }

    /// Runs until the pod is terminated or the manager drops the inbox.
    pub async fn run(
        mut self,
        mut inbox: mpsc::Receiver<WorkerMsg>,
        mut exits: broadcast::Receiver<String>,
    ) -> WorkerEnd {
        loop {
            let terminating = self.removed || self.pod.metadata.deletion_timestamp.is_some();
            if terminating {
                self.terminate().await;
                return WorkerEnd::Terminated;
            }
            let synced = if self.evicted.is_some() {
                self.sync_evicted().await
            } else {
                self.sync().await
            };
            if let Err(e) = synced {
                warn!(pod = %pod_ref(&self.pod), error = %e, "cannot sync the pod; trying again");
            }
            let now = Instant::now();
            let mut wake = now + RESYNC;
            if let Some(t) = self.probes.next_due() {
                wake = wake.min(t.max(now));
            }
            if let Some(t) = self.backoff_ends.take() {
                wake = wake.min(t.max(now));
            }
            // Wait for a reason to sync; probes run while waiting.
            loop {
                tokio::select! {
                    msg = inbox.recv() => {
                        match msg {
                            None => return WorkerEnd::Stopped,
                            Some(WorkerMsg::Update(pod)) => self.pod = pod,
                            Some(WorkerMsg::Removed) => self.removed = true,
                            Some(WorkerMsg::Wake) => {}
                            Some(WorkerMsg::Evict(e)) => self.evict(e),
                        }
                        // Take every queued message before syncing.
                        while let Ok(msg) = inbox.try_recv() {
                            match msg {
                                WorkerMsg::Update(pod) => self.pod = pod,
                                WorkerMsg::Removed => self.removed = true,
                                WorkerMsg::Wake => {}
                                WorkerMsg::Evict(e) => self.evict(e),
                            }
                        }
                        break;
                    }
                    exit = exits.recv() => match exit {
                        Ok(u) if u == uid(&self.pod) => break,
                        Ok(_) => continue,
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => {
                            // No more exit events; rely on the timers.
                            exits = broadcast::channel(1).1;
                            continue;
                        }
                    },
                    _ = tokio::time::sleep_until(wake) => {
                        if self.run_due_probes().await {
                            break;
                        }
                        if Instant::now() >= wake {
                            break;
                        }
                    }
                }
            }
        }
    }

    fn now(&self) -> Timestamp {
        (self.ctx.clock)()
    }

    /// Marks the pod evicted and says so in a Warning event, as the kubelet does;
    /// an eviction of a pod already evicted changes nothing.
    fn evict(&mut self, eviction: PodEviction) {
        if self.evicted.is_some() {
            return;
        }
        info!(pod = %pod_ref(&self.pod), message = %eviction.message, "evicting the pod");
        self.ctx.events.pod(
            &self.pod,
            None,
            EventType::Warning,
            EVICTED_REASON,
            &eviction.message,
            self.now(),
        );
        self.evicted = Some(eviction);
    }

    /// An evicted pod's sync: stop whatever of it still runs (the first time within
    /// the eviction's grace period) and report it; nothing starts.
    async fn sync_evicted(&mut self) -> Result<(), RuntimeError> {
        let pod = self.pod.clone();
        let observed = self.observe().await?;
        let running = observed.sandboxes.iter().any(|s| s.ready)
            || observed.containers.iter().any(|c| {
                matches!(
                    c.state,
                    ContainerState::Running | ContainerState::Created | ContainerState::Unknown
                )
            });
        if running {
            let grace = self
                .evicted
                .as_ref()
                .map(|e| e.grace_period)
                .unwrap_or_default();
            self.kill_all(&pod, &observed, grace, "").await;
        }
        let observed = self.observe().await?;
        self.waiting.clear();
        self.track_probes(&observed);
        self.report(&observed);
        Ok(())
    }

    async fn observe(&self) -> Result<PodObserved, RuntimeError> {
        let mut observed = self.ctx.runtime.observe(uid(&self.pod)).await?;
        observed.sort();
        Ok(observed)
    }

    /// Runs the probes that are due; true when a verdict flipped (sync now).
    async fn run_due_probes(&mut self) -> bool {
        let now = Instant::now();
        let due = self.probes.due(now);
        if due.is_empty() {
            return false;
        }
        let Ok(observed) = self.observe().await else {
            return false;
        };
        let pod_ip = observed.sandbox().and_then(|s| {
            if s.host_network {
                self.ctx.host_ip
            } else {
                s.ip
            }
        });
        let spec = self.pod.spec.clone().unwrap_or_default();
        let mut flipped = false;
        for d in due {
            let Some(cs) = observed.containers.iter().find(|c| c.id == d.container_id) else {
                continue;
            };
            let Some(container) = spec.containers.iter().find(|c| c.name == cs.name) else {
                continue;
            };
            let probe = match d.kind {
                ProbeKind::Liveness => container.liveness_probe.as_ref(),
                ProbeKind::Readiness => container.readiness_probe.as_ref(),
                ProbeKind::Startup => container.startup_probe.as_ref(),
            };
            let Some(probe) = probe else { continue };
            let outcome = self.prober.run(probe, container, &cs.id, pod_ip).await;
            if let Outcome::Failure(message) = &outcome {
                self.ctx.events.pod(
                    &self.pod,
                    Some(container_field_path(&self.pod, &container.name)),
                    EventType::Warning,
                    "Unhealthy",
                    &format!("{} probe failed: {message}", d.kind.title()),
                    self.now(),
                );
            }
            if let Some(verdict) = self.probes.record(&d, probe, outcome, Instant::now()) {
                debug!(container = %container.name, kind = ?d.kind, ?verdict, "probe verdict changed");
                flipped = true;
            }
        }
        flipped
    }

    fn verdicts(&self, observed: &PodObserved) -> ProbeVerdicts {
        let mut v = ProbeVerdicts::default();
        for c in &observed.containers {
            if let Some(Verdict::Failure(_)) = self.probes.verdict(&c.id, ProbeKind::Liveness) {
                v.liveness_failed.insert(c.id.clone());
            }
            if let Some(Verdict::Failure(_)) = self.probes.verdict(&c.id, ProbeKind::Startup) {
                v.startup_failed.insert(c.id.clone());
            }
        }
        v
    }

    /// One sync: decide, act, report.
    pub async fn sync(&mut self) -> Result<(), RuntimeError> {
        let pod = self.pod.clone();
        let observed = self.observe().await?;
        let actions = plan::compute(&pod, &observed, &self.verdicts(&observed));
        if actions != plan::PodActions::default() {
            debug!(?actions, "sync");
        }
        self.waiting.clear();
        let result = self.act(&pod, &observed, &actions).await;
        let observed = self.observe().await?;
        self.refresh_volumes(&pod, &observed).await;
        self.track_probes(&observed);
        self.prune(&observed).await;
        self.report(&observed);
        result
    }

    /// Keeps a running pod's volumes current (the kubelet re-mounts on every sync): a
    /// changed ConfigMap or Secret, a renewed ServiceAccount token.
    async fn refresh_volumes(&self, pod: &Pod, observed: &PodObserved) {
        let running = observed
            .containers
            .iter()
            .any(|c| c.state == ContainerState::Running);
        if !running {
            return;
        }
        match self.ctx.runtime.refresh_volumes(pod).await {
            Ok(changed) if !changed.is_empty() => {
                debug!(pod = %pod_ref(pod), ?changed, "volumes updated");
            }
            Ok(_) => {}
            Err(e) => warn!(pod = %pod_ref(pod), error = %e, "cannot update the pod's volumes"),
        }
    }

    async fn act(
        &mut self,
        pod: &Pod,
        observed: &PodObserved,
        actions: &plan::PodActions,
    ) -> Result<(), RuntimeError> {
        let spec = pod.spec.clone().unwrap_or_default();
        let grace = secs(spec.termination_grace_period_seconds.unwrap_or(30));
        if actions.kill_pod {
            self.kill_all(pod, observed, grace, "").await;
            if actions.create_sandbox.is_none() {
                return Ok(());
            }
        } else {
            for kill in &actions.containers_to_kill {
                self.ctx.events.pod(
                    pod,
                    Some(container_field_path(pod, &kill.name)),
                    EventType::Normal,
                    "Killing",
                    &kill.message,
                    self.now(),
                );
                self.stop_container(pod, &kill.name, &kill.container_id, grace)
                    .await;
            }
        }
        let sandbox = if let Some(attempt) = actions.create_sandbox {
            match self.ctx.runtime.run_sandbox(pod, attempt).await {
                Ok(s) => s,
                Err(e) => {
                    self.ctx.events.pod(
                        pod,
                        None,
                        EventType::Warning,
                        "FailedCreatePodSandBox",
                        &format!("Failed to create pod sandbox: {e}"),
                        self.now(),
                    );
                    return Err(e);
                }
            }
        } else {
            match observed.sandbox() {
                Some(s) => s.clone(),
                None => return Ok(()),
            }
        };
        if let Some(i) = actions.next_init_container {
            let container = spec.init_containers.clone().unwrap_or_default()[i].clone();
            self.start(pod, observed, &sandbox, &container, true).await;
            return Ok(());
        }
        for &i in &actions.containers_to_start {
            let container = spec.containers[i].clone();
            self.start(pod, observed, &sandbox, &container, false).await;
        }
        Ok(())
    }

    /// Starts one container, unless it is backing off. Errors become the
    /// container's waiting reason and an event.
    async fn start(
        &mut self,
        pod: &Pod,
        observed: &PodObserved,
        sandbox: &super::runtime::SandboxStatus,
        container: &Container,
        init: bool,
    ) {
        let field_path = Some(container_field_path(pod, &container.name));
        let latest = observed.latest(&container.name);
        let attempt = latest.map(|c| c.attempt + 1).unwrap_or(0);
        if let Some(last) = latest.filter(|c| c.state == ContainerState::Exited) {
            let finished = last.finished_at.unwrap_or(last.created_at);
            let key = Backoff::key(uid(pod), &container.name, &container_hash(container));
            let now = self.now();
            if self.backoff.in_backoff_since(&key, finished, now) {
                let wait = self.backoff.get(&key);
                self.ctx.events.pod(
                    pod,
                    field_path,
                    EventType::Warning,
                    "BackOff",
                    &format!(
                        "Back-off restarting failed container {} in pod {}",
                        container.name,
                        pod_ref(pod)
                    ),
                    now,
                );
                self.waiting.insert(
                    container.name.clone(),
                    Waiting {
                        reason: "CrashLoopBackOff".into(),
                        message: format!(
                            "back-off {} restarting failed container={} pod={}",
                            go_duration(wait),
                            container.name,
                            pod_ref(pod)
                        ),
                    },
                );
                let elapsed = now.duration_since(finished).unsigned_abs();
                let ends = Instant::now() + wait.saturating_sub(elapsed);
                self.backoff_ends = Some(self.backoff_ends.map_or(ends, |e| e.min(ends)));
                return;
            }
            self.backoff.next(&key, finished);
        }
        let image = container.image.clone().unwrap_or_default();
        let image_key = Backoff::key(uid(pod), &container.name, &format!("image {image}"));
        if let Some((failed_at, error)) = self.image_failures.get(&image_key) {
            let now = self.now();
            if self
                .image_backoff
                .in_backoff_since(&image_key, *failed_at, now)
            {
                let message = format!("Back-off pulling image \"{image}\"");
                self.ctx
                    .events
                    .pod(pod, field_path, EventType::Normal, "BackOff", &message, now);
                self.waiting.insert(
                    container.name.clone(),
                    Waiting {
                        reason: "ImagePullBackOff".into(),
                        message: format!("{message}: ErrImagePull: {error}"),
                    },
                );
                let wait = self.image_backoff.get(&image_key);
                let elapsed = now.duration_since(*failed_at).unsigned_abs();
                let ends = Instant::now() + wait.saturating_sub(elapsed);
                self.backoff_ends = Some(self.backoff_ends.map_or(ends, |e| e.min(ends)));
                return;
            }
        }
        match self.ctx.runtime.ensure_image(pod, container).await {
            Ok(message) => {
                self.image_failures.remove(&image_key);
                self.ctx.events.pod(
                    pod,
                    field_path.clone(),
                    EventType::Normal,
                    "Pulled",
                    &message,
                    self.now(),
                );
            }
            Err(e) => {
                if let RuntimeError::Image {
                    reason: "ErrImagePull",
                    message,
                } = &e
                {
                    let now = self.now();
                    self.image_backoff.next(&image_key, now);
                    self.image_failures
                        .insert(image_key, (now, message.clone()));
                    // Sync again shortly: the container then shows ImagePullBackOff
                    // until the back-off ends, as the kubelet's does.
                    let soon = Instant::now() + Duration::from_secs(1);
                    self.backoff_ends = Some(self.backoff_ends.map_or(soon, |e| e.min(soon)));
                }
                self.fail(pod, container, "Failed", &e);
                return;
            }
        }
        match self
            .ctx
            .runtime
            .start_container(pod, sandbox, container, attempt, init)
            .await
        {
            Ok(_) => {
                let now = self.now();
                self.ctx.events.pod(
                    pod,
                    field_path.clone(),
                    EventType::Normal,
                    "Created",
                    &format!("Created container: {}", container.name),
                    now,
                );
                self.ctx.events.pod(
                    pod,
                    field_path,
                    EventType::Normal,
                    "Started",
                    &format!("Started container {}", container.name),
                    now,
                );
            }
            Err(e) => self.fail(pod, container, "Failed", &e),
        }
    }

    fn fail(&mut self, pod: &Pod, container: &Container, reason: &str, e: &RuntimeError) {
        self.ctx.events.pod(
            pod,
            Some(container_field_path(pod, &container.name)),
            EventType::Warning,
            reason,
            &format!("Error: {e}"),
            self.now(),
        );
        self.waiting.insert(
            container.name.clone(),
            Waiting {
                reason: e.waiting_reason().into(),
                message: e.to_string(),
            },
        );
    }

    async fn stop_container(&self, pod: &Pod, name: &str, id: &str, grace: Duration) {
        let started = Instant::now();
        if let Some(container) = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.iter().find(|c| c.name == name))
        {
            self.pre_stop(container, id, grace).await;
        }
        let left = grace.saturating_sub(started.elapsed());
        if let Err(e) = self.ctx.runtime.stop_container(id, left).await {
            warn!(container = %name, error = %e, "cannot stop the container");
        }
    }

    /// Runs a container's preStop hook (exec or httpGet), within the grace period.
    async fn pre_stop(&self, container: &Container, id: &str, grace: Duration) {
        let Some(hook) = container
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
        else {
            return;
        };
        if let Some(exec) = &hook.exec {
            let command = exec.command.clone().unwrap_or_default();
            if let Err(e) = self.ctx.runtime.exec_sync(id, &command, grace).await {
                warn!(container = %container.name, error = %e, "the preStop hook failed");
            }
        } else if let Some(http) = &hook.http_get {
            let probe = k8s_openapi::api::core::v1::Probe {
                http_get: Some(http.clone()),
                timeout_seconds: Some(i32::try_from(grace.as_secs()).unwrap_or(30).max(1)),
                ..Default::default()
            };
            let observed = self.observe().await.unwrap_or_default();
            let ip = observed.sandbox().and_then(|s| s.ip).or(self.ctx.host_ip);
            if let Outcome::Failure(e) = self.prober.run(&probe, container, id, ip).await {
                warn!(container = %container.name, error = %e, "the preStop hook failed");
            }
        } else if let Some(sleep) = &hook.sleep {
            tokio::time::sleep(secs(sleep.seconds).min(grace)).await;
        }
    }

    /// Stops every running container (in parallel, each with its preStop hook) and the
    /// sandbox.
    async fn kill_all(&self, pod: &Pod, observed: &PodObserved, grace: Duration, why: &str) {
        let running: Vec<_> = observed
            .containers
            .iter()
            .filter(|c| {
                matches!(
                    c.state,
                    ContainerState::Running | ContainerState::Created | ContainerState::Unknown
                )
            })
            .collect();
        let stops = running.iter().map(|c| async move {
            let message = if why.is_empty() {
                format!("Stopping container {}", c.name)
            } else {
                why.to_string()
            };
            self.ctx.events.pod(
                pod,
                Some(container_field_path(pod, &c.name)),
                EventType::Normal,
                "Killing",
                &message,
                self.now(),
            );
            self.stop_container(pod, &c.name, &c.id, grace).await;
        });
        futures::future::join_all(stops).await;
        for s in observed.sandboxes.iter().filter(|s| s.ready) {
            if let Err(e) = self.ctx.runtime.stop_sandbox(pod, &s.id).await {
                warn!(sandbox = %s.id, error = %e, "cannot stop the sandbox");
            }
        }
    }

    fn track_probes(&mut self, observed: &PodObserved) {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let now = Instant::now();
        let mut running = Vec::new();
        for c in observed
            .containers
            .iter()
            .filter(|c| c.state == ContainerState::Running)
        {
            if let Some(container) = spec.containers.iter().find(|s| s.name == c.name) {
                let seen = *self.seen_running.entry(c.id.clone()).or_insert(now);
                running.push((c.id.clone(), container, seen));
            }
        }
        self.seen_running
            .retain(|id, _| running.iter().any(|(r, _, _)| r == id));
        self.probes.sync(&running);
    }

    /// Keeps the newest and the previous instance of each container (for lastState and
    /// `logs --previous`) and only the newest sandbox; removes older ones.
    async fn prune(&self, observed: &PodObserved) {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for c in &observed.containers {
            let n = seen.entry(c.name.as_str()).or_default();
            *n += 1;
            if *n > 2
                && c.state == ContainerState::Exited
                && let Err(e) = self.ctx.runtime.remove_container(&c.id).await
            {
                debug!(container = %c.id, error = %e, "cannot remove an old container");
            }
        }
        for s in observed.sandboxes.iter().skip(1).filter(|s| !s.ready) {
            if let Err(e) = self.ctx.runtime.remove_sandbox(uid(&self.pod), &s.id).await {
                debug!(sandbox = %s.id, error = %e, "cannot remove an old sandbox");
            }
        }
    }

    fn status(&self, observed: &PodObserved) -> PodStatus {
        let mut ready = HashMap::new();
        let mut started = HashMap::new();
        for c in &observed.containers {
            if let Some(v) = self.probes.verdict(&c.id, ProbeKind::Readiness) {
                ready.insert(c.id.clone(), *v == Verdict::Success);
            }
            if let Some(v) = self.probes.verdict(&c.id, ProbeKind::Startup) {
                started.insert(c.id.clone(), *v == Verdict::Success);
            }
        }
        // The status last reported is the base for transition times; after a restart of
        // the agent, the one the store holds is.
        let mut base = (*self.pod).clone();
        if let Some(last) = &self.last_status {
            base.status = Some(last.clone());
        }
        if self.evicted.is_some() {
            // Failed from now on, whatever the containers' restart policy.
            base.status.get_or_insert_with(Default::default).phase = Some("Failed".into());
        }
        let mut computed = status::pod_status(&StatusInput {
            pod: &base,
            observed,
            ready: &ready,
            started: &started,
            waiting: &self.waiting,
            host_ip: self.ctx.host_ip,
            qos_class: qos_class(&self.pod),
            now: self.now(),
        });
        if let Some(e) = &self.evicted {
            let old = base
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default();
            status::evicted(&mut computed, &old, EVICTED_REASON, &e.message, self.now());
        }
        computed
    }

    fn report(&mut self, observed: &PodObserved) {
        let status = self.status(observed);
        if self.last_status.as_ref() == Some(&status) {
            return;
        }
        let same_as_store = self.last_status.is_none()
            && self.pod.status.as_ref().is_some_and(|s| {
                serde_json::to_value(s).ok() == serde_json::to_value(&status).ok()
            });
        if !same_as_store {
            self.ctx.statuses.pod_status(&self.pod, &status);
        }
        self.last_status = Some(status);
    }

    /// Stops everything of a pod that is being deleted, reports it, and removes it.
    async fn terminate(&mut self) {
        let pod = self.pod.clone();
        info!(pod = %pod_ref(&pod), "terminating the pod");
        let spec = pod.spec.clone().unwrap_or_default();
        let grace = pod
            .metadata
            .deletion_grace_period_seconds
            .or(spec.termination_grace_period_seconds)
            .map(secs)
            .unwrap_or(Duration::from_secs(30));
        match self.observe().await {
            Ok(observed) => {
                self.kill_all(&pod, &observed, grace, "").await;
                if let Ok(observed) = self.observe().await
                    && !self.removed
                {
                    self.report(&observed);
                }
                if let Ok(observed) = self.observe().await {
                    for c in &observed.containers {
                        let _ = self.ctx.runtime.remove_container(&c.id).await;
                    }
                    for s in &observed.sandboxes {
                        let _ = self.ctx.runtime.remove_sandbox(uid(&pod), &s.id).await;
                    }
                }
            }
            Err(e) => warn!(error = %e, "cannot observe the pod to terminate it"),
        }
        if let Err(e) = self.ctx.runtime.cleanup_pod(uid(&pod)).await {
            warn!(error = %e, "cannot clean up after the pod");
        }
        if !self.removed {
            self.ctx.statuses.pod_terminated(&pod);
        }
    }
}

/// A duration as Go prints it ("10s", "2m40s", "5m0s"), for upstream's messages.
pub fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{}h{}m{}s", s / 3600, (s % 3600) / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn qos_classes() {
        let p = pod(serde_json::json!({"spec": {"containers": [{"name": "a"}]}}));
        assert_eq!(qos_class(&p), "BestEffort");
        let p = pod(
            serde_json::json!({"spec": {"containers": [{"name": "a", "resources": {
            "requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}}}]}}),
        );
        assert_eq!(qos_class(&p), "Guaranteed");
        let p = pod(
            serde_json::json!({"spec": {"containers": [{"name": "a", "resources": {
            "limits": {"cpu": "100m", "memory": "64Mi"}}}]}}),
        );
        // Limits alone: requests default to them (the API server's defaulting).
        assert_eq!(qos_class(&p), "Guaranteed");
        let p = pod(
            serde_json::json!({"spec": {"containers": [{"name": "a", "resources": {
            "requests": {"memory": "64Mi"}}}]}}),
        );
        assert_eq!(qos_class(&p), "Burstable");
        let p = pod(
            serde_json::json!({"spec": {"containers": [{"name": "a", "resources": {
            "requests": {"cpu": "0"}}}]}}),
        );
        assert_eq!(qos_class(&p), "BestEffort");
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(160)), "2m40s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
    }
}
