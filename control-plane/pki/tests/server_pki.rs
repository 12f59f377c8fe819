//! The server PKI on a real filesystem (temp directories), checked with x509-parser and
//! rustls' own verifiers.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kedge_pki::{
    ExpectedSubject, Identity, PkiError, PkiOptions, San, ServerPki, ca_hash, client_identity,
    layout,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::{RootCertStore, client::WebPkiServerVerifier, server::WebPkiClientVerifier};
use x509_parser::prelude::*;

const DAY: Duration = Duration::from_secs(86_400);

/// 2026-01-01T00:00:00Z: the injected "now" of the first start.
fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

const ALL_FILES: [&str; 9] = [
    layout::SERVER_CA_CERT,
    layout::SERVER_CA_KEY,
    layout::CLIENT_CA_CERT,
    layout::CLIENT_CA_KEY,
    layout::SERVING_APISERVER_CERT,
    layout::SERVING_APISERVER_KEY,
    layout::CLIENT_ADMIN_CERT,
    layout::CLIENT_ADMIN_KEY,
    layout::SERVICE_ACCOUNT_KEY,
];

struct Fixture {
    _tmp: tempfile::TempDir,
    tls: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let tls = layout::tls_dir(&tmp.path().join("data"));
    Fixture { _tmp: tmp, tls }
}

fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn pem_der(pem: &[u8]) -> Vec<u8> {
    let (rest, pem) = x509_parser::pem::parse_x509_pem(pem).unwrap();
    assert!(rest.iter().all(u8::is_ascii_whitespace));
    assert_eq!(pem.label, "CERTIFICATE");
    pem.contents
}

fn with_cert<R>(pem: &[u8], f: impl FnOnce(&X509Certificate<'_>) -> R) -> R {
    let der = pem_der(pem);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    f(&cert)
}

fn not_after(pem: &[u8]) -> SystemTime {
    with_cert(pem, |c| {
        UNIX_EPOCH + Duration::from_secs(c.validity().not_after.timestamp() as u64)
    })
}

fn sans(pem: &[u8]) -> Vec<String> {
    with_cert(pem, |c| {
        c.subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => d.to_string(),
                GeneralName::IPAddress(b) if b.len() == 4 => {
                    std::net::IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()).to_string()
                }
                GeneralName::IPAddress(b) => {
                    std::net::IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()).to_string()
                }
                other => panic!("unexpected san {other:?}"),
            })
            .collect()
    })
}

/// Checks with x509-parser that `leaf` names `ca` as issuer and carries its signature.
fn assert_signed_by(leaf_pem: &[u8], ca_pem: &[u8]) {
    let ca_der = pem_der(ca_pem);
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    with_cert(leaf_pem, |leaf| {
        assert_eq!(leaf.issuer(), ca.subject());
        leaf.verify_signature(Some(ca.public_key()))
            .expect("leaf signature verifies with the ca key");
    });
}

fn unix(t: SystemTime) -> UnixTime {
    UnixTime::since_unix_epoch(t.duration_since(UNIX_EPOCH).unwrap())
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca_der: &[u8]) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(ca_der.to_vec())).unwrap();
    Arc::new(roots)
}

fn server_verifier(ca_der: &[u8]) -> Arc<WebPkiServerVerifier> {
    WebPkiServerVerifier::builder_with_provider(roots(ca_der), provider())
        .build()
        .unwrap()
}

fn client_verifier(ca_der: &[u8]) -> Arc<dyn ClientCertVerifier> {
    WebPkiClientVerifier::builder_with_provider(roots(ca_der), provider())
        .build()
        .unwrap()
}

