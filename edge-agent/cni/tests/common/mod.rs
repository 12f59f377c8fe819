//! Test fixtures shared by the integration tests: checks for root and the CNI plugins,
//! and a per-test network (its own bridge, subnet, IPAM and cache dirs, namespaces) that
//! cleans up after itself even when the test fails.

#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kedge_cni::{
    BridgeOptions, CniConfig, Netns, NetnsDir, PodNetwork, PodRef, conflist, write_conflist,
};

/// Fails (never skips) unless the test runs as root.
pub fn require_root() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_default();
    assert_eq!(
        uid, "0",
        "this test needs root (network namespaces, bridges, iptables): run it as root"
    );
}

/// Fails unless the standard CNI plugins are installed.
pub fn require_plugins() {
    for plugin in ["bridge", "host-local", "portmap", "loopback"] {
        let path = Path::new("/usr/lib/cni").join(plugin);
        assert!(
            path.exists(),
            "{} is missing: install the Debian package containernetworking-plugins (scripts/setup.sh does)",
            path.display()
        );
    }
}

/// Fails unless `program` runs; names the package that provides it.
pub fn require_program(program: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{program} is missing: install the Debian package {package} (scripts/setup.sh does)"
    );
}

/// A network of its own for one test: network `kt-<name>`, bridge `kt<n>`, subnet
/// `10.199.<n>.0/24`, directories in a tempdir, and the namespaces and sandboxes it made.
/// Dropping it tears everything down: DEL for every sandbox (which removes the plugins'
/// iptables rules), the namespaces, the bridge, and any rule still naming the network.
pub struct TestNet {
    pub name: String,
    pub bridge: String,
    pub subnet: String,
    pub n: u8,
    pub dir: tempfile::TempDir,
    pub netns_dir: NetnsDir,
    netns: Vec<Netns>,
    sandboxes: Vec<(String, PodRef)>,
}

impl TestNet {
    pub fn new(name: &str, n: u8) -> Self {
        // RUST_LOG=kedge_cni=debug shows every plugin call
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        require_root();
        require_plugins();
        let net = TestNet {
            name: format!("kt-{name}"),
            bridge: format!("kt{n}"),
            subnet: format!("10.199.{n}.0/24"),
            n,
            dir: tempfile::tempdir().unwrap(),
            netns_dir: NetnsDir::default(),
            netns: Vec::new(),
            sandboxes: Vec::new(),
        };
        // leftovers of an earlier, killed run of the same test
        net.remove_host_state();
        net
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn bridge_options(&self) -> BridgeOptions {
        let mut opts = BridgeOptions::for_data_dir(self.data_dir());
        opts.network_name = self.name.clone();
        opts.bridge = self.bridge.clone();
        opts
    }

    pub fn cni_config(&self) -> CniConfig {
        CniConfig::for_data_dir(self.data_dir())
    }

    /// Writes the generated conflist for this test's subnet and loads it.
    pub fn pod_network(&self) -> PodNetwork {
        let text = conflist(&self.subnet, &self.bridge_options()).unwrap();
        write_conflist(&self.cni_config().conf_dir, &text).unwrap();
        PodNetwork::load(self.cni_config()).unwrap()
    }

    /// The IPAM directory host-local keeps this network's leases in.
    pub fn ipam_dir(&self) -> PathBuf {
        self.bridge_options().ipam_data_dir.join(&self.name)
    }

    /// The addresses host-local has handed out (its lease files).
    pub fn leased_ips(&self) -> Vec<IpAddr> {
        let Ok(entries) = std::fs::read_dir(self.ipam_dir()) else {
            return Vec::new();
        };
        let mut ips: Vec<IpAddr> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        ips.sort();
        ips
    }

    pub fn netns(&mut self, short: &str) -> Netns {
        let name = format!("{}-{short}", self.name);
        let _ = self.netns_dir.remove(&name);
        let ns = self.netns_dir.create(&name).unwrap();
        self.netns.push(ns.clone());
        ns
    }

    /// A sandbox id for this test, remembered for the cleanup.
    pub fn sandbox(&mut self, short: &str) -> (String, PodRef) {
        let id = format!("{}-{short}", self.name);
        let pod = PodRef::new("default", format!("pod-{short}"), format!("uid-{short}"));
        self.sandboxes.push((id.clone(), pod.clone()));
        (id, pod)
    }

    /// Lines of `iptables-save -t <table>` that name this network.
    pub fn iptables_lines(&self, table: &str) -> Vec<String> {
        let out = Command::new("iptables-save")
            .args(["-t", table])
            .output()
            .unwrap();
        let needle = format!("name: \\\"{}\\\"", self.name);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&needle))
            .map(str::to_string)
            .collect()
    }

    /// iptables lines that mention one sandbox id.
    pub fn iptables_lines_for(&self, sandbox_id: &str) -> Vec<String> {
        let needle = format!("id: \\\"{sandbox_id}\\\"");
        ["nat", "filter"]
            .iter()
            .flat_map(|t| {
                let out = Command::new("iptables-save")
                    .args(["-t", t])
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter(|l| l.contains(&needle))
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn remove_host_state(&self) {
        for ns in &self.netns {
            let _ = self.netns_dir.remove(ns.name());
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
        for table in ["nat", "filter"] {
            let mut chains = Vec::new();
            for line in self.iptables_lines(table) {
                let args = split_rule(&line);
                if args.first().map(String::as_str) != Some("-A") || args.len() < 2 {
                    continue;
                }
                let mut del = vec!["-t".to_string(), table.to_string(), "-D".to_string()];
                del.extend(args[1..].iter().cloned());
                let _ = Command::new("iptables").args(&del).output();
                if let Some(pos) = args.iter().position(|a| a == "-j")
                    && let Some(target) = args.get(pos + 1)
                    && target.starts_with("CNI-")
                    && !target.starts_with("CNI-HOSTPORT")
                {
                    chains.push(target.clone());
                }
            }
            for chain in chains {
                let _ = Command::new("iptables")
                    .args(["-t", table, "-F", &chain])
                    .output();
                let _ = Command::new("iptables")
                    .args(["-t", table, "-X", &chain])
                    .output();
            }
        }
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        // DEL through the real plugins first: that is what removes their rules.
        let sandboxes = std::mem::take(&mut self.sandboxes);
        let config = self.cni_config();
        if !sandboxes.is_empty() {
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(net) = PodNetwork::load(config) {
                        for (id, pod) in sandboxes {
                            let _ = net.teardown(&id, None, &pod).await;
                        }
                    }
                });
            })
            .join();
        }
        self.remove_host_state();
    }
}

