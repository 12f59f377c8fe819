//! One certificate authority: generating it, loading and checking it, and signing leaf
//! certificates with it. No file I/O here; `server.rs` reads and writes the files.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};

use crate::certs::{self, San};
use crate::{BACKDATE, CA_VALIDITY, PkiError, der};

/// Where a CA lives, for error messages that tell the operator what to restore.
#[derive(Debug, Clone)]
pub(crate) struct CaPaths {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) dir: PathBuf,
}

impl CaPaths {
    pub(crate) fn unusable(&self, path: &Path, reason: impl Into<String>) -> PkiError {
        PkiError::UnusableCa {
            path: path.to_path_buf(),
            reason: reason.into(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            dir: self.dir.clone(),
        }
    }
}

/// What a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Usage {
    /// TLS server (ExtendedKeyUsage serverAuth).
    Server,
    /// TLS client (ExtendedKeyUsage clientAuth).
    Client,
}

/// Everything that goes into a leaf certificate except its public key.
#[derive(Debug, Clone)]
pub(crate) struct LeafSpec<'a> {
    pub(crate) common_name: &'a str,
    pub(crate) organizations: &'a [&'a str],
    pub(crate) sans: &'a [San],
    pub(crate) usage: Usage,
    pub(crate) validity: Duration,
}

