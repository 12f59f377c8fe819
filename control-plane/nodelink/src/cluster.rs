//! The cluster's shared secrets (both CAs, the service-account key) in the datastore, so
//! that every server of a cluster signs and trusts the same certificates and tokens,
//! the way K3s keeps its bootstrap data with an external datastore.
//!
//! [`load_or_init`] runs at server start, before the PKI is loaded:
//! - bootstrap data in the datastore ([`BOOTSTRAP_KEY`]): opened with the server token
//!   and written into the server's tls directory. No token, a wrong token or corrupt data
//!   is a clear error, and nothing is overwritten;
//! - none yet: this server starts the cluster. It takes the CAs already in its tls
//!   directory (a server that ran alone before) or makes new ones, seals them with the
//!   server token (a new random one if none was given), and stores them with
//!   create-if-absent. If another server stored its own first, this one takes that
//!   instead, provided it was given the same token.

use std::path::Path;
use std::time::SystemTime;

use bytes::Bytes;
use kedge_datastore::{Store, WriteOptions};
use kedge_pki::{ClusterSecrets, PkiError};
use tracing::info;

use crate::tokens::ServerToken;

/// Where the sealed bootstrap data lives.
pub const BOOTSTRAP_KEY: &str = "/kedge/bootstrap";

/// What to tell an operator whose server cannot open the cluster's bootstrap data.
const TOKEN_HINT: &str = "give this server the cluster's token with --token, --token-file \
    or KEDGE_TOKEN (the first server keeps it in <data-dir>/server/token)";

/// The cluster's secrets could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("bootstrap data already exists and is encrypted with a different token; {TOKEN_HINT}")]
    WrongToken,
    #[error(
        "bootstrap data already exists in the datastore ({BOOTSTRAP_KEY}): this server joins \
         an existing cluster; {TOKEN_HINT}"
    )]
    TokenRequired,
    #[error(
        "the bootstrap data in the datastore ({BOOTSTRAP_KEY}) is corrupt: {reason}; nothing \
         was overwritten; restore the datastore from a backup"
    )]
    Corrupt { reason: String },
    #[error(
        "the token pins the server ca {given}, but the cluster's server ca hashes to \
         {actual}; check --token"
    )]
    CaHashMismatch { given: String, actual: String },
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("datastore ({BOOTSTRAP_KEY}): {0}")]
    Store(#[from] kedge_datastore::Error),
}

/// The cluster's secrets, installed in the server's tls directory, and the token they
/// are sealed with.
#[derive(Debug)]
pub struct Bootstrapped {
    pub secrets: ClusterSecrets,
    pub token: ServerToken,
    /// This server stored them: it started the cluster.
    pub created: bool,
}

