//! Name, label, annotation and object-metadata rules shared by every type.
//!
//! These follow upstream's `k8s.io/apimachinery/pkg/util/validation`,
//! `pkg/api/validation` (object meta), `pkg/api/validation/path` (names in
//! URLs) and `pkg/apis/meta/v1/validation` (labels, selectors), with
//! upstream's exact messages: clients (and people) match on them.
//!
//! The `is_*` functions return the list of things wrong with a string, as
//! upstream's do (empty when valid); the `validate_*` functions return
//! [`FieldError`]s with their field paths. Everything works on
//! `serde_json::Value` and tolerates any shape: a field of the wrong type is
//! treated as absent, nothing here panics.

use serde_json::{Map, Value};

use crate::field::FieldError;

/// Longest DNS-1123 label.
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
/// Longest DNS-1123 subdomain.
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
/// Longest DNS-1035 label.
pub const DNS1035_LABEL_MAX_LENGTH: usize = 63;
/// Longest name part of a qualified name.
pub const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
/// Longest label value.
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;
/// Most bytes all of an object's annotations (keys and values) may take.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// Upstream's `FieldImmutableErrorMsg`.
pub const FIELD_IMMUTABLE: &str = "field is immutable";
/// Upstream's `IsNegativeErrorMsg`.
pub const IS_NEGATIVE: &str = "must be greater than or equal to 0";
/// Upstream's `EmptyError()`.
pub const EMPTY_ERROR: &str = "must be non-empty";

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_ERR: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const C_IDENTIFIER_FMT: &str = "[A-Za-z_][A-Za-z0-9_]*";
const C_IDENTIFIER_ERR: &str = "a valid C identifier must start with alphabetic character or '_', followed by a string of alphanumeric characters or '_'";
const ENV_VAR_NAME_FMT: &str = "[-._a-zA-Z][-._a-zA-Z0-9]*";
const ENV_VAR_NAME_ERR: &str = "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit";
const RELAXED_ENV_VAR_NAME_ERR: &str = "a valid environment variable name must consist only of printable ASCII characters other than '='";
const CONFIG_MAP_KEY_FMT: &str = "[-._a-zA-Z0-9]+";
const CONFIG_MAP_KEY_ERR: &str =
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'";
const PERCENT_FMT: &str = "[0-9]+%";
const PERCENT_ERR: &str =
    "a valid percent string must be a numeric string followed by an ending '%'";
const HTTP_HEADER_NAME_FMT: &str = "[-A-Za-z0-9]+";
const HTTP_HEADER_NAME_ERR: &str =
    "a valid HTTP header must consist of alphanumeric characters or '-'";

/// Upstream's `MaxLenError`.
pub fn max_len_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

/// Upstream's `InclusiveRangeError`.
pub fn inclusive_range_error(lo: i64, hi: i64) -> String {
    format!("must be between {lo} and {hi}, inclusive")
}

/// Upstream's `RegexError`: the message, examples and the pattern.
pub fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let quoted: Vec<String> = examples.iter().map(|e| format!("'{e}', ")).collect();
    format!(
        "{msg} (e.g. {}regex used for validation is '{fmt}')",
        quoted.join("or ")
    )
}

// --- character-class matchers (upstream uses regexes; these are the same
// languages written out by hand) ---

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn matches_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&first), Some(&last)) => {
            is_lower_alnum(first)
                && is_lower_alnum(last)
                && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
        }
        _ => false,
    }
}

/// `label(\.label)*`
fn matches_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(matches_dns1123_label)
}

