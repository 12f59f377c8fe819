//! The table-driven decoder: protobuf bytes in, the JSON that Go's
//! `encoding/json` writes for the same value out.
//!
//! Go decodes protobuf into structs and then encodes those as JSON, so the
//! rules here are Go's:
//! - An absent field holds Go's zero value: a pointer is `nil`, a struct is
//!   all zero values, a slice or map is `nil`.
//! - `omitempty` drops `false`, `0`, `""`, `nil` and empty slices and maps,
//!   never a struct (so `spec: {}` and `creationTimestamp: null` stay).
//! - A field without `omitempty` is always written: `nil` as `null`.
//! - Go's gogo-generated encoders write every non-pointer field, so a body
//!   from kubectl carries `name: ""` and `paused: false`; only the pointer
//!   flag tells a meaningful zero (`replicas: 0`) from one to drop.
//! - A message field that occurs twice is merged, as protobuf says; a
//!   scalar's last value wins.

use base64::Engine as _;
use serde_json::{Map, Number, Value};

use crate::format;
use crate::schema::{Field, Message, Shape, Type};
use crate::table::KINDS;
use crate::wire::{Next, Reader, Wire};
use crate::{DecodeError, MAGIC, Problem};

/// Deeper than anything the table reaches; bounds embedded objects.
pub(crate) const MAX_DEPTH: usize = 64;

/// One step of the path to a failure.
#[derive(Debug)]
enum Step {
    Field(&'static str),
    /// A field the table does not know, or an inline one.
    Tag(u32),
    Index(usize),
    Key(String),
}

/// A failure and the steps to it, innermost first.
#[derive(Debug)]
struct Failure {
    steps: Vec<Step>,
    problem: Problem,
}

impl From<Problem> for Failure {
    fn from(problem: Problem) -> Self {
        Failure {
            steps: Vec::new(),
            problem,
        }
    }
}

impl Failure {
    fn at(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    fn into_error(self, root: &str) -> DecodeError {
        let mut path = root.to_string();
        for step in self.steps.iter().rev() {
            match step {
                Step::Field(name) => {
                    path.push('.');
                    path.push_str(name);
                }
                Step::Tag(tag) => path.push_str(&format!(".#{tag}")),
                Step::Index(i) => path.push_str(&format!("[{i}]")),
                Step::Key(key) => path.push_str(&format!("[{}]", Value::String(key.clone()))),
            }
        }
        DecodeError::Malformed {
            path,
            problem: self.problem,
        }
    }
}

type Result<T, E = Failure> = std::result::Result<T, E>;

pub(crate) fn find_kind(group: &str, version: &str, kind: &str) -> Option<&'static Message> {
    KINDS
        .iter()
        .find(|k| k.kind == kind && ((k.group == group && k.version == version) || k.group == "*"))
        .map(|k| k.message)
}

/// The envelope: `runtime.Unknown`.
#[derive(Default)]
struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    content_encoding: String,
}

impl<'a> Envelope<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self> {
        let mut envelope = Envelope::default();
        let mut reader = Reader::new(bytes);
        let name = |tag| match tag {
            1 => Step::Field("typeMeta"),
            2 => Step::Field("raw"),
            3 => Step::Field("contentEncoding"),
            4 => Step::Field("contentType"),
            other => Step::Tag(other),
        };
        while let Some((tag, wire)) = next_named(&mut reader, name)? {
            if !(1..=3).contains(&tag) {
                continue;
            }
            let bytes = expect_bytes(wire).map_err(|f| f.at(name(tag)))?;
            match tag {
                1 => {
                    let type_name = |tag| match tag {
                        1 => Step::Field("apiVersion"),
                        2 => Step::Field("kind"),
                        other => Step::Tag(other),
                    };
                    let mut type_meta = Reader::new(bytes);
                    while let Some((tag, wire)) =
                        next_named(&mut type_meta, type_name).map_err(|f| f.at(name(1)))?
                    {
                        let target = match tag {
                            1 => &mut envelope.api_version,
                            2 => &mut envelope.kind,
                            _ => continue,
                        };
                        let value =
                            expect_bytes(wire).map_err(|f| f.at(type_name(tag)).at(name(1)))?;
                        *target = format::go_string(value);
                    }
                }
                2 => envelope.raw = bytes,
                _ => envelope.content_encoding = format::go_string(bytes),
            }
        }
        Ok(envelope)
    }
}

