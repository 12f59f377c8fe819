//! A container's environment, resolved as the kubelet's
//! `makeEnvironmentVariables` does:
//!
//! 1. `envFrom` sources in order (ConfigMaps and Secrets, with their prefix);
//!    keys that are not valid variable names are skipped and reported, as
//!    upstream's `InvalidEnvironmentVariableNames` event;
//! 2. `env` in order: a `value` has its `$(VAR)` references expanded against
//!    the variables defined so far and the Service variables; a `valueFrom`
//!    reads a ConfigMap or Secret key, a pod field or a resource;
//! 3. the Service variables (`<SVC>_SERVICE_HOST`, `_PORT`, docker links) of
//!    the pod's namespace when `enableServiceLinks`, and always those of the
//!    `kubernetes` Service in `default`, unless the container defines the name.
//!
//! A reference to a missing ConfigMap, Secret or key is an error unless
//! marked optional; its message is upstream's, which the pod manager shows as
//! `CreateContainerConfigError`.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};

use crate::expand::expand;
use crate::fieldpath::{self, FieldError};
use crate::node::NodeInfo;

/// One resolved variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

/// A container's resolved environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedEnv {
    /// The variables: `envFrom` and `env` in the order first defined (a later
    /// definition replaces the value in place), then Service variables sorted
    /// by name.
    pub vars: Vec<EnvVar>,
    /// Keys skipped from `envFrom` sources because they are not valid names,
    /// one message per source, worded as upstream's
    /// `InvalidEnvironmentVariableNames` warning event.
    pub warnings: Vec<String>,
}

impl ResolvedEnv {
    /// The value of a variable.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|v| v.name == name)
            .map(|v| v.value.as_str())
    }
}

/// Why a container's environment could not be made. The messages are
/// upstream's (`CreateContainerConfigError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("configmap {name:?} not found")]
    ConfigMapNotFound { name: String },
    #[error("secret {name:?} not found")]
    SecretNotFound { name: String },
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKeyNotFound {
        namespace: String,
        name: String,
        key: String,
    },
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKeyNotFound {
        namespace: String,
        name: String,
        key: String,
    },
    #[error("env {name}: {source}")]
    Field {
        name: String,
        #[source]
        source: FieldError,
    },
    #[error("env {name}: status.hostIP is not known yet: give the node's IPs in NodeInfo.host_ips")]
    NoHostIp { name: String },
}

/// What a container's environment may read besides the pod.
#[derive(Debug, Clone, Copy)]
pub struct EnvSources<'a> {
    /// ConfigMaps of the pod's namespace, by name.
    pub config_maps: &'a BTreeMap<String, ConfigMap>,
    /// Secrets of the pod's namespace, by name.
    pub secrets: &'a BTreeMap<String, Secret>,
    /// Services the node knows (any namespace; the right ones are picked).
    pub services: &'a [Service],
    /// The node.
    pub node: &'a NodeInfo,
    /// The pod's IPs, primary first (for a hostNetwork pod, the node's).
    pub pod_ips: &'a [String],
}

/// An insertion-ordered map: upstream keeps a Go map (random order); we keep
/// the order of first definition so that specs are reproducible.
#[derive(Default)]
struct OrderedEnv {
    order: Vec<String>,
    values: HashMap<String, String>,
}

impl OrderedEnv {
    fn set(&mut self, name: &str, value: String) {
        if self.values.insert(name.to_string(), value).is_none() {
            self.order.push(name.to_string());
        }
    }
}

