//! Pod defaults: the pod spec (shared with every pod template), its
//! containers, probes and volumes, and what only pods get (the
//! `SetDefaults_Pod` extras and the admission plugins' additions).

use serde_json::{Value, json};

use super::{canonical_quantity, child, default, each, existing, resource_list, str_at, unset};

/// Seconds a pod tolerates a not-ready or unreachable node before eviction
/// (upstream's `DefaultTolerationSeconds` admission plugin default).
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// Defaults a whole Pod: its spec as any template's, then what only pods
/// get: requests from limits, `enableServiceLinks`, host ports on the host
/// network, the not-ready/unreachable tolerations, priority and the
/// `default` service account.
pub fn pod(obj: &mut Value) {
    let Some(spec) = child(obj, "spec") else {
        return;
    };
    pod_spec(spec);
    for key in ["containers", "initContainers"] {
        for c in each(spec, key) {
            requests_from_limits(c);
        }
    }
    default(spec, "enableServiceLinks", json!(true));
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        for key in ["containers", "initContainers"] {
            for c in each(spec, key) {
                for p in each(c, "ports") {
                    let host = p.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
                    if host == 0
                        && let Some(port) = p.get("containerPort").cloned()
                        && let Some(map) = p.as_object_mut()
                    {
                        map.insert("hostPort".into(), port);
                    }
                }
            }
        }
    }
    default_tolerations(spec);
    default_priority(spec);
    // The ServiceAccount admission plugin.
    default(spec, "serviceAccountName", json!("default"));
    mirror_service_account(spec);
}

/// Defaults the pod template of a workload (`spec.template`).
pub fn template(template: &mut Value) {
    if let Some(spec) = existing(template, "spec") {
        pod_spec(spec);
    }
}

/// Upstream's `SetDefaults_PodSpec` and everything below it.
pub fn pod_spec(spec: &mut Value) {
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "securityContext", json!({}));
    for key in ["containers", "initContainers", "ephemeralContainers"] {
        for c in each(spec, key) {
            container(c);
        }
    }
    for v in each(spec, "volumes") {
        volume(v);
    }
    resource_list(spec, "overhead");
    if unset(spec, "serviceAccountName") && !unset(spec, "serviceAccount") {
        let sa = spec.get("serviceAccount").cloned().unwrap_or(Value::Null);
        if let Some(map) = spec.as_object_mut() {
            map.insert("serviceAccountName".into(), sa);
        }
    }
    mirror_service_account(spec);
}

/// The v1 conversion writes `serviceAccountName` into the deprecated
/// `serviceAccount` too.
fn mirror_service_account(spec: &mut Value) {
    if !unset(spec, "serviceAccountName") {
        let sa = spec
            .get("serviceAccountName")
            .cloned()
            .unwrap_or(Value::Null);
        if let Some(map) = spec.as_object_mut() {
            map.insert("serviceAccount".into(), sa);
        }
    }
}

/// Upstream's `SetDefaults_Container` and the defaults of what a container
/// holds (ports, env, probes, lifecycle handlers).
pub fn container(c: &mut Value) {
    if !c.is_object() {
        return;
    }
    if unset(c, "imagePullPolicy") {
        let policy = pull_policy(str_at(c, "image"));
        default(c, "imagePullPolicy", json!(policy));
    }
    default(c, "terminationMessagePath", json!("/dev/termination-log"));
    default(c, "terminationMessagePolicy", json!("File"));
    // `resources` is a struct, not a pointer, upstream: always printed.
    default(c, "resources", json!({}));
    if let Some(r) = existing(c, "resources") {
        resource_list(r, "limits");
        resource_list(r, "requests");
    }
    for p in each(c, "ports") {
        default(p, "protocol", json!("TCP"));
    }
    for e in each(c, "env") {
        if let Some(from) = existing(e, "valueFrom") {
            field_ref(from);
            if let Some(r) = existing(from, "resourceFieldRef") {
                // A zero `resource.Quantity` is printed as "0" upstream.
                default(r, "divisor", json!("0"));
            }
        }
    }
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = existing(c, key) {
            probe(p);
        }
    }
    if let Some(lifecycle) = existing(c, "lifecycle") {
        for key in ["postStart", "preStop"] {
            if let Some(handler) = existing(lifecycle, key)
                && let Some(get) = existing(handler, "httpGet")
            {
                http_get(get);
            }
        }
    }
}

