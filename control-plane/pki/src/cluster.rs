//! The secrets every server of one cluster must share: both CAs (certificate and key) and
//! the service-account signing key. K3s calls them the bootstrap data.
//!
//! With several servers on one datastore, the first one generates them and stores them
//! in the datastore sealed with the cluster's server token ([`ClusterSecrets::seal`]);
//! the others fetch and open them ([`ClusterSecrets::open`]). Each server then writes
//! them into its own tls directory ([`ClusterSecrets::install`]), where
//! [`ServerPki::load_or_create`](crate::ServerPki::load_or_create) picks them up and
//! issues the server's own leaf certificates (its serving certificate keeps its own
//! SANs).
//!
//! Sealing, as K3s does it with a passphrase: a key is derived from the token with
//! PBKDF2 (HMAC-SHA256, [`PBKDF2_ITERATIONS`] rounds, a random 16-byte salt) and the
//! secrets (JSON) are encrypted with AES-256-GCM under a random nonce. The envelope is
//! JSON naming the algorithm and its parameters, so a later version can change them.
//! A wrong token fails authentication ([`PkiError::SealedWithOtherToken`]); an envelope
//! that does not parse is [`PkiError::SealedCorrupt`]. Nothing here reads or writes the
//! datastore.

use std::fmt;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::aead;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::ca::{Ca, CaPaths};
use crate::files::{self, CERT_MODE, KEY_MODE, TLS_DIR_MODE};
use crate::{PkiError, layout};

/// PBKDF2 rounds for new envelopes. (K3s uses 4096 rounds of SHA-1; a server derives
/// the key once at start, so it can afford more.)
pub const PBKDF2_ITERATIONS: u32 = 100_000;

/// The envelope's format name.
const FORMAT: &str = "kedge-bootstrap/v1";
/// The associated data every envelope is authenticated with.
const AAD: &[u8] = b"kedge-bootstrap/v1";
const SALT_LEN: usize = 16;

/// The CA certificates and keys and the service-account signing key, as PEM.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSecrets {
    /// `server-ca.crt`
    pub server_ca_cert: String,
    /// `server-ca.key`
    pub server_ca_key: String,
    /// `client-ca.crt`
    pub client_ca_cert: String,
    /// `client-ca.key`
    pub client_ca_key: String,
    /// `service.key`: the ECDSA P-256 key that signs service-account tokens.
    pub service_account_key: String,
}

impl fmt::Debug for ClusterSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterSecrets")
            .field("server_ca_cert", &self.server_ca_cert)
            .field("client_ca_cert", &self.client_ca_cert)
            .finish_non_exhaustive()
    }
}

/// The sealed form, as stored.
#[derive(Serialize, Deserialize)]
struct Envelope {
    format: String,
    kdf: String,
    iterations: u32,
    salt: String,
    nonce: String,
    ciphertext: String,
}

/// One file of the set, and how it is checked.
struct Part<'a> {
    file: &'static str,
    mode: u32,
    contents: &'a str,
}

impl ClusterSecrets {
    /// New CAs (server and client, named `kedge-*-ca@<unix time>`) and a new
    /// service-account key. `dir` only names the files in error messages.
    pub fn generate(dir: &Path, now: SystemTime) -> Result<ClusterSecrets, PkiError> {
        let (server, server_key) = Ca::generate("kedge-server-ca", &ca_paths(dir, true), now)?;
        let (client, client_key) = Ca::generate("kedge-client-ca", &ca_paths(dir, false), now)?;
        Ok(ClusterSecrets {
            server_ca_cert: server.cert_pem().to_owned(),
            server_ca_key: server_key,
            client_ca_cert: client.cert_pem().to_owned(),
            client_ca_key: client_key,
            service_account_key: crate::certs::generate_key("service-account")?.serialize_pem(),
        })
    }

