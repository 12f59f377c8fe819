//! Tables: what `kubectl get` prints, as the server's `meta.k8s.io/v1`
//! `Table` carries it.
//!
//! kubectl asks for `application/json;as=Table;g=meta.k8s.io;v=v1` and
//! prints the column definitions and cells it gets back. Upstream builds
//! them in `pkg/printers/internalversion/printers.go`; [`columns`] and
//! [`row`] give the same columns, cells and formatting for the kinds kedge
//! serves. Like upstream's server, every row carries the wide (priority 1)
//! cells too; kubectl drops them unless `-o wide`.
//!
//! Kinds without a printer get upstream's default table: `Name` and
//! `Created At`.
//!
//! The current time is passed in ([`row`]'s `now`), never read here.

use std::time::SystemTime;

use serde_json::Value;

mod docs;
mod printers;
pub mod time;

use docs::*;

/// One column of a table: `meta.k8s.io/v1` `TableColumnDefinition`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    /// The header; kubectl upper-cases it (`Up-to-date` is `UP-TO-DATE`).
    pub name: &'static str,
    /// An OpenAPI type: `string`, `integer`, `boolean`, `date`.
    pub type_: &'static str,
    /// An OpenAPI format; `name` marks the object's name column.
    pub format: &'static str,
    pub description: &'static str,
    /// 0 is always shown; 1 only with `-o wide`.
    pub priority: i32,
}

impl Column {
    /// The column as JSON, as it appears in a Table's `columnDefinitions`.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "name": self.name,
            "type": self.type_,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

const fn col(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 0,
    }
}

const fn wide(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 1,
    }
}

const NAME: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    description: OBJ_NAME,
    priority: 0,
};
const AGE: Column = col("Age", "string", OBJ_CREATED);
const CONTAINERS: Column = wide(
    "Containers",
    "string",
    "Names of each container in the template.",
);
const IMAGES: Column = wide(
    "Images",
    "string",
    "Images referenced by each container in the template.",
);

const POD: &[Column] = &[
    NAME,
    col(
        "Ready",
        "string",
        "The aggregate readiness state of this pod for accepting traffic.",
    ),
    col(
        "Status",
        "string",
        "The aggregate status of the containers in this pod.",
    ),
    col(
        "Restarts",
        "string",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE,
    wide("IP", "string", POD_IP),
    wide("Node", "string", POD_NODE),
    wide("Nominated Node", "string", POD_NOMINATED),
    wide("Readiness Gates", "string", POD_GATES),
];

const DEPLOYMENT: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    col("Up-to-date", "string", DEPLOY_UPDATED),
    col("Available", "string", DEPLOY_AVAILABLE),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", "string", DEPLOY_SELECTOR),
];

const REPLICA_SET: &[Column] = &[
    NAME,
    col("Desired", "integer", RS_REPLICAS),
    col("Current", "integer", RS_STATUS_REPLICAS),
    col("Ready", "integer", RS_READY),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", "string", RS_SELECTOR),
];

const DAEMON_SET: &[Column] = &[
    NAME,
    col("Desired", "integer", DS_DESIRED),
    col("Current", "integer", DS_CURRENT),
    col("Ready", "integer", DS_READY),
    col("Up-to-date", "integer", DS_UPDATED),
    col("Available", "integer", DS_AVAILABLE),
    col("Node Selector", "string", POD_NODE_SELECTOR),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", "string", DS_SELECTOR),
];

const STATEFUL_SET: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    AGE,
    CONTAINERS,
    IMAGES,
];

const JOB: &[Column] = &[
    NAME,
    col("Status", "string", "Status of the job."),
    col("Completions", "string", JOB_SUCCEEDED),
    col("Duration", "string", "Time required to complete the job."),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", "string", JOB_SELECTOR),
];

const CRON_JOB: &[Column] = &[
    NAME,
    col("Schedule", "string", CJ_SCHEDULE),
    col("Timezone", "string", CJ_TIMEZONE),
    col("Suspend", "boolean", CJ_SUSPEND),
    col("Active", "integer", CJ_ACTIVE),
    col("Last Schedule", "string", CJ_LAST),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", "string", JOB_SELECTOR),
];

