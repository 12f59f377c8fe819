//! kube-rs, unchanged, against the real `kedge server`: typed CRUD, the
//! three patch types, subresources, conflicts, error shapes, and a watcher
//! with a reflector store that survives a server restart.
//!
//! The client is built the way a user builds it: from the kubeconfig the
//! server wrote. Every test runs its own server in its own directory, and
//! every wait has a deadline, so a hang fails with a message instead of
//! holding CI.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Cluster;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde_json::json;

/// How long any single test may take before it fails.
const TEST_DEADLINE: Duration = Duration::from_secs(180);
/// How long a watcher may take to catch up with a change.
const CONVERGE: Duration = Duration::from_secs(30);

/// A client from the kubeconfig `kedge server` wrote, as a user makes one.
async fn client(cluster: &Cluster) -> kube::Client {
    cluster.client().await
}

/// Runs a test body with a deadline, so that a hang is a failure.
async fn within<F: Future<Output = ()>>(what: &str, body: F) {
    if tokio::time::timeout(TEST_DEADLINE, body).await.is_err() {
        panic!("{what} did not finish within {TEST_DEADLINE:?}");
    }
}

fn configmap(name: &str, labels: &[(&str, &str)], data: &[(&str, &str)]) -> ConfigMap {
    let labels: BTreeMap<_, _> = labels.iter().copied().collect();
    let data: BTreeMap<_, _> = data.iter().copied().collect();
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "data": data,
    }))
    .unwrap()
}

fn deployment(name: &str, replicas: i32, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": image}]},
            },
        },
    }))
    .unwrap()
}

fn data(cm: &ConfigMap) -> BTreeMap<String, String> {
    cm.data.clone().unwrap_or_default()
}

fn rv<K: Resource>(o: &K) -> u64 {
    o.meta()
        .resource_version
        .as_deref()
        .expect("a resourceVersion")
        .parse()
        .expect("resourceVersion is a number on kedge")
}

fn names<K: Resource>(items: &[K]) -> Vec<String> {
    let mut names: Vec<String> = items
        .iter()
        .map(|o| o.meta().name.clone().unwrap())
        .collect();
    names.sort();
    names
}

