//! ControllerRevisions, the template history of DaemonSets and
//! StatefulSets, kept as upstream keeps them so that `kubectl rollout
//! history` and `kubectl rollout undo` work: each revision's data is the
//! strategic merge patch `{"spec":{"template":{…,"$patch":"replace"}}}`,
//! its name is `<owner>-<hash>`, and pods made from it carry the
//! `controller-revision-hash` label.
//!
//! [`choose`] is the decision (the owner's template and its revisions in,
//! the revision to create or renumber and the ones to delete out).

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::{Resource, ResourceExt};

use super::common;
use super::deployment::safe_encode;

/// The label with the revision a pod was made from.
pub const HASH_LABEL: &str = "controller-revision-hash";

/// The data of a revision of `template`.
pub fn data(template: &PodTemplateSpec) -> serde_json::Value {
    let mut t = serde_json::to_value(template).unwrap_or_default();
    if let Some(o) = t.as_object_mut() {
        o.insert("$patch".into(), "replace".into());
    }
    serde_json::json!({"spec": {"template": t}})
}

fn fnv32a(bytes: &[u8], mut h: u32) -> u32 {
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(16_777_619);
    }
    h
}

/// The hash of revision data, with the owner's collision count.
pub fn hash(data: &serde_json::Value, collision_count: Option<i32>) -> String {
    let mut h = fnv32a(data.to_string().as_bytes(), 2_166_136_261);
    if let Some(c) = collision_count {
        h = fnv32a(&(c as u32).to_le_bytes(), h);
    }
    safe_encode(&h.to_string())
}

/// What to do about the revisions of one owner.
#[derive(Debug, PartialEq)]
pub enum Choice {
    /// The current revision exists with this name and number.
    Current(String, i64),
    /// It exists but must take number `1` (a rollback to it).
    Renumber(String, i64),
    /// Create it.
    Create(Box<ControllerRevision>),
}

/// The revision for `owner`'s current `template` among `existing` (those it
/// controls).
pub fn choose<K: Resource<DynamicType = ()>>(
    owner: &K,
    template: &PodTemplateSpec,
    labels: &std::collections::BTreeMap<String, String>,
    collision_count: Option<i32>,
    existing: &[&ControllerRevision],
) -> Choice {
    let d = data(template);
    let max = existing.iter().map(|r| r.revision).max().unwrap_or(0);
    let same: Vec<&&ControllerRevision> = existing
        .iter()
        .filter(|r| r.data.as_ref().map(|x| &x.0) == Some(&d))
        .collect();
    if let Some(r) = same.iter().max_by_key(|r| r.revision) {
        if r.revision == max {
            return Choice::Current(r.name_any(), r.revision);
        }
        return Choice::Renumber(r.name_any(), max + 1);
    }
    let h = hash(&d, collision_count);
    let mut labels = labels.clone();
    labels.insert(HASH_LABEL.into(), h.clone());
    Choice::Create(Box::new(ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!("{}-{h}", owner.name_any())),
            namespace: owner.namespace(),
            labels: Some(labels),
            owner_references: Some(vec![common::owner_ref(owner)]),
            ..Default::default()
        },
        data: Some(RawExtension(d)),
        revision: max + 1,
    }))
}

/// The hash label value of a revision (its name's suffix when the label is
/// missing).
pub fn revision_hash(r: &ControllerRevision, owner: &str) -> String {
    r.labels().get(HASH_LABEL).cloned().unwrap_or_else(|| {
        r.name_any()
            .trim_start_matches(&format!("{owner}-"))
            .to_string()
    })
}

/// Revisions beyond `limit` that no live pod uses, oldest first, never the
/// current one.
pub fn to_delete(
    existing: &[&ControllerRevision],
    current: &str,
    in_use: &BTreeSet<String>,
    owner: &str,
    limit: i32,
) -> Vec<String> {
    let mut old: Vec<&&ControllerRevision> = existing
        .iter()
        .filter(|r| r.name_any() != current && !in_use.contains(&revision_hash(r, owner)))
        .collect();
    let limit = limit.max(0) as usize;
    if old.len() <= limit {
        return Vec::new();
    }
    old.sort_by_key(|r| r.revision);
    let n = old.len() - limit;
    old.into_iter().take(n).map(|r| r.name_any()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DaemonSet;

    fn owner() -> DaemonSet {
        serde_json::from_value(
            serde_json::json!({"metadata": {"name": "ds", "namespace": "n", "uid": "u"}}),
        )
        .unwrap()
    }

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(
            serde_json::json!({"spec": {"containers": [{"name": "c", "image": image}]}}),
        )
        .unwrap()
    }

    fn created(c: Choice) -> ControllerRevision {
        match c {
            Choice::Create(r) => *r,
            other => panic!("expected a creation, got {other:?}"),
        }
    }

    #[test]
    fn create_find_and_renumber() {
        let labels = Default::default();
        let r1 = created(choose(&owner(), &template("a"), &labels, None, &[]));
        assert_eq!(r1.revision, 1);
        assert!(r1.name_any().starts_with("ds-"));
        assert_eq!(
            r1.data.as_ref().unwrap().0["spec"]["template"]["$patch"],
            "replace"
        );
        assert_eq!(
            choose(&owner(), &template("a"), &labels, None, &[&r1]),
            Choice::Current(r1.name_any(), 1)
        );
        let r2 = created(choose(&owner(), &template("b"), &labels, None, &[&r1]));
        assert_eq!(r2.revision, 2);
        assert_ne!(r1.name_any(), r2.name_any());
        // Back to a: a rollback renumbers revision 1 to 3.
        assert_eq!(
            choose(&owner(), &template("a"), &labels, None, &[&r1, &r2]),
            Choice::Renumber(r1.name_any(), 3)
        );
    }

    #[test]
    fn history_keeps_the_limit_and_what_pods_use() {
        let labels = Default::default();
        let mut revs = Vec::new();
        for (i, img) in ["a", "b", "c", "d"].iter().enumerate() {
            let mut r = created(choose(&owner(), &template(img), &labels, None, &[]));
            r.revision = i as i64 + 1;
            revs.push(r);
        }
        let refs: Vec<&ControllerRevision> = revs.iter().collect();
        let current = revs[3].name_any();
        let in_use: BTreeSet<String> = [revision_hash(&revs[0], "ds")].into();
        assert_eq!(
            to_delete(&refs, &current, &in_use, "ds", 1),
            vec![revs[1].name_any()]
        );
    }
}