/// `[a-z]([-a-z0-9]*[a-z0-9])?`
fn matches_dns1035_label(s: &str) -> bool {
    matches_dns1123_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn matches_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter()
                    .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

// --- the string rules ---

/// A DNS (RFC 1123) label: at most 63 characters of `[a-z0-9-]`, starting
/// and ending alphanumeric. Upstream's `IsDNS1123Label`.
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !matches_dns1123_label(value) {
        if matches_dns1123_subdomain(value) {
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_ERR,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// A DNS (RFC 1123) subdomain: dot-separated labels, at most 253
/// characters. Upstream's `IsDNS1123Subdomain`.
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !matches_dns1123_subdomain(value) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_ERR,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// A DNS (RFC 1035) label: like an RFC 1123 label but starting with a
/// letter. Upstream's `IsDNS1035Label`.
pub fn is_dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1035_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1035_LABEL_MAX_LENGTH));
    }
    if !matches_dns1035_label(value) {
        errs.push(regex_error(
            DNS1035_LABEL_ERR,
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// A qualified name, the form of label keys, annotation keys and finalizers:
/// an optional DNS subdomain prefix and `/`, then a name of at most 63
/// characters. Upstream's `IsQualifiedName`.
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push(format!("prefix part {EMPTY_ERROR}"));
            } else {
                errs.extend(
                    is_dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(
                    QUALIFIED_NAME_ERR,
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"]
                )
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push(format!("name part {EMPTY_ERROR}"));
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        errs.push(format!(
            "name part {}",
            max_len_error(QUALIFIED_NAME_MAX_LENGTH)
        ));
    }
    if !matches_qualified_name_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_ERR,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// A label value: empty, or a qualified name's name part. Upstream's
/// `IsValidLabelValue`.
pub fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errs.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !(value.is_empty() || matches_qualified_name_part(value)) {
        errs.push(regex_error(
            LABEL_VALUE_ERR,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// A C identifier (format only, not length). Upstream's `IsCIdentifier`.
pub fn is_c_identifier(value: &str) -> Vec<String> {
    let b = value.as_bytes();
    let ok = match b.first() {
        Some(&first) => {
            (first.is_ascii_alphabetic() || first == b'_')
                && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_')
        }
        None => false,
    };
    if ok {
        Vec::new()
    } else {
        vec![regex_error(
            C_IDENTIFIER_ERR,
            C_IDENTIFIER_FMT,
            &["my_name", "MY_NAME", "MyName"],
        )]
    }
}

fn has_chdir_prefix(value: &str) -> Option<String> {
    if value == "." {
        Some("must not be '.'".to_string())
    } else if value == ".." {
        Some("must not be '..'".to_string())
    } else if value.starts_with("..") {
        Some("must not start with '..'".to_string())
    } else {
        None
    }
}

/// A strict environment variable name. Upstream's `IsEnvVarName`.
pub fn is_env_var_name(value: &str) -> Vec<String> {
    let b = value.as_bytes();
    let class = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_');
    let ok = match b.first() {
        Some(&first) => !first.is_ascii_digit() && b.iter().all(|&c| class(c)),
        None => false,
    };
    let mut errs = Vec::new();
    if !ok {
        errs.push(regex_error(
            ENV_VAR_NAME_ERR,
            ENV_VAR_NAME_FMT,
            &["my.env-name", "MY_ENV.NAME", "MyEnvName1"],
        ));
    }
    errs.extend(has_chdir_prefix(value));
    errs
}

/// An environment variable name as Kubernetes 1.32 accepts it (the
/// `RelaxedEnvironmentVariableValidation` gate is on by default there): any
/// printable ASCII but `=`. Upstream's `IsRelaxedEnvVarName`.
pub fn is_relaxed_env_var_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.is_empty() {
        errs.push(format!("environment variable name {EMPTY_ERROR}"));
    }
    if value.chars().any(|c| !(' '..='~').contains(&c) || c == '=') {
        errs.push(RELAXED_ENV_VAR_NAME_ERR.to_string());
    }
    errs
}

/// A key in a ConfigMap or Secret. Upstream's `IsConfigMapKey`.
pub fn is_config_map_key(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    let ok = !value.is_empty()
        && value
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'));
    if !ok {
        errs.push(regex_error(
            CONFIG_MAP_KEY_ERR,
            CONFIG_MAP_KEY_FMT,
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    errs.extend(has_chdir_prefix(value));
    errs
}

/// A port number, 1 to 65535. Upstream's `IsValidPortNum`.
pub fn is_valid_port_num(port: i64) -> Vec<String> {
    is_in_range(port, 1, 65535)
}

/// `lo <= value <= hi`. Upstream's `IsInRange`.
pub fn is_in_range(value: i64, lo: i64, hi: i64) -> Vec<String> {
    if (lo..=hi).contains(&value) {
        Vec::new()
    } else {
        vec![inclusive_range_error(lo, hi)]
    }
}

/// An IANA service name, as container and service port names must be.
/// Upstream's `IsValidPortName`.
pub fn is_valid_port_name(port: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if port.len() > 15 {
        errs.push(max_len_error(15));
    }
    if port.is_empty() || !port.bytes().all(|c| is_lower_alnum(c) || c == b'-') {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if !port.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".into());
    }
    if port.contains("--") {
        errs.push("must not contain consecutive hyphens".into());
    }
    if port.starts_with('-') || port.ends_with('-') {
        errs.push("must not begin or end with a hyphen".into());
    }
    errs
}

/// `[0-9]+%`. Upstream's `IsValidPercent`.
pub fn is_valid_percent(value: &str) -> Vec<String> {
    let ok = value
        .strip_suffix('%')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()));
    if ok {
        Vec::new()
    } else {
        vec![regex_error(PERCENT_ERR, PERCENT_FMT, &["1%", "93%"])]
    }
}

/// `[-A-Za-z0-9]+`. Upstream's `IsHTTPHeaderName`.
pub fn is_http_header_name(value: &str) -> Vec<String> {
    let ok = !value.is_empty()
        && value
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-');
    if ok {
        Vec::new()
    } else {
        vec![regex_error(
            HTTP_HEADER_NAME_ERR,
            HTTP_HEADER_NAME_FMT,
            &["X-Header-Name"],
        )]
    }
}

/// A name that can appear as one segment of a URL path: not `.` or `..`,
/// without `/` or `%`. Upstream's `path.IsValidPathSegmentName`, which the
/// generic registry applies to every object's name.
pub fn validate_name_for_path(name: &str) -> Vec<String> {
    for bad in [".", ".."] {
        if name == bad {
            return vec![format!("may not be '{bad}'")];
        }
    }
    path_segment_prefix(name)
}

/// Upstream's `path.IsValidPathSegmentPrefix`: for a `generateName`.
fn path_segment_prefix(name: &str) -> Vec<String> {
    ["/", "%"]
        .iter()
        .filter(|bad| name.contains(**bad))
        .map(|bad| format!("may not contain '{bad}'"))
        .collect()
}

/// Which rule an object's name follows; upstream's `ValidateNameFunc`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// `NameIsDNSSubdomain`: most types (pods, configmaps, deployments, ...).
    Dns1123Subdomain,
    /// `NameIsDNSLabel`: namespaces, statefulsets.
    Dns1123Label,
    /// `NameIsDNS1035Label`: services.
    Dns1035Label,
    /// `path.ValidatePathSegmentName`: the generic registry's check, for
    /// types without a stricter rule.
    PathSegment,
}

impl NameRule {
    /// The problems with `name`. With `prefix`, `name` is a `generateName`
    /// that random characters will be appended to, so a trailing dash is
    /// fine.
    pub fn check(self, name: &str, prefix: bool) -> Vec<String> {
        let masked;
        let name = if prefix && self != NameRule::PathSegment {
            masked = mask_trailing_dash(name);
            masked.as_str()
        } else {
            name
        };
        match self {
            NameRule::Dns1123Subdomain => is_dns1123_subdomain(name),
            NameRule::Dns1123Label => is_dns1123_label(name),
            NameRule::Dns1035Label => is_dns1035_label(name),
            NameRule::PathSegment if prefix => path_segment_prefix(name),
            NameRule::PathSegment => validate_name_for_path(name),
        }
    }
}

/// Upstream's `maskTrailingDash`, quirk included: a trailing dash and the
/// character before it become one `a`.
fn mask_trailing_dash(name: &str) -> String {
    let b = name.as_bytes();
    if b.len() > 1 && name.ends_with('-') {
        let mut out = String::from_utf8_lossy(&b[..b.len() - 2]).into_owned();
        out.push('a');
        out
    } else {
        name.to_string()
    }
}

// --- field-level rules ---

fn str_of<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj.get(key).and_then(Value::as_str).unwrap_or("")
}

fn map_of<'a>(obj: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    obj.get(key).and_then(Value::as_object)
}

/// Label keys and values; errors are reported on `path` itself, as upstream
/// does (`metadata.labels: Invalid value: "a b": ...`).
pub fn validate_labels(labels: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(labels) = labels.as_object() else {
        return errs;
    };
    for (key, value) in labels {
        errs.extend(validate_label_name(key, path));
        let value = value.as_str().unwrap_or("");
        for msg in is_valid_label_value(value) {
            errs.push(FieldError::invalid(path, &Value::from(value), msg));
        }
    }
    errs
}

/// A label key. Upstream's `ValidateLabelName`.
pub fn validate_label_name(key: &str, path: &str) -> Vec<FieldError> {
    is_qualified_name(key)
        .into_iter()
        .map(|msg| FieldError::invalid(path, &Value::from(key), msg))
        .collect()
}

/// Annotation keys (qualified names, case-insensitively) and their total
/// size.
pub fn validate_annotations(annotations: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(annotations) = annotations.as_object() else {
        return errs;
    };
    let mut total = 0usize;
    for (key, value) in annotations {
        for msg in is_qualified_name(&key.to_lowercase()) {
            errs.push(FieldError::invalid(path, &Value::from(key.as_str()), msg));
        }
        total = total
            .saturating_add(key.len())
            .saturating_add(value.as_str().map_or(0, str::len));
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errs
}

/// Splits `apiVersion` as upstream's `ParseGroupVersion` does; `None` when
/// it has more than one `/`.
fn split_api_version(api_version: &str) -> Option<(&str, &str)> {
    if api_version.is_empty() || api_version == "/" {
        return Some(("", ""));
    }
    let mut parts = api_version.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(version), None, _) => Some(("", version)),
        (Some(group), Some(version), None) => Some((group, version)),
        _ => None,
    }
}

/// Owner references: each names an apiVersion, kind, name and uid; core
/// Events may not own anything; at most one is the controller.
pub fn validate_owner_references(refs: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(refs) = refs.as_array() else {
        return errs;
    };
    let mut first_controller: Option<String> = None;
    for r in refs {
        let api_version = str_of(r, "apiVersion");
        let kind = str_of(r, "kind");
        let (group, version) = split_api_version(api_version).unwrap_or(("", ""));
        if version.is_empty() {
            errs.push(FieldError::invalid(
                format!("{path}.apiVersion"),
                &Value::from(api_version),
                "version must not be empty",
            ));
        }
        if kind.is_empty() {
            errs.push(FieldError::invalid(
                format!("{path}.kind"),
                &Value::from(kind),
                "must not be empty",
            ));
        }
        for key in ["name", "uid"] {
            let v = str_of(r, key);
            if v.is_empty() {
                errs.push(FieldError::invalid(
                    format!("{path}.{key}"),
                    &Value::from(v),
                    "must not be empty",
                ));
            }
        }
        if group.is_empty() && version == "v1" && kind == "Event" {
            errs.push(FieldError::invalid(
                path,
                r,
                "/v1, Kind=Event is disallowed from being an owner",
            ));
        }
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            let current = format!("{kind}/{}", str_of(r, "name"));
            match &first_controller {
                Some(first) => errs.push(FieldError::invalid(
                    path,
                    &Value::Array(refs.clone()),
                    format!(
                        "Only one reference can have Controller set to true. Found \"true\" in references for {first} and {current}"
                    ),
                )),
                None => first_controller = Some(current),
            }
        }
    }
    errs
}

/// The finalizers every Kubernetes type knows without a prefix.
const STANDARD_FINALIZERS: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];