    /// The secrets already in a tls directory (a server that ran alone before), or `None`
    /// when it holds no CA at all. The CAs are checked as
    /// [`ServerPki::load_or_create`](crate::ServerPki::load_or_create) checks them; a
    /// missing `service.key` is generated (servers before the TokenRequest API had none).
    ///
    /// A directory without CAs but with certificates they signed is
    /// [`PkiError::MissingCa`]: making new CAs would lock out every node and client.
    pub fn from_dir(dir: &Path) -> Result<Option<ClusterSecrets>, PkiError> {
        let read = |name: &str| files::read_optional(&dir.join(name));
        let server = (read(layout::SERVER_CA_CERT)?, read(layout::SERVER_CA_KEY)?);
        let client = (read(layout::CLIENT_CA_CERT)?, read(layout::CLIENT_CA_KEY)?);
        if let ((None, None), (None, None)) = (&server, &client) {
            for (cert, key, dependent) in [
                (
                    layout::SERVER_CA_CERT,
                    layout::SERVER_CA_KEY,
                    layout::SERVING_APISERVER_CERT,
                ),
                (
                    layout::CLIENT_CA_CERT,
                    layout::CLIENT_CA_KEY,
                    layout::CLIENT_ADMIN_CERT,
                ),
            ] {
                if files::exists(&dir.join(dependent))? {
                    return Err(PkiError::MissingCa {
                        cert: dir.join(cert),
                        key: dir.join(key),
                        dependent: dir.join(dependent),
                        dir: dir.to_path_buf(),
                    });
                }
            }
            return Ok(None);
        }
        let server = load_pair(dir, true, server)?;
        let client = load_pair(dir, false, client)?;
        let service_account_key = match read(layout::SERVICE_ACCOUNT_KEY)? {
            Some(bytes) => {
                let pem = String::from_utf8(bytes).map_err(|_| PkiError::UnusableKey {
                    path: dir.join(layout::SERVICE_ACCOUNT_KEY),
                    reason: "the file is not text (pem)".into(),
                })?;
                crate::ServiceAccountKey::from_pem(&pem).map_err(|e| PkiError::UnusableKey {
                    path: dir.join(layout::SERVICE_ACCOUNT_KEY),
                    reason: e.to_string(),
                })?;
                pem
            }
            None => crate::certs::generate_key("service-account")?.serialize_pem(),
        };
        Ok(Some(ClusterSecrets {
            server_ca_cert: server.0,
            server_ca_key: server.1,
            client_ca_cert: client.0,
            client_ca_key: client.1,
            service_account_key,
        }))
    }

    /// Checks that the PEM in this set is usable: both CAs load and match their keys,
    /// and the service-account key is an ECDSA P-256 key.
    pub fn check(&self, dir: &Path) -> Result<(), PkiError> {
        Ca::load(
            &ca_paths(dir, true),
            self.server_ca_cert.as_bytes(),
            self.server_ca_key.as_bytes(),
        )?;
        Ca::load(
            &ca_paths(dir, false),
            self.client_ca_cert.as_bytes(),
            self.client_ca_key.as_bytes(),
        )?;
        crate::ServiceAccountKey::from_pem(&self.service_account_key)?;
        Ok(())
    }

    /// Writes the set into a tls directory (created 0700). A file that is already there
    /// must hold exactly what this set holds: a directory with another CA or key belongs
    /// to another cluster, and nothing in it is overwritten
    /// ([`PkiError::NotTheClusterCa`]). Keys are written 0600 before their certificates
    /// (0644), each atomically.
    pub fn install(&self, dir: &Path) -> Result<(), PkiError> {
        files::create_dir_all(dir, TLS_DIR_MODE)?;
        files::ensure_mode(dir, TLS_DIR_MODE)?;
        let parts = [
            Part {
                file: layout::SERVER_CA_KEY,
                mode: KEY_MODE,
                contents: &self.server_ca_key,
            },
            Part {
                file: layout::SERVER_CA_CERT,
                mode: CERT_MODE,
                contents: &self.server_ca_cert,
            },
            Part {
                file: layout::CLIENT_CA_KEY,
                mode: KEY_MODE,
                contents: &self.client_ca_key,
            },
            Part {
                file: layout::CLIENT_CA_CERT,
                mode: CERT_MODE,
                contents: &self.client_ca_cert,
            },
            Part {
                file: layout::SERVICE_ACCOUNT_KEY,
                mode: KEY_MODE,
                contents: &self.service_account_key,
            },
        ];
        // Check everything before writing anything, so a refusal leaves the directory
        // as it was.
        let mut missing = Vec::new();
        for part in &parts {
            let path = dir.join(part.file);
            match files::read_optional(&path)? {
                Some(existing) if existing == part.contents.as_bytes() => {}
                Some(_) => {
                    return Err(PkiError::NotTheClusterCa {
                        path,
                        dir: dir.to_path_buf(),
                    });
                }
                None => missing.push(part),
            }
        }
        for part in missing {
            files::write_atomic(&dir.join(part.file), part.contents.as_bytes(), part.mode)?;
        }
        Ok(())
    }

