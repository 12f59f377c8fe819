//! Round trips against an independent encoder: objects built as `k8s-pb`
//! prost structs, encoded by prost, wrapped in the envelope, decoded here,
//! and compared with JSON written by hand from the Go types.
//!
//! prost writes only the fields that are set, where Go writes every
//! non-pointer field; so these also check that absent fields come out as
//! Go's zero values (`creationTimestamp: null`, `status: {}`,
//! `targetPort: 0`), and that set zero values stay only for pointers.

use std::collections::BTreeMap;

use k8s_pb::api::core::v1 as core;
use k8s_pb::api::{apps, authentication, autoscaling, batch, coordination, discovery, events};
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{RawExtension, TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use kedge_k8s_protobuf::decode;
use prost::Message;
use serde_json::{Value, json};

const SECONDS: i64 = 1_767_323_045; // 2026-01-02T03:04:05Z

fn wrap(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: s(api_version),
            kind: s(kind),
        }),
        raw: Some(raw),
        content_encoding: None,
        content_type: None,
    };
    let mut body = b"k8s\x00".to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

fn check(api_version: &str, kind: &str, object: &impl Message, mut expected: Value) {
    expected["apiVersion"] = json!(api_version);
    expected["kind"] = json!(kind);
    let decoded = decode(&wrap(api_version, kind, object.encode_to_vec())).unwrap();
    assert_eq!(decoded, expected, "{kind}:\n{decoded:#}");
}

fn s(text: &str) -> Option<String> {
    Some(text.to_string())
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|i| i.to_string()).collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), quantity(v)))
        .collect()
}

fn quantity(text: &str) -> Quantity {
    Quantity { string: s(text) }
}

fn int(value: i32) -> IntOrString {
    IntOrString {
        r#type: Some(0),
        int_val: Some(value),
        str_val: None,
    }
}

fn named(name: &str) -> IntOrString {
    IntOrString {
        r#type: Some(1),
        int_val: None,
        str_val: s(name),
    }
}

fn object_meta(name: &str, namespace: Option<&str>) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: s(name),
        namespace: namespace.and_then(s),
        ..Default::default()
    }
}

fn time(seconds: i64, nanos: i32) -> meta::Time {
    meta::Time {
        seconds: Some(seconds),
        nanos: Some(nanos),
    }
}

fn micro_time(seconds: i64, nanos: i32) -> meta::MicroTime {
    meta::MicroTime {
        seconds: Some(seconds),
        nanos: Some(nanos),
    }
}

fn container(name: &str, image: &str) -> core::Container {
    core::Container {
        name: s(name),
        image: s(image),
        ..Default::default()
    }
}

