//! Registry pulls: the Docker Registry HTTP API v2, with mirrors, auth and TLS settings in
//! K3s's `registries.yaml` form:
//!
//! ```yaml
//! mirrors:
//!   docker.io:
//!     endpoint: ["https://mirror.local:5000", "http://10.0.0.1:5000"]
//! configs:
//!   mirror.local:5000:
//!     auth: {username: u, password: p}     # or token / identity_token / auth (base64 u:p)
//!     tls: {ca_file: /etc/ssl/ca.pem, insecure_skip_verify: false}
//! ```
//!
//! Endpoints are tried in order (the mirrors, then a `"*"` mirror, then the registry
//! itself). Auth follows the registry's `WWW-Authenticate` challenge: Bearer (a token from
//! the realm, with the configured credentials) or Basic. Blobs stream from the registry
//! into containerd's content store, which checks each digest; the image is then unpacked
//! as an import is. Not supported yet: `rewrite` rules and TLS client certificates.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use crate::client::Client;
use crate::content::{
    ConfigFile, Descriptor, Index, Manifest, is_index, is_manifest, pick_manifest, sha256_digest,
};
use crate::error::{Error, Result};
use crate::images::ImageRef;
use crate::import::PlannedImage;
use crate::reference::{DOCKER_IO, Reference};

const MAX_MANIFEST: usize = 4 << 20;
const TIMEOUT: Duration = Duration::from_secs(60);
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// The kubelet's imagePullPolicy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// `registries.yaml`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Registries {
    #[serde(default)]
    pub mirrors: HashMap<String, Mirror>,
    #[serde(default)]
    pub configs: HashMap<String, RegistryConfig>,
}

/// A registry's mirrors.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Mirror {
    #[serde(default)]
    pub endpoint: Vec<String>,
    /// Accepted for compatibility; not applied yet.
    #[serde(default)]
    pub rewrite: HashMap<String, String>,
}

/// Auth and TLS for one registry host (`host[:port]`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RegistryConfig {
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthConfig {
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// base64 of `username:password`.
    #[serde(default)]
    pub auth: Option<String>,
    /// A bearer token used as is.
    #[serde(default)]
    pub token: Option<String>,
    /// A refresh token sent to the token realm.
    #[serde(default)]
    pub identity_token: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct TlsConfig {
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

impl Registries {
    /// Reads `registries.yaml`; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Registries> {
        match std::fs::read_to_string(path) {
            Ok(s) => Self::parse(&s).map_err(|reason| Error::Registries {
                path: path.to_path_buf(),
                reason,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Registries::default()),
            Err(e) => Err(Error::io("read registries config", path, e)),
        }
    }

    /// Parses YAML text.
    pub fn parse(text: &str) -> std::result::Result<Registries, String> {
        if text.trim().is_empty() {
            return Ok(Registries::default());
        }
        let r: Registries = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        for (host, m) in &r.mirrors {
            for ep in &m.endpoint {
                let uri: Uri = ep
                    .parse()
                    .map_err(|e| format!("mirror endpoint {ep:?} of {host}: {e}"))?;
                if !matches!(uri.scheme_str(), Some("http") | Some("https")) || uri.host().is_none()
                {
                    return Err(format!(
                        "mirror endpoint {ep:?} of {host} must be an http:// or https:// URL"
                    ));
                }
            }
        }
        Ok(r)
    }

    /// The endpoints to try for a registry host, in order.
    pub fn endpoints(&self, registry: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for key in [registry, "*"] {
            if let Some(m) = self.mirrors.get(key) {
                out.extend(
                    m.endpoint
                        .iter()
                        .map(|e| e.trim_end_matches('/').to_string()),
                );
            }
        }
        let default = if registry == DOCKER_IO {
            "https://registry-1.docker.io".to_string()
        } else {
            format!("https://{registry}")
        };
        if !out.contains(&default) {
            out.push(default);
        }
        out
    }

    fn config_for(&self, authority: &str) -> RegistryConfig {
        self.configs.get(authority).cloned().unwrap_or_default()
    }
}

type Http = HttpClient<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Empty<Bytes>,
>;

#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn http_client(cfg: &RegistryConfig, endpoint: &str) -> std::result::Result<Http, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let tls = cfg.tls.clone().unwrap_or_default();
    if tls.cert_file.is_some() || tls.key_file.is_some() {
        return Err(format!(
            "TLS client certificates for {endpoint} are not supported yet; remove cert_file/key_file"
        ));
    }
    let https = hyper_rustls::HttpsConnectorBuilder::new();
    let https = if tls.insecure_skip_verify {
        let c = builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth();
        https.with_tls_config(c)
    } else if let Some(ca) = &tls.ca_file {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca)
            .map_err(|e| format!("ca_file {}: {e}", ca.display()))?
        {
            let cert = cert.map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
        }
        https.with_tls_config(builder.with_root_certificates(roots).with_no_client_auth())
    } else {
        https.with_native_roots().map_err(|e| {
            format!("no system CA certificates ({e}); install ca-certificates or set tls.ca_file")
        })?
    };
    let conn = https.https_or_http().enable_http1().build();
    Ok(HttpClient::builder(TokioExecutor::new()).build(conn))
}