/// Fetches the cluster's secrets or starts the cluster (see the module), and installs the
/// secrets into `tls_dir`. `token` is the server token given or kept from an earlier
/// start; `fill` supplies random bytes for a new one.
pub async fn load_or_init(
    store: &dyn Store,
    token: Option<ServerToken>,
    tls_dir: &Path,
    now: SystemTime,
    fill: impl FnMut(&mut [u8]),
) -> Result<Bootstrapped, ClusterError> {
    let mut fill = Some(fill);
    let mut token = token;
    // Twice at most: a lost create-if-absent race reads what the winner stored.
    for _ in 0..2 {
        if let Some(kv) = store.get(BOOTSTRAP_KEY, None).await? {
            let token = token.ok_or(ClusterError::TokenRequired)?;
            let secrets =
                ClusterSecrets::open(&token.passphrase(), &kv.value).map_err(|e| match e {
                    PkiError::SealedWithOtherToken => ClusterError::WrongToken,
                    PkiError::SealedCorrupt { reason } => ClusterError::Corrupt { reason },
                    other => ClusterError::Pki(other),
                })?;
            secrets.check(tls_dir).map_err(|e| ClusterError::Corrupt {
                reason: e.to_string(),
            })?;
            check_pin(&token, &secrets)?;
            secrets.install(tls_dir)?;
            info!(
                key = BOOTSTRAP_KEY,
                "took the cluster's CAs from the datastore"
            );
            return Ok(Bootstrapped {
                secrets,
                token,
                created: false,
            });
        }
        let given = match token.take() {
            Some(t) => t,
            None => ServerToken::generate(fill.take().ok_or(ClusterError::WrongToken)?),
        };
        let secrets = match ClusterSecrets::from_dir(tls_dir)? {
            Some(local) => local,
            None => ClusterSecrets::generate(tls_dir, now)?,
        };
        check_pin(&given, &secrets)?;
        let sealed = secrets.seal(&given.passphrase())?;
        match store
            .create(BOOTSTRAP_KEY, Bytes::from(sealed), WriteOptions::default())
            .await
        {
            Ok(_) => {
                secrets.install(tls_dir)?;
                info!(
                    key = BOOTSTRAP_KEY,
                    "stored the cluster's CAs in the datastore, sealed with the server token"
                );
                return Ok(Bootstrapped {
                    secrets,
                    token: given,
                    created: true,
                });
            }
            Err(kedge_datastore::Error::AlreadyExists { .. }) => {
                info!("another server stored the cluster's CAs first; taking those");
                token = Some(given);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ClusterError::Corrupt {
        reason: "it was created and then vanished while this server started".into(),
    })
}

fn check_pin(token: &ServerToken, secrets: &ClusterSecrets) -> Result<(), ClusterError> {
    let actual = kedge_pki::ca_hash(&secrets.server_ca_cert);
    match token.ca_hash() {
        Some(given) if given != actual => Err(ClusterError::CaHashMismatch {
            given: given.to_owned(),
            actual,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    async fn sqlite() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = kedge_datastore_sqlite::SqliteStore::open(
            kedge_datastore_sqlite::SqliteConfig::new(dir.path().join("state.db")),
        )
        .await
        .unwrap();
        (dir, Arc::new(store))
    }

    fn fill(seed: u8) -> impl FnMut(&mut [u8]) {
        crate::tokens::tests::counter(seed)
    }

    fn never(_: &mut [u8]) {
        panic!("no token may be generated here");
    }

    #[tokio::test]
    async fn a_second_server_with_the_token_shares_the_cas_and_a_wrong_token_is_refused() {
        let (db, store) = sqlite().await;
        let a = db.path().join("a/tls");
        let first = load_or_init(store.as_ref(), None, &a, SystemTime::now(), fill(1))
            .await
            .unwrap();
        assert!(first.created);
        assert_eq!(
            std::fs::read_to_string(a.join("server-ca.crt")).unwrap(),
            first.secrets.server_ca_cert
        );

        // Server B with the token: the same CAs and service-account key, in its own dir.
        let b = db.path().join("b/tls");
        let second = load_or_init(
            store.as_ref(),
            Some(first.token.clone()),
            &b,
            SystemTime::now(),
            never,
        )
        .await
        .unwrap();
        assert!(!second.created);
        assert_eq!(second.secrets, first.secrets);
        assert_eq!(
            std::fs::read(b.join("service.key")).unwrap(),
            std::fs::read(a.join("service.key")).unwrap()
        );

        // The first server again, with the token it keeps: unchanged.
        let again = load_or_init(
            store.as_ref(),
            Some(first.token.clone()),
            &a,
            SystemTime::now(),
            never,
        )
        .await
        .unwrap();
        assert_eq!(again.secrets, first.secrets);

        // A wrong token, and no token: clear refusals; nothing written.
        let c = db.path().join("c/tls");
        let wrong = ServerToken::parse("some other passphrase").unwrap();
        let err = load_or_init(store.as_ref(), Some(wrong), &c, SystemTime::now(), never)
            .await
            .unwrap_err();
        assert!(
            err.to_string().starts_with(
                "bootstrap data already exists and is encrypted with a different token"
            ),
            "{err}"
        );
        let err = load_or_init(store.as_ref(), None, &c, SystemTime::now(), never)
            .await
            .unwrap_err();
        assert!(matches!(err, ClusterError::TokenRequired), "{err}");
        assert!(err.to_string().contains("--token"), "{err}");
        assert!(!c.exists(), "a refused server wrote its tls directory");

        // A token pinning another CA.
        let pinned = ServerToken::parse(&format!(
            "K10{}::{}",
            "0".repeat(64),
            first.token.passphrase()
        ))
        .unwrap();
        let err = load_or_init(store.as_ref(), Some(pinned), &c, SystemTime::now(), never)
            .await
            .unwrap_err();
        assert!(matches!(err, ClusterError::CaHashMismatch { .. }), "{err}");
    }

    #[tokio::test]
    async fn corrupt_bootstrap_data_is_an_error_and_stays_as_it_was() {
        let (db, store) = sqlite().await;
        store
            .create(
                BOOTSTRAP_KEY,
                Bytes::from_static(b"{not sealed"),
                WriteOptions::default(),
            )
            .await
            .unwrap();
        let token = ServerToken::parse("abcdef.0123456789abcdef").unwrap();
        let tls = db.path().join("tls");
        let err = load_or_init(store.as_ref(), Some(token), &tls, SystemTime::now(), never)
            .await
            .unwrap_err();
        assert!(matches!(err, ClusterError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("nothing was overwritten"), "{err}");
        let kept = store.get(BOOTSTRAP_KEY, None).await.unwrap().unwrap();
        assert_eq!(&kept.value[..], b"{not sealed");
        assert!(!tls.exists());
    }

    #[tokio::test]
    async fn a_server_that_ran_alone_stores_its_own_cas() {
        let (db, store) = sqlite().await;
        let tls = db.path().join("tls");
        let pki = kedge_pki::ServerPki::load_or_create(
            &tls,
            &kedge_pki::PkiOptions::default(),
            SystemTime::now(),
        )
        .unwrap();
        let token = ServerToken::parse("abcdef.0123456789abcdef").unwrap();
        let done = load_or_init(store.as_ref(), Some(token), &tls, SystemTime::now(), never)
            .await
            .unwrap();
        assert!(done.created);
        assert_eq!(done.secrets.server_ca_cert, pki.server_ca_pem());
        assert_eq!(done.secrets.client_ca_cert, pki.client_ca_pem());
    }

    #[tokio::test]
    async fn two_servers_racing_to_start_the_cluster_end_with_one_set_of_cas() {
        let (db, store) = sqlite().await;
        let token = ServerToken::parse("abcdef.0123456789abcdef").unwrap();
        let mut runs = Vec::new();
        for i in 0..4 {
            let store = store.clone();
            let token = token.clone();
            let tls = db.path().join(format!("s{i}/tls"));
            runs.push(tokio::spawn(async move {
                load_or_init(store.as_ref(), Some(token), &tls, SystemTime::now(), never)
                    .await
                    .unwrap()
            }));
        }
        let mut created = 0;
        let mut cas = std::collections::BTreeSet::new();
        for run in runs {
            let done = run.await.unwrap();
            created += usize::from(done.created);
            cas.insert(done.secrets.server_ca_cert);
        }
        assert_eq!(created, 1, "exactly one server stores the bootstrap data");
        assert_eq!(cas.len(), 1, "every server took the same CA");
    }
}
