//! The hub against a real SQLite datastore and apiserver registry.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kedge_apiserver::registry::{Registry, WriteOpts};
use kedge_apiserver::{ApiServer, Config, TokenFile};
use kedge_datastore::SystemClock;
use kedge_datastore_sqlite::{SqliteConfig, SqliteStore};
use kedge_proto::v1::{ObjectKind, SyncBatch};
use kedge_resources::catalog;
use serde_json::{Value, json};
use tokio_stream::wrappers::ReceiverStream;

use super::*;

type Batches = ReceiverStream<Result<SyncBatch, Status>>;

async fn server(cache: usize) -> (tempfile::TempDir, Arc<ApiServer>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(SqliteConfig::new(dir.path().join("db.sqlite")))
        .await
        .unwrap();
    let config = Config {
        watch_cache_capacity: cache,
        ..Config::default()
    };
    let api = ApiServer::start(
        Arc::new(store),
        Arc::new(SystemClock),
        config,
        TokenFile::default(),
    )
    .await
    .unwrap();
    (dir, api)
}

fn info(plural: &str) -> &'static ResourceInfo {
    catalog::find("", "v1", plural).unwrap()
}

async fn put(reg: &Registry, plural: &str, obj: Value) -> u64 {
    let info = info(plural);
    let name = obj["metadata"]["name"].as_str().unwrap().to_string();
    let written = match reg.get(info, Some("default"), &name, None).await {
        Ok(old) => {
            let mut obj = obj;
            obj["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
            reg.update(
                info,
                Some("default"),
                &name,
                None,
                obj,
                &WriteOpts::default(),
            )
            .await
            .unwrap()
        }
        Err(_) => reg
            .create(info, Some("default"), obj, &WriteOpts::default())
            .await
            .unwrap(),
    };
    revision_of(&written.object)
}

async fn delete(reg: &Registry, plural: &str, name: &str) -> u64 {
    let info = info(plural);
    let opts = kedge_apiserver::registry::DeleteOpts {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    reg.delete(info, Some("default"), name, &opts)
        .await
        .unwrap();
    reg.store().current_revision().await.unwrap() as u64
}

fn secret(name: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
           "data": {"k": value}})
}

fn config_map(name: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
           "data": {"k": value}})
}

fn pod(name: &str, node: &str, secret: &str, config_map: Option<&str>) -> Value {
    let mut volumes = vec![json!({"name": "s", "secret": {"secretName": secret}})];
    if let Some(cm) = config_map {
        volumes.push(json!({"name": "c", "configMap": {"name": cm}}));
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"nodeName": node, "volumes": volumes,
                    "containers": [{"name": "c", "image": "busybox"}]}})
}

/// A hub that tells idle nodes the current revision every 100 ms, so that
/// `until` ends even when the last write was none of the node's business.
fn hub(reg: &Registry) -> Arc<SyncHub> {
    SyncHub::with_config(
        reg.clone(),
        SyncConfig {
            progress_interval: Duration::from_millis(100),
            ..SyncConfig::default()
        },
    )
}

async fn next(s: &mut Batches) -> SyncBatch {
    tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .expect("a batch within 10s")
        .expect("the stream goes on")
        .expect("a batch, not an error")
}

/// Batches until one reaches `revision`.
async fn until(s: &mut Batches, revision: u64) -> Vec<SyncBatch> {
    let mut out = Vec::new();
    loop {
        let b = next(s).await;
        let done = b.revision >= revision;
        out.push(b);
        if done {
            return out;
        }
    }
}

/// (kind, name, deleted) of every change, for kinds other than Service and
/// EndpointSlice.
fn summary(batches: &[SyncBatch]) -> BTreeSet<(i32, String, bool)> {
    batches
        .iter()
        .flat_map(|b| &b.changes)
        .filter(|c| {
            c.kind != ObjectKind::Service as i32 && c.kind != ObjectKind::EndpointSlice as i32
        })
        .map(|c| (c.kind, c.name.clone(), c.deleted))
        .collect()
}

fn names(batches: &[SyncBatch]) -> BTreeSet<String> {
    batches
        .iter()
        .flat_map(|b| &b.changes)
        .map(|c| c.name.clone())
        .collect()
}

const P: i32 = ObjectKind::Pod as i32;
const S: i32 = ObjectKind::Secret as i32;
const C: i32 = ObjectKind::ConfigMap as i32;

fn ch(kind: i32, name: &str, deleted: bool) -> (i32, String, bool) {
    (kind, name.to_string(), deleted)
}

