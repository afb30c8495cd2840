//! Watch over HTTP: events after a resourceVersion in order, synthetic ADDED events for the
//! current state, 410 for compacted history, bookmarks, timeouts and selectors.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;

use crate::support::{CONFIGMAPS, MERGE, TestServer, configmap, event_summary, rv};

fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn a_watch_from_a_resource_version_streams_later_changes_in_order() {
    let t = TestServer::new().await;
    t.create_configmap("earlier", json!({}), json!({})).await;
    let start = t.revision();

    // One change before the watch opens (replayed from history) ...
    let created = t.create_configmap("w", json!({}), json!({"n": "1"})).await;
    let mut watch = t
        .watch(&format!("{CONFIGMAPS}?watch=true&resourceVersion={start}"))
        .await;
    // ... a change elsewhere that must not show up ...
    t.create(
        "/api/v1/namespaces/kube-system/configmaps",
        &configmap("elsewhere", json!({}), json!({})),
    )
    .await;
    // ... and changes after it opened.
    let (code, modified) = t
        .patch(
            &format!("{CONFIGMAPS}/w"),
            MERGE,
            &json!({"data": {"n": "2"}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    let (code, _) = t.delete(&format!("{CONFIGMAPS}/w"), None).await;
    assert_eq!(code, StatusCode::OK);
    let deleted_at = t.revision();

    let added = watch.next().await;
    let changed = watch.next().await;
    let removed = watch.next().await;
    assert_eq!(
        event_summary(&added),
        ("ADDED".into(), "w".into(), rv(&created))
    );
    assert_eq!(
        event_summary(&changed),
        ("MODIFIED".into(), "w".into(), rv(&modified))
    );
    assert_eq!(
        event_summary(&removed),
        ("DELETED".into(), "w".into(), deleted_at)
    );
    assert!(rv(&created) < rv(&modified) && rv(&modified) < deleted_at);
    assert_eq!(added["object"]["kind"], "ConfigMap");
    assert_eq!(added["object"]["apiVersion"], "v1");
    assert_eq!(changed["object"]["data"]["n"], "2");
    assert_eq!(
        removed["object"]["metadata"]["uid"],
        created["metadata"]["uid"]
    );
    watch.expect_quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_watch_from_a_compacted_resource_version_yields_one_410_error_event() {
    let t = TestServer::with_history(5).await;
    t.create_configmap("churn", json!({}), json!({"n": "0"}))
        .await;
    for n in 1..=24 {
        let (code, _) = t
            .patch(
                &format!("{CONFIGMAPS}/churn"),
                MERGE,
                &json!({"data": {"n": n.to_string()}}),
            )
            .await;
        assert_eq!(code, StatusCode::OK);
    }
    assert!(t.revision() > 20);
    assert!(
        wharf_store::Store::compacted_revision(t.store.as_ref()) > 1,
        "history was compacted"
    );

    let mut watch = t
        .watch(&format!("{CONFIGMAPS}?watch=true&resourceVersion=1"))
        .await;
    let event = watch.next().await;
    assert_eq!(event["type"], "ERROR", "{event:#}");
    let status = &event["object"];
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["code"], 410);
    assert_eq!(status["reason"], "Expired");
    assert!(
        status["message"]
            .as_str()
            .unwrap_or_default()
            .contains("too old resource version"),
        "{status:#}"
    );
    assert_eq!(
        watch.next_within(Duration::from_secs(5)).await,
        None,
        "the stream ends after the error"
    );

    // A watch from a retained revision still works.
    let recent = t.revision() - 1;
    let mut watch = t
        .watch(&format!("{CONFIGMAPS}?watch=true&resourceVersion={recent}"))
        .await;
    let event = watch.next().await;
    assert_eq!(event["type"], "MODIFIED", "{event:#}");
    assert_eq!(rv(&event["object"]), t.revision());
}

#[tokio::test]
async fn a_watch_without_a_resource_version_starts_with_added_events_for_existing_objects() {
    let t = TestServer::new().await;
    let a = t.create_configmap("a", json!({}), json!({})).await;
    let b = t.create_configmap("b", json!({}), json!({})).await;
    let mut watch = t.watch(&format!("{CONFIGMAPS}?watch=true")).await;
    let first = watch.next().await;
    let second = watch.next().await;
    let mut initial = [event_summary(&first), event_summary(&second)];
    initial.sort();
    assert_eq!(
        initial,
        [
            ("ADDED".into(), "a".into(), rv(&a)),
            ("ADDED".into(), "b".into(), rv(&b)),
        ]
    );
    let (_, changed) = t
        .patch(
            &format!("{CONFIGMAPS}/a"),
            MERGE,
            &json!({"data": {"x": "y"}}),
        )
        .await;
    let event = watch.next().await;
    assert_eq!(
        event_summary(&event),
        ("MODIFIED".into(), "a".into(), rv(&changed))
    );

    // resourceVersion=0 means the same: any state, then changes.
    let mut watch = t
        .watch(&format!("{CONFIGMAPS}?watch=1&resourceVersion=0"))
        .await;
    let mut seen = [watch.next().await, watch.next().await];
    seen.sort_by_key(|e| {
        e["object"]["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    });
    assert_eq!(seen[0]["type"], "ADDED");
    assert_eq!(seen[0]["object"]["data"]["x"], "y");
}

#[tokio::test]
async fn send_initial_events_ends_the_initial_state_with_an_annotated_bookmark() {
    let t = TestServer::new().await;
    let a = t.create_configmap("a", json!({}), json!({})).await;
    let b = t.create_configmap("b", json!({}), json!({})).await;
    let mut watch = t
        .watch(&format!(
            "{CONFIGMAPS}?watch=true&allowWatchBookmarks=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&resourceVersion={}",
            rv(&a)
        ))
        .await;
    let mut added = vec![
        event_summary(&watch.next().await),
        event_summary(&watch.next().await),
    ];
    added.sort();
    assert_eq!(
        added,
        [
            ("ADDED".into(), "a".into(), rv(&a)),
            ("ADDED".into(), "b".into(), rv(&b)),
        ]
    );
    let bookmark = watch.next().await;
    assert_eq!(bookmark["type"], "BOOKMARK", "{bookmark:#}");
    assert_eq!(bookmark["object"]["kind"], "ConfigMap");
    assert_eq!(
        bookmark["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert!(rv(&bookmark["object"]) >= rv(&b));

    // Changes after the bookmark follow as usual.
    let (_, changed) = t
        .patch(
            &format!("{CONFIGMAPS}/b"),
            MERGE,
            &json!({"data": {"x": "y"}}),
        )
        .await;
    let event = watch.next().await;
    assert_eq!(
        event_summary(&event),
        ("MODIFIED".into(), "b".into(), rv(&changed))
    );
}

#[tokio::test]
async fn timeout_seconds_ends_the_watch_stream() {
    let t = TestServer::new().await;
    t.create_configmap("a", json!({}), json!({})).await;
    let started = std::time::Instant::now();
    let mut watch = t
        .watch(&format!(
            "{CONFIGMAPS}?watch=true&resourceVersion={}&timeoutSeconds=1",
            t.revision()
        ))
        .await;
    assert_eq!(watch.next_within(Duration::from_secs(5)).await, None);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900),
        "ended too early: {elapsed:?}"
    );
}

#[tokio::test]
async fn shutting_down_ends_open_watches() {
    let t = TestServer::new().await;
    let mut watch = t
        .watch(&format!(
            "{CONFIGMAPS}?watch=true&resourceVersion={}",
            t.revision()
        ))
        .await;
    watch.expect_quiet(Duration::from_millis(100)).await;
    t.server.begin_shutdown();
    assert_eq!(watch.next_within(Duration::from_secs(5)).await, None);
}

#[tokio::test]
async fn the_legacy_watch_path_prefix_opens_a_watch() {
    let t = TestServer::new().await;
    let start = t.revision();
    let mut watch = t
        .watch(&format!(
            "/api/v1/watch/namespaces/default/configmaps?resourceVersion={start}"
        ))
        .await;
    let created = t.create_configmap("legacy", json!({}), json!({})).await;
    let event = watch.next().await;
    assert_eq!(
        event_summary(&event),
        ("ADDED".into(), "legacy".into(), rv(&created))
    );
}

#[tokio::test]
async fn a_selector_watch_streams_only_matching_objects() {
    let t = TestServer::new().await;
    let start = t.revision();
    let mut watch = t
        .watch(&format!(
            "{CONFIGMAPS}?watch=true&resourceVersion={start}&labelSelector={}",
            encode("app=a")
        ))
        .await;
    t.create_configmap("other", json!({"app": "b"}), json!({}))
        .await;
    let wanted = t
        .create_configmap("wanted", json!({"app": "a"}), json!({}))
        .await;
    let event = watch.next().await;
    assert_eq!(
        event_summary(&event),
        ("ADDED".into(), "wanted".into(), rv(&wanted))
    );
    watch.expect_quiet(Duration::from_millis(300)).await;
}

/// Kubernetes' watch filters on the old and the new object: an object that stops matching is
/// reported as DELETED, or clients (informers with a label selector) keep it forever.
#[tokio::test]
async fn a_selector_watch_reports_an_object_leaving_the_selection_as_deleted() {
    let t = TestServer::new().await;
    t.create_configmap("mover", json!({"app": "a"}), json!({}))
        .await;
    let start = t.revision();
    let mut watch = t
        .watch(&format!(
            "{CONFIGMAPS}?watch=true&resourceVersion={start}&labelSelector={}",
            encode("app=a")
        ))
        .await;
    let (code, moved) = t
        .patch(
            &format!("{CONFIGMAPS}/mover"),
            MERGE,
            &json!({"metadata": {"labels": {"app": "b"}}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    let event = watch
        .next_within(Duration::from_secs(2))
        .await
        .unwrap_or_else(|| panic!("the watch ended"));
    assert_eq!(
        event_summary(&event),
        ("DELETED".into(), "mover".into(), rv(&moved))
    );
}

/// The counterpart: an existing object that starts matching is ADDED for this watcher, since
/// the watcher never saw it before.
#[tokio::test]
async fn a_selector_watch_reports_an_object_entering_the_selection_as_added() {
    let t = TestServer::new().await;
    t.create_configmap("mover", json!({"app": "b"}), json!({}))
        .await;
    let start = t.revision();
    let mut watch = t
        .watch(&format!(
            "{CONFIGMAPS}?watch=true&resourceVersion={start}&labelSelector={}",
            encode("app=a")
        ))
        .await;
    let (code, moved) = t
        .patch(
            &format!("{CONFIGMAPS}/mover"),
            MERGE,
            &json!({"metadata": {"labels": {"app": "a"}}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    let event = watch.next().await;
    assert_eq!(
        event_summary(&event),
        ("ADDED".into(), "mover".into(), rv(&moved))
    );
}

#[tokio::test]
async fn a_watch_with_an_unparseable_resource_version_is_a_bad_request() {
    let t = TestServer::new().await;
    let before = t.revision();
    let (code, status) = t
        .get(&format!(
            "{CONFIGMAPS}?watch=true&resourceVersion=yesterday"
        ))
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{status:#}");
    crate::support::assert_status(&status, StatusCode::BAD_REQUEST, "BadRequest", "yesterday");
    assert_eq!(t.revision(), before);
}

#[tokio::test]
async fn an_autoscaling_v1_watch_streams_the_stored_v2_hpas_in_their_v1_form() {
    let t = TestServer::new().await;
    let v2 = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers";
    let hpa = |name: &str| {
        json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "maxReplicas": 5,
                "metrics": [{"type": "Resource", "resource": {
                    "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}],
            },
        })
    };
    t.create(v2, &hpa("before")).await;
    let mut watch = t
        .watch("/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers?watch=true&allowWatchBookmarks=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan")
        .await;
    let initial = watch.next().await;
    assert_eq!(initial["type"], "ADDED");
    assert_eq!(initial["object"]["apiVersion"], "autoscaling/v1");
    assert_eq!(
        initial["object"]["spec"]["targetCPUUtilizationPercentage"],
        60
    );
    assert!(initial["object"]["spec"].get("metrics").is_none());
    let end = watch.next().await;
    assert_eq!(end["type"], "BOOKMARK");
    assert_eq!(end["object"]["apiVersion"], "autoscaling/v1");
    assert_eq!(
        end["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );

    // A change written in v2 reaches the v1 watcher in v1.
    let (code, _) = t
        .patch(
            &format!("{v2}/before"),
            "application/merge-patch+json",
            &json!({"spec": {"maxReplicas": 7}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    let modified = loop {
        let event = watch.next().await;
        if event["type"] != "BOOKMARK" {
            break event;
        }
    };
    assert_eq!(modified["type"], "MODIFIED");
    assert_eq!(modified["object"]["apiVersion"], "autoscaling/v1");
    assert_eq!(modified["object"]["spec"]["maxReplicas"], 7);
    assert_eq!(
        modified["object"]["spec"]["targetCPUUtilizationPercentage"],
        60
    );
}
