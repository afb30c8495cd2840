//! The Job controller (`batch/v1` Job): runs pods from `spec.template` until enough of them
//! succeed, or gives up, and reports what happened in `status`.
//!
//! [`plan`] is pure. From one Job and the pods it controls it decides, as Kubernetes' Job
//! controller does for the `NonIndexed` completion mode:
//! - **pods**: up to `spec.parallelism` pods are *active* (not finished, not being deleted) at
//!   once, and never more than still need to succeed (`completions - succeeded`). Pods are
//!   created from the template, named `JOB-xxxxx`, labelled `batch.kubernetes.io/controller-uid`,
//!   `batch.kubernetes.io/job-name`, `controller-uid` and `job-name` (the labels the Kubernetes
//!   API server puts on a Job's template), with the Job as their controller. Surplus active pods
//!   (after lowering `parallelism`) are deleted, newest first.
//! - **retries**: after failed pods, new pods wait the usual exponential backoff: 10 s for the
//!   first failure since the last success, doubling up to 6 minutes, counted from the last
//!   failure. The plan returns when to look again ([`Plan::requeue_after`]).
//! - **success**: once `completions` pods succeeded (without `completions`: once one pod
//!   succeeded, a simplified work queue), the Job gets `SuccessCriteriaMet`, its remaining
//!   active pods are deleted, and when no pod of it is running any more, `Complete` (reason
//!   `CompletionsReached`) and `completionTime`.
//! - **failure**: more failed pods than `backoffLimit` (default 6; with `restartPolicy:
//!   OnFailure`, container restarts of the active pods count too), or `activeDeadlineSeconds`
//!   passed since `startTime`, give `FailureTarget` with reason `BackoffLimitExceeded` or
//!   `DeadlineExceeded`; the active pods are deleted and, once they are gone, `Failed` with the
//!   same reason. The plan asks to be run again when the deadline is due.
//! - **suspend**: a suspended Job creates no pods and deletes its active ones, with condition
//!   `Suspended`; resuming it restarts the `activeDeadlineSeconds` clock (`startTime` is reset).
//! - **status**: `active`, `ready`, `terminating`, `succeeded`, `failed`, `startTime`,
//!   `completionTime` and the conditions, written only when they change.
//!
//! Counting: `succeeded` and `failed` never go down. A pod counts once it is seen `Succeeded`,
//! or `Failed` without being deleted (pods deleted by the controller or a user do not count as
//! failures); the counts are the larger of the recorded ones and those of the pods that still
//! exist. That is simpler than Kubernetes' `uncountedTerminatedPods` and tracking finalizer,
//! and exact as long as terminated pods are not deleted before a pass has seen them, which only
//! a user (or the deletion of the Job) does.
//!
//! Pods are claimed by their controller reference only; a Job never adopts pods, so its
//! `spec.selector` plays no part here.
//!
//! [`run`] applies plans whenever a Job or a pod changes (re-planning only the namespace that
//! changed), when a backoff or deadline is due, and every [`RESYNC_INTERVAL`](crate::RESYNC_INTERVAL).
//! Every write carries its target's uid as a precondition.
//!
//! Events about the Job, from `job-controller`, as Kubernetes records them: `SuccessfulCreate`
//! "Created pod: NAME" and `SuccessfulDelete` "Deleted pod: NAME" for each pod, and, once, when
//! the status that finishes the Job is written ([`finished_event`]): `Completed` "Job
//! completed", or a Warning with the reason and message of the `Failed` condition
//! (`BackoffLimitExceeded`, `DeadlineExceeded`).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::json;
use wharf_apiserver::registry::{DeleteOptions, Part, Registry, WriteOptions};
use wharf_apiserver::resources::{self, Resource};
use wharf_apiserver::{ApiError, meta};

use crate::{
    EventRecorder, ObjectKey, PassOutcome, PodChange, controller_reference, drive,
    group_by_controller, is_deleting, list_typed, pod_change_event,
};

/// The component the Job controller's Events come from (Kubernetes' name).
pub const COMPONENT: &str = "job-controller";

/// The most pods one pass creates or deletes for one Job, so one huge Job cannot starve the
/// others.
pub const BURST_PODS: usize = 500;
/// The default `spec.backoffLimit`.
pub const DEFAULT_BACKOFF_LIMIT: i32 = 6;
/// The wait before the first retry after a failure; it doubles with each further failure.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(10);
/// The longest wait between retries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(360);

/// One write the Job controller makes.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Create `count` pods like `pod` (which has a `generateName`, so each gets its own name).
    CreatePods {
        /// The pod to create, built by [`pod_from_template`].
        pod: Box<Pod>,
        /// How many.
        count: usize,
    },
    /// Delete an active pod (surplus, or of a Job that finished, failed or was suspended).
    DeletePod(ObjectKey),
    /// Replace the Job's status.
    UpdateStatus {
        /// The Job.
        job: ObjectKey,
        /// Its new status.
        status: Box<JobStatus>,
    },
}

