//! Malformed bodies: each is an error that says what and where, and no
//! input panics.

use std::path::Path;

use kedge_k8s_protobuf::{DecodeError, Problem, decode};
use serde_json::json;

/// A protobuf key: field number and wire type.
fn key(field: u32, wire: u8) -> Vec<u8> {
    let mut out = Vec::new();
    push_varint(&mut out, u64::from(field << 3 | u32::from(wire)));
    out
}

/// A key followed by raw bytes.
fn field(field: u32, wire: u8, rest: &[u8]) -> Vec<u8> {
    [key(field, wire), rest.to_vec()].concat()
}

/// A length-delimited field.
fn bytes_field(field: u32, value: &[u8]) -> Vec<u8> {
    let mut out = key(field, 2);
    push_varint(&mut out, value.len() as u64);
    out.extend_from_slice(value);
    out
}

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A body with an envelope naming the type, around `raw`.
fn body(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let type_meta = [
        bytes_field(1, api_version.as_bytes()),
        bytes_field(2, kind.as_bytes()),
    ]
    .concat();
    let envelope = [bytes_field(1, &type_meta), bytes_field(2, raw)].concat();
    [b"k8s\x00".as_slice(), &envelope].concat()
}

fn malformed(result: Result<serde_json::Value, DecodeError>) -> (String, Problem) {
    match result {
        Err(DecodeError::Malformed { path, problem }) => (path, problem),
        other => panic!("expected malformed protobuf, got {other:?}"),
    }
}

#[test]
fn not_protobuf() {
    for input in [
        b"".as_slice(),
        b"k8s",
        b"{\"kind\":\"Namespace\"}",
        b"k8s\x01\x0a\x00",
    ] {
        assert!(
            matches!(decode(input), Err(DecodeError::NotProtobuf)),
            "{input:?}"
        );
    }
    assert_eq!(
        decode(b"{}").unwrap_err().to_string(),
        "body is not kubernetes protobuf: it does not start with the k8s magic"
    );
}

#[test]
fn envelope_problems() {
    assert!(matches!(decode(b"k8s\x00"), Err(DecodeError::MissingKind)));
    let no_version = [
        b"k8s\x00".as_slice(),
        &bytes_field(1, &bytes_field(2, b"Pod")),
    ]
    .concat();
    assert!(matches!(decode(&no_version), Err(DecodeError::MissingApiVersion(k)) if k == "Pod"));

    let err = decode(&body("v1", "Gadget", &[])).unwrap_err();
    assert!(
        matches!(&err, DecodeError::UnknownKind { api_version, kind } if api_version == "v1" && kind == "Gadget")
    );
    assert_eq!(err.to_string(), "unknown kind Gadget in v1");
    // A known kind in a group version it does not belong to.
    assert!(matches!(
        decode(&body("apps/v1", "Pod", &[])),
        Err(DecodeError::UnknownKind { .. })
    ));
    assert!(matches!(
        decode(&body("apps/v2", "Deployment", &[])),
        Err(DecodeError::UnknownKind { .. })
    ));

    let mut gzip = body("v1", "Namespace", &[]);
    gzip.extend(bytes_field(3, b"gzip"));
    let err = decode(&gzip).unwrap_err();
    assert!(matches!(&err, DecodeError::UnsupportedContentEncoding(e) if e == "gzip"));
    assert_eq!(err.to_string(), "unsupported content encoding \"gzip\"");

    // An empty content encoding and any content type are fine, as kubectl
    // sends both empty.
    let mut plain = body("v1", "Namespace", &[]);
    plain.extend(bytes_field(3, b""));
    plain.extend(bytes_field(4, b"application/whatever"));
    assert_eq!(decode(&plain).unwrap()["kind"], "Namespace");

    // The envelope itself truncated.
    let (path, problem) = malformed(decode(b"k8s\x00\x0a\x05\x0a"));
    assert_eq!(path, "runtime.Unknown.typeMeta");
    assert!(matches!(
        problem,
        Problem::LengthPastEnd {
            length: 5,
            remaining: 1
        }
    ));
    let (path, problem) = malformed(decode(b"k8s\x00\x12\x80"));
    assert_eq!(path, "runtime.Unknown.raw");
    assert!(matches!(problem, Problem::TruncatedVarint));
}

#[test]
fn truncated_varint() {
    // spec { replicas: <varint cut short> }
    let raw = bytes_field(2, &field(1, 0, &[0x80]));
    let err = decode(&body("apps/v1", "Deployment", &raw)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed protobuf at Deployment.spec.replicas: truncated varint"
    );
    // The whole body cut inside the object.
    let full = body(
        "apps/v1",
        "Deployment",
        &bytes_field(2, &field(1, 0, &[0x96, 0x01])),
    );
    let (path, problem) = malformed(decode(&full[..full.len() - 1]));
    assert_eq!(path, "runtime.Unknown.raw");
    assert!(matches!(problem, Problem::LengthPastEnd { .. }));
}

