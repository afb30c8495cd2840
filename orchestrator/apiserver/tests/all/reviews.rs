//! The self reviews `kubectl auth can-i` and `kubectl auth whoami` create: always allowed,
//! everything permitted, an anonymous caller; validated as Kubernetes validates them, create
//! only, and never stored.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{TestServer, assert_status, causes};

const ACCESS: &str = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
const RULES: &str = "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews";
const WHOAMI: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// The body kubectl 1.37 sends for `kubectl auth can-i create pods` (captured with `-v=9`).
const CAN_I_CREATE_PODS: &str = "\
    6b3873000a320a17617574686f72697a6174696f6e2e6b38732e696f2f763112\
    1753656c665375626a656374416363657373526576696577123f0a100a001200\
    1a0022002a0032003800420012210a1f0a0764656661756c7412066372656174\
    651a0022002a04706f647332003a001a08080012001a0020001a002200";

/// The body kubectl 1.37 sends for `kubectl auth whoami` (captured with `-v=9`).
const WHOAMI_BODY: &str = "\
    6b3873000a2d0a1861757468656e7469636174696f6e2e6b38732e696f2f7631\
    121153656c665375626a656374526576696577121a0a100a0012001a0022002a\
    0032003800420012060a040a0012001a002200";

fn bytes(hex: &str) -> Vec<u8> {
    hex.as_bytes()
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

#[tokio::test]
async fn an_access_review_is_allowed_with_its_spec_echoed() {
    let t = TestServer::new().await;
    let before = t.revision();
    let spec = json!({"resourceAttributes": {
        "namespace": "default", "verb": "create", "group": "apps", "resource": "deployments",
        "subresource": "scale", "name": "web",
    }});
    let (code, review) = t
        .post(
            ACCESS,
            &json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": spec}),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{review:#}");
    assert_eq!(
        review,
        json!({
            "kind": "SelfSubjectAccessReview",
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "spec": spec,
            "status": {
                "allowed": true,
                "reason": "Wharf does not authorize requests: every client may do everything",
            },
        })
    );

    // Non-resource URLs too, and with dryRun; nothing is ever stored.
    let (code, review) = t
        .post(
            &format!("{ACCESS}?dryRun=All"),
            &json!({"spec": {"nonResourceAttributes": {"path": "/healthz", "verb": "get"}}}),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{review:#}");
    assert_eq!(review["status"]["allowed"], true);
    assert_eq!(review["spec"]["nonResourceAttributes"]["path"], "/healthz");
    assert_eq!(t.revision(), before);
}

#[tokio::test]
async fn the_protobuf_access_review_of_kubectl_1_37_is_allowed() {
    let t = TestServer::new().await;
    let (code, review) = t
        .call(
            Method::POST,
            ACCESS,
            Some(PROTOBUF),
            bytes(CAN_I_CREATE_PODS),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{review:#}");
    assert_eq!(
        review["spec"],
        json!({"resourceAttributes": {"namespace": "default", "verb": "create", "resource": "pods"}})
    );
    assert_eq!(review["status"]["allowed"], true);
    assert_eq!(review["metadata"], json!({"creationTimestamp": null}));
}

#[tokio::test]
async fn an_access_review_needs_exactly_one_kind_of_attributes() {
    let t = TestServer::new().await;
    let (code, status) = t
        .post(
            ACCESS,
            &json!({"kind": "SelfSubjectAccessReview", "spec": {}}),
        )
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_status(
        &status,
        code,
        "Invalid",
        "spec.resourceAttributes: Invalid value: null: exactly one of nonResourceAttributes or resourceAttributes must be specified",
    );
    assert_eq!(status["details"]["group"], "authorization.k8s.io");

    let (code, status) = t
        .post(
            ACCESS,
            &json!({"spec": {
                "resourceAttributes": {"verb": "get"},
                "nonResourceAttributes": {"path": "/", "verb": "get"},
            }}),
        )
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        causes(&status),
        [(
            "spec.nonResourceAttributes".to_owned(),
            r#"Invalid value: {"path":"/","verb":"get"}: cannot be specified in combination with resourceAttributes"#
                .to_owned()
        )]
    );
}

#[tokio::test]
async fn a_review_body_of_another_kind_or_shape_is_a_bad_request() {
    let t = TestServer::new().await;
    let (code, status) = t
        .post(ACCESS, &json!({"apiVersion": "v1", "kind": "Pod"}))
        .await;
    assert_status(&status, StatusCode::BAD_REQUEST, "BadRequest", "Pod");
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let (code, status) = t
        .post(
            WHOAMI,
            &json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectReview"}),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{status:#}");
    let (code, status) = t
        .post(
            ACCESS,
            &json!({"spec": {"resourceAttributes": {"verb": 5}}}),
        )
        .await;
    assert_status(
        &status,
        StatusCode::BAD_REQUEST,
        "BadRequest",
        "cannot be handled as a SelfSubjectAccessReview: spec.resourceAttributes.verb",
    );
    assert_eq!(code, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_rules_review_permits_everything_in_its_namespace() {
    let t = TestServer::new().await;
    let (code, review) = t
        .post(RULES, &json!({"spec": {"namespace": "default"}}))
        .await;
    assert_eq!(code, StatusCode::CREATED, "{review:#}");
    assert_eq!(
        review,
        json!({
            "kind": "SelfSubjectRulesReview",
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "spec": {},
            "status": {
                "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                "incomplete": false,
            },
        })
    );

    let (code, status) = t.post(RULES, &json!({"spec": {}})).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_status(&status, code, "BadRequest", "no namespace on request");
}

#[tokio::test]
async fn whoami_is_the_anonymous_user() {
    let t = TestServer::new().await;
    for (content_type, body) in [
        ("application/json", b"{}".to_vec()),
        (PROTOBUF, bytes(WHOAMI_BODY)),
    ] {
        let (code, review) = t.call(Method::POST, WHOAMI, Some(content_type), body).await;
        assert_eq!(code, StatusCode::CREATED, "{content_type}: {review:#}");
        assert_eq!(review["kind"], "SelfSubjectReview");
        assert_eq!(review["apiVersion"], "authentication.k8s.io/v1");
        assert!(review["metadata"]["creationTimestamp"].is_string());
        assert_eq!(
            review["status"],
            json!({"userInfo": {"username": "system:anonymous", "groups": ["system:unauthenticated"]}})
        );
    }
}

#[tokio::test]
async fn reviews_are_create_only() {
    let t = TestServer::new().await;
    for path in [ACCESS, RULES, WHOAMI] {
        for method in [Method::GET, Method::DELETE, Method::PUT] {
            let (code, status) = t.call(method.clone(), path, None, Body::empty()).await;
            assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert_status(
                &status,
                code,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            );
        }
    }
    // Cluster-scoped, unnamed, and only in v1.
    for path in [
        "/apis/authorization.k8s.io/v1/namespaces/default/selfsubjectaccessreviews",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews/mine",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        "/apis/authentication.k8s.io/v1beta1/selfsubjectreviews",
    ] {
        let (code, _) = t.post(path, &json!({})).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{path}");
    }
}

fn review_resources(list: &Value) -> Vec<(String, String, Value, Value)> {
    list["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("not a resource list: {list:#}"))
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["kind"].as_str().unwrap().to_owned(),
                r["namespaced"].clone(),
                r["verbs"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn discovery_lists_the_reviews() {
    let t = TestServer::new().await;
    let (_, apis) = t.get("/apis").await;
    for group in ["authorization.k8s.io", "authentication.k8s.io"] {
        let entry = apis["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == group)
            .unwrap_or_else(|| panic!("{group} missing from {apis:#}"));
        assert_eq!(
            entry["preferredVersion"]["groupVersion"],
            format!("{group}/v1")
        );
        let (code, document) = t.get(&format!("/apis/{group}")).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(document["kind"], "APIGroup");
        assert_eq!(document["versions"][0]["version"], "v1");
    }

    let (code, list) = t.get("/apis/authorization.k8s.io/v1").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(list["groupVersion"], "authorization.k8s.io/v1");
    assert_eq!(
        review_resources(&list),
        [
            (
                "selfsubjectaccessreviews".to_owned(),
                "SelfSubjectAccessReview".to_owned(),
                json!(false),
                json!(["create"])
            ),
            (
                "selfsubjectrulesreviews".to_owned(),
                "SelfSubjectRulesReview".to_owned(),
                json!(false),
                json!(["create"])
            ),
        ]
    );
    let (_, list) = t.get("/apis/authentication.k8s.io/v1").await;
    assert_eq!(
        review_resources(&list),
        [(
            "selfsubjectreviews".to_owned(),
            "SelfSubjectReview".to_owned(),
            json!(false),
            json!(["create"])
        )]
    );

    // Aggregated discovery (kubectl 1.30 and later) carries the same.
    let reply = t
        .request(
            Method::GET,
            "/apis",
            None,
            &[(
                "accept",
                "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
            )],
            Body::empty(),
        )
        .await;
    assert_eq!(reply.body["kind"], "APIGroupDiscoveryList");
    let group = |name: &str| {
        reply.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing"))
            .clone()
    };
    let authorization = group("authorization.k8s.io");
    let resources = &authorization["versions"][0]["resources"];
    assert_eq!(
        resources[0],
        json!({
            "resource": "selfsubjectaccessreviews",
            "responseKind": {"group": "", "version": "", "kind": "SelfSubjectAccessReview"},
            "scope": "Cluster",
            "singularResource": "selfsubjectaccessreview",
            "verbs": ["create"],
        })
    );
    assert_eq!(resources[1]["resource"], "selfsubjectrulesreviews");
    let authentication = group("authentication.k8s.io");
    assert_eq!(
        authentication["versions"][0]["resources"][0]["resource"],
        "selfsubjectreviews"
    );
}
