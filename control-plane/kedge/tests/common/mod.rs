//! Running the real `kedge` binary in tests, and real kubectl against it.

#![allow(dead_code)]

pub mod agent;
pub mod relay;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const KUBECTL: &str = "/usr/bin/kubectl";

/// `kedge server` on a free port, with its kubeconfig inside `data_dir`.
pub fn kedge(data_dir: &Path, endpoint: &str) -> Command {
    kedge_on(data_dir, endpoint, 0)
}

/// `kedge server` on `port` (`0`: a free one), with its kubeconfig inside
/// `data_dir`.
pub fn kedge_on(data_dir: &Path, endpoint: &str, port: u16) -> Command {
    let mut cmd = kedge_with_local_agent(data_dir, endpoint, port);
    // The tests start the agents they need themselves.
    cmd.arg("--disable-agent");
    cmd
}

/// [`kedge_on`] with the server's local agent (it needs root, containerd, runc and the
/// CNI plugins, and `kedge-agent` next to `kedge`).
pub fn kedge_with_local_agent(data_dir: &Path, endpoint: &str, port: u16) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kedge"));
    cmd.arg("server")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--datastore-endpoint")
        .arg(endpoint)
        .arg("--https-listen-port")
        .arg(port.to_string())
        .arg("--bind-address")
        .arg("127.0.0.1")
        .arg("--write-kubeconfig")
        .arg(data_dir.join("kubeconfig.yaml"))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// A loopback port that was free a moment ago, for a server that must keep
/// its URL across a restart (a client's watch resumes only on the same URL).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap().port()
}

/// Starts the server and waits for `ready` in its log. Returns the child
/// and the rest of its log as it comes.
pub fn start_until(mut cmd: Command, ready: &str) -> (Child, mpsc::Receiver<String>) {
    let mut child = cmd.spawn().expect("run kedge");
    let (tx, rx) = mpsc::channel();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.contains(ready) => return (child, rx),
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "kedge server did not get ready; it said:\n{}",
                    seen.join("\n")
                );
            }
        }
    }
}

/// Starts the server and waits for the datastore.
pub fn start(cmd: Command) -> (Child, mpsc::Receiver<String>) {
    start_until(cmd, "datastore ready")
}

/// SIGTERM, as systemd stops it, and expect a clean exit.
pub fn stop(mut child: Child) {
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "kedge server exited with {status}");
}

/// A running `kedge server` and a kubectl pointed at it.
pub struct Cluster {
    child: Option<Child>,
    pub log: mpsc::Receiver<String>,
    pub data_dir: PathBuf,
    endpoint: String,
    port: u16,
    pub kubeconfig: PathBuf,
    home: tempfile::TempDir,
    _dir: Option<tempfile::TempDir>,
}

