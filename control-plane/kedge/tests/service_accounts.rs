//! Service-account tokens on the real `kedge server`: the TokenRequest API through real
//! kubectl (`kubectl create token`), the tokens as kubectl's bearer tokens
//! (`kubectl auth whoami`), a token bound to a pod dying with the pod, and a node asking
//! over its tunnel (`NodeTokens`) for tokens of its own pods only.
//!
//! The nodes here join with the agent's own bootstrap code over the real tunnel (no
//! agent process: two agents of one node would take the tunnel from each other).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use common::Cluster;
use common::agent::server_token;
use kedge_proto::v1::ServiceAccountTokenRequest;
use kedge_proto::v1::node_tokens_client::NodeTokensClient;

/// kubectl with nothing but a bearer token (no client certificate, which would win).
fn as_token(cluster: &Cluster, token: &str, args: &[&str]) -> std::process::Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(common::KUBECTL)
        .arg(format!("--server={}", cluster.server_url()))
        .arg(format!(
            "--certificate-authority={}",
            cluster.data_dir.join("server/tls/server-ca.crt").display()
        ))
        .arg(format!("--token={token}"))
        .args(args)
        .env("KUBECONFIG", "/dev/null")
        .env("HOME", home.path())
        .output()
        .unwrap()
}

/// `kubectl auth whoami` as `token`: the user name, or the error.
fn whoami(cluster: &Cluster, token: &str) -> Result<serde_json::Value, String> {
    let out = as_token(cluster, token, &["auth", "whoami", "-o", "json"]);
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The claims of a JWT, unverified (the server verified them).
fn claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("a jwt");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn kubectl_create_token_gives_bearer_tokens_that_die_with_their_pod() {
    let cluster = Cluster::sqlite();
    cluster.wait_for(
        &["get", "serviceaccount", "default", "-o", "name"],
        "the default ServiceAccount",
        Duration::from_secs(30),
        |s| s.contains("default"),
    );
    let token = cluster
        .ok(&["create", "token", "default"])
        .trim()
        .to_string();
    let me = whoami(&cluster, &token).unwrap();
    assert_eq!(
        me["status"]["userInfo"]["username"],
        "system:serviceaccount:default:default"
    );
    let groups = me["status"]["userInfo"]["groups"].to_string();
    for group in [
        "system:serviceaccounts",
        "system:serviceaccounts:default",
        "system:authenticated",
    ] {
        assert!(groups.contains(&format!("\"{group}\"")), "{groups}");
    }
    let c = claims(&token);
    assert_eq!(c["sub"], "system:serviceaccount:default:default");
    assert_eq!(c["iss"], "https://kubernetes.default.svc.cluster.local");
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        3600
    );
    // The ServiceAccount's uid, as upstream's claim carries it.
    let uid = cluster.ok(&["get", "sa", "default", "-o", "jsonpath={.metadata.uid}"]);
    assert_eq!(c["kubernetes.io"]["serviceaccount"]["uid"], uid.as_str());
    // It is only a service account: no more than upstream's basic roles allow.
    let out = as_token(&cluster, &token, &["get", "secrets"]);
    assert!(!out.status.success());

    // Bound to a pod: the claims name it, and deleting the pod ends the token.
    cluster.ok_stdin(
        &["apply", "-f", "-"],
        "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"app\"},\
         \"spec\":{\"containers\":[{\"name\":\"c\",\"image\":\"busybox\"}]}}",
    );
    let bound = cluster
        .ok(&[
            "create",
            "token",
            "default",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            "app",
            "--duration",
            "2h",
        ])
        .trim()
        .to_string();
    let c = claims(&bound);
    assert_eq!(c["kubernetes.io"]["pod"]["name"], "app");
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        7200
    );
    whoami(&cluster, &bound).unwrap();
    cluster.ok(&["delete", "pod", "app", "--grace-period=0", "--force"]);
    let err = whoami(&cluster, &bound).unwrap_err();
    assert!(
        err.contains("Unauthorized") || err.contains("provide credentials"),
        "{err}"
    );
    // The unbound token lives on.
    whoami(&cluster, &token).unwrap();

    // Upstream's refusals.
    let err = cluster.fails(&["create", "token", "default", "--duration", "5m"]);
    assert!(
        err.contains("may not specify a duration less than 10 minutes"),
        "{err}"
    );
    let err = cluster.fails(&["create", "token", "nobody"]);
    assert!(
        err.contains("serviceaccounts \"nobody\" not found"),
        "{err}"
    );
    // A forged token (another key) is nobody.
    let forged = {
        let parts: Vec<&str> = token.split('.').collect();
        let mut sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[2])
            .unwrap();
        sig[0] ^= 1;
        format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig)
        )
    };
    assert!(whoami(&cluster, &forged).is_err());
}

