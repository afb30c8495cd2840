//! The Deployment controller: one ReplicaSet per pod template, the current one scaled to
//! `spec.replicas` and the older ones to zero, revisions, history cleanup and status.
//!
//! [`plan`] is pure. From one Deployment, the ReplicaSets it controls and the uncontrolled
//! ReplicaSets of its namespace, it decides, as Kubernetes' deployment controller does:
//! - **claiming**: controlled ReplicaSets that no longer match the selector are released,
//!   uncontrolled matching ones adopted (not while the Deployment is being deleted).
//! - **the new ReplicaSet**: the oldest one whose template equals the Deployment's, ignoring
//!   the `pod-template-hash` label. If there is none, one is created, named
//!   `DEPLOYMENT-HASH`, where HASH ([`pod_template_hash`]) is a stable hash of the template
//!   (and of `status.collisionCount`); the hash is also a label of the ReplicaSet, of its
//!   template and of its selector, so ReplicaSets of one Deployment never select each other's
//!   pods. Going back to an earlier template (`kubectl rollout undo`) reuses its ReplicaSet.
//! - **revisions**: the new ReplicaSet's `deployment.kubernetes.io/revision` is one more than
//!   the highest revision among the old ones (it never decreases), and the Deployment carries
//!   the same annotation. The Deployment's other annotations (such as
//!   `kubernetes.io/change-cause`) are copied to the new ReplicaSet, for `rollout history`.
//! - **replica counts**: [`replica_targets`] decides how many replicas each ReplicaSet should
//!   have. For now it is the basic reconcile — the new one gets `spec.replicas`, the old ones
//!   zero, at once, for both strategies; `RollingUpdate`'s `maxSurge`/`maxUnavailable` steps
//!   and `Recreate`'s wait for old pods are to replace that one function. A paused Deployment
//!   gets no new ReplicaSet; only a single active ReplicaSet is scaled while it is paused.
//! - **history**: fully scaled-down old ReplicaSets beyond `spec.revisionHistoryLimit` are
//!   deleted, lowest revision first.
//! - **status**: `replicas`, `updatedReplicas`, `readyReplicas`, `availableReplicas`,
//!   `unavailableReplicas`, `terminatingReplicas` summed from the ReplicaSets' own status,
//!   `observedGeneration`, and the conditions `Available` (at least `replicas - maxUnavailable`
//!   available) and `Progressing` (with Kubernetes' reasons, including
//!   `ProgressDeadlineExceeded` after `progressDeadlineSeconds` without progress); written
//!   through the status subresource only when it changes.
//!
//! A Deployment being deleted only has its status updated; the garbage collector removes its
//! ReplicaSets. [`run`] re-plans a namespace whenever a Deployment or ReplicaSet in it changes,
//! when a progress deadline falls due, and every [`RESYNC_INTERVAL`](crate::RESYNC_INTERVAL).
//! Every write is guarded by the target's uid. If the name `DEPLOYMENT-HASH` is taken by a
//! ReplicaSet that is not this template's, `status.collisionCount` is bumped, which changes
//! the hash for the next pass.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use wharf_apiserver::registry::{DeleteOptions, Part, PatchType, Registry, WriteOptions};
use wharf_apiserver::resources::{self, Resource};
use wharf_apiserver::{ApiError, meta};

use crate::{
    ObjectKey, PassOutcome, Selector, controller_reference, controller_uid, drive,
    group_by_controller, is_deleting, list_typed, patch_metadata, sort_oldest_first,
};

/// The label that ties a ReplicaSet and its pods to one pod template.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The annotation holding a ReplicaSet's (and its Deployment's) revision.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// The annotation holding the Deployment's `spec.replicas`, on its ReplicaSets.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// The annotation holding `spec.replicas + maxSurge`, on the Deployment's ReplicaSets.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// Deployment annotations that are not copied to its ReplicaSets (Kubernetes' list).
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// One write the Deployment controller makes.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Make the Deployment the controller of an orphan ReplicaSet.
    AdoptReplicaSet {
        /// The ReplicaSet.
        replica_set: ObjectKey,
        /// Its resourceVersion when it was seen to be an orphan.
        resource_version: String,
        /// The owner reference to add.
        owner: OwnerReference,
    },
    /// Remove the Deployment's owner reference from a ReplicaSet that no longer matches.
    ReleaseReplicaSet {
        /// The ReplicaSet.
        replica_set: ObjectKey,
        /// The uid of the Deployment.
        owner_uid: String,
    },
    /// Create the ReplicaSet for the current template.
    CreateReplicaSet(Box<ReplicaSet>),
    /// Set a ReplicaSet's replicas (and `minReadySeconds`, if given) and these annotations.
    UpdateReplicaSet {
        /// The ReplicaSet.
        replica_set: ObjectKey,
        /// Its new `spec.replicas`.
        replicas: i32,
        /// Its new `spec.minReadySeconds`, if it must change.
        min_ready_seconds: Option<i32>,
        /// Annotations to add or overwrite.
        annotations: BTreeMap<String, String>,
    },
    /// Delete an old ReplicaSet beyond the revision history limit.
    DeleteReplicaSet(ObjectKey),
    /// Set the Deployment's `deployment.kubernetes.io/revision` annotation.
    SetRevision {
        /// The Deployment.
        deployment: ObjectKey,
        /// The revision of its new ReplicaSet.
        revision: String,
    },
    /// Replace the Deployment's status.
    UpdateStatus {
        /// The Deployment.
        deployment: ObjectKey,
        /// Its new status.
        status: Box<DeploymentStatus>,
    },
}

/// How many replicas each of a Deployment's ReplicaSets should have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaTargets {
    /// For the new ReplicaSet; `None` means it is not to be created now (paused).
    pub new: Option<i32>,
    /// For each old ReplicaSet, in the order given.
    pub old: Vec<i32>,
}