/// Two nodes: n1 runs p1 (secret s1, configmap c1), n2 runs p2 (secret s2);
/// s3 is nobody's.
async fn two_nodes(reg: &Registry) -> u64 {
    put(reg, "secrets", secret("s1", "MQ==")).await;
    put(reg, "secrets", secret("s2", "Mg==")).await;
    put(reg, "secrets", secret("s3", "Mw==")).await;
    put(reg, "configmaps", config_map("c1", "one")).await;
    put(reg, "pods", pod("p1", "n1", "s1", Some("c1"))).await;
    put(reg, "pods", pod("p2", "n2", "s2", None)).await
}

#[tokio::test]
async fn resume_zero_gets_the_whole_view_and_nothing_else() {
    let (_dir, api) = server(4096).await;
    let reg = &api.registry;
    let last = two_nodes(reg).await;
    let hub = hub(reg);
    let mut s = hub.stream("n1".into(), 0);
    let first = next(&mut s).await;
    assert!(first.reset);
    let mut batches = vec![first.clone()];
    if first.revision < last {
        batches.extend(until(&mut s, last).await);
    }
    let got = summary(&batches);
    assert!(got.contains(&ch(P, "p1", false)), "{got:?}");
    assert!(got.contains(&ch(S, "s1", false)), "{got:?}");
    assert!(got.contains(&ch(C, "c1", false)), "{got:?}");
    let seen = names(&batches);
    for other in ["p2", "s2", "s3"] {
        assert!(!seen.contains(other), "n1 must not see {other}: {seen:?}");
    }
    // Every Service is there (at least the kubernetes one).
    assert!(
        first
            .changes
            .iter()
            .any(|c| c.kind == ObjectKind::Service as i32 && c.name == "kubernetes")
    );
    let pod: Value = serde_json::from_slice(
        &first
            .changes
            .iter()
            .find(|c| c.name == "p1")
            .unwrap()
            .object,
    )
    .unwrap();
    assert_eq!(pod["spec"]["nodeName"], "n1");
}

#[tokio::test]
async fn resume_gets_only_the_changes_of_the_node() {
    let (_dir, api) = server(4096).await;
    let reg = &api.registry;
    let last = two_nodes(reg).await;
    let hub = hub(reg);
    let mut s = hub.stream("n1".into(), 0);
    let acked = until(&mut s, last).await.last().unwrap().revision;
    drop(s);

    // While n1 is away: its secret changes, another node's secret changes,
    // a new pod lands on n1 with a secret that existed before, a pod lands
    // on n2, and p1 is deleted (so c1 leaves n1's view).
    put(reg, "secrets", secret("s4", "NA==")).await;
    put(reg, "secrets", secret("s1", "MTE=")).await;
    put(reg, "secrets", secret("s2", "MjI=")).await;
    put(reg, "pods", pod("p3", "n1", "s4", None)).await;
    put(reg, "pods", pod("p4", "n2", "s3", None)).await;
    let last = delete(reg, "pods", "p1").await;

    let mut s = hub.stream("n1".into(), acked);
    let batches = until(&mut s, last).await;
    assert!(batches.iter().all(|b| !b.reset));
    let got = summary(&batches);
    let want: BTreeSet<_> = [
        ch(P, "p1", true),
        ch(S, "s1", true),
        ch(C, "c1", true),
        ch(P, "p3", false),
        ch(S, "s4", false),
    ]
    .into_iter()
    .collect();
    // s1 changed and then left the view with p1: only its deletion counts.
    let got: BTreeSet<_> = got.into_iter().filter(|c| c.1 != "s1" || c.2).collect();
    assert_eq!(got, want);
    let seen = names(&batches);
    for other in ["p2", "p4", "s2", "s3"] {
        assert!(!seen.contains(other), "n1 must not see {other}: {seen:?}");
    }
    let s4 = batches
        .iter()
        .flat_map(|b| &b.changes)
        .find(|c| c.name == "s4")
        .unwrap();
    let obj: Value = serde_json::from_slice(&s4.object).unwrap();
    assert_eq!(obj["data"]["k"], "NA==");
}

