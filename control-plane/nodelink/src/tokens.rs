//! Join tokens, stored as upstream's bootstrap-token Secrets.
//!
//! A token `<id>.<secret>` lives in `kube-system/bootstrap-token-<id>`, type
//! `bootstrap.kubernetes.io/token`, with the data keys kubeadm writes: `token-id`,
//! `token-secret`, `expiration` (RFC 3339, optional), `description` and
//! `usage-bootstrap-authentication: "true"`. So `kubectl -n kube-system get secrets`
//! shows them, a TTL is an `expiration`, and revoking a token is deleting its Secret.
//!
//! [`verify`] checks a presented token (secret compared in constant time, expiry against
//! the `now` the caller's clock gives); [`ensure_server_token`] makes sure the server's own
//! non-expiring token exists and is written to `<data-dir>/server/token`, like K3s's
//! `/var/lib/rancher/k3s/server/token`.
//!
//! Secrets are never logged: only token ids are.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use kedge_apiserver::registry::{DeleteOpts, Registry, WriteOpts};
use kedge_apiserver::status::ApiError;
use kedge_proto::token::{BootstrapToken, Token};
use kedge_resources::catalog::ResourceInfo;
use serde_json::{Value, json};
use tracing::{info, instrument};

/// Where bootstrap-token Secrets live.
pub const NAMESPACE: &str = "kube-system";
/// The Secret type of bootstrap tokens.
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// The Secret name prefix; the token id follows.
pub const SECRET_PREFIX: &str = "bootstrap-token-";
/// The description of the server's own token.
pub const SERVER_TOKEN_DESCRIPTION: &str = "kedge server token";
/// File mode of the server token file.
pub const TOKEN_FILE_MODE: u32 = 0o600;

/// What to do about a token that is not good.
const CREATE_HINT: &str = "create a new one with `kedge token create`";

/// A token was refused, or could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("malformed join token: {0}")]
    Malformed(#[from] kedge_proto::token::TokenError),
    #[error("token {id} is not known (revoked, or never created); {CREATE_HINT}")]
    Unknown { id: String },
    #[error("token {id} has the wrong secret")]
    WrongSecret { id: String },
    #[error("token {id} expired at {at}; {CREATE_HINT}")]
    Expired { id: String, at: String },
    #[error("token {id} may not be used to join (usage-bootstrap-authentication is not \"true\")")]
    NotForJoining { id: String },
    #[error("token {id}: its secret {NAMESPACE}/{SECRET_PREFIX}{id} is malformed: {reason}")]
    Stored { id: String, reason: String },
    #[error("token {id}: {}", .error.message)]
    Api { id: String, error: ApiError },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl TokenError {
    /// Whether the token itself was refused (unknown, wrong, expired, malformed), as
    /// opposed to the server failing to check it.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            TokenError::Malformed(_)
                | TokenError::Unknown { .. }
                | TokenError::WrongSecret { .. }
                | TokenError::Expired { .. }
                | TokenError::NotForJoining { .. }
        )
    }
}

/// What the server keeps about a token (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// The token id.
    pub id: String,
    /// When the token stops working; `None` never.
    pub expiration: Option<SystemTime>,
    /// Free text.
    pub description: String,
}

/// The Secret name of token `id`.
pub fn secret_name(id: &str) -> String {
    format!("{SECRET_PREFIX}{id}")
}

/// RFC 3339 (UTC, seconds) of a time, as in a bootstrap token's `expiration`.
pub fn rfc3339(at: SystemTime) -> String {
    let secs = at
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| format!("@{secs}"))
}

fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let ts: jiff::Timestamp = text.parse().ok()?;
    let secs = u64::try_from(ts.as_second()).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// The bootstrap-token Secret for `token`, as JSON.
pub fn secret_object(
    token: &BootstrapToken,
    expiration: Option<SystemTime>,
    description: &str,
) -> Value {
    let mut data = BTreeMap::new();
    data.insert("token-id", token.id().to_owned());
    data.insert("token-secret", token.secret().to_owned());
    data.insert("usage-bootstrap-authentication", "true".to_owned());
    if let Some(at) = expiration {
        data.insert("expiration", rfc3339(at));
    }
    if !description.is_empty() {
        data.insert("description", description.to_owned());
    }
    let data: serde_json::Map<String, Value> = data
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Value::String(BASE64.encode(v))))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": secret_name(token.id()), "namespace": NAMESPACE},
        "type": SECRET_TYPE,
        "data": data,
    })
}

