//! Liveness, readiness and startup probes: running one probe (exec, httpGet,
//! tcpSocket) and the per-container bookkeeping of thresholds, as the upstream kubelet
//! does it.
//!
//! - [`Prober`] runs one probe and says Success or Failure with upstream's message.
//! - [`ProbeTracker`] keeps, per container and probe kind, when the next run is due and
//!   the consecutive successes and failures; it turns them into results the pod worker
//!   reads: readiness starts as Failure, liveness as Success, startup as Unknown, and a
//!   result flips only after `successThreshold` / `failureThreshold` runs agree. While a
//!   container's startup probe has not succeeded, its liveness and readiness probes do
//!   not run.
//!
//! Time is passed in (tokio `Instant`), so the tracker is tested on paused time.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::runtime::PodRuntime;

/// Which probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeKind {
    /// As upstream's event messages name it ("Liveness probe failed: …").
    pub fn title(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }

    fn of(self, c: &Container) -> Option<&Probe> {
        match self {
            ProbeKind::Liveness => c.liveness_probe.as_ref(),
            ProbeKind::Readiness => c.readiness_probe.as_ref(),
            ProbeKind::Startup => c.startup_probe.as_ref(),
        }
    }
}

/// The outcome of one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Failed, with the message for the `Unhealthy` event.
    Failure(String),
}

/// Runs probes against a pod.
#[derive(Debug, Clone)]
pub struct Prober {
    runtime: Arc<dyn PodRuntime>,
}

fn seconds(v: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(u64::try_from(v.unwrap_or(default).max(1)).unwrap_or(1))
}

/// A named or numbered port of the container.
fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port {n}")),
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<u16>() {
                return Ok(n);
            }
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("couldn't find port: {name} in {}", container.name))
        }
    }
}

impl Prober {
    pub fn new(runtime: Arc<dyn PodRuntime>) -> Prober {
        Prober { runtime }
    }

    /// Runs `probe` once against a container whose pod has `pod_ip`.
    pub async fn run(
        &self,
        probe: &Probe,
        container: &Container,
        container_id: &str,
        pod_ip: Option<IpAddr>,
    ) -> Outcome {
        let timeout = seconds(probe.timeout_seconds, 1);
        if let Some(exec) = &probe.exec {
            let command = exec.command.clone().unwrap_or_default();
            return match self
                .runtime
                .exec_sync(container_id, &command, timeout)
                .await
            {
                Ok(r) if r.exit_code == 0 => Outcome::Success,
                Ok(r) => Outcome::Failure(String::from_utf8_lossy(&r.output).trim().to_string()),
                Err(e) => Outcome::Failure(e.to_string()),
            };
        }
        if let Some(http) = &probe.http_get {
            return match http_probe(http, container, pod_ip, timeout).await {
                Ok(()) => Outcome::Success,
                Err(e) => Outcome::Failure(e),
            };
        }
        if let Some(tcp) = &probe.tcp_socket {
            return match tcp_probe(tcp, container, pod_ip, timeout).await {
                Ok(()) => Outcome::Success,
                Err(e) => Outcome::Failure(e),
            };
        }
        if probe.grpc.is_some() {
            return Outcome::Failure("grpc probes are not supported by kedge-agent yet".into());
        }
        Outcome::Failure("probe has no handler".into())
    }
}

fn target_host(host: Option<&str>, pod_ip: Option<IpAddr>) -> Result<String, String> {
    match host.filter(|h| !h.is_empty()) {
        Some(h) => Ok(h.to_string()),
        None => pod_ip
            .map(|ip| ip.to_string())
            .ok_or_else(|| "the pod has no IP yet".to_string()),
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

async fn tcp_probe(
    tcp: &TCPSocketAction,
    container: &Container,
    pod_ip: Option<IpAddr>,
    timeout: Duration,
) -> Result<(), String> {
    let port = resolve_port(&tcp.port, container)?;
    let host = target_host(tcp.host.as_deref(), pod_ip)?;
    let addr = join_host_port(&host, port);
    match tokio::time::timeout(timeout, TcpStream::connect(&addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("dial tcp {addr}: connect: {}", io_reason(&e))),
        Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        _ => e.to_string(),
    }
}

/// An HTTP/1.1 GET; success is a status in [200, 400), as upstream.
async fn http_probe(
    http: &HTTPGetAction,
    container: &Container,
    pod_ip: Option<IpAddr>,
    timeout: Duration,
) -> Result<(), String> {
    let port = resolve_port(&http.port, container)?;
    let host = target_host(http.host.as_deref(), pod_ip)?;
    let scheme = http.scheme.as_deref().unwrap_or("HTTP").to_lowercase();
    let mut path = http.path.clone().unwrap_or_else(|| "/".into());
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    let addr = join_host_port(&host, port);
    let url = format!("{scheme}://{addr}{path}");
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.32\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for h in http.http_headers.iter().flatten() {
        if h.name.contains(['\r', '\n']) || h.value.contains(['\r', '\n']) {
            return Err(format!("invalid header {:?}", h.name));
        }
        request.push_str(&format!("{}: {}\r\n", h.name, h.value));
    }
    request.push_str("\r\n");
    let exchange = async {
        let tcp = TcpStream::connect(&addr)
            .await
            .map_err(|e| format!("Get \"{url}\": dial tcp {addr}: connect: {}", io_reason(&e)))?;
        let status_line = if scheme == "https" {
            let mut tls = tls_connect(tcp, &host)
                .await
                .map_err(|e| format!("Get \"{url}\": {e}"))?;
            exchange(&mut tls, &request).await
        } else {
            let mut tcp = tcp;
            exchange(&mut tcp, &request).await
        }
        .map_err(|e| format!("Get \"{url}\": {e}"))?;
        let code: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("Get \"{url}\": malformed HTTP response {status_line:?}"))?;
        if (200..400).contains(&code) {
            Ok(())
        } else {
            Err(format!("HTTP probe failed with statuscode: {code}"))
        }
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
    }
}

async fn exchange<S>(stream: &mut S, request: &str) -> Result<String, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    // The status line is all a probe needs; read at most 4 KiB for it.
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            return Ok(String::from_utf8_lossy(&buf[..end]).to_string());
        }
        if buf.len() > 4096 {
            return Err("the response's status line is too long".into());
        }
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("EOF".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// HTTPS probes do not verify the server's certificate, as upstream's.
async fn tls_connect(
    tcp: TcpStream,
    host: &str,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    #[derive(Debug)]
    struct AnyCert(Arc<rustls::crypto::CryptoProvider>);
    impl ServerCertVerifier for AnyCert {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())
}

/// A probe's current result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Unknown,
    Success,
    Failure(String),
}