/// The `Status` of a failed call, or a panic naming what happened instead.
#[track_caller]
fn api_error<T: std::fmt::Debug>(result: kube::Result<T>) -> kube::core::Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn configmaps_through_the_typed_api() {
    let cluster = Cluster::sqlite();
    within("configmap CRUD", async {
        let cms: Api<ConfigMap> = Api::namespaced(client(&cluster).await, "default");
        let pp = PostParams::default();

        let created = cms
            .create(
                &pp,
                &configmap("one", &[("suite", "crud"), ("app", "a")], &[("k", "v1")]),
            )
            .await
            .unwrap();
        assert_eq!(created.name_any(), "one");
        assert_eq!(created.namespace().as_deref(), Some("default"));
        assert!(created.uid().is_some_and(|u| !u.is_empty()), "a uid");
        assert!(
            created.creation_timestamp().is_some(),
            "a creationTimestamp"
        );
        assert_eq!(data(&created)["k"], "v1");
        let first_rv = rv(&created);

        let got = cms.get("one").await.unwrap();
        assert_eq!(rv(&got), first_rv);
        assert_eq!(got.uid(), created.uid());
        assert_eq!(got.labels()["app"], "a");

        for (name, labels) in [
            ("two", vec![("suite", "crud"), ("app", "a")]),
            ("three", vec![("suite", "crud"), ("app", "b")]),
            ("four", vec![("suite", "crud")]),
        ] {
            cms.create(&pp, &configmap(name, &labels, &[]))
                .await
                .unwrap();
        }
        for (selector, want) in [
            ("suite=crud", vec!["four", "one", "three", "two"]),
            ("suite=crud,app=a", vec!["one", "two"]),
            ("suite=crud,app!=a", vec!["four", "three"]),
            ("app in (a,b)", vec!["one", "three", "two"]),
            ("suite=crud,!app", vec!["four"]),
            ("app=c", vec![]),
        ] {
            let list = cms
                .list(&ListParams::default().labels(selector))
                .await
                .unwrap();
            assert_eq!(names(&list.items), want, "label selector {selector:?}");
        }
        let list = cms
            .list(&ListParams::default().labels("suite=crud"))
            .await
            .unwrap();
        let list_rv: u64 = list
            .metadata
            .resource_version
            .as_deref()
            .expect("a list resourceVersion")
            .parse()
            .unwrap();
        assert!(
            list.items.iter().all(|o| rv(o) <= list_rv),
            "the list's resourceVersion {list_rv} is at least every item's"
        );
        // Paging: limit 2 gives a continue token, and the pages add up.
        let page = cms
            .list(&ListParams::default().labels("suite=crud").limit(2))
            .await
            .unwrap();
        assert_eq!(page.items.len(), 2);
        let token = page.metadata.continue_.clone().expect("a continue token");
        let rest = cms
            .list(
                &ListParams::default()
                    .labels("suite=crud")
                    .limit(2)
                    .continue_token(&token),
            )
            .await
            .unwrap();
        let mut paged = page.items.clone();
        paged.extend(rest.items);
        assert_eq!(names(&paged), vec!["four", "one", "three", "two"]);

        // Replace: a new resourceVersion, the same uid.
        let mut changed = got.clone();
        changed.data = Some(BTreeMap::from([("k".to_string(), "v2".to_string())]));
        let replaced = cms.replace("one", &pp, &changed).await.unwrap();
        assert_eq!(data(&replaced)["k"], "v2");
        assert!(
            rv(&replaced) > first_rv,
            "replace moves the resourceVersion"
        );
        assert_eq!(replaced.uid(), created.uid());

        // Merge patch adds a key.
        let merged = cms
            .patch(
                "one",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"m": "merge"}})),
            )
            .await
            .unwrap();
        assert_eq!(
            data(&merged),
            BTreeMap::from([
                ("k".to_string(), "v2".to_string()),
                ("m".to_string(), "merge".to_string())
            ])
        );
        assert!(rv(&merged) > rv(&replaced));

        // Strategic merge patch adds a label and a key, and removes one
        // with null.
        let strategic = cms
            .patch(
                "one",
                &PatchParams::default(),
                &Patch::Strategic(json!({
                    "metadata": {"labels": {"tier": "web"}},
                    "data": {"s": "strategic", "m": null},
                })),
            )
            .await
            .unwrap();
        assert_eq!(strategic.labels()["tier"], "web");
        assert_eq!(strategic.labels()["app"], "a");
        assert_eq!(
            data(&strategic),
            BTreeMap::from([
                ("k".to_string(), "v2".to_string()),
                ("s".to_string(), "strategic".to_string())
            ])
        );

        // JSON patch: test, replace, remove, add.
        let json_patch = serde_json::from_value(json!([
            {"op": "test", "path": "/data/k", "value": "v2"},
            {"op": "replace", "path": "/data/k", "value": "json"},
            {"op": "remove", "path": "/data/s"},
            {"op": "add", "path": "/metadata/labels/patched", "value": "yes"},
        ]))
        .unwrap();
        let patched = cms
            .patch(
                "one",
                &PatchParams::default(),
                &Patch::Json::<()>(json_patch),
            )
            .await
            .unwrap();
        assert_eq!(
            data(&patched),
            BTreeMap::from([("k".to_string(), "json".to_string())])
        );
        assert_eq!(patched.labels()["patched"], "yes");
        // The label selector sees the patched labels.
        let list = cms
            .list(&ListParams::default().labels("patched=yes"))
            .await
            .unwrap();
        assert_eq!(names(&list.items), vec!["one"]);

        // A ConfigMap's delete answers with a Success Status (upstream's
        // generic store), naming what it deleted.
        let deleted = cms.delete("one", &DeleteParams::default()).await.unwrap();
        let status = deleted
            .right()
            .expect("a configmap delete answers a Status");
        assert_eq!(
            status.status,
            Some(kube::core::response::StatusSummary::Success)
        );
        let details = status.details.expect("details of what was deleted");
        assert_eq!(details.name, "one");
        assert_eq!(details.kind, "configmaps");
        assert_eq!(Some(details.uid), created.uid());
        assert_eq!(api_error(cms.get("one").await).code, 404);
        assert_eq!(cms.get_opt("one").await.unwrap(), None);
        let list = cms
            .list(&ListParams::default().labels("suite=crud"))
            .await
            .unwrap();
        assert_eq!(names(&list.items), vec!["four", "three", "two"]);
    })
    .await;
}