/// `IfNotPresent`, or `Always` for an image tagged (or defaulting to)
/// `latest`. An image upstream cannot parse counts as untagged-but-not-latest,
/// as upstream ignores the parse error.
pub fn pull_policy(image: &str) -> &'static str {
    match image_tag(image) {
        Some(ImageTag::Latest) => "Always",
        _ => "IfNotPresent",
    }
}

#[derive(Debug, PartialEq, Eq)]
enum ImageTag<'a> {
    /// Tagged `latest`, or neither tagged nor pinned by digest.
    Latest,
    Tag(&'a str),
    /// Pinned by digest only.
    Digest,
}

/// The tag of a container image reference, roughly as upstream's
/// `parsers.ParseImageName` (docker reference grammar) sees it. `None` for
/// references it rejects.
fn image_tag(image: &str) -> Option<ImageTag<'_>> {
    if image.is_empty() || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    if let Some(d) = digest {
        let (alg, hex) = d.split_once(':')?;
        if alg.is_empty() || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
    }
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    let mut components = repo.split('/');
    let first = components.next().unwrap_or("");
    let rest: Vec<&str> = components.collect();
    let first_is_domain = !rest.is_empty()
        && (first.contains('.')
            || first.contains(':')
            || first == "localhost"
            || first.bytes().any(|b| b.is_ascii_uppercase()));
    let path_ok = |c: &str| {
        !c.is_empty()
            && c.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            })
            && c.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
            && c.as_bytes().last().is_some_and(u8::is_ascii_alphanumeric)
    };
    let domain_ok = |c: &str| {
        !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
    };
    if first_is_domain {
        if !domain_ok(first) || !rest.iter().all(|c| path_ok(c)) {
            return None;
        }
    } else if !path_ok(first) || !rest.iter().all(|c| path_ok(c)) {
        return None;
    }
    match tag {
        Some(t) => {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
                && !t.starts_with(['.', '-']);
            if !ok {
                return None;
            }
            Some(if t == "latest" {
                ImageTag::Latest
            } else {
                ImageTag::Tag(t)
            })
        }
        None if digest.is_some() => Some(ImageTag::Digest),
        None => Some(ImageTag::Latest),
    }
}

/// `SetDefaults_Probe` and its handler's defaults.
fn probe(p: &mut Value) {
    default(p, "timeoutSeconds", json!(1));
    default(p, "periodSeconds", json!(10));
    default(p, "successThreshold", json!(1));
    default(p, "failureThreshold", json!(3));
    if let Some(get) = existing(p, "httpGet") {
        http_get(get);
    }
}

/// `SetDefaults_HTTPGetAction`.
fn http_get(get: &mut Value) {
    default(get, "path", json!("/"));
    default(get, "scheme", json!("HTTP"));
}

/// `SetDefaults_ObjectFieldSelector` on the `fieldRef` of `holder`.
fn field_ref(holder: &mut Value) {
    if let Some(r) = existing(holder, "fieldRef") {
        default(r, "apiVersion", json!("v1"));
    }
}

/// The volume sources a volume may name; a volume with none of them is an
/// `emptyDir`.
const VOLUME_SOURCES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "gitRepo",
    "glusterfs",
    "hostPath",
    "image",
    "iscsi",
    "nfs",
    "persistentVolumeClaim",
    "photonPersistentDisk",
    "portworxVolume",
    "projected",
    "quobyte",
    "rbd",
    "scaleIO",
    "secret",
    "storageos",
    "vsphereVolume",
];

