//! JSON merge patch (RFC 7386): the patch looks like the object, objects
//! merge key by key, `null` deletes a key, anything else replaces.
//!
//! The apiserver applies these with `gopkg.in/evanphx/json-patch.v4`'s
//! `MergePatch`, and this module does what that does where it departs from
//! the RFC:
//!
//! - a patch that is not an object or a list (including `null`) is an error,
//!   [`PatchError::BadMergePatch`] (400 `invalid JSON patch`), where
//!   the RFC would make it the new document;
//! - a list patch (at the top or for a member) replaces the value with the
//!   list, after dropping `null` members from the objects inside it, except
//!   when it replaces an object member (then it is kept as sent);
//! - a `null` in the document counts as absent: a patch value for it is
//!   taken with its `null`s dropped, as for a new member.
//!
//! A list patch applied to an object yields a list, which the apiserver
//! then fails to decode (422); that is its business, not this module's.

use serde_json::{Map, Value};

use super::{MAX_DEPTH, PatchError, kind_name};

/// Applies the merge patch `patch` (the decoded request body) to `doc`.
pub fn apply(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    if doc.is_null() {
        return Err(PatchError::BadDocument {
            expected: "a value other than null",
            found: "null",
        });
    }
    match (doc, patch) {
        (Value::Object(doc), Value::Object(patch)) => {
            let mut doc = doc.clone();
            merge_objects(&mut doc, patch, 0)?;
            Ok(Value::Object(doc))
        }
        (_, Value::Object(_) | Value::Array(_)) => pruned(patch, 0),
        (_, other) => Err(PatchError::BadMergePatch {
            found: kind_name(other),
        }),
    }
}

/// Merges `patch` into `doc` member by member.
fn merge_objects(
    doc: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    depth: usize,
) -> Result<(), PatchError> {
    if depth > MAX_DEPTH {
        return Err(PatchError::TooDeep { max: MAX_DEPTH });
    }
    for (key, value) in patch {
        if value.is_null() {
            doc.remove(key);
            continue;
        }
        match doc.get_mut(key) {
            Some(Value::Object(current)) => match value {
                Value::Object(value) => merge_objects(current, value, depth + 1)?,
                // v4 keeps a non-object that replaces an object as sent.
                other => {
                    doc.insert(key.clone(), other.clone());
                }
            },
            Some(current) if !current.is_null() => *current = pruned(value, depth + 1)?,
            _ => {
                doc.insert(key.clone(), pruned(value, depth + 1)?);
            }
        }
    }
    Ok(())
}

/// `value` without `null` members in any object within it (list elements
/// that are `null` stay).
fn pruned(value: &Value, depth: usize) -> Result<Value, PatchError> {
    if depth > MAX_DEPTH {
        return Err(PatchError::TooDeep { max: MAX_DEPTH });
    }
    Ok(match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, value) in map {
                if !value.is_null() {
                    out.insert(key.clone(), pruned(value, depth + 1)?);
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| pruned(item, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// RFC 7386 appendix A, minus the two rows whose patch is not an object
    /// or a list (upstream rejects those, see `scalar_patches_are_rejected`).
    #[test]
    fn rfc_appendix_a() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (doc, patch, want) in cases {
            assert_eq!(apply(&doc, &patch).unwrap(), want, "{doc} + {patch}");
        }
    }

    #[test]
    fn scalar_patches_are_rejected() {
        // RFC 7386 would answer `null` and `"bar"`; upstream answers 400.
        for patch in [json!(null), json!("bar"), json!(1), json!(false)] {
            let e = apply(&json!({"a": "foo"}), &patch).unwrap_err();
            assert!(e.is_bad_request(), "{patch}: {e:?}");
            assert_eq!(e.to_string(), "invalid JSON patch");
        }
    }

    #[test]
    fn null_document_is_rejected() {
        let e = apply(&json!(null), &json!({})).unwrap_err();
        assert_eq!(e.status_code(), 500);
    }

    #[test]
    fn kubernetes_shapes() {
        let pod = json!({
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "fe"}},
            "spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}
        });
        let patch = json!({
            "metadata": {"labels": {"tier": null, "track": "stable"}},
            "spec": {"containers": [{"name": "a", "image": "a:2"}]}
        });
        assert_eq!(
            apply(&pod, &patch).unwrap(),
            json!({
                "metadata": {"name": "web", "labels": {"app": "web", "track": "stable"}},
                "spec": {"containers": [{"name": "a", "image": "a:2"}]}
            })
        );
        // Deleting what is not there changes nothing.
        assert_eq!(apply(&pod, &json!({"status": null})).unwrap(), pod);
    }

    #[test]
    fn nulls_inside_new_values_are_dropped() {
        assert_eq!(
            apply(
                &json!({}),
                &json!({"a": {"b": null, "c": [{"d": null, "e": 1}, null]}})
            )
            .unwrap(),
            json!({"a": {"c": [{"e": 1}, null]}})
        );
        // Replacing a scalar prunes too.
        assert_eq!(
            apply(&json!({"a": 1}), &json!({"a": [{"d": null}]})).unwrap(),
            json!({"a": [{}]})
        );
        // A null in the document counts as absent.
        assert_eq!(
            apply(&json!({"a": null}), &json!({"a": {"b": 1, "c": null}})).unwrap(),
            json!({"a": {"b": 1}})
        );
        // A list replacing an object is kept as sent (v4).
        assert_eq!(
            apply(&json!({"a": {}}), &json!({"a": [{"d": null}]})).unwrap(),
            json!({"a": [{"d": null}]})
        );
        // A top-level list is pruned.
        assert_eq!(
            apply(&json!({}), &json!([{"a": null}])).unwrap(),
            json!([{}])
        );
    }

    #[test]
    fn input_is_not_changed() {
        let doc = json!({"a": {"b": 1}});
        let patch = json!({"a": {"b": null}});
        assert_eq!(apply(&doc, &patch).unwrap(), json!({"a": {}}));
        assert_eq!(doc, json!({"a": {"b": 1}}));
    }

    #[test]
    fn deep_patches_error_instead_of_overflowing() {
        let mut patch = json!(1);
        for _ in 0..(MAX_DEPTH + 10) {
            patch = json!({ "a": patch });
        }
        let e = apply(&json!({}), &patch).unwrap_err();
        assert_eq!(e, PatchError::TooDeep { max: MAX_DEPTH });
        assert!(e.is_bad_request());
        let mut doc_side = json!(1);
        for _ in 0..(MAX_DEPTH + 10) {
            doc_side = json!({ "a": doc_side });
        }
        assert!(apply(&doc_side, &patch).is_err());
    }
}
