//! Strategic merge patch: JSON merge patch that knows, from the object's
//! [`PatchSchema`], which lists to merge instead of replace.
//!
//! This is what `kubectl apply`, `kubectl edit` and `kubectl patch` (by
//! default) send for built-in types. Semantics follow upstream's
//! `k8s.io/apimachinery/pkg/util/strategicpatch` as the apiserver runs it
//! (`StrategicMergeMapPatch`: parallel lists merged, unmatched nulls
//! dropped):
//!
//! - Objects merge key by key; `null` deletes a key. Where the schema does
//!   not know a field, lists are replaced and objects merged, as in JSON
//!   merge patch.
//! - A list whose strategy has `merge` and a merge key (containers by
//!   `name`, ports by `containerPort`, which may be a number) merges its
//!   elements by key, recursively; a list of primitives with `merge` becomes
//!   the union. Other lists are replaced by the patch's.
//! - Order of a merged list: elements named in the patch come in the
//!   patch's order, the others keep theirs and are interleaved where the old
//!   list had them. `$setElementOrder/<field>: [...]` (sent by `kubectl
//!   apply`) gives the order instead, and must agree with the patch list's
//!   own order.
//! - `$patch: replace` in an object replaces it with the rest of the patch
//!   object; `$patch: delete` empties it (or leaves it out when it is new).
//!   As a list element, `{$patch: delete, <key>: v}` removes the elements
//!   with that key and `{$patch: replace}` replaces the list with the
//!   patch's other elements. `$patch: merge` is an error (upstream never
//!   implemented it).
//! - `$retainKeys: [...]` clears the object's fields it does not name (the
//!   patch may only set named ones). Upstream honours it whatever the
//!   schema says, and so does this.
//! - `$deleteFromPrimitiveList/<field>: [...]` removes those values from a
//!   list of primitives, whatever its strategy.
//! - Directive keys never reach the result: new values are taken without
//!   their `null`s and directives (an object with `$patch` is left out).
//!
//! Errors, and the status upstream answers them with, are in
//! [`PatchError`].
//!
//! Upstream merges lists in place, and where the order it produces depends
//! on that (a `$setElementOrder` list whose patch both deletes and adds
//! elements), this reproduces it; see `MergedList::old_order`. This was
//! checked against every patch application in upstream's test table; the
//! tests below keep the ones that matter for kubectl, on Pod shapes.
//!
//! Where upstream's behaviour is an accident, this does the sensible thing
//! instead:
//!
//! - a key and its `$deleteFromPrimitiveList/<key>` are applied in that
//!   order, so deletion wins (upstream: Go map order, i.e. random);
//! - the content of a `$patch: replace`, new list elements and new fields
//!   are taken without `null`s and directives (upstream keeps some of them
//!   and its typed decoding drops them), except that a new list element
//!   keeps its merge key even when that is `null`;
//! - sorting by an order list that lacks an element keeps that element
//!   after the ones it has (upstream's comparator is inconsistent there; it
//!   only happens for patches kubectl does not send);
//! - `$setElementOrder` for a list that is empty on both sides, or `null` in
//!   the object, is not an error;
//! - no patch panics or overflows the stack: lists holding `null` and
//!   [`MAX_DEPTH`]-deep values are errors, and merge keys that are objects
//!   or lists are compared like any other value.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::{MAX_DEPTH, PatchError, kind_name};
use crate::schema::{PatchSchema, PatchStrategy, Unknown};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";

/// Applies the strategic merge patch `patch` (the decoded request body) to
/// `doc`, an object whose shape `schema` describes.
///
/// A `null` patch changes nothing (upstream decodes it to an empty map);
/// any other non-object patch is a bad request.
pub fn apply(doc: &Value, patch: &Value, schema: &dyn PatchSchema) -> Result<Value, PatchError> {
    let patch = match patch {
        Value::Object(patch) => patch,
        Value::Null => return Ok(doc.clone()),
        other => {
            return Err(PatchError::StrategicPatchNotObject {
                found: kind_name(other),
            });
        }
    };
    let Value::Object(doc) = doc else {
        return Err(PatchError::BadDocument {
            expected: "an object",
            found: kind_name(doc),
        });
    };
    merge_map(doc.clone(), patch, schema, 0).map(Value::Object)
}

/// Merges `patch` into the object `original`.
fn merge_map(
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
    schema: &dyn PatchSchema,
    depth: usize,
) -> Result<Map<String, Value>, PatchError> {
    check_depth(depth)?;
    if let Some(directive) = patch.get(DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => fresh_members(patch, depth),
            Some("delete") => Ok(Map::new()),
            _ => Err(PatchError::UnknownDirective {
                directive: directive.clone(),
                map: Value::Object(patch.clone()),
            }),
        };
    }

    retain_keys(&mut original, patch)?;

    let mut ordered: HashSet<&str> = HashSet::new();
    for (key, order) in patch {
        if key.starts_with(SET_ELEMENT_ORDER)
            && let Some(field) = set_element_order(&mut original, patch, key, order, schema, depth)?
        {
            ordered.insert(field);
        }
    }

    // Plain keys first, then deletions from primitive lists, so that a
    // value both added and deleted ends up deleted.
    for deletions in [false, true] {
        for (key, value) in patch {
            if key == RETAIN_KEYS
                || key.starts_with(SET_ELEMENT_ORDER)
                || ordered.contains(key.as_str())
            {
                continue;
            }
            let is_deletion = key.starts_with(DELETE_FROM_PRIMITIVE_LIST);
            if is_deletion != deletions {
                continue;
            }
            let field = if is_deletion {
                field_of(key, DELETE_FROM_PRIMITIVE_LIST)
                    .ok_or_else(|| PatchError::BadDeleteFromPrimitiveList { key: key.clone() })?
            } else {
                key.as_str()
            };
            merge_field(&mut original, field, value, is_deletion, schema, depth)?;
        }
    }
    Ok(original)
}

/// Merges the patch's `value` for `field` into `original`. `is_deletion`:
/// `value` came from `$deleteFromPrimitiveList/<field>`.
fn merge_field(
    original: &mut Map<String, Value>,
    field: &str,
    value: &Value,
    is_deletion: bool,
    schema: &dyn PatchSchema,
    depth: usize,
) -> Result<(), PatchError> {
    if value.is_null() {
        original.remove(field);
        return Ok(());
    }
    let Some(current) = original.get_mut(field) else {
        if !is_deletion && let Some(value) = fresh(value, depth + 1)? {
            original.insert(field.to_owned(), value);
        }
        return Ok(());
    };
    match (current, value) {
        (Value::Object(current), Value::Object(patch)) => {
            let (_, schema) = lookup(schema, field);
            let merged = merge_map(std::mem::take(current), patch, &*schema, depth + 1)?;
            *current = merged;
        }
        (Value::Array(current), Value::Array(patch)) => {
            let (strategy, schema) = lookup(schema, field);
            let merged = merge_list(
                std::mem::take(current),
                patch,
                field,
                &strategy,
                &*schema,
                is_deletion,
                depth + 1,
            )?
            .items;
            *current = merged;
        }
        (current, value) if GoType::of(current) == GoType::of(value) => {
            // Two primitives of one type: the patch's wins (even from a
            // deletion list, as upstream has it).
            *current = value.clone();
        }
        (current, value) => {
            if is_deletion {
                return Ok(());
            }
            match fresh(value, depth + 1)? {
                Some(value) => *current = value,
                None => {
                    original.remove(field);
                }
            }
        }
    }
    Ok(())
}

/// A merged list, and what upstream's caller sees of the old list after
/// the merge.
struct MergedList {
    items: Vec<Value>,
    /// Upstream merges in place: removing an element shifts the old list's
    /// backing array left, and appending a new element writes into the
    /// slots that frees. The `$setElementOrder` code then orders by that
    /// array, not by the list as it was, and its results (enshrined in
    /// upstream's tests) depend on it. This is that array, as objects that
    /// hold only the merge key; `None` when it is the old list unchanged.
    old_order: Option<Vec<Value>>,
}

impl MergedList {
    fn unchanged_order(items: Vec<Value>) -> Self {
        MergedList {
            items,
            old_order: None,
        }
    }
}