/// What [`plan`] decided for one Job.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// The writes, in order.
    pub actions: Vec<Action>,
    /// Plan again after this long even if nothing changes: when a retry's backoff ends or
    /// `activeDeadlineSeconds` is due.
    pub requeue_after: Option<Duration>,
}

/// Why a Job is finishing, before it has finished (`SuccessCriteriaMet` or `FailureTarget`).
struct Target {
    /// `SuccessCriteriaMet` or `FailureTarget`.
    interim: &'static str,
    /// `Complete` or `Failed`.
    last: &'static str,
    reason: &'static str,
    message: &'static str,
}

const COMPLETIONS_REACHED: Target = Target {
    interim: "SuccessCriteriaMet",
    last: "Complete",
    reason: "CompletionsReached",
    message: "Reached expected number of succeeded pods",
};
const BACKOFF_LIMIT_EXCEEDED: Target = Target {
    interim: "FailureTarget",
    last: "Failed",
    reason: "BackoffLimitExceeded",
    message: "Job has reached the specified backoff limit",
};
const DEADLINE_EXCEEDED: Target = Target {
    interim: "FailureTarget",
    last: "Failed",
    reason: "DeadlineExceeded",
    message: "Job was active longer than specified deadline",
};

/// Plans the writes for one Job from the pods it controls (`owned`) at time `now`.
pub fn plan(job: &Job, owned: &[Pod], now: Timestamp) -> Plan {
    let Some(job_key) = ObjectKey::of(&job.metadata) else {
        return Plan::default();
    };
    if is_deleting(&job.metadata) {
        // Garbage collection removes the pods; a Job being deleted needs nothing more.
        return Plan::default();
    }
    let spec = job.spec.clone().unwrap_or_default();
    let old = job.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let mut conditions = status.conditions.take().unwrap_or_default();
    let mut actions = Vec::new();
    let mut requeue_after = None;

    let active: Vec<&Pod> = owned.iter().filter(|p| is_active(p)).collect();
    let mut terminating = owned
        .iter()
        .filter(|p| is_deleting(&p.metadata) && !is_finished(p))
        .count();
    let succeeded = old
        .succeeded
        .unwrap_or(0)
        .max(owned.iter().filter(|p| phase(p) == "Succeeded").count() as i32);
    let failed = old.failed.unwrap_or(0).max(
        owned
            .iter()
            .filter(|p| phase(p) == "Failed" && !is_deleting(&p.metadata))
            .count() as i32,
    );

    let finished = is_true(&conditions, "Complete") || is_true(&conditions, "Failed");
    let suspended = spec.suspend == Some(true);
    // The pods that stay active after this plan; the rest are deleted.
    let mut keep: Vec<&Pod> = active.clone();
    let mut created = 0;
    if finished {
        // A finished Job runs nothing; pods left over (say, from a race) are stopped.
        keep.clear();
    } else {
        if suspended {
            set_condition(
                &mut conditions,
                "Suspended",
                "True",
                "JobSuspended",
                "Job suspended",
                now,
            );
        } else {
            if is_true(&conditions, "Suspended") {
                set_condition(
                    &mut conditions,
                    "Suspended",
                    "False",
                    "JobResumed",
                    "Job resumed",
                    now,
                );
                // The deadline counts from the resumption.
                status.start_time = Some(Time(now));
            }
            if status.start_time.is_none() {
                status.start_time = Some(Time(now));
            }
        }

        let target = finishing_target(&conditions).or_else(|| {
            let backoff_limit = spec.backoff_limit.unwrap_or(DEFAULT_BACKOFF_LIMIT);
            let deadline = deadline(&spec, &status, suspended);
            if failed > backoff_limit || past_backoff_limit_on_failure(&spec, &active) {
                Some(BACKOFF_LIMIT_EXCEEDED)
            } else if deadline.is_some_and(|at| at <= now) {
                Some(DEADLINE_EXCEEDED)
            } else if succeeded >= spec.completions.unwrap_or(1) {
                Some(COMPLETIONS_REACHED)
            } else {
                None
            }
        });

        if let Some(target) = target {
            set_condition(
                &mut conditions,
                target.interim,
                "True",
                target.reason,
                target.message,
                now,
            );
            keep.clear();
            // The Job has finished once none of its pods runs any more.
            if active.is_empty() && terminating == 0 {
                set_condition(
                    &mut conditions,
                    target.last,
                    "True",
                    target.reason,
                    target.message,
                    now,
                );
                if target.last == "Complete" {
                    status.completion_time = Some(Time(now));
                }
            }
        } else if suspended {
            keep.clear();
        } else {
            let parallelism = spec.parallelism.unwrap_or(1).max(0);
            let wanted = match spec.completions {
                Some(completions) => (completions - succeeded).min(parallelism),
                None => parallelism,
            }
            .max(0) as usize;
            if keep.len() < wanted {
                match backoff_remaining(owned, now) {
                    Some(wait) => requeue_after = Some(wait),
                    None => {
                        if let Some(pod) = pod_from_template(job) {
                            created = (wanted - keep.len()).min(BURST_PODS);
                            actions.push(Action::CreatePods {
                                pod: Box::new(pod),
                                count: created,
                            });
                        }
                    }
                }
            } else if keep.len() > wanted {
                // Keep the pods that have come furthest: running and oldest.
                keep.sort_by(|a, b| {
                    (phase(b) == "Running")
                        .cmp(&(phase(a) == "Running"))
                        .then_with(|| {
                            a.metadata
                                .creation_timestamp
                                .cmp(&b.metadata.creation_timestamp)
                        })
                        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
                });
                keep.truncate(wanted.max(keep.len().saturating_sub(BURST_PODS)));
            }
            if let Some(at) = deadline(&spec, &status, suspended) {
                let due = Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO);
                requeue_after = Some(requeue_after.map_or(due, |r: Duration| r.min(due)));
            }
        }
    }

    let kept: BTreeSet<&str> = keep
        .iter()
        .filter_map(|p| p.metadata.uid.as_deref())
        .collect();
    for pod in &active {
        if !pod
            .metadata
            .uid
            .as_deref()
            .is_some_and(|u| kept.contains(u))
            && let Some(key) = ObjectKey::of(&pod.metadata)
        {
            actions.push(Action::DeletePod(key));
            terminating += 1;
        }
    }

    // Kubernetes omits zero counts of active, succeeded and failed (`omitempty`) but always
    // reports ready and terminating.
    let nonzero = |n: i32| (n != 0).then_some(n);
    status.active = nonzero((keep.len() + created) as i32);
    status.ready = Some(keep.iter().filter(|p| is_ready(p)).count() as i32);
    status.terminating = Some(terminating as i32);
    status.succeeded = nonzero(succeeded);
    status.failed = nonzero(failed);
    status.conditions = (!conditions.is_empty()).then_some(conditions);
    if job.status.as_ref() != Some(&status) {
        actions.push(Action::UpdateStatus {
            job: job_key,
            status: Box::new(status),
        });
    }
    Plan {
        actions,
        requeue_after,
    }
}

