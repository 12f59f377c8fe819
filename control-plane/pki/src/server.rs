//! The server's PKI directory: loading it, creating what is missing, renewing leaves.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::KeyPair;
use tracing::{info, warn};

use crate::ca::{Ca, CaPaths, LeafSpec, Usage};
use crate::certs::{self, San};
use crate::csr::{self, ExpectedSubject};
use crate::files::{self, CERT_MODE, KEY_MODE, TLS_DIR_MODE};
use crate::{LEAF_VALIDITY, PkiError, RENEW_BEFORE, ServiceAccountKey, client_identity, layout};

/// Options for [`ServerPki::load_or_create`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PkiOptions {
    /// SANs the apiserver serving certificate must carry besides the built-in ones
    /// (`localhost`, `kubernetes`, `kubernetes.default`, `kubernetes.default.svc`,
    /// `kubernetes.default.svc.cluster.local`, `127.0.0.1`, `::1`): the `--tls-san`
    /// values, and the node's own addresses and host name if the caller wants them.
    pub extra_sans: Vec<San>,
}

impl PkiOptions {
    /// The complete SAN list of the serving certificate: the built-in SANs, then the extra
    /// ones, without duplicates.
    pub fn serving_sans(&self) -> Vec<San> {
        let mut sans = certs::default_serving_sans();
        for san in &self.extra_sans {
            if !sans.contains(san) {
                sans.push(san.clone());
            }
        }
        sans
    }
}

/// A certificate and its private key.
#[derive(Clone)]
pub struct IssuedCertificate {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
}

impl fmt::Debug for IssuedCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCertificate")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[redacted]")
            .finish()
    }
}

/// A leaf certificate and key as loaded or written.
#[derive(Clone)]
struct Leaf {
    cert_pem: String,
    cert_der: Vec<u8>,
    key_pem: String,
    key_der: Vec<u8>,
}

/// The CAs and certificates of a kedge server, kept under `<data-dir>/server/tls`.
///
/// Created with [`ServerPki::load_or_create`]; see the crate documentation for the layout.
pub struct ServerPki {
    dir: PathBuf,
    server_ca: Ca,
    client_ca: Ca,
    serving: Leaf,
    admin: Leaf,
    service_account: Arc<ServiceAccountKey>,
}

impl fmt::Debug for ServerPki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerPki")
            .field("dir", &self.dir)
            .field("server_ca", &self.server_ca)
            .field("client_ca", &self.client_ca)
            .finish_non_exhaustive()
    }
}

/// One of the two CAs, and which leaf files depend on it.
struct CaSpec {
    label: &'static str,
    cn_prefix: &'static str,
    cert: &'static str,
    key: &'static str,
    dependents: &'static [&'static str],
}

const SERVER_CA: CaSpec = CaSpec {
    label: "server ca",
    cn_prefix: "kedge-server-ca",
    cert: layout::SERVER_CA_CERT,
    key: layout::SERVER_CA_KEY,
    dependents: &[layout::SERVING_APISERVER_CERT],
};

const CLIENT_CA: CaSpec = CaSpec {
    label: "client ca",
    cn_prefix: "kedge-client-ca",
    cert: layout::CLIENT_CA_CERT,
    key: layout::CLIENT_CA_KEY,
    dependents: &[layout::CLIENT_ADMIN_CERT],
};

/// The admin user's subject, as in K3s.
const ADMIN_USER: &str = "system:admin";
const ADMIN_GROUP: &str = "system:masters";
/// The apiserver serving certificate's common name, as in K3s.
const APISERVER_CN: &str = "kube-apiserver";

/// Why a leaf certificate is (re)issued; only used for the log line.
#[derive(Debug)]
enum Reissue {
    Missing,
    Unusable(String),
    ExpiresSoon(SystemTime),
    SansNotCovered(Vec<San>),
}

