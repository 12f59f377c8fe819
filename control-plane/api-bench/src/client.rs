//! An HTTPS client for the Kubernetes API: HTTP/2 (ALPN h2, as kubectl and
//! client-go negotiate) over rustls, authenticated with the admin client
//! certificate from the kubeconfig the server wrote.
//!
//! Each [`Conn`] is one TLS connection; requests on it are multiplexed as
//! HTTP/2 streams. The bench decides how many connections it opens: one for
//! the open-loop phases, one per closed-loop client and one per watcher.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Deserialize;
use tokio_rustls::TlsConnector;

/// What the bench reads from a kubeconfig: the first cluster and user.
#[derive(Deserialize)]
struct Kubeconfig {
    clusters: Vec<Named<Cluster>>,
    users: Vec<Named<User>>,
}

#[derive(Deserialize)]
struct Named<T> {
    #[serde(alias = "cluster", alias = "user")]
    inner: T,
}

#[derive(Deserialize)]
struct Cluster {
    server: String,
    #[serde(rename = "certificate-authority-data")]
    ca: String,
}

#[derive(Deserialize)]
struct User {
    #[serde(rename = "client-certificate-data")]
    cert: String,
    #[serde(rename = "client-key-data")]
    key: String,
}

/// Where the API is and how to reach it.
#[derive(Clone)]
pub struct Api {
    addr: SocketAddr,
    name: ServerName<'static>,
    tls: TlsConnector,
    /// `https://host:port`, the prefix of every request URI.
    base: Arc<str>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("base", &self.base).finish()
    }
}

impl Api {
    /// Reads the server URL, the CA and the admin credentials from `path`.
    pub async fn from_kubeconfig(path: &Path) -> Result<Api> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read the kubeconfig {}", path.display()))?;
        let config: Kubeconfig = serde_yaml::from_str(&text)
            .with_context(|| format!("parse the kubeconfig {}", path.display()))?;
        let cluster = &config
            .clusters
            .first()
            .context("the kubeconfig has no cluster")?
            .inner;
        let user = &config
            .users
            .first()
            .context("the kubeconfig has no user")?
            .inner;
        let decode = |what: &str, b64: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .with_context(|| format!("the kubeconfig's {what} is not base64"))
        };
        let ca = decode("certificate-authority-data", &cluster.ca)?;
        let cert = decode("client-certificate-data", &user.cert)?;
        let key = decode("client-key-data", &user.key)?;

        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&ca) {
            roots.add(c.context("read the cluster CA")?)?;
        }
        let chain = CertificateDer::pem_slice_iter(&cert)
            .collect::<Result<Vec<_>, _>>()
            .context("read the client certificate")?;
        let key = PrivateKeyDer::from_pem_slice(&key).context("read the client key")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .context("use the admin client certificate")?;
        tls.alpn_protocols = vec![b"h2".to_vec()];

        let authority = cluster
            .server
            .strip_prefix("https://")
            .with_context(|| format!("the server URL {:?} is not https://", cluster.server))?
            .trim_end_matches('/');
        let addr = tokio::net::lookup_host(authority)
            .await
            .with_context(|| format!("resolve {authority}"))?
            .next()
            .with_context(|| format!("{authority} resolves to nothing"))?;
        let host = authority
            .rsplit_once(':')
            .map_or(authority, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = ServerName::try_from(host.to_string())
            .with_context(|| format!("{host} is not a valid server name"))?;
        Ok(Api {
            addr,
            name,
            tls: TlsConnector::from(Arc::new(tls)),
            base: format!("https://{authority}").into(),
        })
    }

    /// Opens one more TLS connection and speaks HTTP/2 on it.
    pub async fn connect(&self) -> Result<Conn> {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connect to {}", self.addr))?;
        tcp.set_nodelay(true)?;
        let tls = self
            .tls
            .connect(self.name.clone(), tcp)
            .await
            .with_context(|| format!("TLS handshake with {}", self.addr))?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            bail!("the server did not agree to HTTP/2 (ALPN h2)");
        }
        // Flow-control windows like client-go's (4 MiB per stream), so a
        // large LIST is not held back by the client's window.
        let (send, connection) = http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(4u32 << 20)
            .initial_connection_window_size(16u32 << 20)
            .handshake(TokioIo::new(tls))
            .await
            .context("HTTP/2 handshake")?;
        tokio::spawn(connection);
        Ok(Conn {
            send,
            base: self.base.clone(),
        })
    }
}