#[tokio::test]
async fn deployments_generation_scale_and_status() {
    // The test writes the status itself; the Deployment controller would too.
    let cluster = Cluster::sqlite_without_controllers();
    within("deployment CRUD", async {
        let deploys: Api<Deployment> = Api::namespaced(client(&cluster).await, "default");
        let pp = PostParams::default();
        let created = deploys
            .create(&pp, &deployment("web", 2, "busybox:1"))
            .await
            .unwrap();
        assert_eq!(created.metadata.generation, Some(1));
        let spec = created.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(2));
        // Upstream defaults come back in the created object.
        let strategy = spec.strategy.as_ref().expect("a defaulted strategy");
        assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
        assert_eq!(spec.revision_history_limit, Some(10));
        assert_eq!(spec.progress_deadline_seconds, Some(600));
        let container = &spec.template.spec.as_ref().unwrap().containers[0];
        assert_eq!(container.image_pull_policy.as_deref(), Some("IfNotPresent"));
        assert_eq!(
            container.termination_message_path.as_deref(),
            Some("/dev/termination-log")
        );

        // A spec change bumps the generation.
        let mut changed = created.clone();
        changed
            .spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .containers[0]
            .image = Some("busybox:2".into());
        let replaced = deploys.replace("web", &pp, &changed).await.unwrap();
        assert_eq!(replaced.metadata.generation, Some(2));
        assert!(rv(&replaced) > rv(&created));

        // A metadata-only change does not.
        let labelled = deploys
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"team": "edge"}}})),
            )
            .await
            .unwrap();
        assert_eq!(labelled.metadata.generation, Some(2));
        assert_eq!(labelled.labels()["team"], "edge");
        assert!(rv(&labelled) > rv(&replaced));

        // A strategic merge patch on the containers list merges by name:
        // the existing container keeps its fields, a new one is added.
        let two = deploys
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                    {"name": "main", "image": "busybox:3"},
                    {"name": "sidecar", "image": "busybox:1"},
                ]}}}})),
            )
            .await
            .unwrap();
        assert_eq!(two.metadata.generation, Some(3));
        let containers = &two
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers;
        let by_name: BTreeMap<_, _> = containers
            .iter()
            .map(|c| (c.name.as_str(), c.image.as_deref().unwrap()))
            .collect();
        assert_eq!(
            by_name,
            BTreeMap::from([("main", "busybox:3"), ("sidecar", "busybox:1")])
        );
        assert_eq!(
            containers[0].image_pull_policy.as_deref(),
            Some("IfNotPresent"),
            "the merged container keeps its defaulted fields"
        );

        // The scale subresource reads and writes spec.replicas.
        let scale = deploys.get_scale("web").await.unwrap();
        assert_eq!(scale.spec.as_ref().unwrap().replicas, Some(2));
        assert_eq!(scale.metadata.name.as_deref(), Some("web"));
        assert_eq!(
            scale.status.as_ref().unwrap().selector.as_deref(),
            Some("app=web")
        );
        let scaled = deploys
            .patch_scale(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": 5}})),
            )
            .await
            .unwrap();
        assert_eq!(scaled.spec.as_ref().unwrap().replicas, Some(5));
        let after_scale = deploys.get("web").await.unwrap();
        assert_eq!(after_scale.spec.as_ref().unwrap().replicas, Some(5));
        assert_eq!(after_scale.metadata.generation, Some(4));

        // The status subresource writes status and nothing else.
        let with_status = deploys
            .patch_status(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({
                    "spec": {"replicas": 9},
                    "status": {"observedGeneration": 4, "replicas": 5, "readyReplicas": 3},
                })),
            )
            .await
            .unwrap();
        let status = with_status.status.as_ref().expect("a status");
        assert_eq!(status.observed_generation, Some(4));
        assert_eq!(status.replicas, Some(5));
        assert_eq!(status.ready_replicas, Some(3));
        assert_eq!(
            with_status.spec.as_ref().unwrap().replicas,
            Some(5),
            "a status write leaves the spec alone"
        );
        assert_eq!(with_status.metadata.generation, Some(4));
        let read_status = deploys.get_status("web").await.unwrap();
        assert_eq!(read_status.status.unwrap().ready_replicas, Some(3));

        // And a main-resource write leaves the status alone.
        let mut again = deploys.get("web").await.unwrap();
        again.status.as_mut().unwrap().ready_replicas = Some(0);
        again
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("v".into(), "2".into());
        let kept = deploys.replace("web", &pp, &again).await.unwrap();
        assert_eq!(kept.status.unwrap().ready_replicas, Some(3));
        assert_eq!(kept.metadata.labels.unwrap()["v"], "2");

        // Deleting a Deployment answers with a Status, and it is gone.
        let gone = deploys
            .delete("web", &DeleteParams::default())
            .await
            .unwrap();
        assert!(gone.is_right(), "a deployment delete answers a Status");
        assert_eq!(api_error(deploys.get("web").await).code, 404);
    })
    .await;
}