/// Decodes a whole body: magic, envelope, object.
pub(crate) fn body(bytes: &[u8], depth: usize) -> std::result::Result<Value, DecodeError> {
    let rest = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or(DecodeError::NotProtobuf)?;
    let envelope = Envelope::parse(rest).map_err(|f| f.into_error("runtime.Unknown"))?;
    if !envelope.content_encoding.is_empty() {
        return Err(DecodeError::UnsupportedContentEncoding(
            envelope.content_encoding,
        ));
    }
    if envelope.kind.is_empty() {
        return Err(DecodeError::MissingKind);
    }
    if envelope.api_version.is_empty() {
        return Err(DecodeError::MissingApiVersion(envelope.kind));
    }
    let (group, version) = envelope
        .api_version
        .rsplit_once('/')
        .unwrap_or(("", &envelope.api_version));
    let Some(message) = find_kind(group, version, &envelope.kind) else {
        return Err(DecodeError::UnknownKind {
            api_version: envelope.api_version,
            kind: envelope.kind,
        });
    };
    let fields = decode_message(message, &[envelope.raw], depth)
        .map_err(|f| f.into_error(&envelope.kind))?;
    let mut object = Map::new();
    object.insert("apiVersion".into(), Value::String(envelope.api_version));
    object.insert("kind".into(), Value::String(envelope.kind));
    object.extend(fields);
    Ok(Value::Object(object))
}

fn next<'a>(reader: &mut Reader<'a>) -> Result<Next<'a>> {
    next_named(reader, Step::Tag)
}

/// The next field; a failure inside one is placed by `name(tag)`.
fn next_named<'a>(reader: &mut Reader<'a>, name: impl Fn(u32) -> Step) -> Result<Next<'a>> {
    reader.next_field().map_err(|(tag, problem)| {
        let failure = Failure::from(problem);
        match tag {
            Some(tag) => failure.at(name(tag)),
            None => failure,
        }
    })
}

fn expect_bytes(wire: Wire<'_>) -> Result<&[u8]> {
    match wire {
        Wire::Bytes(b) => Ok(b),
        other => Err(wrong_wire("length-delimited", other)),
    }
}

fn wrong_wire(expected: &'static str, found: Wire<'_>) -> Failure {
    Problem::WrongWireType {
        expected,
        found: found.name(),
    }
    .into()
}

/// What has been read for one field.
enum Slot<'a> {
    Absent,
    /// A singular scalar: the last value read.
    Scalar(Value),
    /// A singular message: every occurrence, merged when decoded.
    Chunks(Vec<&'a [u8]>),
    List(Vec<Value>),
    Map(Map<String, Value>),
}

/// Decodes a message from its occurrences, which protobuf merges.
fn decode_message(
    message: &'static Message,
    chunks: &[&[u8]],
    depth: usize,
) -> Result<Map<String, Value>> {
    if depth > MAX_DEPTH {
        return Err(Problem::TooDeep(MAX_DEPTH).into());
    }
    let mut slots: Vec<Slot<'_>> = message.fields.iter().map(|_| Slot::Absent).collect();
    let index = |tag: u32| message.fields.binary_search_by_key(&tag, |f| f.tag).ok();
    for chunk in chunks {
        let mut reader = Reader::new(chunk);
        loop {
            let (tag, wire) = match reader.next_field() {
                Ok(Some(field)) => field,
                Ok(None) => break,
                Err((tag, problem)) => {
                    let failure = Failure::from(problem);
                    return Err(match (tag, tag.and_then(index)) {
                        (_, Some(i)) => within(&message.fields[i])(failure),
                        (Some(tag), None) => failure.at(Step::Tag(tag)),
                        (None, None) => failure,
                    });
                }
            };
            // Unknown fields are skipped, as Go's decoder does.
            let Some(i) = index(tag) else { continue };
            let field = &message.fields[i];
            read_field(field, &mut slots[i], wire, depth).map_err(within(field))?;
        }
    }
    let mut object = Map::new();
    for (field, slot) in message.fields.iter().zip(slots) {
        let value = finish(field, slot, depth).map_err(within(field))?;
        match value {
            Some(Value::Object(inner)) if field.inline() => object.extend(inner),
            Some(value) => {
                object.insert(field.json.to_string(), value);
            }
            None => {}
        }
    }
    Ok(object)
}