/// Merges the patch list into the list `original` of field `field`, as its
/// strategy says.
fn merge_list(
    original: Vec<Value>,
    patch: &[Value],
    field: &str,
    strategy: &PatchStrategy,
    schema: &dyn PatchSchema,
    is_deletion: bool,
    depth: usize,
) -> Result<MergedList, PatchError> {
    if !(strategy.merge || is_deletion) {
        return Ok(MergedList::unchanged_order(patch.to_vec()));
    }
    let elements = schema.elements();
    let elements: &dyn PatchSchema = match &elements {
        Some(elements) => &**elements,
        None => &Unknown,
    };
    merge_slice(
        original,
        patch,
        field,
        strategy.merge_key.as_deref(),
        elements,
        is_deletion,
        depth,
    )
}

/// Merges two lists with merge strategy (upstream's `mergeSlice`).
fn merge_slice(
    mut original: Vec<Value>,
    patch: &[Value],
    field: &str,
    merge_key: Option<&str>,
    elements: &dyn PatchSchema,
    is_deletion: bool,
    depth: usize,
) -> Result<MergedList, PatchError> {
    check_depth(depth)?;
    if original.is_empty() && patch.is_empty() {
        return Ok(MergedList::unchanged_order(original));
    }
    let Some(kind) = element_type(field, &[&original, patch])? else {
        return Ok(MergedList::unchanged_order(original));
    };

    if kind != GoType::Object {
        let in_patch: HashSet<String> = patch.iter().map(ident).collect();
        if is_deletion {
            original.retain(|v| !in_patch.contains(&ident(v)));
            return Ok(MergedList::unchanged_order(original));
        }
        let mut seen = HashSet::new();
        let (patch_items, server_only): (Vec<Value>, Vec<Value>) = original
            .iter()
            .chain(patch)
            .filter(|v| seen.insert(ident(v)))
            .cloned()
            .partition(|v| in_patch.contains(&ident(v)));
        let items =
            normalize_element_order(patch_items, server_only, patch, &original, None, kind)?;
        return Ok(MergedList::unchanged_order(items));
    }

    let Some(key) = merge_key else {
        return Err(PatchError::NoMergeKey {
            field: field.to_owned(),
        });
    };

    // `$patch` elements: deletions by key, and replace.
    let mut replace = false;
    let mut deletions: Vec<&Value> = Vec::new();
    let mut plain: Vec<&Map<String, Value>> = Vec::new();
    for element in patch {
        // `element_type` found only objects.
        let Value::Object(element) = element else {
            return Err(PatchError::MixedElementTypes {
                field: field.to_owned(),
            });
        };
        let Some(directive) = element.get(DIRECTIVE) else {
            plain.push(element);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let value = element
                    .get(key)
                    .ok_or_else(|| PatchError::MissingMergeKey {
                        map: Value::Object(element.clone()),
                        key: key.to_owned(),
                    })?;
                deletions.push(value);
            }
            Some("replace") => replace = true,
            Some("merge") => {
                return Err(PatchError::MergeDirectiveInList {
                    field: field.to_owned(),
                });
            }
            _ => {
                return Err(PatchError::UnknownDirective {
                    directive: directive.clone(),
                    map: Value::Object(element.clone()),
                });
            }
        }
    }
    let mut old_order = BackingArray::new(&original, key);
    if !deletions.is_empty() {
        let deleted: HashSet<String> = deletions.iter().map(|v| ident(v)).collect();
        original.retain(|e| e.get(key).is_none_or(|v| !deleted.contains(&ident(v))));
        old_order.delete(&deletions, &original);
    }
    if replace {
        old_order.detach();
        original = plain
            .iter()
            .map(|element| fresh_members(element, depth + 1).map(Value::Object))
            .collect::<Result<_, _>>()?;
        plain.clear();
    }

    // Merge the rest in by key; unknown keys are appended.
    let server_order = original.clone();
    let mut merged = original;
    let mut position: HashMap<String, usize> = HashMap::new();
    for (i, element) in merged.iter().enumerate() {
        if let Some(value) = element.get(key) {
            position.entry(ident(value)).or_insert(i);
        }
    }
    let mut patch_keys = Vec::with_capacity(plain.len());
    for element in &plain {
        let value = element
            .get(key)
            .ok_or_else(|| PatchError::MissingMergeKey {
                map: Value::Object((*element).clone()),
                key: key.to_owned(),
            })?;
        let id = ident(value);
        match position.get(&id) {
            Some(&i) => {
                if let Value::Object(current) = &mut merged[i] {
                    *current = merge_map(std::mem::take(current), element, elements, depth + 1)?;
                }
            }
            None => {
                position.insert(id.clone(), merged.len());
                let mut added = fresh_members(element, depth + 1)?;
                // Keep even a null key, as upstream does: validation then
                // says the name is required, instead of this failing.
                added.insert(key.to_owned(), value.clone());
                merged.push(Value::Object(added));
                old_order.append(value);
            }
        }
        patch_keys.push(id);
    }

    let in_patch: HashSet<String> = patch_keys.into_iter().collect();
    let mut patch_items = Vec::new();
    let mut server_only = Vec::new();
    for element in merged {
        let value = element
            .get(key)
            .ok_or_else(|| PatchError::MissingMergeKey {
                map: element.clone(),
                key: key.to_owned(),
            })?;
        if in_patch.contains(&ident(value)) {
            patch_items.push(element);
        } else {
            server_only.push(element);
        }
    }
    let patch_order: Vec<Value> = plain
        .into_iter()
        .map(|e| Value::Object(e.clone()))
        .collect();
    let items = normalize_element_order(
        patch_items,
        server_only,
        &patch_order,
        &server_order,
        Some(key),
        kind,
    )?;
    Ok(MergedList {
        items,
        old_order: Some(old_order.into_order()),
    })
}

/// Go's view of a keyed list's backing array while upstream merges into it
/// (see [`MergedList::old_order`]). Slots hold `{key: value}`.
struct BackingArray<'k> {
    key: &'k str,
    slots: Vec<Value>,
    /// The length of the Go slice that is being merged into.
    len: usize,
    /// Writes still land in `slots`; false once the slice no longer shares
    /// it (after `$patch: replace`, or once an append outgrows it).
    attached: bool,
}

impl<'k> BackingArray<'k> {
    fn new(list: &[Value], key: &'k str) -> Self {
        let slots: Vec<Value> = list.iter().map(|e| key_only(e.get(key), key)).collect();
        BackingArray {
            key,
            len: slots.len(),
            slots,
            attached: true,
        }
    }

    /// Upstream's `deleteMatchingEntries` for each of `values`, in order;
    /// `remaining` is the list they leave. Exact while that costs at most
    /// [`Self::EXACT_WORK`] slot moves; beyond, only the slots after the
    /// remaining elements (which hold leftovers no kubectl patch looks up)
    /// are not Go's.
    fn delete(&mut self, values: &[&Value], remaining: &[Value]) {
        if self.slots.len().saturating_mul(values.len()) > Self::EXACT_WORK {
            for (slot, element) in self.slots.iter_mut().zip(remaining) {
                *slot = key_only(element.get(self.key), self.key);
            }
            self.len = remaining.len();
            return;
        }
        for value in values {
            self.delete_all(value);
        }
    }

    const EXACT_WORK: usize = 1 << 22;

    /// One `deleteMatchingEntries`: each removal shifts the rest left by
    /// one, leaving the last slot as it was.
    fn delete_all(&mut self, value: &Value) {
        while let Some(i) = self.slots[..self.len]
            .iter()
            .position(|slot| slot.get(self.key) == Some(value))
        {
            let last = self.len - 1;
            if i < last {
                self.slots[i..=last].rotate_left(1);
                // Go's copy leaves the last slot holding the old last
                // element; the rotation put the removed one there.
                self.slots[last] = self.slots[last - 1].clone();
            }
            self.len = last;
        }
    }

    /// `append` of a new element: lands in the array while it has room.
    fn append(&mut self, value: &Value) {
        if self.attached && self.len < self.slots.len() {
            self.slots[self.len] = key_only(Some(value), self.key);
            self.len += 1;
        } else {
            self.attached = false;
        }
    }

    fn detach(&mut self) {
        self.attached = false;
    }

    fn into_order(self) -> Vec<Value> {
        self.slots
    }
}

