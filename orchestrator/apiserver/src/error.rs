//! API errors and the one place where they become Kubernetes `kind: Status` responses.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use wharf_store::StoreError;

use crate::resources::Resource;

/// Identifies the object an error is about, for the Status `details`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subject {
    /// The object's name.
    pub name: String,
    /// The API group.
    pub group: String,
    /// The plural resource name (Kubernetes puts it in `details.kind`).
    pub resource: String,
    /// The kind, used in messages about invalid objects.
    pub kind: String,
}

impl Subject {
    /// The subject for one object of a resource.
    pub fn new(resource: &Resource, name: &str) -> Subject {
        Subject {
            name: name.to_owned(),
            group: resource.group.to_owned(),
            resource: resource.plural.to_owned(),
            kind: resource.kind.to_owned(),
        }
    }

    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

/// One field-level problem of an invalid object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// Kubernetes' cause type, e.g. `FieldValueInvalid`, `FieldValueRequired`.
    pub reason: &'static str,
    /// The field path, e.g. `metadata.name`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl Cause {
    /// An invalid value.
    pub fn invalid(field: &str, value: &str, detail: &str) -> Cause {
        Cause {
            reason: "FieldValueInvalid",
            field: field.to_owned(),
            message: format!("Invalid value: {value:?}: {detail}"),
        }
    }

    /// A missing required value.
    pub fn required(field: &str, detail: &str) -> Cause {
        Cause {
            reason: "FieldValueRequired",
            field: field.to_owned(),
            message: if detail.is_empty() {
                "Required value".to_owned()
            } else {
                format!("Required value: {detail}")
            },
        }
    }
}

/// Everything the API can answer with other than success.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ApiError {
    /// 400: the request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 403: the request is not allowed (e.g. creating in a terminating namespace).
    #[error("{0}")]
    Forbidden(String),
    /// 404: the object does not exist.
    #[error("{} {:?} not found", .0.qualified(), .0.name)]
    NotFound(Subject),
    /// 404: no such path or resource.
    #[error("{0}")]
    PathNotFound(String),
    /// 405: the resource does not support the verb.
    #[error("{0}")]
    MethodNotSupported(String),
    /// 409: a create found the object already present.
    #[error("{} {:?} already exists", .0.qualified(), .0.name)]
    AlreadyExists(Subject),
    /// 409: the object was modified since the caller read it.
    #[error("Operation cannot be fulfilled on {} {:?}: {}", .0.qualified(), .0.name, .1)]
    Conflict(Subject, String),
    /// 409: a server-side apply would change fields other managers own (the message as
    /// Kubernetes words it, and one `FieldManagerConflict` cause per field).
    #[error("{0}")]
    ApplyConflict(String, Vec<Cause>),
    /// 410: the requested resourceVersion is compacted.
    #[error("{0}")]
    Gone(String),
    /// 413: the body exceeds the limit.
    #[error("the request body is larger than the {0} byte limit")]
    PayloadTooLarge(usize),
    /// 415: the body's media type is not accepted.
    #[error("the body of the request was in an unknown format - accepted media types include: {0}")]
    UnsupportedMediaType(String),
    /// 422: the object fails validation.
    #[error("{} {:?} is invalid: {}", .0.kind, .0.name, join_causes(.1))]
    Invalid(Subject, Vec<Cause>),
    /// 429: the request may succeed later (an eviction a disruption budget forbids now):
    /// the message, and causes of type `reason` with their messages.
    #[error("{0}")]
    TooManyRequests(String, Vec<Cause>),
    /// 500: an internal failure; the detail is logged, not sent.
    #[error("an internal error occurred")]
    Internal(String),
    /// 503: the store cannot take the request now.
    #[error("the server is currently unable to handle the request: {0}")]
    Unavailable(String),
}

fn join_causes(causes: &[Cause]) -> String {
    let parts: Vec<String> = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    if parts.len() == 1 {
        parts[0].clone()
    } else {
        format!("[{}]", parts.join(", "))
    }
}

