//! Join tokens, the shared format of `kedge token create` and `kedge-agent --token`.
//!
//! Two forms, as in K3s and kubeadm:
//!
//! - secure: `K10<ca hash>::<id>.<secret>`, where the CA hash is the lowercase hex SHA-256
//!   of the server CA certificate PEM (exactly the bytes `Bootstrap.GetCa` returns). The
//!   agent checks the CA it downloads against it before trusting it;
//! - short: `<id>.<secret>`, without a CA hash. An agent accepts it only with an explicit
//!   insecure flag, since nothing then proves that it talks to the right server.
//!
//! `<id>` is 6 characters and `<secret>` 16, both `[a-z0-9]` (kubeadm's bootstrap token
//! format); the id names the token (`kube-system/bootstrap-token-<id>`) and may be shown and
//! logged, the secret never is: [`Token`]'s `Debug` redacts it.
//!
//! Parsing never panics, and its errors say what is wrong without echoing the secret.

use std::fmt;

/// Length of a token id.
pub const ID_LEN: usize = 6;
/// Length of a token secret.
pub const SECRET_LEN: usize = 16;
/// The prefix of the secure form (K3s's token format version 10).
pub const SECURE_PREFIX: &str = "K10";
/// Length of the CA hash: hex SHA-256.
pub const CA_HASH_LEN: usize = 64;

const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A join token that did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is empty")]
    Empty,
    #[error(
        "the token is not in a known format: expected K10<ca sha256>::<id>.<secret> or <id>.<secret>"
    )]
    Format,
    #[error("the token's ca hash must be {CA_HASH_LEN} lowercase hex characters (sha256)")]
    CaHash,
    #[error("the token id must be {ID_LEN} characters of [a-z0-9]")]
    Id,
    #[error("the token secret must be {SECRET_LEN} characters of [a-z0-9]")]
    Secret,
}

/// A token's id and secret (`<id>.<secret>`), kubeadm's bootstrap token.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    id: String,
    secret: String,
}

impl BootstrapToken {
    /// From an id and a secret, checked.
    pub fn new(id: &str, secret: &str) -> Result<BootstrapToken, TokenError> {
        if !valid_part(id, ID_LEN) {
            return Err(TokenError::Id);
        }
        if !valid_part(secret, SECRET_LEN) {
            return Err(TokenError::Secret);
        }
        Ok(BootstrapToken {
            id: id.to_owned(),
            secret: secret.to_owned(),
        })
    }

    /// A new random token. `fill` fills a buffer with random bytes (for instance
    /// `rand::RngCore::fill_bytes` or ring's `SystemRandom`); characters are drawn from it
    /// without bias.
    pub fn generate(mut fill: impl FnMut(&mut [u8])) -> BootstrapToken {
        let mut chars = Vec::with_capacity(ID_LEN + SECRET_LEN);
        let mut buf = [0u8; 32];
        while chars.len() < ID_LEN + SECRET_LEN {
            fill(&mut buf);
            for &b in &buf {
                // 252 = 7 * 36: rejecting the last 4 byte values keeps the draw uniform.
                if b < 252 && chars.len() < ID_LEN + SECRET_LEN {
                    chars.push(ALPHABET[usize::from(b % 36)]);
                }
            }
        }
        let text = String::from_utf8_lossy(&chars).into_owned();
        BootstrapToken {
            id: text[..ID_LEN].to_owned(),
            secret: text[ID_LEN..].to_owned(),
        }
    }

    /// Parses `<id>.<secret>`.
    pub fn parse(text: &str) -> Result<BootstrapToken, TokenError> {
        let (id, secret) = text.split_once('.').ok_or(TokenError::Format)?;
        BootstrapToken::new(id, secret)
    }

    /// The token id: public, names the token's Secret.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The token secret. Never log it.
    pub fn secret(&self) -> &str {
        &self.secret
    }
}

impl fmt::Display for BootstrapToken {
    /// `<id>.<secret>`: this prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.id, self.secret)
    }
}

impl fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootstrapToken")
            .field("id", &self.id)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// A join token, in either form.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    ca_hash: Option<String>,
    token: BootstrapToken,
}

impl Token {
    /// The secure form, pinning the CA whose PEM hashes to `ca_hash`.
    pub fn secure(ca_hash: &str, token: BootstrapToken) -> Result<Token, TokenError> {
        if !valid_hash(ca_hash) {
            return Err(TokenError::CaHash);
        }
        Ok(Token {
            ca_hash: Some(ca_hash.to_owned()),
            token,
        })
    }

    /// The short form, without a CA hash.
    pub fn short(token: BootstrapToken) -> Token {
        Token {
            ca_hash: None,
            token,
        }
    }