#[tokio::test]
async fn live_changes_follow_references() {
    let (_dir, api) = server(4096).await;
    let reg = &api.registry;
    let last = two_nodes(reg).await;
    let hub = hub(reg);
    let mut s = hub.stream("n1".into(), 0);
    until(&mut s, last).await;

    // Another node's secret changes: n1 hears nothing of it. Then a pod on
    // n1 starts using s2: the pod and s2 arrive.
    put(reg, "secrets", secret("s2", "eHg=")).await;
    let last = put(reg, "pods", pod("p5", "n1", "s2", None)).await;
    let batches = until(&mut s, last).await;
    let got = summary(&batches);
    assert!(got.contains(&ch(P, "p5", false)), "{got:?}");
    assert!(got.contains(&ch(S, "s2", false)), "{got:?}");
    let s2 = batches
        .iter()
        .flat_map(|b| &b.changes)
        .rfind(|c| c.name == "s2")
        .unwrap();
    let obj: Value = serde_json::from_slice(&s2.object).unwrap();
    assert_eq!(obj["data"]["k"], "eHg=");

    // s2 changes while referenced: it follows. Then p5 goes: s2 leaves.
    let last = put(reg, "secrets", secret("s2", "eXk=")).await;
    let got = summary(&until(&mut s, last).await);
    assert!(got.contains(&ch(S, "s2", false)), "{got:?}");
    let last = delete(reg, "pods", "p5").await;
    let got = summary(&until(&mut s, last).await);
    assert!(got.contains(&ch(P, "p5", true)), "{got:?}");
    assert!(got.contains(&ch(S, "s2", true)), "{got:?}");

    // Now s2 is n2's alone again: its changes are not n1's business. The
    // next batch n1 gets is about c1.
    put(reg, "secrets", secret("s2", "eno=")).await;
    let last = put(reg, "configmaps", config_map("c1", "two")).await;
    let batches = until(&mut s, last).await;
    assert!(!names(&batches).contains("s2"));
    assert!(summary(&batches).contains(&ch(C, "c1", false)));
}

/// n1 syncs and leaves; then a small cache window churns past its revision
/// while s1, s2 and p1 change. Returns n1's acked revision and the last
/// revision written.
async fn away_past_the_window(reg: &Registry, hub: &Arc<SyncHub>) -> (u64, u64) {
    let last = two_nodes(reg).await;
    let mut s = hub.stream("n1".into(), 0);
    let acked = until(&mut s, last).await.last().unwrap().revision;
    drop(s);
    put(reg, "secrets", secret("s1", "bmV3")).await;
    put(reg, "secrets", secret("s2", "bmV3")).await;
    let mut last = 0;
    for i in 0..40 {
        last = put(reg, "configmaps", config_map("churn", &i.to_string())).await;
    }
    // Wait until the cache has moved past the churn.
    while (reg.cache().position() as u64) < last {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reg.cache().window_start().0 as u64 > acked);
    (acked, last)
}

#[tokio::test]
async fn resume_older_than_the_window_reads_the_datastore_history() {
    let (_dir, api) = server(16).await;
    let reg = &api.registry;
    let hub = hub(reg);
    let (acked, last) = away_past_the_window(reg, &hub).await;
    let mut s = hub.stream("n1".into(), acked);
    let batches = until(&mut s, last).await;
    assert!(batches.iter().all(|b| !b.reset));
    let want: BTreeSet<_> = [ch(S, "s1", false)].into_iter().collect();
    assert_eq!(summary(&batches), want);
    let s1 = &batches[0].changes[0];
    let obj: Value = serde_json::from_slice(&s1.object).unwrap();
    assert_eq!(obj["data"]["k"], "bmV3");
    assert_eq!(s1.revision, revision_of(&obj));
}

#[tokio::test]
async fn resume_from_before_compaction_resets() {
    let (_dir, api) = server(16).await;
    let reg = &api.registry;
    let hub = hub(reg);
    let (acked, last) = away_past_the_window(reg, &hub).await;
    reg.store().compact(last as i64).await.unwrap();
    let mut s = hub.stream("n1".into(), acked);
    let first = next(&mut s).await;
    assert!(first.reset);
    let got = summary(std::slice::from_ref(&first));
    assert!(got.contains(&ch(P, "p1", false)));
    assert!(got.contains(&ch(S, "s1", false)));
    assert!(!names(std::slice::from_ref(&first)).contains("s2"));
}

