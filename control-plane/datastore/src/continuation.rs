//! Continue tokens: where the next page of a list starts, and at which revision.
//!
//! A token is opaque to callers. It holds the revision of the first page, so
//! that every page reads one snapshot, and the first key of the next page.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::{Error, Result};
use crate::types::Revision;

const VERSION: &str = "v1";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContinueToken {
    pub revision: Revision,
    /// The first key of the next page.
    pub start_key: String,
}

impl ContinueToken {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{VERSION}|{}|{}", self.revision, self.start_key))
    }

    /// Decodes a token and checks that it continues a list of `prefix`.
    pub fn decode(token: &str, prefix: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidContinueToken {
            reason: reason.to_string(),
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| invalid("it is not base64url"))?;
        let text = String::from_utf8(bytes).map_err(|_| invalid("it is not UTF-8"))?;
        let mut parts = text.splitn(3, '|');
        let (Some(version), Some(revision), Some(start_key)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("it has too few fields"));
        };
        if version != VERSION {
            return Err(invalid("it is of an unknown version"));
        }
        let revision: Revision = revision
            .parse()
            .ok()
            .filter(|r| *r > 0)
            .ok_or_else(|| invalid("its revision is not a positive number"))?;
        if !start_key.starts_with(prefix) {
            return Err(invalid("it continues a list of another prefix"));
        }
        Ok(ContinueToken {
            revision,
            start_key: start_key.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let token = ContinueToken {
            revision: 42,
            start_key: "/registry/pods/a|b".into(),
        };
        assert_eq!(
            ContinueToken::decode(&token.encode(), "/registry/").unwrap(),
            token
        );
    }

    #[test]
    fn rejects_garbage() {
        let other = ContinueToken {
            revision: 3,
            start_key: "/other/x".into(),
        }
        .encode();
        let zero = URL_SAFE_NO_PAD.encode("v1|0|/a/b");
        for bad in ["!!!", "", &URL_SAFE_NO_PAD.encode("v9|1|/a"), &other, &zero] {
            assert!(
                matches!(
                    ContinueToken::decode(bad, "/a/"),
                    Err(Error::InvalidContinueToken { .. })
                ),
                "{bad:?} should be rejected"
            );
        }
    }
}