fn secrets() -> &'static ResourceInfo {
    kedge_resources::catalog::find("", "v1", "secrets")
        .unwrap_or_else(|| unreachable!("the catalog always has core/v1 secrets"))
}

/// A data key of a Secret, decoded.
fn data_value(secret: &Value, key: &str) -> Result<Option<String>, String> {
    let Some(encoded) = secret.pointer(&format!("/data/{key}")) else {
        return Ok(None);
    };
    let encoded = encoded
        .as_str()
        .ok_or_else(|| format!("data {key} is not a string"))?;
    let raw = BASE64
        .decode(encoded)
        .map_err(|e| format!("data {key} is not base64: {e}"))?;
    String::from_utf8(raw)
        .map(Some)
        .map_err(|_| format!("data {key} is not UTF-8"))
}

/// Reads a token's Secret; `None` when it is gone.
async fn read(registry: &Registry, id: &str) -> Result<Option<Value>, TokenError> {
    match registry
        .get(secrets(), Some(NAMESPACE), &secret_name(id), None)
        .await
    {
        Ok(secret) => Ok(Some(secret)),
        Err(e) if e.code == 404 => Ok(None),
        Err(error) => Err(TokenError::Api {
            id: id.to_owned(),
            error,
        }),
    }
}

/// The public part of a token Secret.
fn info_of(id: &str, secret: &Value) -> Result<TokenInfo, TokenError> {
    let stored = |reason: String| TokenError::Stored {
        id: id.to_owned(),
        reason,
    };
    if secret.get("type").and_then(Value::as_str) != Some(SECRET_TYPE) {
        return Err(stored(format!("its type is not {SECRET_TYPE}")));
    }
    let expiration = match data_value(secret, "expiration").map_err(stored)? {
        None => None,
        Some(text) if text.is_empty() => None,
        Some(text) => Some(
            parse_rfc3339(&text)
                .ok_or_else(|| stored(format!("expiration {text:?} is not RFC 3339")))?,
        ),
    };
    Ok(TokenInfo {
        id: id.to_owned(),
        expiration,
        description: data_value(secret, "description")
            .map_err(stored)?
            .unwrap_or_default(),
    })
}

/// Checks a presented token: its Secret exists (not revoked), the secret matches (in
/// constant time), it has not expired at `now`, and it may be used for joining.
#[instrument(level = "debug", skip_all, fields(token = %token.id()))]
pub async fn verify(
    registry: &Registry,
    token: &BootstrapToken,
    now: SystemTime,
) -> Result<TokenInfo, TokenError> {
    let id = token.id();
    let secret = read(registry, id)
        .await?
        .ok_or_else(|| TokenError::Unknown { id: id.to_owned() })?;
    let stored = |reason: String| TokenError::Stored {
        id: id.to_owned(),
        reason,
    };
    let stored_id = data_value(&secret, "token-id").map_err(stored)?;
    if stored_id.as_deref() != Some(id) {
        return Err(stored("token-id does not match its name".into()));
    }
    let stored_secret = data_value(&secret, "token-secret")
        .map_err(stored)?
        .ok_or_else(|| stored("it has no token-secret".into()))?;
    if !constant_time_eq(stored_secret.as_bytes(), token.secret().as_bytes()) {
        return Err(TokenError::WrongSecret { id: id.to_owned() });
    }
    let info = info_of(id, &secret)?;
    if let Some(at) = info.expiration
        && at <= now
    {
        return Err(TokenError::Expired {
            id: id.to_owned(),
            at: rfc3339(at),
        });
    }
    if data_value(&secret, "usage-bootstrap-authentication")
        .map_err(stored)?
        .as_deref()
        != Some("true")
    {
        return Err(TokenError::NotForJoining { id: id.to_owned() });
    }
    Ok(info)
}

/// Equality whose time does not depend on where the inputs differ: both sides are MACed
/// with a fresh random key and ring compares the tags in constant time.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let rng = ring::rand::SystemRandom::new();
    let Ok(key) = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng) else {
        return false;
    };
    let tag = ring::hmac::sign(&key, a);
    ring::hmac::verify(&key, b, tag.as_ref()).is_ok()
}