    /// Seals the set with `passphrase` (the cluster's server token) for storing where
    /// others can read it: PBKDF2-HMAC-SHA256 and AES-256-GCM, as the module says.
    pub fn seal(&self, passphrase: &str) -> Result<Vec<u8>, PkiError> {
        let rng = SystemRandom::new();
        let random = |what: &str, buf: &mut [u8]| {
            rng.fill(buf).map_err(|_| PkiError::Generate {
                what: what.into(),
                reason: "system random number generator failed".into(),
            })
        };
        let mut salt = [0u8; SALT_LEN];
        random("bootstrap data salt", &mut salt)?;
        let mut nonce = [0u8; aead::NONCE_LEN];
        random("bootstrap data nonce", &mut nonce)?;
        let key = derive_key(passphrase, &salt, PBKDF2_ITERATIONS)?;
        let mut data = serde_json::to_vec(self).map_err(|e| PkiError::Generate {
            what: "bootstrap data".into(),
            reason: e.to_string(),
        })?;
        key.seal_in_place_append_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(AAD),
            &mut data,
        )
        .map_err(|_| PkiError::Generate {
            what: "bootstrap data".into(),
            reason: "encryption failed".into(),
        })?;
        let envelope = Envelope {
            format: FORMAT.into(),
            kdf: "pbkdf2-hmac-sha256".into(),
            iterations: PBKDF2_ITERATIONS,
            salt: BASE64.encode(salt),
            nonce: BASE64.encode(nonce),
            ciphertext: BASE64.encode(data),
        };
        serde_json::to_vec(&envelope).map_err(|e| PkiError::Generate {
            what: "bootstrap data".into(),
            reason: e.to_string(),
        })
    }

    /// Opens what [`ClusterSecrets::seal`] made. A wrong passphrase is
    /// [`PkiError::SealedWithOtherToken`]; anything that is not a sealed set (unparseable,
    /// an unknown format, a tampered ciphertext that still authenticates is impossible)
    /// is [`PkiError::SealedCorrupt`].
    pub fn open(passphrase: &str, sealed: &[u8]) -> Result<ClusterSecrets, PkiError> {
        let corrupt = |reason: String| PkiError::SealedCorrupt { reason };
        let envelope: Envelope = serde_json::from_slice(sealed)
            .map_err(|e| corrupt(format!("not a sealed envelope: {e}")))?;
        if envelope.format != FORMAT || envelope.kdf != "pbkdf2-hmac-sha256" {
            return Err(corrupt(format!(
                "unknown format {:?} with kdf {:?}",
                envelope.format, envelope.kdf
            )));
        }
        if !(1_000..=10_000_000).contains(&envelope.iterations) {
            return Err(corrupt(format!(
                "pbkdf2 iterations {} out of range",
                envelope.iterations
            )));
        }
        let decode = |what: &str, text: &str| {
            BASE64
                .decode(text)
                .map_err(|e| corrupt(format!("{what} is not base64: {e}")))
        };
        let salt = decode("salt", &envelope.salt)?;
        let nonce: [u8; aead::NONCE_LEN] = decode("nonce", &envelope.nonce)?
            .try_into()
            .map_err(|_| corrupt(format!("the nonce is not {} bytes", aead::NONCE_LEN)))?;
        let mut data = decode("ciphertext", &envelope.ciphertext)?;
        if salt.is_empty() || data.len() < aead::AES_256_GCM.tag_len() {
            return Err(corrupt("the salt or the ciphertext is too short".into()));
        }
        let key = derive_key(passphrase, &salt, envelope.iterations)?;
        let plain = key
            .open_in_place(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(AAD),
                &mut data,
            )
            .map_err(|_| PkiError::SealedWithOtherToken)?;
        serde_json::from_slice(plain)
            .map_err(|e| corrupt(format!("the decrypted data is not the secrets: {e}")))
    }
}