impl fmt::Display for Reissue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reissue::Missing => f.write_str("missing"),
            Reissue::Unusable(reason) => write!(f, "unusable: {reason}"),
            Reissue::ExpiresSoon(at) => write!(
                f,
                "expires within {} days (at unix time {})",
                RENEW_BEFORE.as_secs() / 86_400,
                certs::unix_seconds(*at)
            ),
            Reissue::SansNotCovered(missing) => {
                f.write_str("does not cover the requested names")?;
                for san in missing {
                    write!(f, " {san}")?;
                }
                Ok(())
            }
        }
    }
}

impl ServerPki {
    /// Loads the server PKI from `dir` (normally [`layout::tls_dir`]), creating what is
    /// missing and renewing what is due.
    ///
    /// - The directory is created (mode 0700, ancestors too if missing) and tightened to
    ///   0700 if it is wider.
    /// - A CA whose files are both missing is generated, unless a certificate it signed is
    ///   still there (the CA was lost: [`PkiError::MissingCa`]). A CA that exists is
    ///   loaded and checked, never regenerated: if it is unreadable, corrupt, not a CA,
    ///   does not match its key or has only one of its two files, this fails with
    ///   [`PkiError::UnusableCa`] naming the file and saying what to do.
    /// - A leaf certificate (the apiserver serving certificate, the admin client
    ///   certificate) is issued with a new key when it is missing, unusable, not signed by
    ///   the current CA, expires within [`RENEW_BEFORE`] of `now`, or (serving only) does
    ///   not carry every SAN of [`PkiOptions::serving_sans`]. Otherwise it is left alone.
    ///
    /// Keys are written with mode 0600 (existing key files with a wider mode are
    /// tightened), certificates 0644, each atomically, the key before its certificate.
    pub fn load_or_create(
        dir: &Path,
        options: &PkiOptions,
        now: SystemTime,
    ) -> Result<ServerPki, PkiError> {
        let span = tracing::info_span!("pki", dir = %dir.display());
        let _guard = span.enter();

        files::create_dir_all(dir, TLS_DIR_MODE)?;
        if files::ensure_mode(dir, TLS_DIR_MODE)? {
            warn!("tightened the tls directory mode to 0700");
        }

        let server_ca = load_or_create_ca(dir, &SERVER_CA, now)?;
        let client_ca = load_or_create_ca(dir, &CLIENT_CA, now)?;

        let sans = options.serving_sans();
        let serving = ensure_leaf(
            dir,
            layout::SERVING_APISERVER_CERT,
            layout::SERVING_APISERVER_KEY,
            &server_ca,
            &LeafSpec {
                common_name: APISERVER_CN,
                organizations: &[],
                sans: &sans,
                usage: Usage::Server,
                validity: LEAF_VALIDITY,
            },
            now,
        )?;
        let admin = ensure_leaf(
            dir,
            layout::CLIENT_ADMIN_CERT,
            layout::CLIENT_ADMIN_KEY,
            &client_ca,
            &LeafSpec {
                common_name: ADMIN_USER,
                organizations: &[ADMIN_GROUP],
                sans: &[],
                usage: Usage::Client,
                validity: LEAF_VALIDITY,
            },
            now,
        )?;

        let service_account = Arc::new(load_or_create_service_account_key(dir)?);

        Ok(ServerPki {
            dir: dir.to_path_buf(),
            server_ca,
            client_ca,
            serving,
            admin,
            service_account,
        })
    }

    /// The key that signs service-account tokens (`service.key`).
    pub fn service_account_key(&self) -> &Arc<ServiceAccountKey> {
        &self.service_account
    }

    /// The tls directory this PKI lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server CA certificate, PEM, exactly as in `server-ca.crt` (what clients are
    /// given, and what [`ca_hash`](crate::ca_hash) hashes).
    pub fn server_ca_pem(&self) -> &str {
        self.server_ca.cert_pem()
    }

    /// The server CA certificate, DER (a rustls client's root).
    pub fn server_ca_der(&self) -> &[u8] {
        self.server_ca.cert_der()
    }

