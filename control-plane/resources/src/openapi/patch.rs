//! [`PatchSchema`] over the generated definitions: what strategic merge
//! patch needs to know while it walks an object.
//!
//! A [`SchemaNode`] is a position in a definition. It resolves refs the way
//! upstream's `PatchMetaFromOpenAPIV3` does (a single `allOf` element, then
//! `$ref`), reads `x-kubernetes-patch-strategy` and
//! `x-kubernetes-patch-merge-key` from the property that names a field, and
//! descends through `properties`, `items` and `additionalProperties`.

use kedge_apimachinery::schema::{PatchSchema, PatchStrategy};
use serde_json::Value;

use super::definitions::{Definitions, V3_REFS};

/// How many refs one lookup follows before it gives up; the definitions
/// have no chains nearly this long, so only a cycle reaches it.
const MAX_REFS: usize = 16;

/// A position in the schema of a definition.
#[derive(Clone, Copy, Debug)]
pub struct SchemaNode<'a> {
    defs: &'a Definitions,
    schema: &'a Value,
}

impl<'a> SchemaNode<'a> {
    /// The top of `definition`, if the definitions have it.
    pub(super) fn root(defs: &'a Definitions, definition: &str) -> Option<SchemaNode<'a>> {
        Some(SchemaNode {
            defs,
            schema: defs.get(definition)?,
        })
    }

    /// The schema with refs followed: the one that has the properties,
    /// items or additional properties. `None` for a dangling ref or a cycle.
    fn resolved(&self) -> Option<&'a Value> {
        let mut schema = self.schema;
        for _ in 0..MAX_REFS {
            if let Some(Value::Array(all_of)) = schema.get("allOf")
                && schema.get("properties").is_none()
                && let Some(first) = all_of.first()
            {
                schema = first;
                continue;
            }
            match schema.get("$ref").and_then(Value::as_str) {
                Some(r) => schema = self.defs.get(r.strip_prefix(V3_REFS)?)?,
                None => return Some(schema),
            }
        }
        None
    }

    fn at(&self, schema: &'a Value) -> SchemaNode<'a> {
        SchemaNode {
            defs: self.defs,
            schema,
        }
    }

    /// The field's strategy, read from the property that names it.
    fn strategy(property: &Value) -> PatchStrategy {
        let strategies = property
            .get("x-kubernetes-patch-strategy")
            .and_then(Value::as_str)
            .unwrap_or("");
        let has = |s: &str| strategies.split(',').any(|x| x.trim() == s);
        PatchStrategy {
            merge: has("merge"),
            retain_keys: has("retainKeys"),
            merge_key: property
                .get("x-kubernetes-patch-merge-key")
                .and_then(Value::as_str)
                .map(str::to_string),
        }
    }
}

impl PatchSchema for SchemaNode<'_> {
    fn field(&self, name: &str) -> Option<(PatchStrategy, Box<dyn PatchSchema + '_>)> {
        let property = self.resolved()?.get("properties")?.get(name)?;
        Some((Self::strategy(property), Box::new(self.at(property))))
    }

    fn elements(&self) -> Option<Box<dyn PatchSchema + '_>> {
        let resolved = self.resolved()?;
        let element = match (resolved.get("items"), resolved.get("additionalProperties")) {
            (Some(items), _) if items.is_object() => items,
            (_, Some(values)) if values.is_object() => values,
            _ => return None,
        };
        Some(Box::new(self.at(element)))
    }
}