/// Finalizer names: qualified names, and without a `/` one of the standard
/// ones; `orphan` and `foregroundDeletion` exclude each other.
pub fn validate_finalizers(finalizers: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(list) = finalizers.as_array() else {
        return errs;
    };
    let names: Vec<&str> = list.iter().map(|f| f.as_str().unwrap_or("")).collect();
    for name in &names {
        for msg in is_qualified_name(name) {
            errs.push(FieldError::invalid(path, &Value::from(*name), msg));
        }
    }
    if names.contains(&"orphan") && names.contains(&"foregroundDeletion") {
        errs.push(FieldError::invalid(
            path,
            finalizers,
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    errs.extend(validate_kube_finalizer_names(&names, path));
    errs
}

/// Core's extra rule: a finalizer without a domain must be a standard one.
fn validate_kube_finalizer_names(names: &[&str], path: &str) -> Vec<FieldError> {
    names
        .iter()
        .enumerate()
        .filter(|(_, n)| !n.contains('/') && !STANDARD_FINALIZERS.contains(n))
        .map(|(i, n)| {
            FieldError::invalid(
                format!("{path}[{i}]"),
                &Value::from(*n),
                "name is neither a standard finalizer name nor is it fully qualified",
            )
        })
        .collect()
}

/// `value` must not be negative. Upstream's `ValidateNonnegativeField`.
pub fn validate_nonnegative(value: i64, path: &str) -> Option<FieldError> {
    (value < 0).then(|| FieldError::invalid(path, &Value::from(value), IS_NEGATIVE))
}

/// Whether two values are equal as upstream's semantic equality sees
/// fields that were decoded into Go structs: absent, `null`, empty strings,
/// empty lists and empty maps are all the zero value.
pub fn semantic_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.iter()
                .all(|(k, v)| semantic_eq(v, y.get(k).unwrap_or(&Value::Null)))
                && y.iter().all(|(k, v)| x.contains_key(k) || is_zero(v))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| semantic_eq(a, b))
        }
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ if is_zero(a) && is_zero(b) => true,
        _ => a == b,
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_zero),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
    }
}