#[test]
fn first_start_creates_every_file_with_the_right_mode() {
    let fx = fixture();
    let pki = ServerPki::load_or_create(&fx.tls, &PkiOptions::default(), t0()).unwrap();
    assert_eq!(pki.dir(), fx.tls);

    let files = snapshot(&fx.tls);
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    let mut expected = ALL_FILES.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected, "exactly the nine files, no temp files");

    assert_eq!(mode(&fx.tls), 0o700);
    for name in ALL_FILES {
        let want = if name.ends_with(".key") { 0o600 } else { 0o644 };
        assert_eq!(mode(&fx.tls.join(name)), want, "{name}");
    }

    // CAs: K3s-style names, CA basic constraints, ten years.
    for (file, prefix) in [
        (layout::SERVER_CA_CERT, "kedge-server-ca@"),
        (layout::CLIENT_CA_CERT, "kedge-client-ca@"),
    ] {
        with_cert(&files[file], |ca| {
            let cn = ca.subject().iter_common_name().next().unwrap();
            assert_eq!(cn.as_str().unwrap(), format!("{prefix}1767225600"));
            assert!(ca.is_ca());
        });
        assert_eq!(not_after(&files[file]), t0() + 3650 * DAY, "{file}");
    }

    // Leaves: one year, the right EKU and subject, signed by the right CA.
    let serving = &files[layout::SERVING_APISERVER_CERT];
    let admin = &files[layout::CLIENT_ADMIN_CERT];
    assert_eq!(not_after(serving), t0() + 365 * DAY);
    assert_eq!(not_after(admin), t0() + 365 * DAY);
    with_cert(serving, |c| {
        let eku = c.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
        assert!(!c.is_ca());
    });
    with_cert(admin, |c| {
        let eku = c.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
    });
    assert_signed_by(serving, &files[layout::SERVER_CA_CERT]);
    assert_signed_by(admin, &files[layout::CLIENT_CA_CERT]);
    assert_eq!(
        sans(serving),
        [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "127.0.0.1",
            "::1"
        ]
    );

    // Keys are ECDSA P-256 PKCS#8, as the accessors say.
    for key in [layout::SERVER_CA_KEY, layout::SERVING_APISERVER_KEY] {
        let text = String::from_utf8(files[key].clone()).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
        let kp = rcgen::KeyPair::from_pem(&text).unwrap();
        assert_eq!(kp.algorithm(), &rcgen::PKCS_ECDSA_P256_SHA256);
    }

    // Accessors hand out exactly what is on disk.
    assert_eq!(
        pki.server_ca_pem().as_bytes(),
        files[layout::SERVER_CA_CERT]
    );
    assert_eq!(
        pki.client_ca_pem().as_bytes(),
        files[layout::CLIENT_CA_CERT]
    );
    assert_eq!(pki.server_ca_der(), pem_der(&files[layout::SERVER_CA_CERT]));
    assert_eq!(pki.client_ca_der(), pem_der(&files[layout::CLIENT_CA_CERT]));
    assert_eq!(pki.serving_cert_pem().as_bytes(), serving.as_slice());
    assert_eq!(pki.serving_cert_chain_der(), vec![pem_der(serving)]);
    assert_eq!(
        pki.serving_key_pem().as_bytes(),
        files[layout::SERVING_APISERVER_KEY]
    );
    assert_eq!(pki.admin_cert_pem().as_bytes(), admin.as_slice());
    assert_eq!(
        pki.admin_key_pem().as_bytes(),
        files[layout::CLIENT_ADMIN_KEY]
    );
}

#[test]
fn later_starts_load_everything_and_rewrite_nothing() {
    let fx = fixture();
    let first = ServerPki::load_or_create(&fx.tls, &PkiOptions::default(), t0()).unwrap();
    let before = snapshot(&fx.tls);

    let second = ServerPki::load_or_create(&fx.tls, &PkiOptions::default(), t0() + DAY).unwrap();
    assert_eq!(snapshot(&fx.tls), before);
    assert_eq!(second.server_ca_pem(), first.server_ca_pem());
    assert_eq!(second.client_ca_pem(), first.client_ca_pem());
    assert_eq!(second.serving_cert_pem(), first.serving_cert_pem());
    assert_eq!(second.serving_key_der(), first.serving_key_der());
    assert_eq!(second.admin_key_pem(), first.admin_key_pem());

    // 200 days on, leaves still have 165 days: nothing is renewed yet.
    ServerPki::load_or_create(&fx.tls, &PkiOptions::default(), t0() + 200 * DAY).unwrap();
    assert_eq!(snapshot(&fx.tls), before);
}

