//! The runtime's protocol with plugins, checked with small shell-script plugins that
//! record what they were given (real processes, real pipes and environment): the order of
//! ADD and DEL, prevResult, runtimeConfig, CNI_* variables, the cache, error JSON,
//! crashes and timeouts. The real plugins are exercised in pod_network.rs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kedge_cni::{CniConfig, CniError, NetworkConfigList, PodNetwork, PodRef, PortMapping};
use serde_json::Value;

/// The network namespace every process has: real nsfs, and the scripts never enter it.
const SELF_NETNS: &str = "/proc/self/ns/net";

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let f = Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(f.bin()).unwrap();
        std::fs::create_dir_all(f.log()).unwrap();
        f
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    /// A plugin that logs its stdin and CNI_* environment as `<seq>-<name>-<COMMAND>`,
    /// then runs `on_add` for ADD (which should print a result).
    fn plugin(&self, name: &str, on_add: &str) {
        let script = format!(
            r#"#!/bin/sh
d='{log}'
n=$(ls "$d" | grep -c stdin)
n=$((n+1))
cat > "$d/$n-{name}-$CNI_COMMAND.stdin"
env | grep '^CNI_' | sort > "$d/$n-{name}-$CNI_COMMAND.env"
case "$CNI_COMMAND" in
ADD) {on_add} ;;
VERSION) echo '{{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}}' ;;
esac
"#,
            log = self.log().display()
        );
        let path = self.bin().join(name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn config(&self) -> CniConfig {
        CniConfig {
            bin_dirs: vec![self.dir.path().join("empty"), self.bin()],
            conf_dir: self.dir.path().join("net.d"),
            cache_dir: self.dir.path().join("cache"),
            ifname: "eth0".to_string(),
            plugin_timeout: Duration::from_secs(10),
            netns_dir: self.dir.path().join("netns"),
            launcher: None,
        }
    }

    fn network(&self, plugins: &str) -> PodNetwork {
        let list = NetworkConfigList::parse(
            &format!(r#"{{"cniVersion":"1.0.0","name":"scripted","plugins":[{plugins}]}}"#),
            "test",
        )
        .unwrap();
        PodNetwork::with_network(self.config(), list).unwrap()
    }

    /// The calls made so far, in order: (plugin, command, stdin as JSON, CNI_* env).
    fn calls(&self) -> Vec<(String, String, Value, String)> {
        let mut names: Vec<String> = std::fs::read_dir(self.log())
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".stdin"))
            .collect();
        names.sort_by_key(|n| n.split('-').next().unwrap().parse::<u32>().unwrap());
        names
            .iter()
            .map(|n| {
                let stem = n.trim_end_matches(".stdin");
                let (plugin, command) = stem.split_once('-').unwrap().1.rsplit_once('-').unwrap();
                let (plugin, command) = (plugin.to_string(), command.to_string());
                let stdin = std::fs::read_to_string(self.log().join(n)).unwrap();
                let env = std::fs::read_to_string(self.log().join(format!("{stem}.env"))).unwrap();
                (plugin, command, serde_json::from_str(&stdin).unwrap(), env)
            })
            .collect()
    }
}

fn result_json(ip: &str) -> String {
    format!(
        r#"{{"cniVersion":"1.0.0","interfaces":[{{"name":"eth0","sandbox":"{SELF_NETNS}"}}],"ips":[{{"interface":0,"address":"{ip}/24","gateway":"10.0.0.1"}}]}}"#
    )
}

fn print(json: &str) -> String {
    format!("printf '%s' '{json}'")
}

fn pod() -> PodRef {
    PodRef::new("team-a", "web-0", "uid-123")
}