    /// The client CA certificate, PEM, exactly as in `client-ca.crt`.
    pub fn client_ca_pem(&self) -> &str {
        self.client_ca.cert_pem()
    }

    /// The client CA certificate, DER (the root of the apiserver's rustls client verifier).
    pub fn client_ca_der(&self) -> &[u8] {
        self.client_ca.cert_der()
    }

    /// The apiserver serving certificate, PEM.
    pub fn serving_cert_pem(&self) -> &str {
        &self.serving.cert_pem
    }

    /// The apiserver serving certificate's private key, PKCS#8 PEM.
    pub fn serving_key_pem(&self) -> &str {
        &self.serving.key_pem
    }

    /// The serving certificate chain for a rustls `ServerConfig`, leaf first. The leaf is
    /// signed directly by the server CA, which clients already hold, so the chain is the
    /// leaf alone.
    pub fn serving_cert_chain_der(&self) -> Vec<Vec<u8>> {
        vec![self.serving.cert_der.clone()]
    }

    /// The serving certificate's private key, PKCS#8 DER (rustls' `PrivatePkcs8KeyDer`).
    pub fn serving_key_der(&self) -> &[u8] {
        &self.serving.key_der
    }

    /// The admin client certificate (`CN=system:admin`, `O=system:masters`), PEM.
    pub fn admin_cert_pem(&self) -> &str {
        &self.admin.cert_pem
    }

    /// The admin client certificate's private key, PKCS#8 PEM.
    pub fn admin_key_pem(&self) -> &str {
        &self.admin.key_pem
    }

    /// Issues a new client certificate signed by the client CA, with a new ECDSA P-256 key:
    /// `CN=<common_name>`, one `O` per organization (these become the user's groups),
    /// ExtendedKeyUsage clientAuth, valid from `now` for `validity` (but not past the CA's
    /// own expiry). Nothing is written to disk.
    pub fn issue_client_cert(
        &self,
        common_name: &str,
        organizations: &[&str],
        validity: Duration,
        now: SystemTime,
    ) -> Result<IssuedCertificate, PkiError> {
        let key = certs::generate_key("client certificate")?;
        let der = self.client_ca.issue(
            &client_spec(common_name, organizations, validity),
            &key,
            now,
        )?;
        Ok(IssuedCertificate {
            cert_pem: certs::pem_encode("CERTIFICATE", &der),
            key_pem: key.serialize_pem(),
        })
    }

    /// Signs a PEM (`CERTIFICATE REQUEST`) PKCS#10 CSR as a client certificate with the
    /// client CA. See [`ServerPki::sign_csr_der`].
    pub fn sign_csr_pem(
        &self,
        csr_pem: &str,
        expected: Option<&ExpectedSubject<'_>>,
        validity: Duration,
        now: SystemTime,
    ) -> Result<String, PkiError> {
        let der = csr::decode_pem(csr_pem)?;
        self.sign_csr_der(&der, expected, validity, now)
    }

    /// Signs a DER PKCS#10 CSR as a client certificate with the client CA and returns the
    /// certificate, PEM.
    ///
    /// The CSR's signature must verify (the requester holds the key). Its subject may
    /// only hold CN (exactly one) and O attributes; with `expected`, they must be exactly
    /// the expected ones. With `None` any such subject is signed, including
    /// `O=system:masters`, so pass `None` only for requests that are already trusted.
    /// Requested extensions are ignored: the certificate always has ExtendedKeyUsage
    /// clientAuth and is not a CA.
    pub fn sign_csr_der(
        &self,
        csr_der: &[u8],
        expected: Option<&ExpectedSubject<'_>>,
        validity: Duration,
        now: SystemTime,
    ) -> Result<String, PkiError> {
        let request = csr::verify(csr_der)?;
        if let Some(expected) = expected {
            csr::check_expected(&request, expected)?;
        }
        let organizations: Vec<&str> = request.organizations.iter().map(String::as_str).collect();
        let der = self.client_ca.issue(
            &client_spec(&request.common_name, &organizations, validity),
            &request.public_key,
            now,
        )?;
        info!(user = %request.common_name, groups = ?organizations, "signed a client certificate request");
        Ok(certs::pem_encode("CERTIFICATE", &der))
    }
}