/// Decides the replica count of every ReplicaSet of a Deployment. This is the one place a
/// rollout strategy lives: today the basic reconcile (new = `spec.replicas`, old = 0); a
/// proper `RollingUpdate` (bounded by `maxSurge`/`maxUnavailable` and the old pods' readiness)
/// and `Recreate` (old to zero first, new once their pods are gone) will compute it here.
pub fn replica_targets(
    deployment: &Deployment,
    new_rs: Option<&ReplicaSet>,
    old: &[&ReplicaSet],
) -> ReplicaTargets {
    let desired = desired_replicas(deployment);
    if deployment.spec.paused != Some(true) {
        return ReplicaTargets {
            new: Some(desired),
            old: vec![0; old.len()],
        };
    }
    // Paused: no rollout, only scaling. With one active ReplicaSet that is unambiguous;
    // proportional scaling of several (mid-rollout) is left for the rolling update.
    let current = |rs: &ReplicaSet| rs.spec.replicas.unwrap_or(0);
    let mut targets = ReplicaTargets {
        new: new_rs.map(current),
        old: old.iter().map(|rs| current(rs)).collect(),
    };
    let active_old: Vec<usize> = (0..old.len()).filter(|&i| targets.old[i] > 0).collect();
    let new_active = targets.new.is_some_and(|n| n > 0);
    match (new_active, active_old.as_slice()) {
        (true, []) => targets.new = Some(desired),
        (false, [only]) => targets.old[*only] = desired,
        (false, []) if new_rs.is_some() => targets.new = Some(desired),
        _ => {}
    }
    targets
}

/// Plans the writes for one Deployment.
///
/// `owned` are the ReplicaSets whose controller is this Deployment; `orphans` are ReplicaSets
/// without a controller in its namespace (the plan picks those that match the selector).
/// `now` stamps conditions and decides whether the progress deadline has passed.
pub fn plan(
    deployment: &Deployment,
    owned: &[ReplicaSet],
    orphans: &[ReplicaSet],
    now: Timestamp,
) -> Vec<Action> {
    let Some(key) = ObjectKey::of(&deployment.metadata) else {
        return Vec::new();
    };
    let selector = Selector::new(Some(&deployment.spec.selector));
    if !selector.is_usable() {
        // Validation makes this impossible; claiming or releasing without a selector could
        // only do harm.
        return Vec::new();
    }
    let deleting = is_deleting(&deployment.metadata);
    let mut actions = Vec::new();

    let mut mine: Vec<&ReplicaSet> = Vec::new();
    for rs in owned {
        if selector.matches(&rs.metadata) {
            mine.push(rs);
        } else if !deleting && let Some(rs_key) = ObjectKey::of(&rs.metadata) {
            actions.push(Action::ReleaseReplicaSet {
                replica_set: rs_key,
                owner_uid: key.uid.clone(),
            });
        }
    }
    if !deleting
        && let Some(owner) = controller_reference("apps/v1", "Deployment", &deployment.metadata)
    {
        for rs in orphans {
            let adoptable = controller_uid(&rs.metadata).is_none()
                && !is_deleting(&rs.metadata)
                && rs.metadata.namespace == deployment.metadata.namespace
                && selector.matches(&rs.metadata);
            if let (true, Some(rs_key), Some(resource_version)) = (
                adoptable,
                ObjectKey::of(&rs.metadata),
                rs.metadata.resource_version.clone(),
            ) {
                actions.push(Action::AdoptReplicaSet {
                    replica_set: rs_key,
                    resource_version,
                    owner: owner.clone(),
                });
                mine.push(rs);
            }
        }
    }
    mine.sort_by(|a, b| {
        a.metadata
            .creation_timestamp
            .cmp(&b.metadata.creation_timestamp)
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    let new_rs = mine
        .iter()
        .copied()
        .find(|rs| equal_ignoring_hash(rs.spec.template.as_ref(), &deployment.spec.template));
    let old: Vec<&ReplicaSet> = mine
        .iter()
        .copied()
        .filter(|rs| !new_rs.is_some_and(|n| std::ptr::eq(n, *rs)))
        .collect();

    if deleting {
        push_status(&mut actions, deployment, key, new_rs, &mine, None, now);
        return actions;
    }

    let desired = desired_replicas(deployment);
    let max_replicas = desired + max_surge(deployment);
    let max_old_revision = old
        .iter()
        .filter_map(|rs| revision_of(rs))
        .max()
        .unwrap_or(0);
    let new_revision = new_rs
        .and_then(revision_of)
        .unwrap_or(0)
        .max(max_old_revision + 1);
    let targets = replica_targets(deployment, new_rs, &old);
    let mut created = None;
    match (new_rs, targets.new) {
        (None, Some(replicas)) => {
            let hash = pod_template_hash(
                &deployment.spec.template,
                deployment.status.as_ref().and_then(|s| s.collision_count),
            );
            let mut annotations = copied_annotations(deployment);
            annotations.insert(REVISION.into(), new_revision.to_string());
            annotations.insert(DESIRED_REPLICAS.into(), desired.to_string());
            annotations.insert(MAX_REPLICAS.into(), max_replicas.to_string());
            if let Some(rs) = new_replica_set(deployment, &hash, replicas, annotations) {
                created = rs.metadata.name.clone();
                actions.push(Action::CreateReplicaSet(Box::new(rs)));
            }
        }
        (Some(rs), target) => {
            let replicas = target.unwrap_or(rs.spec.replicas.unwrap_or(0));
            let mut wanted = copied_annotations(deployment);
            wanted.insert(REVISION.into(), new_revision.to_string());
            wanted.insert(DESIRED_REPLICAS.into(), desired.to_string());
            wanted.insert(MAX_REPLICAS.into(), max_replicas.to_string());
            let min_ready_seconds = (rs.spec.min_ready_seconds
                != deployment.spec.min_ready_seconds)
                .then(|| deployment.spec.min_ready_seconds.unwrap_or(0));
            push_update(&mut actions, rs, replicas, min_ready_seconds, wanted);
        }
        (None, None) => {}
    }
    for (rs, &target) in old.iter().zip(&targets.old) {
        // Old ReplicaSets are only touched when their size changes (then, as in Kubernetes,
        // their replica annotations follow the Deployment's).
        if rs.spec.replicas.unwrap_or(0) != target {
            let wanted = BTreeMap::from([
                (DESIRED_REPLICAS.to_owned(), desired.to_string()),
                (MAX_REPLICAS.to_owned(), max_replicas.to_string()),
            ]);
            push_update(&mut actions, rs, target, None, wanted);
        }
    }
    if let Some(limit) = deployment.spec.revision_history_limit {
        let mut cleanable: Vec<&ReplicaSet> = old
            .iter()
            .copied()
            .filter(|rs| {
                let status = rs.status.as_ref();
                rs.spec.replicas.unwrap_or(0) == 0
                    && status.is_none_or(|s| s.replicas == 0)
                    && status.and_then(|s| s.observed_generation) >= rs.metadata.generation
                    && !is_deleting(&rs.metadata)
            })
            .collect();
        let surplus = cleanable.len().saturating_sub(limit.max(0) as usize);
        cleanable.sort_by_key(|rs| revision_of(rs).unwrap_or(0));
        for rs in cleanable.into_iter().take(surplus) {
            if let Some(rs_key) = ObjectKey::of(&rs.metadata) {
                actions.push(Action::DeleteReplicaSet(rs_key));
            }
        }
    }
    if new_rs.is_some() || created.is_some() {
        let revision = new_revision.to_string();
        let current = deployment
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION));
        if current != Some(&revision) {
            actions.push(Action::SetRevision {
                deployment: key.clone(),
                revision,
            });
        }
    }
    push_status(
        &mut actions,
        deployment,
        key,
        new_rs,
        &mine,
        created.as_deref(),
        now,
    );
    actions
}