/// `{key: value}`, or `{}` without a value.
fn key_only(value: Option<&Value>, key: &str) -> Value {
    let mut map = Map::new();
    if let Some(value) = value {
        map.insert(key.to_owned(), value.clone());
    }
    Value::Object(map)
}

/// Handles `$setElementOrder/<field>` (upstream's `mergePatchIntoOriginal`):
/// merges the field's patch list, if any, and orders the result. Returns
/// the field when it is done with it.
fn set_element_order<'p>(
    original: &mut Map<String, Value>,
    patch: &'p Map<String, Value>,
    key: &'p str,
    order: &Value,
    schema: &dyn PatchSchema,
    depth: usize,
) -> Result<Option<&'p str>, PatchError> {
    let Value::Array(order) = order else {
        return Err(PatchError::WrongType {
            field: key.to_owned(),
            expected: "list",
            found: kind_name(order),
        });
    };
    let field = field_of(key, SET_ELEMENT_ORDER).ok_or_else(|| PatchError::BadSetElementOrder {
        key: key.to_owned(),
    })?;
    let original_list = match original.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) => Some(list),
        Some(other) => {
            return Err(PatchError::WrongType {
                field: field.to_owned(),
                expected: "list",
                found: kind_name(other),
            });
        }
    };
    let patch_list = match patch.get(field) {
        None => None,
        Some(Value::Array(list)) => Some(list),
        Some(other) => {
            return Err(PatchError::WrongType {
                field: field.to_owned(),
                expected: "list",
                found: kind_name(other),
            });
        }
    };
    let (strategy, list_schema) = lookup(schema, field);
    let merge_key = strategy.merge_key.as_deref();
    validate_order(patch_list.map_or(&[], |l| l), order, merge_key)?;

    let merged = match (original_list, patch_list) {
        (None, None) => return Ok(None),
        (Some(original), None) => MergedList::unchanged_order(original.clone()),
        (None, Some(patch)) => MergedList::unchanged_order(fresh_list(patch, depth + 1)?),
        (Some(original), Some(patch)) => merge_list(
            original.clone(),
            patch,
            field,
            &strategy,
            &*list_schema,
            false,
            depth + 1,
        )?,
    };
    let MergedList {
        items: merged,
        old_order,
    } = merged;
    let original_list: &[Value] = original_list.map_or(&[], |l| l);
    let kind = element_type(field, &[original_list, patch_list.map_or(&[], |l| l)])?;
    let old_order: &[Value] = old_order.as_deref().unwrap_or(original_list);
    let Some(kind) = kind else {
        original.insert(field.to_owned(), Value::Array(merged));
        return Ok(Some(field));
    };

    let mut patch_items = Vec::new();
    let mut server_only = Vec::new();
    match merge_key {
        None => {
            let listed: HashSet<String> = order.iter().map(ident).collect();
            for element in merged {
                if listed.contains(&ident(&element)) {
                    patch_items.push(element);
                } else {
                    server_only.push(element);
                }
            }
        }
        Some(key) => {
            let mut listed = HashSet::new();
            for entry in order {
                let Value::Object(entry) = entry else {
                    return Err(PatchError::WrongType {
                        field: key.to_owned(),
                        expected: "object",
                        found: kind_name(entry),
                    });
                };
                if let Some(value) = entry.get(key) {
                    listed.insert(ident(value));
                }
            }
            for element in merged {
                let value = match &element {
                    Value::Object(map) => {
                        map.get(key).ok_or_else(|| PatchError::MissingMergeKey {
                            map: element.clone(),
                            key: key.to_owned(),
                        })?
                    }
                    other => {
                        return Err(PatchError::WrongType {
                            field: field.to_owned(),
                            expected: "object",
                            found: kind_name(other),
                        });
                    }
                };
                if listed.contains(&ident(value)) {
                    patch_items.push(element);
                } else {
                    server_only.push(element);
                }
            }
        }
    }
    let both =
        normalize_element_order(patch_items, server_only, order, old_order, merge_key, kind)?;
    original.insert(field.to_owned(), Value::Array(both));
    Ok(Some(field))
}

/// Checks that the patch list's elements come in the order the
/// `$setElementOrder` list gives them, and that it names them all
/// (upstream's `validatePatchWithSetOrderList`).
fn validate_order(patch: &[Value], order: &[Value], key: Option<&str>) -> Result<(), PatchError> {
    if order.is_empty() || patch.is_empty() {
        return Ok(());
    }
    let mut listed: Vec<&Value> = Vec::with_capacity(patch.len());
    for element in patch {
        if key.is_some() {
            let Value::Object(map) = element else {
                return Err(PatchError::WrongType {
                    field: SET_ELEMENT_ORDER.to_owned(),
                    expected: "object",
                    found: kind_name(element),
                });
            };
            if map.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                continue;
            }
        }
        listed.push(element);
    }
    let (mut p, mut o) = (0, 0);
    while p < listed.len() && o < order.len() {
        if listed[p].get(DIRECTIVE).is_some() {
            p += 1;
            continue;
        }
        if same_key(listed[p], &order[o], key)? {
            p += 1;
        }
        o += 1;
    }
    if p < listed.len() && o >= order.len() {
        return Err(PatchError::OrderMismatch {
            patch: Value::Array(patch.to_vec()),
            order: Value::Array(order.to_vec()),
        });
    }
    Ok(())
}

/// Whether two elements have the same merge key value (or are equal, for
/// primitives).
fn same_key(left: &Value, right: &Value, key: Option<&str>) -> Result<bool, PatchError> {
    let Some(key) = key else {
        return Ok(left == right);
    };
    let value_of = |element: &Value| -> Result<Value, PatchError> {
        let Value::Object(map) = element else {
            return Err(PatchError::WrongType {
                field: SET_ELEMENT_ORDER.to_owned(),
                expected: "object",
                found: kind_name(element),
            });
        };
        map.get(key)
            .cloned()
            .ok_or_else(|| PatchError::MissingMergeKey {
                map: element.clone(),
                key: key.to_owned(),
            })
    };
    Ok(value_of(left)? == value_of(right)?)
}

/// Sorts `patch_items` by `patch_order` and `server_only` by
/// `server_order`, then interleaves them (upstream's
/// `normalizeElementOrder`).
fn normalize_element_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
    kind: GoType,
) -> Result<Vec<Value>, PatchError> {
    // Elements are identified by their merge key only when they are objects.
    let key = if kind == GoType::Object {
        Some(key.unwrap_or(""))
    } else {
        None
    };
    let patch_items = sort_by_order(patch_items, patch_order, key)?;
    let server_only = sort_by_order(server_only, server_order, key)?;
    Ok(interleave(server_only, patch_items, server_order, key))
}

/// Stable-sorts `items` by where their identity first appears in `order`;
/// `$patch: delete` elements go last.
fn sort_by_order(
    items: Vec<Value>,
    order: &[Value],
    key: Option<&str>,
) -> Result<Vec<Value>, PatchError> {
    let mut deletions = Vec::new();
    let mut items = match key {
        None => items,
        Some(key) => {
            for element in items.iter().chain(order) {
                let Value::Object(map) = element else {
                    return Err(PatchError::WrongType {
                        field: key.to_owned(),
                        expected: "object",
                        found: kind_name(element),
                    });
                };
                if !map.contains_key(key) {
                    return Err(PatchError::MissingMergeKey {
                        map: element.clone(),
                        key: key.to_owned(),
                    });
                }
            }
            let (delete, keep): (Vec<Value>, Vec<Value>) = items
                .into_iter()
                .partition(|e| e.get(DIRECTIVE).and_then(Value::as_str) == Some("delete"));
            deletions = delete;
            keep
        }
    };
    let positions = first_positions(order, key);
    items.sort_by_key(|item| {
        positions
            .get(&order_ident(item, key))
            .copied()
            .unwrap_or(usize::MAX)
    });
    items.extend(deletions);
    Ok(items)
}