#[tokio::test]
async fn pods_through_the_typed_api() {
    let cluster = Cluster::sqlite();
    within("pod CRUD", async {
        let pods: Api<Pod> = Api::namespaced(client(&cluster).await, "default");
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "labels": {"app": "p"}},
            "spec": {"containers": [
                {"name": "a", "image": "busybox:1", "command": ["sleep", "3600"]},
                {"name": "b", "image": "busybox:1"},
            ]},
        }))
        .unwrap();
        let created = pods.create(&PostParams::default(), &pod).await.unwrap();
        let spec = created.spec.as_ref().unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"));
        assert_eq!(spec.termination_grace_period_seconds, Some(30));
        assert_eq!(
            created.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Pending")
        );

        // A strategic merge patch changes one container's image by name.
        let patched = pods
            .patch(
                "p",
                &PatchParams::default(),
                &Patch::Strategic(
                    json!({"spec": {"containers": [{"name": "b", "image": "busybox:2"}]}}),
                ),
            )
            .await
            .unwrap();
        let containers = &patched.spec.as_ref().unwrap().containers;
        assert_eq!(containers.len(), 2);
        assert_eq!(containers[0].name, "a");
        assert_eq!(containers[0].image.as_deref(), Some("busybox:1"));
        assert_eq!(
            containers[0].command,
            Some(vec!["sleep".to_string(), "3600".to_string()])
        );
        assert_eq!(containers[1].image.as_deref(), Some("busybox:2"));

        // A JSON patch on the labels.
        let json_patch = serde_json::from_value(json!([
            {"op": "add", "path": "/metadata/labels/stage", "value": "two"},
        ]))
        .unwrap();
        let labelled = pods
            .patch("p", &PatchParams::default(), &Patch::Json::<()>(json_patch))
            .await
            .unwrap();
        assert_eq!(labelled.labels()["stage"], "two");
        let list = pods
            .list(&ListParams::default().labels("stage=two"))
            .await
            .unwrap();
        assert_eq!(names(&list.items), vec!["p"]);

        // Pod status through its subresource.
        let status = pods
            .patch_status(
                "p",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Running", "podIP": "10.42.0.7"}})),
            )
            .await
            .unwrap();
        let s = status.status.unwrap();
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.pod_ip.as_deref(), Some("10.42.0.7"));

        // An unscheduled pod is deleted at once, and the delete answers
        // with the pod (upstream's pods return the deleted object).
        let deleted = pods.delete("p", &DeleteParams::default()).await.unwrap();
        let pod = deleted.left().expect("a pod delete answers with the pod");
        assert_eq!(pod.name_any(), "p");
        assert_eq!(api_error(pods.get("p").await).code, 404);
    })
    .await;
}