fn push_update(
    actions: &mut Vec<Action>,
    rs: &ReplicaSet,
    replicas: i32,
    min_ready_seconds: Option<i32>,
    wanted: BTreeMap<String, String>,
) {
    let current = rs.metadata.annotations.clone().unwrap_or_default();
    let annotations: BTreeMap<String, String> = wanted
        .into_iter()
        .filter(|(k, v)| current.get(k) != Some(v))
        .collect();
    if rs.spec.replicas.unwrap_or(0) == replicas
        && min_ready_seconds.is_none()
        && annotations.is_empty()
    {
        return;
    }
    if let Some(rs_key) = ObjectKey::of(&rs.metadata) {
        actions.push(Action::UpdateReplicaSet {
            replica_set: rs_key,
            replicas,
            min_ready_seconds,
            annotations,
        });
    }
}

fn push_status(
    actions: &mut Vec<Action>,
    deployment: &Deployment,
    key: ObjectKey,
    new_rs: Option<&ReplicaSet>,
    all: &[&ReplicaSet],
    created: Option<&str>,
    now: Timestamp,
) {
    let status = status_of(deployment, new_rs, all, created, now);
    if deployment.status.as_ref() != Some(&status) {
        actions.push(Action::UpdateStatus {
            deployment: key,
            status: Box::new(status),
        });
    }
}

/// The ReplicaSet for a new template: the template with the hash label, the selector with it
/// as a required label, the Deployment as controller.
fn new_replica_set(
    deployment: &Deployment,
    hash: &str,
    replicas: i32,
    annotations: BTreeMap<String, String>,
) -> Option<ReplicaSet> {
    let owner = controller_reference("apps/v1", "Deployment", &deployment.metadata)?;
    let name = format!("{}-{hash}", deployment.metadata.name.as_deref()?);
    let mut template = deployment.spec.template.clone();
    let template_metadata = template.metadata.get_or_insert_with(ObjectMeta::default);
    let labels = template_metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POD_TEMPLATE_HASH.into(), hash.into());
    let labels = labels.clone();
    let mut selector = deployment.spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH.into(), hash.into());
    Some(ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: deployment.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: deployment.spec.min_ready_seconds,
            selector,
            template: Some(template),
        },
        status: None,
    })
}

/// The Deployment's annotations that its new ReplicaSet carries too.
fn copied_annotations(deployment: &Deployment) -> BTreeMap<String, String> {
    deployment
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A ReplicaSet's revision, if it has a valid one.
pub fn revision_of(rs: &ReplicaSet) -> Option<i64> {
    rs.metadata
        .annotations
        .as_ref()?
        .get(REVISION)?
        .parse()
        .ok()
}

/// Whether a ReplicaSet's template is the Deployment's, the `pod-template-hash` label aside.
pub fn equal_ignoring_hash(
    rs_template: Option<&PodTemplateSpec>,
    template: &PodTemplateSpec,
) -> bool {
    fn without_hash(template: &PodTemplateSpec) -> PodTemplateSpec {
        let mut template = template.clone();
        if let Some(metadata) = template.metadata.as_mut() {
            if let Some(labels) = metadata.labels.as_mut() {
                labels.remove(POD_TEMPLATE_HASH);
                if labels.is_empty() {
                    metadata.labels = None;
                }
            }
            if *metadata == ObjectMeta::default() {
                template.metadata = None;
            }
        }
        template
    }
    rs_template.is_some_and(|rs_template| without_hash(rs_template) == without_hash(template))
}

/// A stable hash of a pod template (and of the collision count, once there was a collision):
/// 64-bit FNV-1a over the template's canonical JSON (keys sorted), as 10 hex digits. Equal
/// templates hash equally across processes and versions of Wharf, so a restarted controller
/// finds the ReplicaSets it made.
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut canonical = String::new();
    write_canonical(
        &serde_json::to_value(template).unwrap_or(Value::Null),
        &mut canonical,
    );
    if let Some(count) = collision_count {
        let _ = write!(canonical, "#{count}");
    }
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = canonical
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    format!("{:010x}", hash >> 24)
}

/// JSON with object keys in sorted order, independent of how the map was built.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn desired_replicas(deployment: &Deployment) -> i32 {
    deployment.spec.replicas.unwrap_or(1).max(0)
}

fn rolling_update(deployment: &Deployment) -> Option<(Option<&IntOrString>, Option<&IntOrString>)> {
    let strategy = deployment.spec.strategy.as_ref();
    if strategy
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        != "RollingUpdate"
    {
        return None;
    }
    let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
    Some((
        rolling.and_then(|r| r.max_surge.as_ref()),
        rolling.and_then(|r| r.max_unavailable.as_ref()),
    ))
}

/// Resolves an int-or-percent against a total; percentages round up or down.
fn scaled_value(value: Option<&IntOrString>, default: &str, total: i32, round_up: bool) -> i32 {
    let percent = |text: &str| text.strip_suffix('%').and_then(|p| p.parse::<i64>().ok());
    let resolve = |text: &str| {
        percent(text).map(|p| {
            let scaled = p * i64::from(total);
            (if round_up {
                (scaled + 99).div_euclid(100)
            } else {
                scaled.div_euclid(100)
            }) as i32
        })
    };
    match value {
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(text)) => resolve(text).unwrap_or(0),
        None => resolve(default).unwrap_or(0),
    }
}