/// `new` must equal `old`: `Invalid value: <new>: field is immutable`.
/// Upstream's `ValidateImmutableField`.
pub fn validate_immutable(new: &Value, old: &Value, path: &str) -> Option<FieldError> {
    (!semantic_eq(new, old)).then(|| FieldError::invalid(path, new, FIELD_IMMUTABLE))
}

/// Validates an object's `metadata` on create, as upstream's core
/// `ValidateObjectMeta` does: `generateName` and `name` by `name_rule`,
/// `namespace` required (and a DNS label) exactly when `namespaced`,
/// `generation` not negative, labels, annotations, owner references and
/// finalizers. Name generation is expected to have run already.
///
/// Upstream's registry clears `metadata.namespace` of cluster-scoped
/// objects before validating; callers should do the same, or this reports
/// `metadata.namespace: Forbidden: not allowed on this type`.
pub fn validate_object_meta(
    meta: &Value,
    namespaced: bool,
    name_rule: NameRule,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let generate_name = str_of(meta, "generateName");
    if !generate_name.is_empty() {
        for msg in name_rule.check(generate_name, true) {
            errs.push(FieldError::invalid(
                "metadata.generateName",
                &Value::from(generate_name),
                msg,
            ));
        }
    }
    let name = str_of(meta, "name");
    if name.is_empty() {
        errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        for msg in name_rule.check(name, false) {
            errs.push(FieldError::invalid(
                "metadata.name",
                &Value::from(name),
                msg,
            ));
        }
    }
    let namespace = str_of(meta, "namespace");
    if namespaced {
        if namespace.is_empty() {
            errs.push(FieldError::required("metadata.namespace", ""));
        } else {
            for msg in NameRule::Dns1123Label.check(namespace, false) {
                errs.push(FieldError::invalid(
                    "metadata.namespace",
                    &Value::from(namespace),
                    msg,
                ));
            }
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden(
            "metadata.namespace",
            "not allowed on this type",
        ));
    }
    errs.extend(common_meta(meta));
    errs.extend(validate_finalizers(
        meta.get("finalizers").unwrap_or(&Value::Null),
        "metadata.finalizers",
    ));
    errs
}