/// One endpoint's session: its HTTP client, credentials and the token it got.
struct Session {
    http: Http,
    base: String,
    endpoint: String,
    reference: String,
    repository: String,
    auth: Option<AuthConfig>,
    authorization: Option<String>,
}

fn challenge_params(h: &str) -> (String, HashMap<String, String>) {
    let (scheme, rest) = h.trim().split_once(' ').unwrap_or((h.trim(), ""));
    let mut params = HashMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((k, v)) = rest.split_once('=') else {
            break;
        };
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let v = v.trim_start();
        let (val, next) = if let Some(v) = v.strip_prefix('"') {
            match v.find('"') {
                Some(end) => (v[..end].to_string(), &v[end + 1..]),
                None => (v.to_string(), ""),
            }
        } else {
            match v.find(',') {
                Some(end) => (v[..end].to_string(), &v[end..]),
                None => (v.to_string(), ""),
            }
        };
        params.insert(k, val);
        rest = next.trim_start_matches([',', ' ']);
    }
    (scheme.to_ascii_lowercase(), params)
}

impl Session {
    fn err(&self, reason: impl Into<String>) -> Error {
        Error::Pull {
            reference: self.reference.clone(),
            endpoint: self.endpoint.clone(),
            reason: reason.into(),
        }
    }

