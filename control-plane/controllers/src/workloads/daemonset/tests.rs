//! Table tests of the DaemonSet decision: node selection, taints and the
//! default tolerations, rolling updates with maxUnavailable and maxSurge.

use super::*;
use k8s_openapi::api::core::v1::Taint;
use serde_json::json;

fn ds(strategy: serde_json::Value, node_selector: serde_json::Value) -> DaemonSet {
    serde_json::from_value(json!({
        "metadata": {"name": "agent", "namespace": "kube-system", "uid": "ds1", "generation": 1},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "updateStrategy": strategy,
            "template": {"metadata": {"labels": {"app": "agent"}},
                         "spec": {"nodeSelector": node_selector, "containers": [{"name": "c", "image": "i"}]}}
        }
    }))
    .unwrap()
}

fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Node {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}}),
    )
    .unwrap()
}

fn pod(name: &str, node: &str, hash: &str, ready: bool) -> Pod {
    let conds = if ready {
        json!([{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}])
    } else {
        json!([])
    };
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "agent", HASH_LABEL: hash}, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"nodeName": node, "containers": []},
        "status": {"phase": "Running", "conditions": conds}
    }))
    .unwrap()
}

fn now() -> jiff::Timestamp {
    "2026-01-01T01:00:00Z".parse().unwrap()
}

#[test]
fn one_pod_per_matching_node() {
    let d = ds(
        json!({"type": "RollingUpdate"}),
        json!({"kedge.io/profile": "rpi"}),
    );
    let n1 = node("n1", json!({"kedge.io/profile": "rpi"}), json!([]));
    let n2 = node("n2", json!({"kedge.io/profile": "nuc"}), json!([]));
    let n3 = node(
        "n3",
        json!({"kedge.io/profile": "rpi"}),
        json!([{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]),
    );
    let n4 = node(
        "n4",
        json!({"kedge.io/profile": "rpi"}),
        json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}, {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]),
    );
    let p = plan(&d, &[&n1, &n2, &n3, &n4], &[], "h1", now());
    assert_eq!(p.create, vec!["n1".to_string(), "n4".to_string()]);
    assert_eq!(p.status.desired_number_scheduled, 2);
    assert_eq!(p.status.current_number_scheduled, 0);
}

#[test]
fn pods_on_nodes_that_stop_matching_go() {
    let d = ds(json!({"type": "RollingUpdate"}), json!({"role": "edge"}));
    let n1 = node("n1", json!({}), json!([]));
    let gone = pod("p-gone", "n9", "h1", true);
    let mis = pod("p-mis", "n1", "h1", true);
    let p = plan(&d, &[&n1], &[&gone, &mis], "h1", now());
    assert_eq!(p.delete, vec!["p-gone".to_string(), "p-mis".to_string()]);
    assert_eq!(p.status.number_misscheduled, 1);
}

#[test]
fn noexecute_taint_evicts_but_noschedule_keeps() {
    let d = ds(json!({"type": "RollingUpdate"}), json!({}));
    let ns = node(
        "ns",
        json!({}),
        json!([{"key": "k", "effect": "NoSchedule"}]),
    );
    let ne = node(
        "ne",
        json!({}),
        json!([{"key": "k", "effect": "NoExecute"}]),
    );
    let a = pod("a", "ns", "h1", true);
    let b = pod("b", "ne", "h1", true);
    let p = plan(&d, &[&ns, &ne], &[&a, &b], "h1", now());
    assert_eq!(p.delete, vec!["b".to_string()]);
    assert_eq!(p.status.desired_number_scheduled, 1);
}

#[test]
fn rolling_update_respects_max_unavailable() {
    let d = ds(
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}}),
        json!({}),
    );
    let nodes: Vec<Node> = (0..4)
        .map(|i| node(&format!("n{i}"), json!({}), json!([])))
        .collect();
    let pods: Vec<Pod> = (0..4)
        .map(|i| pod(&format!("p{i}"), &format!("n{i}"), "old", true))
        .collect();
    let nr: Vec<&Node> = nodes.iter().collect();
    let pr: Vec<&Pod> = pods.iter().collect();
    let p = plan(&d, &nr, &pr, "new", now());
    assert_eq!(p.delete.len(), 2);
    assert_eq!(p.status.updated_number_scheduled, None);
    // One node already replaced but not ready yet: one more may go.
    let mut pods2 = pods.clone();
    pods2[0] = pod("p0-new", "n0", "new", false);
    let pr: Vec<&Pod> = pods2.iter().collect();
    let p = plan(&d, &nr, &pr, "new", now());
    assert_eq!(p.delete.len(), 1);
    assert_eq!(p.status.updated_number_scheduled, Some(1));
    assert_eq!(p.status.number_ready, 3);
}