/// Adds the field to a failure's path; an inline field adds nothing, as
/// its properties are its parent's.
fn within(field: &Field) -> impl Fn(Failure) -> Failure + '_ {
    move |f| {
        if field.inline() {
            f
        } else {
            f.at(Step::Field(field.json))
        }
    }
}

/// Reads one occurrence of a field into its slot.
fn read_field<'a>(field: &Field, slot: &mut Slot<'a>, wire: Wire<'a>, depth: usize) -> Result<()> {
    match field.shape {
        Shape::One => {
            if is_scalar(field.ty) {
                *slot = Slot::Scalar(scalar(field.ty, wire)?);
            } else {
                let bytes = expect_bytes(wire)?;
                match slot {
                    Slot::Chunks(chunks) => chunks.push(bytes),
                    _ => *slot = Slot::Chunks(vec![bytes]),
                }
            }
        }
        Shape::Repeated => {
            if !matches!(slot, Slot::List(_)) {
                *slot = Slot::List(Vec::new());
            }
            let Slot::List(list) = slot else {
                return Ok(());
            };
            match (field.ty, wire) {
                // Packed numbers: one length-delimited run of values.
                (Type::Bool | Type::Int32 | Type::Int64 | Type::Double, Wire::Bytes(bytes)) => {
                    let mut reader = Reader::new(bytes);
                    while !reader.is_empty() {
                        let index = Step::Index(list.len());
                        let wire = if matches!(field.ty, Type::Double) {
                            reader.fixed64().map(Wire::Fixed64)
                        } else {
                            reader.varint().map(Wire::Varint)
                        };
                        let wire = wire.map_err(|p| Failure::from(p).at(index))?;
                        list.push(scalar(field.ty, wire)?);
                    }
                }
                (ty, wire) if is_scalar(ty) => {
                    let index = list.len();
                    list.push(scalar(ty, wire).map_err(|f| f.at(Step::Index(index)))?);
                }
                (ty, wire) => {
                    let index = list.len();
                    let bytes = expect_bytes(wire).map_err(|f| f.at(Step::Index(index)))?;
                    let value =
                        value_of(ty, &[bytes], depth).map_err(|f| f.at(Step::Index(index)))?;
                    list.push(value);
                }
            }
        }
        Shape::Map(key_type) => {
            let (key, value) = map_entry(key_type, field.ty, expect_bytes(wire)?, depth)?;
            if !matches!(slot, Slot::Map(_)) {
                *slot = Slot::Map(Map::new());
            }
            if let Slot::Map(map) = slot {
                map.insert(key, value);
            }
        }
    }
    Ok(())
}

