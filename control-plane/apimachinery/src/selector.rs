//! Label and field selectors, as `?labelSelector=` and `?fieldSelector=`
//! carry them.
//!
//! Label selectors: `app=web,tier!=db,env in (a,b),env notin (c),has,!lacks,
//! replicas>1`. Field selectors: `a=b,c!=d` with `\` escaping `,`, `=` and
//! `!`. Parse errors are worded as upstream's so that clients see the same
//! message.

use std::collections::BTreeMap;

/// A selector that cannot be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    Exists,
    NotExists,
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Greater(i64),
    Less(i64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    pub fn parse(text: &str) -> Result<LabelSelector, SelectorError> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(part)?);
        }
        Ok(LabelSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| {
            let value = labels.get(&r.key);
            match &r.op {
                Op::Exists => value.is_some(),
                Op::NotExists => value.is_none(),
                Op::Equals(v) => value == Some(v),
                Op::NotEquals(v) => value != Some(v),
                Op::In(vs) => value.is_some_and(|x| vs.contains(x)),
                Op::NotIn(vs) => value.is_none_or(|x| !vs.contains(x)),
                Op::Greater(n) => value
                    .and_then(|x| x.parse::<i64>().ok())
                    .is_some_and(|x| x > *n),
                Op::Less(n) => value
                    .and_then(|x| x.parse::<i64>().ok())
                    .is_some_and(|x| x < *n),
            }
        })
    }
}

/// Splits on commas that are not inside `( )`.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn invalid(part: &str, why: &str) -> SelectorError {
    SelectorError(format!("unable to parse requirement: {why}: {part:?}"))
}

fn parse_requirement(part: &str) -> Result<Requirement, SelectorError> {
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement {
            key: check_key(key.trim(), part)?,
            op: Op::NotExists,
        });
    }
    for (token, is_in) in [(" notin ", false), (" in ", true)] {
        if let Some(at) = part.find(token) {
            let key = check_key(part[..at].trim(), part)?;
            let rest = part[at + token.len()..].trim();
            let inner = rest
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| invalid(part, "set values must be enclosed in parentheses"))?;
            let values: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).collect();
            for v in &values {
                check_value(v, part)?;
            }
            let op = if is_in {
                Op::In(values)
            } else {
                Op::NotIn(values)
            };
            return Ok(Requirement { key, op });
        }
    }
    for (token, kind) in [("!=", 0), ("==", 1), ("=", 1), (">", 2), ("<", 3)] {
        if let Some(at) = part.find(token) {
            let key = check_key(part[..at].trim(), part)?;
            let value = part[at + token.len()..].trim().to_string();
            let op = match kind {
                0 => Op::NotEquals(check_value(&value, part)?),
                1 => Op::Equals(check_value(&value, part)?),
                _ => {
                    let n: i64 = value.parse().map_err(|_| {
                        invalid(
                            part,
                            "for 'Gt', 'Lt' operators, the value must be an integer",
                        )
                    })?;
                    if kind == 2 {
                        Op::Greater(n)
                    } else {
                        Op::Less(n)
                    }
                }
            };
            return Ok(Requirement { key, op });
        }
    }
    Ok(Requirement {
        key: check_key(part.trim(), part)?,
        op: Op::Exists,
    })
}

fn check_key(key: &str, part: &str) -> Result<String, SelectorError> {
    let ok = !key.is_empty()
        && key.len() <= 317
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(key.to_string())
    } else {
        Err(invalid(part, "invalid label key"))
    }
}

fn check_value(value: &str, part: &str) -> Result<String, SelectorError> {
    let ok = value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(value.to_string())
    } else {
        Err(invalid(part, "invalid label value"))
    }
}

/// One `field=value` or `field!=value` term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub value: String,
    pub negated: bool,
}

/// A parsed field selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    pub fn parse(text: &str) -> Result<FieldSelector, SelectorError> {
        let mut requirements = Vec::new();
        for term in split_escaped(text, ',') {
            if term.is_empty() {
                continue;
            }
            let (field, value, negated) = if let Some((f, v)) = split_once_escaped(&term, "!=") {
                (f, v, true)
            } else if let Some((f, v)) = split_once_escaped(&term, "==") {
                (f, v, false)
            } else if let Some((f, v)) = split_once_escaped(&term, "=") {
                (f, v, false)
            } else {
                return Err(SelectorError(format!(
                    "invalid selector: '{text}'; can't understand '{term}'"
                )));
            };
            requirements.push(FieldRequirement {
                field: unescape(&field),
                value: unescape(&value),
                negated,
            });
        }
        Ok(FieldSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether the object matches, given a way to read a field's value
    /// (`None` for a field that has no value, which compares as "").
    pub fn matches(&self, mut value_of: impl FnMut(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| {
            let v = value_of(&r.field).unwrap_or_default();
            (v == r.value) != r.negated
        })
    }
}

/// Splits on `sep` where it is not escaped by a backslash; escapes stay in.
fn split_escaped(text: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut escaped = false;
    for c in text.chars() {
        if escaped {
            current.push('\\');
            current.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    if escaped {
        current.push('\\');
    }
    parts.push(current);
    parts
}

fn split_once_escaped(term: &str, op: &str) -> Option<(String, String)> {
    let bytes = term.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if term[i..].starts_with(op) {
            return Some((term[..i].to_string(), term[i + op.len()..].to_string()));
        }
        i += 1;
    }
    None
}

fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut escaped = false;
    for c in text.chars() {
        if escaped {
            out.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selectors_match_like_upstream() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("n", "3")]);
        for (sel, want) in [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app=web,tier=back", false),
            ("tier in (front, back)", true),
            ("tier notin (front)", false),
            ("missing notin (x)", true),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("n>2", true),
            ("n<2", false),
            ("app in (web),tier", true),
        ] {
            assert_eq!(
                LabelSelector::parse(sel).unwrap().matches(&l),
                want,
                "{sel}"
            );
        }
        for bad in ["app=we b", "in (a)", "x in a,b", "n>x", "=a"] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn field_selectors_parse_escapes_and_match() {
        let s = FieldSelector::parse("spec.nodeName=n1,status.phase!=Failed").unwrap();
        assert_eq!(s.requirements.len(), 2);
        assert!(s.matches(|f| {
            Some(
                if f == "spec.nodeName" {
                    "n1"
                } else {
                    "Running"
                }
                .to_string(),
            )
        }));
        assert!(
            !s.matches(|f| Some(if f == "spec.nodeName" { "n1" } else { "Failed" }.to_string()))
        );
        let e = FieldSelector::parse(r"metadata.name=a\,b").unwrap();
        assert_eq!(e.requirements[0].value, "a,b");
        assert!(FieldSelector::parse("nonsense").is_err());
        assert!(
            FieldSelector::parse("spec.nodeName=")
                .unwrap()
                .matches(|_| None)
        );
    }
}