/// The pod the Job creates from its template: the template's metadata and spec, the Job's
/// labels, `generateName: JOBNAME-`, and the Job as its controller.
pub fn pod_from_template(job: &Job) -> Option<Pod> {
    let template = &job.spec.as_ref()?.template;
    let owner = controller_reference("batch/v1", "Job", &job.metadata)?;
    let name = job.metadata.name.as_deref()?;
    let uid = job.metadata.uid.as_deref()?;
    let template_metadata = template.metadata.clone().unwrap_or_default();
    let mut labels = template_metadata.labels.unwrap_or_default();
    labels.extend(job_labels(name, uid));
    Some(Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: job.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: template_metadata.annotations,
            finalizers: template_metadata.finalizers,
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    })
}

/// When `activeDeadlineSeconds` runs out, if it is set and the clock is running.
fn deadline(
    spec: &k8s_openapi::api::batch::v1::JobSpec,
    status: &JobStatus,
    suspended: bool,
) -> Option<Timestamp> {
    if suspended {
        return None;
    }
    let seconds = spec.active_deadline_seconds?;
    let start = status.start_time.as_ref()?.0;
    Timestamp::from_second(start.as_second().saturating_add(seconds)).ok()
}

/// With `restartPolicy: OnFailure` pods restart in place instead of failing; their restarts
/// count against `backoffLimit` (Kubernetes' `pastBackoffLimitOnFailure`).
fn past_backoff_limit_on_failure(
    spec: &k8s_openapi::api::batch::v1::JobSpec,
    active: &[&Pod],
) -> bool {
    let on_failure = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure");
    if !on_failure {
        return false;
    }
    let restarts: i32 = active
        .iter()
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .map(|c| c.restart_count)
        .sum();
    match spec.backoff_limit.unwrap_or(DEFAULT_BACKOFF_LIMIT) {
        0 => restarts > 0,
        limit => restarts >= limit,
    }
}

/// How long new pods must still wait after the failures since the last success: 10 s after
/// the first, doubling per further failure up to 6 minutes, from the last failure.
pub fn backoff_remaining(owned: &[Pod], now: Timestamp) -> Option<Duration> {
    let last_success = owned
        .iter()
        .filter(|p| phase(p) == "Succeeded")
        .filter_map(finished_at)
        .max();
    let failures: Vec<Timestamp> = owned
        .iter()
        .filter(|p| phase(p) == "Failed" && !is_deleting(&p.metadata))
        .filter_map(finished_at)
        .filter(|at| last_success.is_none_or(|s| *at > s))
        .collect();
    let last_failure = *failures.iter().max()?;
    let doublings = (failures.len() - 1).min(16) as u32;
    let delay = FIRST_BACKOFF
        .saturating_mul(2u32.saturating_pow(doublings))
        .min(MAX_BACKOFF);
    let waited = now.duration_since(last_failure);
    let waited = Duration::try_from(waited).unwrap_or(Duration::ZERO);
    delay.checked_sub(waited).filter(|d| !d.is_zero())
}