#[tokio::test]
async fn a_stale_replace_conflicts_and_a_retry_succeeds() {
    let cluster = Cluster::sqlite();
    within("conflict and retry", async {
        let alice: Api<ConfigMap> = Api::namespaced(client(&cluster).await, "default");
        let bob: Api<ConfigMap> = Api::namespaced(client(&cluster).await, "default");
        let pp = PostParams::default();
        alice
            .create(&pp, &configmap("shared", &[], &[("owner", "none")]))
            .await
            .unwrap();

        let mut a = alice.get("shared").await.unwrap();
        let mut b = bob.get("shared").await.unwrap();
        assert_eq!(a.resource_version(), b.resource_version());

        a.data = Some(BTreeMap::from([("owner".into(), "alice".into())]));
        let won = alice.replace("shared", &pp, &a).await.unwrap();
        assert!(rv(&won) > rv(&b));

        b.data = Some(BTreeMap::from([("owner".into(), "bob".into())]));
        let status = api_error(bob.replace("shared", &pp, &b).await);
        assert_eq!(status.code, 409);
        assert_eq!(status.reason, "Conflict");
        assert_eq!(
            status.message,
            "Operation cannot be fulfilled on configmaps \"shared\": the object has been modified; please apply your changes to the latest version and try again"
        );
        assert_eq!(bob.get("shared").await.unwrap().data.unwrap()["owner"], "alice");

        // The loser re-reads, re-applies its change and wins.
        let mut fresh = bob.get("shared").await.unwrap();
        assert_eq!(fresh.resource_version(), won.resource_version());
        fresh.data = Some(BTreeMap::from([("owner".into(), "bob".into())]));
        let retried = bob.replace("shared", &pp, &fresh).await.unwrap();
        assert_eq!(retried.data.unwrap()["owner"], "bob");
        assert_eq!(alice.get("shared").await.unwrap().data.unwrap()["owner"], "bob");
    })
    .await;
}

