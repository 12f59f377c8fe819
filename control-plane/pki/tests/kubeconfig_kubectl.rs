//! The kubeconfig kedge writes, read back by the real kubectl.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kedge_pki::{DEFAULT_KUBECONFIG_MODE, PkiOptions, ServerPki, write_kubeconfig};

const KUBECTL: &str = "/usr/bin/kubectl";

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Runs `kubectl config view --raw` on `kubeconfig` with a jsonpath and returns stdout.
fn kubectl_view(kubeconfig: &Path, home: &Path, jsonpath: &str) -> String {
    assert!(
        Path::new(KUBECTL).exists(),
        "{KUBECTL} is missing: this test needs kubectl (v1.32) to check the kubeconfig"
    );
    let output = Command::new(KUBECTL)
        .args(["config", "view", "--raw", "--kubeconfig"])
        .arg(kubeconfig)
        .arg("-o")
        .arg(format!("jsonpath={jsonpath}"))
        .env("HOME", home)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap_or_else(|e| panic!("running {KUBECTL}: {e}"));
    assert!(
        output.status.success(),
        "kubectl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn kubectl_reads_the_kubeconfig() {
    let tmp = tempfile::tempdir().unwrap();
    let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let pki =
        ServerPki::load_or_create(&tmp.path().join("tls"), &PkiOptions::default(), now).unwrap();
    // Parent directories that do not exist yet, like /etc/rancher/k3s on a new host.
    let path = tmp.path().join("etc").join("kedge").join("kedge.yaml");
    let url = "https://127.0.0.1:6443";

    write_kubeconfig(
        &path,
        DEFAULT_KUBECONFIG_MODE,
        url,
        pki.server_ca_pem(),
        pki.admin_cert_pem(),
        pki.admin_key_pem(),
    )
    .unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&tmp.path().join("etc").join("kedge")), 0o755);
    assert_eq!(mode(&tmp.path().join("etc")), 0o755);

    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let b64 = |pem: &str| STANDARD.encode(pem);
    assert_eq!(
        kubectl_view(&path, home, "{.clusters[0].cluster.server}"),
        url
    );
    assert_eq!(
        kubectl_view(&path, home, "{.users[0].user.client-certificate-data}"),
        b64(pki.admin_cert_pem())
    );
    assert_eq!(
        kubectl_view(&path, home, "{.users[0].user.client-key-data}"),
        b64(pki.admin_key_pem())
    );
    assert_eq!(
        kubectl_view(
            &path,
            home,
            "{.clusters[0].cluster.certificate-authority-data}"
        ),
        b64(pki.server_ca_pem())
    );
    assert_eq!(
        kubectl_view(
            &path,
            home,
            "{.current-context} {.contexts[0].name} {.contexts[0].context.cluster} \
             {.contexts[0].context.user} {.clusters[0].name} {.users[0].name}"
        ),
        "default default default default default default"
    );
}

#[test]
fn an_existing_kubeconfig_is_replaced_with_the_requested_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let path = tmp.path().join("kedge.yaml");
    fs::write(&path, "old").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();

    write_kubeconfig(&path, 0o600, "https://[::1]:6443", "CA", "CERT", "KEY").unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(
        kubectl_view(&path, home.path(), "{.clusters[0].cluster.server}"),
        "https://[::1]:6443"
    );

    // --write-kubeconfig-mode 644, as K3s allows.
    write_kubeconfig(&path, 0o644, "https://10.0.0.1:6443", "CA", "CERT", "KEY").unwrap();
    assert_eq!(mode(&path), 0o644);
    assert_eq!(
        kubectl_view(&path, home.path(), "{.clusters[0].cluster.server}"),
        "https://10.0.0.1:6443"
    );
    let names: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["kedge.yaml"], "no temp files left behind");
}
