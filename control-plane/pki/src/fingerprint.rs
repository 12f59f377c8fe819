//! The CA hash that goes into join tokens.

/// Lowercase hex SHA-256 of the CA certificate file bytes.
///
/// K3s join tokens look like `K10<hash>::<id>.<secret>`, where the hash is over the server
/// CA PEM exactly as the server serves it (the file bytes, newlines included), so pass the
/// bytes from [`ServerPki::server_ca_pem`](crate::ServerPki::server_ca_pem), not a
/// re-encoding.
pub fn ca_hash(ca_pem: impl AsRef<[u8]>) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, ca_pem.as_ref());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_sha256_vectors() {
        assert_eq!(
            ca_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            ca_hash(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