#[tokio::test]
async fn errors_are_status_objects() {
    let cluster = Cluster::sqlite();
    within("error shapes", async {
        let client = client(&cluster).await;
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

        let missing = api_error(cms.get("nope").await);
        assert_eq!(missing.code, 404);
        assert_eq!(missing.reason, "NotFound");
        assert_eq!(missing.message, "configmaps \"nope\" not found");
        assert_eq!(
            missing.status,
            Some(kube::core::response::StatusSummary::Failure)
        );
        assert!(missing.is_not_found());
        let details = missing.details.expect("details");
        assert_eq!(details.name, "nope");
        assert_eq!(details.kind, "configmaps");

        let invalid = api_error(
            cms.create(&PostParams::default(), &configmap("Bad_Name", &[], &[]))
                .await,
        );
        assert_eq!(invalid.code, 422);
        assert_eq!(invalid.reason, "Invalid");
        // One problem, reported once, worded as upstream words it.
        assert_eq!(
            invalid.message,
            "ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": \
             a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, \
             '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', \
             regex used for validation is \
             '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        );
        let causes = invalid.details.expect("details").causes;
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert_eq!(causes[0].field, "metadata.name");
        assert_eq!(causes[0].reason, "FieldValueInvalid");

        cms.create(&PostParams::default(), &configmap("dup", &[], &[]))
            .await
            .unwrap();
        let exists = api_error(
            cms.create(&PostParams::default(), &configmap("dup", &[], &[]))
                .await,
        );
        assert_eq!(exists.code, 409);
        assert_eq!(exists.reason, "AlreadyExists");
        assert_eq!(exists.message, "configmaps \"dup\" already exists");

        let in_missing_ns: Api<ConfigMap> = Api::namespaced(client, "no-such-namespace");
        let no_ns = api_error(
            in_missing_ns
                .create(&PostParams::default(), &configmap("x", &[], &[]))
                .await,
        );
        assert_eq!(no_ns.code, 404);
        assert_eq!(no_ns.reason, "NotFound");
        assert_eq!(no_ns.message, "namespaces \"no-such-namespace\" not found");
    })
    .await;
}

/// What a watcher has seen, counted by kind.
#[derive(Default, Debug)]
struct Seen {
    inits: AtomicUsize,
    init_dones: AtomicUsize,
    errors: AtomicUsize,
    deletes: Mutex<Vec<String>>,
}

/// Runs a reflector over ConfigMaps labelled `suite=watch` in the
/// background, with the default backoff so that it retries through an
/// outage, and returns its store.
fn reflect(api: Api<ConfigMap>, config: watcher::Config, seen: Arc<Seen>) -> Store<ConfigMap> {
    let (store, writer) = reflector::store();
    let stream =
        reflector::reflector(writer, watcher(api, config.labels("suite=watch"))).default_backoff();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init) => {
                    seen.inits.fetch_add(1, Ordering::SeqCst);
                }
                Ok(watcher::Event::InitDone) => {
                    seen.init_dones.fetch_add(1, Ordering::SeqCst);
                }
                Ok(watcher::Event::Delete(cm)) => {
                    seen.deletes.lock().unwrap().push(cm.name_any());
                }
                Ok(_) => {}
                Err(_) => {
                    seen.errors.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    });
    store
}

/// The store's contents: name → value of the `v` key.
fn contents(store: &Store<ConfigMap>) -> BTreeMap<String, String> {
    store
        .state()
        .iter()
        .map(|cm| {
            let v = cm.data.as_ref().and_then(|d| d.get("v")).cloned();
            (cm.name_any(), v.unwrap_or_default())
        })
        .collect()
}