impl ApiError {
    /// The HTTP status code.
    pub fn code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) | ApiError::PathNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotSupported(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::AlreadyExists(_) | ApiError::Conflict(..) | ApiError::ApplyConflict(..) => {
                StatusCode::CONFLICT
            }
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Invalid(..) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests(..) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Kubernetes' `reason` string.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::NotFound(_) | ApiError::PathNotFound(_) => "NotFound",
            ApiError::MethodNotSupported(_) => "MethodNotAllowed",
            ApiError::AlreadyExists(_) => "AlreadyExists",
            ApiError::Conflict(..) | ApiError::ApplyConflict(..) => "Conflict",
            ApiError::Gone(_) => "Expired",
            ApiError::PayloadTooLarge(_) => "RequestEntityTooLarge",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::Invalid(..) => "Invalid",
            ApiError::TooManyRequests(..) => "TooManyRequests",
            ApiError::Internal(_) => "InternalError",
            ApiError::Unavailable(_) => "ServiceUnavailable",
        }
    }

    /// The `kind: Status` body.
    pub fn status_body(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code().as_u16(),
        });
        let subject = match self {
            ApiError::NotFound(s)
            | ApiError::AlreadyExists(s)
            | ApiError::Conflict(s, _)
            | ApiError::Invalid(s, _) => Some(s),
            _ => None,
        };
        if let Some(subject) = subject {
            let mut details = json!({"name": subject.name, "kind": subject.resource});
            if !subject.group.is_empty() {
                details["group"] = json!(subject.group);
            }
            if let ApiError::Invalid(_, causes) = self {
                details["kind"] = json!(subject.kind);
                details["causes"] = causes
                    .iter()
                    .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                    .collect();
            }
            status["details"] = details;
        }
        if let ApiError::TooManyRequests(_, causes) = self {
            status["details"] = json!({"causes": causes
                .iter()
                .map(|c| json!({"reason": c.reason, "message": c.message}))
                .collect::<Vec<_>>()});
        }
        if let ApiError::ApplyConflict(_, causes) = self {
            status["details"] = json!({"causes": causes
                .iter()
                .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                .collect::<Vec<_>>()});
        }
        status
    }

    /// Maps a store failure about `subject` to the API error a client expects.
    pub fn from_store(error: StoreError, subject: Subject) -> ApiError {
        match error {
            StoreError::AlreadyExists(_) => ApiError::AlreadyExists(subject),
            StoreError::NotFound(_) => ApiError::NotFound(subject),
            StoreError::Conflict { .. } => ApiError::Conflict(
                subject,
                "the object has been modified; please apply your changes to the latest version and try again".into(),
            ),
            StoreError::Compacted { requested, compacted } => ApiError::Gone(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            StoreError::Unavailable(m) => ApiError::Unavailable(m),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error answering a request");
        }
        let body = serde_json::to_vec(&self.status_body()).unwrap_or_default();
        let mut response = (self.code(), body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> Subject {
        Subject {
            name: "web".into(),
            group: "apps".into(),
            resource: "deployments".into(),
            kind: "Deployment".into(),
        }
    }

    #[test]
    fn not_found_reads_like_kubernetes() {
        let e = ApiError::NotFound(subject());
        let body = e.status_body();
        assert_eq!(body["message"], "deployments.apps \"web\" not found");
        assert_eq!(body["reason"], "NotFound");
        assert_eq!(body["code"], 404);
        assert_eq!(body["details"]["group"], "apps");
        assert_eq!(body["details"]["kind"], "deployments");
    }

    #[test]
    fn invalid_objects_list_their_causes_by_field() {
        let e = ApiError::Invalid(
            subject(),
            vec![Cause::invalid("metadata.name", "Web", "must be lower case")],
        );
        let body = e.status_body();
        assert_eq!(e.code(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            body["message"],
            "Deployment \"web\" is invalid: metadata.name: Invalid value: \"Web\": must be lower case"
        );
        assert_eq!(body["details"]["causes"][0]["field"], "metadata.name");
        assert_eq!(body["details"]["kind"], "Deployment");
    }

    #[test]
    fn store_errors_map_to_kubernetes_codes() {
        let cases = [
            (StoreError::AlreadyExists("k".into()), 409, "AlreadyExists"),
            (StoreError::NotFound("k".into()), 404, "NotFound"),
            (
                StoreError::Conflict {
                    key: "k".into(),
                    expected: 1,
                    actual: 2,
                },
                409,
                "Conflict",
            ),
            (
                StoreError::Compacted {
                    requested: 1,
                    compacted: 5,
                },
                410,
                "Expired",
            ),
            (
                StoreError::Unavailable("disk full".into()),
                503,
                "ServiceUnavailable",
            ),
            (StoreError::Corrupt("x".into()), 500, "InternalError"),
        ];
        for (store_error, code, reason) in cases {
            let e = ApiError::from_store(store_error, subject());
            assert_eq!(e.code().as_u16(), code);
            assert_eq!(e.reason(), reason);
        }
    }

    #[test]
    fn apply_conflicts_read_like_kubernetes() {
        let e = ApiError::ApplyConflict(
            "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas".into(),
            vec![Cause {
                reason: "FieldManagerConflict",
                field: ".spec.replicas".into(),
                message: "conflict with \"kubectl\"".into(),
            }],
        );
        let body = e.status_body();
        assert_eq!(body["code"], 409);
        assert_eq!(body["reason"], "Conflict");
        assert_eq!(
            body["message"],
            "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"
        );
        assert_eq!(
            body["details"],
            json!({"causes": [{"reason": "FieldManagerConflict",
                "message": "conflict with \"kubectl\"", "field": ".spec.replicas"}]})
        );
    }

    #[test]
    fn internal_errors_do_not_leak_their_detail() {
        let e = ApiError::Internal("redb page 17 checksum mismatch".into());
        assert!(
            !e.status_body()["message"]
                .as_str()
                .unwrap()
                .contains("redb")
        );
    }
}
