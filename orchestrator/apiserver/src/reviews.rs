//! The self reviews: `kubectl auth can-i` (`authorization.k8s.io/v1` SelfSubjectAccessReview
//! and, for `--list`, SelfSubjectRulesReview) and `kubectl auth whoami` (`authentication.k8s.io/v1`
//! SelfSubjectReview).
//!
//! Wharf neither authenticates nor authorizes: every client may do everything. These answer as
//! kube-apiserver answers with the `AlwaysAllow` authorizer and an anonymous client: every access
//! review is allowed (with [`ALLOWED_REASON`]), the rules are `*` on everything, and the caller
//! is `system:anonymous` in `system:unauthenticated`. Scripts, Helm-style tooling and dashboards
//! that ask before they act then get the truth instead of a 404.
//!
//! They are create-only virtual resources, as in Kubernetes: the answer is computed from the
//! request and nothing is stored (so `dryRun` changes nothing); any other verb is 405. Bodies
//! are JSON, YAML or protobuf (kubectl 1.37 sends protobuf; see [`crate::protobuf`]), decoded
//! into their `k8s-openapi` types like every other write, and validated as Kubernetes does.

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::{ApiError, Cause, Subject};
use crate::http::{decode_body, json_response};

/// The group of SelfSubjectAccessReview and SelfSubjectRulesReview.
pub const AUTHORIZATION_GROUP: &str = "authorization.k8s.io";

/// The group of SelfSubjectReview.
pub const AUTHENTICATION_GROUP: &str = "authentication.k8s.io";

/// The one version served of both groups.
pub const VERSION: &str = "v1";

/// The groups of the self reviews, in discovery order.
pub const GROUPS: [&str; 2] = [AUTHENTICATION_GROUP, AUTHORIZATION_GROUP];

/// `status.reason` of every SelfSubjectAccessReview.
pub const ALLOWED_REASON: &str =
    "Wharf does not authorize requests: every client may do everything";

/// The user every client is, as Kubernetes names an unauthenticated client.
pub const ANONYMOUS_USER: &str = "system:anonymous";

/// The group of every client, as Kubernetes names unauthenticated clients.
pub const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";

/// What a self review answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// SelfSubjectAccessReview: may the caller do this? (Always yes.)
    Access,
    /// SelfSubjectRulesReview: what may the caller do in a namespace? (Everything.)
    Rules,
    /// SelfSubjectReview: who is the caller? (Anonymous.)
    Identity,
}

/// One self-review resource: cluster-scoped, create only.
#[derive(Debug)]
pub struct Review {
    /// The API group.
    pub group: &'static str,
    /// The plural resource name, as in the path.
    pub plural: &'static str,
    /// The singular resource name.
    pub singular: &'static str,
    /// The kind.
    pub kind: &'static str,
    /// What it answers.
    pub answer: Answer,
}

impl Review {
    /// `GROUP/VERSION`.
    pub fn api_version(&self) -> String {
        format!("{}/{VERSION}", self.group)
    }
}

/// The self reviews served, in discovery order within each group.
pub const REVIEWS: [Review; 3] = [
    Review {
        group: AUTHENTICATION_GROUP,
        plural: "selfsubjectreviews",
        singular: "selfsubjectreview",
        kind: "SelfSubjectReview",
        answer: Answer::Identity,
    },
    Review {
        group: AUTHORIZATION_GROUP,
        plural: "selfsubjectaccessreviews",
        singular: "selfsubjectaccessreview",
        kind: "SelfSubjectAccessReview",
        answer: Answer::Access,
    },
    Review {
        group: AUTHORIZATION_GROUP,
        plural: "selfsubjectrulesreviews",
        singular: "selfsubjectrulesreview",
        kind: "SelfSubjectRulesReview",
        answer: Answer::Rules,
    },
];

/// Whether `group`/`version` is one of the self reviews' group versions.
pub fn serves(group: &str, version: &str) -> bool {
    version == VERSION && GROUPS.contains(&group)
}

/// The review at `group`/`version`/`plural`, if it is one.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Review> {
    if version != VERSION {
        return None;
    }
    REVIEWS
        .iter()
        .find(|r| r.group == group && r.plural == plural)
}

