//! `POST pods/NAME/eviction` (a `policy/v1` Eviction): deleting a pod only if the
//! PodDisruptionBudget that covers it allows one more disruption, as kube-apiserver's eviction
//! REST does. `kubectl drain` evicts through it once discovery lists `pods/eviction`.
//!
//! [`decide`] is pure: from the pod and the budgets of its namespace it says whether the pod
//! may go at once (a pod that has ended, is pending or is already being deleted, or that no
//! budget covers), must be charged to its budget first, or may not go now:
//! - more than one budget covering the pod is a 500, as Kubernetes answers;
//! - a budget whose status is older than its spec (`observedGeneration`) or that allows no
//!   disruption is a 429 `TooManyRequests` with a `DisruptionBudget` cause, which kubectl
//!   drain prints and retries;
//! - an unready pod may go without a charge while its budget is healthy
//!   (`unhealthyPodEvictionPolicy` `IfHealthyBudget`, the default), or always with
//!   `AlwaysAllow`.
//!
//! Charging writes the budget's status (one fewer `disruptionsAllowed`, the pod in
//! `disruptedPods`) with its resourceVersion as a precondition, so two evictions cannot spend
//! the same disruption; a conflict re-reads and decides again. The disruption controller
//! recomputes the status from the pods afterwards.

use serde_json::{Value, json};
use wharf_apimachinery::labels;

use crate::error::{ApiError, Cause};
use crate::http::{Query, delete_options_of, json_response};
use crate::registry::{ListOptions, Part, Registry, WriteOptions};
use crate::resources;

/// The message of a refused eviction, as Kubernetes words it.
pub const REFUSED: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

/// How many times a charge is retried after losing a race for the budget.
const CHARGE_ATTEMPTS: usize = 5;

/// What an eviction may do.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Delete the pod now.
    Delete,
    /// Charge the budget of this name one disruption, then delete the pod.
    Charge(String),
}

/// Whether a pod is Ready.
fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Whether `budget` covers `pod`: its selector matches the pod's labels (a missing selector
/// matches nothing, an empty one everything, as in `policy/v1`).
fn covers(budget: &Value, pod: &Value) -> bool {
    let selector = &budget["spec"]["selector"];
    if selector.is_null() {
        return false;
    }
    labels::from_label_selector_object(selector).is_ok_and(|selector| {
        selector.matches(pod.pointer("/metadata/labels").and_then(Value::as_object))
    })
}

fn int(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn too_many(message: String) -> ApiError {
    ApiError::TooManyRequests(
        REFUSED.into(),
        vec![Cause {
            reason: "DisruptionBudget",
            field: String::new(),
            message,
        }],
    )
}

/// Decides an eviction of `pod` given the disruption budgets of its namespace.
pub fn decide(pod: &Value, budgets: &[Value]) -> Result<Decision, ApiError> {
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    if matches!(phase, Some("Succeeded" | "Failed" | "Pending"))
        || pod.pointer("/metadata/deletionTimestamp").is_some()
    {
        return Ok(Decision::Delete);
    }
    let covering: Vec<&Value> = budgets.iter().filter(|b| covers(b, pod)).collect();
    let budget = match covering.as_slice() {
        [] => return Ok(Decision::Delete),
        [one] => *one,
        _ => {
            return Err(ApiError::Internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.".into(),
            ));
        }
    };
    let name = budget["metadata"]["name"].as_str().unwrap_or_default();
    let (current, desired) = (
        int(budget, "/status/currentHealthy"),
        int(budget, "/status/desiredHealthy"),
    );
    if !is_ready(pod)
        && (budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
            || (current >= desired && desired > 0))
    {
        return Ok(Decision::Delete);
    }
    if int(budget, "/status/observedGeneration") < int(budget, "/metadata/generation") {
        return Err(too_many(format!(
            "The disruption budget {name} is still being processed by the server."
        )));
    }
    let allowed = int(budget, "/status/disruptionsAllowed");
    if allowed < 0 {
        return Err(ApiError::Forbidden(
            "pdb disruptions allowed is negative".into(),
        ));
    }
    if allowed == 0 {
        return Err(too_many(format!(
            "The disruption budget {name} needs {desired} healthy pods and has {current} currently"
        )));
    }
    Ok(Decision::Charge(name.to_owned()))
}