/// Merges two sorted lists, keeping each one's order: a server-only element
/// goes first when the old list had it before the next patch element
/// (upstream's `mergeSortedSlice`).
fn interleave(
    server_only: Vec<Value>,
    patch_items: Vec<Value>,
    server_order: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    let positions = first_positions(server_order, key);
    let position = |v: &Value| positions.get(&order_ident(v, key)).copied();
    let mut out = Vec::with_capacity(server_only.len() + patch_items.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = patch_items.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (Some(l), Some(r)) => matches!(
                (position(l), position(r)),
                (Some(pl), Some(pr)) if pl < pr
            ),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

/// Where each identity first appears in `order`.
fn first_positions(order: &[Value], key: Option<&str>) -> HashMap<String, usize> {
    let mut positions = HashMap::with_capacity(order.len());
    for (i, element) in order.iter().enumerate() {
        positions.entry(order_ident(element, key)).or_insert(i);
    }
    positions
}

/// An element's identity for ordering: its merge key value, or itself for
/// primitives. A missing key is the empty string, which no JSON text is,
/// so it only matches other missing keys (as Go's `nil == nil`).
fn order_ident(element: &Value, key: Option<&str>) -> String {
    match key {
        Some(key) => element.get(key).map(ident).unwrap_or_default(),
        None => ident(element),
    }
}

/// A value as a hashable string: its compact JSON. Equal for equal values
/// (merge keys and primitives; numbers keep their integer or float form,
/// as Go's `int64` and `float64` do).
fn ident(value: &Value) -> String {
    value.to_string()
}

/// A type as Go's `reflect.TypeOf` tells apart the decoded JSON: integers
/// and floats differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GoType {
    Null,
    Bool,
    Int,
    Float,
    String,
    Array,
    Object,
}

impl GoType {
    fn of(value: &Value) -> GoType {
        match value {
            Value::Null => GoType::Null,
            Value::Bool(_) => GoType::Bool,
            Value::Number(n) if n.is_f64() => GoType::Float,
            Value::Number(_) => GoType::Int,
            Value::String(_) => GoType::String,
            Value::Array(_) => GoType::Array,
            Value::Object(_) => GoType::Object,
        }
    }
}

/// The one type of all elements of `lists`, `None` when they are empty
/// (upstream's `sliceElementType`).
fn element_type(field: &str, lists: &[&[Value]]) -> Result<Option<GoType>, PatchError> {
    let mut seen: Option<GoType> = None;
    for element in lists.iter().flat_map(|list| list.iter()) {
        let this = GoType::of(element);
        match seen {
            None if this == GoType::Array => {
                return Err(PatchError::ListOfLists {
                    field: field.to_owned(),
                });
            }
            None if this != GoType::Null => seen = Some(this),
            Some(seen) if seen == this => {}
            _ => {
                return Err(PatchError::MixedElementTypes {
                    field: field.to_owned(),
                });
            }
        }
    }
    Ok(seen)
}

/// Clears the fields `$retainKeys` does not name, after checking that the
/// patch sets only named ones.
fn retain_keys(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
) -> Result<(), PatchError> {
    let Some(retain) = patch.get(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(PatchError::BadRetainKeys { field: None });
    };
    let retained: HashSet<&str> = retain.iter().filter_map(Value::as_str).collect();
    for (key, value) in patch {
        if key == RETAIN_KEYS
            || value.is_null()
            || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || key.starts_with(SET_ELEMENT_ORDER)
        {
            continue;
        }
        if !retained.contains(key.as_str()) {
            return Err(PatchError::BadRetainKeys {
                field: Some(key.clone()),
            });
        }
    }
    original.retain(|key, _| retained.contains(key.as_str()));
    Ok(())
}

/// The field a `<prefix>/<field>` directive key names.
fn field_of<'k>(key: &'k str, prefix: &str) -> Option<&'k str> {
    let (head, field) = key.split_once('/')?;
    (head == prefix).then_some(field)
}

/// The schema of field `field`, and its strategy: from the schema's field,
/// else its map values, else unknown.
fn lookup<'s>(
    schema: &'s dyn PatchSchema,
    field: &str,
) -> (PatchStrategy, Box<dyn PatchSchema + 's>) {
    if let Some(found) = schema.field(field) {
        return found;
    }
    match schema.elements() {
        Some(values) => (PatchStrategy::default(), values),
        None => (PatchStrategy::default(), Box::new(Unknown)),
    }
}

/// A patch value taken as it is, for a field the object does not have:
/// without `null` members and directives. `None` when the value is itself
/// a `$patch` object, which then leaves the field out.
fn fresh(value: &Value, depth: usize) -> Result<Option<Value>, PatchError> {
    check_depth(depth)?;
    Ok(match value {
        Value::Object(map) if map.contains_key(DIRECTIVE) => None,
        Value::Object(map) => Some(Value::Object(fresh_members(map, depth)?)),
        Value::Array(items) => Some(Value::Array(fresh_list(items, depth)?)),
        other => Some(other.clone()),
    })
}

/// The members of a patch object, taken as new (see [`fresh`]).
fn fresh_members(map: &Map<String, Value>, depth: usize) -> Result<Map<String, Value>, PatchError> {
    check_depth(depth)?;
    let mut out = Map::new();
    for (key, value) in map {
        if value.is_null() || is_directive(key) {
            continue;
        }
        if let Some(value) = fresh(value, depth + 1)? {
            out.insert(key.clone(), value);
        }
    }
    Ok(out)
}

/// A patch list taken as new (see [`fresh`]); `$patch` elements go.
fn fresh_list(items: &[Value], depth: usize) -> Result<Vec<Value>, PatchError> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        if let Some(item) = fresh(item, depth + 1)? {
            out.push(item);
        }
    }
    Ok(out)
}

fn is_directive(key: &str) -> bool {
    key == DIRECTIVE
        || key == RETAIN_KEYS
        || key.starts_with(SET_ELEMENT_ORDER)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
}

