//! Table tests of the Deployment decision: fenceposts, hashing, rolling
//! and Recreate rollouts simulated to the end, history cleanup, conditions.

use super::*;
use serde_json::json;

fn deploy(replicas: i32, strategy: serde_json::Value) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "d1", "generation": 2},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": strategy,
            "progressDeadlineSeconds": 600,
            "revisionHistoryLimit": 2,
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "v2"}]}}
        },
        "status": {"observedGeneration": 2}
    }))
    .unwrap()
}

fn rolling(surge: serde_json::Value, unavailable: serde_json::Value) -> serde_json::Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}})
}

fn rs(name: &str, rev: i64, spec: i32, available: i32, created: &str) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": name, "uid": name, "annotations": {REVISION: rev.to_string()}, "creationTimestamp": created},
        "spec": {"replicas": spec, "selector": {"matchLabels": {"app": "web"}}},
        "status": {"replicas": spec, "readyReplicas": available, "availableReplicas": available}
    }))
    .unwrap()
}

fn now() -> jiff::Timestamp {
    "2026-01-01T01:00:00Z".parse().unwrap()
}

#[test]
fn fenceposts_round_as_upstream() {
    let cases = [
        (10, json!("25%"), json!("25%"), (3, 2)),
        (3, json!("25%"), json!("25%"), (1, 0)),
        (1, json!("25%"), json!("25%"), (1, 0)),
        (10, json!(0), json!(0), (0, 1)),
        (10, json!(2), json!("50%"), (2, 5)),
        (5, json!("10%"), json!("10%"), (1, 0)),
    ];
    for (n, s, u, want) in cases {
        assert_eq!(
            fenceposts(&deploy(n, rolling(s.clone(), u.clone()))),
            want,
            "{n} {s} {u}"
        );
    }
    assert_eq!(max_unavailable(&deploy(3, json!({"type": "Recreate"}))), 0);
}