/// Resolves the environment of `container` (one of `pod`'s containers or init
/// containers).
pub fn resolve_env(
    pod: &Pod,
    container: &Container,
    sources: &EnvSources<'_>,
) -> Result<ResolvedEnv, EnvError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let service_links = spec.and_then(|s| s.enable_service_links).unwrap_or(true);
    let service_env = service_env(&namespace, service_links, sources.services);

    let mut env = OrderedEnv::default();
    let mut warnings = Vec::new();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        let mut invalid = Vec::new();
        if let Some(r) = &from.config_map_ref {
            let Some(cm) = sources.config_maps.get(&r.name) else {
                if r.optional == Some(true) {
                    continue;
                }
                return Err(EnvError::ConfigMapNotFound {
                    name: r.name.clone(),
                });
            };
            for (k, v) in cm.data.iter().flatten() {
                let key = format!("{prefix}{k}");
                if is_env_var_name(&key) {
                    env.set(&key, v.clone());
                } else {
                    invalid.push(key);
                }
            }
            if !invalid.is_empty() {
                invalid.sort();
                warnings.push(format!(
                    "Keys [{}] from the EnvFrom configMap {namespace}/{} were skipped since they are considered invalid environment variable names.",
                    invalid.join(", "),
                    r.name
                ));
            }
        } else if let Some(r) = &from.secret_ref {
            let Some(secret) = sources.secrets.get(&r.name) else {
                if r.optional == Some(true) {
                    continue;
                }
                return Err(EnvError::SecretNotFound {
                    name: r.name.clone(),
                });
            };
            for (k, v) in secret.data.iter().flatten() {
                let key = format!("{prefix}{k}");
                if is_env_var_name(&key) {
                    env.set(&key, String::from_utf8_lossy(&v.0).into_owned());
                } else {
                    invalid.push(key);
                }
            }
            if !invalid.is_empty() {
                invalid.sort();
                warnings.push(format!(
                    "Keys [{}] from the EnvFrom secret {namespace}/{} were skipped since they are considered invalid environment variable names.",
                    invalid.join(", "),
                    r.name
                ));
            }
        }
    }

    for var in container.env.iter().flatten() {
        let literal = var.value.as_deref().unwrap_or("");
        let value = if !literal.is_empty() {
            expand(literal, |name| {
                env.values
                    .get(name)
                    .or_else(|| service_env.get(name))
                    .cloned()
            })
        } else if let Some(from) = &var.value_from {
            if let Some(field) = &from.field_ref {
                pod_field(pod, &var.name, &field.field_path, sources)?
            } else if let Some(res) = &from.resource_field_ref {
                let field_err = |source| EnvError::Field {
                    name: var.name.clone(),
                    source,
                };
                // another container's resources when containerName says so
                let target = match res.container_name.as_deref().filter(|n| !n.is_empty()) {
                    Some(other) => fieldpath::find_container(pod, other).ok_or_else(|| {
                        field_err(FieldError::ContainerNotFound(other.to_string()))
                    })?,
                    None => container,
                };
                fieldpath::container_resource(res, target, sources.node).map_err(field_err)?
            } else if let Some(r) = &from.config_map_key_ref {
                let optional = r.optional == Some(true);
                let Some(cm) = sources.config_maps.get(&r.name) else {
                    if optional {
                        continue;
                    }
                    return Err(EnvError::ConfigMapNotFound {
                        name: r.name.clone(),
                    });
                };
                match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                    Some(v) => v.clone(),
                    None if optional => continue,
                    None => {
                        return Err(EnvError::ConfigMapKeyNotFound {
                            namespace,
                            name: r.name.clone(),
                            key: r.key.clone(),
                        });
                    }
                }
            } else if let Some(r) = &from.secret_key_ref {
                let optional = r.optional == Some(true);
                let Some(secret) = sources.secrets.get(&r.name) else {
                    if optional {
                        continue;
                    }
                    return Err(EnvError::SecretNotFound {
                        name: r.name.clone(),
                    });
                };
                match secret.data.as_ref().and_then(|d| d.get(&r.key)) {
                    Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                    None if optional => continue,
                    None => {
                        return Err(EnvError::SecretKeyNotFound {
                            namespace,
                            name: r.name.clone(),
                            key: r.key.clone(),
                        });
                    }
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        env.set(&var.name, value);
    }

    let mut vars: Vec<EnvVar> = env
        .order
        .iter()
        .map(|name| EnvVar {
            name: name.clone(),
            value: env.values[name].clone(),
        })
        .collect();
    for (name, value) in service_env {
        if !env.values.contains_key(&name) {
            vars.push(EnvVar { name, value });
        }
    }
    Ok(ResolvedEnv { vars, warnings })
}

/// A `fieldRef` for an environment variable: metadata fields as in volumes,
/// plus spec.nodeName, spec.serviceAccountName, status.hostIP(s) and
/// status.podIP(s).
fn pod_field(
    pod: &Pod,
    var: &str,
    path: &str,
    sources: &EnvSources<'_>,
) -> Result<String, EnvError> {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let pod_ips: &[String] = if sources.pod_ips.is_empty() && host_network {
        &sources.node.host_ips
    } else {
        sources.pod_ips
    };
    match path {
        "spec.nodeName" => Ok(spec.and_then(|s| s.node_name.clone()).unwrap_or_default()),
        "spec.serviceAccountName" => Ok(spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default()),
        "status.hostIP" => {
            sources
                .node
                .host_ips
                .first()
                .cloned()
                .ok_or_else(|| EnvError::NoHostIp {
                    name: var.to_string(),
                })
        }
        "status.hostIPs" => {
            if sources.node.host_ips.is_empty() {
                return Err(EnvError::NoHostIp {
                    name: var.to_string(),
                });
            }
            Ok(sources.node.host_ips.join(","))
        }
        "status.podIP" => Ok(pod_ips.first().cloned().unwrap_or_default()),
        "status.podIPs" => Ok(pod_ips.join(",")),
        _ => fieldpath::metadata_field(pod, path).map_err(|source| EnvError::Field {
            name: var.to_string(),
            source,
        }),
    }
}

/// Upstream's `IsEnvVarName`: `[-._a-zA-Z][-._a-zA-Z0-9]*`.
pub fn is_env_var_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    let Some(first) = bytes.next() else {
        return false;
    };
    let ok = |b: u8| b.is_ascii_alphabetic() || matches!(b, b'-' | b'.' | b'_');
    ok(first) && bytes.all(|b| ok(b) || b.is_ascii_digit())
}