#[test]
fn leaves_within_ninety_days_of_expiry_are_renewed_and_cas_kept() {
    let fx = fixture();
    ServerPki::load_or_create(&fx.tls, &PkiOptions::default(), t0()).unwrap();
    let before = snapshot(&fx.tls);

    let later = t0() + 300 * DAY; // 65 days left on the leaves
    let pki = ServerPki::load_or_create(&fx.tls, &PkiOptions::default(), later).unwrap();
    let after = snapshot(&fx.tls);

    for ca_file in [
        layout::SERVER_CA_CERT,
        layout::SERVER_CA_KEY,
        layout::CLIENT_CA_CERT,
        layout::CLIENT_CA_KEY,
    ] {
        assert_eq!(after[ca_file], before[ca_file], "{ca_file} must not change");
    }
    for leaf_file in [
        layout::SERVING_APISERVER_CERT,
        layout::SERVING_APISERVER_KEY,
        layout::CLIENT_ADMIN_CERT,
        layout::CLIENT_ADMIN_KEY,
    ] {
        assert_ne!(
            after[leaf_file], before[leaf_file],
            "{leaf_file} must be renewed"
        );
        let want = if leaf_file.ends_with(".key") {
            0o600
        } else {
            0o644
        };
        assert_eq!(mode(&fx.tls.join(leaf_file)), want, "{leaf_file}");
    }
    let serving = &after[layout::SERVING_APISERVER_CERT];
    assert_eq!(not_after(serving), later + 365 * DAY);
    assert_eq!(
        not_after(&after[layout::CLIENT_ADMIN_CERT]),
        later + 365 * DAY
    );
    assert_signed_by(serving, &after[layout::SERVER_CA_CERT]);
    assert_signed_by(
        &after[layout::CLIENT_ADMIN_CERT],
        &after[layout::CLIENT_CA_CERT],
    );
    assert_eq!(pki.serving_cert_pem().as_bytes(), serving.as_slice());

    // Renewed certificates verify at the new time.
    server_verifier(pki.server_ca_der())
        .verify_server_cert(
            &CertificateDer::from(pki.serving_cert_chain_der().remove(0)),
            &[],
            &ServerName::try_from("kubernetes").unwrap(),
            &[],
            unix(later + 100 * DAY),
        )
        .unwrap();
}