fn client_spec<'a>(
    common_name: &'a str,
    organizations: &'a [&'a str],
    validity: Duration,
) -> LeafSpec<'a> {
    LeafSpec {
        common_name,
        organizations,
        sans: &[],
        usage: Usage::Client,
        validity,
    }
}

fn load_or_create_ca(dir: &Path, spec: &CaSpec, now: SystemTime) -> Result<Ca, PkiError> {
    let paths = CaPaths {
        cert: dir.join(spec.cert),
        key: dir.join(spec.key),
        dir: dir.to_path_buf(),
    };
    let cert = files::read_optional(&paths.cert)?;
    let key = files::read_optional(&paths.key)?;
    let ca = match (cert, key) {
        (Some(cert), Some(key)) => {
            if files::ensure_mode(&paths.key, KEY_MODE)? {
                warn!(file = %paths.key.display(), "tightened the key file mode to 0600");
            }
            Ca::load(&paths, &cert, &key)?
        }
        (Some(_), None) => return Err(paths.unusable(&paths.key, "the key file is missing")),
        (None, Some(_)) => {
            return Err(paths.unusable(&paths.cert, "the certificate file is missing"));
        }
        (None, None) => {
            for dependent in spec.dependents {
                let dependent = dir.join(dependent);
                if files::exists(&dependent)? {
                    return Err(PkiError::MissingCa {
                        cert: paths.cert,
                        key: paths.key,
                        dependent,
                        dir: dir.to_path_buf(),
                    });
                }
            }
            let (ca, key_pem) = Ca::generate(spec.cn_prefix, &paths, now)?;
            files::write_atomic(&paths.key, key_pem.as_bytes(), KEY_MODE)?;
            files::write_atomic(&paths.cert, ca.cert_pem().as_bytes(), CERT_MODE)?;
            info!(
                file = %paths.cert.display(),
                not_after = certs::unix_seconds(ca.not_after()),
                "generated the {}",
                spec.label
            );
            return Ok(ca);
        }
    };
    let remaining = ca.not_after().duration_since(now).unwrap_or_default();
    if remaining.is_zero() {
        warn!(file = %paths.cert.display(), "the {} has expired; clients will reject every certificate it signed", spec.label);
    } else if remaining < RENEW_BEFORE {
        warn!(
            file = %paths.cert.display(),
            days_left = remaining.as_secs() / 86_400,
            "the {} expires soon; certificates it signs are cut short to its expiry",
            spec.label
        );
    }
    Ok(ca)
}

fn load_or_create_service_account_key(dir: &Path) -> Result<ServiceAccountKey, PkiError> {
    let path = dir.join(layout::SERVICE_ACCOUNT_KEY);
    match files::read_optional(&path)? {
        Some(bytes) => {
            if files::ensure_mode(&path, KEY_MODE)? {
                warn!(file = %path.display(), "tightened the key file mode to 0600");
            }
            let unusable = |reason: String| PkiError::UnusableKey {
                path: path.clone(),
                reason,
            };
            let pem = String::from_utf8(bytes)
                .map_err(|_| unusable("the file is not text (pem)".into()))?;
            ServiceAccountKey::from_pem(&pem).map_err(|e| unusable(e.to_string()))
        }
        None => {
            let pem = certs::generate_key("service-account")?.serialize_pem();
            files::write_atomic(&path, pem.as_bytes(), KEY_MODE)?;
            info!(file = %path.display(), "generated the service-account signing key");
            ServiceAccountKey::from_pem(&pem)
        }
    }
}