#[test]
fn hash_is_stable_and_moves_with_collisions() {
    let d = deploy(3, rolling(json!(1), json!(0)));
    let t = &d.spec.as_ref().unwrap().template;
    let h = template_hash(t, None);
    assert_eq!(h, template_hash(t, None));
    assert_ne!(h, template_hash(t, Some(1)));
    assert!(h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    assert_eq!(safe_encode("0123"), "4567");
    let rs = new_replicaset(&d, 1, 0);
    assert_eq!(rs.name_any(), format!("web-{h}"));
    assert_eq!(rs.labels().get(HASH_LABEL), Some(&h));
    let tmpl = rs.spec.as_ref().unwrap().template.as_ref().unwrap();
    assert!(equal_ignore_hash(tmpl, t));
    assert_eq!(
        rs.annotations().get(REVISION).map(String::as_str),
        Some("1")
    );
    assert_eq!(
        rs.metadata.owner_references.as_ref().unwrap()[0].kind,
        "Deployment"
    );
}

/// Runs a rollout to the end, with pods that become available at once,
/// checking maxSurge and maxUnavailable at each step.
fn simulate(d: &Deployment, olds: Vec<ReplicaSet>) -> Vec<Step> {
    let want = desired(d);
    let (surge, _) = fenceposts(d);
    let unavail = max_unavailable(d);
    let mut olds = olds;
    let mut new: Option<ReplicaSet> = None;
    let mut steps = Vec::new();
    for _ in 0..100 {
        let old_refs: Vec<&ReplicaSet> = olds.iter().collect();
        let step = rollout(d, new.as_ref(), &old_refs, false);
        steps.push(step.clone());
        match step {
            Step::Create(n) => new = Some(rs("new", 9, n, n, "2026-01-01T00:30:00Z")),
            Step::Scale(scales) => {
                for (name, _, to) in scales {
                    let r = if name == "new" {
                        new.as_mut().unwrap()
                    } else {
                        olds.iter_mut().find(|r| r.name_any() == name).unwrap()
                    };
                    *r = rs(&name, 1, to, to, "2026-01-01T00:00:00Z");
                }
            }
            Step::Cleanup(_) | Step::Wait => break,
        }
        let total: i32 = olds.iter().chain(new.iter()).map(replicas).sum();
        let avail: i32 = olds.iter().chain(new.iter()).map(available).sum();
        assert!(total <= want + surge, "surge exceeded: {total}");
        assert!(avail >= want - unavail, "too many unavailable: {avail}");
    }
    assert_eq!(new.as_ref().map(replicas), Some(want));
    assert!(olds.iter().all(|r| replicas(r) == 0));
    steps
}

#[test]
fn rolling_update_respects_surge_and_unavailable() {
    for (n, s, u) in [
        (3, json!(1), json!(0)),
        (10, json!("25%"), json!("25%")),
        (4, json!(0), json!(1)),
        (5, json!("100%"), json!(0)),
        (1, json!(0), json!(0)),
    ] {
        let d = deploy(n, rolling(s, u));
        let old = rs("old", 1, n, n, "2026-01-01T00:00:00Z");
        let steps = simulate(&d, vec![old]);
        assert!(matches!(steps[0], Step::Create(_)));
    }
}

#[test]
fn first_rollout_creates_all_at_once() {
    let d = deploy(3, rolling(json!("25%"), json!("25%")));
    assert_eq!(rollout(&d, None, &[], false), Step::Create(3));
}

#[test]
fn unhealthy_old_pods_are_scaled_down_first() {
    // Old ReplicaSet with 3 replicas, none available, new one stuck at 1 of 1
    // unavailable: maxUnavailable lets the broken old pods go.
    let d = deploy(3, rolling(json!(1), json!(1)));
    let old = rs("old", 1, 3, 0, "2026-01-01T00:00:00Z");
    let new = rs("new", 2, 1, 0, "2026-01-01T00:30:00Z");
    let step = rollout(&d, Some(&new), &[&old], false);
    assert_eq!(step, Step::Scale(vec![("old".into(), 3, 2)]));
}

#[test]
fn recreate_stops_old_pods_first() {
    let d = deploy(3, json!({"type": "Recreate"}));
    let old = rs("old", 1, 3, 3, "2026-01-01T00:00:00Z");
    assert_eq!(
        rollout(&d, None, &[&old], true),
        Step::Scale(vec![("old".into(), 3, 0)])
    );
    let old = rs("old", 1, 0, 0, "2026-01-01T00:00:00Z");
    assert_eq!(rollout(&d, None, &[&old], true), Step::Wait);
    assert_eq!(rollout(&d, None, &[&old], false), Step::Create(3));
}

#[test]
fn paused_only_scales() {
    let mut d = deploy(5, rolling(json!(1), json!(0)));
    d.spec.as_mut().unwrap().paused = Some(true);
    assert_eq!(rollout(&d, None, &[], false), Step::Wait);
    let old = rs("old", 1, 3, 3, "2026-01-01T00:00:00Z");
    assert_eq!(
        rollout(&d, None, &[&old], false),
        Step::Scale(vec![("old".into(), 3, 5)])
    );
}

#[test]
fn history_beyond_the_limit_is_deleted_oldest_revision_first() {
    let d = deploy(2, rolling(json!(1), json!(0)));
    let new = rs("new", 5, 2, 2, "2026-01-01T00:40:00Z");
    let mut new = new;
    new.status.as_mut().unwrap().replicas = 2;
    let olds: Vec<ReplicaSet> = (1..=4)
        .map(|i| rs(&format!("r{i}"), i, 0, 0, "2026-01-01T00:00:00Z"))
        .collect();
    let refs: Vec<&ReplicaSet> = olds.iter().collect();
    let mut dd = d.clone();
    dd.status = Some(DeploymentStatus {
        observed_generation: Some(2),
        ..Default::default()
    });
    assert_eq!(
        rollout(&dd, Some(&new), &refs, false),
        Step::Cleanup(vec!["r1".into(), "r2".into()])
    );
}

#[test]
fn undo_finds_the_old_replicaset_as_new() {
    let d = deploy(2, rolling(json!(1), json!(0)));
    let mut old = new_replicaset(&d, 1, 0);
    old.metadata.uid = Some("x".into());
    let mut other = deploy(2, rolling(json!(1), json!(0)));
    other
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .containers[0]
        .image = Some("v3".into());
    let current = new_replicaset(&other, 2, 2);
    let found = find_new(&d, &[&current, &old]);
    assert_eq!(found.map(|r| r.name_any()), Some(old.name_any()));
}

#[test]
fn conditions_follow_the_rollout() {
    let d = deploy(2, rolling(json!(1), json!(0)));
    let new = rs("new", 1, 2, 0, "2026-01-01T00:30:00Z");
    let (s, wait) = status(&d, Some(&new), &[&new], NewRs::Created, now());
    let prog = condition(&s, "Progressing").unwrap();
    assert_eq!(prog.reason.as_deref(), Some("NewReplicaSetCreated"));
    assert_eq!(
        prog.message.as_deref(),
        Some("Created new replica set \"new\"")
    );
    assert_eq!(condition(&s, "Available").unwrap().status, "False");
    assert_eq!(wait, Some(Duration::from_secs(600)));

    // Past the deadline with nothing moving: ProgressDeadlineExceeded.
    let mut stuck = d.clone();
    stuck.status = Some(s.clone());
    let later = now() + jiff::SignedDuration::from_secs(601);
    let (s2, _) = status(&stuck, Some(&new), &[&new], NewRs::Found, later);
    let prog = condition(&s2, "Progressing").unwrap();
    assert_eq!(prog.reason.as_deref(), Some("ProgressDeadlineExceeded"));
    assert_eq!(prog.status, "False");

    // Pods become available: complete.
    let done = rs("new", 1, 2, 2, "2026-01-01T00:30:00Z");
    let (s3, _) = status(&stuck, Some(&done), &[&done], NewRs::Found, later);
    assert!(complete(&stuck, &s3));
    let prog = condition(&s3, "Progressing").unwrap();
    assert_eq!(prog.reason.as_deref(), Some("NewReplicaSetAvailable"));
    assert_eq!(
        condition(&s3, "Available").unwrap().reason.as_deref(),
        Some("MinimumReplicasAvailable")
    );
    assert_eq!(s3.updated_replicas, Some(2));
    assert_eq!(s3.unavailable_replicas, Some(0));

    // Progress in the middle refreshes lastUpdateTime.
    let half = rs("new", 1, 2, 1, "2026-01-01T00:30:00Z");
    let (s4, _) = status(&stuck, Some(&half), &[&half], NewRs::Found, now());
    assert_eq!(
        condition(&s4, "Progressing").unwrap().reason.as_deref(),
        Some("ReplicaSetUpdated")
    );
}

#[test]
fn paused_condition() {
    let mut d = deploy(2, rolling(json!(1), json!(0)));
    d.spec.as_mut().unwrap().paused = Some(true);
    let (s, _) = status(&d, None, &[], NewRs::None, now());
    assert_eq!(
        condition(&s, "Progressing").unwrap().reason.as_deref(),
        Some("DeploymentPaused")
    );
}