/// When a finished pod finished: the latest `finishedAt` of its containers, else when it was
/// created.
fn finished_at(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max()
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// The target of a Job that is already finishing (has `SuccessCriteriaMet` or `FailureTarget`).
fn finishing_target(conditions: &[JobCondition]) -> Option<Target> {
    let find = |type_: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == "True")
    };
    if let Some(condition) = find("FailureTarget") {
        return Some(
            if condition.reason.as_deref() == Some(DEADLINE_EXCEEDED.reason) {
                DEADLINE_EXCEEDED
            } else {
                BACKOFF_LIMIT_EXCEEDED
            },
        );
    }
    find("SuccessCriteriaMet").map(|_| COMPLETIONS_REACHED)
}

/// The Event that says a Job finished: its type, reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinishedEvent {
    /// `Normal` or `Warning`.
    pub type_: &'static str,
    /// `Completed`, or the reason of the `Failed` condition.
    pub reason: String,
    /// `Job completed`, or the message of the `Failed` condition.
    pub message: String,
}

/// The Event Kubernetes' Job controller records when a Job finishes (`recordJobFinished`), if
/// the status `new` replacing `old` is the one that finishes it: `Normal Completed "Job
/// completed"` for `Complete`, or a Warning with the `Failed` condition's reason and message.
pub fn finished_event(old: Option<&JobStatus>, new: &JobStatus) -> Option<FinishedEvent> {
    let old = old
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let new = new.conditions.as_deref().unwrap_or_default();
    if is_true(old, "Complete") || is_true(old, "Failed") {
        return None;
    }
    if is_true(new, "Complete") {
        return Some(FinishedEvent {
            type_: "Normal",
            reason: "Completed".into(),
            message: "Job completed".into(),
        });
    }
    let failed = new
        .iter()
        .find(|c| c.type_ == "Failed" && c.status == "True")?;
    Some(FinishedEvent {
        type_: "Warning",
        reason: failed.reason.clone().unwrap_or_default(),
        message: failed.message.clone().unwrap_or_default(),
    })
}

fn is_true(conditions: &[JobCondition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// Sets a condition, keeping its transition time when its status does not change.
fn set_condition(
    conditions: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    let new = JobCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) if existing.status == status => {
            if existing.reason != new.reason || existing.message != new.message {
                existing.reason = new.reason;
                existing.message = new.message;
                existing.last_probe_time = new.last_probe_time;
            }
        }
        Some(existing) => *existing = new,
        None => conditions.push(new),
    }
}

/// A pod counts as active unless it is being deleted or has finished.
pub fn is_active(pod: &Pod) -> bool {
    !is_deleting(&pod.metadata) && !is_finished(pod)
}

fn is_finished(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn jobs() -> &'static Resource {
    resources::find("batch", "v1", "jobs").expect("jobs are served")
}

fn pods() -> &'static Resource {
    resources::find("", "v1", "pods").expect("pods are served")
}

/// One pass over the Jobs and pods of some namespaces (all, if `None`).
pub async fn pass(
    registry: &Registry,
    events: &EventRecorder,
    namespaces: Option<BTreeSet<String>>,
) -> Result<PassOutcome, ApiError> {
    let now = meta::now();
    let jobs: Vec<Job> = list_typed(registry, jobs(), namespaces.as_ref()).await?;
    if jobs.is_empty() {
        return Ok(PassOutcome::default());
    }
    let all_pods: Vec<Pod> = list_typed(registry, pods(), namespaces.as_ref()).await?;
    let (owned, _orphans) = group_by_controller(all_pods);
    let mut outcome = PassOutcome::default();
    for job in &jobs {
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let mine = owned.get(&uid).map(Vec::as_slice).unwrap_or_default();
        let plan = plan(job, mine, now);
        outcome = outcome.merge(apply(registry, events, job, &plan.actions).await);
        outcome = outcome.merge(PassOutcome {
            requeue_after: plan.requeue_after,
            failed_writes: false,
        });
    }
    Ok(outcome)
}

