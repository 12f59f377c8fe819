//! K3s's node-password rule: a node name belongs to the first machine that joined with it.
//!
//! At its first join, an agent presents a random password it keeps on the machine (K3s:
//! `/etc/rancher/node/password`; kedge: `/etc/kedge/node/password`). The server records a
//! salted PBKDF2-SHA256 hash of it in the Secret `kube-system/<node>.node-password.kedge`
//! (type `kedge.io/node-password`). Every later join under that name must present the same
//! password, so a second machine cannot take over an existing node. A replaced machine
//! rejoins under its old name once an administrator deletes that Secret.
//!
//! The first join is race-safe: the Secret is created, and if another join created it
//! first, it is read back and compared.

use std::num::NonZeroU32;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use kedge_apiserver::registry::{Registry, WriteOpts};
use kedge_apiserver::status::ApiError;
use kedge_resources::catalog::ResourceInfo;
use serde_json::{Value, json};
use tracing::{info, instrument};

/// Where node-password Secrets live.
pub const NAMESPACE: &str = "kube-system";
/// The Secret type of node passwords.
pub const SECRET_TYPE: &str = "kedge.io/node-password";
/// The Secret name suffix; the node name comes first.
pub const SECRET_SUFFIX: &str = ".node-password.kedge";
/// The longest node name whose Secret name still fits in 253 characters.
pub const MAX_NODE_NAME_LEN: usize = 253 - SECRET_SUFFIX.len();

/// PBKDF2 iterations for new hashes (the count is stored with each hash).
const ITERATIONS: u32 = 60_000;
const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;
const SCHEME: &str = "pbkdf2-sha256";

/// A node password was refused, or could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum NodePasswordError {
    #[error(
        "node name {node} is already taken by another machine; pick another --node-name, or delete the Secret {NAMESPACE}/{node}{SECRET_SUFFIX} if the machine was replaced"
    )]
    Taken { node: String },
    #[error("node {node}: the node password is empty")]
    Empty { node: String },
    #[error("node name {node} is too long: at most {MAX_NODE_NAME_LEN} characters")]
    NameTooLong { node: String },
    #[error("node {node}: the Secret {NAMESPACE}/{node}{SECRET_SUFFIX} is malformed: {reason}")]
    Stored { node: String, reason: String },
    #[error("node {node}: {}", .error.message)]
    Api { node: String, error: ApiError },
    #[error("node {node}: cannot make a salt")]
    Random { node: String },
}

/// What a successful check did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The first join of this node name: the password was recorded.
    Recorded,
    /// A later join: the password matched the recorded one.
    Matched,
}

/// The Secret name for `node`.
pub fn secret_name(node: &str) -> String {
    format!("{node}{SECRET_SUFFIX}")
}

fn secrets() -> &'static ResourceInfo {
    kedge_resources::catalog::find("", "v1", "secrets")
        .unwrap_or_else(|| unreachable!("the catalog always has core/v1 secrets"))
}

/// Records `password` for `node` if no machine has joined under that name yet, or checks
/// it against the recorded one.
#[instrument(level = "debug", skip_all, fields(node = %node))]
pub async fn check_or_record(
    registry: &Registry,
    node: &str,
    password: &str,
) -> Result<Outcome, NodePasswordError> {
    if password.is_empty() {
        return Err(NodePasswordError::Empty {
            node: node.to_owned(),
        });
    }
    if node.len() > MAX_NODE_NAME_LEN {
        return Err(NodePasswordError::NameTooLong {
            node: node.to_owned(),
        });
    }
    let api = |error| NodePasswordError::Api {
        node: node.to_owned(),
        error,
    };
    let name = secret_name(node);
    match registry.get(secrets(), Some(NAMESPACE), &name, None).await {
        Ok(secret) => return compare(node, &secret, password).map(|()| Outcome::Matched),
        Err(e) if e.code == 404 => {}
        Err(e) => return Err(api(e)),
    }
    let hash = hash_password(node, password)?;
    let object = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "type": SECRET_TYPE,
        "data": {"hash": BASE64.encode(hash)},
    });
    match registry
        .create(secrets(), Some(NAMESPACE), object, &WriteOpts::default())
        .await
    {
        Ok(_) => {
            info!(node = %node, "recorded the node password of a new node");
            Ok(Outcome::Recorded)
        }
        Err(e) if e.code == 409 => {
            // Another join of the same name won the race: compare with what it recorded.
            let secret = registry
                .get(secrets(), Some(NAMESPACE), &name, None)
                .await
                .map_err(api)?;
            compare(node, &secret, password).map(|()| Outcome::Matched)
        }
        Err(e) => Err(api(e)),
    }
}

