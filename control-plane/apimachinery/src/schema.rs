//! The shape of an object, as far as strategic merge patch cares.
//!
//! Strategic merge patch merges lists by a key (containers by `name`) instead
//! of replacing them, when the type says so. Upstream reads that from Go
//! struct tags or from the OpenAPI extensions `x-kubernetes-patch-strategy`
//! and `x-kubernetes-patch-merge-key`. Here a [`PatchSchema`] answers the same
//! questions while the patch walks down the object.

/// How strategic merge patch treats one field: the parsed
/// `x-kubernetes-patch-strategy` and `x-kubernetes-patch-merge-key`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PatchStrategy {
    /// The strategy includes `merge`: lists are merged (by `merge_key` for
    /// lists of objects, as sets for lists of primitives) instead of replaced.
    pub merge: bool,
    /// The strategy includes `retainKeys`: a `$retainKeys` directive may
    /// clear the fields of this object that it does not list.
    pub retain_keys: bool,
    /// The key that identifies an element of a merged list of objects.
    pub merge_key: Option<String>,
}

/// A position in an object's schema.
///
/// `None` from any method means "unknown here": strategic merge patch then
/// falls back to JSON merge patch semantics for that subtree (lists are
/// replaced, maps are merged), as upstream does for free-form fields.
pub trait PatchSchema {
    /// The field `name` of the object described by this schema: how it is
    /// patched, and its own schema.
    fn field(&self, name: &str) -> Option<(PatchStrategy, Box<dyn PatchSchema + '_>)>;

    /// The schema of the elements, when this describes a list, or of the
    /// values, when it describes a map (`additionalProperties`).
    fn elements(&self) -> Option<Box<dyn PatchSchema + '_>>;
}

/// A schema that knows nothing: every list is replaced, every map merged.
#[derive(Clone, Copy, Debug, Default)]
pub struct Unknown;

impl PatchSchema for Unknown {
    fn field(&self, _name: &str) -> Option<(PatchStrategy, Box<dyn PatchSchema + '_>)> {
        None
    }

    fn elements(&self) -> Option<Box<dyn PatchSchema + '_>> {
        None
    }
}