#[test]
fn a_new_san_reissues_the_serving_certificate_only() {
    let fx = fixture();
    ServerPki::load_or_create(&fx.tls, &PkiOptions::default(), t0()).unwrap();
    let before = snapshot(&fx.tls);

    let options = PkiOptions {
        extra_sans: vec![
            "Edge-1.Example.com".parse().unwrap(),
            "192.168.1.10".parse().unwrap(),
            "fd00::10".parse().unwrap(),
            // Already a default: must not appear twice.
            San::parse("localhost").unwrap(),
        ],
    };
    let pki = ServerPki::load_or_create(&fx.tls, &options, t0() + DAY).unwrap();
    let after = snapshot(&fx.tls);

    let serving = &after[layout::SERVING_APISERVER_CERT];
    assert_ne!(serving, &before[layout::SERVING_APISERVER_CERT]);
    assert_eq!(
        sans(serving),
        [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "127.0.0.1",
            "::1",
            "edge-1.example.com",
            "192.168.1.10",
            "fd00::10",
        ]
    );
    assert_signed_by(serving, &after[layout::SERVER_CA_CERT]);
    for unchanged in [
        layout::SERVER_CA_CERT,
        layout::SERVER_CA_KEY,
        layout::CLIENT_CA_CERT,
        layout::CLIENT_CA_KEY,
        layout::CLIENT_ADMIN_CERT,
        layout::CLIENT_ADMIN_KEY,
    ] {
        assert_eq!(after[unchanged], before[unchanged], "{unchanged}");
    }

    // rustls accepts the certificate for the new names.
    let verifier = server_verifier(pki.server_ca_der());
    let leaf = CertificateDer::from(pki.serving_cert_chain_der().remove(0));
    for name in ["edge-1.example.com", "192.168.1.10", "fd00::10"] {
        verifier
            .verify_server_cert(
                &leaf,
                &[],
                &ServerName::try_from(name).unwrap(),
                &[],
                unix(t0() + 2 * DAY),
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }

    // Same SANs again (in another order and case): nothing changes. Fewer SANs: the
    // existing certificate still covers them, nothing changes either.
    let same = PkiOptions {
        extra_sans: vec![
            "fd00::10".parse().unwrap(),
            "192.168.1.10".parse().unwrap(),
            "edge-1.EXAMPLE.com".parse().unwrap(),
        ],
    };
    ServerPki::load_or_create(&fx.tls, &same, t0() + 2 * DAY).unwrap();
    assert_eq!(snapshot(&fx.tls), after);
    ServerPki::load_or_create(&fx.tls, &PkiOptions::default(), t0() + 3 * DAY).unwrap();
    assert_eq!(snapshot(&fx.tls), after);
}

#[test]
fn certificates_verify_with_rustls_against_the_right_ca_only() {
    let fx = fixture();
    let pki = ServerPki::load_or_create(&fx.tls, &PkiOptions::default(), t0()).unwrap();
    let now = unix(t0() + DAY);
    let serving = CertificateDer::from(pki.serving_cert_chain_der().remove(0));
    let admin = CertificateDer::from_pem_slice(pki.admin_cert_pem().as_bytes()).unwrap();

    for name in [
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "localhost",
        "127.0.0.1",
        "::1",
    ] {
        server_verifier(pki.server_ca_der())
            .verify_server_cert(
                &serving,
                &[],
                &ServerName::try_from(name).unwrap(),
                &[],
                now,
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // A name it was not issued for, a time after it expires, the wrong CA.
    assert!(
        server_verifier(pki.server_ca_der())
            .verify_server_cert(
                &serving,
                &[],
                &ServerName::try_from("example.com").unwrap(),
                &[],
                now
            )
            .is_err()
    );
    assert!(
        server_verifier(pki.server_ca_der())
            .verify_server_cert(
                &serving,
                &[],
                &ServerName::try_from("localhost").unwrap(),
                &[],
                unix(t0() + 366 * DAY)
            )
            .is_err()
    );
    assert!(
        server_verifier(pki.client_ca_der())
            .verify_server_cert(
                &serving,
                &[],
                &ServerName::try_from("localhost").unwrap(),
                &[],
                now
            )
            .is_err()
    );

    client_verifier(pki.client_ca_der())
        .verify_client_cert(&admin, &[], now)
        .unwrap();
    assert!(
        client_verifier(pki.server_ca_der())
            .verify_client_cert(&admin, &[], now)
            .is_err(),
        "the admin certificate must not verify against the server ca"
    );
    // The serving certificate is not a client certificate, even though its CA is trusted.
    assert!(
        client_verifier(pki.server_ca_der())
            .verify_client_cert(&serving, &[], now)
            .is_err(),
        "a serverAuth-only certificate must not pass as a client certificate"
    );
}

/// A real TLS 1.3 handshake in memory: the apiserver's rustls config built from the
/// accessors, with client certificates required, and kubectl's side built from the admin
/// credentials.
#[test]
fn rustls_handshake_with_admin_client_certificate() {
    let fx = fixture();
    let pki =
        ServerPki::load_or_create(&fx.tls, &PkiOptions::default(), SystemTime::now()).unwrap();

    let chain = pki
        .serving_cert_chain_der()
        .into_iter()
        .map(CertificateDer::from)
        .collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.serving_key_der().to_vec()));
    let server_config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(client_verifier(pki.client_ca_der()))
        .with_single_cert(chain, key)
        .unwrap();

    let client_config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(pki.server_ca_der()))
        .with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(pki.admin_cert_pem().as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(pki.admin_key_pem().as_bytes()).unwrap(),
        )
        .unwrap();

    let mut server = rustls::ServerConnection::new(Arc::new(server_config)).unwrap();
    let mut client = rustls::ClientConnection::new(
        Arc::new(client_config),
        ServerName::try_from("kubernetes.default.svc").unwrap(),
    )
    .unwrap();
    for _ in 0..10 {
        if !client.is_handshaking() && !server.is_handshaking() {
            break;
        }
        let mut buf = Vec::new();
        client.write_tls(&mut buf).unwrap();
        server.read_tls(&mut buf.as_slice()).unwrap();
        server.process_new_packets().unwrap();
        let mut buf = Vec::new();
        server.write_tls(&mut buf).unwrap();
        client.read_tls(&mut buf.as_slice()).unwrap();
        client.process_new_packets().unwrap();
    }
    assert!(!client.is_handshaking() && !server.is_handshaking());

    let presented = server.peer_certificates().expect("client certificate");
    assert_eq!(
        client_identity(&presented[0]).unwrap(),
        Identity {
            user: "system:admin".into(),
            groups: vec!["system:masters".into()],
        }
    );
}