/// The Service variables a pod in `namespace` gets (upstream's
/// `getServiceEnvVarMap` and `envvars.FromServices`): Services with a cluster
/// IP in the namespace when service links are on, and always the `kubernetes`
/// Service of `default`. Sorted by name.
pub fn service_env(
    namespace: &str,
    service_links: bool,
    services: &[Service],
) -> BTreeMap<String, String> {
    let mut chosen: BTreeMap<String, &Service> = BTreeMap::new();
    for svc in services {
        let Some(name) = svc.metadata.name.as_deref() else {
            continue;
        };
        if cluster_ip(svc).is_none() {
            continue;
        }
        let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
        if ns == "default" && name == "kubernetes" {
            chosen.entry(name.to_string()).or_insert(svc);
        } else if ns == namespace && service_links {
            chosen.insert(name.to_string(), svc);
        }
    }
    let mut out = BTreeMap::new();
    for (name, svc) in chosen {
        let Some(ip) = cluster_ip(svc) else { continue };
        let ports = svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_deref())
            .unwrap_or_default();
        let Some(first) = ports.first() else {
            // a Service with a cluster IP always has a port; skip one without
            continue;
        };
        let prefix = env_name(&name);
        out.insert(format!("{prefix}_SERVICE_HOST"), ip.to_string());
        out.insert(format!("{prefix}_SERVICE_PORT"), first.port.to_string());
        for port in ports {
            if let Some(port_name) = port.name.as_deref().filter(|n| !n.is_empty()) {
                out.insert(
                    format!("{prefix}_SERVICE_PORT_{}", env_name(port_name)),
                    port.port.to_string(),
                );
            }
        }
        for (i, port) in ports.iter().enumerate() {
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            let lower = protocol.to_lowercase();
            let host_port = if ip.contains(':') {
                format!("[{ip}]:{}", port.port)
            } else {
                format!("{ip}:{}", port.port)
            };
            let url = format!("{lower}://{host_port}");
            if i == 0 {
                out.insert(format!("{prefix}_PORT"), url.clone());
            }
            let port_prefix = format!("{prefix}_PORT_{}_{}", port.port, protocol.to_uppercase());
            out.insert(format!("{port_prefix}_PROTO"), lower);
            out.insert(format!("{port_prefix}_PORT"), port.port.to_string());
            out.insert(format!("{port_prefix}_ADDR"), ip.to_string());
            out.insert(port_prefix, url);
        }
    }
    out
}

