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

    let mut old_order = BackingArray::new(&original, key);

    // `$patch` elements: deletions by key, and replace.
    let mut replace = false;
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
                original.retain(|e| e.get(key) != Some(value));
                old_order.delete_all(value);
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

    /// `deleteMatchingEntries`: each removal shifts the rest left by one,
    /// leaving the last slot as it was.
    fn delete_all(&mut self, value: &Value) {
        if !self.attached {
            return;
        }
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
