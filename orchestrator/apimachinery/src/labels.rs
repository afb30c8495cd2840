//! Kubernetes label selectors.
//!
//! A selector is a list of requirements that must all hold for an object's labels. It comes in
//! two shapes that mean the same thing:
//!
//! * the string form used by `?labelSelector=` query parameters and `kubectl -l`, parsed by
//!   [`parse`], for example `app=web,tier in (frontend,cache),!canary`;
//! * the `metav1.LabelSelector` object (`matchLabels` and `matchExpressions`) embedded in
//!   Deployments, ReplicaSets, Services and friends, converted by
//!   [`from_label_selector_object`].
//!
//! [`LabelSelector::matches`] evaluates a selector against an object's `metadata.labels`, and
//! its [`Display`](fmt::Display) form is the canonical string form (requirements sorted by key),
//! which is what Kubernetes reports in places such as the scale subresource's `status.selector`.

use std::fmt;

use serde_json::{Map, Value};

use crate::validation;

/// Why a label or field selector was rejected.
///
/// Every message names the offending part of the input, so the API server can return it as-is
/// in a 400 response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The selector text is not well-formed.
    #[error("unable to parse selector {selector:?}: {message}")]
    Syntax {
        /// The whole selector text as given.
        selector: String,
        /// What is wrong and where.
        message: String,
    },
    /// A label key in the selector breaks the label key rules.
    #[error("invalid label key {key:?}: {message}")]
    InvalidKey {
        /// The rejected key.
        key: String,
        /// Which rule the key breaks.
        message: String,
    },
    /// A value in the selector is not a valid value for its requirement.
    #[error("invalid value {value:?} for label {key:?}: {message}")]
    InvalidValue {
        /// The key the value belongs to.
        key: String,
        /// The rejected value.
        value: String,
        /// Which rule the value breaks.
        message: String,
    },
    /// A `metav1.LabelSelector` object has the wrong shape.
    #[error("invalid label selector: {0}")]
    InvalidObject(String),
}

/// How a [`Requirement`] relates a label to its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `key=value` or `key==value`: the label is present and has the value.
    Equals,
    /// `key!=value`: the label is absent or has a different value.
    NotEquals,
    /// `key in (a,b)`: the label is present and has one of the values.
    In,
    /// `key notin (a,b)`: the label is absent or has none of the values.
    NotIn,
    /// `key`: the label is present, whatever its value.
    Exists,
    /// `!key`: the label is absent.
    DoesNotExist,
    /// `key>n`: the label is present, is an integer, and is greater than `n`.
    GreaterThan,
    /// `key<n`: the label is present, is an integer, and is less than `n`.
    LessThan,
}

/// One condition of a [`LabelSelector`]: a label key, an operator and the operator's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    /// Sorted and free of duplicates, because the values behave as a set and a canonical order
    /// makes the string form stable.
    values: Vec<String>,
}

impl Requirement {
    /// Builds a requirement after checking the key and values against the label rules.
    ///
    /// Callers guarantee the number of values suits the operator; both the parser and the
    /// object converter check that themselves so they can phrase the error in their own terms.
    fn new(
        key: String,
        operator: Operator,
        mut values: Vec<String>,
    ) -> Result<Self, SelectorError> {
        if let Err(message) = validation::label_key(&key) {
            return Err(SelectorError::InvalidKey { key, message });
        }
        for value in &values {
            let check = match operator {
                Operator::GreaterThan | Operator::LessThan => {
                    value.parse::<i64>().map(drop).map_err(|_| {
                        "for the '>' and '<' operators the value must be an integer".to_string()
                    })
                }
                _ => validation::label_value(value),
            };
            if let Err(message) = check {
                return Err(SelectorError::InvalidValue {
                    key,
                    value: value.clone(),
                    message,
                });
            }
        }
        values.sort();
        values.dedup();
        Ok(Self {
            key,
            operator,
            values,
        })
    }