/// `maxSurge` and `maxUnavailable` resolved against `spec.replicas` (Kubernetes'
/// `ResolveFenceposts`: both zero would deadlock a rollout, so unavailable becomes one).
fn fenceposts(deployment: &Deployment) -> (i32, i32) {
    let Some((surge, unavailable)) = rolling_update(deployment) else {
        return (0, 0);
    };
    let desired = desired_replicas(deployment);
    let surge = scaled_value(surge, "25%", desired, true).max(0);
    let unavailable = scaled_value(unavailable, "25%", desired, false).max(0);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// How many more pods than `spec.replicas` a rollout may run.
pub fn max_surge(deployment: &Deployment) -> i32 {
    fenceposts(deployment).0
}

/// How many of `spec.replicas` may be unavailable while the Deployment is still `Available`.
pub fn max_unavailable(deployment: &Deployment) -> i32 {
    let desired = desired_replicas(deployment);
    if desired == 0 {
        return 0;
    }
    fenceposts(deployment).1.min(desired)
}

fn progress_deadline(deployment: &Deployment) -> Option<i64> {
    deployment
        .spec
        .progress_deadline_seconds
        .filter(|s| *s != i32::MAX)
        .map(i64::from)
}

/// The status the Deployment should report, from its ReplicaSets' status. `created` names a
/// new ReplicaSet this pass creates.
pub fn status_of(
    deployment: &Deployment,
    new_rs: Option<&ReplicaSet>,
    all: &[&ReplicaSet],
    created: Option<&str>,
    now: Timestamp,
) -> DeploymentStatus {
    let previous = deployment.status.clone().unwrap_or_default();
    let sum = |f: &dyn Fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> i32| {
        all.iter()
            .filter_map(|rs| rs.status.as_ref())
            .map(f)
            .sum::<i32>()
    };
    let replicas = sum(&|s| s.replicas);
    let updated = new_rs
        .and_then(|rs| rs.status.as_ref())
        .map_or(0, |s| s.replicas);
    let ready = sum(&|s| s.ready_replicas.unwrap_or(0));
    let available = sum(&|s| s.available_replicas.unwrap_or(0));
    let terminating = all
        .iter()
        .map(|rs| rs.status.as_ref().and_then(|s| s.terminating_replicas))
        .sum::<Option<i32>>();
    let desired = desired_replicas(deployment);
    let nonzero = |n: i32| (n != 0).then_some(n);
    let mut status = DeploymentStatus {
        replicas: nonzero(replicas),
        updated_replicas: nonzero(updated),
        ready_replicas: nonzero(ready),
        available_replicas: nonzero(available),
        unavailable_replicas: nonzero((desired - available).max(0)),
        terminating_replicas: terminating,
        observed_generation: deployment.metadata.generation,
        collision_count: previous.collision_count,
        conditions: previous.conditions.clone(),
    };
    let mut conditions = status.conditions.take().unwrap_or_default();
    if available >= desired - max_unavailable(deployment) {
        set_condition(
            &mut conditions,
            condition(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
                now,
            ),
        );
    } else {
        set_condition(
            &mut conditions,
            condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
                now,
            ),
        );
    }
    match progress_deadline(deployment) {
        None => conditions.retain(|c| c.type_.as_deref() != Some("Progressing")),
        Some(_) if deployment.spec.paused == Some(true) => set_condition(
            &mut conditions,
            condition(
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused".into(),
                now,
            ),
        ),
        Some(deadline) => {
            let name = created
                .or_else(|| new_rs.and_then(|rs| rs.metadata.name.as_deref()))
                .unwrap_or_default();
            let progressing = |c: &Vec<DeploymentCondition>| {
                c.iter()
                    .find(|c| c.type_.as_deref() == Some("Progressing"))
                    .cloned()
            };
            if progressing(&conditions)
                .is_some_and(|c| c.reason.as_deref() == Some("DeploymentPaused"))
            {
                set_condition(
                    &mut conditions,
                    condition(
                        "Progressing",
                        "Unknown",
                        "DeploymentResumed",
                        "Deployment is resumed".into(),
                        now,
                    ),
                );
            }
            if created.is_some() {
                set_condition(
                    &mut conditions,
                    condition(
                        "Progressing",
                        "True",
                        "NewReplicaSetCreated",
                        format!("Created new replica set {name:?}"),
                        now,
                    ),
                );
            } else if progressing(&conditions).is_none() && new_rs.is_some() {
                set_condition(
                    &mut conditions,
                    condition(
                        "Progressing",
                        "True",
                        "FoundNewReplicaSet",
                        format!("Found new replica set {name:?}"),
                        now,
                    ),
                );
            }
            let complete = updated == desired
                && replicas == desired
                && available == desired
                && status.observed_generation >= deployment.metadata.generation;
            let old_replicas = |replicas: Option<i32>, updated: Option<i32>| {
                replicas.unwrap_or(0) - updated.unwrap_or(0)
            };
            let made_progress = updated > previous.updated_replicas.unwrap_or(0)
                || old_replicas(status.replicas, status.updated_replicas)
                    < old_replicas(previous.replicas, previous.updated_replicas)
                || ready > previous.ready_replicas.unwrap_or(0)
                || available > previous.available_replicas.unwrap_or(0);
            if complete {
                set_condition(
                    &mut conditions,
                    condition(
                        "Progressing",
                        "True",
                        "NewReplicaSetAvailable",
                        format!("ReplicaSet {name:?} has successfully progressed."),
                        now,
                    ),
                );
            } else if made_progress {
                // Progress refreshes lastUpdateTime, which restarts the deadline.
                let mut update = condition(
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    format!("ReplicaSet {name:?} is progressing."),
                    now,
                );
                if let Some(current) = progressing(&conditions)
                    && current.status.as_deref() == Some("True")
                {
                    update.last_transition_time = current.last_transition_time;
                }
                conditions.retain(|c| c.type_.as_deref() != Some("Progressing"));
                conditions.push(update);
            } else if progressing(&conditions).is_some_and(|c| timed_out(&c, deadline, now)) {
                set_condition(
                    &mut conditions,
                    condition(
                        "Progressing",
                        "False",
                        "ProgressDeadlineExceeded",
                        format!("ReplicaSet {name:?} has timed out progressing."),
                        now,
                    ),
                );
            }
        }
    }
    status.conditions = (!conditions.is_empty()).then_some(conditions);
    status
}

/// Whether a `Progressing` condition has seen no progress for the deadline.
fn timed_out(progressing: &DeploymentCondition, deadline: i64, now: Timestamp) -> bool {
    match progressing.reason.as_deref() {
        Some("NewReplicaSetAvailable") => false,
        Some("ProgressDeadlineExceeded") => true,
        _ => progressing
            .last_update_time
            .as_ref()
            .is_some_and(|t| t.0.as_second() + deadline < now.as_second()),
    }
}

