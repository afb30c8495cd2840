//! Deployments: defaults, metadata.generation, the status subresource (spec and status have
//! separate writers) and the scale subresource.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::support::{DEPLOYMENTS, JSON, MERGE, TestServer, assert_status, causes, deployment, rv};

#[tokio::test]
async fn a_created_deployment_gets_generation_one_and_kubernetes_defaults() {
    let t = TestServer::new().await;
    let mut manifest = deployment("web", 2, &[("app", "registry.example/app:1.0")]);
    manifest["status"] = json!({"replicas": 99});
    let created = t.create(DEPLOYMENTS, &manifest).await;
    assert_eq!(created["metadata"]["generation"], 1);
    assert_eq!(created["spec"]["replicas"], 2);
    assert_eq!(created["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(
        created["spec"]["strategy"]["rollingUpdate"]["maxSurge"],
        "25%"
    );
    assert_eq!(
        created["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        "25%"
    );
    assert_eq!(created["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(created["spec"]["progressDeadlineSeconds"], 600);
    let pod = &created["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Always");
    assert_eq!(pod["terminationGracePeriodSeconds"], 30);
    assert_eq!(pod["dnsPolicy"], "ClusterFirst");
    assert_eq!(pod["schedulerName"], "default-scheduler");
    assert_eq!(pod["containers"][0]["imagePullPolicy"], "IfNotPresent");
    assert!(
        created
            .get("status")
            .is_none_or(|s| s.get("replicas").is_none()),
        "a client cannot create status: {created:#}"
    );

    // Without replicas, the default is one.
    let mut bare = deployment("bare", 0, &[("app", "app")]);
    bare["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("replicas");
    let created = t.create(DEPLOYMENTS, &bare).await;
    assert_eq!(created["spec"]["replicas"], 1);
    assert_eq!(
        created["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "Always"
    );
}

#[tokio::test]
async fn generation_bumps_on_spec_changes_and_not_on_metadata_changes() {
    let t = TestServer::new().await;
    let path = format!("{DEPLOYMENTS}/web");
    let created = t
        .create(DEPLOYMENTS, &deployment("web", 2, &[("app", "app:1")]))
        .await;
    assert_eq!(created["metadata"]["generation"], 1);

    let (code, scaled) = t
        .patch(&path, MERGE, &json!({"spec": {"replicas": 3}}))
        .await;
    assert_eq!(code, StatusCode::OK, "{scaled:#}");
    assert_eq!(scaled["metadata"]["generation"], 2);
    assert_eq!(scaled["spec"]["replicas"], 3);

    let (code, labelled) = t
        .patch(
            &path,
            MERGE,
            &json!({"metadata": {"labels": {"tier": "frontend"}, "annotations": {"note": "x"}}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{labelled:#}");
    assert!(rv(&labelled) > rv(&scaled), "the label change is written");
    assert_eq!(labelled["metadata"]["labels"]["tier"], "frontend");
    assert_eq!(
        labelled["metadata"]["generation"], 2,
        "metadata changes keep the generation"
    );

    // A client cannot set the generation itself.
    let (code, forced) = t
        .patch(&path, MERGE, &json!({"metadata": {"generation": 42}}))
        .await;
    assert_eq!(code, StatusCode::OK, "{forced:#}");
    assert_eq!(forced["metadata"]["generation"], 2);

    // A PUT that changes the template bumps it again.
    let mut replacement = labelled.clone();
    replacement["spec"]["template"]["spec"]["containers"][0]["image"] = json!("app:2");
    let (code, rolled) = t.put(&path, &replacement).await;
    assert_eq!(code, StatusCode::OK, "{rolled:#}");
    assert_eq!(rolled["metadata"]["generation"], 3);
}

#[tokio::test]
async fn status_is_written_only_through_the_status_subresource() {
    let t = TestServer::new().await;
    let path = format!("{DEPLOYMENTS}/web");
    let created = t
        .create(DEPLOYMENTS, &deployment("web", 2, &[("app", "app:1")]))
        .await;

    // A PUT of the main resource ignores a status change.
    let mut with_status = created.clone();
    with_status["status"] = json!({"replicas": 7, "readyReplicas": 7});
    let (code, main) = t.put(&path, &with_status).await;
    assert_eq!(code, StatusCode::OK, "{main:#}");
    assert!(main.pointer("/status/replicas").is_none(), "{main:#}");
    let (_, current) = t.get(&path).await;
    assert!(current.pointer("/status/replicas").is_none(), "{current:#}");

    // A merge patch of the main resource ignores status as well.
    let (code, main) = t
        .patch(&path, MERGE, &json!({"status": {"replicas": 7}}))
        .await;
    assert_eq!(code, StatusCode::OK);
    assert!(main.pointer("/status/replicas").is_none(), "{main:#}");

    // PUT /status changes status and not spec.
    let (_, current) = t.get(&path).await;
    let mut status_write = current.clone();
    status_write["status"] = json!({"replicas": 2, "readyReplicas": 1, "observedGeneration": 1});
    status_write["spec"]["replicas"] = json!(10);
    let (code, written) = t.put(&format!("{path}/status"), &status_write).await;
    assert_eq!(code, StatusCode::OK, "{written:#}");
    assert_eq!(written["status"]["replicas"], 2);
    assert_eq!(written["status"]["readyReplicas"], 1);
    assert_eq!(
        written["spec"]["replicas"], 2,
        "a status write must not change spec"
    );
    assert_eq!(
        written["metadata"]["generation"], 1,
        "a status write keeps the generation"
    );
    assert!(rv(&written) > rv(&current));

    // PATCH /status likewise.
    let (code, patched) = t
        .patch(
            &format!("{path}/status"),
            MERGE,
            &json!({"spec": {"replicas": 20}, "status": {"availableReplicas": 1}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{patched:#}");
    assert_eq!(patched["status"]["availableReplicas"], 1);
    assert_eq!(patched["status"]["replicas"], 2);
    assert_eq!(patched["spec"]["replicas"], 2);

    // GET /status returns the whole object.
    let (code, via_status) = t.get(&format!("{path}/status")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(via_status["kind"], "Deployment");
    assert_eq!(via_status, patched);

    // And the main resource reads the status the subresource wrote.
    let (_, current) = t.get(&path).await;
    assert_eq!(current["status"]["availableReplicas"], 1);
}

#[tokio::test]
async fn the_scale_subresource_reads_and_patches_spec_replicas() {
    let t = TestServer::new().await;
    let path = format!("{DEPLOYMENTS}/web");
    let created = t
        .create(DEPLOYMENTS, &deployment("web", 2, &[("app", "app:1")]))
        .await;

    let (code, scale) = t.get(&format!("{path}/scale")).await;
    assert_eq!(code, StatusCode::OK, "{scale:#}");
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["metadata"]["name"], "web");
    assert_eq!(scale["metadata"]["namespace"], "default");
    assert_eq!(scale["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(
        scale["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
    assert_eq!(scale["spec"]["replicas"], 2);
    assert_eq!(scale["status"]["selector"], "app=web");

    let (code, scaled) = t
        .patch(
            &format!("{path}/scale"),
            MERGE,
            &json!({"spec": {"replicas": 5}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{scaled:#}");
    assert_eq!(scaled["kind"], "Scale");
    assert_eq!(scaled["spec"]["replicas"], 5);

    let (_, current) = t.get(&path).await;
    assert_eq!(current["spec"]["replicas"], 5);
    assert_eq!(current["metadata"]["generation"], 2);
    assert_eq!(
        current["spec"]["template"], created["spec"]["template"],
        "scaling touches only replicas"
    );
}

#[tokio::test]
async fn scale_on_a_resource_without_it_is_not_found() {
    let t = TestServer::new().await;
    t.create_configmap("cm", json!({}), json!({})).await;
    t.expect_rejected(
        Method::GET,
        "/api/v1/namespaces/default/configmaps/cm/scale",
        None,
        "",
        StatusCode::NOT_FOUND,
        "NotFound",
        "configmaps/scale",
    )
    .await;
}

/// The HorizontalPodAutoscaler controller and client-go's scale client PUT an
/// `autoscaling/v1` Scale object to `/scale` (Kubernetes: `ScaleREST.Update`).
#[tokio::test]
async fn a_put_of_a_scale_object_to_the_scale_subresource_sets_replicas() {
    let t = TestServer::new().await;
    let path = format!("{DEPLOYMENTS}/web");
    t.create(DEPLOYMENTS, &deployment("web", 2, &[("app", "app:1")]))
        .await;
    let (_, mut scale) = t.get(&format!("{path}/scale")).await;
    scale["spec"]["replicas"] = json!(4);
    let (code, updated) = t.put(&format!("{path}/scale"), &scale).await;
    assert_eq!(code, StatusCode::OK, "{updated:#}");
    assert_eq!(updated["kind"], "Scale");
    assert_eq!(updated["spec"]["replicas"], 4);
    let (_, current) = t.get(&path).await;
    assert_eq!(current["spec"]["replicas"], 4);
}

/// In Kubernetes a resourceVersion in a patch is a precondition, for the scale subresource as
/// for any other object.
#[tokio::test]
async fn a_scale_patch_with_a_stale_resource_version_is_a_conflict_and_changes_nothing() {
    let t = TestServer::new().await;
    let path = format!("{DEPLOYMENTS}/web");
    let created = t
        .create(DEPLOYMENTS, &deployment("web", 2, &[("app", "app:1")]))
        .await;
    let (code, _) = t
        .patch(&path, MERGE, &json!({"metadata": {"labels": {"x": "y"}}}))
        .await;
    assert_eq!(code, StatusCode::OK);
    t.expect_rejected(
        Method::PATCH,
        &format!("{path}/scale"),
        Some(MERGE),
        json!({"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]},
               "spec": {"replicas": 9}})
        .to_string(),
        StatusCode::CONFLICT,
        "Conflict",
        "the object has been modified",
    )
    .await;
    let (_, current) = t.get(&path).await;
    assert_eq!(current["spec"]["replicas"], 2);
}

#[tokio::test]
async fn an_invalid_deployment_is_rejected_with_every_cause_and_writes_nothing() {
    let t = TestServer::new().await;
    let mut manifest = deployment("bad", -1, &[("app", "")]);
    manifest["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
    let status = t
        .expect_rejected(
            Method::POST,
            DEPLOYMENTS,
            Some(JSON),
            manifest.to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "Deployment \"bad\" is invalid",
        )
        .await;
    let fields: Vec<String> = causes(&status).into_iter().map(|(f, _)| f).collect();
    for expected in [
        "spec.replicas",
        "spec.template.metadata.labels",
        "spec.template.spec.containers[0].image",
    ] {
        assert!(
            fields.iter().any(|f| f == expected),
            "{expected} missing from {fields:?}"
        );
    }
    assert_eq!(status["details"]["group"], "apps");
    assert_status(
        &status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        "spec.replicas",
    );
}
