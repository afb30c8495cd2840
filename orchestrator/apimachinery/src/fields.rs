//! Kubernetes field selectors, as found in `?fieldSelector=` query parameters.
//!
//! A field selector is a comma-separated list of `path=value`, `path==value` or `path!=value`
//! terms that must all hold, where `path` is a dotted path into the object such as
//! `metadata.name` or `spec.nodeName`. Values may contain `,`, `=` and `\` only when escaped
//! with a backslash (`\,`, `\=`, `\\`), which is how Kubernetes clients encode them.
//!
//! This module evaluates any path on the JSON object. Kubernetes only supports a few paths per
//! resource, so the API server is expected to walk [`FieldSelector::requirements`] and reject
//! unsupported paths with a 400 before using [`FieldSelector::matches`].

use std::borrow::Cow;

use serde_json::Value;

pub use crate::labels::SelectorError;

/// How a field selector term compares a field with its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `path=value` or `path==value`: the field has the value.
    Equals,
    /// `path!=value`: the field does not have the value.
    NotEquals,
}

/// One `path op value` term, with the value already unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    path: String,
    op: Op,
    value: String,
}

impl Term {
    fn matches(&self, object: &Value) -> bool {
        let equal = field_text(object, &self.path).is_some_and(|text| text == self.value);
        match self.op {
            Op::Equals => equal,
            Op::NotEquals => !equal,
        }
    }
}

/// A parsed field selector: terms that must all hold. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<Term>,
}

impl FieldSelector {
    /// Reports whether `object` satisfies every term.
    ///
    /// A missing field (or a JSON `null`) reads as the empty string, as in Kubernetes, so
    /// `spec.nodeName=` selects unscheduled pods. Numbers and booleans read as their JSON text,
    /// so `spec.replicas=3` and `spec.unschedulable=true` work. Objects and lists equal no
    /// value, since there is no text form a client could reasonably have meant.
    pub fn matches(&self, object: &Value) -> bool {
        self.terms.iter().all(|term| term.matches(object))
    }

    /// Reports whether the selector has no terms and therefore matches everything.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The terms as `(path, operator, unescaped value)`, in the order they were written, so the
    /// caller can check each path is supported for the resource.
    pub fn requirements(&self) -> impl Iterator<Item = (&str, Op, &str)> {
        self.terms
            .iter()
            .map(|term| (term.path.as_str(), term.op, term.value.as_str()))
    }
}

/// Parses the string form of a field selector, as found in `?fieldSelector=`.
///
/// Empty terms are skipped (so the empty string selects everything), whitespace around the
/// path is ignored, and the value is taken verbatim apart from unescaping `\,`, `\=` and `\\`.
/// Any other backslash sequence, or an unescaped `=` in a value, is an error.
pub fn parse(s: &str) -> Result<FieldSelector, SelectorError> {
    let mut terms = Vec::new();
    for term in split_terms(s) {
        // Kubernetes skips empty terms, which makes a stray trailing comma harmless.
        if term.trim().is_empty() {
            continue;
        }
        terms.push(parse_term(s, term)?);
    }
    Ok(FieldSelector { terms })
}

/// Splits a selector at the commas that are not escaped. Escapes are left in place; they are
/// resolved per value by [`unescape`].
fn split_terms(s: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (index, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            ',' => {
                terms.push(&s[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    terms.push(&s[start..]);
    terms
}

fn parse_term(selector: &str, term: &str) -> Result<Term, SelectorError> {
    let syntax = |message: String| SelectorError::Syntax {
        selector: selector.to_string(),
        message,
    };
    let Some((path, op, raw_value)) = split_term(term) else {
        return Err(syntax(format!(
            "term '{term}' has no operator; expected 'path=value', 'path==value' or \
             'path!=value'"
        )));
    };
    // Clients never put spaces around the path, but a person typing a query might, and a path
    // can never legitimately contain whitespace, so trimming it loses nothing. The value is
    // left alone because spaces in it may be meant.
    let path = path.trim();
    if path.is_empty() {
        return Err(syntax(format!("term '{term}' has an empty field path")));
    }
    let value =
        unescape(raw_value).map_err(|message| syntax(format!("term '{term}': {message}")))?;
    Ok(Term {
        path: path.to_string(),
        op,
        value,
    })
}

/// Splits a term at its first operator. Operators are looked for left to right, preferring
/// `!=` and `==` over `=` at the same position, exactly as Kubernetes does; paths contain no
/// escapes, so the first operator always ends the path.
fn split_term(term: &str) -> Option<(&str, Op, &str)> {
    for (index, _) in term.char_indices() {
        let rest = &term[index..];
        let path = &term[..index];
        if let Some(value) = rest.strip_prefix("!=") {
            return Some((path, Op::NotEquals, value));
        }
        if let Some(value) = rest.strip_prefix("==") {
            return Some((path, Op::Equals, value));
        }
        if let Some(value) = rest.strip_prefix('=') {
            return Some((path, Op::Equals, value));
        }
    }
    None
}

/// Resolves the backslash escapes of a value, rejecting unknown escapes and unescaped
/// separators so that a malformed selector fails loudly instead of matching something else.
fn unescape(raw: &str) -> Result<String, String> {
    let mut value = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped @ ('\\' | ',' | '=')) => value.push(escaped),
                Some(other) => {
                    return Err(format!(
                        "invalid escape sequence '\\{other}' in the value (only '\\\\', '\\,' \
                         and '\\=' are allowed)"
                    ));
                }
                None => return Err("the value ends with a lone '\\'".to_string()),
            },
            ',' | '=' => {
                return Err(format!(
                    "unescaped '{c}' in the value (write '\\{c}' for a literal '{c}')"
                ));
            }
            other => value.push(other),
        }
    }
    Ok(value)
}