/// When the Deployment's progress deadline falls due, if it is progressing and not paused.
pub fn requeue_after(deployment: &Deployment, now: Timestamp) -> Option<Duration> {
    let deadline = progress_deadline(deployment)?;
    if deployment.spec.paused == Some(true) {
        return None;
    }
    let progressing = deployment
        .status
        .as_ref()?
        .conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_.as_deref() == Some("Progressing"))?;
    if progressing.status.as_deref() != Some("True")
        || progressing.reason.as_deref() == Some("NewReplicaSetAvailable")
    {
        return None;
    }
    let due = progressing.last_update_time.as_ref()?.0.as_second() + deadline + 1;
    Some(Duration::from_secs((due - now.as_second()).max(1) as u64))
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: Some(type_.into()),
        status: Some(status.into()),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Kubernetes' `SetDeploymentCondition`: nothing changes if status and reason are the same;
/// otherwise the condition is replaced (and moves to the end), keeping its transition time if
/// only the reason changed.
fn set_condition(conditions: &mut Vec<DeploymentCondition>, mut update: DeploymentCondition) {
    if let Some(current) = conditions.iter().find(|c| c.type_ == update.type_) {
        if current.status == update.status && current.reason == update.reason {
            return;
        }
        if current.status == update.status {
            update.last_transition_time = current.last_transition_time.clone();
        }
    }
    conditions.retain(|c| c.type_ != update.type_);
    conditions.push(update);
}

fn deployments() -> &'static Resource {
    resources::find("apps", "v1", "deployments").expect("deployments are served")
}

fn replica_sets() -> &'static Resource {
    resources::find("apps", "v1", "replicasets").expect("replicasets are served")
}

/// One pass over the Deployments and ReplicaSets of some namespaces (all, if `None`).
pub async fn pass(
    registry: &Registry,
    namespaces: Option<BTreeSet<String>>,
) -> Result<PassOutcome, ApiError> {
    let now = meta::now();
    let mut all_deployments: Vec<Deployment> =
        list_typed(registry, deployments(), namespaces.as_ref()).await?;
    let all_sets: Vec<ReplicaSet> =
        list_typed(registry, replica_sets(), namespaces.as_ref()).await?;
    // Older Deployments get the first chance to adopt a ReplicaSet that several would match.
    sort_oldest_first(&mut all_deployments);
    let (owned, mut orphans) = group_by_controller(all_sets);
    let mut outcome = PassOutcome::default();
    for deployment in &all_deployments {
        let uid = deployment.metadata.uid.clone().unwrap_or_default();
        let namespace = deployment.metadata.namespace.clone().unwrap_or_default();
        let mine = owned.get(&uid).map(Vec::as_slice).unwrap_or_default();
        let candidates = orphans.entry(namespace).or_default();
        let actions = plan(deployment, mine, candidates, now);
        // A ReplicaSet adopted here is no longer an orphan for the Deployments that follow.
        candidates.retain(|rs| {
            !actions.iter().any(|a| {
                matches!(a, Action::AdoptReplicaSet { replica_set, .. }
                    if Some(&replica_set.uid) == rs.metadata.uid.as_ref())
            })
        });
        outcome = outcome.merge(apply(registry, deployment, &actions).await);
        outcome = outcome.merge(PassOutcome {
            requeue_after: requeue_after(deployment, now),
            failed_writes: false,
        });
    }
    Ok(outcome)
}

/// Applies one Deployment's actions in order. If the new ReplicaSet cannot be created, the
/// rest waits: scaling the old ones down without the new one would only lose capacity.
async fn apply(registry: &Registry, deployment: &Deployment, actions: &[Action]) -> PassOutcome {
    let mut outcome = PassOutcome::default();
    let options = WriteOptions::default();
    for action in actions {
        match action {
            Action::CreateReplicaSet(rs) => {
                let value = match serde_json::to_value(rs) {
                    Ok(value) => value,
                    Err(e) => {
                        outcome.record(
                            "creating a ReplicaSet",
                            Err(ApiError::Internal(e.to_string())),
                        );
                        return outcome;
                    }
                };
                let namespace = rs.metadata.namespace.as_deref();
                match registry
                    .create(replica_sets(), namespace, value, &options)
                    .await
                {
                    Ok(_) => {}
                    Err(ApiError::AlreadyExists(_)) => {
                        let result = resolve_collision(registry, deployment, rs).await;
                        outcome.record("recording a ReplicaSet name collision", result);
                        return outcome;
                    }
                    Err(error) => {
                        outcome.record("creating a ReplicaSet", Err(error));
                        return outcome;
                    }
                }
            }
            Action::UpdateReplicaSet {
                replica_set,
                replicas,
                min_ready_seconds,
                annotations,
            } => {
                let mut patch = json!({
                    "metadata": {"uid": replica_set.uid},
                    "spec": {"replicas": replicas},
                });
                if !annotations.is_empty() {
                    patch["metadata"]["annotations"] = json!(annotations);
                }
                if let Some(seconds) = min_ready_seconds {
                    patch["spec"]["minReadySeconds"] = json!(seconds);
                }
                let result = patch_main(registry, replica_sets(), replica_set, &patch).await;
                outcome.record("updating a ReplicaSet", result);
            }
            Action::AdoptReplicaSet {
                replica_set,
                resource_version,
                owner,
            } => {
                let patch = json!({"metadata": {
                    "uid": replica_set.uid,
                    "resourceVersion": resource_version,
                    "ownerReferences": [owner],
                }});
                let result = patch_metadata(
                    registry,
                    replica_sets(),
                    &replica_set.namespace,
                    &replica_set.name,
                    &patch,
                )
                .await;
                outcome.record("adopting a ReplicaSet", result);
            }
            Action::ReleaseReplicaSet {
                replica_set,
                owner_uid,
            } => {
                let patch = json!({"metadata": {
                    "uid": replica_set.uid,
                    "ownerReferences": [{"$patch": "delete", "uid": owner_uid}],
                }});
                let result = patch_metadata(
                    registry,
                    replica_sets(),
                    &replica_set.namespace,
                    &replica_set.name,
                    &patch,
                )
                .await;
                outcome.record("releasing a ReplicaSet", result);
            }
            Action::DeleteReplicaSet(target) => {
                let result = registry
                    .delete(
                        replica_sets(),
                        Some(&target.namespace),
                        &target.name,
                        &DeleteOptions {
                            precondition_uid: Some(target.uid.clone()),
                            ..DeleteOptions::default()
                        },
                    )
                    .await
                    .map(drop);
                outcome.record("deleting an old ReplicaSet", result);
            }
            Action::SetRevision {
                deployment: target,
                revision,
            } => {
                let patch = json!({"metadata": {
                    "uid": target.uid,
                    "annotations": {REVISION: revision},
                }});
                let result = patch_main(registry, deployments(), target, &patch).await;
                outcome.record("setting the Deployment revision", result);
            }
            Action::UpdateStatus {
                deployment: target,
                status,
            } => {
                let body = json!({
                    "metadata": {"name": target.name, "uid": target.uid},
                    "status": status,
                });
                let result = registry
                    .update(
                        deployments(),
                        Some(&target.namespace),
                        &target.name,
                        body,
                        Part::Status,
                        &options,
                    )
                    .await
                    .map(drop);
                outcome.record("updating Deployment status", result);
            }
        }
    }
    outcome
}