#[tokio::test]
async fn acks_are_recorded_and_a_new_stream_replaces_the_old() {
    let (_dir, api) = server(4096).await;
    let reg = &api.registry;
    let last = two_nodes(reg).await;
    let hub = hub(reg);
    assert_eq!(hub.acked("n1"), None);
    hub.ack("n1", last);
    assert_eq!(hub.acked("n1"), Some(last));
    let mut old = hub.stream("n1".into(), 0);
    next(&mut old).await;
    let mut new = hub.stream("n1".into(), last);
    let first = next(&mut new).await;
    assert!(!first.reset);
    // The old stream ends with UNAVAILABLE.
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match old.next().await {
                Some(Ok(_)) => continue,
                Some(Err(status)) => return Some(status),
                None => return None,
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(end.map(|s| s.code()), Some(tonic::Code::Unavailable));
    assert_eq!(hub.connected(), 1);
}

#[tokio::test]
async fn a_node_that_falls_behind_is_ended() {
    let (_dir, api) = server(4096).await;
    let reg = &api.registry;
    let last = two_nodes(reg).await;
    let config = SyncConfig {
        node_queue: 1,
        progress_interval: Duration::from_millis(100),
        ..SyncConfig::default()
    };
    let hub = SyncHub::with_config(reg.clone(), config);
    let mut s = hub.stream("n1".into(), 0);
    until(&mut s, last).await;
    // The agent stops reading while c1 keeps changing.
    for i in 0..20 {
        put(reg, "configmaps", config_map("c1", &i.to_string())).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.next().await {
                Some(Ok(_)) => continue,
                Some(Err(status)) => return Some(status.code()),
                None => return None,
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(end, Some(tonic::Code::Unavailable));
    assert_eq!(hub.connected(), 0);
}

#[tokio::test]
async fn idle_nodes_hear_the_current_revision() {
    let (_dir, api) = server(4096).await;
    let reg = &api.registry;
    let last = two_nodes(reg).await;
    let hub = hub(reg);
    let mut s = hub.stream("n1".into(), 0);
    until(&mut s, last).await;
    // Only n2's business: n1 gets an empty batch at (or past) it.
    let last = put(reg, "secrets", secret("s2", "cQ==")).await;
    let batches = until(&mut s, last).await;
    assert!(batches.iter().all(|b| b.changes.is_empty() && !b.reset));
}

/// Many nodes on one router: a Secret change reaches only the node that
/// uses it, a Service change reaches every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_router_serves_many_nodes() {
    const NODES: usize = 300;
    let (_dir, api) = server(4096).await;
    let reg = &api.registry;
    for i in 0..NODES {
        put(reg, "secrets", secret(&format!("s{i}"), "eA==")).await;
        put(
            reg,
            "pods",
            pod(&format!("p{i}"), &format!("n{i}"), &format!("s{i}"), None),
        )
        .await;
    }
    let hub = SyncHub::start(reg.clone());
    let mut streams = Vec::new();
    for i in 0..NODES {
        let mut s = hub.stream(format!("n{i}"), 0);
        let first = next(&mut s).await;
        assert!(first.reset);
        let seen = names(std::slice::from_ref(&first));
        assert!(seen.contains(&format!("s{i}")));
        assert!(!seen.contains(&format!("s{}", (i + 1) % NODES)));
        streams.push(s);
    }
    assert_eq!(hub.connected(), NODES);

    let started = std::time::Instant::now();
    let last = put(reg, "secrets", secret("s7", "eQ==")).await;
    let batches = until(&mut streams[7], last).await;
    assert!(summary(&batches).contains(&ch(S, "s7", false)));
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"ports": [{"port": 80}], "selector": {"app": "web"}}});
    let last = put(reg, "services", svc).await;
    for (i, s) in streams.iter_mut().enumerate() {
        let batches = until(s, last).await;
        let seen = names(&batches);
        assert!(seen.contains("web"), "n{i}: {seen:?}");
        assert!(i == 7 || !seen.contains("s7"), "n{i} must not see s7");
    }
    eprintln!(
        "{NODES} nodes: one secret change and one service change routed and received in {:?}",
        started.elapsed()
    );
}