/// Reads the field at a dotted path as text, or `None` for an object or list.
fn field_text<'a>(object: &'a Value, path: &str) -> Option<Cow<'a, str>> {
    let mut current = object;
    for segment in path.split('.') {
        match current.get(segment) {
            Some(next) => current = next,
            // A missing field, or a path that runs through a scalar or a list, reads as empty.
            None => return Some(Cow::Borrowed("")),
        }
    }
    match current {
        Value::Null => Some(Cow::Borrowed("")),
        Value::String(text) => Some(Cow::Borrowed(text.as_str())),
        Value::Number(number) => Some(Cow::Owned(number.to_string())),
        Value::Bool(flag) => Some(Cow::Owned(flag.to_string())),
        Value::Array(_) | Value::Object(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: Option<&str>, phase: &str) -> Value {
        let mut pod = json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {},
            "status": {"phase": phase},
        });
        if let Some(node) = node {
            pod["spec"]["nodeName"] = json!(node);
        }
        pod
    }

    fn selects(selector: &str, object: &Value) -> bool {
        parse(selector)
            .unwrap_or_else(|e| panic!("{selector}: {e}"))
            .matches(object)
    }

    fn syntax_message(selector: &str) -> String {
        match parse(selector) {
            Err(SelectorError::Syntax { message, .. }) => message,
            other => panic!("{selector}: expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn empty_selector_matches_everything() {
        let selector = parse("").unwrap();
        assert!(selector.is_empty());
        assert!(selector.matches(&json!({})));
        assert!(selector.matches(&json!(null)));
    }

    #[test]
    fn equals_compares_a_dotted_path() {
        let web = pod("web", Some("node-1"), "Running");
        assert!(selects("metadata.name=web", &web));
        assert!(selects("metadata.namespace=default", &web));
        assert!(selects("spec.nodeName=node-1", &web));
        assert!(selects("status.phase=Running", &web));
        assert!(!selects("metadata.name=db", &web));
        assert!(!parse("metadata.name=web").unwrap().is_empty());
    }

    #[test]
    fn double_equals_means_equals() {
        let web = pod("web", None, "Pending");
        assert!(selects("metadata.name==web", &web));
        assert_eq!(
            parse("metadata.name==web").unwrap(),
            parse("metadata.name=web").unwrap()
        );
    }

    #[test]
    fn not_equals_excludes_the_value() {
        let web = pod("web", None, "Pending");
        assert!(selects("status.phase!=Running", &web));
        assert!(!selects("status.phase!=Pending", &web));
    }

    #[test]
    fn top_level_fields_are_addressable() {
        let event = json!({"type": "Warning", "involvedObject": {"name": "web", "kind": "Pod"}});
        assert!(selects("type=Warning,involvedObject.name=web", &event));
        assert!(!selects("type=Normal", &event));
    }

    #[test]
    fn comma_separated_terms_must_all_hold() {
        let web = pod("web", Some("node-1"), "Running");
        assert!(selects("metadata.name=web,status.phase=Running", &web));
        assert!(!selects("metadata.name=web,status.phase=Failed", &web));
    }

    #[test]
    fn missing_field_compares_as_the_empty_string() {
        let unscheduled = pod("a", None, "Pending");
        let scheduled = pod("b", Some("node-1"), "Running");
        assert!(selects("spec.nodeName=", &unscheduled));
        assert!(!selects("spec.nodeName=", &scheduled));
        assert!(selects("spec.nodeName!=", &scheduled));
        assert!(!selects("spec.nodeName!=", &unscheduled));
        assert!(selects("no.such.path=", &scheduled));
    }

    #[test]
    fn null_field_compares_as_the_empty_string() {
        let object = json!({"spec": {"nodeName": null}});
        assert!(selects("spec.nodeName=", &object));
    }

    #[test]
    fn path_through_a_scalar_reads_as_missing() {
        let object = json!({"spec": "text"});
        assert!(selects("spec.nodeName=", &object));
    }

    #[test]
    fn non_string_scalars_compare_by_their_json_text() {
        let object = json!({"spec": {"replicas": 3, "ratio": 1.5, "unschedulable": true}});
        assert!(selects("spec.replicas=3", &object));
        assert!(selects("spec.ratio=1.5", &object));
        assert!(selects("spec.unschedulable=true", &object));
        assert!(selects("spec.unschedulable!=false", &object));
        assert!(!selects("spec.replicas=\"3\"", &object));
    }

    #[test]
    fn objects_and_lists_equal_no_value() {
        let object = json!({"metadata": {"labels": {"a": "b"}}, "spec": {"items": []}});
        assert!(!selects("metadata.labels=", &object));
        assert!(selects("metadata.labels!=", &object));
        assert!(!selects("spec.items=[]", &object));
    }

    #[test]
    fn escaped_separators_are_part_of_the_value() {
        let object = json!({"metadata": {"name": "a,b=c\\d"}});
        assert!(selects(r"metadata.name=a\,b\=c\\d", &object));
        let selector = parse(r"metadata.name=a\,b\=c\\d,status.phase!=x").unwrap();
        let terms: Vec<_> = selector.requirements().collect();
        assert_eq!(
            terms,
            [
                ("metadata.name", Op::Equals, "a,b=c\\d"),
                ("status.phase", Op::NotEquals, "x"),
            ]
        );
    }

    #[test]
    fn escaped_backslash_before_comma_still_splits_terms() {
        let selector = parse(r"a=x\\,b=y").unwrap();
        let terms: Vec<_> = selector.requirements().collect();
        assert_eq!(terms, [("a", Op::Equals, "x\\"), ("b", Op::Equals, "y")]);
    }

    #[test]
    fn requirements_report_paths_operators_and_values_in_order() {
        let selector = parse("spec.nodeName==n1,metadata.name!=web,type=").unwrap();
        let terms: Vec<_> = selector.requirements().collect();
        assert_eq!(
            terms,
            [
                ("spec.nodeName", Op::Equals, "n1"),
                ("metadata.name", Op::NotEquals, "web"),
                ("type", Op::Equals, ""),
            ]
        );
    }

    #[test]
    fn empty_terms_are_skipped() {
        let selector = parse(",metadata.name=web,,").unwrap();
        assert_eq!(selector.requirements().count(), 1);
        assert!(parse(",").unwrap().is_empty());
    }

    #[test]
    fn whitespace_around_the_path_is_ignored_but_values_are_verbatim() {
        let selector = parse(" metadata.name = web").unwrap();
        let terms: Vec<_> = selector.requirements().collect();
        assert_eq!(terms, [("metadata.name", Op::Equals, " web")]);
    }

    #[test]
    fn term_without_an_operator_is_rejected() {
        let message = syntax_message("metadata.name=web,status.phase");
        assert!(
            message.starts_with("term 'status.phase' has no operator"),
            "{message}"
        );
    }

    #[test]
    fn term_with_an_empty_path_is_rejected() {
        assert_eq!(
            syntax_message("=web"),
            "term '=web' has an empty field path"
        );
        assert_eq!(
            syntax_message(" !=web"),
            "term ' !=web' has an empty field path"
        );
    }

    #[test]
    fn unescaped_equals_in_a_value_is_rejected() {
        let message = syntax_message("metadata.name=a=b");
        assert!(
            message.starts_with("term 'metadata.name=a=b': unescaped '='"),
            "{message}"
        );
        assert!(syntax_message("a==b=c").contains("unescaped '='"));
    }

    #[test]
    fn unknown_escape_sequence_is_rejected() {
        let message = syntax_message(r"metadata.name=a\nb");
        assert!(
            message.contains(r"invalid escape sequence '\n'"),
            "{message}"
        );
    }

    #[test]
    fn trailing_lone_backslash_is_rejected() {
        let message = syntax_message(r"metadata.name=a\");
        assert!(message.contains("lone '\\'"), "{message}");
    }

    #[test]
    fn syntax_error_display_quotes_the_selector() {
        let error = parse("oops").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("unable to parse selector \"oops\": term 'oops'"),
            "{error}"
        );
    }
}