fn derive_key(
    passphrase: &str,
    salt: &[u8],
    iterations: u32,
) -> Result<aead::LessSafeKey, PkiError> {
    let mut key = [0u8; 32];
    let iterations = NonZeroU32::new(iterations).ok_or_else(|| PkiError::SealedCorrupt {
        reason: "zero pbkdf2 iterations".into(),
    })?;
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        salt,
        passphrase.as_bytes(),
        &mut key,
    );
    let unbound =
        aead::UnboundKey::new(&aead::AES_256_GCM, &key).map_err(|_| PkiError::Generate {
            what: "bootstrap data key".into(),
            reason: "aes-256-gcm refused the derived key".into(),
        })?;
    Ok(aead::LessSafeKey::new(unbound))
}

fn ca_paths(dir: &Path, server: bool) -> CaPaths {
    let (cert, key) = if server {
        (layout::SERVER_CA_CERT, layout::SERVER_CA_KEY)
    } else {
        (layout::CLIENT_CA_CERT, layout::CLIENT_CA_KEY)
    };
    CaPaths {
        cert: dir.join(cert),
        key: dir.join(key),
        dir: dir.to_path_buf(),
    }
}

/// A CA's two files as read, loaded and checked; back as PEM text.
fn load_pair(
    dir: &Path,
    server: bool,
    (cert, key): (Option<Vec<u8>>, Option<Vec<u8>>),
) -> Result<(String, String), PkiError> {
    let paths = ca_paths(dir, server);
    match (cert, key) {
        (Some(cert), Some(key)) => {
            Ca::load(&paths, &cert, &key)?;
            // Ca::load proved both are UTF-8.
            Ok((
                String::from_utf8_lossy(&cert).into_owned(),
                String::from_utf8_lossy(&key).into_owned(),
            ))
        }
        (Some(_), None) => Err(paths.unusable(&paths.key, "the key file is missing")),
        (None, Some(_)) => Err(paths.unusable(&paths.cert, "the certificate file is missing")),
        (None, None) => Err(paths.unusable(
            &paths.cert,
            "the certificate and key files are missing while the other ca is there",
        )),
    }
}