    fn basic(&self) -> Option<String> {
        let a = self.auth.as_ref()?;
        if let Some(enc) = &a.auth {
            return Some(format!("Basic {enc}"));
        }
        let (u, p) = (a.username.as_ref()?, a.password.clone().unwrap_or_default());
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        ))
    }

    async fn send(
        &self,
        uri: &str,
        accept: Option<&str>,
        auth: Option<&str>,
    ) -> Result<http::Response<hyper::body::Incoming>> {
        let mut req = Request::get(uri).header(header::USER_AGENT, "kedge-agent");
        if let Some(a) = accept {
            req = req.header(header::ACCEPT, a);
        }
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let req = req
            .body(Empty::new())
            .map_err(|e| self.err(format!("bad request {uri}: {e}")))?;
        match tokio::time::timeout(TIMEOUT, self.http.request(req)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(self.err(format!("GET {uri}: {e}"))),
            Err(_) => Err(self.err(format!("GET {uri}: no answer in {}s", TIMEOUT.as_secs()))),
        }
    }

    /// GET with auth negotiation and redirects.
    async fn get(
        &mut self,
        path: &str,
        accept: Option<&str>,
    ) -> Result<http::Response<hyper::body::Incoming>> {
        let mut uri = format!("{}{path}", self.base);
        let mut authed = false;
        for _ in 0..6 {
            let same_host = uri.starts_with(&self.base);
            let auth = if same_host {
                self.authorization.clone()
            } else {
                None
            };
            let resp = self.send(&uri, accept, auth.as_deref()).await?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && same_host && !authed {
                authed = true;
                let challenge = resp
                    .headers()
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                self.authorize(&challenge).await?;
                continue;
            }
            if status.is_redirection() {
                let loc = resp
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| self.err(format!("redirect without location from {uri}")))?;
                uri = if loc.starts_with('/') {
                    let u: Uri = uri.parse().map_err(|_| self.err("bad redirect"))?;
                    format!(
                        "{}://{}{loc}",
                        u.scheme_str().unwrap_or("https"),
                        u.authority().map(|a| a.as_str()).unwrap_or("")
                    )
                } else {
                    loc.to_string()
                };
                continue;
            }
            if !status.is_success() {
                let hint = match status {
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                        "; check the credentials in registries.yaml"
                    }
                    StatusCode::NOT_FOUND => "; check the image name and tag",
                    _ => "",
                };
                return Err(self.err(format!("GET {uri}: {status}{hint}")));
            }
            return Ok(resp);
        }
        Err(self.err(format!("too many redirects or auth rounds for {path}")))
    }

    async fn authorize(&mut self, challenge: &str) -> Result<()> {
        let (scheme, params) = challenge_params(challenge);
        match scheme.as_str() {
            "basic" => {
                self.authorization = Some(self.basic().ok_or_else(|| {
                    self.err("the registry wants basic auth; add auth to registries.yaml configs")
                })?);
                Ok(())
            }
            "bearer" => {
                if let Some(t) = self.auth.as_ref().and_then(|a| a.token.clone()) {
                    self.authorization = Some(format!("Bearer {t}"));
                    return Ok(());
                }
                let realm = params
                    .get("realm")
                    .ok_or_else(|| self.err("bearer challenge without realm"))?;
                // The serializer holds a non-Sync encoder: finish it before any await, so
                // that the pull's future stays Send.
                let query = {
                    let mut q = form_urlencoded::Serializer::new(String::new());
                    if let Some(s) = params.get("service") {
                        q.append_pair("service", s);
                    }
                    q.append_pair("scope", &format!("repository:{}:pull", self.repository));
                    q.finish()
                };
                let sep = if realm.contains('?') { '&' } else { '?' };
                let url = format!("{realm}{sep}{query}");
                let basic = self.basic();
                let resp = self.send(&url, None, basic.as_deref()).await?;
                if !resp.status().is_success() {
                    return Err(self.err(format!(
                        "token request to {realm}: {}; check the credentials in registries.yaml",
                        resp.status()
                    )));
                }
                let body = read_body(resp, 1 << 20).await.map_err(|e| self.err(e))?;
                #[derive(Deserialize)]
                struct Token {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let t: Token = serde_json::from_slice(&body)
                    .map_err(|e| self.err(format!("token response: {e}")))?;
                let t = t
                    .token
                    .or(t.access_token)
                    .ok_or_else(|| self.err("token response has no token"))?;
                self.authorization = Some(format!("Bearer {t}"));
                Ok(())
            }
            _ => Err(self.err(format!("unsupported auth challenge {challenge:?}"))),
        }
    }

    async fn fetch_small(
        &mut self,
        kind: &str,
        digest_or_tag: &str,
        expect: Option<&str>,
    ) -> Result<(Vec<u8>, String)> {
        let path = format!("/{}/{kind}/{digest_or_tag}", self.repository);
        let accept = (kind == "manifests").then_some(ACCEPT);
        let resp = self.get(&path, accept).await?;
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let body = read_body(resp, MAX_MANIFEST)
            .await
            .map_err(|e| self.err(e))?;
        if let Some(d) = expect
            && sha256_digest(&body) != d
        {
            return Err(self.err(format!("{kind} {d} does not match its digest")));
        }
        Ok((body, ct))
    }
}