#[test]
fn rolling_update_with_surge_creates_before_deleting() {
    let d = ds(
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}),
        json!({}),
    );
    let n0 = node("n0", json!({}), json!([]));
    let n1 = node("n1", json!({}), json!([]));
    let a = pod("a", "n0", "old", true);
    let b = pod("b", "n1", "old", true);
    let p = plan(&d, &[&n0, &n1], &[&a, &b], "new", now());
    assert_eq!(p.create, vec!["n0".to_string()]);
    assert!(p.delete.is_empty());
    let a2 = pod("a2", "n0", "new", true);
    let p = plan(&d, &[&n0, &n1], &[&a, &a2, &b], "new", now());
    assert_eq!(p.delete, vec!["a".to_string()]);
    assert_eq!(p.create, vec!["n1".to_string()]);
}

#[test]
fn on_delete_leaves_old_pods() {
    let d = ds(json!({"type": "OnDelete"}), json!({}));
    let n0 = node("n0", json!({}), json!([]));
    let a = pod("a", "n0", "old", true);
    let p = plan(&d, &[&n0], &[&a], "new", now());
    assert!(p.delete.is_empty() && p.create.is_empty());
}

#[test]
fn daemon_pods_are_pinned_by_affinity_and_tolerate_defaults() {
    let d = ds(json!({"type": "RollingUpdate"}), json!({}));
    let pod = daemon_pod(&d, "n7", "h1");
    assert_eq!(pod_node(&pod).as_deref(), Some("n7"));
    assert!(pod.spec.as_ref().unwrap().node_name.is_none());
    assert_eq!(pod.labels().get(HASH_LABEL).map(String::as_str), Some("h1"));
    let tols = pod.spec.as_ref().unwrap().tolerations.clone().unwrap();
    assert!(tols.iter().any(
        |t| t.key.as_deref() == Some("node.kubernetes.io/unreachable")
            && t.effect.as_deref() == Some("NoExecute")
    ));
    assert_eq!(tols.len(), 6);
}

#[test]
fn toleration_matching() {
    let taint = Taint {
        key: "k".into(),
        value: Some("v".into()),
        effect: "NoSchedule".into(),
        time_added: None,
    };
    let t = |k: Option<&str>, op: &str, v: Option<&str>, e: Option<&str>| Toleration {
        key: k.map(Into::into),
        operator: Some(op.into()),
        value: v.map(Into::into),
        effect: e.map(Into::into),
        toleration_seconds: None,
    };
    assert!(tolerates(
        &t(Some("k"), "Equal", Some("v"), Some("NoSchedule")),
        &taint
    ));
    assert!(!tolerates(&t(Some("k"), "Equal", Some("w"), None), &taint));
    assert!(tolerates(&t(None, "Exists", None, None), &taint));
    assert!(!tolerates(
        &t(Some("k"), "Exists", None, Some("NoExecute")),
        &taint
    ));
}

#[test]
fn required_node_affinity_terms() {
    let spec: PodSpec = serde_json::from_value(json!({
        "containers": [],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "arch", "operator": "In", "values": ["arm64"]}, {"key": "mem", "operator": "Gt", "values": ["1024"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["special"]}]}
        ]}}}
    }))
    .unwrap();
    assert!(node_selected(
        &spec,
        &node("a", json!({"arch": "arm64", "mem": "2048"}), json!([]))
    ));
    assert!(!node_selected(
        &spec,
        &node("b", json!({"arch": "arm64", "mem": "512"}), json!([]))
    ));
    assert!(node_selected(&spec, &node("special", json!({}), json!([]))));
}
