//! Matching rules: node selector terms (node affinity), label selectors
//! (topology spread), and taints against tolerations.
//!
//! The semantics are upstream's: terms are ORed and the requirements in a
//! term ANDed; an empty term matches nothing; `NotIn` and `DoesNotExist`
//! match a node without the label; `Gt`/`Lt` compare the label as an
//! integer; `matchFields` knows only `metadata.name`. A toleration with an
//! empty key and `Exists` tolerates everything; an empty effect matches
//! every effect.
//!
//! Pure: no I/O. Unknown operators and unparsable values never match,
//! rather than panic (the API validates them away before they get here).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Whether one node selector requirement holds for these labels (or, for
/// `matchFields`, for the node's name, passed as the only "label").
fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        op @ ("Gt" | "Lt") => {
            let (Some(v), [bound]) = (value, values) else {
                return false;
            };
            let (Ok(v), Ok(bound)) = (v.parse::<i64>(), bound.parse::<i64>()) else {
                return false;
            };
            if op == "Gt" { v > bound } else { v < bound }
        }
        _ => false,
    }
}

/// Whether a node selector term matches a node with these labels and name.
pub fn term_matches(
    term: &NodeSelectorTerm,
    labels: &BTreeMap<String, String>,
    node_name: &str,
) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement_matches(r, Some(node_name)))
}

/// Whether any of the terms matches (the terms of a required node affinity).
pub fn terms_match(
    terms: &[NodeSelectorTerm],
    labels: &BTreeMap<String, String>,
    node_name: &str,
) -> bool {
    terms.iter().any(|t| term_matches(t, labels, node_name))
}

/// Whether a label selector matches these labels. `None` (a null selector)
/// matches nothing, an empty one everything, as upstream.
pub fn label_selector_matches(
    selector: Option<&LabelSelector>,
    labels: &BTreeMap<String, String>,
) -> bool {
    let Some(selector) = selector else {
        return false;
    };
    selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v))
        && selector.match_expressions.iter().flatten().all(|r| {
            let value = labels.get(&r.key);
            let values = r.values.as_deref().unwrap_or_default();
            match r.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// Whether a toleration tolerates a taint (upstream's `ToleratesTaint`).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = t.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    if let Some(key) = t.key.as_deref().filter(|k| !k.is_empty())
        && key != taint.key
    {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            t.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

/// Whether any toleration tolerates the taint.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn term(v: Value) -> NodeSelectorTerm {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn node_selector_operators() {
        let l = labels(&[("zone", "a"), ("gen", "5")]);
        let cases = [
            (
                json!({"key": "zone", "operator": "In", "values": ["a", "b"]}),
                true,
            ),
            (
                json!({"key": "zone", "operator": "In", "values": ["b"]}),
                false,
            ),
            (
                json!({"key": "zone", "operator": "NotIn", "values": ["b"]}),
                true,
            ),
            (
                json!({"key": "nope", "operator": "NotIn", "values": ["b"]}),
                true,
            ),
            (json!({"key": "zone", "operator": "Exists"}), true),
            (json!({"key": "nope", "operator": "Exists"}), false),
            (json!({"key": "nope", "operator": "DoesNotExist"}), true),
            (
                json!({"key": "gen", "operator": "Gt", "values": ["4"]}),
                true,
            ),
            (
                json!({"key": "gen", "operator": "Gt", "values": ["5"]}),
                false,
            ),
            (
                json!({"key": "gen", "operator": "Lt", "values": ["6"]}),
                true,
            ),
            (
                json!({"key": "zone", "operator": "Lt", "values": ["6"]}),
                false,
            ),
            (
                json!({"key": "gen", "operator": "Lt", "values": ["x"]}),
                false,
            ),
            (json!({"key": "gen", "operator": "Lt"}), false),
            (
                json!({"key": "zone", "operator": "Like", "values": ["a"]}),
                false,
            ),
        ];
        for (req, want) in cases {
            let t = term(json!({"matchExpressions": [req.clone()]}));
            assert_eq!(term_matches(&t, &l, "n1"), want, "{req}");
        }
    }

    #[test]
    fn terms_are_ored_and_empty_terms_match_nothing() {
        let l = labels(&[("zone", "a")]);
        assert!(!term_matches(&term(json!({})), &l, "n1"));
        let terms = [
            term(json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]})),
            term(
                json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}),
            ),
        ];
        assert!(terms_match(&terms, &l, "n1"));
        assert!(!terms_match(&terms, &l, "n2"));
        let other_field =
            term(json!({"matchFields": [{"key": "spec.x", "operator": "In", "values": ["n1"]}]}));
        assert!(!term_matches(&other_field, &l, "n1"));
    }

    #[test]
    fn label_selectors() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        assert!(!label_selector_matches(None, &l));
        assert!(label_selector_matches(Some(&LabelSelector::default()), &l));
        let s: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]},
                                 {"key": "x", "operator": "DoesNotExist"}],
        }))
        .unwrap();
        assert!(label_selector_matches(Some(&s), &l));
        assert!(!label_selector_matches(
            Some(&s),
            &labels(&[("app", "web")])
        ));
    }

    #[test]
    fn tolerations() {
        let taint: Taint =
            serde_json::from_value(json!({"key": "k", "value": "v", "effect": "NoSchedule"}))
                .unwrap();
        let tol = |v: Value| -> Toleration { serde_json::from_value(v).unwrap() };
        assert!(tolerates(&tol(json!({"key": "k", "value": "v"})), &taint));
        assert!(tolerates(
            &tol(json!({"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"})),
            &taint
        ));
        assert!(!tolerates(&tol(json!({"key": "k", "value": "w"})), &taint));
        assert!(tolerates(
            &tol(json!({"key": "k", "operator": "Exists"})),
            &taint
        ));
        assert!(tolerates(&tol(json!({"operator": "Exists"})), &taint));
        assert!(!tolerates(
            &tol(json!({"operator": "Exists", "effect": "NoExecute"})),
            &taint
        ));
        assert!(!tolerates(
            &tol(json!({"key": "other", "operator": "Exists"})),
            &taint
        ));
    }
}
