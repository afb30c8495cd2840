//! Scale from zero: a request for a Service with no ready endpoint wakes the workload behind
//! it when an HPA lets that workload sleep (`minReplicas: 0`), and waits in the gateway until a
//! replica is ready — the client sees a slower first response, never an error.
//!
//! Which workload: an HPA in the Service's namespace with `minReplicas: 0` whose scale target
//! (a Deployment or ReplicaSet) has a pod template the Service selects. Waking sets the
//! target's `spec.replicas` from 0 to 1 with a JSON patch that first tests it is still 0, so
//! gateways on several nodes waking it at once make one replica, not several. From there the
//! HPA scales on load as usual, and back to zero when idle (see the controller).

use serde_json::{Map, Value, json};

/// What an HPA means for a Service that has no ready endpoint.
#[derive(Debug, PartialEq, Eq)]
pub enum Wake {
    /// The HPA's target is not behind this Service, or may not sleep.
    NotMine,
    /// The target sleeps (0 replicas): set it to 1.
    Sleeping,
    /// The target has replicas already, which are starting: wait for them.
    Starting,
}

/// The scale target `(kind, name)` of an HPA that may scale it to zero.
pub fn sleepy_target(hpa: &Value) -> Option<(&str, &str)> {
    if hpa.pointer("/spec/minReplicas").and_then(Value::as_i64) != Some(0) {
        return None;
    }
    let kind = hpa.pointer("/spec/scaleTargetRef/kind")?.as_str()?;
    let name = hpa.pointer("/spec/scaleTargetRef/name")?.as_str()?;
    matches!(kind, "Deployment" | "ReplicaSet").then_some((kind, name))
}

/// Whether `target` (a Deployment or ReplicaSet) stands behind a Service with `selector`,
/// and whether it sleeps.
pub fn wake(selector: &Map<String, Value>, target: &Value) -> Wake {
    let labels = target.pointer("/spec/template/metadata/labels");
    let selected = !selector.is_empty()
        && selector
            .iter()
            .all(|(key, value)| labels.and_then(|l| l.get(key)) == Some(value));
    if !selected || target.pointer("/metadata/deletionTimestamp").is_some() {
        return Wake::NotMine;
    }
    match target.pointer("/spec/replicas").and_then(Value::as_i64) {
        Some(0) => Wake::Sleeping,
        _ => Wake::Starting,
    }
}

/// The JSON patch that wakes a sleeping target: 0 → 1 replica, only if still 0.
pub fn wake_patch() -> Value {
    json!([
        {"op": "test", "path": "/spec/replicas", "value": 0},
        {"op": "replace", "path": "/spec/replicas", "value": 1},
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selector(app: &str) -> Map<String, Value> {
        json!({"app": app}).as_object().unwrap().clone()
    }

    fn deployment(app: &str, replicas: i64) -> Value {
        json!({"metadata": {"name": app},
               "spec": {"replicas": replicas, "template": {"metadata": {"labels": {"app": app, "tier": "web"}}}}})
    }

    #[test]
    fn only_hpas_with_min_replicas_zero_let_a_target_sleep() {
        let hpa = |min: Value, kind: &str| {
            json!({"spec": {"minReplicas": min, "maxReplicas": 3,
                   "scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": "web"}}})
        };
        assert_eq!(
            sleepy_target(&hpa(json!(0), "Deployment")),
            Some(("Deployment", "web"))
        );
        assert_eq!(
            sleepy_target(&hpa(json!(0), "ReplicaSet")),
            Some(("ReplicaSet", "web"))
        );
        assert_eq!(sleepy_target(&hpa(json!(1), "Deployment")), None);
        assert_eq!(
            sleepy_target(&hpa(Value::Null, "Deployment")),
            None,
            "minReplicas defaults to 1"
        );
        assert_eq!(sleepy_target(&hpa(json!(0), "StatefulSet")), None);
    }

    #[test]
    fn a_target_is_woken_only_if_the_service_selects_its_pods_and_it_sleeps() {
        assert_eq!(
            wake(&selector("web"), &deployment("web", 0)),
            Wake::Sleeping
        );
        assert_eq!(
            wake(&selector("web"), &deployment("web", 2)),
            Wake::Starting
        );
        assert_eq!(wake(&selector("api"), &deployment("web", 0)), Wake::NotMine);
        assert_eq!(wake(&Map::new(), &deployment("web", 0)), Wake::NotMine);
        let mut deleted = deployment("web", 0);
        deleted["metadata"]["deletionTimestamp"] = json!("2026-11-28T00:00:00Z");
        assert_eq!(wake(&selector("web"), &deleted), Wake::NotMine);
    }

    #[test]
    fn the_wake_patch_only_applies_to_a_sleeping_target() {
        let patch: json_patch::Patch = serde_json::from_value(wake_patch()).unwrap();
        let mut sleeping = deployment("web", 0);
        json_patch::patch(&mut sleeping, &patch).unwrap();
        assert_eq!(sleeping["spec"]["replicas"], 1);
        let mut awake = deployment("web", 3);
        assert!(json_patch::patch(&mut awake, &patch).is_err());
        assert_eq!(awake["spec"]["replicas"], 3);
    }
}