/// Waits until the store holds exactly `want`.
async fn converges(store: &Store<ConfigMap>, want: &[(&str, &str)], when: &str) {
    let want: BTreeMap<String, String> = want
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let deadline = tokio::time::Instant::now() + CONVERGE;
    loop {
        let have = contents(store);
        if have == want {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("{when}: the reflector store never converged\n want {want:?}\n have {have:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn put(cms: &Api<ConfigMap>, name: &str, v: &str) {
    cms.create(
        &PostParams::default(),
        &configmap(name, &[("suite", "watch")], &[("v", v)]),
    )
    .await
    .unwrap_or_else(|e| panic!("create {name}: {e}"));
}

async fn set(cms: &Api<ConfigMap>, name: &str, v: &str) {
    cms.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": v}})),
    )
    .await
    .unwrap_or_else(|e| panic!("patch {name}: {e}"));
}

async fn remove(cms: &Api<ConfigMap>, name: &str) {
    cms.delete(name, &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("delete {name}: {e}"));
}

/// A list-then-watch reflector converges on creates, updates and deletes;
/// when the server stops it keeps the last state, and when the server comes
/// back on the same URL the watch resumes from its resourceVersion (no
/// relist, as against an upstream apiserver restarted on the same etcd) and
/// the store converges on the changes made after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reflector_converges_and_survives_a_restart() {
    let mut cluster = Cluster::sqlite_on_fixed_port();
    let cms: Api<ConfigMap> = Api::namespaced(client(&cluster).await, "default");
    let seen = Arc::new(Seen::default());
    within("reflector across a restart", async {
        put(&cms, "before", "0").await;
        // Not ours: another label, never in the store.
        cms.create(&PostParams::default(), &configmap("other", &[], &[]))
            .await
            .unwrap();

        let store = reflect(cms.clone(), watcher::Config::default(), seen.clone());
        tokio::time::timeout(CONVERGE, store.wait_until_ready())
            .await
            .expect("the reflector's initial list did not complete")
            .unwrap();
        converges(&store, &[("before", "0")], "after the initial list").await;

        put(&cms, "a", "1").await;
        put(&cms, "b", "1").await;
        set(&cms, "a", "2").await;
        remove(&cms, "before").await;
        set(&cms, "other", "ignored").await;
        converges(&store, &[("a", "2"), ("b", "1")], "before the restart").await;
        assert_eq!(seen.deletes.lock().unwrap().clone(), vec!["before"]);

        // Stop the server: the store keeps what it had, and the watcher
        // reports the broken watch and retries.
        tokio::task::block_in_place(|| cluster.stop());
        let deadline = tokio::time::Instant::now() + CONVERGE;
        while seen.errors.load(Ordering::SeqCst) == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the watcher never noticed the server was gone"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(contents(&store).len(), 2, "the store keeps its state");

        tokio::task::block_in_place(|| cluster.start());
        put(&cms, "c", "1").await;
        set(&cms, "b", "2").await;
        remove(&cms, "a").await;
        set(&cms, "c", "2").await;
        converges(&store, &[("b", "2"), ("c", "2")], "after the restart").await;
        assert_eq!(
            seen.deletes.lock().unwrap().clone(),
            vec!["before", "a"],
            "the delete after the restart arrived as a watch event"
        );
        assert_eq!(
            (
                seen.inits.load(Ordering::SeqCst),
                seen.init_dones.load(Ordering::SeqCst)
            ),
            (1, 1),
            "the watcher resumed from its resourceVersion without relisting"
        );
    })
    .await;
}

/// The same with streaming lists (`sendInitialEvents=true`): the initial
/// state arrives as watch events, ended by the initial-events-end bookmark,
/// and the store converges on later changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_list_reflector_converges() {
    let cluster = Cluster::sqlite();
    let cms: Api<ConfigMap> = Api::namespaced(client(&cluster).await, "default");
    let seen = Arc::new(Seen::default());
    within("streaming-list reflector", async {
        put(&cms, "x", "1").await;
        put(&cms, "y", "1").await;

        let store = reflect(
            cms.clone(),
            watcher::Config::default().streaming_lists(),
            seen.clone(),
        );
        // The store becomes ready only after the initial-events-end
        // bookmark, so this fails if the server never sends it.
        tokio::time::timeout(CONVERGE, store.wait_until_ready())
            .await
            .expect("the streaming list never ended: no initial-events-end bookmark?")
            .unwrap();
        assert_eq!(
            contents(&store),
            BTreeMap::from([("x".into(), "1".into()), ("y".into(), "1".into())]),
            "the store is complete when it says it is ready"
        );

        set(&cms, "x", "2").await;
        put(&cms, "z", "1").await;
        remove(&cms, "y").await;
        converges(&store, &[("x", "2"), ("z", "1")], "after changes").await;
        assert_eq!(seen.deletes.lock().unwrap().clone(), vec!["y"]);
        // kube-runtime's streaming list sends no Init; its InitDone comes
        // only from the initial-events-end bookmark.
        assert_eq!(seen.init_dones.load(Ordering::SeqCst), 1);
        assert_eq!(seen.errors.load(Ordering::SeqCst), 0);
    })
    .await;
}