/// The discovery document of `group` (its `APIGroup` without `kind`/`apiVersion`, as `/apis`
/// lists it), if it is a self-review group.
pub fn group_document(group: &str) -> Option<Value> {
    if !GROUPS.contains(&group) {
        return None;
    }
    let version = json!({"groupVersion": format!("{group}/{VERSION}"), "version": VERSION});
    Some(json!({"name": group, "versions": [version.clone()], "preferredVersion": version}))
}

/// The `APIResourceList` of `group`/`version`, if it is a self-review group version.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    if !serves(group, version) {
        return None;
    }
    let resources: Vec<Value> = REVIEWS
        .iter()
        .filter(|r| r.group == group)
        .map(|r| {
            json!({
                "name": r.plural,
                "singularName": r.singular,
                "namespaced": false,
                "kind": r.kind,
                "verbs": ["create"],
            })
        })
        .collect();
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{group}/{VERSION}"),
        "resources": resources,
    }))
}

/// The answer to any verb but `create` on a review: Kubernetes registers only POST for these
/// paths, so it answers 405, which kubectl shows with this message.
pub fn method_not_allowed() -> ApiError {
    ApiError::MethodNotSupported(
        "the server does not allow this method on the requested resource".into(),
    )
}

/// `POST` of `review`: decodes and validates the body and answers 201 with the review filled
/// in. Nothing is stored.
pub fn create(review: &Review, headers: &HeaderMap, body: &[u8]) -> Result<Response, ApiError> {
    let object = decode_review(review, headers, body)?;
    let answer = match review.answer {
        Answer::Access => access(review, object)?,
        Answer::Rules => rules(review, object)?,
        Answer::Identity => identity(review, object)?,
    };
    Ok(json_response(StatusCode::CREATED, &answer))
}

/// The body as a JSON object of the review's kind, with `apiVersion` and `kind` filled in.
fn decode_review(review: &Review, headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let mut object = decode_body(headers, body)?;
    let Some(fields) = object.as_object_mut() else {
        return Err(ApiError::BadRequest(format!(
            "the body must be a {} object",
            review.kind
        )));
    };
    if let Some(kind) = fields.get("kind").and_then(Value::as_str)
        && kind != review.kind
    {
        return Err(ApiError::BadRequest(format!(
            "the kind of the body ({kind}) does not match the resource {} (kind {})",
            review.plural, review.kind
        )));
    }
    if let Some(api_version) = fields.get("apiVersion").and_then(Value::as_str)
        && api_version != review.api_version()
    {
        return Err(ApiError::BadRequest(format!(
            "the apiVersion of the body ({api_version}) does not match the request path ({})",
            review.api_version()
        )));
    }
    fields.insert("apiVersion".into(), json!(review.api_version()));
    fields.insert("kind".into(), json!(review.kind));
    // Go decodes a missing spec as an empty one, which validation then explains; the
    // k8s-openapi types would refuse it as a missing field instead.
    if review.answer != Answer::Identity && fields.get("spec").is_none_or(Value::is_null) {
        fields.insert("spec".into(), json!({}));
    }
    Ok(object)
}

/// Decodes `object` into its typed form and back, so that unknown fields are dropped and
/// wrong types are refused, as for every other write.
fn typed<T: DeserializeOwned + Serialize>(
    review: &Review,
    object: Value,
) -> Result<Value, ApiError> {
    let typed: T = serde_path_to_error::deserialize(object).map_err(|e| {
        let path = e.path().to_string();
        let detail = if path == "." {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        };
        ApiError::BadRequest(format!(
            "{} in version {VERSION:?} cannot be handled as a {}: {detail}",
            review.kind, review.kind
        ))
    })?;
    serde_json::to_value(typed).map_err(|e| ApiError::Internal(e.to_string()))
}

/// SelfSubjectAccessReview: the request echoed with `status.allowed: true`.
fn access(review: &Review, object: Value) -> Result<Value, ApiError> {
    use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
    let mut object = typed::<SelfSubjectAccessReview>(review, object)?;
    drop_empty_strings(&mut object["spec"]);
    let causes = validate_access(&object);
    if !causes.is_empty() {
        return Err(ApiError::Invalid(
            Subject {
                name: String::new(),
                group: review.group.to_owned(),
                resource: review.plural.to_owned(),
                kind: review.kind.to_owned(),
            },
            causes,
        ));
    }
    object["metadata"] = json!({"creationTimestamp": null});
    object["status"] = json!({"allowed": true, "reason": ALLOWED_REASON});
    Ok(object)
}

