//! `kedge token`: join tokens, as `k3s token` and `kubeadm token` manage them.
//!
//! - `kedge token create [TOKEN] [--ttl 24h] [--description TEXT]` stores a bootstrap-token
//!   Secret (`kube-system/bootstrap-token-<id>`) through the API and prints the secure
//!   token `K10<sha256 of the server CA>::<id>.<secret>`; `--ttl 0` never expires.
//! - `kedge token list` prints the tokens (id, TTL, expiry, description; never a secret).
//! - `kedge token delete <id>...` revokes tokens by deleting their Secrets (not the
//!   cluster's server token, which every server stores again when it starts).
//!
//! It talks to the API with the admin kubeconfig (`--kubeconfig`, `$KUBECONFIG`, or
//! `/etc/kedge/kedge.yaml`) and reads the server CA from
//! `<data-dir>/server/tls/server-ca.crt` to compute the hash.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::core::v1::Secret;
use kedge_nodelink::tokens::{self, TokenInfo};
use kedge_proto::token::{BootstrapToken, Token};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// `kedge token`.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,

    /// The admin kubeconfig.
    #[arg(
        long,
        global = true,
        env = "KUBECONFIG",
        default_value = "/etc/kedge/kedge.yaml"
    )]
    kubeconfig: PathBuf,

    /// The server's data directory (for the server CA).
    #[arg(
        long,
        global = true,
        env = "KEDGE_DATA_DIR",
        default_value = "/var/lib/kedge"
    )]
    data_dir: PathBuf,
}

#[derive(Debug, clap::Subcommand)]
enum TokenCommand {
    /// Create a join token and print it.
    Create {
        /// The token to store, `<id>.<secret>` ([a-z0-9]{6}.[a-z0-9]{16}); random if not given.
        token: Option<String>,
        /// How long until the token expires, like 24h or 90m; 0 never expires.
        #[arg(long, default_value = "24h", value_parser = parse_ttl)]
        ttl: Ttl,
        /// What the token is for.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List the join tokens.
    List,
    /// Revoke join tokens.
    Delete {
        /// Token ids (or whole tokens).
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

/// `--ttl`: `0` never expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ttl(Option<Duration>);

fn parse_ttl(text: &str) -> Result<Ttl, String> {
    if text.trim() == "0" {
        return Ok(Ttl(None));
    }
    let ttl = crate::duration::parse(text)?;
    Ok(Ttl((!ttl.is_zero()).then_some(ttl)))
}

pub async fn run(args: TokenArgs) -> Result<()> {
    let client = client(&args.kubeconfig).await?;
    let secrets: Api<Secret> = Api::namespaced(client, tokens::NAMESPACE);
    match args.command {
        TokenCommand::Create {
            token,
            ttl,
            description,
        } => {
            let ca_path =
                kedge_pki::layout::tls_dir(&args.data_dir).join(kedge_pki::layout::SERVER_CA_CERT);
            let ca = std::fs::read(&ca_path).with_context(|| {
                format!(
                    "read the server CA {} (pass --data-dir of the server)",
                    ca_path.display()
                )
            })?;
            let bootstrap = match token {
                Some(text) => BootstrapToken::parse(&text).context("the given token")?,
                None => {
                    BootstrapToken::generate(|buf| rand::RngCore::fill_bytes(&mut rand::rng(), buf))
                }
            };
            let expiration = ttl.0.map(|ttl| SystemTime::now() + ttl);
            let object = tokens::secret_object(&bootstrap, expiration, &description);
            let secret: Secret =
                serde_json::from_value(object).context("build the token Secret")?;
            match secrets.create(&PostParams::default(), &secret).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    bail!("token {} already exists", bootstrap.id())
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("create token {}", bootstrap.id()));
                }
            }
            let token = Token::secure(&kedge_pki::ca_hash(&ca), bootstrap)?;
            println!("{token}");
        }
        TokenCommand::List => {
            let list = secrets
                .list(&ListParams::default())
                .await
                .context("list the tokens")?;
            let mut infos = Vec::new();
            for secret in list.items {
                let value = serde_json::to_value(&secret)?;
                match tokens::info_from_secret(&value) {
                    Some(Ok(info)) => infos.push(info),
                    Some(Err(e)) => eprintln!("kedge: warning: {e}"),
                    None => {}
                }
            }
            infos.sort_by(|a, b| a.id.cmp(&b.id));
            print!("{}", table(&infos, SystemTime::now()));
        }
        TokenCommand::Delete { ids } => {
            for text in ids {
                let id = token_id(&text)?;
                if let Ok(secret) = secrets.get(&tokens::secret_name(&id)).await
                    && let Some(Ok(info)) =
                        tokens::info_from_secret(&serde_json::to_value(&secret)?)
                    && info.description == tokens::SERVER_TOKEN_DESCRIPTION
                {
                    bail!(
                        "token {id:?} is the cluster's server token: it cannot be revoked (every \
                         server stores it again when it starts, as K3s's server token); revoke \
                         tokens made with `kedge token create` instead"
                    );
                }
                match secrets
                    .delete(&tokens::secret_name(&id), &DeleteParams::default())
                    .await
                {
                    Ok(_) => println!("bootstrap token {id:?} deleted"),
                    Err(kube::Error::Api(e)) if e.code == 404 => {
                        bail!("bootstrap token {id:?} not found")
                    }
                    Err(e) => return Err(e).with_context(|| format!("delete token {id}")),
                }
            }
        }
    }
    Ok(())
}