impl Cluster {
    /// A server on embedded SQLite in a fresh directory.
    pub fn sqlite() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cluster::start_in(dir.path(), "");
        c._dir = Some(dir);
        c
    }

    /// A server on embedded SQLite without its controllers, for tests of
    /// the API's own semantics that a controller would write across
    /// (a Deployment's status, the garbage collector's finalizers).
    pub fn sqlite_without_controllers() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cluster::start_with_args(dir.path(), "", 0, &["--disable-controller-manager"]);
        c._dir = Some(dir);
        c
    }

    /// A server on embedded SQLite in a fresh directory, on a port chosen
    /// up front so that [`Cluster::restart`] keeps the same URL.
    pub fn sqlite_on_fixed_port() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cluster::start_on(dir.path(), "", free_port());
        c._dir = Some(dir);
        c
    }

    /// Keeps `dir` (the server's data directory) until the cluster is dropped.
    pub fn owning(mut self, dir: tempfile::TempDir) -> Cluster {
        self._dir = Some(dir);
        self
    }

    /// A server on `endpoint`, keeping its state in `data_dir`.
    pub fn start_in(data_dir: &Path, endpoint: &str) -> Cluster {
        Cluster::start_on(data_dir, endpoint, 0)
    }

    /// A server on `endpoint` and `port` (`0`: a free one, new on every
    /// start), keeping its state in `data_dir`.
    pub fn start_on(data_dir: &Path, endpoint: &str, port: u16) -> Cluster {
        Cluster::start_with_args(data_dir, endpoint, port, &[])
    }

    /// [`Cluster::start_on`] with more flags for `kedge server`. (They are
    /// not kept for [`Cluster::restart`].)
    pub fn start_with_args(data_dir: &Path, endpoint: &str, port: u16, extra: &[&str]) -> Cluster {
        Cluster::start_with(data_dir, endpoint, port, extra, &[])
    }

    /// [`Cluster::start_with_args`] with environment variables too (`RUST_LOG`, say).
    pub fn start_with(
        data_dir: &Path,
        endpoint: &str,
        port: u16,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Cluster {
        let mut cmd = kedge_on(data_dir, endpoint, port);
        cmd.args(extra);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Cluster::from_command(cmd, data_dir, endpoint, port)
    }

    /// A cluster of a `kedge server` command made by [`kedge_on`] or
    /// [`kedge_with_local_agent`] (with more flags, say).
    pub fn from_command(cmd: Command, data_dir: &Path, endpoint: &str, port: u16) -> Cluster {
        assert!(
            Path::new(KUBECTL).exists(),
            "these tests drive the real kubectl, expected at {KUBECTL}; install kubectl v1.32 there"
        );
        let (child, log) = start_until(cmd, "Kubernetes API ready");
        let home = tempfile::tempdir().unwrap();
        let c = Cluster {
            child: Some(child),
            log,
            data_dir: data_dir.to_path_buf(),
            endpoint: endpoint.to_string(),
            port,
            kubeconfig: data_dir.join("kubeconfig.yaml"),
            home,
            _dir: None,
        };
        c.wait_ready();
        c
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.kubectl(&["get", "--raw", "/readyz"]);
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the API never became ready: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `kubectl apply -f -` of a YAML document.
    pub fn apply(&self, yaml: &str) {
        self.ok_stdin(&["apply", "-f", "-"], yaml);
    }

    /// `kubectl get <kind_name> -o jsonpath=<path>`: its output, empty on an error.
    pub fn jsonpath(&self, kind_name: &[&str], path: &str) -> String {
        let mut args = vec!["get"];
        args.extend_from_slice(kind_name);
        let expr = format!("jsonpath={path}");
        args.extend(["-o", &expr]);
        let out = self.kubectl(&args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls a pod's jsonpath until `accept` takes it; returns the value.
    #[track_caller]
    pub fn wait_pod(
        &self,
        pod: &str,
        path: &str,
        what: &str,
        within: Duration,
        accept: impl Fn(&str) -> bool,
    ) -> String {
        let expr = format!("jsonpath={path}");
        self.wait_for(&["get", "pod", pod, "-o", &expr], what, within, accept)
    }

    /// kubectl with this cluster's kubeconfig and its own HOME (so that no
    /// discovery cache leaks between tests).
    pub fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(KUBECTL);
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.home.path())
            .env_remove("KUBE_EDITOR")
            .env_remove("EDITOR");
        cmd
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_cmd(args).output().expect("run kubectl")
    }

    /// Runs kubectl and expects success; returns stdout.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed:\nstdout: {}\nstderr: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl and expects failure; returns stderr.
    #[track_caller]
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            !out.status.success(),
            "kubectl {} should have failed but printed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Runs kubectl with `stdin` as input.
    #[track_caller]
    pub fn ok_stdin(&self, args: &[&str], stdin: &str) -> String {
        use std::io::Write;
        let mut child = self
            .kubectl_cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "kubectl {} failed:\nstdout: {}\nstderr: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops the server (SIGTERM) and expects a clean exit.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop(child);
        }
    }

    /// SIGKILL: the server gets no chance to clean up (release its leases,
    /// say), as when a machine dies.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again after [`Cluster::stop`], on the same data
    /// directory, datastore and port. With a fixed port
    /// ([`Cluster::sqlite_on_fixed_port`]) clients keep working on the same
    /// URL; with port `0` it gets a new port and rewrites the kubeconfig.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "the server is still running");
        let (child, log) = start_until(
            kedge_on(&self.data_dir, &self.endpoint, self.port),
            "Kubernetes API ready",
        );
        self.child = Some(child);
        self.log = log;
        self.wait_ready();
    }

    /// [`Cluster::stop`], then [`Cluster::start`].
    pub fn restart(&mut self) {
        self.stop();
        self.start();
    }

    /// The admin credentials as PEM (CA, client cert, client key).
    pub fn admin_pems(&self) -> (String, String, String) {
        let tls = self.data_dir.join("server/tls");
        let read = |f: &str| std::fs::read_to_string(tls.join(f)).unwrap();
        (
            read("server-ca.crt"),
            read("client-admin.crt"),
            read("client-admin.key"),
        )
    }

    /// Starts a long-running kubectl (`get -w`, say) and hands back its
    /// stdout line by line.
    pub fn kubectl_lines(&self, args: &[&str]) -> (Child, mpsc::Receiver<String>) {
        let mut child = self
            .kubectl_cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run kubectl");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        (child, rx)
    }

    /// curl as the admin (client certificate), for requests kubectl cannot
    /// make: arbitrary bodies and content types. Returns the HTTP status
    /// code and the body.
    pub fn curl_admin(&self, args: &[&str]) -> (u16, String) {
        let tls = self.data_dir.join("server/tls");
        let out = Command::new("curl")
            .args(["-sS", "-w", "\n%{http_code}", "--cacert"])
            .arg(tls.join("server-ca.crt"))
            .arg("--cert")
            .arg(tls.join("client-admin.crt"))
            .arg("--key")
            .arg(tls.join("client-admin.key"))
            .args(args)
            .output()
            .expect("curl is installed by scripts/setup.sh");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        let code = code
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("curl gave no status: {text}"));
        (code, body.to_string())
    }

    /// Polls kubectl with `args` until it succeeds and `accept` takes its
    /// output, for at most `within`; fails naming `what` and the last output.
    #[track_caller]
    pub fn wait_for(
        &self,
        args: &[&str],
        what: &str,
        within: Duration,
        accept: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + within;
        loop {
            let out = self.kubectl(args);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && accept(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: kubectl {} still says:\n{text}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// A kube-rs client with the admin kubeconfig.
    pub async fn client(&self) -> kube::Client {
        let kubeconfig =
            kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("read the kubeconfig");
        let options = kube::config::KubeConfigOptions::default();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .expect("a kube config from the kubeconfig");
        kube::Client::try_from(config).expect("a kube client")
    }

    /// The address the server's API listens on (`127.0.0.1:port`).
    pub fn api_addr(&self) -> std::net::SocketAddr {
        self.server_url()
            .trim_start_matches("https://")
            .parse()
            .expect("the kubeconfig names the server by address")
    }

    /// The server's URL, from the kubeconfig.
    pub fn server_url(&self) -> String {
        self.ok(&[
            "config",
            "view",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ])
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