/// One HTTP/2 connection; clones share it.
#[derive(Clone, Debug)]
pub struct Conn {
    send: http2::SendRequest<Full<Bytes>>,
    base: Arc<str>,
}

impl Conn {
    /// Sends a request and returns the response with its body still to read.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<http::Response<Incoming>> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(header::ACCEPT, "application/json");
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(Full::new(body.unwrap_or_default()))?;
        let mut send = self.send.clone();
        send.ready().await.context("the connection is closed")?;
        Ok(send.send_request(req).await?)
    }

    /// Sends a request and reads the whole response; a status other than
    /// 2xx is an error that quotes the start of the body.
    pub async fn call(&self, method: Method, path: &str, body: Option<Bytes>) -> Result<Bytes> {
        let resp = self.send(method.clone(), path, body).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        check(status, &body).with_context(|| format!("{method} {path}"))?;
        Ok(body)
    }
}

fn check(status: StatusCode, body: &[u8]) -> Result<()> {
    if status.is_success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    Err(anyhow!("{status}: {text}"))
}

/// Polls `/readyz` until it answers 200.
pub async fn wait_ready(conn: &Conn, timeout: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match conn.call(Method::GET, "/readyz", None).await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        if tokio::time::Instant::now() > deadline {
            return Err(last.context(format!("/readyz did not answer 200 within {timeout:?}")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The objects the bench writes, and what it reads back from them.
pub mod objects {
    use bytes::Bytes;
    use serde_json::json;

    /// Bytes of data each ConfigMap carries.
    pub const DATA_BYTES: usize = 500;

    pub fn namespace(name: &str) -> Bytes {
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
            .to_string()
            .into()
    }

    /// A ConfigMap with [`DATA_BYTES`] of data that depends on `version`;
    /// with `resource_version`, the body of an update (PUT).
    pub fn configmap(
        namespace: &str,
        name: &str,
        version: usize,
        resource_version: Option<&str>,
    ) -> Bytes {
        let line = format!("key-{version:06}: value\n");
        let data: String = line.chars().cycle().take(DATA_BYTES).collect();
        let mut metadata = json!({
            "name": name,
            "namespace": namespace,
            "labels": {"app": "api-bench"},
        });
        if let Some(rv) = resource_version {
            metadata["resourceVersion"] = rv.into();
        }
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata,
            "data": {"config.yaml": data},
        })
        .to_string()
        .into()
    }

    pub fn configmaps_path(namespace: &str) -> String {
        format!("/api/v1/namespaces/{namespace}/configmaps")
    }

    /// `metadata.resourceVersion` of an object or a list.
    pub fn resource_version(body: &[u8]) -> anyhow::Result<String> {
        let v: serde_json::Value = serde_json::from_slice(body)?;
        v.pointer("/metadata/resourceVersion")
            .and_then(|rv| rv.as_str())
            .map(str::to_string)
            .ok_or_else(|| anyhow::anyhow!("the response has no metadata.resourceVersion"))
    }

    /// How many items a list holds.
    pub fn item_count(body: &[u8]) -> anyhow::Result<usize> {
        let v: serde_json::Value = serde_json::from_slice(body)?;
        v["items"]
            .as_array()
            .map(Vec::len)
            .ok_or_else(|| anyhow::anyhow!("the response is not a list"))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn configmaps_carry_their_data_and_resource_version() {
            let body = configmap("ns", "c-1", 7, Some("42"));
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["data"]["config.yaml"].as_str().unwrap().len(), DATA_BYTES);
            assert_eq!(resource_version(&body).unwrap(), "42");
            assert!(resource_version(&configmap("ns", "c-1", 7, None)).is_err());
        }
    }
}