/// Joins `node` with the agent's own bootstrap and dials the tunnel with its certificate.
async fn node_tokens(
    cluster: &Cluster,
    dir: &Path,
    node: &str,
) -> (
    kedge_tunnel::TunnelClient,
    NodeTokensClient<tonic::transport::Channel>,
) {
    let addr = cluster.api_addr();
    let options = kedge_agent::bootstrap::BootstrapOptions {
        server: cluster.server_url(),
        token: server_token(cluster),
        node_name: node.to_string(),
        data_dir: dir.to_path_buf(),
        node_password_file: dir.join("password"),
        insecure_skip_ca_hash: false,
        tunnel: kedge_tunnel::TunnelConfig::default(),
        connect_timeout: Duration::from_secs(10),
    };
    let creds = kedge_agent::bootstrap::bootstrap(&options, SystemTime::now())
        .await
        .expect("join");
    let tunnel = kedge_tunnel::TunnelClient::start(kedge_tunnel::ClientOptions {
        quic_addr: addr,
        tcp_addr: addr,
        config: kedge_tunnel::TunnelConfig::default(),
        tls: creds.client_tls("127.0.0.1").unwrap(),
    })
    .unwrap();
    let connection = tokio::time::timeout(Duration::from_secs(20), tunnel.connected())
        .await
        .expect("the tunnel connects")
        .unwrap();
    let client = NodeTokensClient::new(kedge_proto::transport::channel(connection));
    (tunnel, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_gets_tokens_for_its_own_pods_only() {
    let cluster = Cluster::sqlite();
    cluster.wait_for(
        &["get", "serviceaccount", "default", "-o", "name"],
        "the default ServiceAccount",
        Duration::from_secs(30),
        |s| s.contains("default"),
    );
    for (pod, node) in [("mine", "pi-1"), ("theirs", "pi-2")] {
        cluster.ok_stdin(
            &["apply", "-f", "-"],
            &format!(
                "{{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{{\"name\":\"{pod}\"}},\
                 \"spec\":{{\"nodeName\":\"{node}\",\"containers\":[{{\"name\":\"c\",\"image\":\"busybox\"}}]}}}}"
            ),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let (_tunnel, mut client) = node_tokens(&cluster, dir.path(), "pi-1").await;
    let request = |pod: &str| ServiceAccountTokenRequest {
        namespace: "default".into(),
        service_account: "default".into(),
        pod_name: pod.into(),
        pod_uid: String::new(),
        audiences: Vec::new(),
        expiration_seconds: 0,
    };

    let issued = client
        .request_service_account_token(request("mine"))
        .await
        .expect("a token for the node's own pod")
        .into_inner();
    let c = claims(&issued.token);
    assert_eq!(c["kubernetes.io"]["pod"]["name"], "mine");
    assert_eq!(c["kubernetes.io"]["node"]["name"], "pi-1");
    assert_eq!(issued.expiration_unix, c["exp"].as_i64().unwrap());
    let token = issued.token.clone();
    let me = tokio::task::block_in_place(|| whoami(&cluster, &token)).unwrap();
    assert_eq!(
        me["status"]["userInfo"]["username"],
        "system:serviceaccount:default:default"
    );

    let refused = client
        .request_service_account_token(request("theirs"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("not bound to that node"),
        "{refused:?}"
    );
    let refused = client
        .request_service_account_token(request("absent"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound, "{refused:?}");

    // Over the HTTP API a node's certificate still gets nothing.
    let agent = dir.path().join("agent");
    let out = Command::new(common::KUBECTL)
        .arg(format!("--server={}", cluster.server_url()))
        .arg(format!(
            "--certificate-authority={}",
            agent.join("server-ca.crt").display()
        ))
        .arg(format!(
            "--client-certificate={}",
            agent.join("client-node.crt").display()
        ))
        .arg(format!(
            "--client-key={}",
            agent.join("client-node.key").display()
        ))
        .args(["create", "token", "default"])
        .env("KUBECONFIG", "/dev/null")
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("forbidden"), "{err}");
}
