//! Certificate helpers shared by the CA code: subject alternative names, PEM, parsing,
//! time conversion, keys and serial numbers. Nothing here touches the filesystem.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rcgen::{KeyPair, PublicKeyData, SerialNumber};
use ring::rand::SecureRandom as _;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use x509_parser::time::ASN1Time;

use crate::PkiError;

/// A subject alternative name of a serving certificate: a DNS name or an IP address.
///
/// Parsed from the strings given to `--tls-san`: anything that parses as an IP address is
/// one, everything else must be a DNS name (letters, digits, `-`, `_`, dot-separated
/// labels, optionally a leading `*.` wildcard). DNS names are kept in lowercase, since
/// they compare case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum San {
    /// A DNS name, lowercase.
    Dns(String),
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
}

impl San {
    /// Parses a SAN as given on the command line.
    pub fn parse(value: &str) -> Result<San, PkiError> {
        if let Ok(ip) = IpAddr::from_str(value) {
            return Ok(San::Ip(ip));
        }
        if is_dns_name(value) {
            Ok(San::Dns(value.to_ascii_lowercase()))
        } else {
            Err(PkiError::InvalidSan(value.to_owned()))
        }
    }
}

impl FromStr for San {
    type Err = PkiError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        San::parse(s)
    }
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(name) => f.write_str(name),
            San::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

fn is_dns_name(value: &str) -> bool {
    if value.is_empty() || value.len() > 253 {
        return false;
    }
    value.split('.').enumerate().all(|(i, label)| {
        (i == 0 && label == "*")
            || (!label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    }) && value != "*"
}

/// The SANs every apiserver serving certificate carries, as in K3s.
pub(crate) fn default_serving_sans() -> Vec<San> {
    let mut sans: Vec<San> = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    .into_iter()
    .map(|name| San::Dns(name.to_owned()))
    .collect();
    sans.push(San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    sans.push(San::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    sans
}

/// The SANs a parsed certificate carries (DNS names lowercased); other name types are
/// ignored.
pub(crate) fn sans_of(cert: &X509Certificate<'_>) -> Result<BTreeSet<San>, String> {
    let mut out = BTreeSet::new();
    let Some(ext) = cert
        .subject_alternative_name()
        .map_err(|e| format!("subject alternative names: {e}"))?
    else {
        return Ok(out);
    };
    for name in &ext.value.general_names {
        match name {
            GeneralName::DNSName(dns) => {
                out.insert(San::Dns(dns.to_ascii_lowercase()));
            }
            GeneralName::IPAddress(bytes) => {
                if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                    out.insert(San::Ip(IpAddr::from(v4)));
                } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                    out.insert(San::Ip(IpAddr::from(v6)));
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Encodes DER as PEM with 64-column lines and a trailing newline.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Decodes a PEM buffer that must hold exactly one block labelled `label`.
pub(crate) fn pem_decode_single(bytes: &[u8], label: &str) -> Result<Vec<u8>, String> {
    let mut blocks = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(bytes) {
        blocks.push(block.map_err(|e| format!("not valid pem: {e}"))?);
    }
    match blocks.as_slice() {
        [] => Err(format!("no pem block found (expected {label})")),
        [block] if block.label == label => Ok(blocks.swap_remove(0).contents),
        [block] => Err(format!(
            "pem block is labelled {:?}, expected {label:?}",
            block.label
        )),
        _ => Err(format!(
            "{} pem blocks found, expected exactly one {label}",
            blocks.len()
        )),
    }
}

/// Parses one DER certificate with nothing after it.
pub(crate) fn parse_cert(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("not a valid certificate: {e}"))?;
    if !rest.is_empty() {
        return Err("trailing bytes after the certificate".into());
    }
    Ok(cert)
}

/// Whether `cert` certifies the public half of `key`.
pub(crate) fn key_matches(cert: &X509Certificate<'_>, key: &impl PublicKeyData) -> bool {
    cert.public_key().raw == key.subject_public_key_info().as_slice()
}

/// Converts a certificate time to a `SystemTime` (times before 1970 clamp to the epoch).
pub(crate) fn system_time(t: ASN1Time) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(t.timestamp()).unwrap_or(0))
}

/// Truncates to whole seconds, which is all a certificate can hold.
pub(crate) fn whole_seconds(t: SystemTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix_seconds(t))
}

/// Seconds since the epoch (0 for earlier times).
pub(crate) fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A fresh ECDSA P-256 key pair, as K3s uses.
pub(crate) fn generate_key(what: &str) -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| PkiError::Generate {
        what: format!("{what} key"),
        reason: e.to_string(),
    })
}

/// A random positive 128-bit serial number. (rcgen's default derives the serial from the
/// public key, which would repeat if the same CSR were signed twice.)
pub(crate) fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| PkiError::Generate {
            what: "serial number".into(),
            reason: "system random number generator failed".into(),
        })?;
    // Positive, and with a non-zero first byte so the encoding is always 16 bytes.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn san_parse_tells_ips_from_dns_names() {
        assert_eq!(
            San::parse("10.0.0.1").unwrap(),
            San::Ip("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            San::parse("fd00::1").unwrap(),
            San::Ip("fd00::1".parse().unwrap())
        );
        assert_eq!(
            San::parse("Edge-1.Example.COM").unwrap(),
            San::Dns("edge-1.example.com".into())
        );
        assert_eq!(
            San::parse("*.edge.example").unwrap(),
            San::Dns("*.edge.example".into())
        );
        for bad in [
            "",
            "*",
            "a..b",
            "-a.b",
            "a-.b",
            "a b",
            "[::1]",
            "a/b",
            "a.*.b",
            "é.example",
            "example.com.",
        ] {
            assert!(
                matches!(San::parse(bad), Err(PkiError::InvalidSan(_))),
                "{bad:?} must be rejected"
            );
        }
        assert!(San::parse(&"a".repeat(64)).is_err());
        assert!(San::parse(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn pem_round_trip() {
        let der: Vec<u8> = (0..=255).collect();
        let pem = pem_encode("CERTIFICATE", &der);
        assert!(pem.lines().all(|l| l.len() <= 64));
        assert_eq!(
            pem_decode_single(pem.as_bytes(), "CERTIFICATE").unwrap(),
            der
        );
        assert!(pem_decode_single(pem.as_bytes(), "PRIVATE KEY").is_err());
        let two = format!("{pem}{pem}");
        assert!(pem_decode_single(two.as_bytes(), "CERTIFICATE").is_err());
        assert!(pem_decode_single(b"garbage", "CERTIFICATE").is_err());
    }

    #[test]
    fn serials_are_random_positive_and_sixteen_bytes() {
        let a = random_serial().unwrap().to_bytes();
        let b = random_serial().unwrap().to_bytes();
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert!(a[0] & 0x80 == 0 && a[0] != 0);
    }
}