#[test]
fn a_corrupt_ca_is_an_error_naming_the_file_and_nothing_is_regenerated() {
    let fx = fixture();
    ServerPki::load_or_create(&fx.tls, &PkiOptions::default(), t0()).unwrap();
    let ca_path = fx.tls.join(layout::SERVER_CA_CERT);

    for garbage in [
        b"garbage".to_vec(),
        Vec::new(),
        vec![0xff, 0xfe, 0x00],
        // Valid PEM of the wrong thing.
        fs::read(fx.tls.join(layout::SERVING_APISERVER_CERT)).unwrap(),
    ] {
        fs::write(&ca_path, &garbage).unwrap();
        let before = snapshot(&fx.tls);
        let err =
            ServerPki::load_or_create(&fx.tls, &PkiOptions::default(), t0() + DAY).unwrap_err();
        match &err {
            PkiError::UnusableCa { path, .. } => assert_eq!(path, &ca_path),
            other => panic!("unexpected error {other:?}"),
        }
        let message = err.to_string();
        assert!(
            message.contains(&ca_path.display().to_string()),
            "{message}"
        );
        assert!(message.contains("backup"), "{message}");
        assert!(
            message.contains(&format!("delete {}", fx.tls.display())),
            "{message}"
        );
        assert_eq!(snapshot(&fx.tls), before, "nothing may be rewritten");
    }
}