/// Generation, labels, annotations and owner references: checked on create
/// and on update.
fn common_meta(meta: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(generation) = meta.get("generation").and_then(Value::as_i64) {
        errs.extend(validate_nonnegative(generation, "metadata.generation"));
    }
    errs.extend(validate_labels(
        meta.get("labels").unwrap_or(&Value::Null),
        "metadata.labels",
    ));
    errs.extend(validate_annotations(
        meta.get("annotations").unwrap_or(&Value::Null),
        "metadata.annotations",
    ));
    errs.extend(validate_owner_references(
        meta.get("ownerReferences").unwrap_or(&Value::Null),
        "metadata.ownerReferences",
    ));
    errs
}

/// Validates `metadata` on update, as upstream's `ValidateObjectMetaUpdate`
/// does: name, namespace, uid, creationTimestamp, deletionTimestamp and
/// deletionGracePeriodSeconds are immutable, generation may not go down, no
/// finalizer may be added once deletion started, and labels, annotations,
/// owner references and finalizer names stay valid.
///
/// `metadata.resourceVersion` is not checked here: the storage layer fills
/// it in for unconditional updates before upstream validates.
pub fn validate_object_meta_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let null = Value::Null;
    if old.get("deletionTimestamp").is_some_and(|v| !v.is_null()) {
        let old_f: Vec<&str> = string_list(old.get("finalizers"));
        let mut extra: Vec<&str> = string_list(new.get("finalizers"))
            .into_iter()
            .filter(|f| !old_f.contains(f))
            .collect();
        extra.sort_unstable();
        extra.dedup();
        if !extra.is_empty() {
            let quoted: Vec<String> = extra.iter().map(|f| format!("{f:?}")).collect();
            errs.push(FieldError::forbidden(
                "metadata.finalizers",
                format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                    quoted.join(", ")
                ),
            ));
        }
    }
    let new_gen = new.get("generation").and_then(Value::as_i64).unwrap_or(0);
    let old_gen = old.get("generation").and_then(Value::as_i64).unwrap_or(0);
    if new_gen < old_gen {
        errs.push(FieldError::invalid(
            "metadata.generation",
            &Value::from(new_gen),
            "must not be decremented",
        ));
    }
    for key in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        let n = new.get(key).unwrap_or(&null);
        let o = old.get(key).unwrap_or(&null);
        errs.extend(validate_immutable(n, o, &format!("metadata.{key}")));
    }
    errs.extend(common_meta(new));
    let names = string_list(new.get("finalizers"));
    errs.extend(validate_kube_finalizer_names(&names, "metadata.finalizers"));
    errs
}

