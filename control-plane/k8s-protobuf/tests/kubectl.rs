//! Bodies captured from real kubectl 1.32 (`tools/capture-kubectl.py`):
//! each `NAME.pb` is the protobuf body kubectl POSTed, each `NAME.json` the
//! same object from `kubectl ... --dry-run=client -o json`, which is
//! upstream's JSON encoding of it. Decoding the first must give the second.

use std::path::Path;

use kedge_k8s_protobuf::{DecodeError, decode};
use serde_json::{Value, json};

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kubectl")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn check(name: &str) {
    let body = fixture(&format!("{name}.pb"));
    let expected: Value = serde_json::from_slice(&fixture(&format!("{name}.json"))).unwrap();
    let decoded = decode(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(decoded, expected, "{name}:\n{decoded:#}");
}

#[test]
fn namespace() {
    check("namespace");
}

#[test]
fn configmap_with_data_and_binary_data() {
    check("configmap");
}

#[test]
fn secrets() {
    check("secret-generic");
    check("secret-docker");
}

#[test]
fn deployments() {
    // --replicas=0: a pointer's zero must survive.
    check("deployment");
    check("deployment-multi");
}

#[test]
fn job_and_cronjob() {
    check("job");
    check("cronjob");
}

#[test]
fn services() {
    // targetPort as a number and as a name.
    check("service-clusterip");
    check("service-nodeport");
    check("service-externalname");
    check("service-headless");
}

#[test]
fn serviceaccount() {
    check("serviceaccount");
}

/// `kubectl create token` has no client dry run; the expected JSON is
/// written by hand from the command line and the Go types: `boundObjectRef`
/// is a pointer without `omitempty`, so Go writes its `nil` as `null`.
#[test]
fn token_request() {
    let decoded = decode(&fixture("token.pb")).unwrap();
    let expected = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "metadata": {"creationTimestamp": null},
        "spec": {"audiences": ["api", "vault"], "expirationSeconds": 600, "boundObjectRef": null},
        "status": {"token": "", "expirationTimestamp": null},
    });
    assert_eq!(decoded, expected, "{decoded:#}");
}

/// `kubectl create quota`: a real body of a kind kedge does not serve.
#[test]
fn unserved_kind_is_named() {
    match decode(&fixture("quota.pb")) {
        Err(DecodeError::UnknownKind { api_version, kind }) => {
            assert_eq!(
                (api_version.as_str(), kind.as_str()),
                ("v1", "ResourceQuota")
            );
        }
        other => panic!("expected an unknown kind, got {other:?}"),
    }
    // The fixture itself is sound: its JSON twin names the same kind.
    let json: Value = serde_json::from_slice(&fixture("quota.json")).unwrap();
    assert_eq!(json["kind"], "ResourceQuota");
}