#[test]
fn namespace() {
    let ns = core::Namespace {
        metadata: Some(meta::ObjectMeta {
            name: s("prod"),
            uid: s("u-1"),
            labels: map(&[("team", "a")]),
            annotations: map(&[("note", "")]),
            // Time keeps whole seconds: Go drops the nanoseconds.
            creation_timestamp: Some(time(SECONDS, 999)),
            // A set zero: dropped for a plain int64, kept for a pointer.
            generation: Some(0),
            deletion_grace_period_seconds: Some(0),
            ..Default::default()
        }),
        spec: Some(core::NamespaceSpec {
            finalizers: strings(&["kubernetes"]),
        }),
        status: Some(core::NamespaceStatus {
            phase: s("Active"),
            conditions: vec![],
        }),
    };
    check(
        "v1",
        "Namespace",
        &ns,
        json!({
            "metadata": {
                "name": "prod",
                "uid": "u-1",
                "labels": {"team": "a"},
                "annotations": {"note": ""},
                "creationTimestamp": "2026-01-02T03:04:05Z",
                "deletionGracePeriodSeconds": 0,
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }),
    );
}

#[test]
fn empty_namespace_is_go_zero_value() {
    check(
        "v1",
        "Namespace",
        &core::Namespace::default(),
        json!({"metadata": {"creationTimestamp": null}, "spec": {}, "status": {}}),
    );
}

#[test]
fn configmap_with_data_and_binary_data() {
    let cm = core::ConfigMap {
        metadata: Some(object_meta("cm", Some("default"))),
        immutable: Some(false),
        data: map(&[("a", "1"), ("empty", "")]),
        binary_data: [
            ("bin".to_string(), vec![0, 1, 2, 0xfe, 0xff]),
            ("none".to_string(), vec![]),
        ]
        .into_iter()
        .collect(),
    };
    check(
        "v1",
        "ConfigMap",
        &cm,
        json!({
            "metadata": {"name": "cm", "namespace": "default", "creationTimestamp": null},
            "immutable": false,
            "data": {"a": "1", "empty": ""},
            "binaryData": {"bin": "AAEC/v8=", "none": ""},
        }),
    );
}

#[test]
fn secret() {
    let secret = core::Secret {
        metadata: Some(object_meta("creds", Some("default"))),
        immutable: None,
        data: [("password".to_string(), b"hunter2".to_vec())]
            .into_iter()
            .collect(),
        string_data: map(&[("user", "admin")]),
        r#type: s("Opaque"),
    };
    check(
        "v1",
        "Secret",
        &secret,
        json!({
            "metadata": {"name": "creds", "namespace": "default", "creationTimestamp": null},
            "data": {"password": "aHVudGVyMg=="},
            "stringData": {"user": "admin"},
            "type": "Opaque",
        }),
    );
}

fn web_container() -> core::Container {
    core::Container {
        command: strings(&["nginx"]),
        args: strings(&["-g", "daemon off;"]),
        ports: vec![core::ContainerPort {
            name: s("http"),
            container_port: Some(80),
            protocol: s("TCP"),
            ..Default::default()
        }],
        env: vec![
            core::EnvVar {
                name: s("A"),
                value: s("1"),
                value_from: None,
            },
            core::EnvVar {
                name: s("PASSWORD"),
                value: None,
                value_from: Some(core::EnvVarSource {
                    secret_key_ref: Some(core::SecretKeySelector {
                        local_object_reference: Some(core::LocalObjectReference {
                            name: s("creds"),
                        }),
                        key: s("password"),
                        optional: Some(false),
                    }),
                    ..Default::default()
                }),
            },
            core::EnvVar {
                name: s("EMPTY"),
                value: s(""),
                value_from: None,
            },
        ],
        resources: Some(core::ResourceRequirements {
            limits: quantities(&[("cpu", "500m"), ("memory", "128Mi")]),
            requests: quantities(&[("cpu", "250m")]),
            claims: vec![],
        }),
        liveness_probe: Some(core::Probe {
            handler: Some(core::ProbeHandler {
                http_get: Some(core::HttpGetAction {
                    path: s("/healthz"),
                    port: Some(named("http")),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            initial_delay_seconds: Some(0),
            period_seconds: Some(10),
            ..Default::default()
        }),
        readiness_probe: Some(core::Probe {
            handler: Some(core::ProbeHandler {
                tcp_socket: Some(core::TcpSocketAction {
                    port: Some(int(8080)),
                    host: None,
                }),
                ..Default::default()
            }),
            failure_threshold: Some(3),
            ..Default::default()
        }),
        volume_mounts: vec![core::VolumeMount {
            name: s("config"),
            mount_path: s("/etc/web"),
            read_only: Some(true),
            ..Default::default()
        }],
        stdin: Some(false),
        ..container("web", "nginx:1.27")
    }
}

fn web_container_json() -> Value {
    json!({
        "name": "web",
        "image": "nginx:1.27",
        "command": ["nginx"],
        "args": ["-g", "daemon off;"],
        "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
        "env": [
            {"name": "A", "value": "1"},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password", "optional": false}}},
            {"name": "EMPTY"},
        ],
        "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "250m"}},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
        "readinessProbe": {"tcpSocket": {"port": 8080}, "failureThreshold": 3},
        "volumeMounts": [{"name": "config", "mountPath": "/etc/web", "readOnly": true}],
    })
}

fn web_pod_spec() -> core::PodSpec {
    core::PodSpec {
        volumes: vec![
            core::Volume {
                name: s("config"),
                volume_source: Some(core::VolumeSource {
                    config_map: Some(core::ConfigMapVolumeSource {
                        local_object_reference: Some(core::LocalObjectReference {
                            name: s("web-config"),
                        }),
                        items: vec![core::KeyToPath {
                            key: s("a"),
                            path: s("a.conf"),
                            mode: None,
                        }],
                        default_mode: Some(0o644),
                        optional: None,
                    }),
                    ..Default::default()
                }),
            },
            core::Volume {
                name: s("scratch"),
                volume_source: Some(core::VolumeSource {
                    empty_dir: Some(core::EmptyDirVolumeSource {
                        medium: None,
                        size_limit: Some(quantity("1Gi")),
                    }),
                    ..Default::default()
                }),
            },
        ],
        containers: vec![web_container()],
        restart_policy: s("Always"),
        termination_grace_period_seconds: Some(30),
        dns_policy: s("ClusterFirst"),
        node_selector: map(&[("disk", "ssd")]),
        host_network: Some(false),
        ..Default::default()
    }
}

fn web_pod_spec_json() -> Value {
    json!({
        "volumes": [
            {"name": "config", "configMap": {"name": "web-config", "items": [{"key": "a", "path": "a.conf"}], "defaultMode": 420}},
            {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}},
        ],
        "containers": [web_container_json()],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "nodeSelector": {"disk": "ssd"},
    })
}

#[test]
fn deployment_with_full_pod_template() {
    let deployment = apps::v1::Deployment {
        metadata: Some(meta::ObjectMeta {
            labels: map(&[("app", "web")]),
            ..object_meta("web", Some("default"))
        }),
        spec: Some(apps::v1::DeploymentSpec {
            replicas: Some(3),
            selector: Some(meta::LabelSelector {
                match_labels: map(&[("app", "web")]),
                match_expressions: vec![meta::LabelSelectorRequirement {
                    key: s("tier"),
                    operator: s("In"),
                    values: strings(&["fe"]),
                }],
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels: map(&[("app", "web")]),
                    ..Default::default()
                }),
                spec: Some(web_pod_spec()),
            }),
            strategy: Some(apps::v1::DeploymentStrategy {
                r#type: s("RollingUpdate"),
                rolling_update: Some(apps::v1::RollingUpdateDeployment {
                    max_unavailable: Some(int(0)),
                    max_surge: Some(named("25%")),
                }),
            }),
            revision_history_limit: Some(0),
            paused: Some(false),
            ..Default::default()
        }),
        status: None,
    };
    check(
        "apps/v1",
        "Deployment",
        &deployment,
        json!({
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}, "creationTimestamp": null},
            "spec": {
                "replicas": 3,
                "selector": {
                    "matchLabels": {"app": "web"},
                    "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe"]}],
                },
                "template": {
                    "metadata": {"labels": {"app": "web"}, "creationTimestamp": null},
                    "spec": web_pod_spec_json(),
                },
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
                "revisionHistoryLimit": 0,
            },
            "status": {},
        }),
    );
}