    /// The label key this requirement looks at.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// How the label is compared with [`Requirement::values`].
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values the label is compared with, sorted and without duplicates. Empty for
    /// [`Operator::Exists`] and [`Operator::DoesNotExist`].
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Reports whether `labels` satisfy this requirement.
    ///
    /// Labels are strings; a label whose JSON value is not a string counts as present for
    /// `Exists`/`DoesNotExist` but never equals any value, since no selector value could have
    /// been meant to match it.
    fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let label = labels.and_then(|labels| labels.get(&self.key));
        let has_one_of_the_values = || {
            label
                .and_then(Value::as_str)
                .is_some_and(|v| self.values.iter().any(|x| x == v))
        };
        match self.operator {
            Operator::Equals | Operator::In => has_one_of_the_values(),
            // Kubernetes deliberately lets negative requirements match objects that lack the
            // label, so `tier!=cache` also selects objects with no tier at all.
            Operator::NotEquals | Operator::NotIn => !has_one_of_the_values(),
            Operator::Exists => label.is_some(),
            Operator::DoesNotExist => label.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let actual = label
                    .and_then(Value::as_str)
                    .and_then(|v| v.parse::<i64>().ok());
                let bound = self.values.first().and_then(|v| v.parse::<i64>().ok());
                match (actual, bound) {
                    (Some(actual), Some(bound)) if self.operator == Operator::GreaterThan => {
                        actual > bound
                    }
                    (Some(actual), Some(bound)) => actual < bound,
                    _ => false,
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.values.first().map(String::as_str).unwrap_or_default();
        match self.operator {
            Operator::Equals => write!(f, "{}={first}", self.key),
            Operator::NotEquals => write!(f, "{}!={first}", self.key),
            Operator::In => write!(f, "{} in ({})", self.key, self.values.join(",")),
            Operator::NotIn => write!(f, "{} notin ({})", self.key, self.values.join(",")),
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
            Operator::GreaterThan => write!(f, "{}>{first}", self.key),
            Operator::LessThan => write!(f, "{}<{first}", self.key),
        }
    }
}

/// A set of label requirements that must all hold. The empty selector matches every object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    /// Sorted by key (stably), as Kubernetes does, so equal selectors print the same way.
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    fn new(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Self { requirements }
    }

    /// Reports whether an object with these `metadata.labels` is selected. `None` means the
    /// object has no labels at all, which behaves exactly like an empty map.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Reports whether the selector has no requirements and therefore matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, requirement) in self.requirements.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

/// Parses the string form of a label selector, as found in `?labelSelector=`.
///
/// The grammar is Kubernetes': comma-separated requirements, each one of `key=value`,
/// `key==value`, `key!=value`, `key in (v1,v2)`, `key notin (v1,v2)`, `key`, `!key`, `key>n` or
/// `key<n`. Whitespace between tokens is ignored, values may be empty (`key=` or `key in ()`),
/// and the empty string selects everything. Keys and values must follow the label rules of
/// [`crate::validation`].
pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
    let mut parser = Parser {
        selector: s,
        tokens: tokenize(s),
        position: 0,
    };
    let mut requirements = Vec::new();
    if parser.peek() == &Token::End {
        return Ok(LabelSelector::default());
    }
    loop {
        requirements.push(parser.requirement()?);
        match parser.next() {
            Token::End => break,
            Token::Comma => continue,
            other => {
                return Err(parser.error(format!(
                    "found {}, expected ',' or end of string",
                    other.describe()
                )));
            }
        }
    }
    Ok(LabelSelector::new(requirements))
}

