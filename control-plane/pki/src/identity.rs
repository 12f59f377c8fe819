//! Who a client certificate says its holder is, the way Kubernetes reads it.

use crate::{PkiError, certs};

/// The user a client certificate authenticates, as Kubernetes' x509 authenticator sees it:
/// the subject's common name is the user name and every organization is a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The subject common name, e.g. `system:admin` or `system:node:edge-1`.
    pub user: String,
    /// All subject organization values in certificate order, e.g. `["system:masters"]`.
    pub groups: Vec<String>,
}

/// Reads the identity from a DER client certificate.
///
/// This does not verify anything: call it only on a certificate whose chain the TLS layer
/// (rustls' client verifier with the client CA as root) has already verified. A certificate
/// without a common name, with several, or with a value that is not a string is rejected
/// rather than guessed at.
pub fn client_identity(cert_der: &[u8]) -> Result<Identity, PkiError> {
    let cert = certs::parse_cert(cert_der).map_err(PkiError::InvalidCertificate)?;
    let subject = cert.subject();
    let mut common_names = subject.iter_common_name();
    let user = match (common_names.next(), common_names.next()) {
        (Some(cn), None) => cn
            .as_str()
            .map_err(|e| PkiError::InvalidCertificate(format!("common name is not a string: {e}")))?
            .to_owned(),
        (None, _) => {
            return Err(PkiError::InvalidCertificate(
                "the subject has no common name".into(),
            ));
        }
        (Some(_), Some(_)) => {
            return Err(PkiError::InvalidCertificate(
                "the subject has more than one common name".into(),
            ));
        }
    };
    if user.is_empty() {
        return Err(PkiError::InvalidCertificate(
            "the subject common name is empty".into(),
        ));
    }
    let groups = subject
        .iter_organization()
        .map(|o| {
            o.as_str().map(str::to_owned).map_err(|e| {
                PkiError::InvalidCertificate(format!("organization is not a string: {e}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Identity { user, groups })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_invalid_certificate() {
        assert!(matches!(
            client_identity(b"not a certificate"),
            Err(PkiError::InvalidCertificate(_))
        ));
    }

    #[test]
    fn certificate_without_common_name_is_rejected() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::OrganizationName, "system:masters");
        params.distinguished_name = dn;
        let cert = params.self_signed(&key).unwrap();
        let err = client_identity(cert.der()).unwrap_err();
        assert!(err.to_string().contains("no common name"), "{err}");
    }
}