#[test]
fn varint_overflow() {
    let spec = field(1, 0, &[0xff; 10]);
    let (path, problem) = malformed(decode(&body(
        "apps/v1",
        "Deployment",
        &bytes_field(2, &spec),
    )));
    assert_eq!(path, "Deployment.spec.replicas");
    assert!(matches!(problem, Problem::VarintOverflow));
}

#[test]
fn wrong_wire_types() {
    // replicas as a string
    let raw = bytes_field(2, &bytes_field(1, b"3"));
    let err = decode(&body("apps/v1", "Deployment", &raw)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed protobuf at Deployment.spec.replicas: length-delimited value where varint was expected"
    );
    // metadata as a number
    let (path, problem) = malformed(decode(&body("v1", "Namespace", &field(1, 0, &[1]))));
    assert_eq!(path, "Namespace.metadata");
    assert!(matches!(
        problem,
        Problem::WrongWireType {
            expected: "length-delimited",
            found: "varint"
        }
    ));
    // a string as fixed64 and as fixed32
    let name_fixed64 = field(1, 1, &[0; 8]);
    let (path, _) = malformed(decode(&body(
        "v1",
        "Namespace",
        &bytes_field(1, &name_fixed64),
    )));
    assert_eq!(path, "Namespace.metadata.name");
    let name_fixed32 = field(1, 5, &[0; 4]);
    let (path, _) = malformed(decode(&body(
        "v1",
        "Namespace",
        &bytes_field(1, &name_fixed32),
    )));
    assert_eq!(path, "Namespace.metadata.name");
    // groups and the unused wire types 6 and 7
    for wire in [3, 4, 6, 7] {
        let (path, _) = malformed(decode(&body("v1", "Namespace", &key(1, wire))));
        assert_eq!(path, "Namespace.metadata", "wire type {wire}");
    }
    // field number 0
    let (path, problem) = malformed(decode(&body("v1", "Namespace", &[0x02, 0])));
    assert_eq!(path, "Namespace");
    assert!(matches!(problem, Problem::FieldNumber(0)));
}

#[test]
fn lengths_past_the_end() {
    let (path, problem) = malformed(decode(&body(
        "v1",
        "Namespace",
        &field(1, 2, &[0x7f, 1, 2]),
    )));
    assert_eq!(path, "Namespace.metadata");
    assert!(matches!(
        problem,
        Problem::LengthPastEnd {
            length: 127,
            remaining: 2
        }
    ));
    // An absurd length: 2^64 - 1.
    let mut raw = key(1, 2);
    push_varint(&mut raw, u64::MAX);
    let (_, problem) = malformed(decode(&body("v1", "Namespace", &raw)));
    assert!(matches!(
        problem,
        Problem::LengthPastEnd {
            length: u64::MAX,
            ..
        }
    ));
    // Past the end inside a map entry.
    let labels = bytes_field(11, &field(1, 2, &[9, b'a']));
    let (path, _) = malformed(decode(&body("v1", "Namespace", &bytes_field(1, &labels))));
    assert_eq!(path, "Namespace.metadata.labels.#1");
}

#[test]
fn paths_name_list_indexes_and_map_keys() {
    let container = |port: &[u8]| [bytes_field(1, b"c"), bytes_field(6, port)].concat();
    // The second container's first port has containerPort as a string.
    let bad_port = bytes_field(3, b"80");
    let pod_spec = [
        bytes_field(2, &container(&[])),
        bytes_field(2, &container(&bad_port)),
    ]
    .concat();
    let (path, _) = malformed(decode(&body("v1", "Pod", &bytes_field(2, &pod_spec))));
    assert_eq!(path, "Pod.spec.containers[1].ports[0].containerPort");

    // resources.limits["cpu"] is a Quantity whose string is a number.
    let entry = [bytes_field(1, b"cpu"), bytes_field(2, &field(1, 0, &[1]))].concat();
    let resources = bytes_field(1, &entry);
    let c = [bytes_field(1, b"c"), bytes_field(8, &resources)].concat();
    let (path, _) = malformed(decode(&body(
        "v1",
        "Pod",
        &bytes_field(2, &bytes_field(2, &c)),
    )));
    assert_eq!(path, "Pod.spec.containers[0].resources.limits[\"cpu\"].#1");

    // Inline fields add no step: a volume's configMap is the volume's.
    let volume = [
        bytes_field(1, b"v"),
        bytes_field(2, &bytes_field(19, &field(3, 2, &[0]))),
    ]
    .concat();
    let (path, _) = malformed(decode(&body(
        "v1",
        "Pod",
        &bytes_field(2, &bytes_field(1, &volume)),
    )));
    assert_eq!(path, "Pod.spec.volumes[0].configMap.defaultMode");
}

