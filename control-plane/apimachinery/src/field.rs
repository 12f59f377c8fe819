//! Field errors: one thing wrong with one field, worded as upstream words it.
//!
//! The apiserver turns a list of these into a `Status` with reason `Invalid`,
//! one `cause` per error, and the message
//! `Pod "web" is invalid: spec.containers[0].image: Required value`
//! (several errors are joined as `[a, b]`, as upstream's aggregate does).

use std::fmt;

/// Upstream's `field.ErrorType`, which decides the wording and the cause's
/// `reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// "Required value" (`FieldValueRequired`).
    Required,
    /// "Invalid value" (`FieldValueInvalid`).
    Invalid,
    /// "Unsupported value" (`FieldValueNotSupported`).
    NotSupported,
    /// "Duplicate value" (`FieldValueDuplicate`).
    Duplicate,
    /// "Forbidden" (`FieldValueForbidden`).
    Forbidden,
    /// "Too long" (`FieldValueTooLong`).
    TooLong,
    /// "Too many" (`FieldValueTooMany`).
    TooMany,
    /// "Not found" (`FieldValueNotFound`).
    NotFound,
}

impl ErrorKind {
    /// The cause reason in a `Status`, e.g. `FieldValueRequired`.
    pub fn reason(self) -> &'static str {
        match self {
            ErrorKind::Required => "FieldValueRequired",
            ErrorKind::Invalid => "FieldValueInvalid",
            ErrorKind::NotSupported => "FieldValueNotSupported",
            ErrorKind::Duplicate => "FieldValueDuplicate",
            ErrorKind::Forbidden => "FieldValueForbidden",
            ErrorKind::TooLong => "FieldValueTooLong",
            ErrorKind::TooMany => "FieldValueTooMany",
            ErrorKind::NotFound => "FieldValueNotFound",
        }
    }

    /// The words upstream prints, e.g. `Required value`.
    pub fn words(self) -> &'static str {
        match self {
            ErrorKind::Required => "Required value",
            ErrorKind::Invalid => "Invalid value",
            ErrorKind::NotSupported => "Unsupported value",
            ErrorKind::Duplicate => "Duplicate value",
            ErrorKind::Forbidden => "Forbidden",
            ErrorKind::TooLong => "Too long",
            ErrorKind::TooMany => "Too many",
            ErrorKind::NotFound => "Not found",
        }
    }
}

/// One thing wrong with one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub kind: ErrorKind,
    /// The field path as upstream prints it: `spec.containers[0].name`,
    /// `metadata.labels[app]`.
    pub field: String,
    /// The offending value, already rendered as upstream renders it (strings
    /// quoted: `"Foo"`), for `Invalid`, `NotSupported` and `Duplicate`.
    pub value: Option<String>,
    /// What is wrong, in upstream's words; may be empty.
    pub detail: String,
}

impl FieldError {
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            kind: ErrorKind::Required,
            field: field.into(),
            value: None,
            detail: detail.into(),
        }
    }

    /// `value` is rendered with [`render_value`].
    pub fn invalid(
        field: impl Into<String>,
        value: &serde_json::Value,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            kind: ErrorKind::Invalid,
            field: field.into(),
            value: Some(render_value(value)),
            detail: detail.into(),
        }
    }

    /// `supported` lists the accepted values, as upstream appends them.
    pub fn not_supported(
        field: impl Into<String>,
        value: &serde_json::Value,
        supported: &[&str],
    ) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        FieldError {
            kind: ErrorKind::NotSupported,
            field: field.into(),
            value: Some(render_value(value)),
            detail,
        }
    }

    pub fn duplicate(field: impl Into<String>, value: &serde_json::Value) -> Self {
        FieldError {
            kind: ErrorKind::Duplicate,
            field: field.into(),
            value: Some(render_value(value)),
            detail: String::new(),
        }
    }

    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            kind: ErrorKind::Forbidden,
            field: field.into(),
            value: None,
            detail: detail.into(),
        }
    }

    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        FieldError {
            kind: ErrorKind::TooLong,
            field: field.into(),
            value: None,
            detail: format!("may not be more than {max} bytes"),
        }
    }

    pub fn not_found(field: impl Into<String>, value: &serde_json::Value) -> Self {
        FieldError {
            kind: ErrorKind::NotFound,
            field: field.into(),
            value: Some(render_value(value)),
            detail: String::new(),
        }
    }

    /// The cause message without the field, as upstream puts in
    /// `details.causes[].message`: `Invalid value: "Foo": a lowercase ...`.
    pub fn cause_message(&self) -> String {
        let mut out = self.kind.words().to_string();
        if let Some(value) = &self.value {
            out.push_str(": ");
            out.push_str(value);
        }
        if !self.detail.is_empty() {
            out.push_str(": ");
            out.push_str(&self.detail);
        }
        out
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.cause_message())
    }
}

/// Renders a value the way upstream's field errors print it: strings quoted,
/// numbers and booleans bare, anything else as compact JSON.
pub fn render_value(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// Joins errors as upstream's aggregate does: one error alone, several as
/// `[a, b]`.
pub fn join(errors: &[FieldError]) -> String {
    match errors {
        [one] => one.to_string(),
        many => {
            let parts: Vec<String> = many.iter().map(ToString::to_string).collect();
            format!("[{}]", parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_read_like_upstream() {
        let e = FieldError::invalid(
            "metadata.name",
            &json!("Foo"),
            "a lowercase RFC 1123 subdomain",
        );
        assert_eq!(
            e.to_string(),
            r#"metadata.name: Invalid value: "Foo": a lowercase RFC 1123 subdomain"#
        );
        let r = FieldError::required("spec.containers[0].image", "");
        assert_eq!(r.to_string(), "spec.containers[0].image: Required value");
        assert_eq!(join(std::slice::from_ref(&e)), e.to_string());
        assert!(join(&[e, r]).starts_with("[metadata.name"));
    }
}