fn cluster_ip(svc: &Service) -> Option<&str> {
    let ip = svc.spec.as_ref()?.cluster_ip.as_deref()?;
    (!ip.is_empty() && ip != "None").then_some(ip)
}

/// `my-svc` → `MY_SVC`.
fn env_name(s: &str) -> String {
    s.replace('-', "_").to_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml<T: serde::de::DeserializeOwned>(s: &str) -> T {
        serde_yaml::from_str(s).unwrap()
    }

    struct World {
        config_maps: BTreeMap<String, ConfigMap>,
        secrets: BTreeMap<String, Secret>,
        services: Vec<Service>,
        node: NodeInfo,
        pod_ips: Vec<String>,
    }

    impl World {
        fn new() -> Self {
            let cm: ConfigMap = yaml(
                "metadata: {name: app-config, namespace: shop}\n\
                 data: {LOG_LEVEL: debug, 'index.html': '<p>', 1bad: x, 'has space': y, GREETING: hello}",
            );
            let secret: Secret = yaml(
                "metadata: {name: db, namespace: shop}\n\
                 data: {password: czNjcmV0, user: YWRtaW4=}",
            );
            let svc = |ns: &str, name: &str, ip: &str, ports: &str| -> Service {
                yaml(&format!(
                    "metadata: {{name: {name}, namespace: {ns}}}\nspec: {{clusterIP: '{ip}', ports: {ports}}}"
                ))
            };
            World {
                config_maps: [("app-config".to_string(), cm)].into(),
                secrets: [("db".to_string(), secret)].into(),
                services: vec![
                    svc(
                        "default",
                        "kubernetes",
                        "10.43.0.1",
                        "[{name: https, port: 443}]",
                    ),
                    svc(
                        "shop",
                        "redis-master",
                        "10.43.0.11",
                        "[{port: 6379}, {name: metrics, port: 9121, protocol: UDP}]",
                    ),
                    svc("shop", "headless", "None", "[{port: 80}]"),
                    svc("other", "elsewhere", "10.43.0.12", "[{port: 80}]"),
                    svc("shop", "v6", "fd00::10", "[{port: 80}]"),
                ],
                node: NodeInfo {
                    host_ips: vec!["192.168.1.20".into(), "fd00::20".into()],
                    allocatable: [
                        (
                            "cpu".to_string(),
                            k8s_openapi::apimachinery::pkg::api::resource::Quantity("4".into()),
                        ),
                        (
                            "memory".to_string(),
                            k8s_openapi::apimachinery::pkg::api::resource::Quantity("2Gi".into()),
                        ),
                    ]
                    .into(),
                    memory_capacity: 2 << 30,
                },
                pod_ips: vec!["10.42.0.7".into(), "fd00:42::7".into()],
            }
        }

        fn sources(&self) -> EnvSources<'_> {
            EnvSources {
                config_maps: &self.config_maps,
                secrets: &self.secrets,
                services: &self.services,
                node: &self.node,
                pod_ips: &self.pod_ips,
            }
        }
    }

    fn pod_with(container: &str) -> Pod {
        yaml(&format!(
            r#"
metadata:
  name: web-0
  namespace: shop
  uid: 11111111-2222
  labels: {{app: web}}
  annotations: {{build: "42"}}
spec:
  nodeName: pi-1
  serviceAccountName: web
  containers:
  - {container}
"#
        ))
    }

    fn resolve(container: &str) -> Result<ResolvedEnv, EnvError> {
        let w = World::new();
        let pod = pod_with(container);
        let c = pod.spec.as_ref().unwrap().containers[0].clone();
        resolve_env(&pod, &c, &w.sources())
    }

    #[test]
    fn values_and_expansion() {
        let env = resolve(
            r#"{name: app, env: [
                {name: A, value: one},
                {name: B, value: "$(A)-two"},
                {name: C, value: "$(LATER)"},
                {name: LATER, value: x},
                {name: D, value: "$$(A) $(REDIS_MASTER_SERVICE_HOST)"},
                {name: E},
                {name: A, value: again}
            ]}"#,
        )
        .unwrap();
        assert_eq!(env.get("A"), Some("again"));
        assert_eq!(env.get("B"), Some("one-two"));
        // only variables defined before are expanded
        assert_eq!(env.get("C"), Some("$(LATER)"));
        assert_eq!(env.get("D"), Some("$(A) 10.43.0.11"));
        assert_eq!(env.get("E"), Some(""));
        // a redefinition keeps the first position
        let names: Vec<&str> = env.vars.iter().take(6).map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["A", "B", "C", "LATER", "D", "E"]);
    }

    #[test]
    fn value_from_configmap_and_secret() {
        let env = resolve(
            r#"{name: app, env: [
                {name: LEVEL, valueFrom: {configMapKeyRef: {name: app-config, key: LOG_LEVEL}}},
                {name: PASS, valueFrom: {secretKeyRef: {name: db, key: password}}},
                {name: OPT1, valueFrom: {configMapKeyRef: {name: app-config, key: nope, optional: true}}},
                {name: OPT2, valueFrom: {configMapKeyRef: {name: missing, key: k, optional: true}}},
                {name: OPT3, valueFrom: {secretKeyRef: {name: db, key: nope, optional: true}}},
                {name: OPT4, valueFrom: {secretKeyRef: {name: missing, key: k, optional: true}}}
            ]}"#,
        )
        .unwrap();
        assert_eq!(env.get("LEVEL"), Some("debug"));
        assert_eq!(env.get("PASS"), Some("s3cret"));
        for skipped in ["OPT1", "OPT2", "OPT3", "OPT4"] {
            assert_eq!(env.get(skipped), None, "{skipped} is optional and missing");
        }
    }

    #[test]
    fn missing_references_are_upstream_errors() {
        let cases: &[(&str, &str)] = &[
            (
                "{name: X, valueFrom: {configMapKeyRef: {name: app-config, key: nope}}}",
                "couldn't find key nope in ConfigMap shop/app-config",
            ),
            (
                "{name: X, valueFrom: {configMapKeyRef: {name: app-cfg, key: k}}}",
                "configmap \"app-cfg\" not found",
            ),
            (
                "{name: X, valueFrom: {secretKeyRef: {name: db, key: nope, optional: false}}}",
                "couldn't find key nope in Secret shop/db",
            ),
            (
                "{name: X, valueFrom: {secretKeyRef: {name: dbx, key: k}}}",
                "secret \"dbx\" not found",
            ),
            (
                "{name: X, valueFrom: {fieldRef: {fieldPath: spec.hostname}}}",
                "env X: unsupported fieldPath: spec.hostname",
            ),
            (
                "{name: X, valueFrom: {resourceFieldRef: {containerName: ghost, resource: limits.cpu}}}",
                "env X: container ghost not found",
            ),
            (
                "{name: X, valueFrom: {resourceFieldRef: {resource: limits.gpu}}}",
                "env X: unsupported container resource : limits.gpu",
            ),
        ];
        for (var, want) in cases {
            let err = resolve(&format!("{{name: app, env: [{var}]}}"))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(want), "{var}: {err}");
        }
        let err = resolve("{name: app, envFrom: [{configMapRef: {name: nope}}]}").unwrap_err();
        assert_eq!(err.to_string(), "configmap \"nope\" not found");
        let err = resolve("{name: app, envFrom: [{secretRef: {name: nope}}]}").unwrap_err();
        assert_eq!(err.to_string(), "secret \"nope\" not found");
    }

    #[test]
    fn field_refs() {
        let env = resolve(
            r#"{name: app, env: [
                {name: NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}},
                {name: NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}},
                {name: UID, valueFrom: {fieldRef: {fieldPath: metadata.uid}}},
                {name: APP, valueFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}},
                {name: BUILD, valueFrom: {fieldRef: {fieldPath: "metadata.annotations['build']"}}},
                {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}},
                {name: SA, valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}},
                {name: HOST_IP, valueFrom: {fieldRef: {fieldPath: status.hostIP}}},
                {name: HOST_IPS, valueFrom: {fieldRef: {fieldPath: status.hostIPs}}},
                {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}},
                {name: POD_IPS, valueFrom: {fieldRef: {fieldPath: status.podIPs}}}
            ]}"#,
        )
        .unwrap();
        let want = [
            ("NAME", "web-0"),
            ("NS", "shop"),
            ("UID", "11111111-2222"),
            ("APP", "web"),
            ("BUILD", "42"),
            ("NODE", "pi-1"),
            ("SA", "web"),
            ("HOST_IP", "192.168.1.20"),
            ("HOST_IPS", "192.168.1.20,fd00::20"),
            ("POD_IP", "10.42.0.7"),
            ("POD_IPS", "10.42.0.7,fd00:42::7"),
        ];
        for (k, v) in want {
            assert_eq!(env.get(k), Some(v), "{k}");
        }
    }

    #[test]
    fn resource_field_refs_with_divisors_and_allocatable_defaults() {
        let env = resolve(
            r#"{name: app,
                resources: {requests: {cpu: 250m, memory: 64Mi}, limits: {memory: 128Mi}},
                env: [
                {name: CPU_LIMIT, valueFrom: {resourceFieldRef: {resource: limits.cpu}}},
                {name: CPU_LIMIT_M, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 1m}}},
                {name: CPU_REQ, valueFrom: {resourceFieldRef: {resource: requests.cpu}}},
                {name: CPU_REQ_M, valueFrom: {resourceFieldRef: {resource: requests.cpu, divisor: 1m}}},
                {name: MEM_LIMIT, valueFrom: {resourceFieldRef: {resource: limits.memory}}},
                {name: MEM_LIMIT_MI, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}},
                {name: MEM_REQ_KI, valueFrom: {resourceFieldRef: {resource: requests.memory, divisor: 1Ki}}},
                {name: MEM_REQ_G, valueFrom: {resourceFieldRef: {resource: requests.memory, divisor: 1G}}},
                {name: ZERO_DIV, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: "0"}}},
                {name: OWN, valueFrom: {resourceFieldRef: {containerName: app, resource: requests.cpu, divisor: 1m}}}
            ]}"#,
        )
        .unwrap();
        let want = [
            // no cpu limit: the node's allocatable 4 cpus
            ("CPU_LIMIT", "4"),
            ("CPU_LIMIT_M", "4000"),
            // 250m rounds up to 1 cpu
            ("CPU_REQ", "1"),
            ("CPU_REQ_M", "250"),
            ("MEM_LIMIT", "134217728"),
            ("MEM_LIMIT_MI", "128"),
            ("MEM_REQ_KI", "65536"),
            ("MEM_REQ_G", "1"),
            ("ZERO_DIV", "134217728"),
            ("OWN", "250"),
        ];
        for (k, v) in want {
            assert_eq!(env.get(k), Some(v), "{k}");
        }
    }

    #[test]
    fn env_from_with_prefix_skips_invalid_names() {
        let env = resolve(
            r#"{name: app,
                envFrom: [{configMapRef: {name: app-config}}, {prefix: DB_, secretRef: {name: db}},
                          {configMapRef: {name: absent, optional: true}}],
                env: [{name: GREETING, value: "$(GREETING), $(DB_user)"}]}"#,
        )
        .unwrap();
        assert_eq!(env.get("LOG_LEVEL"), Some("debug"));
        assert_eq!(env.get("DB_password"), Some("s3cret"));
        // dots are allowed in names; a leading digit is not
        assert_eq!(env.get("index.html"), Some("<p>"));
        assert_eq!(env.get("1bad"), None);
        // env overrides envFrom, and sees it when expanding
        assert_eq!(env.get("GREETING"), Some("hello, admin"));
        assert_eq!(
            env.warnings,
            [
                "Keys [1bad, has space] from the EnvFrom configMap shop/app-config were skipped since they are considered invalid environment variable names."
            ]
        );
    }

    #[test]
    fn service_links() {
        let env = resolve("{name: app}").unwrap();
        let want = [
            ("KUBERNETES_SERVICE_HOST", "10.43.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
            ("KUBERNETES_PORT", "tcp://10.43.0.1:443"),
            ("KUBERNETES_PORT_443_TCP", "tcp://10.43.0.1:443"),
            ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
            ("KUBERNETES_PORT_443_TCP_PORT", "443"),
            ("KUBERNETES_PORT_443_TCP_ADDR", "10.43.0.1"),
            ("REDIS_MASTER_SERVICE_HOST", "10.43.0.11"),
            ("REDIS_MASTER_SERVICE_PORT", "6379"),
            ("REDIS_MASTER_SERVICE_PORT_METRICS", "9121"),
            ("REDIS_MASTER_PORT", "tcp://10.43.0.11:6379"),
            ("REDIS_MASTER_PORT_9121_UDP", "udp://10.43.0.11:9121"),
            ("REDIS_MASTER_PORT_9121_UDP_PROTO", "udp"),
            ("V6_PORT", "tcp://[fd00::10]:80"),
            ("V6_PORT_80_TCP_ADDR", "fd00::10"),
        ];
        for (k, v) in want {
            assert_eq!(env.get(k), Some(v), "{k}");
        }
        // headless and other namespaces' services give nothing
        assert!(
            env.vars
                .iter()
                .all(|v| !v.name.starts_with("HEADLESS_") && !v.name.starts_with("ELSEWHERE_"))
        );

        // enableServiceLinks: false keeps only the kubernetes service
        let w = World::new();
        let mut pod =
            pod_with("{name: app, env: [{name: REDIS_MASTER_SERVICE_HOST, value: mine}]}");
        let c = pod.spec.as_ref().unwrap().containers[0].clone();
        let env = resolve_env(&pod, &c, &w.sources()).unwrap();
        // the container's own definition wins over the service variable
        assert_eq!(env.get("REDIS_MASTER_SERVICE_HOST"), Some("mine"));
        assert_eq!(
            env.vars
                .iter()
                .filter(|v| v.name == "REDIS_MASTER_SERVICE_HOST")
                .count(),
            1
        );
        pod.spec.as_mut().unwrap().enable_service_links = Some(false);
        let env = resolve_env(&pod, &c, &w.sources()).unwrap();
        assert_eq!(env.get("KUBERNETES_SERVICE_HOST"), Some("10.43.0.1"));
        assert_eq!(env.get("REDIS_MASTER_SERVICE_PORT"), None);
    }

    #[test]
    fn env_var_names() {
        for good in ["A", "a_b", "_x", "-x", ".x", "x.y-z_1", "MY_VAR2"] {
            assert!(is_env_var_name(good), "{good}");
        }
        for bad in ["", "1x", "a b", "a=b", "ü", "index/html"] {
            assert!(!is_env_var_name(bad), "{bad}");
        }
    }

    #[test]
    fn host_network_pods_see_the_node_ip_as_pod_ip() {
        let mut w = World::new();
        w.pod_ips.clear();
        let mut pod = pod_with(
            "{name: app, env: [{name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}]}",
        );
        pod.spec.as_mut().unwrap().host_network = Some(true);
        let c = pod.spec.as_ref().unwrap().containers[0].clone();
        let env = resolve_env(&pod, &c, &w.sources()).unwrap();
        assert_eq!(env.get("POD_IP"), Some("192.168.1.20"));
    }
}