async fn patch_main(
    registry: &Registry,
    resource: &Resource,
    target: &ObjectKey,
    patch: &Value,
) -> Result<(), ApiError> {
    registry
        .patch(
            resource,
            Some(&target.namespace),
            &target.name,
            PatchType::Merge,
            patch,
            Part::Main,
            &WriteOptions::default(),
        )
        .await
        .map(drop)
}

/// The new ReplicaSet's name is taken. If the holder is this Deployment's ReplicaSet for
/// this very template, the next pass finds it; otherwise `status.collisionCount` goes up by
/// one, which gives the template a different hash, hence a different name.
async fn resolve_collision(
    registry: &Registry,
    deployment: &Deployment,
    wanted: &ReplicaSet,
) -> Result<(), ApiError> {
    let name = wanted.metadata.name.as_deref().unwrap_or_default();
    let namespace = wanted.metadata.namespace.as_deref();
    let existing = registry.get(replica_sets(), namespace, name).await?;
    let existing: ReplicaSet =
        serde_json::from_value(existing).map_err(|e| ApiError::Internal(e.to_string()))?;
    if controller_uid(&existing.metadata) == deployment.metadata.uid.as_deref()
        && equal_ignoring_hash(existing.spec.template.as_ref(), &deployment.spec.template)
    {
        return Ok(());
    }
    let Some(key) = ObjectKey::of(&deployment.metadata) else {
        return Ok(());
    };
    let count = deployment
        .status
        .as_ref()
        .and_then(|s| s.collision_count)
        .unwrap_or(0);
    tracing::info!(deployment = %key.name, replica_set = %name, "ReplicaSet name collision; bumping collisionCount");
    let patch = json!({"metadata": {"uid": key.uid}, "status": {"collisionCount": count + 1}});
    registry
        .patch(
            deployments(),
            Some(&key.namespace),
            &key.name,
            PatchType::Merge,
            &patch,
            Part::Status,
            &WriteOptions::default(),
        )
        .await
        .map(drop)
}