fn string_list(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// A `metav1.LabelSelector`: `matchLabels` as labels, `matchExpressions`
/// with qualified-name keys and operators `In`/`NotIn` (values required) or
/// `Exists`/`DoesNotExist` (values forbidden). Upstream's
/// `ValidateLabelSelector`.
pub fn validate_label_selector(selector: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(labels) = selector.get("matchLabels") {
        errs.extend(validate_labels(labels, &format!("{path}.matchLabels")));
    }
    let exprs = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (i, expr) in exprs.iter().enumerate() {
        let p = format!("{path}.matchExpressions[{i}]");
        let values = expr
            .get("values")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let operator = str_of(expr, "operator");
        match operator {
            "In" | "NotIn" => {
                if values == 0 {
                    errs.push(FieldError::required(
                        format!("{p}.values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if values > 0 {
                    errs.push(FieldError::forbidden(
                        format!("{p}.values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            other => errs.push(FieldError::invalid(
                format!("{p}.operator"),
                &Value::from(other),
                "not a valid selector operator",
            )),
        }
        errs.extend(validate_label_name(
            str_of(expr, "key"),
            &format!("{p}.key"),
        ));
        if let Some(vals) = expr.get("values").and_then(Value::as_array) {
            for (j, v) in vals.iter().enumerate() {
                let v = v.as_str().unwrap_or("");
                for msg in is_valid_label_value(v) {
                    errs.push(FieldError::invalid(
                        format!("{p}.values[{j}]"),
                        &Value::from(v),
                        msg,
                    ));
                }
            }
        }
    }
    errs
}

/// Whether a label selector selects nothing-in-particular (no matchLabels,
/// no matchExpressions): upstream rejects such selectors on workloads.
pub fn selector_is_empty(selector: &Value) -> bool {
    let labels = map_of(selector, "matchLabels").is_none_or(Map::is_empty);
    let exprs = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    labels && exprs
}

/// Whether `labels` satisfy `selector` (matchLabels and matchExpressions).
/// An invalid operator matches nothing.
pub fn selector_matches(selector: &Value, labels: &Value) -> bool {
    let get = |k: &str| labels.get(k).and_then(Value::as_str);
    if let Some(ml) = map_of(selector, "matchLabels") {
        for (k, v) in ml {
            if get(k) != v.as_str() {
                return false;
            }
        }
    }
    let exprs = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    exprs.iter().all(|expr| {
        let key = str_of(expr, "key");
        let values: Vec<&str> = string_list(expr.get("values"));
        match str_of(expr, "operator") {
            "In" => get(key).is_some_and(|v| values.contains(&v)),
            "NotIn" => get(key).is_none_or(|v| !values.contains(&v)),
            "Exists" => get(key).is_some(),
            "DoesNotExist" => get(key).is_none(),
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

    #[test]
    fn dns_names_match_upstream() {
        let cases: &[(&str, bool, bool, bool)] = &[
            // value, 1123 label, 1123 subdomain, 1035 label
            ("a", true, true, true),
            ("abc-123", true, true, true),
            ("1abc", true, true, false),
            ("a.b", false, true, false),
            ("", false, false, false),
            ("-a", false, false, false),
            ("a-", false, false, false),
            ("A", false, false, false),
            ("a..b", false, false, false),
            ("a_b", false, false, false),
            ("ü", false, false, false),
        ];
        for &(v, label, sub, l1035) in cases {
            assert_eq!(is_dns1123_label(v).is_empty(), label, "label {v:?}");
            assert_eq!(is_dns1123_subdomain(v).is_empty(), sub, "subdomain {v:?}");
            assert_eq!(is_dns1035_label(v).is_empty(), l1035, "1035 {v:?}");
        }
        assert_eq!(is_dns1123_subdomain("Foo"), vec![SUBDOMAIN_MSG.to_string()]);
        assert_eq!(is_dns1123_label("a.b"), vec!["must not contain dots"]);
        assert_eq!(
            is_dns1123_label("a_b"),
            vec![
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name', or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            ]
        );
        assert_eq!(
            is_dns1035_label("1a"),
            vec![
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name', or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
            ]
        );
        let long = "a".repeat(64);
        assert_eq!(
            is_dns1123_label(&long),
            vec!["must be no more than 63 characters"]
        );
        assert!(is_dns1123_subdomain(&"a".repeat(253)).is_empty());
        assert_eq!(is_dns1123_subdomain(&"a".repeat(254)).len(), 1);
    }

    #[test]
    fn regex_error_reads_like_upstream() {
        assert_eq!(
            regex_error("m", "f", &["a", "b"]),
            "m (e.g. 'a', or 'b', regex used for validation is 'f')"
        );
        assert_eq!(
            regex_error("m", "f", &[]),
            "m (regex used for validation is 'f')"
        );
    }

    #[test]
    fn qualified_names() {
        for ok in ["a", "A.b_c-D", "example.com/MyName", "k8s.io/a", "a1"] {
            assert!(is_qualified_name(ok).is_empty(), "{ok}");
        }
        assert_eq!(
            is_qualified_name("/a"),
            vec!["prefix part must be non-empty"]
        );
        assert_eq!(is_qualified_name("a/"), vec![
            "name part must be non-empty".to_string(),
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName', or 'my.name', or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".to_string(),
        ]);
        assert_eq!(
            is_qualified_name("Bad_/x")[0],
            format!("prefix part {SUBDOMAIN_MSG}")
        );
        assert!(is_qualified_name("a/b/c")[0].starts_with("a qualified name must consist of"));
        assert!(is_qualified_name("a/b/c")[0].ends_with(
            " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ));
        assert_eq!(
            is_qualified_name(&"a".repeat(64)),
            vec!["name part must be no more than 63 characters"]
        );
    }

    #[test]
    fn label_values() {
        assert!(is_valid_label_value("").is_empty());
        assert!(is_valid_label_value("my_value.1").is_empty());
        assert_eq!(
            is_valid_label_value("-x"),
            vec![
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue', or 'my_value', or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
            ]
        );
        assert_eq!(is_valid_label_value(&"a".repeat(64)).len(), 1);
    }

    #[test]
    fn other_string_rules() {
        assert!(is_c_identifier("_a1").is_empty());
        assert_eq!(is_c_identifier("1a").len(), 1);
        assert!(is_env_var_name("my.env-name").is_empty());
        assert_eq!(is_env_var_name("1A").len(), 1);
        assert_eq!(is_env_var_name(".."), vec!["must not be '..'".to_string()]);
        assert!(is_relaxed_env_var_name("1 weird:name").is_empty());
        assert_eq!(
            is_relaxed_env_var_name("A=B"),
            vec![RELAXED_ENV_VAR_NAME_ERR]
        );
        assert!(is_config_map_key("key.name").is_empty());
        assert_eq!(is_config_map_key("a/b").len(), 1);
        assert_eq!(is_config_map_key("..a"), vec!["must not start with '..'"]);
        assert!(is_valid_port_num(65535).is_empty());
        assert_eq!(
            is_valid_port_num(0),
            vec!["must be between 1 and 65535, inclusive"]
        );
        assert!(is_valid_port_name("http").is_empty());
        assert_eq!(
            is_valid_port_name("80"),
            vec!["must contain at least one letter (a-z)"]
        );
        assert_eq!(
            is_valid_port_name("a--b-"),
            vec![
                "must not contain consecutive hyphens",
                "must not begin or end with a hyphen"
            ]
        );
        assert!(is_valid_percent("25%").is_empty());
        assert_eq!(is_valid_percent("%").len(), 1);
        assert!(is_http_header_name("X-A").is_empty());
        assert_eq!(is_http_header_name("X A").len(), 1);
    }

    #[test]
    fn names_in_paths() {
        assert_eq!(validate_name_for_path("."), vec!["may not be '.'"]);
        assert_eq!(validate_name_for_path(".."), vec!["may not be '..'"]);
        assert_eq!(
            validate_name_for_path("a/b%"),
            vec!["may not contain '/'", "may not contain '%'"]
        );
        assert!(validate_name_for_path("Any_Thing.ok").is_empty());
        assert!(NameRule::PathSegment.check("..", true).is_empty());
    }

    #[test]
    fn generate_name_may_end_in_a_dash() {
        assert!(NameRule::Dns1123Subdomain.check("web-", true).is_empty());
        assert!(!NameRule::Dns1123Subdomain.check("web-", false).is_empty());
        assert!(!NameRule::Dns1123Label.check("-", true).is_empty());
        // upstream's quirk: the character before the dash is dropped too
        assert!(NameRule::Dns1035Label.check("a-", true).is_empty());
        // a multi-byte character before the dash must not panic
        assert!(!NameRule::Dns1123Label.check("éé-", true).is_empty());
    }

    #[test]
    fn object_meta_on_create() {
        let ok = json!({"name": "web", "namespace": "default", "labels": {"app": "web"}});
        assert!(validate_object_meta(&ok, true, NameRule::Dns1123Subdomain).is_empty());

        let errs = validate_object_meta(&json!({}), true, NameRule::Dns1123Subdomain);
        let msgs: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(
            msgs,
            vec![
                "metadata.name: Required value: name or generateName is required",
                "metadata.namespace: Required value",
            ]
        );

        let errs = validate_object_meta(&json!({"name": "Web"}), false, NameRule::Dns1123Subdomain);
        assert_eq!(
            errs[0].to_string(),
            format!("metadata.name: Invalid value: \"Web\": {SUBDOMAIN_MSG}")
        );

        let errs = validate_object_meta(
            &json!({"name": "a", "namespace": "x"}),
            false,
            NameRule::Dns1123Label,
        );
        assert_eq!(
            errs[0].to_string(),
            "metadata.namespace: Forbidden: not allowed on this type"
        );

        let errs = validate_object_meta(
            &json!({"name": "a.b", "namespace": "x"}),
            true,
            NameRule::Dns1035Label,
        );
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "metadata.name");

        let errs = validate_object_meta(
            &json!({"name": "a", "generateName": "Bad-"}),
            false,
            NameRule::Dns1123Subdomain,
        );
        assert_eq!(errs[0].field, "metadata.generateName");
    }

    #[test]
    fn labels_and_annotations() {
        let meta = json!({"name": "a", "labels": {"bad key": "ok", "k": "bad value"}});
        let errs = validate_object_meta(&meta, false, NameRule::Dns1123Subdomain);
        assert_eq!(errs.len(), 2);
        assert!(
            errs[0].to_string().starts_with(
                "metadata.labels: Invalid value: \"bad key\": name part must consist of"
            )
        );
        assert!(
            errs[1].to_string().starts_with(
                "metadata.labels: Invalid value: \"bad value\": a valid label must be"
            )
        );

        // annotation keys are checked case-insensitively
        let meta = json!({"name": "a", "annotations": {"Example.COM/Thing": "x"}});
        assert!(validate_object_meta(&meta, false, NameRule::Dns1123Subdomain).is_empty());

        let big = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT);
        let meta = json!({"name": "a", "annotations": {"k": big}});
        let errs = validate_object_meta(&meta, false, NameRule::Dns1123Subdomain);
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].to_string(),
            "metadata.annotations: Too long: may not be more than 262144 bytes"
        );
    }

    #[test]
    fn finalizers_and_owners() {
        let meta = json!({"name": "a", "finalizers": ["kubernetes", "example.com/x", "mine", "orphan", "foregroundDeletion"]});
        let errs = validate_object_meta(&meta, false, NameRule::Dns1123Subdomain);
        let msgs: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(
            msgs,
            vec![
                r#"metadata.finalizers: Invalid value: ["kubernetes","example.com/x","mine","orphan","foregroundDeletion"]: finalizer orphan and foregroundDeletion cannot be both set"#,
                r#"metadata.finalizers[2]: Invalid value: "mine": name is neither a standard finalizer name nor is it fully qualified"#,
            ]
        );

        let meta = json!({"name": "a", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "1", "controller": true},
            {"apiVersion": "", "kind": "", "name": "", "uid": "", "controller": true},
            {"apiVersion": "v1", "kind": "Event", "name": "e", "uid": "2"},
        ]});
        let errs = validate_object_meta(&meta, false, NameRule::Dns1123Subdomain);
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "metadata.ownerReferences.apiVersion",
                "metadata.ownerReferences.kind",
                "metadata.ownerReferences.name",
                "metadata.ownerReferences.uid",
                "metadata.ownerReferences",
                "metadata.ownerReferences",
            ]
        );
        assert_eq!(
            errs[0].to_string(),
            r#"metadata.ownerReferences.apiVersion: Invalid value: "": version must not be empty"#
        );
        assert!(errs[4].detail.starts_with("Only one reference can have Controller set to true. Found \"true\" in references for ReplicaSet/rs and /"));
        assert_eq!(
            errs[5].detail,
            "/v1, Kind=Event is disallowed from being an owner"
        );
    }

    #[test]
    fn object_meta_on_update() {
        let old = json!({"name": "a", "namespace": "n", "uid": "u1", "generation": 2,
            "creationTimestamp": "2024-01-01T00:00:00Z", "resourceVersion": "5"});
        let mut new = old.clone();
        new["labels"] = json!({"x": "y"});
        assert!(validate_object_meta_update(&new, &old).is_empty());

        new["name"] = json!("b");
        new["uid"] = json!("u2");
        new["generation"] = json!(1);
        let msgs: Vec<String> = validate_object_meta_update(&new, &old)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            msgs,
            vec![
                "metadata.generation: Invalid value: 1: must not be decremented",
                r#"metadata.name: Invalid value: "b": field is immutable"#,
                r#"metadata.uid: Invalid value: "u2": field is immutable"#,
            ]
        );

        // absent and empty are the same to upstream
        let old = json!({"name": "a", "uid": ""});
        let new = json!({"name": "a"});
        assert!(validate_object_meta_update(&new, &old).is_empty());

        let old = json!({"name": "a", "deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": ["a.io/x"]});
        let mut new = old.clone();
        new["finalizers"] = json!(["a.io/x", "b.io/y"]);
        let errs = validate_object_meta_update(&new, &old);
        assert_eq!(
            errs[0].to_string(),
            r#"metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{"b.io/y"}"#
        );
    }

    #[test]
    fn label_selectors() {
        let sel = json!({"matchLabels": {"app": "web"}, "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["a", "b"]},
            {"key": "x", "operator": "DoesNotExist"},
        ]});
        assert!(validate_label_selector(&sel, "spec.selector").is_empty());
        assert!(selector_matches(&sel, &json!({"app": "web", "tier": "a"})));
        assert!(!selector_matches(&sel, &json!({"app": "web", "tier": "c"})));
        assert!(!selector_matches(
            &sel,
            &json!({"app": "web", "tier": "a", "x": ""})
        ));
        assert!(!selector_is_empty(&sel));
        assert!(selector_is_empty(&json!({"matchLabels": {}})));

        let bad = json!({"matchExpressions": [
            {"key": "tier", "operator": "In"},
            {"key": "x", "operator": "Exists", "values": ["v"]},
            {"key": "y", "operator": "Near"},
        ]});
        let msgs: Vec<String> = validate_label_selector(&bad, "spec.selector")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            msgs,
            vec![
                "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
                "spec.selector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                r#"spec.selector.matchExpressions[2].operator: Invalid value: "Near": not a valid selector operator"#,
            ]
        );
    }

    #[test]
    fn semantic_equality_treats_zero_values_alike() {
        assert!(semantic_eq(&json!({"a": null}), &json!({})));
        assert!(semantic_eq(&json!({"a": []}), &json!({"a": null})));
        assert!(semantic_eq(&json!(1), &json!(1.0)));
        assert!(!semantic_eq(&json!({"a": 1}), &json!({})));
        assert!(!semantic_eq(&json!([1]), &json!([1, 2])));
    }

    #[test]
    fn odd_shapes_do_not_panic() {
        for meta in [
            json!(null),
            json!(5),
            json!([]),
            json!({"name": 5, "labels": [1], "annotations": "x", "finalizers": {}, "ownerReferences": [1, null]}),
        ] {
            let _ = validate_object_meta(&meta, true, NameRule::Dns1123Subdomain);
            let _ = validate_object_meta_update(&meta, &meta);
            let _ = validate_label_selector(&meta, "s");
            let _ = selector_matches(&meta, &meta);
        }
    }
}