    /// Parses either form. Surrounding whitespace (a trailing newline from a token file)
    /// is ignored.
    pub fn parse(text: &str) -> Result<Token, TokenError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(TokenError::Empty);
        }
        if let Some(rest) = text.strip_prefix(SECURE_PREFIX) {
            let (hash, creds) = rest.split_once("::").ok_or(TokenError::Format)?;
            if !valid_hash(hash) {
                return Err(TokenError::CaHash);
            }
            return Token::secure(hash, BootstrapToken::parse(creds)?);
        }
        if text.contains("::") {
            // K3s's other formats (K10 with a password, or a raw server password) are not
            // kedge's.
            return Err(TokenError::Format);
        }
        Ok(Token::short(BootstrapToken::parse(text)?))
    }

    /// The CA hash of the secure form.
    pub fn ca_hash(&self) -> Option<&str> {
        self.ca_hash.as_deref()
    }

    /// The id and secret.
    pub fn bootstrap(&self) -> &BootstrapToken {
        &self.token
    }

    /// The token id.
    pub fn id(&self) -> &str {
        self.token.id()
    }

    /// The token secret. Never log it.
    pub fn secret(&self) -> &str {
        self.token.secret()
    }
}

impl fmt::Display for Token {
    /// The token as a user passes it (secret included).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.ca_hash {
            Some(hash) => write!(f, "{SECURE_PREFIX}{hash}::{}", self.token),
            None => write!(f, "{}", self.token),
        }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("ca_hash", &self.ca_hash)
            .field("token", &self.token)
            .finish()
    }
}

impl std::str::FromStr for Token {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Token, TokenError> {
        Token::parse(s)
    }
}

fn valid_part(text: &str, len: usize) -> bool {
    text.len() == len
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn valid_hash(text: &str) -> bool {
    text.len() == CA_HASH_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn parses_both_forms_and_prints_them_back() {
        let secure = format!("K10{HASH}::abcdef.0123456789abcdef");
        let token = Token::parse(&secure).unwrap();
        assert_eq!(token.ca_hash(), Some(HASH));
        assert_eq!(token.id(), "abcdef");
        assert_eq!(token.secret(), "0123456789abcdef");
        assert_eq!(token.to_string(), secure);

        let short = Token::parse("abcdef.0123456789abcdef\n").unwrap();
        assert_eq!(short.ca_hash(), None);
        assert_eq!(short.to_string(), "abcdef.0123456789abcdef");
        assert_eq!(short.bootstrap(), token.bootstrap());
    }

    #[test]
    fn rejects_malformed_tokens_with_the_reason() {
        let cases: &[(&str, TokenError)] = &[
            ("", TokenError::Empty),
            ("  \n", TokenError::Empty),
            ("abcdef", TokenError::Format),
            ("abcdef0123456789abcdef", TokenError::Format),
            ("abcde.0123456789abcdef", TokenError::Id),
            ("ABCDEF.0123456789abcdef", TokenError::Id),
            ("abcdef.0123456789abcde", TokenError::Secret),
            ("abcdef.0123456789abcdeF", TokenError::Secret),
            ("abcdef.0123456789abcdef.x", TokenError::Secret),
            ("K10abc::abcdef.0123456789abcdef", TokenError::CaHash),
            ("K10::abcdef.0123456789abcdef", TokenError::CaHash),
            ("server:password::x", TokenError::Format),
            ("K10", TokenError::Format),
            ("K10é::ü.ö", TokenError::CaHash),
            ("é.ü", TokenError::Id),
        ];
        for (text, want) in cases {
            assert_eq!(Token::parse(text).unwrap_err(), *want, "{text:?}");
        }
        let upper = format!("K10{}::abcdef.0123456789abcdef", HASH.to_uppercase());
        assert_eq!(Token::parse(&upper).unwrap_err(), TokenError::CaHash);
    }

    #[test]
    fn errors_and_debug_never_show_the_secret() {
        let token = Token::parse(&format!("K10{HASH}::abcdef.0123456789abcdef")).unwrap();
        let debug = format!("{token:?}");
        assert!(debug.contains("abcdef"));
        assert!(!debug.contains("0123456789abcdef"), "{debug}");
        let err = Token::parse("abcdef.SECRETSECRETSECRE").unwrap_err();
        assert!(!err.to_string().contains("SECRET"));
    }

    #[test]
    fn generation_draws_from_the_alphabet_and_rejects_biased_bytes() {
        // A counter "rng": every byte value, in order.
        let mut next = 0u8;
        let token = BootstrapToken::generate(|buf| {
            for b in buf {
                *b = next;
                next = next.wrapping_add(1);
            }
        });
        assert_eq!(token.id(), "abcdef");
        assert_eq!(token.secret(), "ghijklmnopqrstuv");
        // Bytes 252..=255 are skipped, then the draw goes on.
        let mut next = 250u8;
        let token = BootstrapToken::generate(|buf| {
            for b in buf {
                *b = next;
                next = next.wrapping_add(1);
            }
        });
        assert_eq!(&token.id()[..2], "89"); // 250 % 36 = 34, 251 % 36 = 35
        assert_eq!(&token.id()[2..], "abcd"); // then 0, 1, 2, 3
        assert!(BootstrapToken::parse(&token.to_string()).is_ok());
    }
}
