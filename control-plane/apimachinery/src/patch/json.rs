//! JSON patch (RFC 6902): a list of `add`, `remove`, `replace`, `move`,
//! `copy` and `test` operations addressed by JSON pointers (RFC 6901).
//!
//! The apiserver applies these with `gopkg.in/evanphx/json-patch.v4`, and
//! this module does what that library does where it departs from the RFC,
//! so that patches that work against a real cluster work here:
//!
//! - negative list indexes count from the end (`/items/-1` is the last
//!   item; for `add`, `-1` appends), and leading zeros and a `+` sign are
//!   accepted (`/items/01`);
//! - `replace` of an object member that does not exist adds it;
//! - a member or element whose value is `null` counts as absent: `test`
//!   with value `null` (or no value) passes for it, pointers cannot go
//!   through it, and `copy` from an absent member copies `null`;
//! - a missing `value` means `null`;
//! - `add` and `remove` of the whole document (path `""`) fail, `replace`
//!   of it needs an object or a list, `test` of it compares the document;
//! - `copy` may add at most 3 MiB (serialised) in one patch, the
//!   apiserver's default `--json-patch-max-copy-bytes`, and a patch may
//!   have at most 10000 operations.
//!
//! One deliberate difference: a path that does not start with `/` fails
//! as missing, where v4 silently ignores its first step (`a/b` means `/b`).
//!
//! Failures name the operation as upstream does, e.g.
//! `add operation does not apply: doc is missing path: "/spec/foo": missing value`.

use serde_json::{Map, Value};

use super::error::{JsonPatchFailure as Failure, TargetProblem};
use super::{PatchError, kind_name};

/// The most operations one patch may have (upstream's
/// `maxJSONPatchOperations`).
pub const MAX_OPERATIONS: usize = 10_000;

/// How many bytes `copy` operations may add to the document, serialised,
/// in one patch: the apiserver's default `--json-patch-max-copy-bytes`.
pub const MAX_COPY_BYTES: usize = 3 * 1024 * 1024;

/// Limits on one patch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// More operations than this answer 413 ([`PatchError::TooManyOperations`]).
    pub max_operations: usize,
    /// Bytes `copy` may add, or `None` for no limit.
    pub max_copy_bytes: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_operations: MAX_OPERATIONS,
            max_copy_bytes: Some(MAX_COPY_BYTES),
        }
    }
}

/// Applies the JSON patch `patch` (the decoded request body) to `doc`, with
/// the apiserver's default [`Limits`].
pub fn apply(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    apply_with_limits(doc, patch, Limits::default())
}

/// Applies the JSON patch `patch` to `doc` within `limits`.
///
/// A body that is not a list of objects is a [`PatchError`] that
/// [`is_bad_request`](PatchError::is_bad_request); a `null` body is an
/// empty patch. An operation that fails is a [`PatchError::JsonPatch`]
/// ([`is_invalid`](PatchError::is_invalid)), and nothing is applied.
pub fn apply_with_limits(doc: &Value, patch: &Value, limits: Limits) -> Result<Value, PatchError> {
    let operations = decode(patch)?;
    if operations.len() > limits.max_operations {
        return Err(PatchError::TooManyOperations {
            max: limits.max_operations,
            got: operations.len(),
        });
    }
    let mut doc = doc.clone();
    let mut copied = 0;
    for (index, operation) in operations.into_iter().enumerate() {
        apply_operation(&mut doc, operation, limits, &mut copied)
            .map_err(|failure| PatchError::JsonPatch { index, failure })?;
    }
    Ok(doc)
}

