//! Parsing and checking PKCS#10 certificate signing requests.
//!
//! Only the subject (common name and organizations) and the public key are taken from a
//! CSR. Requested extensions (SANs, key usages, basic constraints) are ignored: what kedge
//! signs from a CSR is always a client certificate that is not a CA.

use std::collections::BTreeSet;

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::oid_registry::{OID_X509_COMMON_NAME, OID_X509_ORGANIZATION_NAME};
use x509_parser::prelude::FromDer;

use crate::{PkiError, certs};

/// The subject a CSR must ask for, exactly, to be signed.
///
/// For a node certificate that is `CN=system:node:<name>` and `O=system:nodes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectedSubject<'a> {
    /// The common name the CSR must carry.
    pub common_name: &'a str,
    /// The organizations the CSR must carry: the same set, no more, no fewer (order and
    /// repetition do not matter).
    pub organizations: &'a [&'a str],
}

/// What kedge takes from a verified CSR.
#[derive(Debug)]
pub(crate) struct VerifiedCsr {
    pub(crate) common_name: String,
    pub(crate) organizations: Vec<String>,
    pub(crate) public_key: rcgen::SubjectPublicKeyInfo,
}

/// Decodes a PEM CSR (`CERTIFICATE REQUEST`) to DER.
pub(crate) fn decode_pem(csr_pem: &str) -> Result<Vec<u8>, PkiError> {
    certs::pem_decode_single(csr_pem.as_bytes(), "CERTIFICATE REQUEST")
        .map_err(PkiError::InvalidCsr)
}

/// Parses a DER CSR, verifies its self-signature (proof that the requester holds the
/// private key) and extracts its subject and public key.
pub(crate) fn verify(csr_der: &[u8]) -> Result<VerifiedCsr, PkiError> {
    let (rest, csr) = X509CertificationRequest::from_der(csr_der)
        .map_err(|e| PkiError::InvalidCsr(format!("cannot parse: {e}")))?;
    if !rest.is_empty() {
        return Err(PkiError::InvalidCsr(
            "trailing bytes after the request".into(),
        ));
    }
    csr.verify_signature()
        .map_err(|e| PkiError::InvalidCsr(format!("signature does not verify: {e}")))?;

    let info = &csr.certification_request_info;
    let mut common_names = Vec::new();
    let mut organizations = Vec::new();
    for attr in info.subject.iter_attributes() {
        let value = attr.as_str().map_err(|e| {
            PkiError::InvalidCsr(format!(
                "subject attribute {} is not a string: {e}",
                attr.attr_type()
            ))
        })?;
        if *attr.attr_type() == OID_X509_COMMON_NAME {
            common_names.push(value.to_owned());
        } else if *attr.attr_type() == OID_X509_ORGANIZATION_NAME {
            organizations.push(value.to_owned());
        } else {
            return Err(PkiError::CsrSubjectNotAllowed(format!(
                "only CN and O subject attributes are supported, found {}",
                attr.attr_type()
            )));
        }
    }
    let common_name = match <[String; 1]>::try_from(common_names) {
        Ok([cn]) => cn,
        Err(cns) => {
            return Err(PkiError::CsrSubjectNotAllowed(format!(
                "the subject must have exactly one CN, it has {}",
                cns.len()
            )));
        }
    };
    let public_key = rcgen::SubjectPublicKeyInfo::from_der(info.subject_pki.raw)
        .map_err(|e| PkiError::InvalidCsr(format!("unsupported public key: {e}")))?;
    Ok(VerifiedCsr {
        common_name,
        organizations,
        public_key,
    })
}

/// Checks a verified CSR's subject against what the caller allows.
pub(crate) fn check_expected(
    csr: &VerifiedCsr,
    expected: &ExpectedSubject<'_>,
) -> Result<(), PkiError> {
    if csr.common_name != expected.common_name {
        return Err(PkiError::CsrSubjectNotAllowed(format!(
            "CN {:?} requested, {:?} required",
            csr.common_name, expected.common_name
        )));
    }
    let requested: BTreeSet<&str> = csr.organizations.iter().map(String::as_str).collect();
    let allowed: BTreeSet<&str> = expected.organizations.iter().copied().collect();
    if requested != allowed {
        return Err(PkiError::CsrSubjectNotAllowed(format!(
            "O {requested:?} requested, {allowed:?} required"
        )));
    }
    Ok(())
}