/// Converts a `metav1.LabelSelector` JSON object into a [`LabelSelector`].
///
/// `matchLabels` entries become equality requirements and `matchExpressions` entries use the
/// operators `In`, `NotIn`, `Exists` and `DoesNotExist`. Absent or `null` fields count as
/// empty, so `{}` selects everything. (A *missing* selector, which Kubernetes treats as
/// selecting nothing, is for the caller to handle before calling this.)
pub fn from_label_selector_object(v: &Value) -> Result<LabelSelector, SelectorError> {
    let Value::Object(object) = v else {
        return Err(SelectorError::InvalidObject(format!(
            "a label selector must be a JSON object, not {}",
            json_kind(v)
        )));
    };
    let mut requirements = Vec::new();
    match object.get("matchLabels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(labels)) => {
            for (key, value) in labels {
                let Value::String(value) = value else {
                    return Err(SelectorError::InvalidObject(format!(
                        "matchLabels.{key} must be a string, not {}",
                        json_kind(value)
                    )));
                };
                requirements.push(Requirement::new(
                    key.clone(),
                    Operator::Equals,
                    vec![value.clone()],
                )?);
            }
        }
        Some(other) => {
            return Err(SelectorError::InvalidObject(format!(
                "matchLabels must be an object mapping keys to values, not {}",
                json_kind(other)
            )));
        }
    }
    match object.get("matchExpressions") {
        None | Some(Value::Null) => {}
        Some(Value::Array(expressions)) => {
            for (index, expression) in expressions.iter().enumerate() {
                requirements.push(expression_requirement(index, expression)?);
            }
        }
        Some(other) => {
            return Err(SelectorError::InvalidObject(format!(
                "matchExpressions must be a list, not {}",
                json_kind(other)
            )));
        }
    }
    Ok(LabelSelector::new(requirements))
}

/// Converts one `matchExpressions` entry, checking that the operator is known and that the
/// number of values suits it.
fn expression_requirement(index: usize, expression: &Value) -> Result<Requirement, SelectorError> {
    let at = format!("matchExpressions[{index}]");
    let invalid = |message: String| SelectorError::InvalidObject(message);
    let Value::Object(expression) = expression else {
        return Err(invalid(format!(
            "{at} must be an object, not {}",
            json_kind(expression)
        )));
    };
    let Some(Value::String(key)) = expression.get("key") else {
        return Err(invalid(format!("{at}.key must be a string")));
    };
    let Some(Value::String(operator_name)) = expression.get("operator") else {
        return Err(invalid(format!("{at}.operator must be a string")));
    };
    let mut values = Vec::new();
    match expression.get("values") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (value_index, item) in items.iter().enumerate() {
                let Value::String(value) = item else {
                    return Err(invalid(format!(
                        "{at}.values[{value_index}] must be a string, not {}",
                        json_kind(item)
                    )));
                };
                values.push(value.clone());
            }
        }
        Some(other) => {
            return Err(invalid(format!(
                "{at}.values must be a list of strings, not {}",
                json_kind(other)
            )));
        }
    }
    let operator = match operator_name.as_str() {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        other => {
            return Err(invalid(format!(
                "{at}.operator: {other:?} is not a valid label selector operator \
                 (expected In, NotIn, Exists or DoesNotExist)"
            )));
        }
    };
    match operator {
        Operator::In | Operator::NotIn if values.is_empty() => Err(invalid(format!(
            "{at}.values must be non-empty for operator {operator_name}"
        ))),
        Operator::Exists | Operator::DoesNotExist if !values.is_empty() => Err(invalid(format!(
            "{at}.values must be empty for operator {operator_name}"
        ))),
        _ => Requirement::new(key.clone(), operator, values),
    }
}

/// Names the JSON type of a value, for error messages.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A lexical unit of the selector string form.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A run of characters that are neither whitespace nor one of `!=(),<>`: a key, a value,
    /// or one of the words `in` and `notin` (which are only keywords after a key).
    Identifier(String),
    Bang,
    Equals,
    DoubleEquals,
    NotEquals,
    OpenParen,
    CloseParen,
    Comma,
    GreaterThan,
    LessThan,
    End,
}

impl Token {
    /// Shows the token the way error messages quote it.
    fn describe(&self) -> String {
        let text = match self {
            Token::Identifier(text) => text.as_str(),
            Token::Bang => "!",
            Token::Equals => "=",
            Token::DoubleEquals => "==",
            Token::NotEquals => "!=",
            Token::OpenParen => "(",
            Token::CloseParen => ")",
            Token::Comma => ",",
            Token::GreaterThan => ">",
            Token::LessThan => "<",
            Token::End => return "end of string".to_string(),
        };
        format!("'{text}'")
    }
}