#[test]
fn pod_with_ephemeral_container() {
    let pod = core::Pod {
        metadata: Some(object_meta("web-1", Some("default"))),
        spec: Some(core::PodSpec {
            containers: vec![container("web", "nginx")],
            ephemeral_containers: vec![core::EphemeralContainer {
                ephemeral_container_common: Some(core::EphemeralContainerCommon {
                    name: s("debug"),
                    image: s("busybox"),
                    tty: Some(true),
                    ..Default::default()
                }),
                target_container_name: s("web"),
            }],
            node_name: s("node-1"),
            ..Default::default()
        }),
        status: Some(core::PodStatus {
            phase: s("Running"),
            start_time: Some(time(SECONDS, 0)),
            pod_ips: vec![core::PodIp { ip: s("10.0.0.7") }],
            ..Default::default()
        }),
    };
    check(
        "v1",
        "Pod",
        &pod,
        json!({
            "metadata": {"name": "web-1", "namespace": "default", "creationTimestamp": null},
            "spec": {
                "containers": [{"name": "web", "image": "nginx", "resources": {}}],
                "ephemeralContainers": [
                    {"name": "debug", "image": "busybox", "tty": true, "resources": {}, "targetContainerName": "web"},
                ],
                "nodeName": "node-1",
            },
            "status": {"phase": "Running", "startTime": "2026-01-02T03:04:05Z", "podIPs": [{"ip": "10.0.0.7"}]},
        }),
    );
}