/// Stores a new token, expiring `ttl` after `now` (`None`: never).
#[instrument(level = "debug", skip_all, fields(token = %token.id()))]
pub async fn create(
    registry: &Registry,
    token: &BootstrapToken,
    ttl: Option<Duration>,
    description: &str,
    now: SystemTime,
) -> Result<TokenInfo, TokenError> {
    let expiration = ttl.map(|ttl| now + ttl);
    let object = secret_object(token, expiration, description);
    registry
        .create(secrets(), Some(NAMESPACE), object, &WriteOpts::default())
        .await
        .map_err(|error| TokenError::Api {
            id: token.id().to_owned(),
            error,
        })?;
    info!(token = %token.id(), expires = ?expiration.map(rfc3339), "created a join token");
    Ok(TokenInfo {
        id: token.id().to_owned(),
        expiration,
        description: description.to_owned(),
    })
}

/// Revokes a token by deleting its Secret. A token that is already gone is not an error.
pub async fn delete(registry: &Registry, id: &str) -> Result<(), TokenError> {
    match registry
        .delete(
            secrets(),
            Some(NAMESPACE),
            &secret_name(id),
            &DeleteOpts::default(),
        )
        .await
    {
        Ok(_) => {
            info!(token = %id, "revoked a join token");
            Ok(())
        }
        Err(e) if e.code == 404 => Ok(()),
        Err(error) => Err(TokenError::Api {
            id: id.to_owned(),
            error,
        }),
    }
}

/// The server token file: `<data-dir>/server/token`.
pub fn server_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("server").join("token")
}

/// The cluster's server token (`kedge server --token`), as K3s has it: the passphrase
/// that seals the cluster's shared secrets in the datastore, and a join token agents may
/// use.
///
/// It is always a bootstrap token `<id>.<secret>`, so that it also joins agents as
/// `K10<ca hash>::<id>.<secret>` (what `<data-dir>/server/token` holds). Given as
/// - `K10<ca hash>::<id>.<secret>` or `<id>.<secret>`: that token (and, in the first
///   form, a pin on the cluster's CA);
/// - anything else (a passphrase of the operator's choosing, or K3s's
///   `K10<ca hash>::server:<passphrase>`): the bootstrap token derived from it with
///   SHA-256, so every server given the same passphrase derives the same token.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerToken {
    token: BootstrapToken,
    ca_hash: Option<String>,
}

impl std::fmt::Debug for ServerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerToken")
            .field("id", &self.token.id())
            .field("ca_hash", &self.ca_hash)
            .finish_non_exhaustive()
    }
}

/// What a derived token's hash starts with, so that it is kedge's own.
const DERIVE_CONTEXT: &[u8] = b"kedge server token\0";

impl ServerToken {
    /// Parses `--token` (see the type). Errors never echo the text.
    pub fn parse(text: &str) -> Result<ServerToken, TokenError> {
        use kedge_proto::token::TokenError as Format;
        let text = text.trim();
        if text.is_empty() {
            return Err(TokenError::Malformed(Format::Empty));
        }
        if let Ok(token) = Token::parse(text) {
            return Ok(ServerToken {
                ca_hash: token.ca_hash().map(str::to_owned),
                token: token.bootstrap().clone(),
            });
        }
        let (ca_hash, passphrase) = match text
            .strip_prefix(kedge_proto::token::SECURE_PREFIX)
            .and_then(|rest| rest.split_once("::"))
        {
            Some((hash, rest)) => {
                // Checked the way join tokens check it.
                let probe = BootstrapToken::new("aaaaaa", "aaaaaaaaaaaaaaaa")?;
                Token::secure(hash, probe)?;
                (
                    Some(hash.to_owned()),
                    rest.strip_prefix("server:").unwrap_or(rest),
                )
            }
            None => (None, text),
        };
        if passphrase.is_empty() || passphrase.chars().any(char::is_control) {
            return Err(TokenError::Malformed(Format::Format));
        }
        Ok(ServerToken {
            token: derive(passphrase),
            ca_hash,
        })
    }

    /// A new random token (the first server of a cluster started without `--token`).
    pub fn generate(fill: impl FnMut(&mut [u8])) -> ServerToken {
        ServerToken {
            token: BootstrapToken::generate(fill),
            ca_hash: None,
        }
    }

    /// The passphrase the cluster's secrets are sealed with: `<id>.<secret>`.
    pub fn passphrase(&self) -> String {
        self.token.to_string()
    }

    /// The token's id and secret.
    pub fn bootstrap(&self) -> &BootstrapToken {
        &self.token
    }

    /// The CA hash the token was given with, if any: the cluster's server CA must hash
    /// to it.
    pub fn ca_hash(&self) -> Option<&str> {
        self.ca_hash.as_deref()
    }
}

