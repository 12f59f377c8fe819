//! `$(VAR)` expansion in env values, command, args and subPathExpr, with
//! upstream's rules (k8s.io/kubernetes/third_party/forked/golang/expansion):
//!
//! - `$(NAME)` is replaced by NAME's value when the mapping knows NAME;
//! - an unknown `$(NAME)` stays as written, `$(NAME)`;
//! - `$$` is an escaped `$`, so `$$(NAME)` is the literal `$(NAME)`;
//! - a `$` followed by anything else, or an unclosed `$(`, stays as written.

/// Expands `input`, asking `mapping` for each `$(NAME)`; `None` leaves the
/// reference as written.
pub fn expand(input: &str, mut mapping: impl FnMut(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            // `$$`: an escaped operator
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(close) => {
                    let name = &body[..close];
                    match mapping(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[close + 1..];
                }
                None => {
                    // an unclosed reference is kept as written
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            // a lone `$` (or `$` then another character) is kept
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn upstream_expansion_table() {
        let vars: HashMap<&str, &str> = [
            ("VAR_A", "A"),
            ("VAR_B", "B"),
            ("VAR_C", "C"),
            ("VAR_REF", "$(VAR_A)"),
            ("VAR_EMPTY", ""),
            ("BLOCK", "$(VAR_A)"),
        ]
        .into_iter()
        .collect();
        let cases: &[(&str, &str)] = &[
            ("$(VAR_A)", "A"),
            ("___$(VAR_B)___", "___B___"),
            ("$(VAR_A)-$(VAR_B)-$(VAR_C)", "A-B-C"),
            ("$(VAR_A)$(VAR_B)", "AB"),
            // a value that looks like a reference is not expanded again
            ("$(VAR_REF)", "$(VAR_A)"),
            ("$(VAR_EMPTY)", ""),
            ("$(UNKNOWN)", "$(UNKNOWN)"),
            ("x$(UNKNOWN)y$(VAR_A)", "x$(UNKNOWN)yA"),
            ("$$(VAR_A)", "$(VAR_A)"),
            ("$$$(VAR_A)", "$A"),
            ("$$$$(VAR_A)", "$$(VAR_A)"),
            ("$$", "$"),
            ("$", "$"),
            ("a$", "a$"),
            ("$VAR_A", "$VAR_A"),
            ("$(VAR_A", "$(VAR_A"),
            ("$(VAR_A$(VAR_B)", "$(VAR_A$(VAR_B)"),
            ("$()", "$()"),
            ("$($(VAR_A))", "$($(VAR_A))"),
            ("no refs at all", "no refs at all"),
            ("", ""),
            ("ünïcode $(VAR_A) ✓", "ünïcode A ✓"),
        ];
        for (input, want) in cases {
            let got = expand(input, |name| vars.get(name).map(|v| v.to_string()));
            assert_eq!(&got, want, "expanding {input:?}");
        }
    }
}
