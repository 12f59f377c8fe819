//! Conversion between a resource's API shape and the shape it is stored in.
//!
//! Two resources may share one storage name (see
//! [`ResourceInfo::storage`]); then the objects are stored in one shape and
//! each resource converts on the way in and out. The only such pair today is
//! core/v1 `Event` (the stored shape) and events.k8s.io/v1 `Event`, whose
//! fields map one to one as upstream's conversion functions map them:
//!
//! | events.k8s.io/v1 | core/v1 |
//! |---|---|
//! | `regarding` | `involvedObject` |
//! | `note` | `message` |
//! | `reportingController` | `reportingComponent` |
//! | `deprecatedSource` | `source` |
//! | `deprecatedFirstTimestamp` | `firstTimestamp` |
//! | `deprecatedLastTimestamp` | `lastTimestamp` |
//! | `deprecatedCount` | `count` |
//!
//! Every other field (`metadata`, `eventTime`, `series`, `action`, `reason`,
//! `related`, `reportingInstance`, `type`) has the same name in both.

use serde_json::Value;

use crate::catalog::ResourceInfo;

/// events.k8s.io/v1 name, core/v1 name.
const EVENT_FIELDS: [(&str, &str); 7] = [
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// Whether objects of this resource are stored in another resource's shape.
pub fn needed(info: &ResourceInfo) -> bool {
    info.group == "events.k8s.io" && info.kind == "Event"
}

/// The stored shape of an object in `info`'s API shape.
pub fn to_storage(info: &ResourceInfo, mut obj: Value) -> Value {
    if needed(info) {
        rename(&mut obj, Direction::ToStorage);
        obj["apiVersion"] = Value::from("v1");
    }
    obj
}

/// `info`'s API shape of a stored object.
pub fn from_storage(info: &ResourceInfo, mut obj: Value) -> Value {
    if needed(info) {
        rename(&mut obj, Direction::FromStorage);
        obj["apiVersion"] = Value::from(info.group_version());
    }
    obj
}

#[derive(Clone, Copy)]
enum Direction {
    ToStorage,
    FromStorage,
}

/// Renames the fields of [`EVENT_FIELDS`] one way or the other.
fn rename(obj: &mut Value, direction: Direction) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    // Take every source field first, so that no rename overwrites a field
    // another rename has yet to move.
    let moved: Vec<(&str, Value)> = EVENT_FIELDS
        .iter()
        .filter_map(|&(api, stored)| {
            let (from, to) = match direction {
                Direction::ToStorage => (api, stored),
                Direction::FromStorage => (stored, api),
            };
            map.remove(from).map(|v| (to, v))
        })
        .collect();
    for (to, v) in moved {
        map.insert(to.to_string(), v);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::catalog;

    fn info(group: &str) -> &'static ResourceInfo {
        catalog::RESOURCES
            .iter()
            .find(|r| r.group == group && r.kind == "Event")
            .unwrap()
    }

    #[test]
    fn events_k8s_io_round_trips_through_core() {
        let api = json!({
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": "e", "namespace": "default"},
            "eventTime": "2026-11-22T00:00:00.000000Z",
            "regarding": {"kind": "Pod", "name": "p"},
            "note": "pulled",
            "reason": "Pulled",
            "type": "Normal",
            "action": "Pull",
            "reportingController": "kedge.io/agent",
            "reportingInstance": "node-1",
            "deprecatedCount": 3,
            "series": {"count": 2, "lastObservedTime": "2026-11-22T00:00:01.000000Z"},
        });
        let stored = to_storage(info("events.k8s.io"), api.clone());
        assert_eq!(stored["apiVersion"], "v1");
        assert_eq!(stored["involvedObject"]["name"], "p");
        assert_eq!(stored["message"], "pulled");
        assert_eq!(stored["reportingComponent"], "kedge.io/agent");
        assert_eq!(stored["count"], 3);
        assert_eq!(stored["series"]["count"], 2);
        assert!(stored.get("regarding").is_none() && stored.get("note").is_none());
        assert_eq!(from_storage(info("events.k8s.io"), stored), api);
    }

    #[test]
    fn core_events_are_stored_as_they_are() {
        let core = json!({"apiVersion": "v1", "kind": "Event", "message": "m"});
        assert!(!needed(info("")));
        assert_eq!(to_storage(info(""), core.clone()), core);
        assert_eq!(from_storage(info(""), core.clone()), core);
    }
}