/// The bootstrap token a passphrase stands for: characters drawn from SHA-256 of the
/// passphrase in counter mode.
fn derive(passphrase: &str) -> BootstrapToken {
    let mut counter = 0u32;
    BootstrapToken::generate(|buf| {
        for chunk in buf.chunks_mut(32) {
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            ctx.update(DERIVE_CONTEXT);
            ctx.update(&counter.to_be_bytes());
            ctx.update(passphrase.as_bytes());
            let digest = ctx.finish();
            chunk.copy_from_slice(&digest.as_ref()[..chunk.len()]);
            counter += 1;
        }
    })
}

/// The server token in `<data-dir>/server/token`, if the file exists (a server that
/// started before keeps its token across restarts without `--token`, as K3s does).
pub fn read_server_token(data_dir: &Path) -> Result<Option<ServerToken>, TokenError> {
    let path = server_token_path(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => ServerToken::parse(&text).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TokenError::Io { path, source }),
    }
}

/// At server start, with the cluster's server token: writes it to
/// `<data-dir>/server/token` (mode 0600) in the secure form for `server_ca_pem`, and makes
/// sure agents can join with it (its bootstrap-token Secret, non-expiring, exists).
///
/// As with K3s's server token, it cannot be revoked for good: a Secret deleted by hand
/// is made again at the next start. Tokens from `kedge token create` are the revocable
/// ones.
#[instrument(level = "debug", skip_all, fields(data_dir = %data_dir.display()))]
pub async fn ensure_server_token(
    registry: &Registry,
    server: &ServerToken,
    server_ca_pem: &str,
    data_dir: &Path,
    now: SystemTime,
) -> Result<Token, TokenError> {
    let path = server_token_path(data_dir);
    let token = Token::secure(
        &kedge_pki::ca_hash(server_ca_pem),
        server.bootstrap().clone(),
    )?;
    let current = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => return Err(TokenError::Io { path, source }),
    };
    if current.as_deref().map(str::trim) != Some(token.to_string().as_str()) {
        write_token_file(&path, &token)?;
    } else {
        ensure_file_mode(&path)?;
    }
    for _ in 0..3 {
        match verify(registry, server.bootstrap(), now).await {
            Ok(_) => return Ok(token),
            Err(TokenError::Unknown { .. }) => {
                match create(
                    registry,
                    server.bootstrap(),
                    None,
                    SERVER_TOKEN_DESCRIPTION,
                    now,
                )
                .await
                {
                    Ok(_) => return Ok(token),
                    // Another server of the cluster stored it first.
                    Err(TokenError::Api { error, .. }) if error.code == 409 => continue,
                    Err(e) => return Err(e),
                }
            }
            Err(e) if e.is_refusal() || matches!(e, TokenError::Stored { .. }) => {
                tracing::warn!(token = %server.bootstrap().id(), reason = %e, "agents cannot join with the server token; use a token from `kedge token create`");
                return Ok(token);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(token)
}

fn ensure_file_mode(path: &Path) -> Result<(), TokenError> {
    let io = |source| TokenError::Io {
        path: path.to_owned(),
        source,
    };
    let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
    if mode != TOKEN_FILE_MODE {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(TOKEN_FILE_MODE))
            .map_err(io)?;
    }
    Ok(())
}

/// Writes the token file atomically (temporary file, fsync, rename), mode 0600.
fn write_token_file(path: &Path, token: &Token) -> Result<(), TokenError> {
    let io = |source| TokenError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("token")
    ));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(TOKEN_FILE_MODE)
            .open(&tmp)?;
        file.set_permissions(std::fs::Permissions::from_mode(TOKEN_FILE_MODE))?;
        file.write_all(format!("{token}\n").as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    };
    write().map_err(io)
}

/// The public part of a bootstrap-token Secret (JSON, `data` in base64, as the API serves
/// it); `None` for a Secret that is not a bootstrap token.
pub fn info_from_secret(secret: &Value) -> Option<Result<TokenInfo, TokenError>> {
    if secret.get("type").and_then(Value::as_str) != Some(SECRET_TYPE) {
        return None;
    }
    let id = secret
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .and_then(|n| n.strip_prefix(SECRET_PREFIX))?;
    Some(info_of(id, secret))
}