/// Upstream's `SetDefaults_Volume` and the volume sources' defaults.
pub fn volume(v: &mut Value) {
    if !v.is_object() {
        return;
    }
    if VOLUME_SOURCES
        .iter()
        .all(|k| v.get(*k).is_none_or(Value::is_null))
    {
        default(v, "emptyDir", json!({}));
    }
    if let Some(src) = existing(v, "emptyDir")
        && let Some(limit) = src
            .get("sizeLimit")
            .and_then(|l| canonical_quantity(l, false))
        && let Some(map) = src.as_object_mut()
    {
        map.insert("sizeLimit".into(), Value::String(limit));
    }
    for key in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(src) = existing(v, key) {
            default(src, "defaultMode", json!(0o644));
        }
    }
    if let Some(src) = existing(v, "downwardAPI") {
        for item in each(src, "items") {
            field_ref(item);
        }
    }
    if let Some(src) = existing(v, "projected") {
        for s in each(src, "sources") {
            if let Some(d) = existing(s, "downwardAPI") {
                for item in each(d, "items") {
                    field_ref(item);
                }
            }
        }
    }
    if let Some(src) = existing(v, "hostPath") {
        default_keep_empty(src, "type", json!(""));
    }
    if let Some(src) = existing(v, "iscsi") {
        default(src, "iscsiInterface", json!("default"));
    }
    if let Some(src) = existing(v, "rbd") {
        default(src, "pool", json!("rbd"));
        default(src, "user", json!("admin"));
        default(src, "keyring", json!("/etc/ceph/keyring"));
    }
    if let Some(src) = existing(v, "azureDisk") {
        default(src, "cachingMode", json!("ReadWrite"));
        default(src, "fsType", json!("ext4"));
        default(src, "readOnly", json!(false));
        default(src, "kind", json!("Shared"));
    }
    if let Some(src) = existing(v, "scaleIO") {
        default(src, "storageMode", json!("ThinProvisioned"));
        default(src, "fsType", json!("xfs"));
    }
    if let Some(eph) = existing(v, "ephemeral")
        && let Some(t) = existing(eph, "volumeClaimTemplate")
        && let Some(spec) = existing(t, "spec")
    {
        default(spec, "volumeMode", json!("Filesystem"));
    }
}

/// Like [`default`], but only when the key is absent or null: `hostPath`'s
/// `type` defaults to the empty string.
fn default_keep_empty(obj: &mut Value, key: &str, value: Value) {
    if obj.get(key).is_none_or(Value::is_null)
        && let Some(map) = obj.as_object_mut()
    {
        map.insert(key.to_string(), value);
    }
}

/// `SetDefaults_Pod`: a resource with a limit but no request is requested
/// at its limit.
fn requests_from_limits(c: &mut Value) {
    let Some(resources) = existing(c, "resources") else {
        return;
    };
    let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned() else {
        return;
    };
    let Some(requests) = child(resources, "requests").and_then(Value::as_object_mut) else {
        return;
    };
    for (k, v) in limits {
        requests.entry(k).or_insert(v);
    }
}

/// The `DefaultTolerationSeconds` admission plugin: tolerate a not-ready or
/// unreachable node for 300s, unless a toleration already covers it.
fn default_tolerations(spec: &mut Value) {
    let tolerations = spec.get("tolerations").and_then(Value::as_array);
    let covers = |taint: &str| {
        tolerations.is_some_and(|ts| {
            ts.iter().any(|t| {
                let key = str_at(t, "key");
                let effect = str_at(t, "effect");
                (key == taint || key.is_empty()) && (effect == "NoExecute" || effect.is_empty())
            })
        })
    };
    let mut add = Vec::new();
    for taint in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        if !covers(taint) {
            add.push(json!({
                "key": taint,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": DEFAULT_TOLERATION_SECONDS,
            }));
        }
    }
    if add.is_empty() {
        return;
    }
    let Some(map) = spec.as_object_mut() else {
        return;
    };
    let slot = map.entry("tolerations").or_insert_with(|| json!([]));
    if slot.is_null() {
        *slot = json!([]);
    }
    if let Some(list) = slot.as_array_mut() {
        list.extend(add);
    }
}