fn compare(node: &str, secret: &Value, password: &str) -> Result<(), NodePasswordError> {
    let stored = |reason: &str| NodePasswordError::Stored {
        node: node.to_owned(),
        reason: reason.to_owned(),
    };
    let encoded = secret
        .pointer("/data/hash")
        .and_then(Value::as_str)
        .ok_or_else(|| stored("it has no data hash"))?;
    let raw = BASE64
        .decode(encoded)
        .map_err(|_| stored("data hash is not base64"))?;
    let text = String::from_utf8(raw).map_err(|_| stored("data hash is not UTF-8"))?;
    let (iterations, salt, hash) =
        parse_hash(&text).ok_or_else(|| stored("unknown hash format"))?;
    ring::pbkdf2::verify(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        &salt,
        password.as_bytes(),
        &hash,
    )
    .map_err(|_| NodePasswordError::Taken {
        node: node.to_owned(),
    })
}

/// `pbkdf2-sha256$<iterations>$<salt, base64>$<hash, base64>`.
fn hash_password(node: &str, password: &str) -> Result<String, NodePasswordError> {
    use ring::rand::SecureRandom;
    let mut salt = [0u8; SALT_LEN];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| NodePasswordError::Random {
            node: node.to_owned(),
        })?;
    let iterations = NonZeroU32::new(ITERATIONS).unwrap_or(NonZeroU32::MIN);
    let mut hash = [0u8; HASH_LEN];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        &salt,
        password.as_bytes(),
        &mut hash,
    );
    Ok(format!(
        "{SCHEME}${ITERATIONS}${}${}",
        BASE64.encode(salt),
        BASE64.encode(hash)
    ))
}

fn parse_hash(text: &str) -> Option<(NonZeroU32, Vec<u8>, Vec<u8>)> {
    let mut parts = text.split('$');
    if parts.next()? != SCHEME {
        return None;
    }
    let iterations = NonZeroU32::new(parts.next()?.parse().ok()?)?;
    let salt = BASE64.decode(parts.next()?).ok()?;
    let hash = BASE64.decode(parts.next()?).ok()?;
    if parts.next().is_some() || hash.is_empty() {
        return None;
    }
    Some((iterations, salt, hash))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kedge_datastore::ManualClock;

    use super::*;
    use crate::tokens::tests::registry;

    #[tokio::test]
    async fn the_first_machine_keeps_the_name() {
        let (_dir, registry) = registry(Arc::new(ManualClock::default())).await;
        assert_eq!(
            check_or_record(&registry, "edge-1", "first machine")
                .await
                .unwrap(),
            Outcome::Recorded
        );
        assert_eq!(
            check_or_record(&registry, "edge-1", "first machine")
                .await
                .unwrap(),
            Outcome::Matched
        );
        let err = check_or_record(&registry, "edge-1", "second machine")
            .await
            .unwrap_err();
        assert!(matches!(err, NodePasswordError::Taken { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains("pick another --node-name"), "{message}");
        assert!(
            message.contains("kube-system/edge-1.node-password.kedge"),
            "{message}"
        );
        assert!(!message.contains("machine\""), "{message}");

        // The Secret holds a salted hash, not the password.
        let secret = registry
            .get(
                secrets(),
                Some(NAMESPACE),
                "edge-1.node-password.kedge",
                None,
            )
            .await
            .unwrap();
        assert_eq!(secret["type"], SECRET_TYPE);
        let text = String::from_utf8(
            BASE64
                .decode(secret["data"]["hash"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert!(text.starts_with("pbkdf2-sha256$"), "{text}");
        assert!(!text.contains("first machine"));

        // Another name is free.
        assert_eq!(
            check_or_record(&registry, "edge-2", "second machine")
                .await
                .unwrap(),
            Outcome::Recorded
        );
        assert!(matches!(
            check_or_record(&registry, "edge-3", "").await,
            Err(NodePasswordError::Empty { .. })
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_first_joins_leave_exactly_one_owner() {
        let (_dir, registry) = registry(Arc::new(ManualClock::default())).await;
        let joins: Vec<_> = (0..6)
            .map(|i| {
                let registry = registry.clone();
                tokio::spawn(async move {
                    check_or_record(&registry, "race", &format!("machine-{}", i % 2)).await
                })
            })
            .collect();
        let mut owners = std::collections::BTreeSet::new();
        let mut refused = 0;
        for (i, join) in joins.into_iter().enumerate() {
            match join.await.unwrap() {
                Ok(_) => {
                    owners.insert(i % 2);
                }
                Err(NodePasswordError::Taken { .. }) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(owners.len(), 1, "both machines got the name");
        assert_eq!(refused, 3);
    }

    #[test]
    fn hashes_parse_back_and_bad_ones_are_refused() {
        let text = hash_password("n", "pw").unwrap();
        let (iterations, salt, hash) = parse_hash(&text).unwrap();
        assert_eq!(iterations.get(), ITERATIONS);
        assert_eq!((salt.len(), hash.len()), (SALT_LEN, HASH_LEN));
        for bad in [
            "",
            "md5$1$a$b",
            "pbkdf2-sha256$0$AA==$AA==",
            "pbkdf2-sha256$x$AA==$AA==",
            "pbkdf2-sha256$1$AA==$",
        ] {
            assert!(parse_hash(bad).is_none(), "{bad}");
        }
    }
}