#[test]
fn a_ca_key_that_does_not_match_or_is_missing_is_an_error() {
    let fx = fixture();
    ServerPki::load_or_create(&fx.tls, &PkiOptions::default(), t0()).unwrap();
    let server_key = fx.tls.join(layout::SERVER_CA_KEY);
    let client_key = fx.tls.join(layout::CLIENT_CA_KEY);

    // The client CA's key in place of the server CA's.
    let original = fs::read(&server_key).unwrap();
    fs::copy(&client_key, &server_key).unwrap();
    let before = snapshot(&fx.tls);
    let err = ServerPki::load_or_create(&fx.tls, &PkiOptions::default(), t0()).unwrap_err();
    match &err {
        PkiError::UnusableCa { path, reason, .. } => {
            assert_eq!(path, &server_key);
            assert!(reason.contains("does not match"), "{reason}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(snapshot(&fx.tls), before);
    fs::write(&server_key, original).unwrap();

    // The client CA key deleted: not silently regenerated.
    fs::remove_file(&client_key).unwrap();
    let err = ServerPki::load_or_create(&fx.tls, &PkiOptions::default(), t0()).unwrap_err();
    match &err {
        PkiError::UnusableCa { path, .. } => assert_eq!(path, &client_key),
        other => panic!("unexpected error {other:?}"),
    }
    assert!(!client_key.exists());
}

#[test]
fn a_deleted_ca_with_certificates_still_signed_by_it_is_an_error() {
    let fx = fixture();
    ServerPki::load_or_create(&fx.tls, &PkiOptions::default(), t0()).unwrap();
    fs::remove_file(fx.tls.join(layout::SERVER_CA_CERT)).unwrap();
    fs::remove_file(fx.tls.join(layout::SERVER_CA_KEY)).unwrap();
    let before = snapshot(&fx.tls);

    let err = ServerPki::load_or_create(&fx.tls, &PkiOptions::default(), t0()).unwrap_err();
    match &err {
        PkiError::MissingCa { dependent, .. } => {
            assert_eq!(dependent, &fx.tls.join(layout::SERVING_APISERVER_CERT));
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(snapshot(&fx.tls), before);

    // Deleting the whole directory, as the message says, starts afresh.
    fs::remove_dir_all(&fx.tls).unwrap();
    ServerPki::load_or_create(&fx.tls, &PkiOptions::default(), t0()).unwrap();
    assert_eq!(snapshot(&fx.tls).len(), ALL_FILES.len());
}

#[test]
fn broken_leaves_are_reissued() {
    let fx = fixture();
    ServerPki::load_or_create(&fx.tls, &PkiOptions::default(), t0()).unwrap();
    let before = snapshot(&fx.tls);

    // A corrupt serving certificate, and an admin key replaced by an unrelated one (what
    // a crash between writing a new key and its certificate would leave).
    fs::write(fx.tls.join(layout::SERVING_APISERVER_CERT), b"garbage").unwrap();
    let stray = rcgen::KeyPair::generate().unwrap().serialize_pem();
    fs::write(fx.tls.join(layout::CLIENT_ADMIN_KEY), &stray).unwrap();

    let pki = ServerPki::load_or_create(&fx.tls, &PkiOptions::default(), t0()).unwrap();
    let after = snapshot(&fx.tls);
    assert_eq!(
        after[layout::SERVER_CA_CERT],
        before[layout::SERVER_CA_CERT]
    );
    assert_eq!(
        after[layout::CLIENT_CA_CERT],
        before[layout::CLIENT_CA_CERT]
    );
    assert_signed_by(
        &after[layout::SERVING_APISERVER_CERT],
        &after[layout::SERVER_CA_CERT],
    );
    assert_ne!(after[layout::CLIENT_ADMIN_KEY], stray.as_bytes());
    client_verifier(pki.client_ca_der())
        .verify_client_cert(
            &CertificateDer::from_pem_slice(pki.admin_cert_pem().as_bytes()).unwrap(),
            &[],
            unix(t0()),
        )
        .unwrap();
    // And the admin key on disk is the one that goes with the admin certificate.
    let key = rcgen::KeyPair::from_pem(pki.admin_key_pem()).unwrap();
    with_cert(pki.admin_cert_pem().as_bytes(), |c| {
        use rcgen::PublicKeyData;
        assert_eq!(c.public_key().raw, key.subject_public_key_info().as_slice());
    });
}

#[test]
fn leaves_signed_by_another_ca_are_reissued() {
    let ours = fixture();
    let theirs = fixture();
    ServerPki::load_or_create(&ours.tls, &PkiOptions::default(), t0()).unwrap();
    ServerPki::load_or_create(&theirs.tls, &PkiOptions::default(), t0()).unwrap();
    // A valid, matching certificate and key pair, but from another cluster.
    for name in [
        layout::SERVING_APISERVER_CERT,
        layout::SERVING_APISERVER_KEY,
        layout::CLIENT_ADMIN_CERT,
        layout::CLIENT_ADMIN_KEY,
    ] {
        fs::copy(theirs.tls.join(name), ours.tls.join(name)).unwrap();
    }

    ServerPki::load_or_create(&ours.tls, &PkiOptions::default(), t0()).unwrap();
    let after = snapshot(&ours.tls);
    let foreign = snapshot(&theirs.tls);
    for (cert, ca) in [
        (layout::SERVING_APISERVER_CERT, layout::SERVER_CA_CERT),
        (layout::CLIENT_ADMIN_CERT, layout::CLIENT_CA_CERT),
    ] {
        assert_ne!(after[cert], foreign[cert], "{cert} must be reissued");
        assert_signed_by(&after[cert], &after[ca]);
    }
}

#[test]
fn a_key_file_with_a_wide_mode_is_tightened() {
    let fx = fixture();
    ServerPki::load_or_create(&fx.tls, &PkiOptions::default(), t0()).unwrap();
    for name in [layout::SERVER_CA_KEY, layout::CLIENT_ADMIN_KEY] {
        fs::set_permissions(fx.tls.join(name), fs::Permissions::from_mode(0o644)).unwrap();
    }
    fs::set_permissions(&fx.tls, fs::Permissions::from_mode(0o755)).unwrap();
    ServerPki::load_or_create(&fx.tls, &PkiOptions::default(), t0()).unwrap();
    assert_eq!(mode(&fx.tls.join(layout::SERVER_CA_KEY)), 0o600);
    assert_eq!(mode(&fx.tls.join(layout::CLIENT_ADMIN_KEY)), 0o600);
    assert_eq!(mode(&fx.tls), 0o700);
}

#[test]
fn client_identity_has_the_common_name_and_every_organization() {
    let fx = fixture();
    let pki = ServerPki::load_or_create(&fx.tls, &PkiOptions::default(), t0()).unwrap();

    let admin = CertificateDer::from_pem_slice(pki.admin_cert_pem().as_bytes()).unwrap();
    assert_eq!(
        client_identity(&admin).unwrap(),
        Identity {
            user: "system:admin".into(),
            groups: vec!["system:masters".into()],
        }
    );

    let issued = pki
        .issue_client_cert(
            "jane",
            &["dev", "ops", "system:authenticated"],
            30 * DAY,
            t0() + DAY,
        )
        .unwrap();
    let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap();
    assert_eq!(
        client_identity(&der).unwrap(),
        Identity {
            user: "jane".into(),
            groups: vec!["dev".into(), "ops".into(), "system:authenticated".into()],
        }
    );
    assert_eq!(not_after(issued.cert_pem.as_bytes()), t0() + 31 * DAY);
    assert_signed_by(issued.cert_pem.as_bytes(), pki.client_ca_pem().as_bytes());
    client_verifier(pki.client_ca_der())
        .verify_client_cert(&der, &[], unix(t0() + 2 * DAY))
        .unwrap();
    // The key that came with it is the certificate's.
    let key = rcgen::KeyPair::from_pem(&issued.key_pem).unwrap();
    with_cert(issued.cert_pem.as_bytes(), |c| {
        use rcgen::PublicKeyData;
        assert_eq!(c.public_key().raw, key.subject_public_key_info().as_slice());
    });
    assert!(!format!("{issued:?}").contains("PRIVATE KEY"));

    // A certificate cannot outlive its CA.
    let long = pki
        .issue_client_cert("long", &[], 20 * 365 * DAY, t0())
        .unwrap();
    assert_eq!(not_after(long.cert_pem.as_bytes()), t0() + 3650 * DAY);
    // Nonsense requests are refused.
    assert!(matches!(
        pki.issue_client_cert("", &[], DAY, t0()),
        Err(PkiError::InvalidSubject(_))
    ));
    assert!(matches!(
        pki.issue_client_cert("x", &[""], DAY, t0()),
        Err(PkiError::InvalidSubject(_))
    ));
    assert!(matches!(
        pki.issue_client_cert("x", &[], Duration::ZERO, t0()),
        Err(PkiError::InvalidValidity(_))
    ));
    assert!(matches!(
        pki.issue_client_cert("x", &[], DAY, t0() + 3651 * DAY),
        Err(PkiError::CaExpired { .. })
    ));
}

fn node_csr(common_name: &str, organizations: &[&str]) -> (rcgen::KeyPair, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    for org in organizations {
        dn.push(rcgen::DnType::OrganizationName, *org);
    }
    dn.push(rcgen::DnType::CommonName, common_name);
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    (key, csr)
}

#[test]
fn sign_csr_issues_a_client_certificate_for_the_requested_key() {
    let fx = fixture();
    let pki = ServerPki::load_or_create(&fx.tls, &PkiOptions::default(), t0()).unwrap();
    let (key, csr) = node_csr("system:node:edge-1", &["system:nodes"]);
    let expected = ExpectedSubject {
        common_name: "system:node:edge-1",
        organizations: &["system:nodes"],
    };

    let cert_pem = pki
        .sign_csr_pem(&csr, Some(&expected), 365 * DAY, t0() + DAY)
        .unwrap();
    with_cert(cert_pem.as_bytes(), |c| {
        use rcgen::PublicKeyData;
        assert_eq!(c.public_key().raw, key.subject_public_key_info().as_slice());
        let eku = c.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert!(!c.is_ca());
    });
    assert_signed_by(cert_pem.as_bytes(), pki.client_ca_pem().as_bytes());
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    assert_eq!(
        client_identity(&der).unwrap(),
        Identity {
            user: "system:node:edge-1".into(),
            groups: vec!["system:nodes".into()],
        }
    );
    client_verifier(pki.client_ca_der())
        .verify_client_cert(&der, &[], unix(t0() + 2 * DAY))
        .unwrap();

    // The DER form works too, and signing the same CSR twice gives distinct serials.
    let csr_der = x509_parser::pem::parse_x509_pem(csr.as_bytes())
        .unwrap()
        .1
        .contents;
    let again = pki
        .sign_csr_der(&csr_der, Some(&expected), DAY, t0() + DAY)
        .unwrap();
    let serial = |pem: &str| with_cert(pem.as_bytes(), |c| c.raw_serial().to_vec());
    assert_ne!(serial(&again), serial(&cert_pem));
}

#[test]
fn sign_csr_ignores_requested_extensions() {
    let fx = fixture();
    let pki = ServerPki::load_or_create(&fx.tls, &PkiOptions::default(), t0()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "someone");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();

    let cert_pem = pki.sign_csr_pem(&csr, None, DAY, t0()).unwrap();
    with_cert(cert_pem.as_bytes(), |c| {
        assert!(!c.is_ca());
        assert!(c.subject_alternative_name().unwrap().is_none());
        let eku = c.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
    });
}

#[test]
fn sign_csr_rejects_subjects_the_caller_does_not_allow() {
    let fx = fixture();
    let pki = ServerPki::load_or_create(&fx.tls, &PkiOptions::default(), t0()).unwrap();
    let expected = ExpectedSubject {
        common_name: "system:node:edge-1",
        organizations: &["system:nodes"],
    };
    for (cn, orgs) in [
        ("system:node:edge-2", &["system:nodes"][..]),
        ("system:admin", &["system:nodes"][..]),
        ("system:node:edge-1", &["system:masters"][..]),
        (
            "system:node:edge-1",
            &["system:nodes", "system:masters"][..],
        ),
        ("system:node:edge-1", &[][..]),
    ] {
        let (_, csr) = node_csr(cn, orgs);
        let err = pki
            .sign_csr_pem(&csr, Some(&expected), DAY, t0())
            .unwrap_err();
        assert!(
            matches!(err, PkiError::CsrSubjectNotAllowed(_)),
            "{cn} {orgs:?}: {err:?}"
        );
    }

    // Subject attributes kedge would not carry over are refused, even without a policy.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationalUnitName, "ou");
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    assert!(matches!(
        pki.sign_csr_pem(&csr, None, DAY, t0()),
        Err(PkiError::CsrSubjectNotAllowed(_))
    ));
}

#[test]
fn sign_csr_rejects_a_tampered_or_broken_request() {
    let fx = fixture();
    let pki = ServerPki::load_or_create(&fx.tls, &PkiOptions::default(), t0()).unwrap();
    let (_, csr) = node_csr("system:node:edge-1", &["system:nodes"]);
    let mut der = x509_parser::pem::parse_x509_pem(csr.as_bytes())
        .unwrap()
        .1
        .contents;

    // Change the requested name after signing: edge-1 -> edge-2.
    let at = der
        .windows(6)
        .position(|w| w == b"edge-1")
        .expect("name in the csr");
    der[at + 5] = b'2';
    let expected = ExpectedSubject {
        common_name: "system:node:edge-2",
        organizations: &["system:nodes"],
    };
    let err = pki
        .sign_csr_der(&der, Some(&expected), DAY, t0())
        .unwrap_err();
    assert!(matches!(err, PkiError::InvalidCsr(_)), "{err:?}");
    assert!(err.to_string().contains("signature"), "{err}");

    assert!(matches!(
        pki.sign_csr_der(b"junk", None, DAY, t0()),
        Err(PkiError::InvalidCsr(_))
    ));
    assert!(matches!(
        pki.sign_csr_pem(pki.admin_cert_pem(), None, DAY, t0()),
        Err(PkiError::InvalidCsr(_))
    ));
}

#[test]
fn ca_hash_is_the_sha256_of_the_ca_file() {
    let fx = fixture();
    let pki = ServerPki::load_or_create(&fx.tls, &PkiOptions::default(), t0()).unwrap();
    let output = std::process::Command::new("sha256sum")
        .arg(fx.tls.join(layout::SERVER_CA_CERT))
        .output()
        .expect("sha256sum (coreutils) is needed by this test");
    assert!(output.status.success());
    let expected = String::from_utf8(output.stdout).unwrap();
    let expected = expected.split_whitespace().next().unwrap();
    assert_eq!(ca_hash(pki.server_ca_pem()), expected);
    assert_eq!(ca_hash(pki.server_ca_pem()).len(), 64);
}