#[derive(Debug)]
struct Tracked {
    next_run: Instant,
    successes: i32,
    failures: i32,
    verdict: Verdict,
}

/// Probe state for the containers of one pod, keyed by (container id, kind).
#[derive(Debug, Default)]
pub struct ProbeTracker {
    tracked: HashMap<(String, ProbeKind), Tracked>,
}

/// One probe run that is due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    pub container_id: String,
    pub kind: ProbeKind,
}

impl ProbeTracker {
    fn initial(kind: ProbeKind) -> Verdict {
        match kind {
            ProbeKind::Liveness => Verdict::Success,
            ProbeKind::Readiness => Verdict::Failure(String::new()),
            ProbeKind::Startup => Verdict::Unknown,
        }
    }

    /// Starts tracking a container that started at `started` (its first run is due after
    /// `initialDelaySeconds`), and stops tracking containers not in `running`.
    pub fn sync(&mut self, running: &[(String, &Container, Instant)]) {
        self.tracked
            .retain(|(id, _), _| running.iter().any(|(r, _, _)| r == id));
        for (id, container, started) in running {
            for kind in [
                ProbeKind::Startup,
                ProbeKind::Liveness,
                ProbeKind::Readiness,
            ] {
                let Some(probe) = kind.of(container) else {
                    continue;
                };
                let delay = Duration::from_secs(
                    u64::try_from(probe.initial_delay_seconds.unwrap_or(0).max(0)).unwrap_or(0),
                );
                self.tracked
                    .entry((id.clone(), kind))
                    .or_insert_with(|| Tracked {
                        next_run: *started + delay,
                        successes: 0,
                        failures: 0,
                        verdict: Self::initial(kind),
                    });
            }
        }
    }

    fn startup_done(&self, id: &str) -> bool {
        match self.tracked.get(&(id.to_string(), ProbeKind::Startup)) {
            None => true,
            Some(t) => t.verdict == Verdict::Success,
        }
    }

    /// The probes due at `now`.
    pub fn due(&self, now: Instant) -> Vec<Due> {
        let mut out: Vec<Due> = self
            .tracked
            .iter()
            .filter(|((id, kind), t)| {
                t.next_run <= now
                    && (*kind == ProbeKind::Startup || self.startup_done(id))
                    // A startup probe that succeeded stops running.
                    && !(*kind == ProbeKind::Startup && t.verdict == Verdict::Success)
            })
            .map(|((id, kind), _)| Due {
                container_id: id.clone(),
                kind: *kind,
            })
            .collect();
        out.sort_by(|a, b| a.container_id.cmp(&b.container_id));
        out
    }

    /// When the next probe is due, if any.
    pub fn next_due(&self) -> Option<Instant> {
        self.tracked.values().map(|t| t.next_run).min()
    }

    /// Records a run's outcome at `now`. Returns the new verdict when it changed.
    pub fn record(
        &mut self,
        due: &Due,
        probe: &Probe,
        outcome: Outcome,
        now: Instant,
    ) -> Option<Verdict> {
        let t = self
            .tracked
            .get_mut(&(due.container_id.clone(), due.kind))?;
        t.next_run = now + seconds(probe.period_seconds, 10);
        let success_threshold = probe.success_threshold.unwrap_or(1).max(1);
        let failure_threshold = probe.failure_threshold.unwrap_or(3).max(1);
        let new = match outcome {
            Outcome::Success => {
                t.failures = 0;
                t.successes += 1;
                (t.successes >= success_threshold).then_some(Verdict::Success)
            }
            Outcome::Failure(message) => {
                t.successes = 0;
                t.failures += 1;
                (t.failures >= failure_threshold).then_some(Verdict::Failure(message))
            }
        }?;
        if new == t.verdict {
            return None;
        }
        t.verdict = new.clone();
        Some(new)
    }

