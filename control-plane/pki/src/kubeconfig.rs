//! Writing a kubeconfig like K3s's `/etc/rancher/k3s/k3s.yaml`.

use std::fmt::Write as _;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::{PkiError, files};

/// The mode kedge writes kubeconfigs with unless told otherwise (K3s:
/// `--write-kubeconfig-mode`). The file holds the admin key.
pub const DEFAULT_KUBECONFIG_MODE: u32 = 0o600;

/// Mode of directories created to hold a kubeconfig (like `/etc/rancher/k3s`).
const KUBECONFIG_DIR_MODE: u32 = 0o755;

/// Renders a kubeconfig with one cluster, one user and one context, all named `default`,
/// and `current-context: default`. The PEMs are embedded base64-encoded
/// (`certificate-authority-data`, `client-certificate-data`, `client-key-data`).
///
/// `server_url` must be an `http://` or `https://` URL of printable ASCII without spaces,
/// quotes or backslashes (it is written as a quoted YAML string).
pub fn render_kubeconfig(
    server_url: &str,
    ca_pem: &str,
    client_cert_pem: &str,
    client_key_pem: &str,
) -> Result<String, PkiError> {
    check_server_url(server_url)?;
    let b64 = |pem: &str| STANDARD.encode(pem.as_bytes());
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "\
apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: \"{server_url}\"
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
preferences: {{}}
users:
- name: default
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
",
        ca = b64(ca_pem),
        cert = b64(client_cert_pem),
        key = b64(client_key_pem),
    );
    Ok(out)
}

fn check_server_url(url: &str) -> Result<(), PkiError> {
    let has_scheme = ["https://", "http://"]
        .iter()
        .any(|scheme| url.len() > scheme.len() && url.starts_with(scheme));
    let plain = url
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    if has_scheme && plain {
        Ok(())
    } else {
        Err(PkiError::InvalidServerUrl(url.to_owned()))
    }
}

/// Writes the kubeconfig of [`render_kubeconfig`] to `path` with exactly `mode`
/// ([`DEFAULT_KUBECONFIG_MODE`] unless the operator asked otherwise).
///
/// Missing parent directories are created with mode 0755. The file is replaced atomically,
/// so readers never see half of it, and ends up with `mode` even if it existed before with
/// another one.
pub fn write_kubeconfig(
    path: &Path,
    mode: u32,
    server_url: &str,
    ca_pem: &str,
    client_cert_pem: &str,
    client_key_pem: &str,
) -> Result<(), PkiError> {
    let text = render_kubeconfig(server_url, ca_pem, client_cert_pem, client_key_pem)?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        files::create_dir_all(parent, KUBECONFIG_DIR_MODE)?;
    }
    files::write_atomic(path, text.as_bytes(), mode)?;
    tracing::info!(file = %path.display(), server = server_url, mode = format_args!("{mode:o}"), "wrote kubeconfig");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_all_fields_named_default() {
        let text = render_kubeconfig("https://127.0.0.1:6443", "CA", "CERT", "KEY").unwrap();
        for line in [
            "    certificate-authority-data: Q0E=",
            "    server: \"https://127.0.0.1:6443\"",
            "    client-certificate-data: Q0VSVA==",
            "    client-key-data: S0VZ",
            "current-context: default",
            "  name: default",
            "    cluster: default",
            "    user: default",
            "- name: default",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn rejects_urls_that_would_break_the_yaml() {
        for bad in [
            "",
            "127.0.0.1:6443",
            "https://",
            "https://a\"b",
            "https://a b",
            "https://a\nb",
            "https://a\\b",
            "ftp://a",
        ] {
            assert!(
                matches!(
                    render_kubeconfig(bad, "", "", ""),
                    Err(PkiError::InvalidServerUrl(_))
                ),
                "{bad:?} must be rejected"
            );
        }
        assert!(render_kubeconfig("https://[::1]:6443", "", "", "").is_ok());
        assert!(render_kubeconfig("http://edge-1.local:6443/x?y=z", "", "", "").is_ok());
    }
}
