//! The shape of the decoding table: what the decoder knows about each
//! message. `table.rs` holds the values; the generator in `tests/table.rs`
//! writes it.

/// One protobuf message and how its fields map to JSON.
#[derive(Debug)]
pub(crate) struct Message {
    /// Sorted by tag.
    pub fields: &'static [Field],
}

/// One field of a [`Message`].
#[derive(Debug)]
pub(crate) struct Field {
    pub tag: u32,
    /// The JSON property name. Unused for inline fields.
    pub json: &'static str,
    pub shape: Shape,
    /// The element type; for maps, the value type.
    pub ty: Type,
    /// A bit set of [`OMIT_EMPTY`], [`POINTER`] and [`INLINE`].
    pub flags: u8,
}

/// The Go field's JSON tag has `omitempty`.
pub(crate) const OMIT_EMPTY: u8 = 1;
/// The Go field is a pointer: zero values are kept and absence is `nil`.
pub(crate) const POINTER: u8 = 2;
/// The Go field is embedded with `json:",inline"`: its properties belong to
/// the enclosing object.
pub(crate) const INLINE: u8 = 4;

impl Field {
    pub(crate) fn omit_empty(&self) -> bool {
        self.flags & OMIT_EMPTY != 0
    }

    pub(crate) fn pointer(&self) -> bool {
        self.flags & POINTER != 0
    }

    pub(crate) fn inline(&self) -> bool {
        self.flags & INLINE != 0
    }
}

/// How many values a field holds.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shape {
    One,
    Repeated,
    /// A map with keys of this scalar type; values are the field's `ty`.
    Map(Type),
}

/// The type of a value. Scalars follow protobuf; the message types with a
/// JSON form of their own are listed by name.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Type {
    Bool,
    Int32,
    Int64,
    // No kind in the table has a double or a Duration yet; the generator
    // emits them when one does.
    #[allow(dead_code)]
    Double,
    String,
    /// `[]byte`: base64 in JSON.
    Bytes,
    Message(&'static Message),
    /// `metav1.Time`: RFC 3339 to the second.
    Time,
    /// `metav1.MicroTime`: RFC 3339 to the microsecond.
    MicroTime,
    /// `metav1.Duration`: Go's `time.Duration` string.
    #[allow(dead_code)]
    Duration,
    /// `resource.Quantity`: its canonical string.
    Quantity,
    /// `intstr.IntOrString`: a JSON number or string.
    IntOrString,
    /// `runtime.RawExtension`: embedded JSON, or an embedded protobuf object.
    RawExtension,
    /// `metav1.FieldsV1`: embedded JSON.
    FieldsV1,
}

/// Builds a [`Field`]; keeps the generated table short.
pub(crate) const fn f(tag: u32, json: &'static str, shape: Shape, ty: Type, flags: u8) -> Field {
    Field {
        tag,
        json,
        shape,
        ty,
        flags,
    }
}

/// A kind the decoder knows, by API group, version and kind. A group of
/// `*` matches every group and version: options types such as
/// `DeleteOptions` are registered in every group version.
#[derive(Debug)]
pub(crate) struct Kind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub message: &'static Message,
}