    /// The current verdict of a container's probe; `None` when it has none.
    pub fn verdict(&self, container_id: &str, kind: ProbeKind) -> Option<&Verdict> {
        self.tracked
            .get(&(container_id.to_string(), kind))
            .map(|t| &t.verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(json: serde_json::Value) -> Container {
        serde_json::from_value(json).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn thresholds_and_startup_gating() {
        let c = container(serde_json::json!({
            "name": "app",
            "startupProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1, "failureThreshold": 2},
            "livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 5, "failureThreshold": 2},
            "readinessProbe": {"exec": {"command": ["true"]}, "initialDelaySeconds": 3},
        }));
        let start = Instant::now();
        let mut t = ProbeTracker::default();
        t.sync(&[("c1".into(), &c, start)]);
        // Before the startup probe succeeds, only it runs.
        let due = t.due(start);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].kind, ProbeKind::Startup);
        assert_eq!(
            t.verdict("c1", ProbeKind::Readiness),
            Some(&Verdict::Failure(String::new()))
        );
        assert_eq!(
            t.verdict("c1", ProbeKind::Liveness),
            Some(&Verdict::Success)
        );
        let startup = c.startup_probe.clone().unwrap();
        assert_eq!(
            t.record(&due[0], &startup, Outcome::Success, start),
            Some(Verdict::Success)
        );
        // Now liveness is due at once and readiness after its initial delay.
        let kinds: Vec<_> = t.due(start).into_iter().map(|d| d.kind).collect();
        assert_eq!(kinds, vec![ProbeKind::Liveness]);
        let later = start + Duration::from_secs(3);
        assert_eq!(t.due(later).len(), 2);
        // Liveness fails only after failureThreshold failures in a row.
        let live = c.liveness_probe.clone().unwrap();
        let d = Due {
            container_id: "c1".into(),
            kind: ProbeKind::Liveness,
        };
        assert_eq!(
            t.record(&d, &live, Outcome::Failure("x".into()), later),
            None
        );
        assert_eq!(t.record(&d, &live, Outcome::Success, later), None);
        assert_eq!(
            t.record(&d, &live, Outcome::Failure("x".into()), later),
            None
        );
        assert_eq!(
            t.record(&d, &live, Outcome::Failure("boom".into()), later),
            Some(Verdict::Failure("boom".into()))
        );
        // The next run waits periodSeconds.
        assert!(!t.due(later).iter().any(|d| d.kind == ProbeKind::Liveness));
        assert!(
            t.due(later + Duration::from_secs(5))
                .iter()
                .any(|d| d.kind == ProbeKind::Liveness)
        );
        // A container that is gone is forgotten; its restart starts fresh.
        t.sync(&[]);
        assert_eq!(t.verdict("c1", ProbeKind::Liveness), None);
    }

    #[tokio::test]
    async fn tcp_and_http_probes_against_real_sockets() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let codes = [200u16, 500];
            for code in codes {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap();
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                assert!(req.starts_with("GET /healthz HTTP/1.1\r\n"), "{req}");
                assert!(req.contains("User-Agent: kube-probe/1.32"), "{req}");
                assert!(req.contains("X-Probe: yes"), "{req}");
                s.write_all(format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await
                    .unwrap();
            }
        });
        let c = container(
            serde_json::json!({"name": "app", "ports": [{"name": "web", "containerPort": port}]}),
        );
        let http: HTTPGetAction = serde_json::from_value(serde_json::json!({
            "path": "healthz", "port": "web", "httpHeaders": [{"name": "X-Probe", "value": "yes"}]
        }))
        .unwrap();
        let ip = Some("127.0.0.1".parse().unwrap());
        assert_eq!(
            http_probe(&http, &c, ip, Duration::from_secs(2)).await,
            Ok(())
        );
        assert_eq!(
            http_probe(&http, &c, ip, Duration::from_secs(2)).await,
            Err("HTTP probe failed with statuscode: 500".into())
        );
        server.await.unwrap();
        // Nothing listens any more: refused, worded as upstream.
        let tcp: TCPSocketAction =
            serde_json::from_value(serde_json::json!({"port": port})).unwrap();
        let err = tcp_probe(&tcp, &c, ip, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            format!("dial tcp 127.0.0.1:{port}: connect: connection refused")
        );
        let bad: TCPSocketAction =
            serde_json::from_value(serde_json::json!({"port": "nope"})).unwrap();
        assert!(
            tcp_probe(&bad, &c, ip, Duration::from_secs(1))
                .await
                .unwrap_err()
                .contains("couldn't find port")
        );
    }
}