/// Splits an iptables-save rule into arguments (double quotes, with \" inside).
fn split_rule(line: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut chars = line.chars().peekable();
    let mut has = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' if in_quotes => {
                if let Some(next) = chars.next() {
                    cur.push(next);
                }
            }
            '"' => {
                in_quotes = !in_quotes;
                has = true;
            }
            ' ' if !in_quotes => {
                if has || !cur.is_empty() {
                    args.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            c => cur.push(c),
        }
    }
    if has || !cur.is_empty() {
        args.push(cur);
    }
    args
}

/// A TCP listener made inside `ns` on `ip:port` that answers each connection with
/// `reply` (after reading one line), on a thread, `count` times.
pub fn serve_in(ns: &Netns, addr: SocketAddr, reply: &'static str, count: usize) -> SocketAddr {
    let listener = ns.run(|| TcpListener::bind(addr)).unwrap().unwrap();
    let local = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{BufRead, BufReader, Write};
        for _ in 0..count {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut line = String::new();
            let _ = BufReader::new(&stream).read_line(&mut line);
            let _ = stream.write_all(format!("{reply} {}", line.trim()).as_bytes());
        }
    });
    local
}

/// Sends `hello\n` on a connected stream and reads the reply to EOF.
pub fn exchange(mut stream: std::net::TcpStream) -> String {
    use std::io::{Read, Write};
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(b"hello\n").unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn split_rule_handles_quoted_comments() {
    let line = r#"-A POSTROUTING -s 10.1.0.2/32 -m comment --comment "name: \"kt-a\" id: \"x\"" -j CNI-abc"#;
    assert_eq!(
        split_rule(line),
        [
            "-A",
            "POSTROUTING",
            "-s",
            "10.1.0.2/32",
            "-m",
            "comment",
            "--comment",
            "name: \"kt-a\" id: \"x\"",
            "-j",
            "CNI-abc"
        ]
    );
}
