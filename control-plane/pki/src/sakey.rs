//! The service-account signing key: ECDSA P-256, signing JWS ES256 (the fixed-width
//! `r || s` signature JWTs carry).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rcgen::PublicKeyData as _;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _, UnparsedPublicKey};

use crate::PkiError;

/// The key that signs and checks service-account tokens.
pub struct ServiceAccountKey {
    pair: EcdsaKeyPair,
    key_id: String,
    rng: SystemRandom,
}

impl fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl ServiceAccountKey {
    /// From a PKCS#8 PEM ECDSA P-256 private key (`service.key`).
    pub fn from_pem(pem: &str) -> Result<ServiceAccountKey, PkiError> {
        let invalid = |reason: String| PkiError::InvalidServiceAccountKey(reason);
        let key = rcgen::KeyPair::from_pem(pem)
            .map_err(|e| invalid(format!("not a pkcs#8 pem private key ({e})")))?;
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &key.serialize_der(),
            &rng,
        )
        .map_err(|e| invalid(format!("not an ecdsa p-256 key ({e})")))?;
        // Upstream's key id: the SHA-256 of the PKIX public key, base64url without padding.
        let spki = key.subject_public_key_info();
        let digest = ring::digest::digest(&ring::digest::SHA256, &spki);
        Ok(ServiceAccountKey {
            pair,
            key_id: URL_SAFE_NO_PAD.encode(digest.as_ref()),
            rng,
        })
    }

    /// The key id (`kid`) tokens name.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Signs `message` (the JWS signing input): 64 bytes, `r || s`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, PkiError> {
        self.pair
            .sign(&self.rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| PkiError::Generate {
                what: "service-account token signature".into(),
                reason: "ecdsa signing failed".into(),
            })
    }

    /// Whether `signature` is this key's ES256 signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            self.pair.public_key().as_ref(),
        )
        .verify(message, signature)
        .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_and_rejects_tampering() {
        let pem = crate::certs::generate_key("sa").unwrap().serialize_pem();
        let key = ServiceAccountKey::from_pem(&pem).unwrap();
        let sig = key.sign(b"header.payload").unwrap();
        assert_eq!(sig.len(), 64);
        assert!(key.verify(b"header.payload", &sig));
        assert!(!key.verify(b"header.payloaD", &sig));
        let mut bad = sig.clone();
        bad[10] ^= 1;
        assert!(!key.verify(b"header.payload", &bad));
        // Another key does not verify it; the key id is stable for one key.
        let other =
            ServiceAccountKey::from_pem(&crate::certs::generate_key("sa").unwrap().serialize_pem())
                .unwrap();
        assert!(!other.verify(b"header.payload", &sig));
        assert_ne!(other.key_id(), key.key_id());
        assert_eq!(
            ServiceAccountKey::from_pem(&pem).unwrap().key_id(),
            key.key_id()
        );
        assert!(ServiceAccountKey::from_pem("garbage").is_err());
    }
}