const SERVICE: &[Column] = &[
    NAME,
    col("Type", "string", SVC_TYPE),
    col("Cluster-IP", "string", SVC_CLUSTER_IP),
    col("External-IP", "string", SVC_EXTERNAL_IPS),
    col("Port(s)", "string", SVC_PORTS),
    AGE,
    wide("Selector", "string", SVC_SELECTOR),
];

const ENDPOINTS: &[Column] = &[NAME, col("Endpoints", "string", EP_SUBSETS), AGE];

const NODE: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the node"),
    col("Roles", "string", "The roles of the node"),
    AGE,
    col("Version", "string", NODE_KUBELET),
    wide("Internal-IP", "string", NODE_ADDRESSES),
    wide("External-IP", "string", NODE_ADDRESSES),
    wide("OS-Image", "string", NODE_OS),
    wide("Kernel-Version", "string", NODE_KERNEL),
    wide("Container-Runtime", "string", NODE_RUNTIME),
];

const EVENT: &[Column] = &[
    col("Last Seen", "string", EV_LAST),
    col("Type", "string", EV_TYPE),
    col("Reason", "string", EV_REASON),
    col("Object", "string", EV_OBJECT),
    wide("Subobject", "string", EV_FIELD_PATH),
    wide("Source", "string", EV_SOURCE),
    col("Message", "string", EV_MESSAGE),
    wide("First Seen", "string", EV_FIRST),
    wide("Count", "string", EV_COUNT),
    Column {
        name: "Name",
        type_: "string",
        format: "name",
        description: OBJ_NAME,
        priority: 1,
    },
];

const NAMESPACE: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the namespace"),
    AGE,
];

const SECRET: &[Column] = &[
    NAME,
    col("Type", "string", SECRET_TYPE),
    col("Data", "string", SECRET_DATA),
    AGE,
];

const SERVICE_ACCOUNT: &[Column] = &[NAME, col("Secrets", "string", SA_SECRETS), AGE];

const CONFIG_MAP: &[Column] = &[NAME, col("Data", "string", CM_DATA), AGE];

const LEASE: &[Column] = &[NAME, col("Holder", "string", LEASE_HOLDER), AGE];

const ENDPOINT_SLICE: &[Column] = &[
    NAME,
    col("AddressType", "string", SLICE_ADDRESS_TYPE),
    col("Ports", "string", SLICE_PORTS),
    col("Endpoints", "string", SLICE_ENDPOINTS),
    AGE,
];

const CONTROLLER_REVISION: &[Column] = &[
    NAME,
    col("Controller", "string", "Controller of the object"),
    col("Revision", "string", CR_REVISION),
    AGE,
];

/// Upstream's default table, for kinds without a printer.
const DEFAULT: &[Column] = &[NAME, col("Created At", "date", OBJ_CREATED)];

/// The columns of `kind` in `group`, in order.
pub fn columns(group: &str, kind: &str) -> &'static [Column] {
    match (group, kind) {
        ("", "Pod") => POD,
        ("", "Service") => SERVICE,
        ("", "Endpoints") => ENDPOINTS,
        ("", "Node") => NODE,
        ("", "Namespace") => NAMESPACE,
        ("", "ConfigMap") => CONFIG_MAP,
        ("", "Secret") => SECRET,
        ("", "ServiceAccount") => SERVICE_ACCOUNT,
        ("", "Event") | ("events.k8s.io", "Event") => EVENT,
        ("apps", "Deployment") => DEPLOYMENT,
        ("apps", "ReplicaSet") => REPLICA_SET,
        ("apps", "DaemonSet") => DAEMON_SET,
        ("apps", "StatefulSet") => STATEFUL_SET,
        ("apps", "ControllerRevision") => CONTROLLER_REVISION,
        ("batch", "Job") => JOB,
        ("batch", "CronJob") => CRON_JOB,
        ("coordination.k8s.io", "Lease") => LEASE,
        ("discovery.k8s.io", "EndpointSlice") => ENDPOINT_SLICE,
        _ => DEFAULT,
    }
}