/// Every token's public part, by id.
pub async fn list(registry: &Registry) -> Result<Vec<TokenInfo>, TokenError> {
    let page = registry
        .list(
            secrets(),
            Some(NAMESPACE),
            &kedge_apiserver::registry::ListOpts::default(),
        )
        .await
        .map_err(|error| TokenError::Api {
            id: String::new(),
            error,
        })?;
    let mut tokens: Vec<TokenInfo> = page
        .items
        .iter()
        .filter_map(info_from_secret)
        .filter_map(Result::ok)
        .collect();
    tokens.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(tokens)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use kedge_datastore::{Clock, ManualClock};

    use super::*;

    /// A registry over a real SQLite datastore in a temporary directory, with the system
    /// namespaces, on `clock`.
    pub(crate) async fn registry(clock: Arc<ManualClock>) -> (tempfile::TempDir, Registry) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = kedge_datastore_sqlite::SqliteConfig::new(dir.path().join("state.db"));
        config.clock = clock.clone();
        let store = kedge_datastore_sqlite::SqliteStore::open(config)
            .await
            .unwrap();
        let api = kedge_apiserver::ApiServer::start(
            Arc::new(store),
            clock,
            kedge_apiserver::Config::default(),
            kedge_apiserver::TokenFile::default(),
        )
        .await
        .unwrap();
        (dir, api.registry.clone())
    }

    /// Deterministic "random" bytes.
    pub(crate) fn counter(start: u8) -> impl FnMut(&mut [u8]) {
        let mut next = start;
        move |buf: &mut [u8]| {
            for b in buf {
                *b = next;
                next = next.wrapping_add(7);
            }
        }
    }

    fn token(text: &str) -> BootstrapToken {
        BootstrapToken::parse(text).unwrap()
    }

    #[tokio::test]
    async fn verify_accepts_a_live_token_and_refuses_wrong_expired_and_revoked_ones() {
        let clock = Arc::new(ManualClock::default());
        let (_dir, registry) = registry(clock.clone()).await;
        let good = token("abcdef.0123456789abcdef");
        let now = clock.now();
        create(
            &registry,
            &good,
            Some(Duration::from_secs(3600)),
            "for the pi",
            now,
        )
        .await
        .unwrap();

        let info = verify(&registry, &good, now).await.unwrap();
        assert_eq!(info.description, "for the pi");
        assert_eq!(info.expiration, Some(now + Duration::from_secs(3600)));

        // The Secret is upstream's layout.
        let secret = registry
            .get(secrets(), Some(NAMESPACE), "bootstrap-token-abcdef", None)
            .await
            .unwrap();
        assert_eq!(secret["type"], SECRET_TYPE);
        assert_eq!(
            data_value(&secret, "usage-bootstrap-authentication")
                .unwrap()
                .as_deref(),
            Some("true")
        );
        assert_eq!(
            data_value(&secret, "expiration").unwrap(),
            Some(rfc3339(now + Duration::from_secs(3600)))
        );

        let wrong = token("abcdef.0123456789abcdee");
        let err = verify(&registry, &wrong, now).await.unwrap_err();
        assert!(matches!(err, TokenError::WrongSecret { .. }), "{err}");
        assert!(!err.to_string().contains("0123456789abcde"), "{err}");

        let later = now + Duration::from_secs(3600);
        let err = verify(&registry, &good, later).await.unwrap_err();
        assert!(matches!(err, TokenError::Expired { .. }), "{err}");
        assert!(err.to_string().contains("kedge token create"), "{err}");
        assert!(err.to_string().contains(&rfc3339(later)), "{err}");

        let listed = list(&registry).await.unwrap();
        assert_eq!(listed, vec![info]);

        delete(&registry, "abcdef").await.unwrap();
        delete(&registry, "abcdef").await.unwrap();
        let err = verify(&registry, &good, now).await.unwrap_err();
        assert!(matches!(err, TokenError::Unknown { .. }), "{err}");
        assert!(err.is_refusal());
    }

    #[tokio::test]
    async fn a_token_without_the_authentication_usage_cannot_join() {
        let clock = Arc::new(ManualClock::default());
        let (_dir, registry) = registry(clock.clone()).await;
        let t = token("zzzzzz.0123456789abcdef");
        let mut object = secret_object(&t, None, "");
        object["data"]
            .as_object_mut()
            .unwrap()
            .remove("usage-bootstrap-authentication");
        registry
            .create(secrets(), Some(NAMESPACE), object, &WriteOpts::default())
            .await
            .unwrap();
        let err = verify(&registry, &t, clock.now()).await.unwrap_err();
        assert!(matches!(err, TokenError::NotForJoining { .. }), "{err}");
    }

    #[tokio::test]
    async fn the_server_token_is_written_and_joins_agents_and_survives_revocation() {
        let clock = Arc::new(ManualClock::default());
        let (dir, registry) = registry(clock.clone()).await;
        let ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let server = ServerToken::generate(counter(1));
        let first = ensure_server_token(&registry, &server, ca, dir.path(), clock.now())
            .await
            .unwrap();
        assert_eq!(first.ca_hash(), Some(kedge_pki::ca_hash(ca).as_str()));
        assert_eq!(first.bootstrap(), server.bootstrap());
        let path = server_token_path(dir.path());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{first}\n")
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // The file gives the same server token back (a restart without --token).
        assert_eq!(
            read_server_token(dir.path()).unwrap(),
            Some(ServerToken::parse(&first.to_string()).unwrap())
        );
        // Agents may join with it; it never expires.
        let info = verify(
            &registry,
            first.bootstrap(),
            clock.now() + Duration::from_secs(10 * 365 * 86_400),
        )
        .await
        .unwrap();
        assert_eq!(info.expiration, None);
        assert_eq!(info.description, SERVER_TOKEN_DESCRIPTION);

        // Again: the same token, nothing rewritten.
        let again = ensure_server_token(&registry, &server, ca, dir.path(), clock.now())
            .await
            .unwrap();
        assert_eq!(again, first);

        // A new CA: same token, new hash, file rewritten.
        let other_ca = "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n";
        let rehashed = ensure_server_token(&registry, &server, other_ca, dir.path(), clock.now())
            .await
            .unwrap();
        assert_eq!(rehashed.bootstrap(), first.bootstrap());
        assert_eq!(
            rehashed.ca_hash(),
            Some(kedge_pki::ca_hash(other_ca).as_str())
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{rehashed}\n")
        );

        // Its Secret deleted by hand: the next start stores it again (as K3s's server
        // token, it cannot be revoked).
        delete(&registry, first.id()).await.unwrap();
        assert!(
            verify(&registry, first.bootstrap(), clock.now())
                .await
                .is_err()
        );
        ensure_server_token(&registry, &server, other_ca, dir.path(), clock.now())
            .await
            .unwrap();
        verify(&registry, first.bootstrap(), clock.now())
            .await
            .unwrap();
    }

    #[test]
    fn server_tokens_parse_in_every_form_and_passphrases_derive_one_token() {
        let hash = "ab".repeat(32);
        let full = ServerToken::parse(&format!("K10{hash}::abcdef.0123456789abcdef\n")).unwrap();
        assert_eq!(full.passphrase(), "abcdef.0123456789abcdef");
        assert_eq!(full.ca_hash(), Some(hash.as_str()));
        let short = ServerToken::parse("abcdef.0123456789abcdef").unwrap();
        assert_eq!(short.bootstrap(), full.bootstrap());
        assert_eq!(short.ca_hash(), None);

        // A passphrase stands for one bootstrap token, the same on every server.
        let a = ServerToken::parse("correct horse battery staple").unwrap();
        let b = ServerToken::parse("correct horse battery staple").unwrap();
        let c = ServerToken::parse("correct horse battery stapler").unwrap();
        assert_eq!(a, b);
        assert_ne!(a.bootstrap(), c.bootstrap());
        BootstrapToken::parse(&a.passphrase()).unwrap();
        // K3s's form: the passphrase after `server:`, and the CA pin.
        let k3s =
            ServerToken::parse(&format!("K10{hash}::server:correct horse battery staple")).unwrap();
        assert_eq!(k3s.bootstrap(), a.bootstrap());
        assert_eq!(k3s.ca_hash(), Some(hash.as_str()));
        // The derived token, written out as a join token, parses back to itself.
        let written = Token::secure(&hash, a.bootstrap().clone())
            .unwrap()
            .to_string();
        assert_eq!(
            ServerToken::parse(&written).unwrap().bootstrap(),
            a.bootstrap()
        );

        for bad in ["", "  ", "K10abc::x.y", "a\u{7}b"] {
            let err = ServerToken::parse(bad).unwrap_err();
            assert!(matches!(err, TokenError::Malformed(_)), "{bad:?}: {err}");
        }
        assert!(!format!("{a:?}").contains(a.bootstrap().secret()));
    }

    #[test]
    fn rfc3339_round_trips() {
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(rfc3339(at), "2023-11-14T22:13:20Z");
        assert_eq!(parse_rfc3339(&rfc3339(at)), Some(at));
        assert_eq!(parse_rfc3339("2023-11-14T23:13:20+01:00"), Some(at));
        assert_eq!(parse_rfc3339("tomorrow"), None);
    }

    #[test]
    fn constant_time_comparison_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }
}