#[tokio::test]
async fn add_runs_in_order_with_prev_result_and_del_runs_in_reverse_with_the_cached_result() {
    let f = Fixture::new();
    f.plugin("first", &print(&result_json("10.0.0.5")));
    f.plugin("second", &print(&result_json("10.0.0.6")));
    let net = f.network(
        r#"{"type":"first","answer":42},
           {"type":"second","capabilities":{"portMappings":true,"bandwidth":false}}"#,
    );
    let maps = [PortMapping::tcp(8080, 80)];
    let att = net
        .setup("sb1", Path::new(SELF_NETNS), &pod(), &maps)
        .await
        .unwrap();
    // the final result is the last plugin's
    assert_eq!(att.ip.to_string(), "10.0.0.6");
    assert_eq!(att.gateway.unwrap().to_string(), "10.0.0.1");

    let calls = f.calls();
    assert_eq!(
        calls
            .iter()
            .map(|c| (c.0.as_str(), c.1.as_str()))
            .collect::<Vec<_>>(),
        [("first", "ADD"), ("second", "ADD")]
    );
    let (_, _, first_in, first_env) = &calls[0];
    assert_eq!(first_in["name"], "scripted");
    assert_eq!(first_in["cniVersion"], "1.0.0");
    assert_eq!(
        first_in["answer"], 42,
        "the plugin's own keys are passed through"
    );
    assert!(first_in.get("prevResult").is_none());
    assert!(first_in.get("runtimeConfig").is_none());
    for line in [
        "CNI_COMMAND=ADD",
        "CNI_CONTAINERID=sb1",
        &format!("CNI_NETNS={SELF_NETNS}"),
        "CNI_IFNAME=eth0",
        "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=sb1;K8S_POD_UID=uid-123",
        &format!(
            "CNI_PATH={}:{}",
            f.dir.path().join("empty").display(),
            f.bin().display()
        ),
    ] {
        assert!(
            first_env.lines().any(|l| l == line),
            "missing {line} in\n{first_env}"
        );
    }
    let (_, _, second_in, _) = &calls[1];
    assert_eq!(
        second_in["prevResult"],
        serde_json::from_str::<Value>(&result_json("10.0.0.5")).unwrap()
    );
    assert_eq!(
        second_in["runtimeConfig"],
        serde_json::json!({"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]})
    );

    // DEL from another PodNetwork (as after a restart): reverse order, the cached final
    // result as prevResult, the cached port mappings again
    let restarted = f.network(r#"{"type":"first"},{"type":"second"}"#);
    assert!(restarted.has_cached_attachment("sb1"));
    restarted
        .teardown("sb1", Some(Path::new(SELF_NETNS)), &pod())
        .await
        .unwrap();
    assert!(
        !restarted.has_cached_attachment("sb1"),
        "a DEL forgets the attachment"
    );
    let calls = f.calls();
    assert_eq!(
        calls[2..]
            .iter()
            .map(|c| (c.0.as_str(), c.1.as_str()))
            .collect::<Vec<_>>(),
        [("second", "DEL"), ("first", "DEL")]
    );
    let final_result = serde_json::from_str::<Value>(&result_json("10.0.0.6")).unwrap();
    for (_, _, stdin, env) in &calls[2..] {
        assert_eq!(stdin["prevResult"], final_result);
        assert!(env.lines().any(|l| l == "CNI_COMMAND=DEL"));
    }
    assert_eq!(
        calls[2].2["runtimeConfig"]["portMappings"][0]["hostPort"],
        8080
    );
    // the cached config was used: it still has the first plugin's own key
    assert_eq!(calls[3].2["answer"], 42);

    // a second teardown: no cache any more, DEL again with the current config and no
    // prevResult, and an empty CNI_NETNS because the path is gone
    restarted
        .teardown(
            "sb1",
            Some(Path::new("/run/kedge/netns/gone-for-good")),
            &pod(),
        )
        .await
        .unwrap();
    let calls = f.calls();
    assert_eq!(calls.len(), 6);
    assert!(calls[4].2.get("prevResult").is_none());
    assert!(
        calls[4].3.lines().any(|l| l == "CNI_NETNS="),
        "{}",
        calls[4].3
    );
}

#[tokio::test]
async fn a_plugin_error_is_typed_and_the_add_is_undone() {
    let f = Fixture::new();
    f.plugin("first", &print(&result_json("10.0.0.5")));
    f.plugin(
        "failer",
        r#"printf '%s' '{"cniVersion":"1.0.0","code":7,"msg":"invalid network config","details":"no bridge named x"}'; exit 1"#,
    );
    let net = f.network(r#"{"type":"first"},{"type":"failer"}"#);
    let err = net
        .setup("sb2", Path::new(SELF_NETNS), &pod(), &[])
        .await
        .unwrap_err();
    match &err {
        CniError::Plugin {
            plugin,
            command,
            code,
            msg,
            details,
            container_id,
        } => {
            assert_eq!((plugin.as_str(), *command, *code), ("failer", "ADD", 7));
            assert_eq!(msg, "invalid network config");
            assert_eq!(details, "no bridge named x");
            assert_eq!(container_id, "sb2");
        }
        other => panic!("expected a plugin error, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "cni plugin failer ADD failed for sb2: invalid network config (code 7): no bridge named x"
    );
    assert!(!err.is_try_again_later());
    // the chain was undone: DEL through every plugin in reverse, with what was built so far
    let calls = f.calls();
    assert_eq!(
        calls
            .iter()
            .map(|c| (c.0.as_str(), c.1.as_str()))
            .collect::<Vec<_>>(),
        [
            ("first", "ADD"),
            ("failer", "ADD"),
            ("failer", "DEL"),
            ("first", "DEL")
        ]
    );
    assert_eq!(
        calls[3].2["prevResult"],
        serde_json::from_str::<Value>(&result_json("10.0.0.5")).unwrap()
    );
    assert!(net.attachment("sb2").await.unwrap().is_none());
}

#[tokio::test]
async fn crashes_garbage_and_hangs_are_reported_with_the_plugin_name() {
    let f = Fixture::new();
    f.plugin(
        "crasher",
        "echo 'panic: runtime error: index out of range' >&2; exit 2",
    );
    f.plugin("garbage", "echo 'this is not json'");
    f.plugin("noaddr", &print(r#"{"cniVersion":"1.0.0","ips":[]}"#));
    f.plugin("sleeper", "sleep 30");

    let err = f
        .network(r#"{"type":"crasher"}"#)
        .setup("sb3", Path::new(SELF_NETNS), &pod(), &[])
        .await
        .unwrap_err();
    match &err {
        CniError::PluginCrashed {
            plugin,
            stderr,
            status,
            ..
        } => {
            assert_eq!(plugin, "crasher");
            assert!(stderr.contains("index out of range"), "{stderr}");
            assert!(status.contains('2'), "{status}");
        }
        other => panic!("expected a crash, got {other:?}"),
    }

    let err = f
        .network(r#"{"type":"garbage"}"#)
        .setup("sb3", Path::new(SELF_NETNS), &pod(), &[])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CniError::BadResult { plugin, .. } if plugin == "garbage"),
        "{err:?}"
    );

    let err = f
        .network(r#"{"type":"noaddr"}"#)
        .setup("sb3", Path::new(SELF_NETNS), &pod(), &[])
        .await
        .unwrap_err();
    assert!(matches!(err, CniError::NoAddress { .. }), "{err:?}");

    let mut config = f.config();
    config.plugin_timeout = Duration::from_millis(300);
    let list = NetworkConfigList::parse(
        r#"{"cniVersion":"1.0.0","name":"scripted","plugins":[{"type":"sleeper"}]}"#,
        "t",
    )
    .unwrap();
    let net = PodNetwork::with_network(config, list).unwrap();
    let started = std::time::Instant::now();
    let err = net
        .setup("sb3", Path::new(SELF_NETNS), &pod(), &[])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CniError::PluginTimeout { plugin, command: "ADD", .. } if plugin == "sleeper"),
        "{err:?}"
    );
    // the ADD was killed at its timeout, not waited for for 30 s
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn bad_arguments_are_refused_before_any_plugin_runs() {
    let f = Fixture::new();
    f.plugin("first", &print(&result_json("10.0.0.5")));
    let net = f.network(r#"{"type":"first"}"#);
    let ns = Path::new(SELF_NETNS);
    for (id, pod) in [
        ("", pod()),
        ("../escape", pod()),
        ("ok", PodRef::new("ns", "name;K8S_POD_NAME=evil", "u")),
        ("ok", PodRef::new("", "name", "u")),
    ] {
        assert!(
            matches!(
                net.setup(id, ns, &pod, &[]).await,
                Err(CniError::InvalidArgument { .. })
            ),
            "{id:?} {pod:?}"
        );
    }
    assert!(matches!(
        net.setup("ok", ns, &pod(), &[PortMapping::tcp(0, 80)])
            .await,
        Err(CniError::InvalidArgument { .. })
    ));
    assert!(matches!(
        net.setup("ok", Path::new("/nonexistent/netns"), &pod(), &[])
            .await,
        Err(CniError::NotANetns { .. })
    ));
    assert!(f.calls().is_empty(), "no plugin ran");
    // a bad interface name in the config
    let mut config = f.config();
    config.ifname = "eth0/../x".to_string();
    let list = NetworkConfigList::parse(
        r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"first"}]}"#,
        "t",
    )
    .unwrap();
    assert!(PodNetwork::with_network(config, list).is_err());
}

#[tokio::test]
async fn a_corrupt_cache_entry_does_not_block_teardown() {
    let f = Fixture::new();
    f.plugin("first", &print(&result_json("10.0.0.5")));
    let net = f.network(r#"{"type":"first"}"#);
    net.setup("sb4", Path::new(SELF_NETNS), &pod(), &[])
        .await
        .unwrap();
    assert_eq!(
        net.attached_sandboxes().await.unwrap(),
        vec!["sb4".to_string()]
    );
    let cache = f.config().cache_dir.join("results/scripted-sb4-eth0");
    std::fs::write(&cache, b"{ half a file").unwrap();
    assert!(net.attachment("sb4").await.unwrap().is_none());
    net.teardown("sb4", None, &pod()).await.unwrap();
    assert!(!cache.exists());
    let calls = f.calls();
    assert_eq!(calls.last().unwrap().1, "DEL");
    assert!(net.attached_sandboxes().await.unwrap().is_empty());
}

#[tokio::test]
async fn validate_runs_version_and_rejects_unsupported_versions() {
    let f = Fixture::new();
    f.plugin("first", &print(&result_json("10.0.0.5")));
    f.network(r#"{"type":"first"}"#).validate().await.unwrap();
    // a plugin that only speaks old versions
    let old = f.bin().join("old");
    std::fs::write(
        &old,
        "#!/bin/sh\necho '{\"cniVersion\":\"0.3.1\",\"supportedVersions\":[\"0.3.0\",\"0.3.1\"]}'\n",
    )
    .unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = f.network(r#"{"type":"old"}"#).validate().await.unwrap_err();
    assert!(
        matches!(&err, CniError::UnsupportedVersion { plugin, .. } if plugin == "old"),
        "{err:?}"
    );
    // and one that is not there
    let err = f
        .network(r#"{"type":"absent"}"#)
        .validate()
        .await
        .unwrap_err();
    assert!(matches!(err, CniError::PluginNotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn setup_again_returns_the_cached_attachment_without_a_second_add() {
    let f = Fixture::new();
    f.plugin("first", &print(&result_json("10.0.0.5")));
    let net = f.network(r#"{"type":"first"}"#);
    let first = net
        .setup("sb5", Path::new(SELF_NETNS), &pod(), &[])
        .await
        .unwrap();
    let restarted = f.network(r#"{"type":"first"}"#);
    let again = restarted
        .setup("sb5", Path::new(SELF_NETNS), &pod(), &[])
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(f.calls().len(), 1, "one ADD only");
    assert!(restarted.has_cached_attachment("sb5"));
    assert!(!restarted.has_cached_attachment("sb6"));
    // the same sandbox id with another namespace is a caller's mistake
    let err = restarted
        .setup("sb5", Path::new("/proc/thread-self/ns/net"), &pod(), &[])
        .await
        .unwrap_err();
    assert!(matches!(err, CniError::AlreadyAttached { .. }), "{err:?}");
    assert!(err.to_string().contains("tear it down first"), "{err}");
    assert_eq!(f.calls().len(), 1);
}

/// Plugins run through the launcher (`<launcher> <plugin>`: the agent's puts them in the
/// runtime's cgroup), and never more than `MAX_CONCURRENT_PLUGINS` at once, however many
/// pods start together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_run_through_the_launcher_a_few_at_a_time() {
    let f = Fixture::new();
    f.plugin(
        "slow",
        &format!("sleep 0.2; {}", print(&result_json("10.0.0.9"))),
    );
    let running = f.dir.path().join("running");
    std::fs::create_dir_all(&running).unwrap();
    let launcher = f.dir.path().join("launcher");
    std::fs::write(
        &launcher,
        format!(
            "#!/bin/sh\n\
             r='{running}'\n\
             touch \"$r/$$\"\n\
             ls \"$r\" | wc -l >> '{seen}'\n\
             echo \"$1\" >> '{launched}'\n\
             \"$@\"; s=$?\n\
             rm -f \"$r/$$\"\n\
             exit $s\n",
            running = running.display(),
            seen = f.dir.path().join("seen").display(),
            launched = f.dir.path().join("launched").display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&launcher, std::fs::Permissions::from_mode(0o755)).unwrap();
    let list = NetworkConfigList::parse(
        r#"{"cniVersion":"1.0.0","name":"scripted","plugins":[{"type":"slow"}]}"#,
        "test",
    )
    .unwrap();
    let mut config = f.config();
    config.launcher = Some(launcher);
    let net = std::sync::Arc::new(PodNetwork::with_network(config, list).unwrap());
    let setups: Vec<_> = (0..12)
        .map(|i| {
            let net = net.clone();
            tokio::spawn(async move {
                let pod = PodRef::new("team-a", format!("web-{i}"), format!("uid-{i}"));
                net.setup(&format!("sb{i}"), Path::new(SELF_NETNS), &pod, &[])
                    .await
            })
        })
        .collect();
    for s in setups {
        s.await.unwrap().expect("every setup succeeds, in turn");
    }
    let launched = std::fs::read_to_string(f.dir.path().join("launched")).unwrap();
    assert_eq!(launched.lines().count(), 12, "{launched}");
    assert!(
        launched.lines().all(|l| l.ends_with("/bin/slow")),
        "{launched}"
    );
    let seen: Vec<usize> = std::fs::read_to_string(f.dir.path().join("seen"))
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let most = seen.iter().copied().max().unwrap_or(0);
    assert!(
        (2..=kedge_cni::MAX_CONCURRENT_PLUGINS).contains(&most),
        "plugins ran {most} at once at most: {seen:?}"
    );
}