/// Applies the actions of the plan for `job`, in order.
async fn apply(
    registry: &Registry,
    events: &EventRecorder,
    job: &Job,
    actions: &[Action],
) -> PassOutcome {
    let mut outcome = PassOutcome::default();
    let options = WriteOptions::default();
    let Some(job_key) = ObjectKey::of(&job.metadata) else {
        return outcome;
    };
    let pod_event = |change, pod: &str| {
        events.record(pod_change_event(
            "batch/v1", "Job", &job_key, COMPONENT, change, pod,
        ));
    };
    for action in actions {
        match action {
            Action::CreatePods { pod, count } => {
                let result = crate::create_pods(registry, pod, *count, |name| {
                    pod_event(PodChange::Created, name);
                })
                .await;
                outcome.record("creating job pods", result);
            }
            Action::DeletePod(target) => {
                let result = registry
                    .delete(
                        pods(),
                        Some(&target.namespace),
                        &target.name,
                        &DeleteOptions {
                            precondition_uid: Some(target.uid.clone()),
                            ..DeleteOptions::default()
                        },
                    )
                    .await;
                if result.is_ok() {
                    pod_event(PodChange::Deleted, &target.name);
                }
                outcome.record("deleting a job pod", result.map(drop));
            }
            Action::UpdateStatus {
                job: target,
                status,
            } => {
                let body = json!({
                    "metadata": {"name": target.name, "uid": target.uid},
                    "status": status,
                });
                let result = registry
                    .update(
                        jobs(),
                        Some(&target.namespace),
                        &target.name,
                        body,
                        Part::Status,
                        &options,
                    )
                    .await;
                // Passes run one at a time and read the store, so the next one sees this
                // status: the finishing transition is written, and told, once.
                if result.is_ok()
                    && let Some(finished) = finished_event(job.status.as_ref(), status)
                {
                    events.record(crate::event_object(
                        "batch/v1",
                        "Job",
                        target,
                        finished.type_,
                        &finished.reason,
                        &finished.message,
                        COMPONENT,
                    ));
                }
                outcome.record("updating Job status", result.map(drop));
            }
        }
    }
    outcome
}

/// Runs the Job controller until `stopping` resolves, recording its Events with `events`.
pub async fn run(registry: Registry, events: EventRecorder, stopping: impl Future<Output = ()>) {
    let (registry, events) = (&registry, &events);
    drive(
        registry,
        "job",
        &[jobs(), pods()],
        stopping,
        move |namespaces| pass(registry, events, namespaces),
    )
    .await;
}