/// The cells of `obj`'s row, one per [`columns`] entry (wide ones
/// included), as upstream's printers compute them at time `now`.
pub fn row(group: &str, kind: &str, obj: &Value, now: SystemTime) -> Vec<Value> {
    let now = time::unix_nanos(now);
    match (group, kind) {
        ("", "Pod") => printers::pod(obj, now),
        ("", "Service") => printers::service(obj, now),
        ("", "Endpoints") => printers::endpoints(obj, now),
        ("", "Node") => printers::node(obj, now),
        ("", "Namespace") => printers::namespace(obj, now),
        ("", "ConfigMap") => printers::config_map(obj, now),
        ("", "Secret") => printers::secret(obj, now),
        ("", "ServiceAccount") => printers::service_account(obj, now),
        ("", "Event") => printers::event(obj, now, false),
        ("events.k8s.io", "Event") => printers::event(obj, now, true),
        ("apps", "Deployment") => printers::deployment(obj, now),
        ("apps", "ReplicaSet") => printers::replica_set(obj, now),
        ("apps", "DaemonSet") => printers::daemon_set(obj, now),
        ("apps", "StatefulSet") => printers::stateful_set(obj, now),
        ("apps", "ControllerRevision") => printers::controller_revision(obj, now),
        ("batch", "Job") => printers::job(obj, now),
        ("batch", "CronJob") => printers::cron_job(obj, now),
        ("coordination.k8s.io", "Lease") => printers::lease(obj, now),
        ("discovery.k8s.io", "EndpointSlice") => printers::endpoint_slice(obj, now),
        _ => printers::default(obj),
    }
}

/// The row's `conditions`: upstream marks succeeded and failed pods
/// `Completed`. Empty for everything else.
pub fn row_conditions(group: &str, kind: &str, obj: &Value) -> Vec<Value> {
    if (group, kind) != ("", "Pod") {
        return Vec::new();
    }
    let phase = obj.pointer("/status/phase").and_then(Value::as_str);
    let (reason, message) = match phase {
        Some("Succeeded") => ("Succeeded", "The pod has completed successfully."),
        Some("Failed") => ("Failed", "The pod failed."),
        _ => return Vec::new(),
    };
    vec![serde_json::json!({
        "type": "Completed",
        "status": "True",
        "reason": reason,
        "message": message,
    })]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;
    use serde_json::json;

    #[test]
    fn every_kind_has_one_cell_per_column() {
        let objs = [
            json!({}),
            json!(null),
            json!({"metadata": {"name": "x", "creationTimestamp": "2024-01-01T00:00:00Z"},
                "spec": {"containers": [{"name": "a", "image": "b"}], "ports": [{"port": 80}],
                    "template": {"spec": {"containers": [{"name": "a", "image": "b"}]}}},
                "status": {"containerStatuses": [{"name": "a", "ready": true, "restartCount": 1,
                    "state": {"running": {}}}]}}),
            json!({"spec": 5, "status": [], "subsets": "x", "endpoints": [1], "ports": [null]}),
        ];
        for r in catalog::RESOURCES {
            let cols = columns(r.group, r.kind);
            for o in &objs {
                let cells = row(r.group, r.kind, o, SystemTime::UNIX_EPOCH);
                assert_eq!(cells.len(), cols.len(), "{}", r.kind);
            }
        }
        let cells = row(
            "example.com",
            "Widget",
            &json!({"metadata": {"name": "w"}}),
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(cells, vec![json!("w"), json!("0001-01-01T00:00:00Z")]);
        assert_eq!(columns("example.com", "Widget")[1].name, "Created At");
    }

    #[test]
    fn column_json() {
        let c = columns("", "Pod");
        assert_eq!(c[0].to_json()["format"], "name");
        assert_eq!(c[5].to_json()["priority"], 1);
        let names: Vec<&str> = c.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            vec![
                "Name",
                "Ready",
                "Status",
                "Restarts",
                "Age",
                "IP",
                "Node",
                "Nominated Node",
                "Readiness Gates"
            ]
        );
        assert!(
            c[0].description
                .starts_with("Name must be unique within a namespace.")
        );
    }

    #[test]
    fn completed_pods_are_marked() {
        let p = json!({"status": {"phase": "Succeeded"}});
        assert_eq!(row_conditions("", "Pod", &p)[0]["reason"], "Succeeded");
        assert!(row_conditions("", "Pod", &json!({"status": {"phase": "Running"}})).is_empty());
        assert!(row_conditions("apps", "Deployment", &p).is_empty());
    }
}