#[test]
fn service_with_int_or_string_target_ports() {
    let service = core::Service {
        metadata: Some(object_meta("web", Some("default"))),
        spec: Some(core::ServiceSpec {
            ports: vec![
                core::ServicePort {
                    name: s("http"),
                    protocol: s("TCP"),
                    port: Some(80),
                    target_port: Some(int(8080)),
                    ..Default::default()
                },
                core::ServicePort {
                    name: s("metrics"),
                    port: Some(9090),
                    target_port: Some(named("metrics")),
                    node_port: Some(0),
                    ..Default::default()
                },
                // No targetPort: Go's zero IntOrString is the number 0.
                core::ServicePort {
                    name: s("bare"),
                    port: Some(1),
                    ..Default::default()
                },
            ],
            selector: map(&[("app", "web")]),
            cluster_ip: s("None"),
            r#type: s("ClusterIP"),
            ip_families: strings(&["IPv4"]),
            ip_family_policy: s("SingleStack"),
            ..Default::default()
        }),
        status: None,
    };
    check(
        "v1",
        "Service",
        &service,
        json!({
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": null},
            "spec": {
                "ports": [
                    {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080},
                    {"name": "metrics", "port": 9090, "targetPort": "metrics"},
                    {"name": "bare", "port": 1, "targetPort": 0},
                ],
                "selector": {"app": "web"},
                "clusterIP": "None",
                "type": "ClusterIP",
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack",
            },
            "status": {"loadBalancer": {}},
        }),
    );
}