/// Evicts pod `namespace/name` as `eviction` (a decoded `policy/v1` Eviction) asks; answers
/// 201 with a Success Status, as Kubernetes does.
pub async fn evict(
    registry: &Registry,
    namespace: &str,
    name: &str,
    eviction: &Value,
    query: &Query,
) -> Result<axum::response::Response, ApiError> {
    if let Some(kind) = eviction["kind"].as_str()
        && kind != "Eviction"
    {
        return Err(ApiError::BadRequest(format!(
            "the eviction subresource takes a policy/v1 Eviction, not {kind}"
        )));
    }
    if eviction["metadata"]["name"].as_str() != Some(name) {
        return Err(ApiError::BadRequest(
            "name in URL does not match name in Eviction object".into(),
        ));
    }
    let options = delete_options_of(query, &eviction["deleteOptions"]);
    let pods = resources::find("", "v1", "pods").expect("pods are served");
    let budgets = resources::find("policy", "v1", "poddisruptionbudgets").expect("served");
    for _ in 0..CHARGE_ATTEMPTS {
        let pod = registry.get(pods, Some(namespace), name).await?;
        let listed = registry
            .list(budgets, Some(namespace), &ListOptions::default())
            .await?;
        let Decision::Charge(budget_name) = decide(&pod, &listed.items)? else {
            registry
                .delete(pods, Some(namespace), name, &options)
                .await?;
            return Ok(success());
        };
        if options.dry_run {
            return Ok(success());
        }
        let mut budget = listed
            .items
            .into_iter()
            .find(|b| b["metadata"]["name"] == budget_name.as_str())
            .expect("decided from this list");
        let allowed = int(&budget, "/status/disruptionsAllowed");
        budget["status"]["disruptionsAllowed"] = json!(allowed - 1);
        budget["status"]["disruptedPods"][name] = json!(crate::meta::now_rfc3339());
        let charged = registry
            .update(
                budgets,
                Some(namespace),
                &budget_name,
                budget,
                Part::Status,
                &WriteOptions::default(),
            )
            .await;
        match charged {
            Ok(_) => {
                registry
                    .delete(pods, Some(namespace), name, &options)
                    .await?;
                return Ok(success());
            }
            // Another eviction spent a disruption meanwhile: decide again.
            Err(ApiError::Conflict(..)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(too_many(
        "The disruption budget changed too often; try again.".into(),
    ))
}

fn success() -> axum::response::Response {
    json_response(
        axum::http::StatusCode::CREATED,
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Success", "code": 201,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ready: bool) -> Value {
        json!({
            "metadata": {"name": "web-1", "labels": {"app": "web"}},
            "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": if ready { "True" } else { "False" }},
            ]},
        })
    }

    fn budget(name: &str, allowed: i64, current: i64, desired: i64) -> Value {
        json!({
            "metadata": {"name": name, "generation": 1},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "minAvailable": desired},
            "status": {"observedGeneration": 1, "disruptionsAllowed": allowed,
                       "currentHealthy": current, "desiredHealthy": desired, "expectedPods": current},
        })
    }

    fn refusal(result: Result<Decision, ApiError>) -> (u16, String) {
        match result {
            Err(e) => (e.code().as_u16(), e.status_body().to_string()),
            Ok(decision) => panic!("allowed: {decision:?}"),
        }
    }

    #[test]
    fn a_pod_no_budget_covers_goes_at_once() {
        let other = json!({"metadata": {"name": "db", "generation": 1},
                           "spec": {"selector": {"matchLabels": {"app": "db"}}}});
        let no_selector = json!({"metadata": {"name": "none", "generation": 1}, "spec": {}});
        assert_eq!(
            decide(&pod(true), &[other, no_selector]),
            Ok(Decision::Delete)
        );
    }

    #[test]
    fn a_budget_with_disruptions_left_is_charged_and_one_without_refuses_with_429() {
        assert_eq!(
            decide(&pod(true), &[budget("web", 1, 3, 2)]),
            Ok(Decision::Charge("web".into()))
        );
        let (code, body) = refusal(decide(&pod(true), &[budget("web", 0, 2, 2)]));
        assert_eq!(code, 429);
        assert!(body.contains(REFUSED), "{body}");
        assert!(body.contains("TooManyRequests"), "{body}");
        assert!(
            body.contains("The disruption budget web needs 2 healthy pods and has 2 currently"),
            "{body}"
        );
    }

    #[test]
    fn a_budget_whose_status_is_behind_its_spec_refuses_until_processed() {
        let mut stale = budget("web", 1, 3, 2);
        stale["metadata"]["generation"] = json!(2);
        let (code, body) = refusal(decide(&pod(true), &[stale]));
        assert_eq!(code, 429);
        assert!(body.contains("still being processed"), "{body}");
    }

    #[test]
    fn ended_pending_and_terminating_pods_ignore_budgets() {
        let full = budget("web", 0, 2, 2);
        for phase in ["Succeeded", "Failed", "Pending"] {
            let mut ended = pod(true);
            ended["status"]["phase"] = json!(phase);
            assert_eq!(
                decide(&ended, std::slice::from_ref(&full)),
                Ok(Decision::Delete),
                "{phase}"
            );
        }
        let mut going = pod(true);
        going["metadata"]["deletionTimestamp"] = json!("2026-11-28T00:00:00Z");
        assert_eq!(decide(&going, &[full]), Ok(Decision::Delete));
    }

    #[test]
    fn an_unready_pod_goes_free_while_its_budget_is_healthy() {
        // Healthy budget (3 of the 2 needed): the unready pod costs nothing.
        assert_eq!(
            decide(&pod(false), &[budget("web", 1, 3, 2)]),
            Ok(Decision::Delete)
        );
        // Unhealthy budget: it needs a disruption like any other pod, and there is none.
        assert_eq!(
            refusal(decide(&pod(false), &[budget("web", 0, 1, 2)])).0,
            429
        );
        // AlwaysAllow lets it go anyway.
        let mut always = budget("web", 0, 1, 2);
        always["spec"]["unhealthyPodEvictionPolicy"] = json!("AlwaysAllow");
        assert_eq!(decide(&pod(false), &[always]), Ok(Decision::Delete));
    }

    #[test]
    fn two_budgets_covering_one_pod_are_an_internal_error() {
        let (code, _) = refusal(decide(
            &pod(true),
            &[budget("a", 1, 3, 2), budget("b", 1, 3, 2)],
        ));
        assert_eq!(code, 500);
    }
}