/// A loaded, checked certificate authority that can sign.
pub(crate) struct Ca {
    cert_path: PathBuf,
    cert_pem: String,
    cert_der: Vec<u8>,
    not_after: SystemTime,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("cert_path", &self.cert_path)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Generates a new self-signed CA named `<cn_prefix>@<unix seconds>`, valid for
    /// [`CA_VALIDITY`]. Returns the CA and its key in PEM, for the caller to write.
    pub(crate) fn generate(
        cn_prefix: &str,
        paths: &CaPaths,
        now: SystemTime,
    ) -> Result<(Ca, String), PkiError> {
        let key = certs::generate_key(cn_prefix)?;
        let now = certs::whole_seconds(now);
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            format!("{cn_prefix}@{}", certs::unix_seconds(now)),
        );
        params.distinguished_name = dn;
        params.serial_number = Some(certs::random_serial()?);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = backdated(now).into();
        params.not_after = (now + CA_VALIDITY).into();
        let cert = params.self_signed(&key).map_err(|e| PkiError::Generate {
            what: format!("{cn_prefix} certificate"),
            reason: e.to_string(),
        })?;
        let key_pem = key.serialize_pem();
        let ca = Ca::from_parts(paths, cert.pem(), key)?;
        Ok((ca, key_pem))
    }

    /// Loads a CA from the contents of its certificate and key files and checks that they
    /// belong together and really are a CA. Every failure names the file at fault.
    pub(crate) fn load(
        paths: &CaPaths,
        cert_bytes: &[u8],
        key_bytes: &[u8],
    ) -> Result<Ca, PkiError> {
        let cert_pem = std::str::from_utf8(cert_bytes)
            .map_err(|_| paths.unusable(&paths.cert, "the file is not text (pem)"))?;
        let key_pem = std::str::from_utf8(key_bytes)
            .map_err(|_| paths.unusable(&paths.key, "the file is not text (pem)"))?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| {
            paths.unusable(&paths.key, format!("not a pkcs#8 pem private key ({e})"))
        })?;
        Ca::from_parts(paths, cert_pem.to_owned(), key)
    }

    fn from_parts(paths: &CaPaths, cert_pem: String, key: KeyPair) -> Result<Ca, PkiError> {
        let cert_der = certs::pem_decode_single(cert_pem.as_bytes(), "CERTIFICATE")
            .map_err(|reason| paths.unusable(&paths.cert, reason))?;
        let cert =
            certs::parse_cert(&cert_der).map_err(|reason| paths.unusable(&paths.cert, reason))?;
        if !cert.is_ca() {
            return Err(paths.unusable(&paths.cert, "not a ca certificate"));
        }
        if cert.verify_signature(None).is_err() {
            return Err(paths.unusable(
                &paths.cert,
                "not a self-signed ca certificate (its signature does not verify)",
            ));
        }
        if !certs::key_matches(&cert, &key) {
            return Err(paths.unusable(
                &paths.key,
                format!(
                    "the key does not match the certificate {}",
                    paths.cert.display()
                ),
            ));
        }
        let not_after = certs::system_time(cert.validity().not_after);
        let issuer = Issuer::from_ca_cert_der(&cert_der.as_slice().into(), key)
            .map_err(|e| paths.unusable(&paths.cert, format!("cannot sign with it ({e})")))?;
        Ok(Ca {
            cert_path: paths.cert.clone(),
            cert_pem,
            cert_der,
            not_after,
            issuer,
        })
    }

    /// The CA certificate exactly as stored in its file.
    pub(crate) fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub(crate) fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    pub(crate) fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Whether `cert_der` parses and carries a valid signature by this CA.
    pub(crate) fn signed(&self, cert_der: &[u8]) -> bool {
        let (Ok(ca), Ok(leaf)) = (
            certs::parse_cert(&self.cert_der),
            certs::parse_cert(cert_der),
        ) else {
            return false;
        };
        leaf.issuer().as_raw() == ca.subject().as_raw()
            && leaf.verify_signature(Some(ca.public_key())).is_ok()
    }

    /// Signs a leaf certificate for `public_key` and returns its DER.
    ///
    /// The validity starts [`BACKDATE`] before `now` (clock skew between nodes) and ends
    /// `spec.validity` after it, but never after the CA itself expires.
    pub(crate) fn issue(
        &self,
        spec: &LeafSpec<'_>,
        public_key: &impl PublicKeyData,
        now: SystemTime,
    ) -> Result<Vec<u8>, PkiError> {
        let what = || format!("certificate for {:?}", spec.common_name);
        check_subject(spec.common_name, spec.organizations)?;
        let now = certs::whole_seconds(now);
        if spec.validity < Duration::from_secs(1) {
            return Err(PkiError::InvalidValidity(spec.validity));
        }
        let requested_end = now
            .checked_add(spec.validity)
            .filter(|end| certs::unix_seconds(*end) < 253_402_300_799) // 9999-12-31
            .ok_or(PkiError::InvalidValidity(spec.validity))?;
        let not_after = requested_end.min(self.not_after);
        if not_after <= now {
            return Err(PkiError::CaExpired {
                path: self.cert_path.clone(),
            });
        }

        let mut params = CertificateParams::default();
        // Placeholder subject: replaced below by one that can hold several O values.
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, spec.common_name);
        params.distinguished_name = dn;
        params.serial_number = Some(certs::random_serial()?);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match spec.usage {
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        params.use_authority_key_identifier_extension = true;
        params.not_before = backdated(now).into();
        params.not_after = not_after.into();
        for san in spec.sans {
            params.subject_alt_names.push(match san {
                San::Ip(ip) => SanType::IpAddress(*ip),
                San::Dns(name) => {
                    SanType::DnsName(name.as_str().try_into().map_err(|e: rcgen::Error| {
                        PkiError::Generate {
                            what: what(),
                            reason: format!("dns name {name:?}: {e}"),
                        }
                    })?)
                }
            });
        }

        let cert = params
            .signed_by(public_key, &self.issuer)
            .map_err(|e| PkiError::Generate {
                what: what(),
                reason: e.to_string(),
            })?;
        let subject = der::encode_name(spec.common_name, spec.organizations);
        let der =
            der::replace_subject(cert.der(), &subject, self.issuer.key()).map_err(|reason| {
                PkiError::Generate {
                    what: what(),
                    reason,
                }
            })?;
        // The subject was swapped by hand: prove the result is sound before anyone uses it.
        if !self.signed(&der) {
            return Err(PkiError::Generate {
                what: what(),
                reason: "the signed certificate does not verify against its ca".into(),
            });
        }
        Ok(der)
    }
}

fn backdated(now: SystemTime) -> SystemTime {
    now.checked_sub(BACKDATE).unwrap_or(std::time::UNIX_EPOCH)
}

/// Checks that a subject can go into a certificate: a non-empty common name, non-empty
/// organizations, and no control characters anywhere.
pub(crate) fn check_subject(common_name: &str, organizations: &[&str]) -> Result<(), PkiError> {
    if common_name.is_empty() {
        return Err(PkiError::InvalidSubject("empty common name".into()));
    }
    for value in std::iter::once(&common_name).chain(organizations) {
        if value.chars().any(char::is_control) {
            return Err(PkiError::InvalidSubject(format!(
                "{value:?} contains control characters"
            )));
        }
    }
    if organizations.iter().any(|o| o.is_empty()) {
        return Err(PkiError::InvalidSubject("empty organization".into()));
    }
    Ok(())
}