/// The operations of a patch body; `None` for a `null` element, which
/// upstream decodes to an operation without fields.
fn decode(patch: &Value) -> Result<Vec<Option<&Map<String, Value>>>, PatchError> {
    let items = match patch {
        Value::Array(items) => items,
        Value::Null => return Ok(Vec::new()),
        other => {
            return Err(PatchError::JsonPatchNotList {
                found: kind_name(other),
            });
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| match item {
            Value::Object(operation) => Ok(Some(operation)),
            Value::Null => Ok(None),
            other => Err(PatchError::JsonPatchOperationNotObject {
                index,
                found: kind_name(other),
            }),
        })
        .collect()
}

fn apply_operation(
    doc: &mut Value,
    operation: Option<&Map<String, Value>>,
    limits: Limits,
    copied: &mut usize,
) -> Result<(), Failure> {
    let field = |name: &str| operation.and_then(|o| o.get(name)).and_then(Value::as_str);
    let value = operation
        .and_then(|o| o.get("value"))
        .unwrap_or(&Value::Null);
    let op = field("op").unwrap_or("unknown");
    let op: &'static str = match op {
        "add" => "add",
        "remove" => "remove",
        "replace" => "replace",
        "move" => "move",
        "copy" => "copy",
        "test" => "test",
        other => {
            return Err(Failure::UnknownOperation {
                op: other.to_owned(),
            });
        }
    };
    let path = field("path").ok_or(Failure::MissingField { op, field: "path" });
    match op {
        "add" => {
            let path = path?;
            let (parent, key) = parent_of(doc, path, op)?;
            insert(parent, &key, value.clone()).map_err(|problem| Failure::Target {
                op,
                pointer: path.to_owned(),
                problem,
            })
        }
        "remove" => {
            let path = path?;
            let (parent, key) = parent_of(doc, path, op)?;
            remove(parent, &key)
                .map(drop)
                .map_err(|problem| Failure::Target {
                    op,
                    pointer: path.to_owned(),
                    problem,
                })
        }
        "replace" => {
            let path = path?;
            if path.is_empty() {
                if !(value.is_object() || value.is_array()) {
                    return Err(Failure::ReplaceRootNotContainer);
                }
                *doc = value.clone();
                return Ok(());
            }
            let (parent, key) = parent_of(doc, path, op)?;
            match parent {
                // v4 sets the member whether or not it exists.
                Container::Object(map) => {
                    map.insert(key, value.clone());
                }
                Container::Array(items) => {
                    let index =
                        existing_index(&key, items.len()).map_err(|_| Failure::MissingKey {
                            path: path.to_owned(),
                        })?;
                    items[index] = value.clone();
                }
            }
            Ok(())
        }
        "move" => {
            let from = field("from").ok_or(Failure::MissingField { op, field: "from" })?;
            let (parent, key) = parent_of_from(doc, from, op)?;
            let moved = remove(parent, &key).map_err(|problem| Failure::Target {
                op,
                pointer: key.clone(),
                problem,
            })?;
            let path = path?;
            let (parent, key) = parent_of(doc, path, op)?;
            insert(parent, &key, moved).map_err(|problem| Failure::Target {
                op,
                pointer: path.to_owned(),
                problem,
            })
        }
        "copy" => {
            let from = field("from").ok_or(Failure::MissingField { op, field: "from" })?;
            let (parent, key) = parent_of_from(doc, from, op)?;
            let copy = get(parent, &key)
                .map_err(|problem| Failure::CopyFrom {
                    from: from.to_owned(),
                    problem,
                })?
                .cloned()
                .unwrap_or(Value::Null);
            let path = path?;
            let (parent, key) = parent_of(doc, path, op)?;
            *copied = copied.saturating_add(serialized_len(&copy));
            if let Some(limit) = limits.max_copy_bytes
                && *copied > limit
            {
                return Err(Failure::CopyTooLarge {
                    accumulated: *copied,
                    limit,
                });
            }
            insert(parent, &key, copy).map_err(|problem| Failure::CopyTo { problem })
        }
        _ => {
            // "test"
            let path = path?;
            if path.is_empty() {
                return if *doc == *value {
                    Ok(())
                } else {
                    Err(Failure::TestFailed {
                        path: path.to_owned(),
                    })
                };
            }
            let (parent, key) = parent_of(doc, path, op)?;
            let found = get(parent, &key).map_err(|problem| Failure::Target {
                op,
                pointer: path.to_owned(),
                problem,
            })?;
            let matches = match found {
                None => value.is_null(),
                Some(found) => found == value,
            };
            if matches {
                Ok(())
            } else {
                Err(Failure::TestFailed {
                    path: path.to_owned(),
                })
            }
        }
    }
}

/// The object or list a pointer's last step applies to.
enum Container<'a> {
    Object(&'a mut Map<String, Value>),
    Array(&'a mut Vec<Value>),
}

/// The parent of `path` and its last step, or a "missing path" failure.
fn parent_of<'a>(
    doc: &'a mut Value,
    path: &str,
    op: &'static str,
) -> Result<(Container<'a>, String), Failure> {
    resolve_parent(doc, path).ok_or_else(|| Failure::MissingPath {
        op,
        path: path.to_owned(),
    })
}

/// The parent of `from` and its last step, or a "missing from path" failure.
fn parent_of_from<'a>(
    doc: &'a mut Value,
    from: &str,
    op: &'static str,
) -> Result<(Container<'a>, String), Failure> {
    resolve_parent(doc, from).ok_or_else(|| Failure::MissingFrom {
        op,
        from: from.to_owned(),
    })
}

