//! The HorizontalPodAutoscaler over a real registry, with the Deployment, ReplicaSet and
//! binder controllers running and a fake metrics source (pure input: it reports the same
//! usage for every pod of the namespace).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use wharf_apiserver::registry::{Part, PatchType, Registry, WriteOptions};
use wharf_apiserver::resources::{self, Resource};
use wharf_controllers::hpa::{MetricsSource, PodUsage};

use crate::support::{Cluster, deployments, eventually, number, pods, text};

/// Reports `cpu_millis` and `requests_per_second` for every pod of the namespace.
struct FakeMetrics {
    registry: Registry,
    usage: Mutex<(f64, f64)>,
}

impl MetricsSource for FakeMetrics {
    fn pod_usage<'a>(
        &'a self,
        namespace: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Vec<PodUsage>, String>> {
        Box::pin(async move {
            let (cpu_millis, requests_per_second) = *self.usage.lock().unwrap();
            let list = self
                .registry
                .list(pods(), Some(namespace), &Default::default())
                .await
                .map_err(|e| e.to_string())?;
            Ok(list
                .items
                .iter()
                .map(|pod| PodUsage {
                    namespace: namespace.to_owned(),
                    name: text(pod, "/metadata/name").to_owned(),
                    uid: text(pod, "/metadata/uid").to_owned(),
                    cpu_millis,
                    memory_bytes: 64 << 20,
                    requests_per_second,
                    requests_in_flight: 0.0,
                    timestamp: SystemTime::now(),
                    window: Duration::from_secs(30),
                })
                .collect())
        })
    }
}

fn hpas() -> &'static Resource {
    resources::find("autoscaling", "v2", "horizontalpodautoscalers").expect("HPAs are served")
}

fn events() -> &'static Resource {
    resources::find("", "v1", "events").expect("events are served")
}

fn deployment(name: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "app", "image": "registry.example/app:1",
                    "resources": {"requests": {"cpu": "100m"}},
                }]},
            },
        },
    })
}

/// Starts the HPA controller with a 100 ms sync period; the returned sender stops it.
fn start_hpa(
    cluster: &Cluster,
    metrics: Arc<FakeMetrics>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(wharf_controllers::hpa::run(
        cluster.registry.clone(),
        metrics,
        Duration::from_millis(100),
        async move {
            let _ = stopped.await;
        },
    ));
    (stop, task)
}

/// Marks every pod of `app` running and ready since well before the cpu initialization
/// period, as the node agent would have.
async fn mark_pods_ready(cluster: &Cluster, app: &str) {
    let long_ago = wharf_apiserver::meta::rfc3339(SystemTime::now() - Duration::from_secs(600));
    for pod in cluster.live_pods(&format!("app={app}")).await {
        if text(&pod, "/status/phase") == "Running" {
            continue;
        }
        let patch = json!({"status": {
            "phase": "Running", "startTime": long_ago,
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": long_ago}],
        }});
        let _ = cluster
            .registry
            .patch(
                pods(),
                Some("default"),
                text(&pod, "/metadata/name"),
                PatchType::StrategicMerge,
                &patch,
                Part::Status,
                &WriteOptions::default(),
            )
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_cpu_scales_a_deployment_up_and_reports_it_in_the_hpa_status() {
    let cluster = Cluster::start().await;
    cluster.create(deployments(), deployment("web", 2)).await;
    cluster
        .create(
            hpas(),
            json!({
                "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "web"},
                "spec": {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                    "minReplicas": 1, "maxReplicas": 5,
                    "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 50}}}],
                },
            }),
        )
        .await;
    let metrics = Arc::new(FakeMetrics {
        registry: cluster.registry.clone(),
        usage: Mutex::new((200.0, 1.0)),
    });
    let (stop, task) = start_hpa(&cluster, metrics);
    let c = &cluster;
    eventually("the Deployment to be scaled to 5", || async move {
        mark_pods_ready(c, "web").await;
        let d = c.get(deployments(), "web").await.ok_or("no Deployment")?;
        match number(&d, "/spec/replicas") {
            5 => Ok(()),
            n => Err(format!("{n} replicas")),
        }
    })
    .await;
    let hpa = eventually("the HPA status to show the rescale", || async move {
        let hpa = c.get(hpas(), "web").await.ok_or("no HPA")?;
        if number(&hpa, "/status/desiredReplicas") == 5
            && hpa.pointer("/status/lastScaleTime").is_some()
        {
            Ok(hpa)
        } else {
            Err(format!("{:#}", hpa["status"]))
        }
    })
    .await;
    assert_eq!(
        number(
            &hpa,
            "/status/currentMetrics/0/resource/current/averageUtilization"
        ),
        200
    );
    let conditions = hpa["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "ScalingActive" && c["reason"] == "ValidMetricFound"),
        "{conditions:#?}"
    );
    // The Event is written after the scale and the status (best effort, like Kubernetes').
    eventually("a SuccessfulRescale event", || async move {
        let rescales: Vec<String> = c
            .list(events(), "")
            .await
            .iter()
            .filter(|e| e["reason"] == "SuccessfulRescale")
            .map(|e| text(e, "/message").to_owned())
            .collect();
        if rescales.iter().any(|m| {
            m.starts_with(
                "New size: 5; reason: cpu resource utilization (percentage of request) above target",
            )
        }) {
            Ok(())
        } else {
            Err(format!("{rescales:?}"))
        }
    })
    .await;
    let _ = stop.send(());
    task.await.expect("the HPA controller stops cleanly");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_without_requests_scales_to_zero_after_the_idle_window() {
    let cluster = Cluster::start().await;
    cluster.create(deployments(), deployment("idle", 2)).await;
    cluster
        .create(
            hpas(),
            json!({
                "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "idle"},
                "spec": {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "idle"},
                    "minReplicas": 0, "maxReplicas": 3,
                    "metrics": [{"type": "Pods", "pods": {"metric": {"name": "http_requests_per_second"},
                        "target": {"type": "AverageValue", "averageValue": "10"}}}],
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 1}},
                },
            }),
        )
        .await;
    let metrics = Arc::new(FakeMetrics {
        registry: cluster.registry.clone(),
        usage: Mutex::new((5.0, 0.0)),
    });
    let (stop, task) = start_hpa(&cluster, metrics);
    let c = &cluster;
    eventually("the Deployment to be scaled to zero", || async move {
        mark_pods_ready(c, "idle").await;
        let d = c.get(deployments(), "idle").await.ok_or("no Deployment")?;
        match number(&d, "/spec/replicas") {
            0 => Ok(()),
            n => Err(format!("{n} replicas")),
        }
    })
    .await;
    eventually("the HPA to report ScaledToZero", || async move {
        let hpa = c.get(hpas(), "idle").await.ok_or("no HPA")?;
        let scaled_to_zero = hpa["status"]["conditions"]
            .as_array()
            .is_some_and(|conditions| {
                conditions.iter().any(|c| {
                    c["type"] == "ScalingActive"
                        && c["status"] == "False"
                        && c["reason"] == "ScaledToZero"
                })
            });
        if scaled_to_zero && number(&hpa, "/status/currentReplicas") == 0 {
            Ok(())
        } else {
            Err(format!("{:#}", hpa["status"]))
        }
    })
    .await;
    // At zero it stays at zero: the HPA does not wake the workload by itself.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let d = cluster.get(deployments(), "idle").await.unwrap();
    assert_eq!(number(&d, "/spec/replicas"), 0);
    let _ = stop.send(());
    task.await.expect("the HPA controller stops cleanly");
    cluster.stop().await;
}
