//! `--datastore-endpoint`: which backend, where. The forms follow K3s:
//!
//! | endpoint | backend |
//! |---|---|
//! | (empty) | SQLite at `<data-dir>/server/db/state.db` |
//! | `sqlite:///path/to/state.db` | SQLite at that path |
//! | `postgres://user:pass@host:5432/db` (or `postgresql://`) | PostgreSQL |
//! | `etcd://host:2379[,host:2379…]`, `http://…`, `https://…` | etcd v3 |

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Sqlite(PathBuf),
    Postgres(String),
    Etcd(Vec<String>),
}

impl Endpoint {
    pub fn parse(endpoint: &str, data_dir: &Path) -> Result<Self> {
        let endpoint = endpoint.trim();
        if endpoint.is_empty() {
            return Ok(Endpoint::Sqlite(default_sqlite_path(data_dir)));
        }
        let (scheme, rest) = endpoint.split_once("://").with_context(|| {
            format!(
                "datastore endpoint {endpoint:?} has no scheme: use sqlite:///path, \
                 postgres://…, etcd://host:port or http(s)://host:port"
            )
        })?;
        match scheme {
            "sqlite" => {
                let path = rest.split('?').next().unwrap_or_default();
                if path.is_empty() {
                    bail!(
                        "datastore endpoint {endpoint:?} names no file: use sqlite:///path/to/state.db"
                    );
                }
                Ok(Endpoint::Sqlite(PathBuf::from(path)))
            }
            "postgres" | "postgresql" => Ok(Endpoint::Postgres(endpoint.to_string())),
            "etcd" | "http" | "https" => {
                let scheme = if scheme == "etcd" { "http" } else { scheme };
                let hosts: Vec<String> = rest
                    .split(',')
                    .map(|h| h.trim().trim_start_matches(&format!("{scheme}://")))
                    .filter(|h| !h.is_empty())
                    .map(|h| format!("{scheme}://{}", h.trim_end_matches('/')))
                    .collect();
                if hosts.is_empty() {
                    bail!("datastore endpoint {endpoint:?} names no etcd host");
                }
                Ok(Endpoint::Etcd(hosts))
            }
            "mysql" => bail!(
                "MySQL is not a kedge datastore: use the embedded SQLite (no endpoint), \
                 postgres://… or etcd://…"
            ),
            other => bail!(
                "unknown datastore scheme {other:?}: use sqlite:///path, postgres://…, \
                 etcd://host:port or http(s)://host:port"
            ),
        }
    }

    /// The endpoint for logs, with any password removed.
    pub fn redacted(&self) -> String {
        match self {
            Endpoint::Sqlite(path) => format!("sqlite {}", path.display()),
            Endpoint::Postgres(url) => format!("postgres {}", redact_password(url)),
            Endpoint::Etcd(hosts) => format!("etcd {}", hosts.join(",")),
        }
    }
}

/// Where K3s keeps its SQLite database, under kedge's data dir.
pub fn default_sqlite_path(data_dir: &Path) -> PathBuf {
    data_dir.join("server").join("db").join("state.db")
}

fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let dir = Path::new("/var/lib/kedge");
        assert_eq!(
            Endpoint::parse("", dir).unwrap(),
            Endpoint::Sqlite("/var/lib/kedge/server/db/state.db".into())
        );
        assert_eq!(
            Endpoint::parse("sqlite:///tmp/x.db?_journal=WAL", dir).unwrap(),
            Endpoint::Sqlite("/tmp/x.db".into())
        );
        assert_eq!(
            Endpoint::parse("etcd://10.0.0.1:2379,10.0.0.2:2379", dir).unwrap(),
            Endpoint::Etcd(vec![
                "http://10.0.0.1:2379".into(),
                "http://10.0.0.2:2379".into()
            ])
        );
        assert_eq!(
            Endpoint::parse("https://a:2379,https://b:2379", dir).unwrap(),
            Endpoint::Etcd(vec!["https://a:2379".into(), "https://b:2379".into()])
        );
        assert!(matches!(
            Endpoint::parse("postgresql://u@h/db", dir).unwrap(),
            Endpoint::Postgres(_)
        ));
        for bad in ["mysql://x", "nonsense", "sqlite://", "etcd://", "ftp://x"] {
            assert!(Endpoint::parse(bad, dir).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_stay_out_of_logs() {
        let e = Endpoint::parse("postgres://kedge:s3cret@db:5432/kedge", Path::new("/")).unwrap();
        assert!(!e.redacted().contains("s3cret"));
        assert!(e.redacted().contains("kedge:***@db"));
    }
}
