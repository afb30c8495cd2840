//! The Deployment controller: one ReplicaSet per pod template, the current one scaled to
//! `spec.replicas` and the older ones to zero, revisions, history cleanup and status.
//!
//! [`plan`] is pure. From one Deployment, the ReplicaSets it controls and the uncontrolled
//! ReplicaSets of its namespace, it decides, as Kubernetes' deployment controller does:
//! - **claiming**: controlled ReplicaSets that no longer match the selector are released,
//!   uncontrolled matching ones adopted (not while the Deployment is being deleted).
//! - **the new ReplicaSet**: the oldest one whose template equals the Deployment's, ignoring
//!   the `pod-template-hash` label and empty values (`resources: {}`, which kubectl writes,
//!   is no `resources`, as in Kubernetes' Go structs). If there is none, one is created, named
//!   `DEPLOYMENT-HASH`, where HASH ([`pod_template_hash`]) is a stable hash of the template
//!   (and of `status.collisionCount`); the hash is also a label of the ReplicaSet, of its
//!   template and of its selector, so ReplicaSets of one Deployment never select each other's
//!   pods. Going back to an earlier template (`kubectl rollout undo`) reuses its ReplicaSet.
//! - **revisions**: the new ReplicaSet's `deployment.kubernetes.io/revision` is one more than
//!   the highest revision among the old ones (it never decreases), and the Deployment carries
//!   the same annotation. The Deployment's other annotations (such as
//!   `kubernetes.io/change-cause`) are copied to the new ReplicaSet, for `rollout history`.
//! - **replica counts**: [`replica_targets`] decides how many replicas each ReplicaSet should
//!   have, one rollout step per pass, as Kubernetes does: `RollingUpdate` grows the new
//!   ReplicaSet within `spec.replicas + maxSurge` pods and shrinks the old ones only while at
//!   least `spec.replicas - maxUnavailable` pods stay available; `Recreate` scales the old ones
//!   to zero and creates or scales up the new one once their pods are gone (from the
//!   ReplicaSets' status: no replicas, no terminating pods). A change of `spec.replicas` in the
//!   middle of a rollout, or while paused, is shared among the active ReplicaSets in
//!   proportion to their size. A paused Deployment gets no new ReplicaSet and takes no step.
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
//! Pods becoming ready or going away change their ReplicaSet's status (the ReplicaSet
//! controller watches pods), and that change starts the Deployment's next step, so a rollout
//! moves as fast as its pods do.
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
    EventRecorder, ObjectKey, PassOutcome, Selector, controller_reference, controller_uid, drive,
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
    /// For the new ReplicaSet; `None` means it is not to be created now (paused, a scaling
    /// event, or `Recreate` still waiting for the old pods to go).
    pub new: Option<i32>,
    /// For each old ReplicaSet, in the order given.
    pub old: Vec<i32>,
}

/// Decides the replica count of every ReplicaSet of a Deployment: the one place a rollout
/// strategy lives, as in Kubernetes' deployment controller. `old` must be oldest first (as
/// [`plan`] orders them). Each pass takes one step; the next pass, triggered by the
/// ReplicaSets' status changing as their pods come and go, takes the next.
///
/// - **paused**, or a **scaling event** (an active ReplicaSet's `desired-replicas` annotation
///   is not `spec.replicas`): only sizes change (see `scale`), no rollout step is taken.
/// - **`Recreate`**: all old ReplicaSets go to zero; once no pod of theirs is left (not even
///   a terminating one), the new ReplicaSet is created or scaled to `spec.replicas`.
/// - **`RollingUpdate`**: the new ReplicaSet grows while all ReplicaSets together ask for
///   at most `spec.replicas + maxSurge`; if it did not grow in this pass, the old ones shrink
///   as far as availability allows — at least `spec.replicas - maxUnavailable` pods stay
///   available — unavailable old pods first, then oldest ReplicaSet first.
pub fn replica_targets(
    deployment: &Deployment,
    new_rs: Option<&ReplicaSet>,
    old: &[&ReplicaSet],
) -> ReplicaTargets {
    let current = ReplicaTargets {
        new: new_rs.map(spec_replicas),
        old: old.iter().map(|rs| spec_replicas(rs)).collect(),
    };
    let paused = deployment.spec.paused == Some(true);
    if paused || is_scaling_event(deployment, new_rs, old) {
        match scale(deployment, new_rs, old, &current) {
            Some(targets) => return targets,
            None if paused => return current,
            // Several active ReplicaSets under `Recreate`: there is no proportion to keep;
            // the strategy below scales the old ones to zero and the new one to size.
            None => {}
        }
    }
    if rolling_update(deployment).is_some() {
        rolling_update_step(deployment, new_rs, old, current)
    } else {
        recreate_step(deployment, old, current)
    }
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.replicas.unwrap_or(0)
}

fn available_replicas(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

fn annotation_i32(rs: &ReplicaSet, name: &str) -> Option<i32> {
    rs.metadata.annotations.as_ref()?.get(name)?.parse().ok()
}

/// Kubernetes' `isScalingEvent`: `spec.replicas` changed since an active ReplicaSet (one
/// with replicas) was last sized for it.
fn is_scaling_event(
    deployment: &Deployment,
    new_rs: Option<&ReplicaSet>,
    old: &[&ReplicaSet],
) -> bool {
    let desired = desired_replicas(deployment);
    new_rs
        .into_iter()
        .chain(old.iter().copied())
        .filter(|rs| spec_replicas(rs) > 0)
        .filter_map(|rs| annotation_i32(rs, DESIRED_REPLICAS))
        .any(|annotated| annotated != desired)
}

/// Which of a Deployment's ReplicaSets: the new one or the old one at this index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    New,
    Old(usize),
}

impl ReplicaTargets {
    fn set(&mut self, slot: Slot, replicas: i32) {
        match slot {
            Slot::New => self.new = Some(replicas),
            Slot::Old(i) => self.old[i] = replicas,
        }
    }
}