async fn read_body(
    resp: http::Response<hyper::body::Incoming>,
    limit: usize,
) -> std::result::Result<Vec<u8>, String> {
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(frame) = tokio::time::timeout(TIMEOUT, body.frame())
        .await
        .map_err(|_| "body stalled".to_string())?
    {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Some(d) = frame.data_ref() {
            out.extend_from_slice(d);
            if out.len() > limit {
                return Err(format!("body larger than {limit} bytes"));
            }
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MediaTypeOnly {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
}

impl Client {
    /// Makes sure an image is present per the kubelet's imagePullPolicy.
    pub async fn ensure_image(
        &self,
        reference: &str,
        policy: PullPolicy,
        registries: &Registries,
    ) -> Result<ImageRef> {
        let present = self.image(reference).await?;
        match (policy, present) {
            (PullPolicy::Never, Some(i)) | (PullPolicy::IfNotPresent, Some(i)) => Ok(i.reference),
            (PullPolicy::Never, None) => Err(Error::NotFound {
                kind: "image (imagePullPolicy is Never)",
                name: reference.to_string(),
            }),
            _ => self.pull(reference, registries).await,
        }
    }

    /// Pulls an image, trying each endpoint in turn.
    #[tracing::instrument(name = "image_pull", skip(self, registries))]
    pub async fn pull(&self, reference: &str, registries: &Registries) -> Result<ImageRef> {
        let r = Reference::parse(reference)?;
        let mut errors = Vec::new();
        for endpoint in registries.endpoints(&r.registry) {
            match self.pull_from(&r, &endpoint, registries).await {
                Ok(image) => return Ok(image),
                Err(e) => {
                    tracing::warn!(endpoint, error = %e, "pull from endpoint failed");
                    errors.push(e);
                }
            }
        }
        if errors.len() == 1 {
            return Err(errors.remove(0));
        }
        Err(Error::Pull {
            reference: r.to_string(),
            endpoint: "every endpoint".into(),
            reason: errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        })
    }

    async fn pull_from(
        &self,
        r: &Reference,
        endpoint: &str,
        registries: &Registries,
    ) -> Result<ImageRef> {
        let uri: Uri = endpoint.parse().map_err(|e| Error::Pull {
            reference: r.to_string(),
            endpoint: endpoint.to_string(),
            reason: format!("bad endpoint: {e}"),
        })?;
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default();
        let cfg = registries.config_for(&authority);
        let http = http_client(&cfg, endpoint).map_err(|reason| Error::Pull {
            reference: r.to_string(),
            endpoint: endpoint.to_string(),
            reason,
        })?;
        let prefix = uri.path().trim_end_matches('/');
        let base = if prefix.ends_with("/v2") {
            format!(
                "{}://{authority}{prefix}",
                uri.scheme_str().unwrap_or("https")
            )
        } else {
            format!(
                "{}://{authority}{prefix}/v2",
                uri.scheme_str().unwrap_or("https")
            )
        };
        let mut s = Session {
            http,
            base,
            endpoint: endpoint.to_string(),
            reference: r.to_string(),
            repository: r.repository.clone(),
            auth: cfg.auth.clone(),
            authorization: None,
        };
        // The manifest (or index) the reference names.
        let (top_bytes, ct) = s
            .fetch_small("manifests", r.object(), r.digest.as_deref())
            .await?;
        let top_digest = sha256_digest(&top_bytes);
        let mt = serde_json::from_slice::<MediaTypeOnly>(&top_bytes)
            .ok()
            .and_then(|m| {
                m.media_type.or_else(|| {
                    m.manifests
                        .map(|_| crate::content::MT_OCI_INDEX.to_string())
                })
            })
            .unwrap_or(ct);
        let target = Descriptor {
            media_type: mt.clone(),
            digest: top_digest.clone(),
            size: top_bytes.len() as i64,
            platform: None,
            annotations: HashMap::new(),
        };
        let mut small: Vec<(String, Vec<u8>)> = vec![(top_digest.clone(), top_bytes.clone())];
        let mut indexes = Vec::new();
        let (mut cur_mt, mut cur_digest, mut cur_bytes) = (mt, top_digest, top_bytes);
        for _ in 0..4 {
            if !is_index(&cur_mt) {
                break;
            }
            let idx: Index =
                serde_json::from_slice(&cur_bytes).map_err(|e| s.err(format!("index: {e}")))?;
            let chosen = pick_manifest(&idx)
                .ok_or_else(|| {
                    s.err(format!(
                        "no manifest for linux/{}",
                        crate::content::host_platform().0
                    ))
                })?
                .clone();
            let pos = idx.manifests.iter().position(|d| *d == chosen).unwrap_or(0);
            indexes.push((cur_digest.clone(), pos));
            let (b, _) = s
                .fetch_small("manifests", &chosen.digest, Some(&chosen.digest))
                .await?;
            small.push((chosen.digest.clone(), b.clone()));
            (cur_mt, cur_digest, cur_bytes) = (chosen.media_type, chosen.digest, b);
        }
        if !is_manifest(&cur_mt) {
            return Err(s.err(format!("unsupported manifest media type {cur_mt:?}")));
        }
        let manifest: Manifest =
            serde_json::from_slice(&cur_bytes).map_err(|e| s.err(format!("manifest: {e}")))?;
        let (cbytes, _) = s
            .fetch_small(
                "blobs",
                &manifest.config.digest,
                Some(&manifest.config.digest),
            )
            .await?;
        let config: ConfigFile =
            serde_json::from_slice(&cbytes).map_err(|e| s.err(format!("config: {e}")))?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(s.err("manifest and config disagree on the number of layers"));
        }
        small.push((manifest.config.digest.clone(), cbytes));

        let lease = self.create_lease("pull").await?;
        let result = async {
            for (digest, bytes) in &small {
                self.write_blob(&lease, digest, bytes).await?;
            }
            for layer in &manifest.layers {
                if self.content_info(&layer.digest).await?.is_some() {
                    continue;
                }
                let resp = s
                    .get(&format!("/{}/blobs/{}", s.repository, layer.digest), None)
                    .await?;
                let mut w = self.blob_writer(&lease, &layer.digest, layer.size).await?;
                let mut body = resp.into_body();
                let mut buf = Vec::with_capacity(1 << 20);
                while let Some(frame) = tokio::time::timeout(TIMEOUT, body.frame())
                    .await
                    .map_err(|_| s.err(format!("layer {} stalled", layer.digest)))?
                {
                    let frame = frame.map_err(|e| s.err(format!("layer {}: {e}", layer.digest)))?;
                    if let Some(d) = frame.data_ref() {
                        buf.extend_from_slice(d);
                        if buf.len() >= 1 << 20 {
                            w.write(&buf).await?;
                            buf.clear();
                        }
                    }
                }
                if !buf.is_empty() {
                    w.write(&buf).await?;
                }
                w.commit().await?;
            }
            let planned = PlannedImage {
                names: vec![r.to_string()],
                target,
                indexes,
                manifest_digest: cur_digest.clone(),
                manifest,
                config,
            };
            self.finish_image(&lease, &planned, |_| {}).await
        }
        .await;
        match result {
            Ok(mut refs) => {
                self.release_lease(lease, false).await?;
                tracing::info!(endpoint, "pulled");
                refs.pop().ok_or_else(|| s.err("no image created"))
            }
            Err(e) => {
                let _ = self.release_lease(lease, true).await;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_yaml_in_k3s_form() {
        let r = Registries::parse(
            r#"
mirrors:
  docker.io:
    endpoint:
      - "http://127.0.0.1:5000"
  "*":
    endpoint: ["https://any.mirror"]
configs:
  "127.0.0.1:5000":
    auth:
      username: u
      password: p
    tls:
      insecure_skip_verify: true
"#,
        )
        .unwrap();
        assert_eq!(
            r.endpoints("docker.io"),
            [
                "http://127.0.0.1:5000",
                "https://any.mirror",
                "https://registry-1.docker.io"
            ]
        );
        assert_eq!(
            r.endpoints("quay.io"),
            ["https://any.mirror", "https://quay.io"]
        );
        let c = r.config_for("127.0.0.1:5000");
        assert_eq!(c.auth.unwrap().username.as_deref(), Some("u"));
        assert!(c.tls.unwrap().insecure_skip_verify);
        assert!(Registries::parse("").unwrap().mirrors.is_empty());
        assert!(Registries::parse("mirrors: {a: {endpoint: [\"ftp://x\"]}}").is_err());
        assert!(Registries::parse("mirrors: [").is_err());
    }

    #[test]
    fn challenges_parse() {
        let (s, p) = challenge_params(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(s, "bearer");
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/busybox:pull");
        let (s, p) = challenge_params(r#"Basic realm="x""#);
        assert_eq!(s, "basic");
        assert_eq!(p["realm"], "x");
    }
}