#[test]
fn special_types_reject_nonsense() {
    // Time out of range.
    let mut time = key(1, 0);
    push_varint(&mut time, i64::MAX as u64);
    let meta = bytes_field(8, &time);
    let (path, problem) = malformed(decode(&body("v1", "Namespace", &bytes_field(1, &meta))));
    assert_eq!(path, "Namespace.metadata.creationTimestamp");
    assert!(matches!(problem, Problem::TimeOutOfRange(_)));
    // Year 10000.
    let mut time = key(1, 0);
    push_varint(&mut time, 253_402_300_800);
    let meta = bytes_field(8, &time);
    assert!(decode(&body("v1", "Namespace", &bytes_field(1, &meta))).is_err());

    // IntOrString of type 7.
    let port = [
        bytes_field(1, b"p"),
        field(3, 0, &[80]),
        bytes_field(4, &field(1, 0, &[7])),
    ]
    .concat();
    let spec = bytes_field(1, &port);
    let (path, problem) = malformed(decode(&body("v1", "Service", &bytes_field(2, &spec))));
    assert_eq!(path, "Service.spec.ports[0].targetPort.type");
    assert!(matches!(problem, Problem::IntOrStringType(7)));

    // RawExtension that is neither JSON nor protobuf.
    let data = bytes_field(1, b"{not json");
    let (path, problem) = malformed(decode(&body(
        "apps/v1",
        "ControllerRevision",
        &bytes_field(2, &data),
    )));
    assert_eq!(path, "ControllerRevision.data");
    assert!(matches!(problem, Problem::Json(_)));

    // Embedded protobuf of an unknown kind.
    let inner = body("v1", "Gadget", &[]);
    let data = bytes_field(1, &inner);
    let (_, problem) = malformed(decode(&body(
        "apps/v1",
        "ControllerRevision",
        &bytes_field(2, &data),
    )));
    assert!(
        matches!(problem, Problem::Embedded(e) if matches!(*e, DecodeError::UnknownKind { .. }))
    );
}

#[test]
fn deep_nesting_is_bounded() {
    // ControllerRevisions embedding ControllerRevisions, 200 deep.
    let mut inner = body("v1", "Namespace", &[]);
    for _ in 0..200 {
        inner = body(
            "apps/v1",
            "ControllerRevision",
            &bytes_field(2, &bytes_field(1, &inner)),
        );
    }
    let mut problem = malformed(decode(&inner)).1;
    let mut depth = 0;
    while let Problem::Embedded(e) = problem {
        depth += 1;
        problem = match *e {
            DecodeError::Malformed { problem, .. } => problem,
            other => panic!("unexpected {other:?}"),
        };
    }
    assert!(matches!(problem, Problem::TooDeep(_)));
    assert!((1..=64).contains(&depth), "{depth}");
    // A few levels are fine.
    let mut ok = body("v1", "Namespace", &[]);
    for _ in 0..3 {
        ok = body(
            "apps/v1",
            "ControllerRevision",
            &bytes_field(2, &bytes_field(1, &ok)),
        );
    }
    assert_eq!(
        decode(&ok).unwrap()["data"]["data"]["data"]["kind"],
        "Namespace"
    );
}

#[test]
fn invalid_utf8_is_replaced_as_go_does() {
    let meta = bytes_field(1, b"a\xffb");
    let decoded = decode(&body("v1", "Namespace", &bytes_field(1, &meta))).unwrap();
    assert_eq!(
        decoded["metadata"],
        json!({"name": "a\u{fffd}b", "creationTimestamp": null})
    );
}

/// A small deterministic generator: xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Every prefix of every captured body, and many random corruptions of
/// them, decode to a value or an error: never a panic.
#[test]
fn no_input_panics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kubectl");
    let mut bodies: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pb"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    bodies.sort();
    assert!(bodies.len() >= 10);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut decoded = 0;
    for body in &bodies {
        for end in 0..body.len() {
            let _ = decode(&body[..end]);
        }
        for _ in 0..2000 {
            let mut corrupt = body.clone();
            for _ in 0..1 + rng.next() % 4 {
                let at = (rng.next() % corrupt.len() as u64) as usize;
                match rng.next() % 4 {
                    0 => corrupt[at] = rng.next() as u8,
                    1 => corrupt[at] ^= 1 << (rng.next() % 8),
                    2 => {
                        corrupt.remove(at);
                    }
                    _ => corrupt.insert(at, rng.next() as u8),
                }
            }
            if decode(&corrupt).is_ok() {
                decoded += 1;
            }
        }
    }
    // Some corruptions still decode (a changed letter in a name); most do not.
    assert!(decoded > 0);
    for _ in 0..5000 {
        let len = (rng.next() % 64) as usize;
        let mut random: Vec<u8> = b"k8s\x00".to_vec();
        random.extend((0..len).map(|_| rng.next() as u8));
        let _ = decode(&random);
    }
}