/// One map entry: key 1, value 2; a missing part is its zero value.
fn map_entry(
    key_type: Type,
    value_type: Type,
    bytes: &[u8],
    depth: usize,
) -> Result<(String, Value)> {
    let mut key = None;
    let mut value = None;
    let mut chunks = Vec::new();
    let mut reader = Reader::new(bytes);
    while let Some((tag, wire)) = next(&mut reader)? {
        match tag {
            1 => key = Some(scalar(key_type, wire).map_err(|f| f.at(Step::Tag(1)))?),
            2 if is_scalar(value_type) => {
                value = Some(scalar(value_type, wire).map_err(|f| f.at(Step::Tag(2)))?)
            }
            2 => chunks.push(expect_bytes(wire).map_err(|f| f.at(Step::Tag(2)))?),
            _ => {}
        }
    }
    let key = match key.unwrap_or_else(|| zero(key_type)) {
        Value::String(s) => s,
        other => other.to_string(),
    };
    let value = match value {
        Some(value) => value,
        None if is_scalar(value_type) => zero(value_type),
        None => value_of(value_type, &chunks, depth).map_err(|f| f.at(Step::Key(key.clone())))?,
    };
    Ok((key, value))
}

fn is_scalar(ty: Type) -> bool {
    matches!(
        ty,
        Type::Bool | Type::Int32 | Type::Int64 | Type::Double | Type::String | Type::Bytes
    )
}

