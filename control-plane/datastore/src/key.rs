//! Rules for keys and values, checked before any backend sees them.

use crate::error::{Error, Result};
use crate::types::{MAX_KEY_BYTES, MAX_VALUE_BYTES};

/// Checks a key: it starts with `/`, is at most [`MAX_KEY_BYTES`] long and has
/// no control characters. Keys without a leading `/` are left to backends for
/// their own bookkeeping, so they can never collide with a caller's key.
pub fn validate_key(key: &str) -> Result<()> {
    validate(key, false)
}

/// Checks a prefix for list, count and watch: the rules of [`validate_key`],
/// except that `/` alone is allowed.
pub fn validate_prefix(prefix: &str) -> Result<()> {
    validate(prefix, true)
}

fn validate(key: &str, is_prefix: bool) -> Result<()> {
    let invalid = |reason| {
        Err(Error::InvalidKey {
            key: truncate_for_error(key),
            reason,
        })
    };
    if key.is_empty() {
        return invalid("it is empty");
    }
    if !key.starts_with('/') {
        return invalid("it must start with '/'");
    }
    if !is_prefix && key == "/" {
        return invalid("it must name something after '/'");
    }
    if key.len() > MAX_KEY_BYTES {
        return invalid("it is longer than 2048 bytes");
    }
    if key.chars().any(char::is_control) {
        return invalid("it contains a control character");
    }
    Ok(())
}

/// Checks a value's size.
pub fn validate_value(key: &str, value: &[u8]) -> Result<()> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(Error::ValueTooLarge {
            key: truncate_for_error(key),
            size: value.len(),
            limit: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

/// The smallest byte string greater than every string that starts with
/// `prefix`, or `None` when there is none (the prefix is all 0xff bytes).
/// Backends compare keys as bytes, so `prefix <= key < prefix_end` is the range
/// of keys under the prefix.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Keys in error messages are cut short so that a 1 MiB junk key does not end
/// up in a log line.
fn truncate_for_error(key: &str) -> String {
    const SHOWN: usize = 256;
    if key.len() <= SHOWN {
        return key.to_string();
    }
    let mut cut = SHOWN;
    while !key.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &key[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(validate_key("/registry/pods/default/web-0").is_ok());
        for bad in ["", "registry/x", "/", "/a\0b", "/a\nb"] {
            assert!(
                matches!(validate_key(bad), Err(Error::InvalidKey { .. })),
                "{bad:?} should be rejected"
            );
        }
        let long = format!("/{}", "x".repeat(MAX_KEY_BYTES));
        match validate_key(&long) {
            Err(Error::InvalidKey { key, .. }) => assert!(key.len() < 300, "error key is cut"),
            other => panic!("long key: {other:?}"),
        }
        assert!(validate_prefix("/").is_ok());
    }

    #[test]
    fn values() {
        assert!(validate_value("/k", &vec![0; MAX_VALUE_BYTES]).is_ok());
        assert!(matches!(
            validate_value("/k", &vec![0; MAX_VALUE_BYTES + 1]),
            Err(Error::ValueTooLarge { size, .. }) if size == MAX_VALUE_BYTES + 1
        ));
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/a/"), Some(b"/a0".to_vec()));
        assert_eq!(prefix_end(b"/a\xff"), Some(b"/b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }
}