/// Where a tls directory keeps the service-account key.
pub fn service_account_key_path(dir: &Path) -> PathBuf {
    dir.join(layout::SERVICE_ACCOUNT_KEY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> SystemTime {
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000)
    }

    #[test]
    fn sealed_secrets_open_with_the_same_token_only() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = ClusterSecrets::generate(dir.path(), now()).unwrap();
        secrets.check(dir.path()).unwrap();
        let sealed = secrets.seal("abcdef.0123456789abcdef").unwrap();
        let text = String::from_utf8(sealed.clone()).unwrap();
        assert!(
            !text.contains("PRIVATE KEY") && !text.contains("CERTIFICATE"),
            "{text}"
        );
        assert_eq!(
            ClusterSecrets::open("abcdef.0123456789abcdef", &sealed).unwrap(),
            secrets
        );
        let err = ClusterSecrets::open("abcdef.0123456789abcdee", &sealed).unwrap_err();
        assert!(
            matches!(err, PkiError::SealedWithOtherToken),
            "unexpected {err:?}"
        );
        // Two seals of the same secrets differ (salt and nonce are fresh).
        assert_ne!(secrets.seal("abcdef.0123456789abcdef").unwrap(), sealed);
    }

    #[test]
    fn corrupt_envelopes_are_told_apart_from_wrong_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = ClusterSecrets::generate(dir.path(), now()).unwrap();
        let sealed = secrets.seal("token").unwrap();
        let mut envelope: serde_json::Value = serde_json::from_slice(&sealed).unwrap();
        for (field, value) in [
            ("format", serde_json::json!("other/v9")),
            ("salt", serde_json::json!("not base64!")),
            ("nonce", serde_json::json!("AAAA")),
            ("iterations", serde_json::json!(0)),
        ] {
            let mut bad = envelope.clone();
            bad[field] = value;
            let err =
                ClusterSecrets::open("token", &serde_json::to_vec(&bad).unwrap()).unwrap_err();
            assert!(
                matches!(err, PkiError::SealedCorrupt { .. }),
                "{field}: {err:?}"
            );
        }
        for garbage in [&b""[..], b"{", b"\x00\xff", b"[]"] {
            let err = ClusterSecrets::open("token", garbage).unwrap_err();
            assert!(matches!(err, PkiError::SealedCorrupt { .. }), "{err:?}");
        }
        // A flipped ciphertext bit fails authentication, like a wrong token: AES-GCM
        // cannot tell them apart, and nothing is ever accepted half-right.
        let ciphertext = envelope["ciphertext"].as_str().unwrap().to_string();
        let mut bytes = BASE64.decode(ciphertext).unwrap();
        bytes[0] ^= 1;
        envelope["ciphertext"] = serde_json::json!(BASE64.encode(bytes));
        let err =
            ClusterSecrets::open("token", &serde_json::to_vec(&envelope).unwrap()).unwrap_err();
        assert!(matches!(err, PkiError::SealedWithOtherToken), "{err:?}");
    }

    #[test]
    fn install_writes_once_and_refuses_another_clusters_files() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        let ours = ClusterSecrets::generate(&tls, now()).unwrap();
        ours.install(&tls).unwrap();
        ours.install(&tls).unwrap();
        assert_eq!(ClusterSecrets::from_dir(&tls).unwrap(), Some(ours.clone()));
        use std::os::unix::fs::PermissionsExt;
        let mode = |f: &str| std::fs::metadata(tls.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(layout::SERVER_CA_KEY), 0o600);
        assert_eq!(mode(layout::SERVICE_ACCOUNT_KEY), 0o600);
        assert_eq!(mode(layout::CLIENT_CA_CERT), 0o644);

        let theirs = ClusterSecrets::generate(&tls, now()).unwrap();
        let before = std::fs::read(tls.join(layout::SERVER_CA_CERT)).unwrap();
        let err = theirs.install(&tls).unwrap_err();
        assert!(
            matches!(err, PkiError::NotTheClusterCa { .. }),
            "unexpected {err:?}"
        );
        assert!(err.to_string().contains("move"), "{err}");
        assert_eq!(
            std::fs::read(tls.join(layout::SERVER_CA_CERT)).unwrap(),
            before
        );
    }

    #[test]
    fn from_dir_of_an_empty_directory_is_none_but_a_lost_ca_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ClusterSecrets::from_dir(dir.path()).unwrap(), None);
        std::fs::write(dir.path().join(layout::SERVING_APISERVER_CERT), "left over").unwrap();
        let err = ClusterSecrets::from_dir(dir.path()).unwrap_err();
        assert!(matches!(err, PkiError::MissingCa { .. }), "{err:?}");
    }

    #[test]
    fn from_dir_adds_a_service_account_key_to_an_older_directory() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = ClusterSecrets::generate(dir.path(), now()).unwrap();
        secrets.install(dir.path()).unwrap();
        std::fs::remove_file(service_account_key_path(dir.path())).unwrap();
        let read = ClusterSecrets::from_dir(dir.path()).unwrap().unwrap();
        assert_eq!(read.server_ca_cert, secrets.server_ca_cert);
        assert_ne!(read.service_account_key, secrets.service_account_key);
        crate::ServiceAccountKey::from_pem(&read.service_account_key).unwrap();
    }
}