fn job_spec(restart: &str) -> batch::v1::JobSpec {
    batch::v1::JobSpec {
        template: Some(core::PodTemplateSpec {
            metadata: None,
            spec: Some(core::PodSpec {
                containers: vec![container("c", "busybox")],
                restart_policy: s(restart),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

fn job_spec_json(restart: &str) -> Value {
    json!({
        "template": {
            "metadata": {"creationTimestamp": null},
            "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {}}], "restartPolicy": restart},
        },
    })
}

#[test]
fn job() {
    let job = batch::v1::Job {
        metadata: Some(object_meta("once", Some("default"))),
        spec: Some(batch::v1::JobSpec {
            parallelism: Some(2),
            completions: Some(4),
            backoff_limit: Some(0),
            ..job_spec("Never")
        }),
        status: Some(batch::v1::JobStatus {
            start_time: Some(time(SECONDS, 0)),
            active: Some(0),
            ready: Some(0),
            ..Default::default()
        }),
    };
    let mut spec = job_spec_json("Never");
    spec["parallelism"] = json!(2);
    spec["completions"] = json!(4);
    spec["backoffLimit"] = json!(0);
    check(
        "batch/v1",
        "Job",
        &job,
        json!({
            "metadata": {"name": "once", "namespace": "default", "creationTimestamp": null},
            "spec": spec,
            "status": {"startTime": "2026-01-02T03:04:05Z", "ready": 0},
        }),
    );
}

#[test]
fn cronjob() {
    let cronjob = batch::v1::CronJob {
        metadata: Some(object_meta("tick", Some("default"))),
        spec: Some(batch::v1::CronJobSpec {
            schedule: s("0 * * * *"),
            time_zone: s("Etc/UTC"),
            concurrency_policy: s("Forbid"),
            suspend: Some(false),
            job_template: Some(batch::v1::JobTemplateSpec {
                metadata: None,
                spec: Some(job_spec("OnFailure")),
            }),
            successful_jobs_history_limit: Some(0),
            ..Default::default()
        }),
        status: Some(batch::v1::CronJobStatus {
            active: vec![core::ObjectReference {
                kind: s("Job"),
                name: s("tick-1"),
                ..Default::default()
            }],
            last_schedule_time: Some(time(0, 0)),
            last_successful_time: None,
        }),
    };
    check(
        "batch/v1",
        "CronJob",
        &cronjob,
        json!({
            "metadata": {"name": "tick", "namespace": "default", "creationTimestamp": null},
            "spec": {
                "schedule": "0 * * * *",
                "timeZone": "Etc/UTC",
                "concurrencyPolicy": "Forbid",
                "suspend": false,
                "jobTemplate": {"metadata": {"creationTimestamp": null}, "spec": job_spec_json("OnFailure")},
                "successfulJobsHistoryLimit": 0,
            },
            "status": {"active": [{"kind": "Job", "name": "tick-1"}], "lastScheduleTime": "1970-01-01T00:00:00Z"},
        }),
    );
}

#[test]
fn core_event_with_micro_time() {
    let event = core::Event {
        metadata: Some(object_meta("web.1", Some("default"))),
        involved_object: Some(core::ObjectReference {
            kind: s("Pod"),
            name: s("web"),
            namespace: s("default"),
            uid: s("u-2"),
            ..Default::default()
        }),
        reason: s("Started"),
        message: s("Started container web"),
        source: Some(core::EventSource {
            component: s("kubelet"),
            host: s("node-1"),
        }),
        first_timestamp: Some(time(SECONDS, 500_000_000)),
        count: Some(1),
        r#type: s("Normal"),
        // MicroTime truncates to the microsecond.
        event_time: Some(micro_time(SECONDS, 123_456_789)),
        reporting_component: s("kubelet"),
        reporting_instance: s("node-1"),
        ..Default::default()
    };
    check(
        "v1",
        "Event",
        &event,
        json!({
            "metadata": {"name": "web.1", "namespace": "default", "creationTimestamp": null},
            "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default", "uid": "u-2"},
            "reason": "Started",
            "message": "Started container web",
            "source": {"component": "kubelet", "host": "node-1"},
            "firstTimestamp": "2026-01-02T03:04:05Z",
            "lastTimestamp": null,
            "count": 1,
            "type": "Normal",
            "eventTime": "2026-01-02T03:04:05.123456Z",
            "reportingComponent": "kubelet",
            "reportingInstance": "node-1",
        }),
    );
}

#[test]
fn events_v1_event() {
    let event = events::v1::Event {
        metadata: Some(object_meta("node-1.1", Some("default"))),
        event_time: Some(micro_time(SECONDS, 1_000)),
        series: Some(events::v1::EventSeries {
            count: Some(2),
            last_observed_time: Some(micro_time(SECONDS, 0)),
        }),
        reporting_controller: s("kedge.io/agent"),
        reporting_instance: s("agent-1"),
        action: s("Reboot"),
        reason: s("Rebooted"),
        regarding: Some(core::ObjectReference {
            kind: s("Node"),
            name: s("node-1"),
            ..Default::default()
        }),
        note: s("node rebooted"),
        r#type: s("Warning"),
        ..Default::default()
    };
    check(
        "events.k8s.io/v1",
        "Event",
        &event,
        json!({
            "metadata": {"name": "node-1.1", "namespace": "default", "creationTimestamp": null},
            "eventTime": "2026-01-02T03:04:05.000001Z",
            "series": {"count": 2, "lastObservedTime": "2026-01-02T03:04:05.000000Z"},
            "reportingController": "kedge.io/agent",
            "reportingInstance": "agent-1",
            "action": "Reboot",
            "reason": "Rebooted",
            "regarding": {"kind": "Node", "name": "node-1"},
            "note": "node rebooted",
            "type": "Warning",
            "deprecatedSource": {},
            "deprecatedFirstTimestamp": null,
            "deprecatedLastTimestamp": null,
        }),
    );
}

#[test]
fn lease() {
    let lease = coordination::v1::Lease {
        metadata: Some(object_meta("node-1", Some("kube-node-lease"))),
        spec: Some(coordination::v1::LeaseSpec {
            holder_identity: s("node-1"),
            lease_duration_seconds: Some(40),
            acquire_time: Some(micro_time(SECONDS, 0)),
            renew_time: Some(micro_time(SECONDS + 10, 5_000)),
            lease_transitions: Some(0),
            ..Default::default()
        }),
    };
    check(
        "coordination.k8s.io/v1",
        "Lease",
        &lease,
        json!({
            "metadata": {"name": "node-1", "namespace": "kube-node-lease", "creationTimestamp": null},
            "spec": {
                "holderIdentity": "node-1",
                "leaseDurationSeconds": 40,
                "acquireTime": "2026-01-02T03:04:05.000000Z",
                "renewTime": "2026-01-02T03:04:15.000005Z",
                "leaseTransitions": 0,
            },
        }),
    );
}

#[test]
fn delete_options_in_any_group_version() {
    let options = meta::DeleteOptions {
        grace_period_seconds: Some(0),
        preconditions: Some(meta::Preconditions {
            uid: s("u-1"),
            resource_version: None,
        }),
        propagation_policy: s("Foreground"),
        dry_run: strings(&["All"]),
        ..Default::default()
    };
    let expected = json!({
        "gracePeriodSeconds": 0,
        "preconditions": {"uid": "u-1"},
        "propagationPolicy": "Foreground",
        "dryRun": ["All"],
    });
    for api_version in ["v1", "meta.k8s.io/v1", "apps/v1"] {
        check(api_version, "DeleteOptions", &options, expected.clone());
    }
}

#[test]
fn binding_scale_and_token_request() {
    let binding = core::Binding {
        metadata: Some(object_meta("web-1", Some("default"))),
        target: Some(core::ObjectReference {
            kind: s("Node"),
            name: s("node-1"),
            ..Default::default()
        }),
    };
    check(
        "v1",
        "Binding",
        &binding,
        json!({
            "metadata": {"name": "web-1", "namespace": "default", "creationTimestamp": null},
            "target": {"kind": "Node", "name": "node-1"},
        }),
    );

    let scale = autoscaling::v1::Scale {
        metadata: Some(object_meta("web", Some("default"))),
        spec: Some(autoscaling::v1::ScaleSpec { replicas: Some(0) }),
        status: None,
    };
    check(
        "autoscaling/v1",
        "Scale",
        &scale,
        // ScaleSpec.replicas is a plain omitempty int32: a zero is dropped.
        json!({
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": null},
            "spec": {},
            "status": {"replicas": 0},
        }),
    );

    let token = authentication::v1::TokenRequest {
        metadata: Some(object_meta("robot", Some("default"))),
        spec: Some(authentication::v1::TokenRequestSpec {
            audiences: strings(&["api"]),
            expiration_seconds: Some(3600),
            bound_object_ref: Some(authentication::v1::BoundObjectReference {
                kind: s("Pod"),
                api_version: s("v1"),
                name: s("web-1"),
                u_id: s("u-3"),
            }),
        }),
        status: None,
    };
    check(
        "authentication.k8s.io/v1",
        "TokenRequest",
        &token,
        json!({
            "metadata": {"name": "robot", "namespace": "default", "creationTimestamp": null},
            "spec": {
                "audiences": ["api"],
                "expirationSeconds": 3600,
                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web-1", "uid": "u-3"},
            },
            "status": {"token": "", "expirationTimestamp": null},
        }),
    );
}

#[test]
fn endpoint_slice() {
    let slice = discovery::v1::EndpointSlice {
        metadata: Some(object_meta("web-abc", Some("default"))),
        address_type: s("IPv4"),
        endpoints: vec![discovery::v1::Endpoint {
            addresses: strings(&["10.0.0.7"]),
            conditions: Some(discovery::v1::EndpointConditions {
                ready: Some(true),
                ..Default::default()
            }),
            node_name: s("node-1"),
            ..Default::default()
        }],
        ports: vec![discovery::v1::EndpointPort {
            name: s("http"),
            port: Some(8080),
            ..Default::default()
        }],
    };
    check(
        "discovery.k8s.io/v1",
        "EndpointSlice",
        &slice,
        json!({
            "metadata": {"name": "web-abc", "namespace": "default", "creationTimestamp": null},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.7"], "conditions": {"ready": true}, "nodeName": "node-1"}],
            "ports": [{"name": "http", "port": 8080}],
        }),
    );
}

#[test]
fn controller_revision_with_embedded_json_and_protobuf() {
    let revision = |raw: Vec<u8>| apps::v1::ControllerRevision {
        metadata: Some(object_meta("web-1", Some("default"))),
        data: Some(RawExtension { raw: Some(raw) }),
        revision: Some(1),
    };
    let expected = |data: Value| {
        json!({
            "metadata": {"name": "web-1", "namespace": "default", "creationTimestamp": null},
            "data": data,
            "revision": 1,
        })
    };
    check(
        "apps/v1",
        "ControllerRevision",
        &revision(br#"{"spec":{"replicas":2}}"#.to_vec()),
        expected(json!({"spec": {"replicas": 2}})),
    );
    let embedded = wrap(
        "v1",
        "ConfigMap",
        core::ConfigMap {
            data: map(&[("k", "v")]),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    check(
        "apps/v1",
        "ControllerRevision",
        &revision(embedded),
        expected(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"creationTimestamp": null}, "data": {"k": "v"}}),
        ),
    );
}

/// Protobuf merges a message field that occurs twice, appends to repeated
/// fields, and lets the last scalar win; unknown fields are skipped.
#[test]
fn merging_and_unknown_fields() {
    let first = apps::v1::Deployment {
        metadata: Some(meta::ObjectMeta {
            name: s("web"),
            labels: map(&[("a", "1")]),
            ..Default::default()
        }),
        spec: Some(apps::v1::DeploymentSpec {
            replicas: Some(1),
            ..Default::default()
        }),
        status: None,
    };
    let second = apps::v1::Deployment {
        metadata: Some(meta::ObjectMeta {
            namespace: s("default"),
            labels: map(&[("b", "2")]),
            ..Default::default()
        }),
        spec: Some(apps::v1::DeploymentSpec {
            replicas: Some(5),
            ..Default::default()
        }),
        status: None,
    };
    let mut raw = first.encode_to_vec();
    raw.extend(second.encode_to_vec());
    // Field 99, length-delimited, and field 98, a varint: neither is known.
    raw.extend([0x9a, 0x06, 2, b'h', b'i', 0x90, 0x06, 7]);
    let decoded = decode(&wrap("apps/v1", "Deployment", raw)).unwrap();
    assert_eq!(
        decoded,
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"a": "1", "b": "2"}, "creationTimestamp": null},
            "spec": {"replicas": 5, "selector": null, "template": {"metadata": {"creationTimestamp": null}, "spec": {"containers": null}}, "strategy": {}},
            "status": {},
        })
    );
}

/// Go's zero values and rounding where an encoder leaves parts out.
#[test]
fn special_types_at_their_edges() {
    let pod = core::Pod {
        metadata: Some(meta::ObjectMeta {
            name: s("p"),
            // Go's zero time, sent explicitly, is still null.
            creation_timestamp: Some(time(-62_135_596_800, 0)),
            ..Default::default()
        }),
        spec: Some(core::PodSpec {
            containers: vec![core::Container {
                resources: Some(core::ResourceRequirements {
                    // A Quantity without its string is Go's zero, "0".
                    limits: [("cpu".to_string(), Quantity { string: None })]
                        .into_iter()
                        .collect(),
                    ..Default::default()
                }),
                ports: vec![core::ContainerPort {
                    container_port: Some(0),
                    ..Default::default()
                }],
                readiness_probe: Some(core::Probe {
                    handler: Some(core::ProbeHandler {
                        // A string IntOrString without its string is "".
                        tcp_socket: Some(core::TcpSocketAction {
                            port: Some(IntOrString {
                                r#type: Some(1),
                                int_val: Some(5),
                                str_val: None,
                            }),
                            host: None,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..container("c", "i")
            }],
            ..Default::default()
        }),
        status: None,
    };
    check(
        "v1",
        "Pod",
        &pod,
        json!({
            "metadata": {"name": "p", "creationTimestamp": null},
            "spec": {
                "containers": [{
                    "name": "c",
                    "image": "i",
                    "resources": {"limits": {"cpu": "0"}},
                    "ports": [{"containerPort": 0}],
                    "readinessProbe": {"tcpSocket": {"port": ""}},
                }],
            },
            "status": {},
        }),
    );

    // MicroTime truncates toward zero before carrying negative nanoseconds,
    // as Go's Duration.Truncate and time.Unix do.
    let lease = coordination::v1::Lease {
        metadata: None,
        spec: Some(coordination::v1::LeaseSpec {
            renew_time: Some(micro_time(SECONDS, -1_500)),
            ..Default::default()
        }),
    };
    check(
        "coordination.k8s.io/v1",
        "Lease",
        &lease,
        json!({"metadata": {"creationTimestamp": null}, "spec": {"renewTime": "2026-01-02T03:04:04.999999Z"}}),
    );
}
