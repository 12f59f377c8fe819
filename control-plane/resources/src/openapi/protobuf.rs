//! The v2 document as the protobuf message client-go asks for:
//! `application/com.github.proto-openapi.spec.v2@v1.0+protobuf`, a gnostic
//! `openapi.v2.Document`.
//!
//! client-go's `DiscoveryClient.OpenAPISchema` accepts nothing else, and
//! kubectl 1.32 still falls back to it where the v3 documents cannot answer
//! (client-side validation of a `kind: List`, `explain -o
//! plaintext-openapiv2`). The encoding is written by hand for the messages
//! the v2 document uses; field numbers are gnostic's `OpenAPIv2.proto`.
//! Vendor extensions carry their value as YAML text, as gnostic does; JSON
//! is YAML, so the JSON text is written.

use serde_json::{Map, Value};

/// A protobuf message being written: fields appended in order.
#[derive(Default)]
struct Message(Vec<u8>);

impl Message {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire_type: u8) {
        self.varint((u64::from(field) << 3) | u64::from(wire_type));
    }

    fn bytes(&mut self, field: u32, bytes: &[u8]) {
        self.key(field, 2);
        self.varint(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
    }

    /// A string field; proto3 leaves empty strings out.
    fn string(&mut self, field: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }

    fn strings<'a>(&mut self, field: u32, values: impl IntoIterator<Item = &'a str>) {
        for s in values {
            self.bytes(field, s.as_bytes());
        }
    }

    fn boolean(&mut self, field: u32, b: bool) {
        if b {
            self.key(field, 0);
            self.varint(1);
        }
    }

    /// An embedded message; written even when empty, so that its presence
    /// (a schema's `properties: {}`) survives.
    fn message(&mut self, field: u32, m: Message) {
        self.bytes(field, &m.0);
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn str_list(v: &Value, key: &str) -> Vec<String> {
    match v.get(key) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// `Any{yaml}`.
fn any(value: &Value) -> Message {
    let mut m = Message::default();
    m.string(2, &value.to_string());
    m
}

/// Repeated `NamedAny` vendor extensions: every `x-` key of `object`.
fn extensions(m: &mut Message, field: u32, object: &Map<String, Value>) {
    for (k, v) in object.iter().filter(|(k, _)| k.starts_with("x-")) {
        let mut named = Message::default();
        named.string(1, k);
        named.message(2, any(v));
        m.message(field, named);
    }
}

/// Encodes the v2 document.
pub(super) fn document(doc: &Value) -> Vec<u8> {
    let mut m = Message::default();
    m.string(1, str_of(doc, "swagger"));
    if let Some(info) = doc.get("info") {
        let mut i = Message::default();
        i.string(1, str_of(info, "title"));
        i.string(2, str_of(info, "version"));
        m.message(2, i);
    }
    if let Some(Value::Object(paths)) = doc.get("paths") {
        let mut p = Message::default();
        for (path, item) in paths {
            let mut named = Message::default();
            named.string(1, path);
            named.message(2, path_item(item));
            p.message(2, named);
        }
        m.message(8, p);
    }
    if let Some(Value::Object(defs)) = doc.get("definitions") {
        let mut d = Message::default();
        for (name, s) in defs {
            d.message(1, named_schema(name, s));
        }
        m.message(9, d);
    }
    if let Some(Value::Object(params)) = doc.get("parameters") {
        let mut d = Message::default();
        for (name, p) in params {
            let mut named = Message::default();
            named.string(1, name);
            named.message(2, parameter(p));
            d.message(1, named);
        }
        m.message(10, d);
    }
    if let Some(Value::Array(security)) = doc.get("security") {
        for requirement in security.iter().filter_map(Value::as_object) {
            let mut r = Message::default();
            for (name, scopes) in requirement {
                let mut values = Message::default();
                values.strings(
                    1,
                    scopes
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str),
                );
                let mut named = Message::default();
                named.string(1, name);
                named.message(2, values);
                r.message(1, named);
            }
            m.message(12, r);
        }
    }
    if let Some(Value::Object(defs)) = doc.get("securityDefinitions") {
        let mut d = Message::default();
        for (name, def) in defs {
            // Only API keys are used.
            let mut key = Message::default();
            key.string(1, str_of(def, "type"));
            key.string(2, str_of(def, "name"));
            key.string(3, str_of(def, "in"));
            key.string(4, str_of(def, "description"));
            let mut item = Message::default();
            item.message(2, key);
            let mut named = Message::default();
            named.string(1, name);
            named.message(2, item);
            d.message(1, named);
        }
        m.message(13, d);
    }
    m.0
}

fn path_item(item: &Value) -> Message {
    let mut m = Message::default();
    for (method, field) in [
        ("get", 2),
        ("put", 3),
        ("post", 4),
        ("delete", 5),
        ("options", 6),
        ("head", 7),
        ("patch", 8),
    ] {
        if let Some(op) = item.get(method) {
            m.message(field, operation(op));
        }
    }
    for p in item
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(9, parameters_item(p));
    }
    if let Some(object) = item.as_object() {
        extensions(&mut m, 10, object);
    }
    m
}

