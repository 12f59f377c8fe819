//! `kedge token` against a real `kedge server`: create, list and delete join tokens, as
//! bootstrap-token Secrets that kubectl sees.

mod common;

use std::process::{Command, Output};

use common::Cluster;

fn token(cluster: &Cluster, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kedge"))
        .arg("token")
        .args(args)
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .arg("--data-dir")
        .arg(&cluster.data_dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("run kedge token")
}

#[track_caller]
fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "kedge token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn create_list_and_delete_tokens() {
    let cluster = Cluster::sqlite_without_controllers();
    let ca = std::fs::read(cluster.data_dir.join("server/tls/server-ca.crt")).unwrap();
    let hash = kedge_pki::ca_hash(&ca);

    let printed = ok(token(&cluster, &["create", "--description", "for the pis"]));
    let printed = printed.trim();
    let prefix = format!("K10{hash}::");
    assert!(printed.starts_with(&prefix), "{printed}");
    let (id, secret) = printed[prefix.len()..].split_once('.').unwrap();
    assert_eq!((id.len(), secret.len()), (6, 16), "{printed}");

    // The upstream Secret layout, visible to kubectl.
    let name = format!("bootstrap-token-{id}");
    let ty = cluster.ok(&[
        "-n",
        "kube-system",
        "get",
        "secret",
        &name,
        "-o",
        "jsonpath={.type}",
    ]);
    assert_eq!(ty, "bootstrap.kubernetes.io/token");

    // A given token, never expiring.
    let given = ok(token(
        &cluster,
        &["create", "zzzzzz.0123456789abcdef", "--ttl", "0"],
    ));
    assert_eq!(given.trim(), format!("{prefix}zzzzzz.0123456789abcdef"));
    let again = token(&cluster, &["create", "zzzzzz.0123456789abcdef"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let listed = ok(token(&cluster, &["list"]));
    let lines: Vec<&str> = listed.lines().collect();
    assert!(lines[0].starts_with("TOKEN"), "{listed}");
    let mine = lines.iter().find(|l| l.starts_with(id)).expect(&listed);
    assert!(mine.contains("23h") || mine.contains("24h"), "{listed}");
    assert!(mine.ends_with("for the pis"), "{listed}");
    let forever = lines
        .iter()
        .find(|l| l.starts_with("zzzzzz"))
        .expect(&listed);
    assert!(forever.contains("<forever>"), "{listed}");
    assert!(!listed.contains(secret), "list shows a secret: {listed}");
    assert!(!listed.contains("0123456789abcdef"), "{listed}");

    ok(token(&cluster, &["delete", id, "zzzzzz.0123456789abcdef"]));
    let listed = ok(token(&cluster, &["list"]));
    assert!(
        !listed.contains(id) && !listed.contains("zzzzzz"),
        "{listed}"
    );
    let missing = token(&cluster, &["delete", id]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));

    // The cluster's server token is not revoked this way (every server would store it
    // again when it starts).
    let server = std::fs::read_to_string(cluster.data_dir.join("server/token")).unwrap();
    let refused = token(&cluster, &["delete", server.trim()]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("the cluster's server token"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