/// Loads a leaf certificate, or issues a new one with a new key if it is due.
fn ensure_leaf(
    dir: &Path,
    cert_file: &str,
    key_file: &str,
    ca: &Ca,
    spec: &LeafSpec<'_>,
    now: SystemTime,
) -> Result<Leaf, PkiError> {
    let cert_path = dir.join(cert_file);
    let key_path = dir.join(key_file);
    let existing = match (
        files::read_optional(&cert_path)?,
        files::read_optional(&key_path)?,
    ) {
        (Some(cert), Some(key)) => check_leaf(ca, spec, &cert, &key, now),
        _ => Err(Reissue::Missing),
    };
    let reissue = match existing {
        Ok(leaf) => {
            if files::ensure_mode(&key_path, KEY_MODE)? {
                warn!(file = %key_path.display(), "tightened the key file mode to 0600");
            }
            return Ok(leaf);
        }
        Err(reason) => reason,
    };

    let key = certs::generate_key(spec.common_name)?;
    let cert_der = ca.issue(spec, &key, now)?;
    let leaf = Leaf {
        cert_pem: certs::pem_encode("CERTIFICATE", &cert_der),
        cert_der,
        key_pem: key.serialize_pem(),
        key_der: key.serialize_der(),
    };
    // Key first: a crash in between leaves a certificate that does not match its key,
    // which the next start detects and repairs.
    files::write_atomic(&key_path, leaf.key_pem.as_bytes(), KEY_MODE)?;
    files::write_atomic(&cert_path, leaf.cert_pem.as_bytes(), CERT_MODE)?;
    let verb = if matches!(reissue, Reissue::Missing) {
        "generated"
    } else {
        "renewed"
    };
    info!(file = %cert_path.display(), reason = %reissue, "{verb} a certificate");
    Ok(leaf)
}

/// Returns the leaf if it can be kept, or why it must be reissued.
fn check_leaf(
    ca: &Ca,
    spec: &LeafSpec<'_>,
    cert_bytes: &[u8],
    key_bytes: &[u8],
    now: SystemTime,
) -> Result<Leaf, Reissue> {
    let cert_der =
        certs::pem_decode_single(cert_bytes, "CERTIFICATE").map_err(Reissue::Unusable)?;
    let key_pem = String::from_utf8(key_bytes.to_vec())
        .map_err(|_| Reissue::Unusable("the key file is not text (pem)".into()))?;
    let key = KeyPair::from_pem(&key_pem)
        .map_err(|e| Reissue::Unusable(format!("the key is not a pkcs#8 pem private key ({e})")))?;
    let cert = certs::parse_cert(&cert_der).map_err(Reissue::Unusable)?;
    if !certs::key_matches(&cert, &key) {
        return Err(Reissue::Unusable(
            "the key does not match the certificate".into(),
        ));
    }
    if !ca.signed(&cert_der) {
        return Err(Reissue::Unusable("not signed by the current ca".into()));
    }
    let not_after = certs::system_time(cert.validity().not_after);
    if not_after.duration_since(now).unwrap_or_default() <= RENEW_BEFORE {
        return Err(Reissue::ExpiresSoon(not_after));
    }
    match spec.usage {
        Usage::Server => {
            let present = certs::sans_of(&cert).map_err(Reissue::Unusable)?;
            let missing: Vec<San> = spec
                .sans
                .iter()
                .filter(|san| !present.contains(san))
                .cloned()
                .collect();
            if !missing.is_empty() {
                return Err(Reissue::SansNotCovered(missing));
            }
        }
        Usage::Client => {
            let identity =
                client_identity(&cert_der).map_err(|e| Reissue::Unusable(e.to_string()))?;
            if identity.user != spec.common_name || identity.groups != spec.organizations {
                return Err(Reissue::Unusable(format!(
                    "it is for {:?} in {:?}",
                    identity.user, identity.groups
                )));
            }
        }
    }
    Ok(Leaf {
        cert_pem: String::from_utf8_lossy(cert_bytes).into_owned(),
        cert_der: cert_der.clone(),
        key_pem,
        key_der: key.serialize_der(),
    })
}