/// Reports whether `c` ends an identifier, matching the special characters of Kubernetes'
/// selector lexer.
fn is_special(c: char) -> bool {
    matches!(c, '!' | '=' | '(' | ')' | ',' | '<' | '>')
}

/// Splits the selector into tokens, always ending with [`Token::End`].
fn tokenize(s: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if !is_special(c) {
            let mut identifier = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || is_special(c) {
                    break;
                }
                identifier.push(c);
                chars.next();
            }
            tokens.push(Token::Identifier(identifier));
            continue;
        }
        chars.next();
        let token = match c {
            '!' if chars.peek() == Some(&'=') => {
                chars.next();
                Token::NotEquals
            }
            '!' => Token::Bang,
            '=' if chars.peek() == Some(&'=') => {
                chars.next();
                Token::DoubleEquals
            }
            '=' => Token::Equals,
            '(' => Token::OpenParen,
            ')' => Token::CloseParen,
            ',' => Token::Comma,
            '>' => Token::GreaterThan,
            // `is_special` admits only the characters above and '<', so this is '<'.
            _ => Token::LessThan,
        };
        tokens.push(token);
    }
    tokens.push(Token::End);
    tokens
}

/// A recursive-descent parser over the token list of one selector.
struct Parser<'a> {
    selector: &'a str,
    tokens: Vec<Token>,
    position: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        self.tokens.get(self.position).unwrap_or(&Token::End)
    }

    fn next(&mut self) -> Token {
        let token = self.peek().clone();
        self.position += 1;
        token
    }

    fn error(&self, message: String) -> SelectorError {
        SelectorError::Syntax {
            selector: self.selector.to_string(),
            message,
        }
    }

    /// Parses one requirement, stopping before the `,` or end that follows it.
    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        if self.peek() == &Token::Bang {
            self.next();
            let key = self.key()?;
            return Requirement::new(key, Operator::DoesNotExist, Vec::new());
        }
        let key = self.key()?;
        let operator = match self.peek() {
            Token::End | Token::Comma => {
                return Requirement::new(key, Operator::Exists, Vec::new());
            }
            Token::Equals | Token::DoubleEquals => Operator::Equals,
            Token::NotEquals => Operator::NotEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::Identifier(word) if word == "in" => Operator::In,
            Token::Identifier(word) if word == "notin" => Operator::NotIn,
            other => {
                return Err(self.error(format!(
                    "found {} after key '{key}', expected one of '=', '==', '!=', 'in', \
                     'notin', '>', '<', ',' or end of string",
                    other.describe()
                )));
            }
        };
        self.next();
        let values = match operator {
            Operator::In | Operator::NotIn => self.value_set()?,
            Operator::GreaterThan | Operator::LessThan => vec![self.bound(&key)?],
            _ => vec![self.exact_value()?],
        };
        Requirement::new(key, operator, values)
    }

    fn key(&mut self) -> Result<String, SelectorError> {
        match self.next() {
            Token::Identifier(key) => Ok(key),
            other => Err(self.error(format!("found {}, expected a label key", other.describe()))),
        }
    }

    /// Parses the value after `=`, `==` or `!=`; nothing before `,` or the end means the empty
    /// value, which selects objects whose label is set to `""`.
    fn exact_value(&mut self) -> Result<String, SelectorError> {
        match self.peek() {
            Token::Identifier(value) => {
                let value = value.clone();
                self.next();
                Ok(value)
            }
            Token::End | Token::Comma => Ok(String::new()),
            other => Err(self.error(format!("found {}, expected a value", other.describe()))),
        }
    }

    /// Parses the integer after `>` or `<`, which unlike an equality value cannot be empty.
    fn bound(&mut self, key: &str) -> Result<String, SelectorError> {
        match self.next() {
            Token::Identifier(value) => Ok(value),
            other => Err(self.error(format!(
                "found {} after '{key}' and a comparison, expected an integer",
                other.describe()
            ))),
        }
    }

    /// Parses `( v1, v2, ... )`. Like Kubernetes, a missing value between separators counts as
    /// the empty value, so `()` is the set holding just `""`.
    fn value_set(&mut self) -> Result<Vec<String>, SelectorError> {
        let open = self.next();
        if open != Token::OpenParen {
            return Err(self.error(format!("found {}, expected '('", open.describe())));
        }
        let mut values = Vec::new();
        loop {
            match self.peek() {
                Token::Identifier(value) => {
                    values.push(value.clone());
                    self.next();
                }
                _ => values.push(String::new()),
            }
            match self.next() {
                Token::Comma => continue,
                Token::CloseParen => return Ok(values),
                other => {
                    return Err(
                        self.error(format!("found {}, expected ',' or ')'", other.describe()))
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("test labels must be an object, got {other}"),
        }
    }

    fn selects(selector: &str, object_labels: Value) -> bool {
        parse(selector)
            .unwrap_or_else(|e| panic!("{selector}: {e}"))
            .matches(Some(&labels(object_labels)))
    }

    fn syntax_message(selector: &str) -> String {
        match parse(selector) {
            Err(SelectorError::Syntax { message, .. }) => message,
            other => panic!("{selector}: expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn empty_string_matches_everything() {
        let selector = parse("").unwrap();
        assert!(selector.is_empty());
        assert!(selector.matches(None));
        assert!(selector.matches(Some(&labels(json!({"a": "b"})))));
    }

    #[test]
    fn whitespace_only_string_is_the_empty_selector() {
        assert!(parse("  \t ").unwrap().is_empty());
    }

    #[test]
    fn equality_matches_only_the_same_value() {
        assert!(selects("app=web", json!({"app": "web", "x": "y"})));
        assert!(!selects("app=web", json!({"app": "db"})));
        assert!(!selects("app=web", json!({})));
        assert!(!parse("app=web").unwrap().is_empty());
    }

    #[test]
    fn double_equals_means_equality() {
        assert_eq!(parse("app==web").unwrap(), parse("app=web").unwrap());
        assert!(selects("app==web", json!({"app": "web"})));
    }

    #[test]
    fn not_equals_matches_objects_without_the_label() {
        assert!(selects("tier!=cache", json!({})));
        assert!(parse("tier!=cache").unwrap().matches(None));
        assert!(selects("tier!=cache", json!({"tier": "web"})));
        assert!(!selects("tier!=cache", json!({"tier": "cache"})));
    }

    #[test]
    fn set_based_in_matches_any_listed_value() {
        assert!(selects("env in (prod,staging)", json!({"env": "prod"})));
        assert!(selects("env in (prod,staging)", json!({"env": "staging"})));
        assert!(!selects("env in (prod,staging)", json!({"env": "dev"})));
    }

    #[test]
    fn set_based_in_does_not_match_objects_without_the_label() {
        assert!(!selects("env in (prod)", json!({})));
    }

    #[test]
    fn set_based_notin_matches_objects_without_the_label() {
        assert!(selects("env notin (prod, staging)", json!({})));
        assert!(selects("env notin (prod, staging)", json!({"env": "dev"})));
        assert!(!selects(
            "env notin (prod, staging)",
            json!({"env": "staging"})
        ));
    }

    #[test]
    fn bare_key_requires_the_label_to_exist() {
        assert!(selects("canary", json!({"canary": ""})));
        assert!(selects("canary", json!({"canary": "yes"})));
        assert!(!selects("canary", json!({"other": "x"})));
    }

    #[test]
    fn bang_key_requires_the_label_to_be_absent() {
        assert!(selects("!canary", json!({"other": "x"})));
        assert!(!selects("!canary", json!({"canary": "yes"})));
        assert!(parse("! canary").unwrap().matches(None));
    }

    #[test]
    fn comma_separated_requirements_must_all_hold() {
        let selector = "app=web,env in (prod),!canary";
        assert!(selects(selector, json!({"app": "web", "env": "prod"})));
        assert!(!selects(
            selector,
            json!({"app": "web", "env": "prod", "canary": "1"})
        ));
        assert!(!selects(selector, json!({"app": "web", "env": "dev"})));
        assert_eq!(parse(selector).unwrap().requirements().len(), 3);
    }

    #[test]
    fn whitespace_between_tokens_is_tolerated() {
        let spaced =
            parse(" app = web , env in ( prod , dev ) , ! canary , tier notin(x) ").unwrap();
        let tight = parse("app=web,env in (prod,dev),!canary,tier notin (x)").unwrap();
        assert_eq!(spaced, tight);
    }

    #[test]
    fn empty_value_after_equals_matches_an_empty_label() {
        assert!(selects("app=", json!({"app": ""})));
        assert!(!selects("app=", json!({"app": "web"})));
        assert!(!selects("app=", json!({})));
        assert!(selects("app!=,b=c", json!({"b": "c"})));
    }

    #[test]
    fn empty_parentheses_mean_the_empty_value() {
        let selector = parse("app in ()").unwrap();
        assert_eq!(selector.requirements()[0].values(), [String::new()]);
        assert!(selector.matches(Some(&labels(json!({"app": ""})))));
        let with_gap = parse("app in (a,,b,)").unwrap();
        assert_eq!(with_gap.requirements()[0].values(), ["", "a", "b"]);
    }

    #[test]
    fn prefixed_keys_are_accepted() {
        assert!(selects(
            "app.kubernetes.io/name=web",
            json!({"app.kubernetes.io/name": "web"})
        ));
    }

    #[test]
    fn set_values_are_deduplicated_and_sorted() {
        let selector = parse("a in (z,b,z)").unwrap();
        let requirement = &selector.requirements()[0];
        assert_eq!(requirement.key(), "a");
        assert_eq!(requirement.operator(), Operator::In);
        assert_eq!(requirement.values(), ["b", "z"]);
    }

    #[test]
    fn in_and_notin_are_only_keywords_after_a_key() {
        assert!(selects("a=in", json!({"a": "in"})));
        assert!(selects("a in (in,notin)", json!({"a": "notin"})));
    }

    #[test]
    fn greater_than_and_less_than_compare_integers() {
        assert!(selects("replicas>2", json!({"replicas": "3"})));
        assert!(!selects("replicas>2", json!({"replicas": "2"})));
        assert!(selects("replicas<2", json!({"replicas": "-1"})));
        assert!(!selects("replicas<2", json!({"replicas": "x"})));
        assert!(!selects("replicas<2", json!({})));
    }

    #[test]
    fn greater_than_requires_an_integer_bound() {
        match parse("a>b") {
            Err(SelectorError::InvalidValue {
                key,
                value,
                message,
            }) => {
                assert_eq!((key.as_str(), value.as_str()), ("a", "b"));
                assert!(message.contains("integer"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(syntax_message("a>").contains("expected an integer"));
    }

    #[test]
    fn labels_that_are_not_strings_never_equal_a_value() {
        assert!(!selects("a=1", json!({"a": 1})));
        assert!(selects("a!=1", json!({"a": 1})));
        assert!(selects("a", json!({"a": 1})));
    }

    #[test]
    fn trailing_comma_is_rejected() {
        assert_eq!(
            syntax_message("a=b,"),
            "found end of string, expected a label key"
        );
    }

    #[test]
    fn leading_comma_is_rejected() {
        assert_eq!(syntax_message(",a=b"), "found ',', expected a label key");
    }

    #[test]
    fn words_after_a_value_are_rejected() {
        assert_eq!(
            syntax_message("a=b c"),
            "found 'c', expected ',' or end of string"
        );
        assert_eq!(
            syntax_message("a=b=c"),
            "found '=', expected ',' or end of string"
        );
    }

    #[test]
    fn unknown_operator_word_is_rejected() {
        let message = syntax_message("a within (b)");
        assert!(
            message.starts_with("found 'within' after key 'a'"),
            "{message}"
        );
    }

    #[test]
    fn set_operator_needs_parentheses() {
        assert_eq!(syntax_message("a in b"), "found 'b', expected '('");
        assert_eq!(syntax_message("a in"), "found end of string, expected '('");
    }

    #[test]
    fn unterminated_value_set_is_rejected() {
        assert_eq!(
            syntax_message("a in (b"),
            "found end of string, expected ',' or ')'"
        );
        assert_eq!(
            syntax_message("a in (b c)"),
            "found 'c', expected ',' or ')'"
        );
    }

    #[test]
    fn parenthesis_after_equals_is_rejected() {
        assert_eq!(syntax_message("a=(b)"), "found '(', expected a value");
    }

    #[test]
    fn bang_needs_a_key_and_no_value() {
        assert_eq!(
            syntax_message("!"),
            "found end of string, expected a label key"
        );
        assert_eq!(
            syntax_message("!a=b"),
            "found '=', expected ',' or end of string"
        );
    }

    #[test]
    fn syntax_error_display_quotes_the_selector() {
        let error = parse("a in b").unwrap_err();
        assert_eq!(
            error.to_string(),
            "unable to parse selector \"a in b\": found 'b', expected '('"
        );
    }

    #[test]
    fn invalid_key_is_named_in_the_error() {
        match parse("-app=web") {
            Err(SelectorError::InvalidKey { key, message }) => {
                assert_eq!(key, "-app");
                assert!(
                    message.starts_with("name part must consist of"),
                    "{message}"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            parse("a/b/c"),
            Err(SelectorError::InvalidKey { key, .. }) if key == "a/b/c"
        ));
    }

    #[test]
    fn invalid_value_is_named_in_the_error() {
        match parse("app in (web, -bad)") {
            Err(SelectorError::InvalidValue {
                key,
                value,
                message,
            }) => {
                assert_eq!((key.as_str(), value.as_str()), ("app", "-bad"));
                assert!(message.starts_with("a valid label must be"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
        let too_long = format!("app={}", "v".repeat(64));
        assert!(matches!(
            parse(&too_long),
            Err(SelectorError::InvalidValue { message, .. }) if message.contains("no more than 63")
        ));
    }

    #[test]
    fn display_is_canonical_and_sorted_by_key() {
        let selector = parse("z==1, b notin (y,x), a, !c, m in (q), n!=2, g>3, h<4").unwrap();
        assert_eq!(
            selector.to_string(),
            "a,b notin (x,y),!c,g>3,h<4,m in (q),n!=2,z=1"
        );
    }

    #[test]
    fn display_round_trips_through_parse() {
        for text in ["", "a=b", "a in (,x),!b,c!=", "k notin (v),k2"] {
            let selector = parse(text).unwrap();
            assert_eq!(parse(&selector.to_string()).unwrap(), selector, "{text}");
        }
    }

    #[test]
    fn object_match_labels_become_equality_requirements() {
        let selector =
            from_label_selector_object(&json!({"matchLabels": {"app": "web", "tier": "fe"}}))
                .unwrap();
        assert_eq!(selector.to_string(), "app=web,tier=fe");
        assert!(selector.matches(Some(&labels(json!({"app": "web", "tier": "fe", "x": "y"})))));
        assert!(!selector.matches(Some(&labels(json!({"app": "web"})))));
    }

    #[test]
    fn object_match_expressions_support_all_four_operators() {
        let selector = from_label_selector_object(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "staging"]},
                {"key": "tier", "operator": "NotIn", "values": ["cache"]},
                {"key": "team", "operator": "Exists"},
                {"key": "canary", "operator": "DoesNotExist", "values": []},
            ]
        }))
        .unwrap();
        assert_eq!(
            selector.to_string(),
            "app=web,!canary,env in (prod,staging),team,tier notin (cache)"
        );
        assert!(selector.matches(Some(&labels(
            json!({"app": "web", "env": "prod", "team": "a"})
        ))));
        assert!(!selector.matches(Some(&labels(
            json!({"app": "web", "env": "prod", "team": "a", "canary": "1"})
        ))));
        assert!(!selector.matches(Some(&labels(
            json!({"app": "web", "env": "prod", "team": "a", "tier": "cache"})
        ))));
    }

    #[test]
    fn empty_selector_object_matches_everything() {
        let selector = from_label_selector_object(&json!({})).unwrap();
        assert!(selector.is_empty());
        assert!(selector.matches(None));
        let nulls =
            from_label_selector_object(&json!({"matchLabels": null, "matchExpressions": null}))
                .unwrap();
        assert!(nulls.is_empty());
    }

    #[test]
    fn object_selector_must_be_an_object() {
        assert_eq!(
            from_label_selector_object(&json!("app=web")),
            Err(SelectorError::InvalidObject(
                "a label selector must be a JSON object, not a string".to_string()
            ))
        );
    }

    #[test]
    fn object_unknown_operator_is_named() {
        let error = from_label_selector_object(&json!({
            "matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]
        }))
        .unwrap_err();
        assert!(
            error.to_string().contains(
                "matchExpressions[0].operator: \"Gt\" is not a valid label selector operator"
            ),
            "{error}"
        );
    }

    #[test]
    fn object_in_without_values_is_rejected() {
        let error = from_label_selector_object(&json!({
            "matchExpressions": [{"key": "a", "operator": "In", "values": []}]
        }))
        .unwrap_err();
        assert_eq!(
            error,
            SelectorError::InvalidObject(
                "matchExpressions[0].values must be non-empty for operator In".to_string()
            )
        );
    }

    #[test]
    fn object_exists_with_values_is_rejected() {
        let error = from_label_selector_object(&json!({
            "matchExpressions": [
                {"key": "a", "operator": "Exists"},
                {"key": "b", "operator": "DoesNotExist", "values": ["x"]}
            ]
        }))
        .unwrap_err();
        assert_eq!(
            error,
            SelectorError::InvalidObject(
                "matchExpressions[1].values must be empty for operator DoesNotExist".to_string()
            )
        );
    }

    #[test]
    fn object_malformed_fields_are_named() {
        let cases = [
            (
                json!({"matchLabels": ["a"]}),
                "matchLabels must be an object",
            ),
            (
                json!({"matchLabels": {"a": 1}}),
                "matchLabels.a must be a string",
            ),
            (
                json!({"matchExpressions": {}}),
                "matchExpressions must be a list",
            ),
            (
                json!({"matchExpressions": ["a"]}),
                "matchExpressions[0] must be an object",
            ),
            (
                json!({"matchExpressions": [{"operator": "Exists"}]}),
                "matchExpressions[0].key must be a string",
            ),
            (
                json!({"matchExpressions": [{"key": "a"}]}),
                "matchExpressions[0].operator must be a string",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In", "values": "x"}]}),
                "matchExpressions[0].values must be a list of strings",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In", "values": [1]}]}),
                "matchExpressions[0].values[0] must be a string",
            ),
        ];
        for (object, expected) in cases {
            let error = from_label_selector_object(&object).unwrap_err().to_string();
            assert!(error.contains(expected), "{object}: {error}");
        }
    }

    #[test]
    fn object_invalid_keys_and_values_are_rejected() {
        assert!(matches!(
            from_label_selector_object(&json!({"matchLabels": {"bad key": "v"}})),
            Err(SelectorError::InvalidKey { key, .. }) if key == "bad key"
        ));
        assert!(matches!(
            from_label_selector_object(&json!({
                "matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["ok", "not ok"]}]
            })),
            Err(SelectorError::InvalidValue { value, .. }) if value == "not ok"
        ));
    }
}