fn operation(op: &Value) -> Message {
    let mut m = Message::default();
    m.strings(1, str_list(op, "tags").iter().map(String::as_str));
    m.string(3, str_of(op, "description"));
    m.string(5, str_of(op, "operationId"));
    m.strings(6, str_list(op, "produces").iter().map(String::as_str));
    m.strings(7, str_list(op, "consumes").iter().map(String::as_str));
    for p in op
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(8, parameters_item(p));
    }
    if let Some(Value::Object(responses)) = op.get("responses") {
        let mut rs = Message::default();
        for (code, r) in responses {
            let mut response = Message::default();
            response.string(1, str_of(r, "description"));
            if let Some(s) = r.get("schema") {
                let mut item = Message::default();
                item.message(1, schema(s));
                response.message(2, item);
            }
            let mut value = Message::default();
            value.message(1, response);
            let mut named = Message::default();
            named.string(1, code);
            named.message(2, value);
            rs.message(1, named);
        }
        m.message(9, rs);
    }
    m.strings(10, str_list(op, "schemes").iter().map(String::as_str));
    if let Some(object) = op.as_object() {
        extensions(&mut m, 13, object);
    }
    m
}

/// `ParametersItem`: a reference or a parameter.
fn parameters_item(p: &Value) -> Message {
    let mut m = Message::default();
    if let Some(r) = p.get("$ref").and_then(Value::as_str) {
        let mut reference = Message::default();
        reference.string(1, r);
        m.message(2, reference);
    } else {
        m.message(1, parameter(p));
    }
    m
}

fn parameter(p: &Value) -> Message {
    let mut m = Message::default();
    let location = str_of(p, "in");
    if location == "body" {
        let mut b = Message::default();
        b.string(1, str_of(p, "description"));
        b.string(2, str_of(p, "name"));
        b.string(3, location);
        b.boolean(4, p.get("required") == Some(&Value::Bool(true)));
        if let Some(s) = p.get("schema") {
            b.message(5, schema(s));
        }
        m.message(1, b);
        return m;
    }
    // Query and path sub-schemas share their first fields and differ from
    // `type` on; header and form data parameters are not used.
    let (sub_field, type_field, unique_field) = if location == "path" {
        (4, 5, 19)
    } else {
        (3, 6, 20)
    };
    let mut s = Message::default();
    s.boolean(1, p.get("required") == Some(&Value::Bool(true)));
    s.string(2, location);
    s.string(3, str_of(p, "description"));
    s.string(4, str_of(p, "name"));
    s.string(type_field, str_of(p, "type"));
    s.boolean(
        unique_field,
        p.get("uniqueItems") == Some(&Value::Bool(true)),
    );
    let mut non_body = Message::default();
    non_body.message(sub_field, s);
    m.message(2, non_body);
    m
}

fn named_schema(name: &str, s: &Value) -> Message {
    let mut named = Message::default();
    named.string(1, name);
    named.message(2, schema(s));
    named
}

fn schema(s: &Value) -> Message {
    let mut m = Message::default();
    let Some(object) = s.as_object() else {
        return m;
    };
    m.string(1, str_of(s, "$ref"));
    m.string(2, str_of(s, "format"));
    m.string(3, str_of(s, "title"));
    m.string(4, str_of(s, "description"));
    if let Some(default) = s.get("default") {
        m.message(5, any(default));
    }
    m.boolean(16, s.get("uniqueItems") == Some(&Value::Bool(true)));
    m.strings(19, str_list(s, "required").iter().map(String::as_str));
    for e in s
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(20, any(e));
    }
    match s.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            let mut a = Message::default();
            a.key(2, 0);
            a.varint(u64::from(*b));
            m.message(21, a);
        }
        Some(v @ Value::Object(_)) => {
            let mut a = Message::default();
            a.message(1, schema(v));
            m.message(21, a);
        }
        _ => {}
    }
    let types = str_list(s, "type");
    if !types.is_empty() {
        let mut t = Message::default();
        t.strings(1, types.iter().map(String::as_str));
        m.message(22, t);
    }
    if let Some(items) = s.get("items") {
        let mut i = Message::default();
        match items {
            Value::Array(list) => {
                for item in list {
                    i.message(1, schema(item));
                }
            }
            item => i.message(1, schema(item)),
        }
        m.message(23, i);
    }
    for a in s
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(24, schema(a));
    }
    if let Some(Value::Object(props)) = s.get("properties") {
        let mut p = Message::default();
        for (name, prop) in props {
            p.message(1, named_schema(name, prop));
        }
        m.message(25, p);
    }
    m.boolean(27, s.get("readOnly") == Some(&Value::Bool(true)));
    extensions(&mut m, 31, object);
    m
}
