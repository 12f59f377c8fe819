//! The official Python `kubernetes` client, unchanged, against the real
//! `kedge server`.
//!
//! The scripts live in `tests/python/`; each loads the kubeconfig the server
//! wrote with `config.load_kube_config(config_file=...)` and exits non-zero
//! with a message on the first mismatch. The client runs from a virtualenv
//! made once from `tests/python/requirements.txt` (pinned versions) and
//! cached under Cargo's target directory, or at `$KEDGE_TEST_VENV`. Python
//! itself is Debian's `/usr/bin/python3` (or `$KEDGE_TEST_PYTHON`), which
//! `scripts/setup.sh` installs with `python3-venv`. A missing Python or
//! venv module, or a failed `pip install`, fails the tests loudly: they are
//! never skipped.

mod common;

use std::fs::{self, File};
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Cluster;

/// How long one script may run.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(120);

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python")
}

fn python() -> PathBuf {
    std::env::var_os("KEDGE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/python3"))
}

fn describe(out: &Output) -> String {
    format!(
        "exit: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd` to the end and expects success; `what` says what it was for.
fn run_ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: could not run {cmd:?}: {e}"));
    assert!(out.status.success(), "{what} failed\n{}", describe(&out));
    out
}

/// The virtualenv with the pinned client, made once per requirements file
/// and Python: once per process (`OnceLock`), and once across processes
/// (an exclusive lock on a file beside it), so parallel tests and parallel
/// test binaries share one.
fn venv() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(make_venv)
}

fn make_venv() -> PathBuf {
    let python = python();
    let version = Command::new(&python)
        .args(["-c", "import sys; print(sys.version)"])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "the Python client tests need {} (Debian package python3; \
                 scripts/setup.sh installs it, or set KEDGE_TEST_PYTHON): {e}",
                python.display()
            )
        });
    assert!(
        version.status.success(),
        "{} does not run\n{}",
        python.display(),
        describe(&version)
    );
    let probe = Command::new(&python)
        .args(["-c", "import venv, ensurepip"])
        .output()
        .unwrap();
    assert!(
        probe.status.success(),
        "the Python client tests need the venv module with ensurepip \
         (Debian package python3-venv; scripts/setup.sh installs it)\n{}",
        describe(&probe)
    );

    let requirements = scripts_dir().join("requirements.txt");
    let pinned = fs::read_to_string(&requirements).unwrap();
    let dir = match std::env::var_os("KEDGE_TEST_VENV") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let mut hasher = std::hash::DefaultHasher::new();
            (python.as_os_str(), &version.stdout, &pinned).hash(&mut hasher);
            Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("python-venv-{:016x}", hasher.finish()))
        }
    };
    let lock = File::create(dir.with_extension("lock")).expect("create the venv lock file");
    lock.lock().expect("lock the venv");
    let stamp = dir.join("kedge-requirements.txt");
    if fs::read_to_string(&stamp).is_ok_and(|done| done == pinned) {
        return dir;
    }
    // Absent, half made by a run that died, or for other requirements.
    if dir.exists() {
        fs::remove_dir_all(&dir).unwrap();
    }
    run_ok(
        Command::new(&python).arg("-m").arg("venv").arg(&dir),
        "creating the Python virtualenv",
    );
    run_ok(
        Command::new(dir.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-input",
                "-r",
            ])
            .arg(&requirements),
        "pip install -r tests/python/requirements.txt (it needs PyPI)",
    );
    fs::write(&stamp, &pinned).unwrap();
    dir
}

/// Runs `tests/python/<script>` against the cluster and expects it to pass;
/// on failure, or after [`SCRIPT_DEADLINE`], panics with its output.
fn run_script(cluster: &Cluster, script: &str) -> String {
    let venv = venv();
    let mut child = Command::new(venv.join("bin/python"))
        .arg(scripts_dir().join(script))
        .arg(&cluster.kubeconfig)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("KUBECONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    let collect = |mut pipe: Box<dyn Read + Send>| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send(buf);
        });
        rx
    };
    let stdout = collect(Box::new(child.stdout.take().unwrap()));
    let stderr = collect(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + SCRIPT_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = String::from_utf8_lossy(&stdout.recv().unwrap_or_default()).into_owned();
    let err = String::from_utf8_lossy(&stderr.recv().unwrap_or_default()).into_owned();
    match status {
        None => panic!(
            "{script} did not finish within {SCRIPT_DEADLINE:?}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"
        ),
        Some(status) => assert!(
            status.success(),
            "{script} failed ({status})\n--- stdout ---\n{out}\n--- stderr ---\n{err}"
        ),
    }
    out
}

#[test]
fn python_lists_and_creates_namespaces() {
    let cluster = Cluster::sqlite();
    let out = run_script(&cluster, "namespaces.py");
    assert!(
        out.contains("ok: namespace kube-node-lease is listed"),
        "{out}"
    );
    // What the script made is really there.
    let made = cluster.ok(&[
        "get",
        "namespace",
        "py-ns",
        "-o",
        "jsonpath={.status.phase}",
    ]);
    assert_eq!(made, "Active");
}

#[test]
fn python_crud_patches_subresources_and_errors() {
    let cluster = Cluster::sqlite();
    let out = run_script(&cluster, "crud.py");
    assert!(out.contains("ok: a stale replace is a 409"), "{out}");
    // The script deleted everything it made but one unrelated ConfigMap.
    let left = cluster.ok(&[
        "get",
        "configmaps",
        "-n",
        "default",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    assert_eq!(left, "py-other");
}

#[test]
fn python_watch_streams_added_modified_deleted() {
    let cluster = Cluster::sqlite();
    let out = run_script(&cluster, "watch.py");
    assert!(
        out.contains("ok: the events of the writer's changes, in order"),
        "{out}"
    );
}