/// A scalar's JSON value.
fn scalar(ty: Type, wire: Wire<'_>) -> Result<Value> {
    Ok(match (ty, wire) {
        (Type::Bool, Wire::Varint(v)) => Value::Bool(v != 0),
        // Go truncates a varint to the field's width.
        (Type::Int32, Wire::Varint(v)) => Value::from(v as i32),
        (Type::Int64, Wire::Varint(v)) => Value::from(v as i64),
        (Type::Double, Wire::Fixed64(bits)) => {
            let v = f64::from_bits(bits);
            Value::Number(Number::from_f64(v).ok_or(Problem::NotFinite(v))?)
        }
        (Type::String, Wire::Bytes(b)) => Value::String(format::go_string(b)),
        (Type::Bytes, Wire::Bytes(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        (Type::Bool | Type::Int32 | Type::Int64, other) => return Err(wrong_wire("varint", other)),
        (Type::Double, other) => return Err(wrong_wire("fixed64", other)),
        (_, other) => return Err(wrong_wire("length-delimited", other)),
    })
}

/// Go's zero value of a scalar, as JSON.
fn zero(ty: Type) -> Value {
    match ty {
        Type::Bool => Value::Bool(false),
        Type::Int32 | Type::Int64 => Value::from(0),
        Type::Double => Value::from(0.0),
        _ => Value::String(String::new()),
    }
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// The JSON for a field once every occurrence is read; `None` to leave it
/// out.
fn finish(field: &Field, slot: Slot<'_>, depth: usize) -> Result<Option<Value>> {
    Ok(match slot {
        Slot::Scalar(value) => {
            // A pointer keeps its zero; a present `[]byte` is dropped when
            // empty and omitempty, like any slice.
            let droppable = !field.pointer() || matches!(field.ty, Type::Bytes);
            (!(droppable && field.omit_empty() && is_zero(&value))).then_some(value)
        }
        Slot::Chunks(chunks) => Some(value_of(field.ty, &chunks, depth)?),
        Slot::List(list) => Some(Value::Array(list)),
        Slot::Map(map) => Some(Value::Object(map)),
        // Absent: Go's zero value for the field.
        Slot::Absent => match field.shape {
            Shape::One
                if is_scalar(field.ty) && !field.pointer() && !matches!(field.ty, Type::Bytes) =>
            {
                (!field.omit_empty()).then(|| zero(field.ty))
            }
            // A struct: written even when empty, omitempty or not.
            Shape::One if !field.pointer() && !is_scalar(field.ty) => {
                Some(value_of(field.ty, &[], depth)?)
            }
            // nil: a pointer, slice, map or []byte.
            _ => (!field.omit_empty()).then_some(Value::Null),
        },
    })
}

/// A message-typed value from its occurrences; none gives Go's zero value.
fn value_of(ty: Type, chunks: &[&[u8]], depth: usize) -> Result<Value> {
    let last = chunks.last().copied();
    Ok(match ty {
        Type::Message(message) => Value::Object(decode_message(message, chunks, depth + 1)?),
        Type::Time | Type::MicroTime => time(ty, last)?,
        Type::Duration => {
            let nanos = last_varint(chunks, 1)?.unwrap_or(0) as i64;
            Value::String(format::go_duration(nanos))
        }
        Type::Quantity => {
            // Go parses and re-prints the string; a Go client already sent
            // the canonical form, so it passes through. Absent is zero.
            let text = last_bytes(chunks, 1)?.map(format::go_string);
            Value::String(text.unwrap_or_else(|| "0".into()))
        }
        Type::IntOrString => int_or_string(chunks)?,
        Type::RawExtension | Type::FieldsV1 => match last_bytes(chunks, 1)? {
            None | Some([]) => Value::Null,
            Some(raw) if raw.starts_with(MAGIC) => {
                body(raw, depth + 1).map_err(|e| Failure::from(Problem::Embedded(Box::new(e))))?
            }
            Some(raw) => serde_json::from_slice(raw).map_err(|e| Problem::Json(e.to_string()))?,
        },
        // Scalars never reach here: the table gives them slots of their own.
        _ => zero(ty),
    })
}

/// `metav1.Time` (seconds only, as Go keeps it) or `metav1.MicroTime`
/// (microseconds, truncated); Go's zero time and an empty message are
/// `null`.
fn time(ty: Type, last: Option<&[u8]>) -> Result<Value> {
    let Some(bytes) = last.filter(|b| !b.is_empty()) else {
        return Ok(Value::Null);
    };
    let chunks = [bytes];
    let seconds = last_varint(&chunks, 1)?.unwrap_or(0) as i64;
    let nanos = i64::from(last_varint(&chunks, 2)?.unwrap_or(0) as i32);
    let micro = matches!(ty, Type::MicroTime);
    let nanos = if micro { nanos - nanos % 1000 } else { 0 };
    let (seconds, nanos) =
        format::normalize(seconds, nanos).ok_or(Problem::TimeOutOfRange(seconds))?;
    if seconds == format::GO_ZERO_SECONDS && nanos == 0 {
        return Ok(Value::Null);
    }
    let text = format::rfc3339(seconds, micro.then_some(nanos / 1000))
        .ok_or(Problem::TimeOutOfRange(seconds))?;
    Ok(Value::String(text))
}

/// `intstr.IntOrString`: type 1 (0 int, 1 string), intVal 2, strVal 3.
fn int_or_string(chunks: &[&[u8]]) -> Result<Value> {
    let kind = last_varint(chunks, 1)?.unwrap_or(0) as i64;
    match kind {
        0 => Ok(Value::from(last_varint(chunks, 2)?.unwrap_or(0) as i32)),
        1 => Ok(Value::String(
            last_bytes(chunks, 3)?
                .map(format::go_string)
                .unwrap_or_default(),
        )),
        other => Err(Failure::from(Problem::IntOrStringType(other)).at(Step::Field("type"))),
    }
}

/// The last varint value of field `tag` across the chunks.
fn last_varint(chunks: &[&[u8]], tag: u32) -> Result<Option<u64>> {
    let mut found = None;
    for chunk in chunks {
        let mut reader = Reader::new(chunk);
        while let Some((t, wire)) = next(&mut reader)? {
            if t == tag {
                match wire {
                    Wire::Varint(v) => found = Some(v),
                    other => return Err(wrong_wire("varint", other).at(Step::Tag(tag))),
                }
            }
        }
    }
    Ok(found)
}

/// The last length-delimited value of field `tag` across the chunks.
fn last_bytes<'a>(chunks: &[&'a [u8]], tag: u32) -> Result<Option<&'a [u8]>> {
    let mut found = None;
    for chunk in chunks {
        let mut reader = Reader::new(chunk);
        while let Some((t, wire)) = next(&mut reader)? {
            if t == tag {
                found = Some(expect_bytes(wire).map_err(|f| f.at(Step::Tag(tag)))?);
            }
        }
    }
    Ok(found)
}