fn check_depth(depth: usize) -> Result<(), PatchError> {
    if depth > MAX_DEPTH {
        return Err(PatchError::TooDeep { max: MAX_DEPTH });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Cases from upstream's strategicpatch test table, restated on Pod
    //! shapes: `containers` is upstream's `mergingList`, `finalizers` its
    //! `mergingIntList`, `args` and `tolerations` its non-merging lists.
    //! Upstream's three-way cases are applied as the server sees them:
    //! patch to the live object.

    use super::*;
    use crate::schema::Unknown;
    use serde_json::json;

    /// A schema from a table of dotted paths (`spec.containers`), with `[]`
    /// stepping into list elements (`spec.containers[].ports`). A path is
    /// known if it or something below it is in the table.
    struct Table(Vec<(&'static str, PatchStrategy)>);

    struct At<'t> {
        table: &'t Table,
        path: String,
    }

    impl Table {
        fn rule(&self, path: &str) -> Option<PatchStrategy> {
            self.0
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, s)| s.clone())
        }

        fn has_below(&self, path: &str) -> bool {
            self.0.iter().any(|(p, _)| {
                p.strip_prefix(path)
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with("[]"))
            })
        }

        fn root(&self) -> At<'_> {
            At {
                table: self,
                path: String::new(),
            }
        }
    }

    impl PatchSchema for At<'_> {
        fn field(&self, name: &str) -> Option<(PatchStrategy, Box<dyn PatchSchema + '_>)> {
            let path = if self.path.is_empty() {
                name.to_owned()
            } else {
                format!("{}.{name}", self.path)
            };
            let rule = self.table.rule(&path);
            if rule.is_none() && !self.table.has_below(&path) {
                return None;
            }
            let at = At {
                table: self.table,
                path,
            };
            Some((rule.unwrap_or_default(), Box::new(at)))
        }

        fn elements(&self) -> Option<Box<dyn PatchSchema + '_>> {
            let path = format!("{}[]", self.path);
            self.table.has_below(&path).then(|| {
                Box::new(At {
                    table: self.table,
                    path,
                }) as Box<dyn PatchSchema + '_>
            })
        }
    }

    fn merge_by(key: &str) -> PatchStrategy {
        PatchStrategy {
            merge: true,
            retain_keys: false,
            merge_key: Some(key.to_owned()),
        }
    }

    fn merge() -> PatchStrategy {
        PatchStrategy {
            merge: true,
            ..PatchStrategy::default()
        }
    }

    fn retain() -> PatchStrategy {
        PatchStrategy {
            retain_keys: true,
            ..PatchStrategy::default()
        }
    }

    fn pod() -> Table {
        Table(vec![
            ("metadata.finalizers", merge()),
            ("spec.containers", merge_by("name")),
            ("spec.containers[].ports", merge_by("containerPort")),
            ("spec.containers[].env", merge_by("name")),
            ("spec.containers[].args", PatchStrategy::default()),
            (
                "spec.volumes",
                PatchStrategy {
                    retain_keys: true,
                    ..merge_by("name")
                },
            ),
            ("spec.tolerations", PatchStrategy::default()),
            ("spec.strategy", retain()),
            // A merged list of objects that forgot its key.
            ("spec.keyless", merge()),
        ])
    }

    fn smp(doc: Value, patch: Value) -> Value {
        let table = pod();
        match apply(&doc, &patch, &table.root()) {
            Ok(v) => v,
            Err(e) => panic!("patch {patch} on {doc} failed: {e}"),
        }
    }

    fn smp_err(doc: Value, patch: Value) -> PatchError {
        let table = pod();
        match apply(&doc, &patch, &table.root()) {
            Ok(v) => panic!("patch {patch} on {doc} gave {v}, want an error"),
            Err(e) => e,
        }
    }

    fn containers(list: Value) -> Value {
        json!({"spec": {"containers": list}})
    }

    fn finalizers(list: Value) -> Value {
        json!({"metadata": {"finalizers": list}})
    }

    #[test]
    fn maps_merge_and_null_deletes() {
        assert_eq!(
            smp(
                json!({
                    "metadata": {"name": "web", "labels": {"app": "web", "tier": "fe"}, "annotations": {"a": "1"}},
                    "spec": {"nodeName": "n1", "restartPolicy": "Always"}
                }),
                json!({
                    "metadata": {"labels": {"tier": null, "track": "stable"}, "annotations": null},
                    "spec": {"nodeName": null, "hostname": "h", "dnsConfig": {"options": null, "nameservers": ["1.1.1.1"]}},
                    "status": null
                })
            ),
            json!({
                "metadata": {"name": "web", "labels": {"app": "web", "track": "stable"}},
                "spec": {"restartPolicy": "Always", "hostname": "h", "dnsConfig": {"nameservers": ["1.1.1.1"]}}
            })
        );
    }

    #[test]
    fn a_null_patch_changes_nothing() {
        let doc = json!({"a": 1});
        assert_eq!(smp(doc.clone(), json!(null)), doc);
        assert_eq!(smp(doc.clone(), json!({})), doc);
    }

    #[test]
    fn patch_elements_come_first_in_patch_order() {
        // Upstream "preserve the order from the patch in a merging list 2".
        assert_eq!(
            smp(
                containers(json!([
                    {"name": "a"},
                    {"name": "b", "image": "b:1"},
                    {"name": "c"}
                ])),
                containers(json!([
                    {"name": "c", "image": "c:2"},
                    {"name": "a", "image": "a:2"}
                ]))
            ),
            containers(json!([
                {"name": "b", "image": "b:1"},
                {"name": "c", "image": "c:2"},
                {"name": "a", "image": "a:2"}
            ]))
        );
        // The kubectl documentation's patch-demo: a container patched in
        // by `kubectl patch` lands before the existing one.
        assert_eq!(
            smp(
                containers(json!([{"name": "patch-demo-ctr", "image": "nginx"}])),
                containers(json!([{"name": "patch-demo-ctr-2", "image": "redis"}]))
            ),
            containers(json!([
                {"name": "patch-demo-ctr-2", "image": "redis"},
                {"name": "patch-demo-ctr", "image": "nginx"}
            ]))
        );
    }

    #[test]
    fn keyed_merge_with_element_order() {
        // Upstream "merge lists of maps", as kubectl apply sends it.
        assert_eq!(
            smp(
                containers(json!([
                    {"name": "a", "tty": true},
                    {"name": "b", "image": "b:1", "stdin": true}
                ])),
                json!({"spec": {
                    "$setElementOrder/containers": [{"name": "d"}, {"name": "a"}, {"name": "b"}, {"name": "c"}],
                    "containers": [{"name": "d", "image": "d:1"}, {"name": "c", "image": "c:1"}]
                }})
            ),
            containers(json!([
                {"name": "d", "image": "d:1"},
                {"name": "a", "tty": true},
                {"name": "b", "image": "b:1", "stdin": true},
                {"name": "c", "image": "c:1"}
            ]))
        );
        // Upstream "add field to map in merging list".
        assert_eq!(
            smp(
                containers(json!([{"name": "a", "tty": true}, {"name": "b", "image": "b:1"}])),
                json!({"spec": {
                    "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                    "containers": [{"name": "a", "image": "a:1"}]
                }})
            ),
            containers(json!([
                {"name": "a", "tty": true, "image": "a:1"},
                {"name": "b", "image": "b:1"}
            ]))
        );
    }

    #[test]
    fn element_order_keeps_server_only_elements_in_place() {
        // Upstream "set elements order in a list with server-only items 2":
        // `istio-proxy` was added by someone else.
        assert_eq!(
            smp(
                containers(json!([
                    {"name": "a", "tty": true},
                    {"name": "b"},
                    {"name": "istio-proxy"},
                    {"name": "c"},
                    {"name": "d"}
                ])),
                json!({"spec": {"$setElementOrder/containers": [
                    {"name": "b"}, {"name": "a"}, {"name": "d"}, {"name": "c"}
                ]}})
            ),
            containers(json!([
                {"name": "b"},
                {"name": "a", "tty": true},
                {"name": "istio-proxy"},
                {"name": "d"},
                {"name": "c"}
            ]))
        );
        // Upstream custom case: the order may name elements no list has.
        assert_eq!(
            smp(
                containers(json!([{"name": "a"}, {"name": "c"}])),
                json!({"spec": {
                    "$setElementOrder/containers": [{"name": "c"}, {"name": "b"}, {"name": "a"}],
                    "containers": [{"name": "c", "image": "c"}, {"name": "a", "image": "a"}]
                }})
            ),
            containers(json!([{"name": "c", "image": "c"}, {"name": "a", "image": "a"}]))
        );
        // Upstream "nested patch merge with empty list".
        assert_eq!(
            smp(
                containers(json!([{"name": "hello2"}])),
                json!({"spec": {
                    "$setElementOrder/containers": [{"name": "hello"}, {"name": "doesntexist"}],
                    "containers": [{"name": "hello"}]
                }})
            ),
            containers(json!([{"name": "hello"}, {"name": "hello2"}]))
        );
    }

    #[test]
    fn delete_directive_in_keyed_lists() {
        // Upstream "delete map from merging list".
        assert_eq!(
            smp(
                containers(json!([{"name": "a"}, {"name": "b", "tty": true}])),
                json!({"spec": {
                    "$setElementOrder/containers": [{"name": "b"}],
                    "containers": [{"name": "a", "$patch": "delete"}]
                }})
            ),
            containers(json!([{"name": "b", "tty": true}]))
        );
        // Upstream "delete missing map from merging list": not an error.
        assert_eq!(
            smp(
                containers(json!([{"name": "b"}])),
                containers(json!([{"name": "a", "$patch": "delete"}]))
            ),
            containers(json!([{"name": "b"}]))
        );
        // Upstream "delete all duplicate entries in a merging list".
        assert_eq!(
            smp(
                containers(json!([
                    {"name": "a"}, {"name": "a"}, {"name": "b", "image": "x"}, {"name": "c"}, {"name": "c"}
                ])),
                containers(json!([
                    {"name": "a", "$patch": "delete"},
                    {"name": "c", "$patch": "delete"}
                ]))
            ),
            containers(json!([{"name": "b", "image": "x"}]))
        );
        // By a numeric key.
        assert_eq!(
            smp(
                containers(
                    json!([{"name": "a", "ports": [{"containerPort": 80}, {"containerPort": 443}]}])
                ),
                containers(
                    json!([{"name": "a", "ports": [{"containerPort": 443, "$patch": "delete"}]}])
                )
            ),
            containers(json!([{"name": "a", "ports": [{"containerPort": 80}]}]))
        );
    }

    #[test]
    fn add_and_delete_around_a_server_only_element() {
        // Upstream "add map and delete map from merging list": kubectl
        // apply replaces `a` with `c` while an injected sidecar sits after
        // `b`. The sidecar stays before `c`, as upstream's in-place merge
        // leaves it (see `MergedList::old_order`).
        assert_eq!(
            smp(
                containers(json!([
                    {"name": "a"},
                    {"name": "b", "image": "b"},
                    {"name": "sidecar", "image": "s"}
                ])),
                json!({"spec": {
                    "$setElementOrder/containers": [{"name": "b"}, {"name": "c"}],
                    "containers": [{"name": "c"}, {"name": "a", "$patch": "delete"}]
                }})
            ),
            containers(json!([
                {"name": "b", "image": "b"},
                {"name": "sidecar", "image": "s"},
                {"name": "c"}
            ]))
        );
        // Upstream "... with conflict": the sidecar is all that is left of
        // the old list, and goes first.
        assert_eq!(
            smp(
                containers(json!([{"name": "a", "tty": true}, {"name": "sidecar", "image": "s"}])),
                json!({"spec": {
                    "$setElementOrder/containers": [{"name": "b"}, {"name": "c"}],
                    "containers": [{"name": "b"}, {"name": "c"}, {"name": "a", "$patch": "delete"}]
                }})
            ),
            containers(json!([{"name": "sidecar", "image": "s"}, {"name": "b"}, {"name": "c"}]))
        );
        // Upstream "add and delete an item in a list and preserve order".
        assert_eq!(
            smp(
                containers(json!([
                    {"name": "a", "tty": true},
                    {"name": "b", "image": "b"},
                    {"name": "c", "image": "c"}
                ])),
                json!({"spec": {
                    "$setElementOrder/containers": [{"name": "d"}, {"name": "b"}, {"name": "a"}],
                    "containers": [{"name": "d", "image": "d"}, {"name": "c", "$patch": "delete"}]
                }})
            ),
            containers(json!([
                {"name": "d", "image": "d"},
                {"name": "b", "image": "b"},
                {"name": "a", "tty": true}
            ]))
        );
    }

    #[test]
    fn nested_keyed_lists() {
        // Upstream "add field to map in merging list nested in merging list".
        assert_eq!(
            smp(
                containers(json!([
                    {"name": "a", "tty": true, "env": [{"name": "A"}, {"name": "B", "value": "2"}]},
                    {"name": "b", "image": "b"}
                ])),
                json!({"spec": {
                    "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                    "containers": [{
                        "$setElementOrder/env": [{"name": "A"}, {"name": "B"}],
                        "name": "a",
                        "env": [{"name": "A", "value": "1"}]
                    }]
                }})
            ),
            containers(json!([
                {"name": "a", "tty": true, "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                {"name": "b", "image": "b"}
            ]))
        );
        // Ports merge by an integer key.
        assert_eq!(
            smp(
                containers(json!([{"name": "a", "ports": [
                    {"containerPort": 80, "protocol": "TCP"},
                    {"containerPort": 443}
                ]}])),
                containers(json!([{"name": "a", "ports": [
                    {"containerPort": 80, "name": "http"},
                    {"containerPort": 8080}
                ]}]))
            ),
            containers(json!([{"name": "a", "ports": [
                {"containerPort": 80, "protocol": "TCP", "name": "http"},
                {"containerPort": 8080},
                {"containerPort": 443}
            ]}]))
        );
    }

    #[test]
    fn lists_without_merge_strategy_are_replaced() {
        // Upstream "replace non merging list nested in merging list".
        assert_eq!(
            smp(
                containers(json!([
                    {"name": "a", "tty": true, "args": ["-v", "2"]},
                    {"name": "b"}
                ])),
                json!({"spec": {
                    "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                    "containers": [{"name": "a", "args": ["-q"]}]
                }})
            ),
            containers(json!([{"name": "a", "tty": true, "args": ["-q"]}, {"name": "b"}]))
        );
        assert_eq!(
            smp(
                json!({"spec": {"tolerations": [{"key": "a"}, {"key": "b"}]}}),
                json!({"spec": {"tolerations": [{"key": "c", "operator": "Exists"}]}})
            ),
            json!({"spec": {"tolerations": [{"key": "c", "operator": "Exists"}]}})
        );
    }

    #[test]
    fn primitive_lists_merge_as_sets() {
        // Upstream "unique scalars when merging lists".
        assert_eq!(
            smp(finalizers(json!(["a", "b"])), finalizers(json!(["b", "c"]))),
            finalizers(json!(["a", "b", "c"]))
        );
        // Upstream "merge lists of scalars".
        assert_eq!(
            smp(
                finalizers(json!(["a", "b", "d"])),
                json!({"metadata": {"$setElementOrder/finalizers": ["a", "b", "c"], "finalizers": ["c"]}})
            ),
            finalizers(json!(["a", "b", "c", "d"]))
        );
        // Upstream "preserve the order from the patch in a merging int list".
        assert_eq!(
            smp(
                finalizers(json!(["a", "b", "c"])),
                finalizers(json!(["c", "a"]))
            ),
            finalizers(json!(["b", "c", "a"]))
        );
        // Upstream "add an item in a list of primitives and preserve order".
        assert_eq!(
            smp(
                finalizers(json!(["a", "d", "b"])),
                json!({"metadata": {"$setElementOrder/finalizers": ["c", "a", "b"], "finalizers": ["c"]}})
            ),
            finalizers(json!(["c", "a", "d", "b"]))
        );
        // Duplicates in the live list go; values keep their JSON type.
        assert_eq!(
            smp(finalizers(json!(["a", "a", "b"])), finalizers(json!(["b"]))),
            finalizers(json!(["a", "b"]))
        );
    }

    #[test]
    fn delete_from_primitive_list() {
        // Upstream "delete items in lists of scalars".
        assert_eq!(
            smp(
                finalizers(json!(["a", "b", "c", "d"])),
                json!({"metadata": {
                    "$setElementOrder/finalizers": ["a", "b"],
                    "$deleteFromPrimitiveList/finalizers": ["c"]
                }})
            ),
            finalizers(json!(["a", "b", "d"]))
        );
        // Upstream "delete an item in a list of primitives and preserve order".
        assert_eq!(
            smp(
                finalizers(json!(["a", "b", "c"])),
                json!({"metadata": {
                    "$setElementOrder/finalizers": ["b", "a"],
                    "$deleteFromPrimitiveList/finalizers": ["c"]
                }})
            ),
            finalizers(json!(["b", "a"]))
        );
        // Upstream custom cases: deleting what is not there adds nothing,
        // and lists without merge strategy take deletions too.
        assert_eq!(
            smp(
                finalizers(json!(["a"])),
                json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["z"]}})
            ),
            finalizers(json!(["a"]))
        );
        assert_eq!(
            smp(
                finalizers(json!(null)),
                json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["z"]}})
            ),
            finalizers(json!(null))
        );
        assert_eq!(
            smp(
                json!({"metadata": {}}),
                json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["z"]}})
            ),
            json!({"metadata": {}})
        );
        assert_eq!(
            smp(
                containers(json!([{"name": "a", "args": ["-a", "-b", "-c"]}])),
                containers(json!([{"name": "a", "$deleteFromPrimitiveList/args": ["-b"]}]))
            ),
            containers(json!([{"name": "a", "args": ["-a", "-c"]}]))
        );
        // Added and deleted at once: deletion wins.
        assert_eq!(
            smp(
                finalizers(json!(["a"])),
                json!({"metadata": {"finalizers": ["b"], "$deleteFromPrimitiveList/finalizers": ["b", "a"]}})
            ),
            finalizers(json!([]))
        );
    }

    #[test]
    fn retain_keys() {
        // kubectl apply switching a volume from emptyDir to hostPath.
        assert_eq!(
            smp(
                json!({"spec": {"volumes": [
                    {"name": "data", "emptyDir": {}},
                    {"name": "cfg", "configMap": {"name": "c"}}
                ]}}),
                json!({"spec": {
                    "$setElementOrder/volumes": [{"name": "data"}, {"name": "cfg"}],
                    "volumes": [{"$retainKeys": ["hostPath", "name"], "name": "data", "hostPath": {"path": "/x"}}]
                }})
            ),
            json!({"spec": {"volumes": [
                {"name": "data", "hostPath": {"path": "/x"}},
                {"name": "cfg", "configMap": {"name": "c"}}
            ]}})
        );
        // Upstream "retainKeys map should clear defaulted field".
        assert_eq!(
            smp(
                json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
                json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}})
            ),
            json!({"spec": {"strategy": {"type": "Recreate"}}})
        );
        // Upstream "retainKeys list of maps clears a field".
        assert_eq!(
            smp(
                json!({"spec": {"volumes": [{"name": "bar"}, {"name": "foo", "secret": {}, "emptyDir": {}}]}}),
                json!({"spec": {
                    "$setElementOrder/volumes": [{"name": "bar"}, {"name": "foo"}],
                    "volumes": [{"$retainKeys": ["name", "secret"], "name": "foo"}]
                }})
            ),
            json!({"spec": {"volumes": [{"name": "bar"}, {"name": "foo", "secret": {}}]}})
        );
        // Upstream "retainKeys map can delete a field when no retainKeys
        // directive present".
        assert_eq!(
            smp(
                json!({"spec": {"strategy": {"type": "a", "rollingUpdate": {}}}}),
                json!({"spec": {"strategy": {"rollingUpdate": null}}})
            ),
            json!({"spec": {"strategy": {"type": "a"}}})
        );
        // The patch may not set what it does not retain; nulls and
        // directives are exempt.
        let e = smp_err(
            json!({"spec": {"strategy": {}}}),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}),
        );
        assert!(e.is_bad_request());
        assert_eq!(e.to_string(), "invalid patch format of retainKeys");
        assert_eq!(
            smp(
                json!({"spec": {"strategy": {"x": 1}}}),
                json!({"spec": {"strategy": {"$retainKeys": ["type"], "x": null}}})
            ),
            json!({"spec": {"strategy": {}}})
        );
        let e = smp_err(
            json!({"spec": {"strategy": {}}}),
            json!({"spec": {"strategy": {"$retainKeys": "type"}}}),
        );
        assert!(e.is_bad_request());
    }

    #[test]
    fn replace_directive() {
        // Upstream "add key and delete all keys from map".
        assert_eq!(
            smp(
                json!({"spec": {"nodeSelector": {"a": "1", "b": "2"}}}),
                json!({"spec": {"nodeSelector": {"$patch": "replace", "c": "3", "d": null}}})
            ),
            json!({"spec": {"nodeSelector": {"c": "3"}}})
        );
        // Upstream "delete all keys from map", at the top.
        assert_eq!(
            smp(json!({"a": 1, "b": 2}), json!({"$patch": "replace"})),
            json!({})
        );
        // Upstream "delete all items from merging list".
        assert_eq!(
            smp(
                containers(json!([{"name": "a"}, {"name": "b"}])),
                containers(json!([{"$patch": "replace"}]))
            ),
            containers(json!([]))
        );
        // Replace the list with the patch's other elements.
        assert_eq!(
            smp(
                containers(json!([{"name": "a", "image": "a"}, {"name": "b"}])),
                containers(
                    json!([{"name": "c", "image": "c"}, {"$patch": "replace"}, {"name": "a"}])
                )
            ),
            containers(json!([{"name": "c", "image": "c"}, {"name": "a"}]))
        );
        // Upstream "merge empty merging lists".
        assert_eq!(
            smp(containers(json!([])), containers(json!([]))),
            containers(json!([]))
        );
    }

    #[test]
    fn delete_directive_on_maps() {
        // Upstream "delete map from nested map": emptied, not removed.
        assert_eq!(
            smp(
                json!({"spec": {"nodeSelector": {"a": "1"}}}),
                json!({"spec": {"nodeSelector": {"$patch": "delete"}}})
            ),
            json!({"spec": {"nodeSelector": {}}})
        );
        // A new value that is a directive is left out.
        assert_eq!(
            smp(
                json!({"spec": {}}),
                json!({"spec": {"nodeSelector": {"$patch": "delete"}, "affinity": {"$patch": "replace", "x": 1}}})
            ),
            json!({"spec": {}})
        );
        // Replacing a scalar with a directive removes it.
        assert_eq!(
            smp(
                json!({"spec": {"nodeSelector": "oops"}}),
                json!({"spec": {"nodeSelector": {"$patch": "delete"}}})
            ),
            json!({"spec": {}})
        );
    }

    #[test]
    fn directives_never_reach_the_result() {
        assert_eq!(
            smp(
                json!({"spec": {"containers": [{"name": "a"}]}}),
                json!({"spec": {
                    "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                    "containers": [{
                        "name": "b",
                        "image": null,
                        "$setElementOrder/env": [{"name": "X"}],
                        "$retainKeys": ["name", "env"],
                        "env": [{"name": "X", "value": "1"}, {"name": "Y", "$patch": "delete"}],
                        "$deleteFromPrimitiveList/args": ["-x"]
                    }],
                    "volumes": [{"name": "v", "$patch": "delete"}, {"name": "w", "emptyDir": {"medium": null}}],
                    "securityContext": {"$retainKeys": ["runAsUser"], "runAsUser": 1}
                }})
            ),
            json!({"spec": {
                "containers": [{"name": "a"}, {"name": "b", "env": [{"name": "X", "value": "1"}]}],
                "volumes": [{"name": "w", "emptyDir": {}}],
                "securityContext": {"runAsUser": 1}
            }})
        );
    }

    #[test]
    fn unknown_fields_behave_like_merge_patch() {
        // The table does not know `spec.readinessGates` or anything in
        // `data`: lists are replaced, maps merged.
        let doc = json!({
            "spec": {"readinessGates": [{"conditionType": "a"}]},
            "data": {"x": {"y": [1, 2], "z": 1}}
        });
        let patch = json!({
            "spec": {"readinessGates": [{"conditionType": "b"}]},
            "data": {"x": {"y": [3], "z": null, "w": {"v": null}}}
        });
        let want = json!({
            "spec": {"readinessGates": [{"conditionType": "b"}]},
            "data": {"x": {"y": [3], "w": {}}}
        });
        assert_eq!(smp(doc.clone(), patch.clone()), want);
        assert_eq!(apply(&doc, &patch, &Unknown).unwrap(), want);
        assert_eq!(super::super::merge::apply(&doc, &patch).unwrap(), want);
    }

    #[test]
    fn values_of_another_type_are_replaced() {
        assert_eq!(
            smp(
                json!({"spec": {"containers": "oops", "x": {"a": 1}, "y": [1], "z": 1}}),
                json!({"spec": {"containers": [{"name": "a", "x": null}], "x": [1], "y": {"b": 2}, "z": "one"}})
            ),
            json!({"spec": {"containers": [{"name": "a"}], "x": [1], "y": {"b": 2}, "z": "one"}})
        );
    }

    #[test]
    fn input_is_not_changed() {
        let doc = containers(json!([{"name": "a", "image": "a"}]));
        let patch = containers(json!([{"name": "a", "image": null}]));
        let before = (doc.clone(), patch.clone());
        assert_eq!(
            smp(doc.clone(), patch.clone()),
            containers(json!([{"name": "a"}]))
        );
        assert_eq!((doc, patch), before);
    }

    #[test]
    fn missing_merge_key() {
        // Upstream "missing merge key should error out".
        let e = smp_err(
            containers(json!([{"name": "a", "image": "a"}])),
            containers(json!([{"image": "nginx:1.25"}])),
        );
        assert_eq!(e.status_code(), 500);
        assert_eq!(e.reason(), "");
        assert_eq!(
            e.to_string(),
            "map: map[image:nginx:1.25] does not contain declared merge key: name"
        );
        // Also in a deletion, and in an element order list.
        let e = smp_err(
            containers(json!([{"name": "a"}])),
            containers(json!([{"$patch": "delete", "image": "x"}])),
        );
        assert!(matches!(e, PatchError::MissingMergeKey { .. }), "{e:?}");
        let e = smp_err(
            containers(json!([{"name": "a"}])),
            json!({"spec": {"$setElementOrder/containers": [{"image": "x"}]}}),
        );
        assert!(matches!(e, PatchError::MissingMergeKey { .. }), "{e:?}");
        // A merged list of objects without a merge key at all.
        let e = smp_err(
            json!({"spec": {"keyless": [{"a": 1}]}}),
            json!({"spec": {"keyless": [{"a": 2}]}}),
        );
        assert_eq!(
            e,
            PatchError::NoMergeKey {
                field: "keyless".to_owned()
            }
        );
    }

    #[test]
    fn element_order_must_match_the_patch_list() {
        // Upstream "should check if order in $setElementOrder and patch
        // list match", for maps and for primitives.
        let e = smp_err(
            containers(json!([{"name": "a"}, {"name": "c"}, {"name": "b"}])),
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
                "containers": [{"name": "c", "image": "c"}, {"name": "a", "image": "a"}]
            }}),
        );
        assert!(e.to_string().contains("doesn't match"), "{e}");
        assert_eq!(e.status_code(), 500);
        let e = smp_err(
            finalizers(json!(["a", "c", "b"])),
            json!({"metadata": {"$setElementOrder/finalizers": ["a", "b", "c"], "finalizers": ["c", "a"]}}),
        );
        assert!(e.to_string().contains("doesn't match"), "{e}");
        // A patch element the order list does not name.
        let e = smp_err(
            containers(json!([])),
            json!({"spec": {"$setElementOrder/containers": [{"name": "a"}], "containers": [{"name": "z"}]}}),
        );
        assert!(matches!(e, PatchError::OrderMismatch { .. }), "{e:?}");
    }

    #[test]
    fn directive_errors() {
        let e = smp_err(
            containers(json!([{"name": "a"}])),
            containers(json!([{"$patch": "merge"}])),
        );
        assert_eq!(
            e.to_string(),
            "merging lists cannot yet be specified in the patch"
        );
        let e = smp_err(
            json!({"spec": {"nodeSelector": {}}}),
            json!({"spec": {"nodeSelector": {"$patch": "merge", "a": "1"}}}),
        );
        assert_eq!(
            e.to_string(),
            "unknown patch type: merge in map: map[$patch:merge a:1]"
        );
        assert_eq!(e.status_code(), 500);
        let e = smp_err(
            containers(json!([{"name": "a"}])),
            containers(json!([{"$patch": 1, "name": "a"}])),
        );
        assert_eq!(
            e.to_string(),
            "unknown patch type: 1 in map: map[$patch:1 name:a]"
        );
        // Directive keys without their field.
        let e = smp_err(json!({}), json!({"$setElementOrder": []}));
        assert!(e.is_bad_request());
        assert_eq!(
            e.to_string(),
            "invalid patch format of setElementOrder list"
        );
        let e = smp_err(json!({}), json!({"$setElementOrderX/a": []}));
        assert!(e.is_bad_request());
        let e = smp_err(json!({}), json!({"$deleteFromPrimitiveList": ["a"]}));
        assert!(e.is_bad_request());
        assert_eq!(e.to_string(), "invalid patch format of primitive list");
        // Directive values of the wrong type.
        let e = smp_err(
            finalizers(json!(["a"])),
            json!({"metadata": {"$setElementOrder/finalizers": "a"}}),
        );
        assert!(matches!(e, PatchError::WrongType { .. }), "{e:?}");
        let e = smp_err(
            finalizers(json!(["a"])),
            json!({"metadata": {"$setElementOrder/finalizers": ["a"], "finalizers": "a"}}),
        );
        assert!(matches!(e, PatchError::WrongType { .. }), "{e:?}");
        let e = smp_err(
            containers(json!([{"name": "a"}])),
            json!({"spec": {"$setElementOrder/containers": ["a"], "containers": [{"name": "a"}]}}),
        );
        assert!(matches!(e, PatchError::WrongType { .. }), "{e:?}");
    }

    #[test]
    fn bad_list_elements() {
        // Upstream looks only at the first element for this.
        let e = smp_err(finalizers(json!([["a"]])), finalizers(json!([["b"]])));
        assert_eq!(
            e,
            PatchError::ListOfLists {
                field: "finalizers".to_owned()
            }
        );
        assert!(e.is_invalid());
        assert_eq!(e.to_string(), "lists of lists are not supported");
        for (doc, patch) in [
            (finalizers(json!(["a"])), finalizers(json!([1]))),
            (finalizers(json!(["a"])), finalizers(json!([["b"]]))),
            (finalizers(json!(["a"])), finalizers(json!([null]))),
            (finalizers(json!([null])), finalizers(json!(["a"]))),
            (finalizers(json!([1])), finalizers(json!([1.5]))),
            (containers(json!([{"name": "a"}])), containers(json!(["a"]))),
            (
                containers(json!([{"name": "a"}])),
                containers(json!([{"name": "b"}, null])),
            ),
        ] {
            let e = smp_err(doc, patch);
            assert!(matches!(e, PatchError::MixedElementTypes { .. }), "{e:?}");
        }
        // Merge key values of any JSON type are compared, not hashed.
        assert_eq!(
            smp(
                containers(json!([{"name": {"x": [1]}}, {"name": [1]}])),
                containers(json!([{"name": {"x": [1]}, "image": "a"}, {"name": null}]))
            ),
            containers(json!([{"name": {"x": [1]}, "image": "a"}, {"name": null}, {"name": [1]}]))
        );
    }

    #[test]
    fn bodies_that_are_not_objects() {
        for patch in [
            json!("spec"),
            json!([]),
            json!([{"op": "add"}]),
            json!(1),
            json!(true),
        ] {
            let e = smp_err(json!({}), patch.clone());
            assert!(e.is_bad_request(), "{patch}: {e:?}");
        }
        assert_eq!(
            smp_err(json!({}), json!([])).to_string(),
            "strategic merge patch must be an object, got array"
        );
        let table = pod();
        let e = apply(&json!([]), &json!({}), &table.root()).unwrap_err();
        assert_eq!(e.status_code(), 500);
    }

    #[test]
    fn deep_patches_error_instead_of_overflowing() {
        let mut patch = json!(1);
        for _ in 0..(MAX_DEPTH + 10) {
            patch = json!({ "a": patch });
        }
        // Into a new field, and into an existing one of the same depth.
        let e = apply(&json!({}), &patch, &Unknown).unwrap_err();
        assert_eq!(e, PatchError::TooDeep { max: MAX_DEPTH });
        let e = apply(&patch, &patch, &Unknown).unwrap_err();
        assert_eq!(e, PatchError::TooDeep { max: MAX_DEPTH });
        let mut list_patch = json!({"name": "x"});
        for _ in 0..(MAX_DEPTH + 10) {
            list_patch = json!({"name": "x", "env": [list_patch]});
        }
        // A self-similar schema: every level's `env` merges by name.
        struct Env;
        impl PatchSchema for Env {
            fn field(&self, name: &str) -> Option<(PatchStrategy, Box<dyn PatchSchema + '_>)> {
                (name == "env").then(|| (merge_by("name"), Box::new(Env) as Box<dyn PatchSchema>))
            }
            fn elements(&self) -> Option<Box<dyn PatchSchema + '_>> {
                Some(Box::new(Env))
            }
        }
        let e = apply(&list_patch, &list_patch, &Env).unwrap_err();
        assert_eq!(e, PatchError::TooDeep { max: MAX_DEPTH });
    }

    #[test]
    fn big_lists_stay_fast() {
        // Hash lookups, not nested scans: 20000 x 20000 would take minutes.
        let n = 20_000;
        let old: Vec<Value> = (0..n).map(|i| json!(format!("f{i}"))).collect();
        let new: Vec<Value> = (0..n).map(|i| json!(format!("g{i}"))).collect();
        let out = smp(finalizers(Value::Array(old)), finalizers(Value::Array(new)));
        assert_eq!(
            out["metadata"]["finalizers"].as_array().unwrap().len(),
            2 * n
        );
        let old: Vec<Value> = (0..n).map(|i| json!({"name": format!("c{i}")})).collect();
        let new: Vec<Value> = (0..n)
            .map(|i| json!({"name": format!("c{}", n - i), "image": "x"}))
            .collect();
        let out = smp(
            containers(Value::Array(old.clone())),
            containers(Value::Array(new)),
        );
        assert_eq!(out["spec"]["containers"].as_array().unwrap().len(), n + 1);
        // Deleting half of them, with an element order, as kubectl apply would.
        let deletions = (0..n)
            .step_by(2)
            .map(|i| json!({"name": format!("c{i}"), "$patch": "delete"}));
        let order: Vec<Value> = (0..n)
            .skip(1)
            .step_by(2)
            .map(|i| json!({"name": format!("c{i}")}))
            .collect();
        let out = smp(
            containers(Value::Array(old)),
            json!({"spec": {
                "$setElementOrder/containers": order.clone(),
                "containers": deletions.collect::<Vec<_>>()
            }}),
        );
        assert_eq!(out["spec"]["containers"], Value::Array(order));
    }
}
