//! Pulls from a registry served inside the test (real HTTP, bearer-token auth, a
//! redirect for blobs, a dead mirror first), and image GC on a small tmpfs. Run as root.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{Env, spec, uid};
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use kedge_containerd::testimage::{BusyboxImage, ImageFormat, build_image};
use kedge_containerd::{PullPolicy, Registries, TaskIo};

struct Registry {
    blobs: BTreeMap<String, Vec<u8>>,
    manifest_digest: String,
    manifest_type: String,
    requests: AtomicUsize,
}

const TOKEN: &str = "tok-3f9a";

async fn handle(
    reg: Arc<Registry>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    reg.requests.fetch_add(1, Ordering::SeqCst);
    let host = req
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let path = req.uri().path().to_string();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let resp = |code: StatusCode, body: Vec<u8>| {
        Response::builder()
            .status(code)
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    if path == "/token" {
        // user:secret
        let ok = auth == "Basic dXNlcjpzZWNyZXQ=";
        let q = req.uri().query().unwrap_or("");
        assert!(
            q.contains("scope=repository%3Alibrary%2Fbusybox%3Apull"),
            "{q}"
        );
        return Ok(if ok {
            resp(
                StatusCode::OK,
                format!(r#"{{"token":"{TOKEN}"}}"#).into_bytes(),
            )
        } else {
            resp(StatusCode::UNAUTHORIZED, b"{}".to_vec())
        });
    }
    if let Some(d) = path.strip_prefix("/storage/") {
        return Ok(match reg.blobs.get(d) {
            Some(b) => resp(StatusCode::OK, b.clone()),
            None => resp(StatusCode::NOT_FOUND, vec![]),
        });
    }
    if auth != format!("Bearer {TOKEN}") {
        return Ok(Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header(
                "www-authenticate",
                format!(r#"Bearer realm="http://{host}/token",service="kedge-test""#),
            )
            .body(Full::new(Bytes::new()))
            .unwrap());
    }
    if let Some(obj) = path.strip_prefix("/v2/library/busybox/manifests/") {
        if obj == "pulled" || obj == reg.manifest_digest {
            return Ok(Response::builder()
                .header("content-type", reg.manifest_type.clone())
                .header("docker-content-digest", reg.manifest_digest.clone())
                .body(Full::new(Bytes::from(
                    reg.blobs[&reg.manifest_digest].clone(),
                )))
                .unwrap());
        }
        return Ok(resp(StatusCode::NOT_FOUND, vec![]));
    }
    if let Some(d) = path.strip_prefix("/v2/library/busybox/blobs/") {
        if !reg.blobs.contains_key(d) {
            return Ok(resp(StatusCode::NOT_FOUND, vec![]));
        }
        // Blobs are served from "storage" through a redirect, as real registries do.
        return Ok(Response::builder()
            .status(StatusCode::TEMPORARY_REDIRECT)
            .header("location", format!("/storage/{d}"))
            .body(Full::new(Bytes::new()))
            .unwrap());
    }
    Ok(resp(StatusCode::NOT_FOUND, vec![]))
}

async fn serve(reg: Arc<Registry>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let reg = reg.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| handle(reg.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_from_a_registry_with_bearer_auth_and_mirrors() {
    let env = Env::start().await;
    let c = &env.client;
    let built = build_image(
        &env.path("src.tar"),
        &BusyboxImage::new("busybox:pulled", ImageFormat::OciLayout),
    )
    .unwrap();
    let reg = Arc::new(Registry {
        blobs: built.blobs.clone(),
        manifest_digest: built.manifest_digest.clone(),
        manifest_type: built.manifest_media_type.clone(),
        requests: AtomicUsize::new(0),
    });
    let port = serve(reg.clone()).await;
    // A dead mirror first: the pull falls through to the next endpoint.
    let yaml = format!(
        r#"
mirrors:
  docker.io:
    endpoint: ["http://127.0.0.1:1", "http://127.0.0.1:{port}"]
configs:
  "127.0.0.1:{port}":
    auth: {{username: user, password: secret}}
"#
    );
    let registries = Registries::parse(&yaml).unwrap();

    let e = c
        .ensure_image("busybox:pulled", PullPolicy::Never, &registries)
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");

    let image = c
        .ensure_image("busybox:pulled", PullPolicy::IfNotPresent, &registries)
        .await
        .unwrap();
    assert_eq!(image.name, "docker.io/library/busybox:pulled");
    assert_eq!(image.digest, built.manifest_digest);
    let n = reg.requests.load(Ordering::SeqCst);
    assert!(n >= 4, "manifest, token, config, layer: {n} requests");
    // Present now: IfNotPresent asks nothing.
    c.ensure_image("busybox:pulled", PullPolicy::IfNotPresent, &registries)
        .await
        .unwrap();
    assert_eq!(reg.requests.load(Ordering::SeqCst), n);

    // It runs.
    let id = uid("pulled");
    c.create_container(
        &id,
        &image,
        &spec(&["sh", "-c", "cat /var/www/index.html"], false),
        HashMap::new(),
    )
    .await
    .unwrap();
    let (_, streams) = c.start(&id, TaskIo::default()).await.unwrap();
    let out = common::read_all(streams.stdout).await;
    assert_eq!(c.wait(&id).await.unwrap().code, 0);
    assert_eq!(out, "hello from kedge busybox\n");

    // By digest, and Always pulls again.
    let by_digest = format!("busybox@{}", built.manifest_digest);
    let img = c.pull(&by_digest, &registries).await.unwrap();
    assert_eq!(
        img.name,
        format!("docker.io/library/busybox@{}", built.manifest_digest)
    );
    c.ensure_image("busybox:pulled", PullPolicy::Always, &registries)
        .await
        .unwrap();
    assert!(reg.requests.load(Ordering::SeqCst) > n);

    // Wrong credentials and unknown tags fail with a reason.
    let bad = Registries::parse(&format!(
        "mirrors: {{docker.io: {{endpoint: [\"http://127.0.0.1:{port}\"]}}}}\nconfigs: {{\"127.0.0.1:{port}\": {{auth: {{username: user, password: wrong}}}}}}"
    ))
    .unwrap();
    // The error names every endpoint tried (registry-1.docker.io is out of reach here).
    let e = c
        .pull("busybox:pulled", &bad)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("check the credentials in registries.yaml"),
        "{e}"
    );
    let e = c
        .pull("busybox:nope", &registries)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("404") && e.contains("check the image name and tag"),
        "{e}"
    );
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_gc_removes_least_recently_used_images_between_thresholds() {
    common::require_host();
    let dir = tempfile::tempdir().unwrap();
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=96m", "kedge-gc-test"])
        .arg(dir.path())
        .status()
        .expect("mount (util-linux)");
    assert!(
        st.success(),
        "mounting a tmpfs for the image filesystem failed"
    );
    let mountpoint = dir.path().to_path_buf();
    let env = Env::start_in(dir).await;
    let c = &env.client;
    let mut refs = Vec::new();
    for name in ["busybox:gc-a", "busybox:gc-b", "busybox:gc-c"] {
        let mut o = BusyboxImage::new(name, ImageFormat::OciLayout);
        o.extra_bytes = 12 << 20;
        let tar = std::env::temp_dir().join(format!("kedge-gc-{:08x}.tar", rand::random::<u32>()));
        build_image(&tar, &o).unwrap();
        refs.push(c.import(&tar, |_| {}).await.unwrap().pop().unwrap());
        std::fs::remove_file(&tar).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // a is used by a container.
    c.create_container(
        &uid("user"),
        &refs[0],
        &spec(&["true"], false),
        HashMap::new(),
    )
    .await
    .unwrap();
    let root = env.config.root_dir();
    let in_use = HashSet::from(["busybox:gc-a".to_string()]);
    let usage = kedge_containerd::FsUsage::of(&root).unwrap().percent();
    println!("image fs usage with 3 images: {usage:.1}%");
    assert!(usage > 70.0, "the three images fill the tmpfs: {usage:.1}%");

    let r = c
        .image_gc(&root, 99, 50, Duration::ZERO, &in_use)
        .await
        .unwrap();
    assert!(
        r.removed.is_empty(),
        "below the high threshold nothing is removed: {r:?}"
    );
    let r = c
        .image_gc(&root, 70, 35, kedge_containerd::MINIMUM_GC_AGE, &in_use)
        .await
        .unwrap();
    assert!(
        r.removed.is_empty(),
        "images imported a moment ago are younger than the minimum age: {r:?}"
    );

    let r = c
        .image_gc(&root, 70, 35, Duration::ZERO, &in_use)
        .await
        .unwrap();
    println!("gc: {r:?}");
    assert_eq!(
        r.removed,
        [
            "docker.io/library/busybox:gc-b",
            "docker.io/library/busybox:gc-c"
        ]
    );
    assert!(r.usage_after < 35.0, "{r:?}");
    assert!(
        c.image("busybox:gc-a").await.unwrap().is_some(),
        "the image in use stays"
    );
    assert!(
        c.image_gc(&root, 50, 60, Duration::ZERO, &in_use)
            .await
            .is_err(),
        "low above high is refused"
    );
    env.teardown().await;
    let _ = std::process::Command::new("umount")
        .arg(&mountpoint)
        .status();
}