/// Creation order, as Kubernetes' `ReplicaSetsByCreationTimestamp`: oldest first, then name.
fn creation_order(a: &ReplicaSet, b: &ReplicaSet) -> std::cmp::Ordering {
    a.metadata
        .creation_timestamp
        .cmp(&b.metadata.creation_timestamp)
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// Kubernetes' `scale`: sizes change, no rollout step. One active ReplicaSet (or, with none
/// active, the newest) gets `spec.replicas`; a saturated new ReplicaSet (all replicas
/// available) sends the old ones to zero; otherwise, under `RollingUpdate`, the change to
/// `spec.replicas + maxSurge` is shared among the active ReplicaSets in proportion to their
/// size, so a scale in the middle of a rollout keeps the rollout's ratio. `None` when no rule
/// applies (several active ReplicaSets under `Recreate`).
fn scale(
    deployment: &Deployment,
    new_rs: Option<&ReplicaSet>,
    old: &[&ReplicaSet],
    current: &ReplicaTargets,
) -> Option<ReplicaTargets> {
    let desired = desired_replicas(deployment);
    let mut targets = current.clone();
    let mut active: Vec<(Slot, &ReplicaSet)> = new_rs
        .map(|rs| (Slot::New, rs))
        .into_iter()
        .chain(old.iter().enumerate().map(|(i, rs)| (Slot::Old(i), *rs)))
        .filter(|(_, rs)| spec_replicas(rs) > 0)
        .collect();
    // Kubernetes' `FindActiveOrLatest`.
    match active.as_slice() {
        [] => {
            if new_rs.is_some() {
                targets.new = Some(desired);
            } else if let Some(newest) = targets.old.last_mut() {
                *newest = desired;
            }
            return Some(targets);
        }
        [(slot, _)] => {
            targets.set(*slot, desired);
            return Some(targets);
        }
        _ => {}
    }
    if let Some(rs) = new_rs
        && spec_replicas(rs) == desired
        && annotation_i32(rs, DESIRED_REPLICAS) == Some(desired)
        && available_replicas(rs) == desired
    {
        for (slot, _) in &active {
            if *slot != Slot::New {
                targets.set(*slot, 0);
            }
        }
        return Some(targets);
    }
    rolling_update(deployment)?;
    let total: i32 = active.iter().map(|(_, rs)| spec_replicas(rs)).sum();
    let allowed = if desired > 0 {
        desired + max_surge(deployment)
    } else {
        0
    };
    let to_add = allowed - total;
    // Larger ReplicaSets first; among equals, newer first when growing, older when shrinking.
    active.sort_by(|(_, a), (_, b)| {
        spec_replicas(b).cmp(&spec_replicas(a)).then_with(|| {
            if to_add > 0 {
                creation_order(b, a)
            } else {
                creation_order(a, b)
            }
        })
    });
    let mut added = 0;
    let mut sizes: Vec<i32> = Vec::with_capacity(active.len());
    for (_, rs) in &active {
        let proportion = replica_set_proportion(deployment, rs, to_add, added);
        sizes.push(spec_replicas(rs) + proportion);
        added += proportion;
    }
    // What rounding left over goes to (or comes from) the largest.
    sizes[0] = (sizes[0] + to_add - added).max(0);
    for ((slot, _), size) in active.iter().zip(sizes) {
        targets.set(*slot, size);
    }
    Some(targets)
}

/// Kubernetes' `GetReplicaSetProportion`: this ReplicaSet's share of `to_add` (negative when
/// shrinking), never more than what is left of it after `added`.
fn replica_set_proportion(
    deployment: &Deployment,
    rs: &ReplicaSet,
    to_add: i32,
    added: i32,
) -> i32 {
    if spec_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = replica_set_fraction(deployment, rs);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// Kubernetes' `getReplicaSetFraction`: how much the ReplicaSet should change so that its
/// share of the Deployment's maximum size (`spec.replicas + maxSurge`) stays the same as it
/// was under the maximum it was last sized for (its `max-replicas` annotation).
fn replica_set_fraction(deployment: &Deployment, rs: &ReplicaSet) -> i32 {
    let replicas = spec_replicas(rs);
    let desired = desired_replicas(deployment);
    if desired == 0 {
        return -replicas;
    }
    let max_now = desired + max_surge(deployment);
    let max_before = match annotation_i32(rs, MAX_REPLICAS) {
        Some(n) if n != 0 => n,
        _ => deployment
            .status
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(0),
    };
    if max_before == 0 {
        return 0;
    }
    // Go's `math.Round`, like Rust's `round`, rounds halves away from zero.
    let scaled = f64::from(replicas) * f64::from(max_now) / f64::from(max_before);
    scaled.round() as i32 - replicas
}

/// One `RollingUpdate` step: Kubernetes' `reconcileNewReplicaSet`, then, if the new
/// ReplicaSet already exists and did not grow, `reconcileOldReplicaSets`.
fn rolling_update_step(
    deployment: &Deployment,
    new_rs: Option<&ReplicaSet>,
    old: &[&ReplicaSet],
    mut targets: ReplicaTargets,
) -> ReplicaTargets {
    let desired = desired_replicas(deployment);
    let new_now = targets.new.unwrap_or(0);
    let total: i32 = new_now + targets.old.iter().sum::<i32>();
    let new_target = if new_now >= desired {
        desired
    } else {
        let max_total = desired + max_surge(deployment);
        new_now + (max_total - total).clamp(0, desired - new_now)
    };
    targets.new = Some(new_target);
    if new_rs.is_some() && new_target != new_now {
        // Kubernetes takes one step per pass: the old ReplicaSets wait for the next one.
        return targets;
    }

    let old_total: i32 = targets.old.iter().sum();
    if old_total == 0 {
        return targets;
    }
    let min_available = desired - max_unavailable(deployment);
    // Available pods of a ReplicaSet, as far as its status knows. Never more than its
    // replicas: a ReplicaSet that was just scaled down may still report the pods it is about
    // to delete, and counting those could take availability below the minimum.
    let available = |rs: Option<&ReplicaSet>, replicas: i32| {
        rs.map_or(0, available_replicas).min(replicas).max(0)
    };
    let new_unavailable = new_target - available(new_rs, new_target);
    let max_scaled_down = new_target + old_total - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return targets;
    }
    // Unavailable old pods go first: they serve nobody, and they may be why the rollout is
    // stuck (kubernetes/kubernetes#16737).
    let mut cleaned = 0;
    for (i, rs) in old.iter().enumerate() {
        if cleaned >= max_scaled_down {
            break;
        }
        let replicas = targets.old[i];
        let unavailable = replicas - available(Some(rs), replicas);
        if replicas == 0 || unavailable <= 0 {
            continue;
        }
        let step = unavailable.min(max_scaled_down - cleaned);
        targets.old[i] = replicas - step;
        cleaned += step;
    }
    // Then available ones, oldest ReplicaSet first, as long as enough stay available.
    let available_total = available(new_rs, new_target)
        + old
            .iter()
            .zip(&targets.old)
            .map(|(rs, &replicas)| available(Some(rs), replicas))
            .sum::<i32>();
    let mut to_scale_down = available_total - min_available;
    for replicas in &mut targets.old {
        if to_scale_down <= 0 {
            break;
        }
        let step = (*replicas).min(to_scale_down);
        *replicas -= step;
        to_scale_down -= step;
    }
    targets
}

/// One `Recreate` step: the old ReplicaSets go to zero; the new one is created or scaled up
/// only once no pod of theirs is left, so old and new pods never run side by side.
fn recreate_step(
    deployment: &Deployment,
    old: &[&ReplicaSet],
    mut targets: ReplicaTargets,
) -> ReplicaTargets {
    if targets.old.iter().any(|&n| n > 0) {
        targets.old.iter_mut().for_each(|n| *n = 0);
        return targets;
    }
    if old.iter().any(|rs| old_pods_may_remain(rs)) {
        return targets;
    }
    targets.new = Some(desired_replicas(deployment));
    targets
}

/// Whether a ReplicaSet may still have pods, running or terminating (Kubernetes'
/// `oldPodsRunning`, from the ReplicaSet's status instead of a pod list). A status that has
/// not yet seen the latest spec (such as the scale to zero) cannot tell, so it counts as yes.
fn old_pods_may_remain(rs: &ReplicaSet) -> bool {
    let status = rs.status.as_ref();
    status.is_none_or(|s| s.observed_generation < rs.metadata.generation)
        || status.is_some_and(|s| s.replicas > 0 || s.terminating_replicas.unwrap_or(0) > 0)
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
        // Old ReplicaSets are only touched when their size changes or while they are active
        // (then, as in Kubernetes, their replica annotations follow the Deployment's): an
        // active ReplicaSet with stale annotations would make every pass a scaling event.
        if rs.spec.replicas.unwrap_or(0) != target || target > 0 {
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

/// Whether a ReplicaSet's template is the Deployment's, the `pod-template-hash` label aside
/// (and empty values, see [`template_value`]).
pub fn equal_ignoring_hash(
    rs_template: Option<&PodTemplateSpec>,
    template: &PodTemplateSpec,
) -> bool {
    rs_template.is_some_and(|rs_template| template_value(rs_template) == template_value(template))
}

/// A pod template as JSON without what does not change its meaning: the `pod-template-hash`
/// label, and nulls, empty objects and empty lists. Kubernetes compares Go structs, where
/// such fields are zero values either way; here `resources: {}` and no `resources` would
/// differ, and kubectl writes the former (`kubectl set env`, and `kubectl rollout undo`,
/// which copies a ReplicaSet's template back), so a rollback would not find its ReplicaSet.
fn template_value(template: &PodTemplateSpec) -> Value {
    fn prune(value: &mut Value) -> bool {
        match value {
            Value::Object(map) => {
                map.retain(|_, v| !prune(v));
                map.is_empty()
            }
            Value::Array(items) => {
                items.iter_mut().for_each(|item| {
                    prune(item);
                });
                items.is_empty()
            }
            Value::Null => true,
            _ => false,
        }
    }
    let mut value = serde_json::to_value(template).unwrap_or(Value::Null);
    if let Some(labels) = value
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(POD_TEMPLATE_HASH);
    }
    prune(&mut value);
    value
}

/// A stable hash of a pod template (and of the collision count, once there was a collision):
/// 64-bit FNV-1a over the template's canonical JSON (keys sorted, empty values left out as
/// [`equal_ignoring_hash`] does), as 10 hex digits. Equal templates hash equally across
/// processes and versions of Wharf, so a restarted controller finds the ReplicaSets it made.
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut canonical = wharf_apimachinery::canonical_json(&template_value(template));
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
    events: &EventRecorder,
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
        outcome = outcome.merge(apply(registry, events, deployment, &actions).await);
        outcome = outcome.merge(PassOutcome {
            requeue_after: requeue_after(deployment, now),
            failed_writes: false,
        });
    }
    Ok(outcome)
}

