//! Real containerd + runc: import, run, logs, signals, exec (with a TTY), supervisor
//! restarts, log re-attach, exit events, corrupt tarballs. Run as root.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{Env, process, read_all, spec, task_status_once_reachable, uid, within};
use futures::StreamExt;
use kedge_containerd::crilog::{self, ReadOptions, RotationPolicy};
use kedge_containerd::testimage::{BusyboxImage, ImageFormat, build_busybox_image, build_image};
use kedge_containerd::{ContainerdConfig, ContainerdState, Supervisor, TaskIo, TaskState};
use nix::sys::signal::Signal;

async fn logs(path: &std::path::Path) -> String {
    let mut out = Vec::new();
    crilog::read_logs(
        path,
        &ReadOptions::default(),
        std::future::pending(),
        &mut out,
    )
    .await
    .unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_both_forms_run_and_read_the_cri_log() {
    let env = Env::start().await;
    let c = &env.client;
    assert!(
        c.version().await.unwrap().starts_with("1."),
        "containerd version"
    );

    // OCI layout, with progress.
    let oci = env.path("oci.tar");
    build_busybox_image(&oci, "busybox:oci", ImageFormat::OciLayout).unwrap();
    let mut seen = Vec::new();
    let t0 = Instant::now();
    let refs = c.import(&oci, |p| seen.push(p)).await.unwrap();
    println!(
        "import of the busybox OCI tarball: {:?} ({} bytes)",
        t0.elapsed(),
        std::fs::metadata(&oci).unwrap().len()
    );
    assert_eq!(refs[0].name, "docker.io/library/busybox:oci");
    let last = seen.last().unwrap();
    assert!(last.bytes_total > 500_000, "{last:?}");
    assert_eq!(last.bytes_done, last.bytes_total);
    assert_eq!((last.layers_done, last.layers_total), (1, 1));
    assert!(seen.len() >= 3, "progress is reported as it goes: {seen:?}");

    // docker-archive, gzip-compressed tarball.
    let docker = env.path("docker.tar.gz");
    let mut opts = BusyboxImage::new("example.com/team/bb:docker", ImageFormat::DockerArchive);
    opts.gzip_tarball = true;
    build_image(&docker, &opts).unwrap();
    let drefs = c.import(&docker, |_| {}).await.unwrap();
    assert_eq!(drefs[0].name, "example.com/team/bb:docker");
    // Same layer as the OCI one: same snapshot.
    assert_eq!(drefs[0].chain_id, refs[0].chain_id);

    let image = c
        .image("busybox:oci")
        .await
        .unwrap()
        .expect("image is listed");
    assert_eq!(image.config.cmd, ["sh"]);
    assert!(image.config.env[0].starts_with("PATH="));
    assert!(image.size > 500_000);
    assert_eq!(c.images().await.unwrap().len(), 2);

    // A container that prints to both streams and exits 3.
    let mut exits = c.exit_events().await.unwrap();
    let id = uid("echo");
    let labels = HashMap::from([("kedge.io/test".to_string(), "echo".to_string())]);
    c.create_container(
        &id,
        &refs[0],
        &spec(&["sh", "-c", "echo hello; echo oops >&2; exit 3"], false),
        labels.clone(),
    )
    .await
    .unwrap();
    let listed = c.list_containers(&labels).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].image, "docker.io/library/busybox:oci");
    let log = env.path("pods/ns_pod_uid/echo/0.log");
    let (pid, streams) = c.start(&id, TaskIo::default()).await.unwrap();
    assert!(pid > 1);
    let copier = crilog::spawn_copier(
        &log,
        RotationPolicy::default(),
        streams.stdout,
        streams.stderr,
    )
    .unwrap();
    let exit = within("wait", c.wait(&id)).await.unwrap();
    assert_eq!(exit.code, 3);
    assert!(exit.exited_at.is_some());
    within("copier", copier.wait()).await.unwrap();
    let text = within("read logs", logs(&log)).await;
    assert!(
        text.contains("hello\n") && text.contains("oops\n"),
        "{text:?}"
    );
    let raw = std::fs::read_to_string(&log).unwrap();
    assert!(raw.lines().any(|l| l.contains(" stdout F hello")), "{raw}");
    assert!(raw.lines().any(|l| l.contains(" stderr F oops")), "{raw}");
    // The exit was published as an event.
    let ev = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let ev = exits.next().await.unwrap().unwrap();
            if ev.container_id == id {
                return ev;
            }
        }
    })
    .await
    .expect("exit event");
    assert_eq!(ev.exit.code, 3);
    assert!(
        matches!(c.task_status(&id).await.unwrap(), Some(TaskState::Stopped(e)) if e.code == 3)
    );
    within("delete", c.delete(&id)).await.unwrap();
    within("delete again", c.delete(&id)).await.unwrap(); // idempotent
    assert!(c.task_status(&id).await.unwrap().is_none());
    assert!(c.list_containers(&labels).await.unwrap().is_empty());

    // Removing an image; the other name still works.
    within("remove image", c.remove_image("example.com/team/bb:docker"))
        .await
        .unwrap();
    assert!(
        c.image("example.com/team/bb:docker")
            .await
            .unwrap()
            .is_none()
    );
    c.remove_image("example.com/team/bb:docker").await.unwrap();
    drop(exits);
    within("teardown", env.teardown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_long_running_container() {
    let env = Env::start().await;
    let c = &env.client;
    let image = env.busybox("busybox:term").await;
    let id = uid("long");
    let script = "trap 'echo got-term; exit 0' TERM; echo started; while true; do sleep 0.1; done";
    c.create_container(
        &id,
        &image,
        &spec(&["sh", "-c", script], false),
        HashMap::new(),
    )
    .await
    .unwrap();
    let log = env.path("term/0.log");
    let (pid, streams) = c.start(&id, TaskIo::default()).await.unwrap();
    let copier = crilog::spawn_copier(
        &log,
        RotationPolicy::default(),
        streams.stdout,
        streams.stderr,
    )
    .unwrap();
    assert_eq!(
        c.task_status(&id).await.unwrap(),
        Some(TaskState::Running { pid })
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.kill(&id, Signal::SIGTERM, false).await.unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(10), c.wait(&id))
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert_eq!(exit.code, 0);
    copier.wait().await.unwrap();
    assert_eq!(logs(&log).await, "started\ngot-term\n");

    // A process that ignores SIGTERM is stopped by SIGKILL: 137.
    let id2 = uid("stubborn");
    c.create_container(
        &id2,
        &image,
        &spec(&["sh", "-c", "trap '' TERM; sleep 1000"], false),
        HashMap::new(),
    )
    .await
    .unwrap();
    let (_, _s) = c.start(&id2, TaskIo::default()).await.unwrap();
    c.kill(&id2, Signal::SIGKILL, true).await.unwrap();
    assert_eq!(c.wait(&id2).await.unwrap().code, 137);
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_with_exit_codes_stdin_and_a_tty() {
    let env = Env::start().await;
    let c = &env.client;
    let image = env.busybox("busybox:exec").await;
    let id = uid("sleeper");
    c.create_container(
        &id,
        &image,
        &spec(&["sleep", "1000"], false),
        HashMap::new(),
    )
    .await
    .unwrap();
    let (_, _streams) = c.start(&id, TaskIo::default()).await.unwrap();

    let mut s = c
        .exec(&id, "ok", &process(&["echo", "ok"]), TaskIo::default())
        .await
        .unwrap();
    let out = read_all(s.stdout.take()).await;
    assert_eq!(out, "ok\n");
    assert_eq!(within("exec wait", s.wait()).await.unwrap().code, 0);

    let mut s = c
        .exec(
            &id,
            "seven",
            &process(&["sh", "-c", "echo bad >&2; exit 7"]),
            TaskIo::default(),
        )
        .await
        .unwrap();
    let err = read_all(s.stderr.take()).await;
    assert_eq!(err, "bad\n");
    assert_eq!(within("exec wait", s.wait()).await.unwrap().code, 7);

    // stdin: cat echoes what we write, and ends when we close it.
    let io = TaskIo {
        stdin: true,
        terminal: false,
    };
    let mut s = c.exec(&id, "cat", &process(&["cat"]), io).await.unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut w = s.stdin.take().unwrap();
        w.write_all(b"through stdin\n").await.unwrap();
    }
    s.close_stdin().await.unwrap();
    assert_eq!(read_all(s.stdout.take()).await, "through stdin\n");
    assert_eq!(within("exec wait", s.wait()).await.unwrap().code, 0);

    // A TTY, resized while the process waits.
    let io = TaskIo {
        stdin: true,
        terminal: true,
    };
    let mut s = c
        .exec(
            &id,
            "tty",
            &process(&["sh", "-c", "sleep 0.5; stty size; tty"]),
            io,
        )
        .await
        .unwrap();
    assert!(s.stderr.is_none(), "a terminal has one output stream");
    s.resize(100, 40).await.unwrap();
    let out = read_all(s.stdout.take()).await;
    assert!(out.contains("40 100"), "{out:?}");
    assert!(out.contains("/dev/pts/"), "{out:?}");
    drop(s.stdin.take());
    assert_eq!(within("exec wait", s.wait()).await.unwrap().code, 0);

    // Exec into a missing container is a clear error.
    let e = c
        .exec("no-such", "x", &process(&["true"]), TaskIo::default())
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisor_restarts_containerd_and_containers_keep_running() {
    let env = Env::start().await;
    let c = &env.client;
    let image = env.busybox("busybox:restart").await;
    let id = uid("survivor");
    c.create_container(
        &id,
        &image,
        &spec(&["sleep", "1000"], false),
        HashMap::new(),
    )
    .await
    .unwrap();
    let (pid, _streams) = c.start(&id, TaskIo::default()).await.unwrap();
    let sup = env.sup.as_ref().unwrap();
    let old = sup.pid().expect("running");
    let mut state = sup.state();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(old as i32), Signal::SIGKILL).unwrap();
    let t0 = Instant::now();
    tokio::time::timeout(
        Duration::from_secs(30),
        state.wait_for(|s| matches!(s, ContainerdState::Running { restarts: 1, .. })),
    )
    .await
    .expect("containerd restarted within 30s")
    .unwrap();
    println!("containerd back after SIGKILL in {:?}", t0.elapsed());
    assert_ne!(sup.pid().unwrap(), old);
    // The container never stopped, and the same client reaches the new containerd.
    assert!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok());
    assert_eq!(
        task_status_once_reachable(c, &id).await,
        Some(TaskState::Running { pid })
    );
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_reattached_after_an_agent_restart() {
    let env = Env::start().await;
    let image = env.busybox("busybox:logs").await;
    let id = uid("counter");
    let script =
        "i=0; while [ $i -lt 40 ]; do echo line $i; i=$((i+1)); sleep 0.05; done; sleep 1000";
    env.client
        .create_container(
            &id,
            &image,
            &spec(&["sh", "-c", script], false),
            HashMap::new(),
        )
        .await
        .unwrap();
    let log = env.path("reattach/0.log");
    let (_, streams) = env.client.start(&id, TaskIo::default()).await.unwrap();
    let copier = crilog::spawn_copier(
        &log,
        RotationPolicy::default(),
        streams.stdout,
        streams.stderr,
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // "Agent restart": the copier and the client go away; output meanwhile waits in the FIFO.
    copier.abort();
    drop(copier);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let client = kedge_containerd::Client::connect(env.config.client_config())
        .await
        .unwrap();
    let streams = client.attach(&id).await.unwrap();
    let copier = crilog::spawn_copier(
        &log,
        RotationPolicy::default(),
        streams.stdout,
        streams.stderr,
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    client.kill(&id, Signal::SIGKILL, true).await.unwrap();
    client.wait(&id).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), copier.wait())
        .await
        .expect("copier ends")
        .unwrap();
    let text = logs(&log).await;
    let lines: Vec<&str> = text.lines().collect();
    let want: Vec<String> = (0..40).map(|i| format!("line {i}")).collect();
    assert_eq!(
        lines, want,
        "every line exactly once, in order, across the re-attach"
    );
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_or_truncated_tarballs_leave_nothing_behind() {
    let env = Env::start().await;
    let c = &env.client;
    let good = env.path("good.tar");
    let mut opts = BusyboxImage::new("busybox:corrupt", ImageFormat::OciLayout);
    opts.gzip_layer = false;
    build_image(&good, &opts).unwrap();
    let bytes = std::fs::read(&good).unwrap();

    let truncated = env.path("truncated.tar");
    std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let e = c.import(&truncated, |_| {}).await.unwrap_err().to_string();
    assert!(
        e.contains("truncated or corrupt") || e.contains("missing"),
        "{e}"
    );

    // Flip bytes inside the layer: the tar is readable, the digest is not right.
    let corrupt = env.path("corrupt.tar");
    let mut b = bytes.clone();
    let at = b
        .windows(8)
        .position(|w| w == b"\x7fELF\x02\x01\x01\x03")
        .or_else(|| b.windows(4).position(|w| w == b"\x7fELF"))
        .expect("busybox in the layer");
    for x in &mut b[at + 5000..at + 5016] {
        *x ^= 0xff;
    }
    std::fs::write(&corrupt, &b).unwrap();
    let e = c.import(&corrupt, |_| {}).await.unwrap_err().to_string();
    assert!(e.contains("does not match its digest"), "{e}");

    let garbage = env.path("garbage.tar");
    std::fs::write(&garbage, b"this is not a tarball at all").unwrap();
    let e = c.import(&garbage, |_| {}).await.unwrap_err().to_string();
    assert!(e.starts_with("invalid image"), "{e}");

    assert!(
        c.images().await.unwrap().is_empty(),
        "no half-imported image"
    );
    let out = std::process::Command::new("ctr")
        .args([
            "-a",
            env.config.socket_path().to_str().unwrap(),
            "-n",
            "k8s.io",
            "content",
            "ls",
            "-q",
        ])
        .output()
        .expect("ctr (from the containerd package)");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "",
        "no blob left in the content store"
    );
    let out = std::process::Command::new("ctr")
        .args([
            "-a",
            env.config.socket_path().to_str().unwrap(),
            "-n",
            "k8s.io",
            "snapshots",
            "ls",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        1,
        "no snapshot left: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The good one still imports, and a second import writes nothing new.
    c.import(&good, |_| {}).await.unwrap();
    let mut total = 0;
    c.import(&good, |p| total = p.bytes_total).await.unwrap();
    assert_eq!(total, 0, "blobs already present are not written again");
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn airgap_dir_is_imported_once() {
    let env = Env::start().await;
    let c = &env.client;
    let dir = env.config.images_dir();
    std::fs::create_dir_all(&dir).unwrap();
    build_busybox_image(&dir.join("a.tar"), "busybox:a", ImageFormat::OciLayout).unwrap();
    build_busybox_image(&dir.join("b.tar"), "busybox:b", ImageFormat::DockerArchive).unwrap();
    std::fs::write(dir.join("broken.tar.gz"), b"nope").unwrap();
    std::fs::write(dir.join("notes.txt"), b"ignored").unwrap();
    let r = c.import_dir(&dir).await.unwrap();
    assert_eq!(r.imported.len(), 2);
    assert_eq!(r.failed.len(), 1);
    assert!(r.failed[0].0.ends_with("broken.tar.gz"));
    let r = c.import_dir(&dir).await.unwrap();
    assert!(r.imported.is_empty());
    assert_eq!(r.skipped.len(), 2);
    // An image removed since is imported again.
    c.remove_image("busybox:a").await.unwrap();
    let r = c.import_dir(&dir).await.unwrap();
    assert_eq!(r.imported.len(), 1);
    assert_eq!(r.imported[0].name, "docker.io/library/busybox:a");
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measurements() {
    let env = Env::start().await;
    let c = &env.client;
    let tar = env.path("m.tar");
    build_busybox_image(&tar, "busybox:m", ImageFormat::OciLayout).unwrap();
    let t0 = Instant::now();
    let image = c.import(&tar, |_| {}).await.unwrap().pop().unwrap();
    let import = t0.elapsed();
    let mut lat = Vec::new();
    for i in 0..20 {
        let id = format!("lat-{i}-{:04x}", rand::random::<u16>());
        let t = Instant::now();
        c.create_container(
            &id,
            &image,
            &spec(&["sleep", "1000"], false),
            HashMap::new(),
        )
        .await
        .unwrap();
        let (_, _s) = c.start(&id, TaskIo::default()).await.unwrap();
        lat.push(t.elapsed());
        c.delete(&id).await.unwrap();
    }
    lat.sort();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = env.sup.as_ref().unwrap().pid().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap()
        .to_string();
    println!(
        "MEASURE import={:?} create_start_p50={:?} p90={:?} max={:?} containerd_idle_{}",
        import,
        lat[lat.len() / 2],
        lat[lat.len() * 9 / 10],
        lat[lat.len() - 1],
        rss.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    assert!(lat[lat.len() / 2] < Duration::from_secs(5));
    env.teardown().await;
}

/// Shim processes serving this containerd.
fn shims(socket: &std::path::Path) -> usize {
    let needle = socket.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| {
            let c = String::from_utf8_lossy(c);
            c.starts_with("/usr/bin/containerd-shim-runc-v2") && c.contains(&needle)
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shim_serves_a_whole_pod() {
    let env = Env::start().await;
    let c = &env.client;
    let image = env.busybox("busybox:group").await;
    let mut ids = Vec::new();
    for name in ["pause", "app", "sidecar"] {
        let id = uid(name);
        let mut s = spec(&["sleep", "1000"], false);
        s.set_annotations(Some(HashMap::from([(
            kedge_containerd::SHIM_GROUP_ANNOTATION.to_string(),
            "pod-1234".to_string(),
        )])));
        c.create_container(&id, &image, &s, HashMap::new())
            .await
            .unwrap();
        let (_, _streams) = c.start(&id, TaskIo::default()).await.unwrap();
        ids.push(id);
    }
    // A container outside the group gets its own shim.
    let lone = uid("lone");
    c.create_container(
        &lone,
        &image,
        &spec(&["sleep", "1000"], false),
        HashMap::new(),
    )
    .await
    .unwrap();
    let (_, _s) = c.start(&lone, TaskIo::default()).await.unwrap();
    assert_eq!(
        shims(&env.config.socket_path()),
        2,
        "one shim for the pod's three containers, one for the other"
    );
    for id in &ids {
        assert!(matches!(
            c.task_status(id).await.unwrap(),
            Some(TaskState::Running { .. })
        ));
    }
    within("teardown", env.teardown()).await;
}

/// An agent killed hard (SIGKILL, OOM) leaves its containerd running. The next agent
/// finds a containerd with its own config on its socket: it stops that one and starts
/// a supervised one, and the containers keep running. A process that is not such a
/// containerd is never touched: starting fails and names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_containerd_left_by_a_killed_agent_is_replaced() {
    let mut env = Env::start().await;
    let image = env.busybox("busybox:leftover").await;
    let id = uid("survivor");
    env.client
        .create_container(
            &id,
            &image,
            &spec(&["sleep", "1000"], false),
            HashMap::new(),
        )
        .await
        .unwrap();
    let (pid, _streams) = env.client.start(&id, TaskIo::default()).await.unwrap();

    // The killed agent's containerd: the same config, nobody supervising it.
    env.sup.take().unwrap().shutdown().await;
    let mut leftover = std::process::Command::new(&env.config.binary)
        .arg("--config")
        .arg(env.config.config_path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("containerd");
    let socket = env.config.socket_path();
    within("the leftover containerd answers", async {
        while tokio::net::UnixStream::connect(&socket).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    let sup = Supervisor::start(env.config.clone())
        .await
        .expect("the next agent replaces the leftover containerd");
    let exited = leftover.try_wait().unwrap();
    assert!(
        exited.is_some(),
        "the leftover containerd was stopped before the new one started"
    );
    assert_ne!(sup.pid(), Some(leftover.id()));
    env.sup = Some(sup);
    assert!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok(),
        "the container kept running"
    );
    assert_eq!(
        task_status_once_reachable(&env.client, &id).await,
        Some(TaskState::Running { pid })
    );

    // Someone else's socket.
    let other = tempfile::tempdir().unwrap();
    let mut config = ContainerdConfig::new(other.path().join("agent"));
    config.state_dir = other.path().join("state");
    std::fs::create_dir_all(config.socket_path().parent().unwrap()).unwrap();
    let _listener = tokio::net::UnixListener::bind(config.socket_path()).unwrap();
    let Err(err) = Supervisor::start(config).await else {
        panic!("a containerd was started on someone else's socket");
    };
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("process {}", std::process::id()))
            && msg.contains("is not a containerd started with"),
        "{msg}"
    );
    env.teardown().await;
}