/// Walks all but the last step of `pointer`. `None` when the pointer is not
/// one (it must be empty or start with `/`; the empty pointer has no
/// parent), or a step is missing, `null`, or goes into a scalar.
fn resolve_parent<'a>(doc: &'a mut Value, pointer: &str) -> Option<(Container<'a>, String)> {
    let rest = pointer.strip_prefix('/')?;
    let mut steps = rest.split('/');
    // `split` yields at least one item, so there is a last step.
    let last = unescape(steps.next_back()?);
    let mut current = doc;
    for step in steps {
        let step = unescape(step);
        let next = match current {
            Value::Object(map) => map.get_mut(&step)?,
            Value::Array(items) => {
                let index = existing_index(&step, items.len()).ok()?;
                &mut items[index]
            }
            _ => return None,
        };
        if next.is_null() {
            return None;
        }
        current = next;
    }
    match current {
        Value::Object(map) => Some((Container::Object(map), last)),
        Value::Array(items) => Some((Container::Array(items), last)),
        _ => None,
    }
}

/// Decodes `~1` to `/` and `~0` to `~`, in one pass, so `~01` is `~1`.
fn unescape(step: &str) -> String {
    let mut out = String::with_capacity(step.len());
    let mut chars = step.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('~', Some('1')) => {
                out.push('/');
                chars.next();
            }
            ('~', Some('0')) => {
                out.push('~');
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

/// A list index as Go's `strconv.Atoi` reads it: optional sign, decimal
/// digits, within 64 bits.
fn parse_index(step: &str) -> Result<i64, TargetProblem> {
    step.parse::<i64>().map_err(|_| TargetProblem::NotAnIndex {
        token: step.to_owned(),
    })
}

/// The position of an existing element; negative indexes count from the end.
fn existing_index(step: &str, len: usize) -> Result<usize, TargetProblem> {
    let index = parse_index(step)?;
    let len = i64::try_from(len).unwrap_or(i64::MAX);
    let position = if index < 0 {
        index.saturating_add(len)
    } else {
        index
    };
    if position < 0 || position >= len {
        return Err(TargetProblem::InvalidIndex { index });
    }
    usize::try_from(position).map_err(|_| TargetProblem::InvalidIndex { index })
}

/// Where `add` inserts: `-` appends, negative indexes count from one past
/// the end (so `-1` appends too).
fn insert_index(step: &str, len: usize) -> Result<usize, TargetProblem> {
    if step == "-" {
        return Ok(len);
    }
    let index = parse_index(step)?;
    let len = i64::try_from(len).unwrap_or(i64::MAX);
    let position = if index < 0 {
        index.saturating_add(len).saturating_add(1)
    } else {
        index
    };
    if position < 0 || position > len {
        return Err(TargetProblem::InvalidIndex { index });
    }
    usize::try_from(position).map_err(|_| TargetProblem::InvalidIndex { index })
}

fn insert(parent: Container<'_>, key: &str, value: Value) -> Result<(), TargetProblem> {
    match parent {
        Container::Object(map) => {
            map.insert(key.to_owned(), value);
        }
        Container::Array(items) => {
            let index = insert_index(key, items.len())?;
            items.insert(index, value);
        }
    }
    Ok(())
}

fn remove(parent: Container<'_>, key: &str) -> Result<Value, TargetProblem> {
    match parent {
        Container::Object(map) => map.remove(key).ok_or_else(|| TargetProblem::NoSuchKey {
            key: key.to_owned(),
        }),
        Container::Array(items) => {
            let index = existing_index(key, items.len())?;
            Ok(items.remove(index))
        }
    }
}

/// The value at the last step; `None` when it is absent or `null`.
fn get<'a>(parent: Container<'a>, key: &str) -> Result<Option<&'a Value>, TargetProblem> {
    let found = match parent {
        Container::Object(map) => map.get(key),
        Container::Array(items) => {
            let index = existing_index(key, items.len())?;
            Some(&items[index])
        }
    };
    Ok(found.filter(|v| !v.is_null()))
}

