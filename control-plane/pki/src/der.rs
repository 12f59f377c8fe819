//! Just enough DER to give a certificate a subject that rcgen cannot express.
//!
//! rcgen keeps a distinguished name as a map from attribute type to one value, so it cannot
//! write a subject with several `O` values, and Kubernetes reads a client's groups from
//! exactly those. kedge therefore lets rcgen build and sign the certificate, then swaps the
//! subject for one encoded here (`O=..., O=..., CN=...`, one attribute per RDN, as Go's
//! crypto/x509 writes it) and signs the new to-be-signed bytes with the same CA key. The
//! result is checked by the caller (parse + signature verification) before it is used.

use rcgen::SigningKey;

const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_OID: u8 = 0x06;
const TAG_UTF8_STRING: u8 = 0x0c;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_EXPLICIT_VERSION: u8 = 0xa0;

/// DER of OID 2.5.4.3 (commonName).
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// DER of OID 2.5.4.10 (organizationName).
const OID_ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0a];

/// Appends one tag-length-value to `out`.
fn write_tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    write_tlv(&mut out, tag, content);
    out
}

/// One element read from DER input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tlv<'a> {
    tag: u8,
    /// The whole element, header included.
    raw: &'a [u8],
    /// The content only.
    content: &'a [u8],
}

/// Reads the first element of `input` and returns it with what follows it.
fn read_tlv(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), String> {
    let (&tag, rest) = input.split_first().ok_or("truncated der: missing tag")?;
    if tag & 0x1f == 0x1f {
        return Err("unsupported der: multi-byte tag".into());
    }
    let (&first, rest) = rest.split_first().ok_or("truncated der: missing length")?;
    let (len, header_len) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > std::mem::size_of::<usize>() || rest.len() < n {
            return Err("invalid der length".into());
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, 2 + n)
    };
    let total = header_len
        .checked_add(len)
        .filter(|t| *t <= input.len())
        .ok_or("truncated der: length past end of input")?;
    let element = Tlv {
        tag,
        raw: &input[..total],
        content: &input[header_len..total],
    };
    Ok((element, &input[total..]))
}

/// Encodes `O=<org>...,CN=<common_name>` as an X.501 Name, each attribute in its own RDN
/// and as a UTF8String.
pub(crate) fn encode_name(common_name: &str, organizations: &[&str]) -> Vec<u8> {
    let attribute = |oid: &[u8], value: &str| {
        let mut seq = tlv(TAG_OID, oid);
        write_tlv(&mut seq, TAG_UTF8_STRING, value.as_bytes());
        tlv(TAG_SET, &tlv(TAG_SEQUENCE, &seq))
    };
    let mut rdns = Vec::new();
    for org in organizations {
        rdns.extend(attribute(OID_ORGANIZATION, org));
    }
    rdns.extend(attribute(OID_COMMON_NAME, common_name));
    tlv(TAG_SEQUENCE, &rdns)
}

/// Returns `cert_der` with its subject replaced by `subject_der` and signed again by
/// `signer`, which must be the key that signed `cert_der` (the signature algorithm
/// identifier is kept as it is).
pub(crate) fn replace_subject(
    cert_der: &[u8],
    subject_der: &[u8],
    signer: &impl SigningKey,
) -> Result<Vec<u8>, String> {
    let (cert, rest) = read_tlv(cert_der)?;
    if cert.tag != TAG_SEQUENCE || !rest.is_empty() {
        return Err("certificate is not a single der sequence".into());
    }
    let (tbs, rest) = read_tlv(cert.content)?;
    let (signature_algorithm, _signature) = read_tlv(rest)?;
    if tbs.tag != TAG_SEQUENCE || signature_algorithm.tag != TAG_SEQUENCE {
        return Err("unexpected certificate structure".into());
    }

    // TBSCertificate: [0] version, serial, signature, issuer, validity, subject, ...
    let mut fields = Vec::new();
    let mut input = tbs.content;
    while !input.is_empty() {
        let (field, rest) = read_tlv(input)?;
        fields.push(field);
        input = rest;
    }
    let subject_index = if fields.first().map(|f| f.tag) == Some(TAG_EXPLICIT_VERSION) {
        5
    } else {
        4
    };
    if fields.len() <= subject_index + 1 || fields[subject_index].tag != TAG_SEQUENCE {
        return Err("unexpected tbs certificate structure".into());
    }

    let mut tbs_content = Vec::with_capacity(tbs.content.len() + subject_der.len());
    for (i, field) in fields.iter().enumerate() {
        if i == subject_index {
            tbs_content.extend_from_slice(subject_der);
        } else {
            tbs_content.extend_from_slice(field.raw);
        }
    }
    let new_tbs = tlv(TAG_SEQUENCE, &tbs_content);

    let signature = signer.sign(&new_tbs).map_err(|e| e.to_string())?;
    let mut bit_string = Vec::with_capacity(signature.len() + 1);
    bit_string.push(0); // no unused bits
    bit_string.extend_from_slice(&signature);

    let mut cert_content = new_tbs;
    cert_content.extend_from_slice(signature_algorithm.raw);
    write_tlv(&mut cert_content, TAG_BIT_STRING, &bit_string);
    Ok(tlv(TAG_SEQUENCE, &cert_content))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_round_trip() {
        for len in [0usize, 1, 127, 128, 255, 256, 65535, 65536] {
            let content = vec![7u8; len];
            let encoded = tlv(0x04, &content);
            let (element, rest) = read_tlv(&encoded).unwrap();
            assert!(rest.is_empty());
            assert_eq!(element.tag, 0x04);
            assert_eq!(element.content.len(), len, "length {len}");
            assert_eq!(element.raw, &encoded[..]);
        }
        // Short form below 128, long form with the minimal number of bytes above.
        assert_eq!(&tlv(0x04, &[0; 127])[..2], &[0x04, 0x7f]);
        assert_eq!(&tlv(0x04, &[0; 128])[..3], &[0x04, 0x81, 0x80]);
        assert_eq!(&tlv(0x04, &[0; 256])[..4], &[0x04, 0x82, 0x01, 0x00]);
    }

    #[test]
    fn read_tlv_rejects_truncated_input() {
        assert!(read_tlv(&[]).is_err());
        assert!(read_tlv(&[0x30]).is_err());
        assert!(read_tlv(&[0x30, 0x05, 0x00]).is_err());
        assert!(read_tlv(&[0x30, 0x82, 0x01]).is_err());
        assert!(read_tlv(&[0x30, 0x80]).is_err());
    }

    #[test]
    fn encoded_name_parses_with_all_values_in_order() {
        use x509_parser::prelude::FromDer;
        let der = encode_name("system:node:edge-1", &["system:nodes", "kedge:edge"]);
        let (rest, name) = x509_parser::x509::X509Name::from_der(&der).unwrap();
        assert!(rest.is_empty());
        let cns: Vec<_> = name
            .iter_common_name()
            .map(|a| a.as_str().unwrap())
            .collect();
        let orgs: Vec<_> = name
            .iter_organization()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(cns, ["system:node:edge-1"]);
        assert_eq!(orgs, ["system:nodes", "kedge:edge"]);
    }
}