mod index {
    use super::super::index::Index;
    use super::super::refs::ObjectKey;
    use super::*;

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new(ObjectKind::Pod, "default", name)
    }

    fn sec(name: &str) -> ObjectKey {
        ObjectKey::new(ObjectKind::Secret, "default", name)
    }

    #[test]
    fn references_are_counted_per_node() {
        let mut ix = Index::default();
        let c = ix.set_pod(key("a"), Some(&pod("a", "n1", "s", None)));
        assert_eq!(c.acquired, vec![("n1".to_string(), sec("s"))]);
        // A second pod of n1 using s: nothing enters the view.
        let c = ix.set_pod(key("b"), Some(&pod("b", "n1", "s", None)));
        assert!(c.acquired.is_empty() && c.released.is_empty());
        // An update of a that keeps s: nothing moves.
        let c = ix.set_pod(key("a"), Some(&pod("a", "n1", "s", None)));
        assert!(c.acquired.is_empty() && c.released.is_empty());
        assert_eq!(c.old_node.as_deref(), Some("n1"));
        let c = ix.set_pod(key("a"), None);
        assert!(c.released.is_empty());
        assert_eq!(c.new_node, None);
        let c = ix.set_pod(key("b"), None);
        assert_eq!(c.released, vec![("n1".to_string(), sec("s"))]);
        assert_eq!(ix.len(), 0);
        assert!(ix.node_pods("n1").is_empty());
        // Unbound pods are not indexed.
        let mut unbound = pod("c", "", "s", None);
        unbound["spec"]["nodeName"] = Value::Null;
        let c = ix.set_pod(key("c"), Some(&unbound));
        assert!(c.acquired.is_empty() && c.new_node.is_none());
        assert_eq!(ix.ref_nodes(&sec("s")).count(), 0);
    }
}

async fn put_node(reg: &Registry, node: Value) -> u64 {
    let info = catalog::find("", "v1", "nodes").unwrap();
    let name = node["metadata"]["name"].as_str().unwrap().to_string();
    let written = match reg.get(info, None, &name, None).await {
        Ok(old) => {
            let mut node = node;
            node["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
            reg.update(info, None, &name, None, node, &WriteOpts::default())
                .await
                .unwrap()
        }
        Err(_) => reg
            .create(info, None, node, &WriteOpts::default())
            .await
            .unwrap(),
    };
    revision_of(&written.object)
}

fn node(name: &str, cidr: &str, heartbeat: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
           "spec": {"podCIDR": cidr},
           "status": {"conditions": [{"type": "Ready", "status": "True",
                      "lastHeartbeatTime": heartbeat}]}})
}

#[tokio::test]
async fn a_node_gets_its_own_node_but_not_its_status_churn_nor_other_nodes() {
    let (_dir, api) = server(4096).await;
    let reg = &api.registry;
    put_node(reg, node("n1", "10.42.1.0/24", "2026-01-01T00:00:00Z")).await;
    let last = put_node(reg, node("n2", "10.42.2.0/24", "2026-01-01T00:00:00Z")).await;
    let hub = hub(reg);
    let mut s = hub.stream("n1".into(), 0);
    let batches = until(&mut s, last).await;
    let nodes: Vec<_> = batches
        .iter()
        .flat_map(|b| &b.changes)
        .filter(|c| c.kind == ObjectKind::Node as i32)
        .collect();
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    assert_eq!(nodes[0].name, "n1");
    let obj: Value = serde_json::from_slice(&nodes[0].object).unwrap();
    assert_eq!(obj["spec"]["podCIDR"], "10.42.1.0/24");
    let acked = batches.last().unwrap().revision;

    // A heartbeat (status only) is not sent; a spec change is; n2's never is.
    put_node(reg, node("n1", "10.42.1.0/24", "2026-01-01T00:01:00Z")).await;
    put_node(reg, node("n2", "10.42.9.0/24", "2026-01-01T00:01:00Z")).await;
    let last = put_node(reg, node("n1", "10.42.7.0/24", "2026-01-01T00:01:00Z")).await;
    let batches = until(&mut s, last).await;
    let nodes: Vec<Value> = batches
        .iter()
        .flat_map(|b| &b.changes)
        .filter(|c| c.kind == ObjectKind::Node as i32)
        .map(|c| serde_json::from_slice(&c.object).unwrap())
        .collect();
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    assert_eq!(nodes[0]["metadata"]["name"], "n1");
    assert_eq!(nodes[0]["spec"]["podCIDR"], "10.42.7.0/24");

    // Resuming from history gives the same: the spec change, once.
    drop(s);
    let mut s = hub.stream("n1".into(), acked);
    let batches = until(&mut s, last).await;
    assert!(batches.iter().all(|b| !b.reset));
    let nodes: Vec<_> = batches
        .iter()
        .flat_map(|b| &b.changes)
        .filter(|c| c.kind == ObjectKind::Node as i32)
        .map(|c| c.name.clone())
        .collect();
    assert!(
        nodes.iter().all(|n| n == "n1") && !nodes.is_empty(),
        "{nodes:?}"
    );
}