/// How many bytes `value` takes as compact JSON (0 for `null`, which
/// upstream does not count).
fn serialized_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    if value.is_null() {
        return 0;
    }
    let mut count = Count(0);
    // Writing a `Value` to a writer that never fails cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(doc: Value, patch: Value) -> Value {
        match apply(&doc, &patch) {
            Ok(v) => v,
            Err(e) => panic!("patch {patch} on {doc} failed: {e}"),
        }
    }

    fn err(doc: Value, patch: Value) -> PatchError {
        match apply(&doc, &patch) {
            Ok(v) => panic!("patch {patch} on {doc} gave {v}, want an error"),
            Err(e) => e,
        }
    }

    /// The failure of an operation, checking it answers 422.
    fn failure(doc: Value, patch: Value) -> (usize, Failure) {
        match err(doc, patch) {
            e @ PatchError::JsonPatch { .. } => {
                assert!(e.is_invalid());
                let PatchError::JsonPatch { index, failure } = e else {
                    unreachable!()
                };
                (index, failure)
            }
            e => panic!("want a JSON patch failure, got {e:?}"),
        }
    }

    fn message(doc: Value, patch: Value) -> String {
        err(doc, patch).to_string()
    }

    // RFC 6902 appendix A.

    #[test]
    fn rfc_a1_add_object_member() {
        assert_eq!(
            ok(
                json!({"foo": "bar"}),
                json!([{"op": "add", "path": "/baz", "value": "qux"}])
            ),
            json!({"baz": "qux", "foo": "bar"})
        );
    }

    #[test]
    fn rfc_a2_add_array_element() {
        assert_eq!(
            ok(
                json!({"foo": ["bar", "baz"]}),
                json!([{"op": "add", "path": "/foo/1", "value": "qux"}])
            ),
            json!({"foo": ["bar", "qux", "baz"]})
        );
    }

    #[test]
    fn rfc_a3_remove_object_member() {
        assert_eq!(
            ok(
                json!({"baz": "qux", "foo": "bar"}),
                json!([{"op": "remove", "path": "/baz"}])
            ),
            json!({"foo": "bar"})
        );
    }

    #[test]
    fn rfc_a4_remove_array_element() {
        assert_eq!(
            ok(
                json!({"foo": ["bar", "qux", "baz"]}),
                json!([{"op": "remove", "path": "/foo/1"}])
            ),
            json!({"foo": ["bar", "baz"]})
        );
    }

    #[test]
    fn rfc_a5_replace_value() {
        assert_eq!(
            ok(
                json!({"baz": "qux", "foo": "bar"}),
                json!([{"op": "replace", "path": "/baz", "value": "boo"}])
            ),
            json!({"baz": "boo", "foo": "bar"})
        );
    }

    #[test]
    fn rfc_a6_move_value() {
        assert_eq!(
            ok(
                json!({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}}),
                json!([{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}])
            ),
            json!({"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}})
        );
    }

    #[test]
    fn rfc_a7_move_array_element() {
        assert_eq!(
            ok(
                json!({"foo": ["all", "grass", "cows", "eat"]}),
                json!([{"op": "move", "from": "/foo/1", "path": "/foo/3"}])
            ),
            json!({"foo": ["all", "cows", "eat", "grass"]})
        );
    }

    #[test]
    fn rfc_a8_test_success() {
        let doc = json!({"baz": "qux", "foo": ["a", 2, "c"]});
        assert_eq!(
            ok(
                doc.clone(),
                json!([
                    {"op": "test", "path": "/baz", "value": "qux"},
                    {"op": "test", "path": "/foo/1", "value": 2}
                ])
            ),
            doc
        );
    }

    #[test]
    fn rfc_a9_test_error() {
        assert_eq!(
            failure(
                json!({"baz": "qux"}),
                json!([{"op": "test", "path": "/baz", "value": "bar"}])
            ),
            (
                0,
                Failure::TestFailed {
                    path: "/baz".to_owned()
                }
            )
        );
    }

    #[test]
    fn rfc_a10_add_nested_member_object() {
        assert_eq!(
            ok(
                json!({"foo": "bar"}),
                json!([{"op": "add", "path": "/child", "value": {"grandchild": {}}}])
            ),
            json!({"foo": "bar", "child": {"grandchild": {}}})
        );
    }

    #[test]
    fn rfc_a11_ignore_unrecognized_elements() {
        assert_eq!(
            ok(
                json!({"foo": "bar"}),
                json!([{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}])
            ),
            json!({"foo": "bar", "baz": "qux"})
        );
    }

    #[test]
    fn rfc_a12_add_to_nonexistent_target() {
        assert_eq!(
            message(
                json!({"foo": "bar"}),
                json!([{"op": "add", "path": "/baz/bat", "value": "qux"}])
            ),
            "add operation does not apply: doc is missing path: \"/baz/bat\": missing value"
        );
    }

    #[test]
    fn rfc_a14_escape_ordering() {
        let doc = json!({"/": 9, "~1": 10});
        assert_eq!(
            ok(
                doc.clone(),
                json!([{"op": "test", "path": "/~01", "value": 10}])
            ),
            doc
        );
    }

    #[test]
    fn rfc_a15_comparing_strings_and_numbers() {
        let (_, f) = failure(
            json!({"/": 9, "~1": 10}),
            json!([{"op": "test", "path": "/~01", "value": "10"}]),
        );
        assert_eq!(
            f,
            Failure::TestFailed {
                path: "/~01".to_owned()
            }
        );
    }

    #[test]
    fn rfc_a16_add_array_value() {
        assert_eq!(
            ok(
                json!({"foo": ["bar"]}),
                json!([{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}])
            ),
            json!({"foo": ["bar", ["abc", "def"]]})
        );
    }

    // What json-patch v4 does beyond the RFC.

    #[test]
    fn escapes_in_paths() {
        assert_eq!(
            ok(
                json!({"metadata": {"labels": {}}}),
                json!([{"op": "add", "path": "/metadata/labels/app.kubernetes.io~1name", "value": "web"}])
            ),
            json!({"metadata": {"labels": {"app.kubernetes.io/name": "web"}}})
        );
        assert_eq!(
            ok(
                json!({"a~b": 1}),
                json!([{"op": "replace", "path": "/a~0b", "value": 2}])
            ),
            json!({"a~b": 2})
        );
        // `~` not followed by 0 or 1 is kept.
        assert_eq!(
            ok(
                json!({}),
                json!([{"op": "add", "path": "/a~2", "value": 1}])
            ),
            json!({"a~2": 1})
        );
    }

    #[test]
    fn negative_indexes_count_from_the_end() {
        let doc = json!({"l": ["a", "b", "c"]});
        assert_eq!(
            ok(doc.clone(), json!([{"op": "remove", "path": "/l/-1"}])),
            json!({"l": ["a", "b"]})
        );
        assert_eq!(
            ok(
                doc.clone(),
                json!([{"op": "replace", "path": "/l/-3", "value": "x"}])
            ),
            json!({"l": ["x", "b", "c"]})
        );
        assert_eq!(
            ok(
                doc.clone(),
                json!([{"op": "add", "path": "/l/-1", "value": "d"}])
            ),
            json!({"l": ["a", "b", "c", "d"]})
        );
        assert_eq!(
            ok(
                doc.clone(),
                json!([{"op": "add", "path": "/l/-4", "value": "z"}])
            ),
            json!({"l": ["z", "a", "b", "c"]})
        );
        assert_eq!(
            ok(
                doc.clone(),
                json!([{"op": "test", "path": "/l/-1", "value": "c"}])
            ),
            doc
        );
        assert_eq!(
            ok(
                json!({"l": [{"n": 1}]}),
                json!([{"op": "add", "path": "/l/-1/m", "value": 2}])
            ),
            json!({"l": [{"n": 1, "m": 2}]})
        );
        assert_eq!(
            failure(doc.clone(), json!([{"op": "remove", "path": "/l/-4"}])).1,
            Failure::Target {
                op: "remove",
                pointer: "/l/-4".to_owned(),
                problem: TargetProblem::InvalidIndex { index: -4 }
            }
        );
        assert!(matches!(
            failure(doc, json!([{"op": "add", "path": "/l/-5", "value": 0}])).1,
            Failure::Target {
                problem: TargetProblem::InvalidIndex { index: -5 },
                ..
            }
        ));
    }

    #[test]
    fn leading_zeros_and_plus_are_indexes() {
        let doc = json!({"l": ["a", "b"]});
        assert_eq!(
            ok(doc.clone(), json!([{"op": "remove", "path": "/l/01"}])),
            json!({"l": ["a"]})
        );
        assert_eq!(
            ok(doc, json!([{"op": "remove", "path": "/l/+0"}])),
            json!({"l": ["b"]})
        );
    }

    #[test]
    fn replace_of_a_missing_member_adds_it() {
        assert_eq!(
            ok(
                json!({"spec": {}}),
                json!([{"op": "replace", "path": "/spec/replicas", "value": 3}])
            ),
            json!({"spec": {"replicas": 3}})
        );
    }

    #[test]
    fn null_counts_as_absent() {
        let doc = json!({"a": null, "l": [null]});
        for path in ["/a", "/missing", "/l/0"] {
            assert_eq!(
                ok(
                    doc.clone(),
                    json!([{"op": "test", "path": path, "value": null}])
                ),
                doc
            );
            assert_eq!(ok(doc.clone(), json!([{"op": "test", "path": path}])), doc);
        }
        assert_eq!(
            failure(
                doc.clone(),
                json!([{"op": "test", "path": "/a", "value": 1}])
            )
            .1,
            Failure::TestFailed {
                path: "/a".to_owned()
            }
        );
        assert_eq!(
            failure(
                json!({"a": 1}),
                json!([{"op": "test", "path": "/a", "value": null}])
            )
            .1,
            Failure::TestFailed {
                path: "/a".to_owned()
            }
        );
        // A pointer cannot go through null.
        assert_eq!(
            message(
                doc.clone(),
                json!([{"op": "add", "path": "/a/b", "value": 1}])
            ),
            "add operation does not apply: doc is missing path: \"/a/b\": missing value"
        );
        // But a null member exists for remove.
        assert_eq!(
            ok(doc, json!([{"op": "remove", "path": "/a"}])),
            json!({"l": [null]})
        );
        // Copying an absent member copies null.
        assert_eq!(
            ok(
                json!({}),
                json!([{"op": "copy", "from": "/nothing", "path": "/b"}])
            ),
            json!({"b": null})
        );
    }

    #[test]
    fn missing_value_is_null() {
        assert_eq!(
            ok(json!({}), json!([{"op": "add", "path": "/a"}])),
            json!({"a": null})
        );
    }

    #[test]
    fn whole_document() {
        let doc = json!({"a": 1});
        assert_eq!(
            ok(
                doc.clone(),
                json!([{"op": "replace", "path": "", "value": {"b": 2}}])
            ),
            json!({"b": 2})
        );
        assert_eq!(
            failure(
                doc.clone(),
                json!([{"op": "replace", "path": "", "value": 3}])
            )
            .1,
            Failure::ReplaceRootNotContainer
        );
        assert_eq!(
            ok(
                doc.clone(),
                json!([{"op": "test", "path": "", "value": {"a": 1}}])
            ),
            doc
        );
        assert_eq!(
            message(
                doc.clone(),
                json!([{"op": "test", "path": "", "value": {"a": 2}}])
            ),
            "testing value  failed: test failed"
        );
        assert_eq!(
            message(doc.clone(), json!([{"op": "add", "path": "", "value": {}}])),
            "add operation does not apply: doc is missing path: \"\": missing value"
        );
        assert_eq!(
            message(doc, json!([{"op": "remove", "path": ""}])),
            "remove operation does not apply: doc is missing path: \"\": missing value"
        );
        // A list document works too.
        assert_eq!(
            ok(json!([1]), json!([{"op": "add", "path": "/0", "value": 0}])),
            json!([0, 1])
        );
    }

    #[test]
    fn move_and_copy() {
        assert_eq!(
            ok(
                json!({"a": {"b": [1, 2]}}),
                json!([{"op": "copy", "from": "/a/b", "path": "/c"}])
            ),
            json!({"a": {"b": [1, 2]}, "c": [1, 2]})
        );
        assert_eq!(
            ok(
                json!({"a": 1}),
                json!([{"op": "move", "from": "/a", "path": "/a"}])
            ),
            json!({"a": 1})
        );
        // Into itself: the source is gone before the destination is looked up.
        assert_eq!(
            message(
                json!({"a": {"b": 1}}),
                json!([{"op": "move", "from": "/a", "path": "/a/c"}])
            ),
            "move operation does not apply: doc is missing destination path: /a/c: missing value"
        );
        assert_eq!(
            message(
                json!({"a": 1}),
                json!([{"op": "move", "from": "/x", "path": "/b"}])
            ),
            "error in move for path: 'x': unable to remove nonexistent key: x: missing value"
        );
        assert_eq!(
            message(
                json!({"a": 1}),
                json!([{"op": "move", "from": "/x/y", "path": "/b"}])
            ),
            "move operation does not apply: doc is missing from path: /x/y: missing value"
        );
        assert_eq!(
            message(
                json!({"l": []}),
                json!([{"op": "copy", "from": "/l/0", "path": "/b"}])
            ),
            "error in copy for from: '/l/0': unable to access invalid index: 0: invalid index referenced"
        );
        assert_eq!(
            message(
                json!({"a": 1, "l": []}),
                json!([{"op": "copy", "from": "/a", "path": "/l/3"}])
            ),
            "error while adding value during copy: unable to access invalid index: 3: invalid index referenced"
        );
        assert_eq!(
            message(
                json!({"a": 1}),
                json!([{"op": "copy", "from": "/a", "path": "/x/y"}])
            ),
            "copy operation does not apply: doc is missing destination path: /x/y: missing value"
        );
    }

    #[test]
    fn copy_is_limited() {
        // Each copy doubles the document: 20 of them would be 2^20 times
        // the first string.
        let chunk = vec![json!("0123456789"); 100];
        let mut ops = vec![json!({"op": "add", "path": "/a", "value": chunk})];
        for _ in 0..20 {
            ops.push(json!({"op": "copy", "from": "/a", "path": "/a/-"}));
        }
        let e = err(json!({}), Value::Array(ops.clone()));
        assert!(e.is_invalid(), "{e:?}");
        assert!(matches!(
            e,
            PatchError::JsonPatch {
                failure: Failure::CopyTooLarge {
                    limit: MAX_COPY_BYTES,
                    ..
                },
                ..
            }
        ));
        assert!(
            e.to_string().starts_with(
                "unable to complete the copy, the accumulated size increase of copy is"
            )
        );
        let small = Limits {
            max_copy_bytes: Some(5),
            ..Limits::default()
        };
        let patch = json!([{"op": "copy", "from": "/a", "path": "/b"}]);
        assert_eq!(
            apply_with_limits(&json!({"a": "abc"}), &patch, small).unwrap(),
            json!({"a": "abc", "b": "abc"})
        );
        assert!(apply_with_limits(&json!({"a": "abcd"}), &patch, small).is_err());
        let unlimited = Limits {
            max_copy_bytes: None,
            ..Limits::default()
        };
        assert!(apply_with_limits(&json!({"a": "abcd"}), &patch, unlimited).is_ok());
    }

    #[test]
    fn too_many_operations() {
        let op = json!({"op": "test", "path": "/a", "value": 1});
        let doc = json!({"a": 1});
        let patch = Value::Array(vec![op.clone(); MAX_OPERATIONS]);
        assert_eq!(apply(&doc, &patch).unwrap(), doc);
        let patch = Value::Array(vec![op; MAX_OPERATIONS + 1]);
        let e = err(doc, patch);
        assert_eq!(
            e,
            PatchError::TooManyOperations {
                max: MAX_OPERATIONS,
                got: MAX_OPERATIONS + 1
            }
        );
        assert_eq!(e.status_code(), 413);
    }

    #[test]
    fn malformed_bodies_are_bad_requests() {
        for patch in [
            json!({"op": "add", "path": "/a", "value": 1}),
            json!("add /a"),
            json!(1),
            json!(true),
            json!([{"op": "add", "path": "/a", "value": 1}, "remove /a"]),
            json!([[]]),
            json!([1]),
        ] {
            let e = err(json!({}), patch.clone());
            assert!(e.is_bad_request(), "{patch}: {e:?}");
            assert_eq!(e.status_code(), 400);
        }
        assert_eq!(
            err(json!({}), json!("x")).to_string(),
            "json patch must be a list of operations, got string"
        );
        assert_eq!(
            err(json!({}), json!([{}, 2])),
            PatchError::JsonPatchOperationNotObject {
                index: 1,
                found: "number"
            }
        );
        // A null body and an empty list change nothing.
        assert_eq!(ok(json!({"a": 1}), json!(null)), json!({"a": 1}));
        assert_eq!(ok(json!({"a": 1}), json!([])), json!({"a": 1}));
    }

    #[test]
    fn bad_operations_are_invalid() {
        let doc = json!({"a": {"b": 1}, "l": [1, 2]});
        let cases: &[(Value, &str)] = &[
            (json!([null]), "unexpected kind: unknown"),
            (json!([{}]), "unexpected kind: unknown"),
            (json!([{"op": 1, "path": "/a"}]), "unexpected kind: unknown"),
            (json!([{"op": "get", "path": "/a"}]), "unexpected kind: get"),
            (json!([{"op": "ADD", "path": "/a"}]), "unexpected kind: ADD"),
            (
                json!([{"op": "add", "value": 1}]),
                "add operation failed to decode path: missing value",
            ),
            (
                json!([{"op": "remove", "path": 5}]),
                "remove operation failed to decode path: missing value",
            ),
            (
                json!([{"op": "replace", "path": null}]),
                "replace operation failed to decode path: missing value",
            ),
            (
                json!([{"op": "move", "path": "/x"}]),
                "move operation failed to decode from: missing value",
            ),
            (
                json!([{"op": "copy", "from": "/a"}]),
                "copy operation failed to decode path: missing value",
            ),
            (
                json!([{"op": "test", "value": 1}]),
                "test operation failed to decode path: missing value",
            ),
            (
                json!([{"op": "add", "path": "a", "value": 1}]),
                "add operation does not apply: doc is missing path: \"a\": missing value",
            ),
            (
                json!([{"op": "remove", "path": "/spec/foo"}]),
                "remove operation does not apply: doc is missing path: \"/spec/foo\": missing value",
            ),
            (
                json!([{"op": "remove", "path": "/x"}]),
                "error in remove for path: '/x': unable to remove nonexistent key: x: missing value",
            ),
            (
                json!([{"op": "replace", "path": "/x/y", "value": 1}]),
                "replace operation does not apply: doc is missing path: /x/y: missing value",
            ),
            (
                json!([{"op": "replace", "path": "/l/2", "value": 1}]),
                "replace operation does not apply: doc is missing key: /l/2: missing value",
            ),
            (
                json!([{"op": "replace", "path": "/l/-", "value": 1}]),
                "replace operation does not apply: doc is missing key: /l/-: missing value",
            ),
            (
                json!([{"op": "test", "path": "/x/y", "value": 1}]),
                "test operation does not apply: is missing path: /x/y: missing value",
            ),
            (
                json!([{"op": "test", "path": "/l/9", "value": 1}]),
                "error in test for path: '/l/9': unable to access invalid index: 9: invalid index referenced",
            ),
            (
                json!([{"op": "add", "path": "/l/3", "value": 1}]),
                "error in add for path: '/l/3': unable to access invalid index: 3: invalid index referenced",
            ),
            (
                json!([{"op": "add", "path": "/l/x", "value": 1}]),
                "error in add for path: '/l/x': value was not a proper array index: 'x'",
            ),
            (
                json!([{"op": "remove", "path": "/l/-"}]),
                "error in remove for path: '/l/-': value was not a proper array index: '-'",
            ),
            (
                json!([{"op": "remove", "path": "/l/99999999999999999999"}]),
                "error in remove for path: '/l/99999999999999999999': value was not a proper array index: '99999999999999999999'",
            ),
            (
                json!([{"op": "remove", "path": "/l/-9223372036854775808"}]),
                "error in remove for path: '/l/-9223372036854775808': unable to access invalid index: -9223372036854775808: invalid index referenced",
            ),
            (
                json!([{"op": "add", "path": "/l/9223372036854775807", "value": 1}]),
                "error in add for path: '/l/9223372036854775807': unable to access invalid index: 9223372036854775807: invalid index referenced",
            ),
            (
                json!([{"op": "add", "path": "/l/", "value": 1}]),
                "error in add for path: '/l/': value was not a proper array index: ''",
            ),
            (
                json!([{"op": "add", "path": "/a/b/c", "value": 1}]),
                "add operation does not apply: doc is missing path: \"/a/b/c\": missing value",
            ),
            (
                json!([{"op": "add", "path": "/l/5/c", "value": 1}]),
                "add operation does not apply: doc is missing path: \"/l/5/c\": missing value",
            ),
            (
                json!([{"op": "add", "path": "/l/x/c", "value": 1}]),
                "add operation does not apply: doc is missing path: \"/l/x/c\": missing value",
            ),
        ];
        for (patch, want) in cases {
            let e = err(doc.clone(), patch.clone());
            assert!(e.is_invalid(), "{patch}: {e:?}");
            assert_eq!(e.to_string(), *want, "{patch}");
            assert_eq!(
                e.status_message(),
                "the server rejected our request due to an error in our request"
            );
        }
    }

    #[test]
    fn failures_leave_the_document_alone() {
        let doc = json!({"a": 1});
        let patch = json!([
            {"op": "add", "path": "/b", "value": 2},
            {"op": "remove", "path": "/a"},
            {"op": "test", "path": "/b", "value": 3}
        ]);
        let (index, _) = failure(doc.clone(), patch);
        assert_eq!(index, 2);
        assert_eq!(doc, json!({"a": 1}));
    }

    #[test]
    fn long_pointers_do_not_recurse() {
        let path = "/a".repeat(100_000);
        assert!(
            err(
                json!({"a": {}}),
                json!([{"op": "add", "path": path, "value": 1}])
            )
            .is_invalid()
        );
        // A deep document, walked to the bottom.
        let mut deep = json!(1);
        for _ in 0..100 {
            deep = json!({"a": deep});
        }
        let path = format!("{}/b", "/a".repeat(100));
        let e = err(
            deep.clone(),
            json!([{"op": "add", "path": path, "value": 2}]),
        );
        assert!(e.is_invalid());
        let path = format!("{}/b", "/a".repeat(99));
        assert!(apply(&deep, &json!([{"op": "add", "path": path, "value": 2}])).is_ok());
    }
}