/// The `Priority` admission plugin without PriorityClass objects: the two
/// system classes have their fixed priorities; no class means priority 0.
/// Other classes are left for the apiserver to resolve (or reject).
fn default_priority(spec: &mut Value) {
    let priority = match str_at(spec, "priorityClassName") {
        "" => 0,
        "system-node-critical" => 2_000_001_000,
        "system-cluster-critical" => 2_000_000_000,
        _ => return,
    };
    default_keep_empty(spec, "priority", json!(priority));
    default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_pod_is_defaulted_like_upstream() {
        let mut p = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"containers": [{"name": "web", "image": "nginx"}]}
        });
        pod(&mut p);
        assert_eq!(
            p["spec"],
            json!({
                "containers": [{
                    "name": "web", "image": "nginx",
                    "imagePullPolicy": "Always",
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "resources": {},
                }],
                "dnsPolicy": "ClusterFirst",
                "enableServiceLinks": true,
                "preemptionPolicy": "PreemptLowerPriority",
                "priority": 0,
                "restartPolicy": "Always",
                "schedulerName": "default-scheduler",
                "securityContext": {},
                "serviceAccount": "default",
                "serviceAccountName": "default",
                "terminationGracePeriodSeconds": 30,
                "tolerations": [
                    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                ],
            })
        );
    }

    #[test]
    fn set_fields_are_kept() {
        let mut p = json!({"spec": {
            "restartPolicy": "Never", "dnsPolicy": "Default", "schedulerName": "mine",
            "terminationGracePeriodSeconds": 0, "enableServiceLinks": false,
            "serviceAccount": "old", "priority": 5, "priorityClassName": "custom",
            "tolerations": [{"operator": "Exists"}],
            "containers": [{"name": "c", "image": "nginx:latest", "imagePullPolicy": "Never",
                "terminationMessagePolicy": "FallbackToLogsOnError"}]
        }});
        pod(&mut p);
        let s = &p["spec"];
        assert_eq!(s["restartPolicy"], "Never");
        assert_eq!(s["dnsPolicy"], "Default");
        assert_eq!(s["schedulerName"], "mine");
        assert_eq!(s["terminationGracePeriodSeconds"], 0);
        assert_eq!(s["enableServiceLinks"], false);
        assert_eq!(s["serviceAccountName"], "old");
        assert_eq!(s["serviceAccount"], "old");
        assert_eq!(s["priority"], 5);
        assert!(
            s.get("preemptionPolicy").is_none(),
            "unknown class: left to the apiserver"
        );
        assert_eq!(s["tolerations"], json!([{"operator": "Exists"}]));
        assert_eq!(s["containers"][0]["imagePullPolicy"], "Never");
        assert_eq!(
            s["containers"][0]["terminationMessagePolicy"],
            "FallbackToLogsOnError"
        );
    }

    #[test]
    fn pull_policy_follows_the_tag() {
        let cases = [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.27", "IfNotPresent"),
            ("registry.k8s.io/pause:3.10", "IfNotPresent"),
            ("localhost:5000/app", "Always"),
            ("localhost:5000/app:v1", "IfNotPresent"),
            (
                "docker.io/library/nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "IfNotPresent",
            ),
            (
                "nginx:latest@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "Always",
            ),
            ("Nginx", "IfNotPresent"),
            ("", "IfNotPresent"),
            ("a b", "IfNotPresent"),
            ("nginx:", "IfNotPresent"),
            ("é:latest", "IfNotPresent"),
        ];
        for (image, want) in cases {
            assert_eq!(pull_policy(image), want, "{image}");
        }
        assert_eq!(image_tag("a/b:v1"), Some(ImageTag::Tag("v1")));
    }

    #[test]
    fn ports_env_and_probes() {
        let mut c = json!({
            "name": "c", "image": "x:1",
            "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}],
            "env": [
                {"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "B", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                {"name": "C", "value": "c"},
            ],
            "livenessProbe": {"httpGet": {"port": 80}},
            "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 5},
            "lifecycle": {"preStop": {"httpGet": {"port": 8080, "path": "/stop"}}},
        });
        container(&mut c);
        assert_eq!(
            c["ports"],
            json!([
                {"containerPort": 80, "protocol": "TCP"},
                {"containerPort": 53, "protocol": "UDP"},
            ])
        );
        assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        assert_eq!(c["env"][1]["valueFrom"]["resourceFieldRef"]["divisor"], "0");
        assert_eq!(c["env"][2], json!({"name": "C", "value": "c"}));
        assert_eq!(
            c["livenessProbe"],
            json!({
                "httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
                "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3,
            })
        );
        assert_eq!(c["readinessProbe"]["periodSeconds"], 5);
        assert_eq!(
            c["lifecycle"]["preStop"]["httpGet"],
            json!({"port": 8080, "path": "/stop", "scheme": "HTTP"})
        );
    }

    #[test]
    fn volumes() {
        let mut spec = json!({"volumes": [
            {"name": "a"},
            {"name": "b", "configMap": {"name": "cm"}},
            {"name": "c", "secret": {"secretName": "s", "defaultMode": 256}},
            {"name": "d", "hostPath": {"path": "/x"}},
            {"name": "e", "downwardAPI": {"items": [{"path": "n", "fieldRef": {"fieldPath": "metadata.name"}}]}},
            {"name": "f", "projected": {"sources": [{"downwardAPI": {"items": [{"path": "n", "fieldRef": {"fieldPath": "x"}}]}}]}},
            {"name": "g", "persistentVolumeClaim": {"claimName": "p"}},
        ], "containers": []});
        pod_spec(&mut spec);
        let v = &spec["volumes"];
        assert_eq!(v[0], json!({"name": "a", "emptyDir": {}}));
        assert_eq!(
            v[1],
            json!({"name": "b", "configMap": {"name": "cm", "defaultMode": 420}})
        );
        assert_eq!(v[2]["secret"]["defaultMode"], 256);
        assert_eq!(
            v[3],
            json!({"name": "d", "hostPath": {"path": "/x", "type": ""}})
        );
        assert_eq!(v[4]["downwardAPI"]["defaultMode"], 420);
        assert_eq!(
            v[4]["downwardAPI"]["items"][0]["fieldRef"]["apiVersion"],
            "v1"
        );
        assert_eq!(v[5]["projected"]["defaultMode"], 420);
        assert_eq!(
            v[5]["projected"]["sources"][0]["downwardAPI"]["items"][0]["fieldRef"]["apiVersion"],
            "v1"
        );
        assert_eq!(
            v[6],
            json!({"name": "g", "persistentVolumeClaim": {"claimName": "p"}})
        );
    }

    #[test]
    fn pod_only_defaults() {
        let mut p = json!({"spec": {"hostNetwork": true, "priorityClassName": "system-node-critical",
            "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}],
            "containers": [{"name": "c", "image": "i:1",
                "ports": [{"containerPort": 8080}],
                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}}]}});
        pod(&mut p);
        let s = &p["spec"];
        assert_eq!(s["containers"][0]["ports"][0]["hostPort"], 8080);
        assert_eq!(
            s["containers"][0]["resources"]["requests"],
            json!({"cpu": "500m", "memory": "1Gi"})
        );
        assert_eq!(s["priority"], 2_000_001_000);
        let tolerations = s["tolerations"].as_array().unwrap();
        assert_eq!(tolerations.len(), 2, "unreachable was already tolerated");
        assert_eq!(tolerations[1]["key"], "node.kubernetes.io/not-ready");

        // templates get neither the pod-only nor the admission defaults
        let mut t = json!({"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [
            {"name": "c", "image": "i:1", "resources": {"limits": {"cpu": "1"}}}]}});
        template(&mut t);
        assert!(t["spec"].get("enableServiceLinks").is_none());
        assert!(t["spec"].get("tolerations").is_none());
        assert!(t["spec"].get("serviceAccountName").is_none());
        assert!(
            t["spec"]["containers"][0]["resources"]
                .get("requests")
                .is_none()
        );
        assert_eq!(t["spec"]["restartPolicy"], "Always");
    }
}