/// Applies one Deployment's actions in order. If the new ReplicaSet cannot be created, the
/// rest waits: scaling the old ones down without the new one would only lose capacity.
async fn apply(
    registry: &Registry,
    events: &EventRecorder,
    deployment: &Deployment,
    actions: &[Action],
) -> PassOutcome {
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
                    Ok(_) => {
                        let replicas = rs.spec.replicas.unwrap_or(0);
                        if replicas > 0 {
                            let name = rs.metadata.name.as_deref().unwrap_or("");
                            scaling_event(events, deployment, name, 0, replicas);
                        }
                    }
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
                let before = registry
                    .get(
                        replica_sets(),
                        Some(&replica_set.namespace),
                        &replica_set.name,
                    )
                    .await
                    .ok()
                    .and_then(|rs| rs.pointer("/spec/replicas").and_then(Value::as_i64));
                let result = patch_main(registry, replica_sets(), replica_set, &patch).await;
                if result.is_ok()
                    && let Some(from) = before.filter(|from| *from != i64::from(*replicas))
                {
                    scaling_event(events, deployment, &replica_set.name, from, *replicas);
                }
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

/// A `ScalingReplicaSet` Event on the Deployment, as Kubernetes' deployment controller
/// writes it: "Scaled up replica set NAME from 1 to 3".
fn scaling_event(
    events: &EventRecorder,
    deployment: &Deployment,
    replica_set: &str,
    from: i64,
    to: i32,
) {
    let Some(key) = ObjectKey::of(&deployment.metadata) else {
        return;
    };
    let direction = if i64::from(to) > from { "up" } else { "down" };
    let event = crate::event_object(
        "apps/v1",
        "Deployment",
        &key,
        "Normal",
        "ScalingReplicaSet",
        &format!("Scaled {direction} replica set {replica_set} from {from} to {to}"),
        "deployment-controller",
    );
    events.record(event);
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

/// Runs the Deployment controller until `stopping` resolves, recording its Events with
/// `events`.
pub async fn run(registry: Registry, events: EventRecorder, stopping: impl Future<Output = ()>) {
    let (registry, events) = (&registry, &events);
    drive(
        registry,
        "deployment",
        &[deployments(), replica_sets()],
        stopping,
        move |namespaces| pass(registry, events, namespaces),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

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
    fn a_new_template_creates_a_new_replica_set_within_max_surge_and_keeps_the_old_one() {
        let v1 = deployment(3, "app:1");
        let old = with_revision(stored(&v1, 60, 3, 3), 1);
        let mut v2 = deployment(3, "app:2");
        v2.metadata.generation = Some(2);
        let actions = plan(&v2, std::slice::from_ref(&old), &[], now());
        let new = created(&actions).expect("a new ReplicaSet");
        assert_ne!(new.metadata.name, old.metadata.name);
        // maxSurge 25% of 3 rounds up to 1; maxUnavailable 25% of 3 rounds down to 0, so no
        // old pod may go before a new one is available.
        assert_eq!(new.spec.replicas, Some(1));
        assert_eq!(new.metadata.annotations.as_ref().unwrap()[REVISION], "2");
        assert_eq!(scaled(&actions), []);
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::SetRevision { revision, .. } if revision == "2"))
        );
    }

    #[test]
    fn the_create_comes_before_the_scale_down_so_a_failed_create_stops_it() {
        // maxUnavailable 1 of 4 lets the first pass already take one old pod away.
        let v1 = deployment(4, "app:1");
        let old = with_revision(stored(&v1, 60, 4, 4), 1);
        let v2 = deployment(4, "app:2");
        let actions = plan(&v2, std::slice::from_ref(&old), &[], now());
        assert_eq!(created(&actions).unwrap().spec.replicas, Some(1));
        assert_eq!(scaled(&actions), [(old.metadata.name.clone().unwrap(), 3)]);
        let create_at = actions
            .iter()
            .position(|a| matches!(a, Action::CreateReplicaSet(_)));
        let scale_at = actions
            .iter()
            .position(|a| matches!(a, Action::UpdateReplicaSet { .. }));
        assert!(create_at < scale_at);
    }

    #[test]
    fn a_template_with_empty_values_is_the_same_template() {
        // kubectl's `rollout undo` writes a ReplicaSet's template back as Go encodes it, with
        // `resources: {}` on every container.
        let plain = deployment(1, "app:1").spec.template;
        let mut written_back = serde_json::to_value(&plain).unwrap();
        written_back["spec"]["containers"][0]["resources"] = json!({});
        written_back["spec"]["containers"][0]["env"] = json!([]);
        written_back["metadata"]["annotations"] = json!({});
        let written_back: PodTemplateSpec = serde_json::from_value(written_back).unwrap();
        assert_ne!(plain, written_back);
        assert!(equal_ignoring_hash(Some(&written_back), &plain));
        assert_eq!(
            pod_template_hash(&plain, None),
            pod_template_hash(&written_back, None)
        );
        let other = deployment(1, "app:2").spec.template;
        assert!(!equal_ignoring_hash(Some(&other), &plain));
    }

    #[test]
    fn rolling_back_reuses_the_old_replica_set_with_the_next_revision() {
        let v1 = deployment(2, "app:1");
        let v2 = deployment(2, "app:2");
        let first = with_revision(stored(&v1, 120, 0, 0), 1);
        let second = with_revision(stored(&v2, 60, 2, 2), 2);
        let actions = plan(&v1, &[first.clone(), second.clone()], &[], now());
        assert!(created(&actions).is_none());
        // The first step of the rollback: one surge pod of the old template.
        assert!(actions.iter().any(|a| matches!(a,
            Action::UpdateReplicaSet { replica_set, replicas: 1, annotations, .. }
                if replica_set.name == first.metadata.name.clone().unwrap()
                && annotations[REVISION] == "3")));
        assert_eq!(scaled(&actions).len(), 1, "{actions:?}");
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

    fn with_strategy(mut d: Deployment, strategy: Value) -> Deployment {
        d.spec.strategy = serde_json::from_value(strategy).unwrap();
        d
    }

    fn rolling(d: Deployment, surge: Value, unavailable: Value) -> Deployment {
        with_strategy(
            d,
            json!({"type": "RollingUpdate",
                   "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}),
        )
    }

    /// A ReplicaSet of `d`'s template with `replicas` wanted and `available` of them
    /// available, sized for `d` (its replica annotations are `d`'s).
    fn sized(d: &Deployment, age: i64, replicas: i32, available: i32) -> ReplicaSet {
        let mut rs = stored(d, age, replicas, replicas);
        let status = rs.status.as_mut().unwrap();
        status.ready_replicas = (available > 0).then_some(available);
        status.available_replicas = (available > 0).then_some(available);
        let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
        annotations.insert(DESIRED_REPLICAS.into(), desired_replicas(d).to_string());
        annotations.insert(
            MAX_REPLICAS.into(),
            (desired_replicas(d) + max_surge(d)).to_string(),
        );
        rs
    }

    #[test]
    fn three_replicas_with_25_percent_surge_and_unavailable_roll_one_pod_at_a_time() {
        // maxSurge 25% of 3 → 1 (up), maxUnavailable 25% of 3 → 0 (down): at most 4 pods,
        // never fewer than 3 available.
        let v1 = deployment(3, "app:1");
        let v2 = deployment(3, "app:2");
        let targets =
            |new: Option<ReplicaSet>, old: ReplicaSet| replica_targets(&v2, new.as_ref(), &[&old]);
        let expect = |new: i32, old: i32| ReplicaTargets {
            new: Some(new),
            old: vec![old],
        };
        // No new ReplicaSet yet: it is created with the one surge pod.
        assert_eq!(targets(None, sized(&v1, 60, 3, 3)), expect(1, 3));
        // The surge pod is not available yet: nothing may go.
        assert_eq!(
            targets(Some(sized(&v2, 10, 1, 0)), sized(&v1, 60, 3, 3)),
            expect(1, 3)
        );
        // It is: one old pod goes.
        assert_eq!(
            targets(Some(sized(&v2, 10, 1, 1)), sized(&v1, 60, 3, 3)),
            expect(1, 2)
        );
        // Room for one more new pod; the old ones wait for the next pass.
        assert_eq!(
            targets(Some(sized(&v2, 10, 1, 1)), sized(&v1, 60, 2, 2)),
            expect(2, 2)
        );
        assert_eq!(
            targets(Some(sized(&v2, 10, 2, 2)), sized(&v1, 60, 2, 2)),
            expect(2, 1)
        );
        assert_eq!(
            targets(Some(sized(&v2, 10, 3, 3)), sized(&v1, 60, 1, 1)),
            expect(3, 0)
        );
    }

    #[test]
    fn ten_replicas_with_surge_3_and_unavailable_2_take_bigger_steps() {
        let v1 = rolling(deployment(10, "app:1"), json!(3), json!(2));
        let v2 = rolling(deployment(10, "app:2"), json!(3), json!(2));
        let old = sized(&v1, 60, 10, 10);
        // Created with 3 surge pods, and 2 old ones go at once (8 stay available of 10).
        let first = replica_targets(&v2, None, &[&old]);
        assert_eq!(
            first,
            ReplicaTargets {
                new: Some(3),
                old: vec![8]
            }
        );
        // While the 3 new pods start, nothing more may go: 8 available is the minimum.
        let new = sized(&v2, 10, 3, 0);
        let old = sized(&v1, 60, 8, 8);
        assert_eq!(
            replica_targets(&v2, Some(&new), &[&old]),
            ReplicaTargets {
                new: Some(5),
                old: vec![8]
            }
        );
        let new = sized(&v2, 10, 5, 0);
        assert_eq!(
            replica_targets(&v2, Some(&new), &[&old]),
            ReplicaTargets {
                new: Some(5),
                old: vec![8]
            }
        );
        // Three of them are available: 11 available, 3 above the minimum.
        let new = sized(&v2, 10, 5, 3);
        assert_eq!(
            replica_targets(&v2, Some(&new), &[&old]),
            ReplicaTargets {
                new: Some(5),
                old: vec![5]
            }
        );
    }

    #[test]
    fn unavailable_old_pods_are_scaled_down_first_and_oldest_replica_sets_first() {
        let v1 = deployment(4, "app:1");
        let v2 = deployment(4, "app:2");
        let v3 = deployment(4, "app:3");
        // 4 replicas, surge 1, unavailable 1: 5 pods at most, 3 available at least.
        let oldest = sized(&v1, 90, 2, 2);
        let older = sized(&v2, 60, 2, 0);
        let new = sized(&v3, 10, 1, 1);
        // 3 available (2 + 1) is the minimum, so only the 2 unavailable pods may go.
        assert_eq!(
            replica_targets(&v3, Some(&new), &[&oldest, &older]),
            ReplicaTargets {
                new: Some(1),
                old: vec![2, 0]
            }
        );
        // With everything available, the oldest ReplicaSet goes first.
        let older = sized(&v2, 60, 2, 2);
        assert_eq!(
            replica_targets(&v3, Some(&new), &[&oldest, &older]),
            ReplicaTargets {
                new: Some(1),
                old: vec![0, 2]
            }
        );
    }

    #[test]
    fn a_replica_set_reporting_more_available_pods_than_it_keeps_counts_only_what_it_keeps() {
        // The old ReplicaSet was just scaled from 3 to 2, but its status still shows 3
        // available; counting the third would let one more go than maxUnavailable 0 allows.
        let v1 = deployment(3, "app:1");
        let v2 = deployment(3, "app:2");
        let old = sized(&v1, 60, 2, 3);
        let new = sized(&v2, 10, 2, 1);
        assert_eq!(
            replica_targets(&v2, Some(&new), &[&old]),
            ReplicaTargets {
                new: Some(2),
                old: vec![2]
            }
        );
    }

    /// A ReplicaSet in the simulated cluster and its pods.
    struct SimulatedSet {
        rs: ReplicaSet,
        ready: i32,
        starting: i32,
        terminating: i32,
    }

    /// What the ReplicaSet controller and the node do between two Deployment passes:
    /// terminating pods go, started pods become ready (if `healthy`), surplus pods are
    /// deleted (unready first) and missing ones started; then the status is written.
    fn tick(sets: &mut [SimulatedSet], healthy: &dyn Fn(&ReplicaSet) -> bool) {
        for set in sets {
            set.terminating = 0;
            if healthy(&set.rs) {
                set.ready += set.starting;
                set.starting = 0;
            }
            let wanted = set.rs.spec.replicas.unwrap_or(0);
            let surplus = set.ready + set.starting - wanted;
            if surplus > 0 {
                let from_starting = surplus.min(set.starting);
                set.starting -= from_starting;
                set.ready -= surplus - from_starting;
                set.terminating += surplus;
            } else {
                set.starting -= surplus;
            }
            let nonzero = |n: i32| (n != 0).then_some(n);
            set.rs.status = Some(k8s_openapi::api::apps::v1::ReplicaSetStatus {
                replicas: set.ready + set.starting,
                ready_replicas: nonzero(set.ready),
                available_replicas: nonzero(set.ready),
                terminating_replicas: Some(set.terminating),
                observed_generation: set.rs.metadata.generation,
                ..Default::default()
            });
        }
    }

    /// Applies the plan's writes to the simulated cluster, as the API server would.
    fn apply_simulated(
        d: &mut Deployment,
        sets: &mut Vec<SimulatedSet>,
        actions: Vec<Action>,
        created_at: i64,
    ) {
        for action in actions {
            match action {
                Action::CreateReplicaSet(rs) => {
                    let mut rs = *rs;
                    let name = rs.metadata.name.clone().unwrap();
                    rs.metadata.uid = Some(format!("uid-{name}"));
                    rs.metadata.generation = Some(1);
                    rs.metadata.creation_timestamp = Some(Time(at(created_at)));
                    sets.push(SimulatedSet {
                        rs,
                        ready: 0,
                        starting: 0,
                        terminating: 0,
                    });
                }
                Action::UpdateReplicaSet {
                    replica_set,
                    replicas,
                    annotations,
                    ..
                } => {
                    let set = sets
                        .iter_mut()
                        .find(|s| s.rs.metadata.name.as_ref() == Some(&replica_set.name))
                        .unwrap();
                    if set.rs.spec.replicas != Some(replicas) {
                        set.rs.spec.replicas = Some(replicas);
                        *set.rs.metadata.generation.as_mut().unwrap() += 1;
                    }
                    set.rs
                        .metadata
                        .annotations
                        .get_or_insert_with(BTreeMap::new)
                        .extend(annotations);
                }
                Action::DeleteReplicaSet(key) => {
                    sets.retain(|s| s.rs.metadata.name.as_ref() != Some(&key.name));
                }
                Action::SetRevision { revision, .. } => {
                    d.metadata
                        .annotations
                        .get_or_insert_with(BTreeMap::new)
                        .insert(REVISION.into(), revision);
                }
                Action::UpdateStatus { status, .. } => d.status = Some(*status),
                Action::AdoptReplicaSet { .. } | Action::ReleaseReplicaSet { .. } => {
                    unreachable!()
                }
            }
        }
    }

    /// Rolls `d` out from scratch, then to `next`, feeding the ReplicaSets' status back after
    /// every pass (and, if `stale`, planning twice per tick, the second time from a status
    /// that has not seen the first pass's writes). Checks after every pass that no more than
    /// `replicas + maxSurge` pods are wanted and, after every tick, that at least `replicas -
    /// maxUnavailable` are available. Returns the number of passes the rollout took.
    fn simulate_rollout(d: Deployment, next: Deployment, stale: bool) -> usize {
        let healthy = |_: &ReplicaSet| true;
        let mut sets: Vec<SimulatedSet> = Vec::new();
        let mut d = d;
        for step in 0..10 {
            let owned: Vec<ReplicaSet> = sets.iter().map(|s| s.rs.clone()).collect();
            let actions = plan(&d, &owned, &[], now());
            apply_simulated(&mut d, &mut sets, actions, step);
            tick(&mut sets, &healthy);
        }
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].ready, desired_replicas(&d));

        let status = d.status.take();
        d = next;
        d.status = status;
        let desired = desired_replicas(&d);
        let (surge, unavailable) = (max_surge(&d), max_unavailable(&d));
        for pass in 1..200 {
            for _ in 0..if stale { 2 } else { 1 } {
                let owned: Vec<ReplicaSet> = sets.iter().map(|s| s.rs.clone()).collect();
                let actions = plan(&d, &owned, &[], now());
                apply_simulated(&mut d, &mut sets, actions, 100 + pass as i64);
                let wanted: i32 = sets.iter().map(|s| s.rs.spec.replicas.unwrap()).sum();
                assert!(
                    wanted <= desired + surge,
                    "pass {pass}: {wanted} pods wanted"
                );
            }
            tick(&mut sets, &healthy);
            let available: i32 = sets.iter().map(|s| s.ready).sum();
            assert!(
                available >= desired - unavailable,
                "pass {pass}: only {available} available"
            );
            let new = sets
                .iter()
                .find(|s| equal_ignoring_hash(s.rs.spec.template.as_ref(), &d.spec.template))
                .expect("the new ReplicaSet");
            let others: i32 = sets
                .iter()
                .filter(|s| !std::ptr::eq(*s, new))
                .map(|s| s.ready + s.starting + s.terminating)
                .sum();
            if new.ready == desired && others == 0 {
                // One more pass writes the final status.
                let owned: Vec<ReplicaSet> = sets.iter().map(|s| s.rs.clone()).collect();
                let actions = plan(&d, &owned, &[], now());
                apply_simulated(&mut d, &mut sets, actions, 300);
                let progressing = condition_of(d.status.as_ref().unwrap(), "Progressing");
                assert_eq!(
                    progressing.reason.as_deref(),
                    Some("NewReplicaSetAvailable")
                );
                return pass;
            }
        }
        panic!("the rollout did not complete");
    }

    #[test]
    fn a_rolling_update_completes_step_by_step_as_new_pods_become_available() {
        let cases = [
            (3, json!("25%"), json!("25%")),
            (10, json!(3), json!(2)),
            (10, json!(0), json!(1)),
            (5, json!(1), json!(0)),
            (4, json!("100%"), json!(0)),
            (7, json!("50%"), json!("50%")),
            (1, json!(0), json!(0)),
        ];
        for (replicas, surge, unavailable) in cases {
            for stale in [false, true] {
                let d = rolling(
                    deployment(replicas, "app:1"),
                    surge.clone(),
                    unavailable.clone(),
                );
                let next = rolling(
                    deployment(replicas, "app:2"),
                    surge.clone(),
                    unavailable.clone(),
                );
                let passes = simulate_rollout(d, next, stale);
                assert!(passes > 1, "{replicas} {surge} {unavailable}: {passes}");
            }
        }
        // 3 replicas with one surge pod: three rounds of "add a new pod, wait a tick for it
        // to become available, remove an old one", then a tick for the last old pod to go.
        let d = deployment(3, "app:1");
        let next = deployment(3, "app:2");
        assert_eq!(simulate_rollout(d, next, false), 10);
    }

    #[test]
    fn max_unavailable_zero_never_drops_availability_when_new_pods_never_become_ready() {
        let v1 = rolling(deployment(4, "app:1"), json!(2), json!(0));
        let v2 = rolling(deployment(4, "app:2"), json!(2), json!(0));
        let mut sets = vec![SimulatedSet {
            rs: sized(&v1, 60, 4, 4),
            ready: 4,
            starting: 0,
            terminating: 0,
        }];
        let mut d = v2;
        // The new template's pods never become ready.
        let broken = deployment(4, "app:2").spec.template;
        let healthy = |rs: &ReplicaSet| !equal_ignoring_hash(rs.spec.template.as_ref(), &broken);
        for pass in 0..20 {
            let owned: Vec<ReplicaSet> = sets.iter().map(|s| s.rs.clone()).collect();
            let actions = plan(&d, &owned, &[], now());
            apply_simulated(&mut d, &mut sets, actions, pass);
            tick(&mut sets, &healthy);
            let available: i32 = sets.iter().map(|s| s.ready).sum();
            assert_eq!(available, 4, "pass {pass}");
        }
        let wanted: Vec<i32> = sets.iter().map(|s| s.rs.spec.replicas.unwrap()).collect();
        assert_eq!(wanted, [4, 2], "stuck at the surge, old pods all kept");
    }

    #[test]
    fn recreate_scales_the_old_to_zero_and_starts_the_new_only_when_their_pods_are_gone() {
        let recreate = |d| with_strategy(d, json!({"type": "Recreate"}));
        let v1 = recreate(deployment(3, "app:1"));
        let v2 = recreate(deployment(3, "app:2"));
        let old = sized(&v1, 60, 3, 3);
        // First the old ReplicaSet goes to zero, and no new one is created.
        let actions = plan(&v2, std::slice::from_ref(&old), &[], now());
        assert!(created(&actions).is_none());
        assert_eq!(scaled(&actions), [(old.metadata.name.clone().unwrap(), 0)]);

        // Scaled to zero, but its status has not seen that yet.
        let mut old = old;
        old.spec.replicas = Some(0);
        old.metadata.generation = Some(2);
        let actions = plan(&v2, std::slice::from_ref(&old), &[], now());
        assert!(created(&actions).is_none());
        assert_eq!(scaled(&actions), []);
        // Its pods are terminating.
        old.status = Some(k8s_openapi::api::apps::v1::ReplicaSetStatus {
            replicas: 0,
            terminating_replicas: Some(3),
            observed_generation: Some(2),
            ..Default::default()
        });
        assert!(created(&plan(&v2, std::slice::from_ref(&old), &[], now())).is_none());
        // They are gone: now the new ReplicaSet comes, at full size.
        old.status.as_mut().unwrap().terminating_replicas = Some(0);
        let actions = plan(&v2, std::slice::from_ref(&old), &[], now());
        assert_eq!(created(&actions).unwrap().spec.replicas, Some(3));

        // And in a simulation, old and new pods never exist at the same time.
        let mut d = v1;
        let mut sets: Vec<SimulatedSet> = Vec::new();
        let healthy = |_: &ReplicaSet| true;
        for pass in 0..20 {
            if pass == 5 {
                let status = d.status.take();
                d = v2.clone();
                d.status = status;
            }
            let owned: Vec<ReplicaSet> = sets.iter().map(|s| s.rs.clone()).collect();
            let actions = plan(&d, &owned, &[], now());
            apply_simulated(&mut d, &mut sets, actions, pass);
            tick(&mut sets, &healthy);
            let with_pods = sets
                .iter()
                .filter(|s| s.ready + s.starting + s.terminating > 0)
                .count();
            assert!(with_pods <= 1, "pass {pass}");
        }
        let pods: Vec<(i32, bool)> = sets
            .iter()
            .map(|s| {
                (
                    s.ready,
                    equal_ignoring_hash(s.rs.spec.template.as_ref(), &v2.spec.template),
                )
            })
            .collect();
        assert_eq!(pods, [(0, false), (3, true)]);
    }

    #[test]
    fn recreate_scales_an_existing_new_replica_set_up_after_the_old_pods_are_gone() {
        let recreate = |d| with_strategy(d, json!({"type": "Recreate"}));
        let v1 = recreate(deployment(2, "app:1"));
        let v2 = recreate(deployment(2, "app:2"));
        let old = sized(&v1, 60, 0, 0);
        let new = sized(&v2, 120, 0, 0);
        assert_eq!(
            replica_targets(&v1, Some(&old), &[&new]),
            ReplicaTargets {
                new: Some(2),
                old: vec![0]
            }
        );
        let mut leaving = new.clone();
        leaving.status.as_mut().unwrap().replicas = 1;
        assert_eq!(
            replica_targets(&v1, Some(&old), &[&leaving]),
            ReplicaTargets {
                new: Some(0),
                old: vec![0]
            }
        );
    }

    #[test]
    fn scaling_in_the_middle_of_a_rollout_is_shared_in_proportion() {
        // Kubernetes' documented example: 10 replicas, maxSurge 3, maxUnavailable 2, stuck
        // with 8 old and 5 new pods; scaled to 15, the 5 more (18 - 13) are shared 3 and 2.
        let v1 = rolling(deployment(10, "app:1"), json!(3), json!(2));
        let v2 = rolling(deployment(10, "app:2"), json!(3), json!(2));
        let old = sized(&v1, 60, 8, 8);
        let new = sized(&v2, 10, 5, 0);
        let mut scaled_up = rolling(deployment(15, "app:2"), json!(3), json!(2));
        scaled_up
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(REVISION.into(), "2".into());
        let old = with_revision(old, 1);
        let new = with_revision(new, 2);
        assert_eq!(
            replica_targets(&scaled_up, Some(&new), &[&old]),
            ReplicaTargets {
                new: Some(7),
                old: vec![11]
            }
        );
        let actions = plan(&scaled_up, &[old.clone(), new.clone()], &[], now());
        let mut sizes = scaled(&actions);
        sizes.sort();
        let mut expected = vec![
            (old.metadata.name.clone().unwrap(), 11),
            (new.metadata.name.clone().unwrap(), 7),
        ];
        expected.sort();
        assert_eq!(sizes, expected);
        // Both are now sized for 15, so the next pass is a rollout step again, not a scale.
        for action in &actions {
            if let Action::UpdateReplicaSet { annotations, .. } = action {
                assert_eq!(annotations[DESIRED_REPLICAS], "15");
                assert_eq!(annotations[MAX_REPLICAS], "18");
            }
        }

        // Scaling down to 5: 8 (5 + maxSurge 3... of 5, 2 up) less, the larger gives more.
        let mut scaled_down = rolling(deployment(5, "app:2"), json!(3), json!(2));
        scaled_down.spec.replicas = Some(5);
        let targets = replica_targets(&scaled_down, Some(&new), &[&old]);
        assert_eq!(
            targets,
            ReplicaTargets {
                new: Some(3),
                old: vec![5]
            }
        );
        assert_eq!(
            targets.new.unwrap() + targets.old[0],
            5 + max_surge(&scaled_down)
        );

        // Scaling to zero empties both.
        let zero = rolling(deployment(0, "app:2"), json!(3), json!(2));
        assert_eq!(
            replica_targets(&zero, Some(&new), &[&old]),
            ReplicaTargets {
                new: Some(0),
                old: vec![0]
            }
        );
    }

    #[test]
    fn a_scale_during_a_simulated_rollout_still_completes_within_the_new_bounds() {
        let v1 = rolling(deployment(6, "app:1"), json!(1), json!(1));
        let v2 = rolling(deployment(6, "app:2"), json!(1), json!(1));
        let mut sets = vec![SimulatedSet {
            rs: with_revision(sized(&v1, 60, 6, 6), 1),
            ready: 6,
            starting: 0,
            terminating: 0,
        }];
        let mut d = v2;
        let healthy = |_: &ReplicaSet| true;
        for pass in 0..40 {
            if pass == 3 {
                d.spec.replicas = Some(12);
                *d.metadata.generation.as_mut().unwrap() += 1;
            }
            let owned: Vec<ReplicaSet> = sets.iter().map(|s| s.rs.clone()).collect();
            let actions = plan(&d, &owned, &[], now());
            apply_simulated(&mut d, &mut sets, actions, pass);
            let wanted: i32 = sets.iter().map(|s| s.rs.spec.replicas.unwrap()).sum();
            let limit = desired_replicas(&d) + max_surge(&d);
            assert!(wanted <= limit, "pass {pass}: {wanted} > {limit}");
            tick(&mut sets, &healthy);
        }
        let pods: Vec<(i32, i32)> = sets.iter().map(|s| (s.ready, s.starting)).collect();
        assert_eq!(pods, [(0, 0), (12, 0)]);
    }

    #[test]
    fn a_paused_deployment_mid_rollout_scales_proportionally_and_takes_no_step() {
        let v1 = deployment(4, "app:1");
        let v2 = deployment(4, "app:2");
        let old = sized(&v1, 60, 3, 3);
        let new = sized(&v2, 10, 2, 2);
        let mut paused = deployment(4, "app:2");
        paused.spec.paused = Some(true);
        // Not scaled: nothing changes, although the rollout could go on.
        assert_eq!(
            replica_targets(&paused, Some(&new), &[&old]),
            ReplicaTargets {
                new: Some(2),
                old: vec![3]
            }
        );
        // Scaled from 4 (max 5) to 8 (max 10): both double.
        paused.spec.replicas = Some(8);
        assert_eq!(
            replica_targets(&paused, Some(&new), &[&old]),
            ReplicaTargets {
                new: Some(4),
                old: vec![6]
            }
        );
    }

    #[test]
    fn with_max_unavailable_covering_all_replicas_a_rollout_needs_no_ready_pod() {
        // Nothing is ready (no node runs the pods), but maxUnavailable 100% lets the
        // unavailable old pod go in the same pass as the new ReplicaSet is created.
        let v1 = rolling(deployment(1, "app:1"), json!("25%"), json!("100%"));
        let v2 = rolling(deployment(1, "app:2"), json!("25%"), json!("100%"));
        let old = sized(&v1, 60, 1, 0);
        let actions = plan(&v2, std::slice::from_ref(&old), &[], now());
        assert_eq!(created(&actions).unwrap().spec.replicas, Some(1));
        assert_eq!(scaled(&actions), [(old.metadata.name.clone().unwrap(), 0)]);
        // With the default 25% (0 of 1 replica), the old pod stays until a new one is ready.
        let v2 = deployment(1, "app:2");
        let actions = plan(&v2, std::slice::from_ref(&old), &[], now());
        assert_eq!(created(&actions).unwrap().spec.replicas, Some(1));
        assert_eq!(scaled(&actions), []);
    }
}