/// Runs the Deployment controller until `stopping` resolves.
pub async fn run(registry: Registry, stopping: impl Future<Output = ()>) {
    let registry = &registry;
    drive(
        registry,
        "deployment",
        &[deployments(), replica_sets()],
        stopping,
        move |namespaces| pass(registry, namespaces),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn now() -> Timestamp {
        Timestamp::from_second(NOW).unwrap()
    }

    fn at(offset: i64) -> Timestamp {
        Timestamp::from_second(NOW + offset).unwrap()
    }

    fn deployment(replicas: i32, image: &str) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {
                "name": "web", "namespace": "default", "uid": "d-uid", "generation": 1,
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "annotations": {
                    "kubernetes.io/change-cause": "first",
                    "kubectl.kubernetes.io/last-applied-configuration": "{}",
                },
            },
            "spec": {
                "replicas": replicas,
                "revisionHistoryLimit": 10,
                "progressDeadlineSeconds": 600,
                "strategy": {"type": "RollingUpdate",
                             "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "app", "image": image}]},
                },
            },
        }))
        .unwrap()
    }

    /// The ReplicaSet the plan creates for `d`, as the API server would store it, with the
    /// given spec and status replicas.
    fn stored(d: &Deployment, age: i64, replicas: i32, status_replicas: i32) -> ReplicaSet {
        let actions = plan(d, &[], &[], now());
        let mut rs = actions
            .into_iter()
            .find_map(|a| match a {
                Action::CreateReplicaSet(rs) => Some(*rs),
                _ => None,
            })
            .expect("a ReplicaSet to create");
        let name = rs.metadata.name.clone().unwrap();
        rs.metadata.uid = Some(format!("uid-{name}"));
        rs.metadata.resource_version = Some("5".into());
        rs.metadata.generation = Some(1);
        rs.metadata.creation_timestamp = Some(Time(at(-age)));
        rs.spec.replicas = Some(replicas);
        rs.status = Some(k8s_openapi::api::apps::v1::ReplicaSetStatus {
            replicas: status_replicas,
            ready_replicas: (status_replicas > 0).then_some(status_replicas),
            available_replicas: (status_replicas > 0).then_some(status_replicas),
            observed_generation: Some(1),
            ..Default::default()
        });
        rs
    }

    fn with_revision(mut rs: ReplicaSet, revision: i64) -> ReplicaSet {
        rs.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(REVISION.into(), revision.to_string());
        rs
    }

    fn created(actions: &[Action]) -> Option<&ReplicaSet> {
        actions.iter().find_map(|a| match a {
            Action::CreateReplicaSet(rs) => Some(&**rs),
            _ => None,
        })
    }

    fn scaled(actions: &[Action]) -> Vec<(String, i32)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::UpdateReplicaSet {
                    replica_set,
                    replicas,
                    ..
                } => Some((replica_set.name.clone(), *replicas)),
                _ => None,
            })
            .collect()
    }

    fn status(actions: &[Action]) -> Option<&DeploymentStatus> {
        actions.iter().find_map(|a| match a {
            Action::UpdateStatus { status, .. } => Some(&**status),
            _ => None,
        })
    }

    fn condition_of<'a>(status: &'a DeploymentStatus, type_: &str) -> &'a DeploymentCondition {
        status
            .conditions
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|c| c.type_.as_deref() == Some(type_))
            .unwrap_or_else(|| panic!("no {type_} condition in {status:?}"))
    }

    #[test]
    fn a_new_deployment_gets_a_replica_set_named_and_labelled_by_its_template_hash() {
        let d = deployment(3, "app:1");
        let actions = plan(&d, &[], &[], now());
        let rs = created(&actions).expect("a ReplicaSet to create");
        let hash = pod_template_hash(&d.spec.template, None);
        assert_eq!(hash.len(), 10);
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{hash}");
        assert_eq!(
            rs.metadata.name.as_deref(),
            Some(format!("web-{hash}").as_str())
        );
        assert_eq!(
            rs.metadata.labels.as_ref().unwrap()[POD_TEMPLATE_HASH],
            hash
        );
        assert_eq!(
            rs.spec.selector.match_labels.as_ref().unwrap()[POD_TEMPLATE_HASH],
            hash
        );
        let template_labels = rs
            .spec
            .template
            .as_ref()
            .unwrap()
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        assert_eq!(template_labels[POD_TEMPLATE_HASH], hash);
        assert_eq!(template_labels["app"], "web");
        assert_eq!(rs.spec.replicas, Some(3));
        let annotations = rs.metadata.annotations.as_ref().unwrap();
        assert_eq!(annotations[REVISION], "1");
        assert_eq!(annotations[DESIRED_REPLICAS], "3");
        assert_eq!(annotations[MAX_REPLICAS], "4");
        assert_eq!(annotations["kubernetes.io/change-cause"], "first");
        assert!(!annotations.contains_key("kubectl.kubernetes.io/last-applied-configuration"));
        let owner = &rs.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("Deployment", "web", "d-uid")
        );
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));
        assert!(actions.contains(&Action::SetRevision {
            deployment: ObjectKey::of(&d.metadata).unwrap(),
            revision: "1".into(),
        }));
        let status = status(&actions).expect("a status");
        let progressing = condition_of(status, "Progressing");
        assert_eq!(progressing.reason.as_deref(), Some("NewReplicaSetCreated"));
        assert_eq!(
            progressing.message.as_deref(),
            Some(format!("Created new replica set \"web-{hash}\"").as_str())
        );
    }

    #[test]
    fn the_template_hash_is_stable_and_follows_the_template_and_collision_count() {
        let a = deployment(1, "app:1").spec.template;
        let b = deployment(5, "app:1").spec.template;
        let c = deployment(1, "app:2").spec.template;
        assert_eq!(pod_template_hash(&a, None), pod_template_hash(&b, None));
        assert_ne!(pod_template_hash(&a, None), pod_template_hash(&c, None));
        assert_ne!(pod_template_hash(&a, None), pod_template_hash(&a, Some(1)));
        // Key order does not matter: the hash is over canonical JSON.
        let reordered: PodTemplateSpec = serde_json::from_str(
            r#"{"spec": {"containers": [{"image": "app:1", "name": "app"}]},
                "metadata": {"labels": {"app": "web"}}}"#,
        )
        .unwrap();
        assert_eq!(
            pod_template_hash(&a, None),
            pod_template_hash(&reordered, None)
        );
    }

    #[test]
    fn scaling_the_deployment_scales_its_current_replica_set() {
        let d = deployment(3, "app:1");
        let rs = with_revision(stored(&d, 60, 3, 3), 1);
        let mut d = deployment(5, "app:1");
        d.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(REVISION.into(), "1".into());
        let actions = plan(&d, std::slice::from_ref(&rs), &[], now());
        assert!(created(&actions).is_none());
        assert_eq!(scaled(&actions), [(rs.metadata.name.clone().unwrap(), 5)]);
        let Some(Action::UpdateReplicaSet { annotations, .. }) = actions
            .iter()
            .find(|a| matches!(a, Action::UpdateReplicaSet { .. }))
        else {
            unreachable!()
        };
        assert_eq!(annotations[DESIRED_REPLICAS], "5");
    }

    #[test]
    fn a_new_template_creates_a_new_replica_set_and_scales_the_old_one_to_zero() {
        let v1 = deployment(3, "app:1");
        let old = with_revision(stored(&v1, 60, 3, 3), 1);
        let mut v2 = deployment(3, "app:2");
        v2.metadata.generation = Some(2);
        let actions = plan(&v2, std::slice::from_ref(&old), &[], now());
        let new = created(&actions).expect("a new ReplicaSet");
        assert_ne!(new.metadata.name, old.metadata.name);
        assert_eq!(new.spec.replicas, Some(3));
        assert_eq!(new.metadata.annotations.as_ref().unwrap()[REVISION], "2");
        assert_eq!(scaled(&actions), [(old.metadata.name.clone().unwrap(), 0)]);
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::SetRevision { revision, .. } if revision == "2"))
        );
        // The create comes before the scale-down, so a failed create stops the scale-down.
        let create_at = actions
            .iter()
            .position(|a| matches!(a, Action::CreateReplicaSet(_)));
        let scale_at = actions
            .iter()
            .position(|a| matches!(a, Action::UpdateReplicaSet { .. }));
        assert!(create_at < scale_at);
    }

    #[test]
    fn rolling_back_reuses_the_old_replica_set_with_the_next_revision() {
        let v1 = deployment(2, "app:1");
        let v2 = deployment(2, "app:2");
        let first = with_revision(stored(&v1, 120, 0, 0), 1);
        let second = with_revision(stored(&v2, 60, 2, 2), 2);
        let actions = plan(&v1, &[first.clone(), second.clone()], &[], now());
        assert!(created(&actions).is_none());
        let updates: Vec<&Action> = actions
            .iter()
            .filter(|a| matches!(a, Action::UpdateReplicaSet { .. }))
            .collect();
        assert!(updates.iter().any(|a| matches!(a,
            Action::UpdateReplicaSet { replica_set, replicas: 2, annotations, .. }
                if replica_set.name == first.metadata.name.clone().unwrap()
                && annotations[REVISION] == "3")));
        assert!(updates.iter().any(|a| matches!(a,
            Action::UpdateReplicaSet { replica_set, replicas: 0, .. }
                if replica_set.name == second.metadata.name.clone().unwrap())));
    }

    #[test]
    fn matching_orphan_replica_sets_are_adopted_and_others_released() {
        let d = deployment(2, "app:1");
        let mut orphan = stored(&d, 60, 2, 2);
        orphan.metadata.owner_references = None;
        let mut foreign = stored(&deployment(1, "app:9"), 30, 1, 1);
        foreign.metadata.owner_references = None;
        foreign.metadata.labels = Some(BTreeMap::from([("app".into(), "db".into())]));
        let actions = plan(&d, &[], &[orphan.clone(), foreign], now());
        assert!(actions.iter().any(|a| matches!(a,
            Action::AdoptReplicaSet { replica_set, resource_version, .. }
                if replica_set.name == orphan.metadata.name.clone().unwrap() && resource_version == "5")));
        assert_eq!(
            actions
                .iter()
                .filter(|a| matches!(a, Action::AdoptReplicaSet { .. }))
                .count(),
            1
        );
        assert!(
            created(&actions).is_none(),
            "the adopted ReplicaSet is the new one"
        );

        let mut relabelled = stored(&d, 60, 2, 2);
        relabelled.metadata.labels = Some(BTreeMap::from([("app".into(), "debug".into())]));
        let actions = plan(&d, &[relabelled.clone()], &[], now());
        assert!(actions.contains(&Action::ReleaseReplicaSet {
            replica_set: ObjectKey::of(&relabelled.metadata).unwrap(),
            owner_uid: "d-uid".into(),
        }));
    }

    #[test]
    fn old_replica_sets_beyond_the_history_limit_are_deleted_lowest_revision_first() {
        let mut d = deployment(1, "app:current");
        d.spec.revision_history_limit = Some(1);
        let current = with_revision(stored(&d, 10, 1, 1), 4);
        let olds: Vec<ReplicaSet> = (1..=3)
            .map(|rev| {
                with_revision(
                    stored(&deployment(1, &format!("app:{rev}")), 100 - rev, 0, 0),
                    rev,
                )
            })
            .collect();
        let mut owned = olds.clone();
        owned.push(current);
        let deleted: Vec<String> = plan(&d, &owned, &[], now())
            .iter()
            .filter_map(|a| match a {
                Action::DeleteReplicaSet(key) => Some(key.name.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            deleted,
            [
                olds[0].metadata.name.clone().unwrap(),
                olds[1].metadata.name.clone().unwrap()
            ]
        );
    }

    #[test]
    fn a_converged_deployment_reports_available_and_complete_then_needs_nothing() {
        let mut d = deployment(3, "app:1");
        d.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(REVISION.into(), "1".into());
        let rs = with_revision(stored(&d, 60, 3, 3), 1);
        let actions = plan(&d, std::slice::from_ref(&rs), &[], now());
        let status = status(&actions).expect("a status").clone();
        assert_eq!(status.replicas, Some(3));
        assert_eq!(status.updated_replicas, Some(3));
        assert_eq!(status.ready_replicas, Some(3));
        assert_eq!(status.available_replicas, Some(3));
        assert_eq!(status.unavailable_replicas, None);
        assert_eq!(status.observed_generation, Some(1));
        let available = condition_of(&status, "Available");
        assert_eq!(available.status.as_deref(), Some("True"));
        assert_eq!(
            available.reason.as_deref(),
            Some("MinimumReplicasAvailable")
        );
        let progressing = condition_of(&status, "Progressing");
        assert_eq!(progressing.status.as_deref(), Some("True"));
        assert_eq!(
            progressing.reason.as_deref(),
            Some("NewReplicaSetAvailable")
        );
        let names: Vec<&str> = status
            .conditions
            .as_deref()
            .unwrap()
            .iter()
            .filter_map(|c| c.type_.as_deref())
            .collect();
        assert_eq!(names, ["Available", "Progressing"]);

        d.status = Some(status);
        assert_eq!(plan(&d, std::slice::from_ref(&rs), &[], at(30)), []);
        assert_eq!(requeue_after(&d, now()), None);
    }

    #[test]
    fn too_few_available_replicas_make_the_deployment_unavailable() {
        let mut d = deployment(4, "app:1");
        d.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(REVISION.into(), "1".into());
        // maxUnavailable 25% of 4 is 1: two available of four is not enough.
        let rs = with_revision(stored(&d, 60, 4, 2), 1);
        let actions = plan(&d, std::slice::from_ref(&rs), &[], now());
        let status = status(&actions).expect("a status");
        let available = condition_of(status, "Available");
        assert_eq!(available.status.as_deref(), Some("False"));
        assert_eq!(
            available.reason.as_deref(),
            Some("MinimumReplicasUnavailable")
        );
        assert_eq!(status.unavailable_replicas, Some(2));
    }

    #[test]
    fn no_progress_for_the_deadline_is_reported_as_progress_deadline_exceeded() {
        let mut d = deployment(3, "app:1");
        d.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(REVISION.into(), "1".into());
        let rs = with_revision(stored(&d, 60, 3, 1), 1);
        let first = plan(&d, std::slice::from_ref(&rs), &[], now());
        d.status = Some(status(&first).expect("a status").clone());
        assert_eq!(
            condition_of(d.status.as_ref().unwrap(), "Progressing")
                .reason
                .as_deref(),
            Some("ReplicaSetUpdated")
        );
        assert_eq!(requeue_after(&d, now()), Some(Duration::from_secs(601)));
        // Nothing changes for a while: nothing to write.
        assert_eq!(plan(&d, std::slice::from_ref(&rs), &[], at(300)), []);
        // Past the deadline the condition turns False.
        let late = plan(&d, std::slice::from_ref(&rs), &[], at(601));
        let progressing = condition_of(status(&late).expect("a status"), "Progressing");
        assert_eq!(progressing.status.as_deref(), Some("False"));
        assert_eq!(
            progressing.reason.as_deref(),
            Some("ProgressDeadlineExceeded")
        );
    }

    #[test]
    fn a_paused_deployment_gets_no_new_replica_set_but_still_scales() {
        let v1 = deployment(2, "app:1");
        let old = with_revision(stored(&v1, 60, 2, 2), 1);
        let mut v2 = deployment(4, "app:2");
        v2.spec.paused = Some(true);
        let actions = plan(&v2, std::slice::from_ref(&old), &[], now());
        assert!(created(&actions).is_none());
        assert_eq!(scaled(&actions), [(old.metadata.name.clone().unwrap(), 4)]);
        let progressing = condition_of(status(&actions).expect("a status"), "Progressing");
        assert_eq!(progressing.reason.as_deref(), Some("DeploymentPaused"));
    }

    #[test]
    fn a_deployment_being_deleted_only_updates_its_status() {
        let mut d = deployment(3, "app:2");
        d.metadata.deletion_timestamp = Some(Time(now()));
        let old = with_revision(stored(&deployment(3, "app:1"), 60, 3, 3), 1);
        let actions = plan(&d, &[old], &[], now());
        assert!(
            actions
                .iter()
                .all(|a| matches!(a, Action::UpdateStatus { .. })),
            "{actions:?}"
        );
    }

    #[test]
    fn max_surge_and_unavailable_resolve_percentages_like_kubernetes() {
        let mut d = deployment(10, "app:1");
        assert_eq!((max_surge(&d), max_unavailable(&d)), (3, 2));
        d.spec.strategy = serde_json::from_value(json!({"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}))
        .unwrap();
        assert_eq!((max_surge(&d), max_unavailable(&d)), (0, 1));
        d.spec.strategy = serde_json::from_value(json!({"type": "Recreate"})).unwrap();
        assert_eq!((max_surge(&d), max_unavailable(&d)), (0, 0));
    }
}