/// Kubernetes' `ValidateSelfSubjectAccessReview`: exactly one of the attributes, selectors
/// given one way, and no metadata (the review is not an object anyone can name or find).
fn validate_access(object: &Value) -> Vec<Cause> {
    let invalid = |field: &str, value: &Value, detail: &str| Cause {
        reason: "FieldValueInvalid",
        field: field.to_owned(),
        message: format!("Invalid value: {value}: {detail}"),
    };
    let spec = &object["spec"];
    let resource = spec.get("resourceAttributes").filter(|v| !v.is_null());
    let non_resource = spec.get("nonResourceAttributes").filter(|v| !v.is_null());
    let mut causes = Vec::new();
    match (resource, non_resource) {
        (Some(_), Some(non_resource)) => causes.push(invalid(
            "spec.nonResourceAttributes",
            non_resource,
            "cannot be specified in combination with resourceAttributes",
        )),
        // Kubernetes names this field but shows the (missing) nonResourceAttributes as the
        // value: `null`.
        (None, None) => causes.push(invalid(
            "spec.resourceAttributes",
            &Value::Null,
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
        _ => {}
    }
    for selector in ["fieldSelector", "labelSelector"] {
        let Some(attributes) = resource
            .and_then(|r| r.get(selector))
            .filter(|v| !v.is_null())
        else {
            continue;
        };
        let path = format!("spec.resourceAttributes.{selector}");
        let raw = attributes["rawSelector"].as_str().unwrap_or_default();
        let requirements = attributes["requirements"]
            .as_array()
            .is_some_and(|r| !r.is_empty());
        if !raw.is_empty() && requirements {
            causes.push(invalid(
                &format!("{path}.rawSelector"),
                &json!(raw),
                "may not specified at the same time as requirements",
            ));
        }
        if raw.is_empty() && !requirements {
            causes.push(Cause::required(
                &format!("{path}.requirements"),
                &format!("when {path} is specified, requirements or rawSelector is required"),
            ));
        }
    }
    let mut metadata = object["metadata"].as_object().cloned().unwrap_or_default();
    metadata.remove("managedFields");
    if !metadata.is_empty() {
        causes.push(invalid(
            "metadata",
            &Value::Object(metadata),
            "must be empty",
        ));
    }
    causes
}

/// SelfSubjectRulesReview: every verb on every resource and every non-resource URL. As in
/// Kubernetes, the answer carries no spec, and a review without a namespace is refused.
fn rules(review: &Review, object: Value) -> Result<Value, ApiError> {
    use k8s_openapi::api::authorization::v1::SelfSubjectRulesReview;
    let object = typed::<SelfSubjectRulesReview>(review, object)?;
    if object["spec"]["namespace"]
        .as_str()
        .is_none_or(str::is_empty)
    {
        return Err(ApiError::BadRequest("no namespace on request".into()));
    }
    Ok(json!({
        "kind": review.kind,
        "apiVersion": review.api_version(),
        "metadata": {"creationTimestamp": null},
        "spec": {},
        "status": {
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
        },
    }))
}

/// SelfSubjectReview: the caller, an anonymous client. As in Kubernetes, the answer is a new
/// object created now; nothing of the request is kept.
fn identity(review: &Review, object: Value) -> Result<Value, ApiError> {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    typed::<SelfSubjectReview>(review, object)?;
    Ok(json!({
        "kind": review.kind,
        "apiVersion": review.api_version(),
        "metadata": {"creationTimestamp": crate::meta::now_rfc3339()},
        "status": {
            "userInfo": {"username": ANONYMOUS_USER, "groups": [UNAUTHENTICATED_GROUP]},
        },
    }))
}

/// Removes empty strings from the objects in `value`: Go omits them (`omitempty`), so an
/// echoed spec reads as Kubernetes would write it whether the client sent `""` or nothing.
fn drop_empty_strings(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            fields.retain(|_, v| v.as_str() != Some(""));
            fields.values_mut().for_each(drop_empty_strings);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_empty_strings),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access_causes(spec: Value) -> Vec<Cause> {
        validate_access(&json!({"metadata": {}, "spec": spec}))
    }

    #[test]
    fn an_access_review_needs_exactly_one_kind_of_attributes() {
        assert!(access_causes(json!({"resourceAttributes": {"verb": "get"}})).is_empty());
        assert!(access_causes(json!({"nonResourceAttributes": {"path": "/"}})).is_empty());
        // An empty but present attributes object is a request about everything, not none.
        assert!(access_causes(json!({"resourceAttributes": {}})).is_empty());

        let neither = access_causes(json!({}));
        assert_eq!(neither.len(), 1);
        assert_eq!(neither[0].field, "spec.resourceAttributes");
        assert_eq!(
            neither[0].message,
            "Invalid value: null: exactly one of nonResourceAttributes or resourceAttributes must be specified"
        );

        let both = access_causes(json!({
            "resourceAttributes": {"verb": "get"},
            "nonResourceAttributes": {"path": "/healthz", "verb": "get"},
        }));
        assert_eq!(both.len(), 1);
        assert_eq!(both[0].field, "spec.nonResourceAttributes");
        assert_eq!(
            both[0].message,
            r#"Invalid value: {"path":"/healthz","verb":"get"}: cannot be specified in combination with resourceAttributes"#
        );
    }

    #[test]
    fn an_access_review_selector_is_raw_or_requirements() {
        let both = access_causes(json!({"resourceAttributes": {
            "labelSelector": {"rawSelector": "a=b", "requirements": [{"key": "a", "operator": "In", "values": ["b"]}]},
        }}));
        assert_eq!(
            both[0].field,
            "spec.resourceAttributes.labelSelector.rawSelector"
        );
        let neither = access_causes(json!({"resourceAttributes": {"fieldSelector": {}}}));
        assert_eq!(
            neither[0].field,
            "spec.resourceAttributes.fieldSelector.requirements"
        );
        assert_eq!(neither[0].reason, "FieldValueRequired");
    }

    #[test]
    fn an_access_review_has_no_metadata() {
        let causes = validate_access(&json!({
            "metadata": {"name": "mine"},
            "spec": {"resourceAttributes": {}},
        }));
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "metadata");
        assert!(causes[0].message.ends_with("must be empty"));
    }

    #[test]
    fn empty_strings_are_dropped_as_go_omits_them() {
        let mut spec = json!({"resourceAttributes": {"namespace": "", "verb": "get", "labelSelector": {"rawSelector": ""}}});
        drop_empty_strings(&mut spec);
        assert_eq!(
            spec,
            json!({"resourceAttributes": {"verb": "get", "labelSelector": {}}})
        );
    }

    #[test]
    fn discovery_lists_the_reviews_as_cluster_scoped_and_create_only() {
        let list = resource_list(AUTHORIZATION_GROUP, VERSION).unwrap();
        assert_eq!(list["groupVersion"], "authorization.k8s.io/v1");
        let kinds: Vec<&str> = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["SelfSubjectAccessReview", "SelfSubjectRulesReview"]);
        assert_eq!(list["resources"][0]["verbs"], json!(["create"]));
        assert_eq!(list["resources"][0]["namespaced"], false);
        assert!(resource_list(AUTHENTICATION_GROUP, "v1beta1").is_none());
        assert!(resource_list("apps", VERSION).is_none());
        assert_eq!(
            find(AUTHENTICATION_GROUP, VERSION, "selfsubjectreviews")
                .unwrap()
                .kind,
            "SelfSubjectReview"
        );
    }

    #[test]
    fn decode_review_fills_in_type_and_refuses_other_kinds() {
        let review = &REVIEWS[1];
        let object = decode_review(review, &HeaderMap::new(), b"{}").unwrap();
        assert_eq!(
            object,
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {}})
        );
        let pod = br#"{"apiVersion": "v1", "kind": "Pod"}"#;
        assert!(matches!(
            decode_review(review, &HeaderMap::new(), pod),
            Err(ApiError::BadRequest(_))
        ));
    }
}