/// A token id from an id, `<id>.<secret>` or a `K10` token.
fn token_id(text: &str) -> Result<String> {
    if let Ok(token) = Token::parse(text) {
        return Ok(token.id().to_owned());
    }
    let id = text.trim();
    if id.len() == kedge_proto::token::ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Ok(id.to_owned());
    }
    bail!("{id:?} is not a token id ([a-z0-9]{{6}}) or a token")
}

async fn client(kubeconfig: &Path) -> Result<kube::Client> {
    // $KUBECONFIG may list several files; the first that exists is used.
    let text = kubeconfig.to_string_lossy();
    let path = text
        .split(':')
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| kubeconfig.to_owned());
    let config = Kubeconfig::read_from(&path)
        .with_context(|| format!("read the kubeconfig {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default())
        .await
        .context("build the client configuration")?;
    kube::Client::try_from(config).context("build the API client")
}

/// The table of `kedge token list`, like `kubeadm token list` but with ids only.
fn table(tokens: &[TokenInfo], now: SystemTime) -> String {
    let mut rows = vec![[
        "TOKEN".to_owned(),
        "TTL".to_owned(),
        "EXPIRES".to_owned(),
        "DESCRIPTION".to_owned(),
    ]];
    for t in tokens {
        let (ttl, expires) = match t.expiration {
            None => ("<forever>".to_owned(), "<never>".to_owned()),
            Some(at) => (short_duration(at, now), tokens::rfc3339(at)),
        };
        rows.push([t.id.clone(), ttl, expires, t.description.clone()]);
    }
    let widths: Vec<usize> = (0..4)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c == 3 {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}   ", w = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Time left, as Kubernetes' ShortHumanDuration writes it; `<invalid>` once past.
fn short_duration(at: SystemTime, now: SystemTime) -> String {
    let Ok(left) = at.duration_since(now) else {
        return "<invalid>".to_owned();
    };
    let s = left.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..172_800 => format!("{}h", s / 3600),
        172_800..63_072_000 => format!("{}d", s / 86_400),
        _ => format!("{}y", s / 31_536_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_flag() {
        assert_eq!(parse_ttl("0").unwrap(), Ttl(None));
        assert_eq!(parse_ttl("0s").unwrap(), Ttl(None));
        assert_eq!(
            parse_ttl("24h").unwrap(),
            Ttl(Some(Duration::from_secs(86_400)))
        );
        assert!(parse_ttl("forever").is_err());
    }

    #[test]
    fn ids_from_ids_or_tokens() {
        assert_eq!(token_id("abcdef").unwrap(), "abcdef");
        assert_eq!(token_id("abcdef.0123456789abcdef").unwrap(), "abcdef");
        let k10 = format!("K10{}::abcdef.0123456789abcdef", "a".repeat(64));
        assert_eq!(token_id(&k10).unwrap(), "abcdef");
        assert!(token_id("ABCDEF").is_err());
        assert!(token_id("abc").is_err());
    }

    #[test]
    fn list_table_shows_ids_ttls_and_never_secrets() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let infos = vec![
            TokenInfo {
                id: "abcdef".into(),
                expiration: Some(now + Duration::from_secs(23 * 3600 + 59 * 60)),
                description: "for the pis".into(),
            },
            TokenInfo {
                id: "server".into(),
                expiration: None,
                description: String::new(),
            },
            TokenInfo {
                id: "old000".into(),
                expiration: Some(now - Duration::from_secs(1)),
                description: String::new(),
            },
        ];
        let out = table(&infos, now);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert!(lines[0].starts_with("TOKEN    TTL"), "{out}");
        assert!(lines[0].ends_with("DESCRIPTION"), "{out}");
        assert!(lines[1].contains("23h"), "{out}");
        assert!(lines[1].contains("2023-11-15T22:12:20Z"), "{out}");
        assert!(lines[1].ends_with("for the pis"), "{out}");
        assert!(lines[2].contains("<forever>"), "{out}");
        assert!(lines[3].contains("<invalid>"), "{out}");
    }

    #[test]
    fn short_durations() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let after = |s| short_duration(now + Duration::from_secs(s), now);
        assert_eq!(after(5), "5s");
        assert_eq!(after(90), "1m");
        assert_eq!(after(7200), "2h");
        assert_eq!(after(47 * 3600), "47h");
        assert_eq!(after(3 * 86_400), "3d");
        assert_eq!(after(3 * 365 * 86_400), "3y");
    }
}