/// The labels that identify a Job's pods, as Kubernetes puts them on a Job's template.
pub fn job_labels(name: &str, uid: &str) -> BTreeMap<String, String> {
    [
        ("batch.kubernetes.io/controller-uid", uid),
        ("batch.kubernetes.io/job-name", name),
        ("controller-uid", uid),
        ("job-name", name),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use serde_json::Value;

    fn merge(target: &mut Value, patch: Value) {
        match (target, patch) {
            (Value::Object(target), Value::Object(patch)) => {
                for (key, value) in patch {
                    if value.is_null() {
                        target.remove(&key);
                    } else {
                        merge(target.entry(key).or_insert(Value::Null), value);
                    }
                }
            }
            (target, patch) => *target = patch,
        }
    }

    /// A Job as the API server stores it (defaults applied), with `extra` merged in.
    fn job(extra: Value) -> Job {
        let mut value = json!({
            "metadata": {"name": "pi", "namespace": "default", "uid": "job-uid"},
            "spec": {
                "parallelism": 1,
                "completions": 1,
                "backoffLimit": 6,
                "completionMode": "NonIndexed",
                "suspend": false,
                "template": {
                    "metadata": {"labels": {"app": "pi"}},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "pi", "image": "pi:1"}],
                    },
                },
            },
        });
        merge(&mut value, extra);
        serde_json::from_value(value).unwrap()
    }

    /// A pod of the Job, created `age` seconds ago, with extra fields merged in.
    fn pod(name: &str, age: i64, extra: Value) -> Pod {
        let mut value = json!({
            "metadata": {
                "name": name, "namespace": "default", "uid": format!("uid-{name}"),
                "creationTimestamp": time(-age),
                "labels": {"app": "pi", "job-name": "pi"},
                "ownerReferences": [{
                    "apiVersion": "batch/v1", "kind": "Job", "name": "pi",
                    "uid": "job-uid", "controller": true, "blockOwnerDeletion": true,
                }],
            },
            "spec": {"containers": [{"name": "pi", "image": "pi:1"}], "nodeName": "node-1"},
        });
        merge(&mut value, extra);
        serde_json::from_value(value).unwrap()
    }

    fn running(name: &str, age: i64) -> Pod {
        pod(
            name,
            age,
            json!({"status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": time(-age)},
            ]}}),
        )
    }

    /// A pod that ended with `phase` `ago` seconds ago.
    fn ended(name: &str, phase: &str, ago: i64) -> Pod {
        pod(
            name,
            ago + 5,
            json!({"status": {"phase": phase, "containerStatuses": [{
                "name": "pi", "image": "pi:1", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {
                    "exitCode": if phase == "Succeeded" { 0 } else { 1 },
                    "startedAt": time(-ago - 5), "finishedAt": time(-ago),
                }},
            }]}}),
        )
    }

    fn creates(plan: &Plan) -> usize {
        plan.actions
            .iter()
            .map(|a| match a {
                Action::CreatePods { count, .. } => *count,
                _ => 0,
            })
            .sum()
    }

    fn deleted(plan: &Plan) -> Vec<&str> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                Action::DeletePod(key) => Some(key.name.as_str()),
                _ => None,
            })
            .collect()
    }

    fn written_status(plan: &Plan) -> &JobStatus {
        plan.actions
            .iter()
            .find_map(|a| match a {
                Action::UpdateStatus { status, .. } => Some(&**status),
                _ => None,
            })
            .expect("a status update")
    }

    fn condition<'a>(status: &'a JobStatus, type_: &str) -> Option<&'a JobCondition> {
        status
            .conditions
            .as_deref()?
            .iter()
            .find(|c| c.type_ == type_)
    }

    fn reason<'a>(status: &'a JobStatus, type_: &str) -> Option<&'a str> {
        condition(status, type_)
            .filter(|c| c.status == "True")
            .and_then(|c| c.reason.as_deref())
    }

    /// Feeds a plan's status back into the Job, as the next pass would see it.
    fn with_status(mut job: Job, plan: &Plan) -> Job {
        job.status = Some(written_status(plan).clone());
        job
    }

    #[test]
    fn a_new_job_creates_parallelism_pods_with_the_job_labels_and_owner() {
        let job = job(json!({"spec": {"completions": 5, "parallelism": 2}}));
        let plan = plan(&job, &[], now());
        let Some(Action::CreatePods { pod, count }) = plan.actions.first() else {
            panic!("expected a create first: {plan:?}");
        };
        assert_eq!(*count, 2);
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("pi-"));
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["app"], "pi");
        assert_eq!(labels["batch.kubernetes.io/controller-uid"], "job-uid");
        assert_eq!(labels["batch.kubernetes.io/job-name"], "pi");
        assert_eq!(labels["controller-uid"], "job-uid");
        assert_eq!(labels["job-name"], "pi");
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (
                owner.kind.as_str(),
                owner.api_version.as_str(),
                owner.uid.as_str()
            ),
            ("Job", "batch/v1", "job-uid")
        );
        assert_eq!(owner.controller, Some(true));
        assert_eq!(
            pod.spec.as_ref().unwrap().restart_policy.as_deref(),
            Some("Never")
        );
        let status = written_status(&plan);
        assert_eq!(status.active, Some(2));
        assert_eq!(status.start_time, Some(Time(now())));
        assert_eq!(status.ready, Some(0));
    }

    #[test]
    fn no_more_pods_run_than_still_need_to_succeed() {
        let job = job(json!({"spec": {"completions": 3, "parallelism": 2}}));
        let pods = [
            ended("pi-a", "Succeeded", 30),
            ended("pi-b", "Succeeded", 20),
        ];
        let plan = plan(&job, &pods, now());
        assert_eq!(creates(&plan), 1);
        let pods = [
            ended("pi-a", "Succeeded", 30),
            ended("pi-b", "Succeeded", 20),
            running("pi-c", 10),
            running("pi-d", 5),
        ];
        let plan = super::plan(&job, &pods, now());
        assert_eq!(creates(&plan), 0);
        assert_eq!(deleted(&plan), ["pi-d"], "the newest surplus pod goes");
    }

    #[test]
    fn enough_successes_complete_the_job_once_no_pod_runs() {
        let job = job(json!({"spec": {"completions": 3, "parallelism": 2}}));
        let pods = [
            ended("pi-a", "Succeeded", 30),
            ended("pi-b", "Succeeded", 20),
            ended("pi-c", "Succeeded", 1),
        ];
        let plan = plan(&job, &pods, now());
        assert_eq!(creates(&plan), 0);
        let status = written_status(&plan);
        assert_eq!(status.succeeded, Some(3));
        assert_eq!(status.active, None);
        assert_eq!(
            reason(status, "SuccessCriteriaMet"),
            Some("CompletionsReached")
        );
        assert_eq!(reason(status, "Complete"), Some("CompletionsReached"));
        assert_eq!(status.completion_time, Some(Time(now())));
        // Nothing more to do afterwards.
        let done = with_status(job, &plan);
        assert_eq!(super::plan(&done, &pods, at(60)), Plan::default());
    }

    #[test]
    fn without_completions_the_first_success_completes_and_stops_the_others() {
        let job = job(json!({"spec": {"completions": null, "parallelism": 3}}));
        let pods = [
            ended("pi-a", "Succeeded", 1),
            running("pi-b", 10),
            running("pi-c", 10),
        ];
        let plan = plan(&job, &pods, now());
        assert_eq!(deleted(&plan), ["pi-b", "pi-c"]);
        let status = written_status(&plan);
        assert_eq!(
            reason(status, "SuccessCriteriaMet"),
            Some("CompletionsReached")
        );
        assert!(condition(status, "Complete").is_none(), "pods still stop");
        assert_eq!(status.terminating, Some(2));
        // Once they are gone, the Job is complete.
        let job = with_status(job, &plan);
        let plan = super::plan(&job, &pods[..1], at(5));
        assert_eq!(
            reason(written_status(&plan), "Complete"),
            Some("CompletionsReached")
        );
    }

    #[test]
    fn failed_pods_are_retried_after_a_doubling_backoff() {
        let job = job(json!({}));
        // One failure 4 s ago: wait 6 s more.
        let plan = plan(&job, &[ended("pi-a", "Failed", 4)], now());
        assert_eq!(creates(&plan), 0);
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(6)));
        assert_eq!(written_status(&plan).failed, Some(1));
        // After it, a new pod.
        let plan = super::plan(&job, &[ended("pi-a", "Failed", 10)], now());
        assert_eq!(creates(&plan), 1);
        // Three failures: 40 s after the last.
        let pods = [
            ended("pi-a", "Failed", 100),
            ended("pi-b", "Failed", 70),
            ended("pi-c", "Failed", 30),
        ];
        assert_eq!(
            backoff_remaining(&pods, now()),
            Some(Duration::from_secs(10))
        );
        // Capped at 6 minutes.
        let many: Vec<Pod> = (0..7)
            .map(|i| ended(&format!("pi-{i}"), "Failed", 10 - i))
            .collect();
        assert_eq!(
            backoff_remaining(&many, now()),
            Some(Duration::from_secs(356))
        );
        // Failures before the last success do not count.
        let pods = [ended("pi-a", "Failed", 30), ended("pi-b", "Succeeded", 20)];
        assert_eq!(backoff_remaining(&pods, now()), None);
    }

    #[test]
    fn more_failures_than_the_backoff_limit_fail_the_job() {
        let job = job(json!({"spec": {"backoffLimit": 1, "completions": 2}}));
        let one = [ended("pi-a", "Failed", 30)];
        let plan = plan(&job, &one, now());
        assert_eq!(creates(&plan), 1, "one failure is within the limit");
        let pods = [
            ended("pi-a", "Failed", 30),
            ended("pi-b", "Failed", 1),
            running("pi-c", 5),
        ];
        let plan = super::plan(&job, &pods, now());
        assert_eq!(creates(&plan), 0);
        assert_eq!(deleted(&plan), ["pi-c"]);
        let status = written_status(&plan);
        assert_eq!(status.failed, Some(2));
        assert_eq!(
            reason(status, "FailureTarget"),
            Some("BackoffLimitExceeded")
        );
        assert!(condition(status, "Failed").is_none());
        let job = with_status(job, &plan);
        let plan = super::plan(&job, &pods[..2], at(3));
        let status = written_status(&plan);
        assert_eq!(reason(status, "Failed"), Some("BackoffLimitExceeded"));
        assert_eq!(status.completion_time, None);
        // A failed Job creates nothing ever again.
        let failed = with_status(job, &plan);
        assert_eq!(super::plan(&failed, &pods[..2], at(600)), Plan::default());
    }

    #[test]
    fn the_finished_event_is_told_once_on_the_transition_to_complete_or_failed() {
        // Completion: SuccessCriteriaMet alone is not the end; Complete is, once.
        let job = job(json!({"spec": {"completions": null, "parallelism": 2}}));
        let pods = [ended("pi-a", "Succeeded", 1), running("pi-b", 10)];
        let plan = plan(&job, &pods, now());
        assert_eq!(finished_event(None, written_status(&plan)), None);
        let job = with_status(job, &plan);
        let plan = super::plan(&job, &pods[..1], at(5));
        let complete = written_status(&plan);
        assert_eq!(
            finished_event(job.status.as_ref(), complete),
            Some(FinishedEvent {
                type_: "Normal",
                reason: "Completed".into(),
                message: "Job completed".into(),
            })
        );
        assert_eq!(finished_event(Some(complete), complete), None);

        // Failure: a Warning with the Failed condition's reason and message.
        let job = self::job(json!({"spec": {"backoffLimit": 0}}));
        let pods = [ended("pi-a", "Failed", 1)];
        let plan = super::plan(&job, &pods, now());
        let failed = written_status(&plan);
        assert_eq!(reason(failed, "Failed"), Some("BackoffLimitExceeded"));
        assert_eq!(
            finished_event(job.status.as_ref(), failed),
            Some(FinishedEvent {
                type_: "Warning",
                reason: "BackoffLimitExceeded".into(),
                message: "Job has reached the specified backoff limit".into(),
            })
        );
        assert_eq!(finished_event(Some(failed), failed), None);
    }

    #[test]
    fn restarts_of_on_failure_pods_count_against_the_backoff_limit() {
        let job = job(
            json!({"spec": {"backoffLimit": 2, "template": {"spec": {"restartPolicy": "OnFailure"}}}}),
        );
        let restarted = |n: i32| {
            pod(
                "pi-a",
                60,
                json!({"status": {"phase": "Running", "containerStatuses": [{
                    "name": "pi", "image": "pi:1", "imageID": "", "ready": false,
                    "restartCount": n,
                }]}}),
            )
        };
        let plan1 = plan(&job, &[restarted(1)], now());
        assert!(condition(written_status(&plan1), "FailureTarget").is_none());
        let plan2 = plan(&job, &[restarted(2)], now());
        assert_eq!(
            reason(written_status(&plan2), "FailureTarget"),
            Some("BackoffLimitExceeded")
        );
        assert_eq!(deleted(&plan2), ["pi-a"]);
    }

    #[test]
    fn the_active_deadline_stops_the_job_and_is_requeued() {
        let job = job(json!({
            "spec": {"activeDeadlineSeconds": 30},
            "status": {"startTime": time(-20), "active": 1, "ready": 1, "terminating": 0},
        }));
        let pods = [running("pi-a", 20)];
        let plan = plan(&job, &pods, now());
        assert_eq!(plan.actions, []);
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(10)));
        let plan = super::plan(&job, &pods, at(10));
        assert_eq!(deleted(&plan), ["pi-a"]);
        assert_eq!(
            reason(written_status(&plan), "FailureTarget"),
            Some("DeadlineExceeded")
        );
        let job = with_status(job, &plan);
        let plan = super::plan(&job, &[], at(12));
        assert_eq!(
            reason(written_status(&plan), "Failed"),
            Some("DeadlineExceeded")
        );
        assert_eq!(
            condition(written_status(&plan), "Failed")
                .unwrap()
                .message
                .as_deref(),
            Some("Job was active longer than specified deadline")
        );
    }

    #[test]
    fn a_suspended_job_stops_its_pods_and_resuming_restarts_the_deadline() {
        let job = job(json!({
            "spec": {"suspend": true, "parallelism": 2, "completions": 4, "activeDeadlineSeconds": 30},
            "status": {"startTime": time(-100)},
        }));
        let pods = [running("pi-a", 20), running("pi-b", 10)];
        let plan = plan(&job, &pods, now());
        assert_eq!(creates(&plan), 0);
        assert_eq!(deleted(&plan), ["pi-a", "pi-b"]);
        let status = written_status(&plan);
        assert_eq!(reason(status, "Suspended"), Some("JobSuspended"));
        assert!(
            condition(status, "FailureTarget").is_none(),
            "no deadline while suspended"
        );
        assert_eq!(plan.requeue_after, None);
        // Resumed: pods again, the deadline counts from now.
        let mut resumed = with_status(job, &plan);
        resumed.spec.as_mut().unwrap().suspend = Some(false);
        let plan = super::plan(&resumed, &[], at(50));
        assert_eq!(creates(&plan), 2);
        let status = written_status(&plan);
        let suspended = condition(status, "Suspended").unwrap();
        assert_eq!(
            (suspended.status.as_str(), suspended.reason.as_deref()),
            ("False", Some("JobResumed"))
        );
        assert_eq!(status.start_time, Some(Time(at(50))));
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(30)));
    }

    #[test]
    fn pods_deleted_while_running_are_not_failures_and_are_replaced() {
        let job = job(json!({}));
        let pods = [pod(
            "pi-a",
            10,
            json!({"metadata": {"deletionTimestamp": time(-1)}, "status": {"phase": "Failed"}}),
        )];
        let plan = plan(&job, &pods, now());
        assert_eq!(creates(&plan), 1);
        assert_eq!(written_status(&plan).failed, None);
    }

    #[test]
    fn counts_never_go_down_when_finished_pods_disappear() {
        let job = job(json!({
            "spec": {"completions": 3},
            "status": {"succeeded": 2, "failed": 1, "startTime": time(-100)},
        }));
        let plan = plan(&job, &[], now());
        assert_eq!(creates(&plan), 1);
        let status = written_status(&plan);
        assert_eq!((status.succeeded, status.failed), (Some(2), Some(1)));
    }

    #[test]
    fn an_unchanged_status_is_not_written_again() {
        let job = job(json!({"spec": {"parallelism": 2, "completions": 2}}));
        let pods = [running("pi-a", 10), running("pi-b", 10)];
        let first = plan(&job, &pods, now());
        let job = with_status(job, &first);
        assert_eq!(plan(&job, &pods, at(5)), Plan::default());
    }

    #[test]
    fn a_job_being_deleted_is_left_to_garbage_collection() {
        let job = job(json!({"metadata": {"deletionTimestamp": time(-1)}}));
        assert_eq!(plan(&job, &[running("pi-a", 10)], now()), Plan::default());
    }
}
