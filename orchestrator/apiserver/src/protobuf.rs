//! Kubernetes' protobuf request bodies (`application/vnd.kubernetes.protobuf`), decoded into
//! the same JSON [`Value`] the JSON path produces, so that admission, `fieldValidation` and
//! defaults apply unchanged.
//!
//! The wire format is the 4-byte magic `k8s\0` followed by a `runtime.Unknown` message
//! (1 typeMeta {1 apiVersion, 2 kind}, 2 raw, 3 contentEncoding, 4 contentType) whose `raw`
//! is the object's own message from k8s.io/api `generated.proto`.
//!
//! Protobuf is not self-describing, so each kind Wharf accepts this way is described here by
//! a small static schema (field number → JSON name and type), with the field numbers of the
//! upstream `generated.proto` (checked against the prost types of the `k8s-pb` crate, 0.9).
//! Only the kinds `kubectl create secret|configmap|namespace|serviceaccount|deployment|
//! service|job`, `kubectl autoscale` (autoscaling/v2 HorizontalPodAutoscaler) and `kubectl
//! auth can-i|whoami` (the self reviews of [`crate::reviews`]) send are described, with the
//! fields those commands and simple manifests use;
//! any other kind is answered with 415 naming it (kubectl does not retry with JSON, so the user
//! sees why). A field this module does not know is an error (400) rather than silently
//! dropped: losing part of an object would be worse than asking the client to send JSON.
//! `status` is read and dropped: kubectl sends it filled with zero values, and creates and
//! updates of the main resource do not write status anyway.
//!
//! The Go encoder writes non-pointer fields even when they hold their zero value (an empty
//! `generateName`, `generation: 0`, an empty `creationTimestamp`, `status: {}`); Go's JSON
//! encoder omits those (`omitempty`). Decoding drops zero values of such fields so the result
//! matches the JSON kubectl would have sent; fields that are pointers in Go (`replicas`,
//! `immutable`, ...) keep an explicit zero.

use base64::Engine as _;
use serde_json::{Map, Value, json};

/// The protobuf media type.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The prefix of every Kubernetes protobuf body.
const MAGIC: &[u8; 4] = b"k8s\0";

/// Why a protobuf body could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The body is not a well-formed Kubernetes protobuf envelope or object (→ 400).
    #[error("{0}")]
    Malformed(String),
    /// The body is well-formed but of a kind Wharf does not decode from protobuf (→ 415).
    #[error("{0}")]
    UnsupportedKind(String),
}

/// The type of one field, as far as JSON is concerned.
#[derive(Clone, Copy)]
enum Ty {
    /// A string (wire type 2).
    Str,
    /// A varint integer.
    Int,
    /// A varint boolean.
    Bool,
    /// A nested message.
    Message(&'static [Field]),
    /// `map<string, string>`.
    MapStr,
    /// `map<string, bytes>` (base64 values in JSON).
    MapBytes,
    /// `map<string, Quantity>`.
    MapQuantity,
    /// `meta.v1.Time` {1 seconds, 2 nanos} → RFC 3339, or absent when zero.
    Time,
    /// `util.intstr.IntOrString` {1 type, 2 intVal, 3 strVal}.
    IntOrString,
    /// `api.resource.Quantity` {1 string} → its string form.
    Quantity,
    /// A field that is read and dropped: a `status`, which the server sets itself and which
    /// kubectl sends filled with zero values.
    Ignored,
}

/// One field of a message.
#[derive(Clone, Copy)]
struct Field {
    number: u64,
    name: &'static str,
    ty: Ty,
    repeated: bool,
    /// Whether the Go field is a pointer, so that an explicit zero value is meaningful.
    pointer: bool,
}

const fn field(number: u64, name: &'static str, ty: Ty) -> Field {
    Field {
        number,
        name,
        ty,
        repeated: false,
        pointer: false,
    }
}

const fn repeated(number: u64, name: &'static str, ty: Ty) -> Field {
    Field {
        repeated: true,
        ..field(number, name, ty)
    }
}

const fn pointer(number: u64, name: &'static str, ty: Ty) -> Field {
    Field {
        pointer: true,
        ..field(number, name, ty)
    }
}

/// meta/v1 OwnerReference.
const OWNER_REFERENCE: &[Field] = &[
    field(5, "apiVersion", Ty::Str),
    field(1, "kind", Ty::Str),
    field(3, "name", Ty::Str),
    field(4, "uid", Ty::Str),
    pointer(6, "controller", Ty::Bool),
    pointer(7, "blockOwnerDeletion", Ty::Bool),
];

/// meta/v1 ObjectMeta (managedFields, 17, is not accepted: kubectl never sends it on create).
const OBJECT_META: &[Field] = &[
    field(1, "name", Ty::Str),
    field(2, "generateName", Ty::Str),
    field(3, "namespace", Ty::Str),
    field(4, "selfLink", Ty::Str),
    field(5, "uid", Ty::Str),
    field(6, "resourceVersion", Ty::Str),
    field(7, "generation", Ty::Int),
    field(8, "creationTimestamp", Ty::Time),
    field(9, "deletionTimestamp", Ty::Time),
    pointer(10, "deletionGracePeriodSeconds", Ty::Int),
    field(11, "labels", Ty::MapStr),
    field(12, "annotations", Ty::MapStr),
    repeated(13, "ownerReferences", Ty::Message(OWNER_REFERENCE)),
    repeated(14, "finalizers", Ty::Str),
];

/// meta/v1 LabelSelectorRequirement.
const LABEL_SELECTOR_REQUIREMENT: &[Field] = &[
    field(1, "key", Ty::Str),
    field(2, "operator", Ty::Str),
    repeated(3, "values", Ty::Str),
];

/// meta/v1 LabelSelector.
const LABEL_SELECTOR: &[Field] = &[
    field(1, "matchLabels", Ty::MapStr),
    repeated(
        2,
        "matchExpressions",
        Ty::Message(LABEL_SELECTOR_REQUIREMENT),
    ),
];

/// core/v1 Secret.
const SECRET: &[Field] = &[
    field(1, "metadata", Ty::Message(OBJECT_META)),
    pointer(5, "immutable", Ty::Bool),
    field(2, "data", Ty::MapBytes),
    field(4, "stringData", Ty::MapStr),
    field(3, "type", Ty::Str),
];

/// core/v1 ConfigMap.
const CONFIG_MAP: &[Field] = &[
    field(1, "metadata", Ty::Message(OBJECT_META)),
    pointer(4, "immutable", Ty::Bool),
    field(2, "data", Ty::MapStr),
    field(3, "binaryData", Ty::MapBytes),
];

/// core/v1 NamespaceSpec.
const NAMESPACE_SPEC: &[Field] = &[repeated(1, "finalizers", Ty::Str)];

/// core/v1 NamespaceStatus (phase only).
const NAMESPACE_STATUS: &[Field] = &[field(1, "phase", Ty::Str)];

/// core/v1 Namespace.
const NAMESPACE: &[Field] = &[
    field(1, "metadata", Ty::Message(OBJECT_META)),
    field(2, "spec", Ty::Message(NAMESPACE_SPEC)),
    field(3, "status", Ty::Message(NAMESPACE_STATUS)),
];

/// core/v1 ObjectReference.
const OBJECT_REFERENCE: &[Field] = &[
    field(1, "kind", Ty::Str),
    field(2, "namespace", Ty::Str),
    field(3, "name", Ty::Str),
    field(4, "uid", Ty::Str),
    field(5, "apiVersion", Ty::Str),
    field(6, "resourceVersion", Ty::Str),
    field(7, "fieldPath", Ty::Str),
];

/// core/v1 LocalObjectReference.
const LOCAL_OBJECT_REFERENCE: &[Field] = &[field(1, "name", Ty::Str)];

/// core/v1 ServiceAccount.
const SERVICE_ACCOUNT: &[Field] = &[
    field(1, "metadata", Ty::Message(OBJECT_META)),
    repeated(2, "secrets", Ty::Message(OBJECT_REFERENCE)),
    repeated(3, "imagePullSecrets", Ty::Message(LOCAL_OBJECT_REFERENCE)),
    pointer(4, "automountServiceAccountToken", Ty::Bool),
];

/// core/v1 ServicePort.
const SERVICE_PORT: &[Field] = &[
    field(1, "name", Ty::Str),
    field(2, "protocol", Ty::Str),
    pointer(6, "appProtocol", Ty::Str),
    field(3, "port", Ty::Int),
    field(4, "targetPort", Ty::IntOrString),
    field(5, "nodePort", Ty::Int),
];

/// core/v1 ServiceSpec (the fields `kubectl create service` and simple manifests use).
const SERVICE_SPEC: &[Field] = &[
    repeated(1, "ports", Ty::Message(SERVICE_PORT)),
    field(2, "selector", Ty::MapStr),
    field(3, "clusterIP", Ty::Str),
    field(4, "type", Ty::Str),
    repeated(5, "externalIPs", Ty::Str),
    field(7, "sessionAffinity", Ty::Str),
    field(8, "loadBalancerIP", Ty::Str),
    field(10, "externalName", Ty::Str),
    field(11, "externalTrafficPolicy", Ty::Str),
    field(12, "healthCheckNodePort", Ty::Int),
    field(13, "publishNotReadyAddresses", Ty::Bool),
    repeated(9, "loadBalancerSourceRanges", Ty::Str),
    pointer(17, "ipFamilyPolicy", Ty::Str),
    repeated(18, "clusterIPs", Ty::Str),
    repeated(19, "ipFamilies", Ty::Str),
    pointer(20, "allocateLoadBalancerNodePorts", Ty::Bool),
    pointer(21, "loadBalancerClass", Ty::Str),
    pointer(22, "internalTrafficPolicy", Ty::Str),
];

/// core/v1 Service.
const SERVICE: &[Field] = &[
    field(1, "metadata", Ty::Message(OBJECT_META)),
    field(2, "spec", Ty::Message(SERVICE_SPEC)),
    field(3, "status", Ty::Ignored),
];

/// core/v1 ContainerPort.
const CONTAINER_PORT: &[Field] = &[
    field(1, "name", Ty::Str),
    field(2, "hostPort", Ty::Int),
    field(3, "containerPort", Ty::Int),
    field(4, "protocol", Ty::Str),
    field(5, "hostIP", Ty::Str),
];

/// core/v1 EnvVar (plain values; `valueFrom` is refused as unknown).
const ENV_VAR: &[Field] = &[field(1, "name", Ty::Str), field(2, "value", Ty::Str)];

/// core/v1 ResourceRequirements.
const RESOURCE_REQUIREMENTS: &[Field] = &[
    field(1, "limits", Ty::MapQuantity),
    field(2, "requests", Ty::MapQuantity),
];

/// core/v1 Container (the fields `kubectl create deployment|job` send).
const CONTAINER: &[Field] = &[
    field(1, "name", Ty::Str),
    field(2, "image", Ty::Str),
    repeated(3, "command", Ty::Str),
    repeated(4, "args", Ty::Str),
    field(5, "workingDir", Ty::Str),
    repeated(6, "ports", Ty::Message(CONTAINER_PORT)),
    repeated(7, "env", Ty::Message(ENV_VAR)),
    field(8, "resources", Ty::Message(RESOURCE_REQUIREMENTS)),
    field(13, "terminationMessagePath", Ty::Str),
    field(14, "imagePullPolicy", Ty::Str),
    field(16, "stdin", Ty::Bool),
    field(17, "stdinOnce", Ty::Bool),
    field(18, "tty", Ty::Bool),
    field(20, "terminationMessagePolicy", Ty::Str),
    pointer(24, "restartPolicy", Ty::Str),
];

/// core/v1 Toleration.
const TOLERATION: &[Field] = &[
    field(1, "key", Ty::Str),
    field(2, "operator", Ty::Str),
    field(3, "value", Ty::Str),
    field(4, "effect", Ty::Str),
    pointer(5, "tolerationSeconds", Ty::Int),
];

/// core/v1 PodSpec (the fields `kubectl create deployment|job` send).
const POD_SPEC: &[Field] = &[
    repeated(2, "containers", Ty::Message(CONTAINER)),
    field(3, "restartPolicy", Ty::Str),
    pointer(4, "terminationGracePeriodSeconds", Ty::Int),
    field(6, "dnsPolicy", Ty::Str),
    field(7, "nodeSelector", Ty::MapStr),
    field(8, "serviceAccountName", Ty::Str),
    field(9, "serviceAccount", Ty::Str),
    field(10, "nodeName", Ty::Str),
    field(11, "hostNetwork", Ty::Bool),
    field(12, "hostPID", Ty::Bool),
    field(13, "hostIPC", Ty::Bool),
    field(16, "hostname", Ty::Str),
    field(17, "subdomain", Ty::Str),
    field(19, "schedulerName", Ty::Str),
    field(24, "priorityClassName", Ty::Str),
    repeated(15, "imagePullSecrets", Ty::Message(LOCAL_OBJECT_REFERENCE)),
    pointer(21, "automountServiceAccountToken", Ty::Bool),
    repeated(22, "tolerations", Ty::Message(TOLERATION)),
    pointer(29, "runtimeClassName", Ty::Str),
    pointer(30, "enableServiceLinks", Ty::Bool),
];

/// core/v1 PodTemplateSpec.
const POD_TEMPLATE_SPEC: &[Field] = &[
    field(1, "metadata", Ty::Message(OBJECT_META)),
    field(2, "spec", Ty::Message(POD_SPEC)),
];

/// apps/v1 DeploymentStrategy (type only; rollingUpdate is refused as unknown).
const DEPLOYMENT_STRATEGY: &[Field] = &[field(1, "type", Ty::Str)];

/// apps/v1 DeploymentSpec.
const DEPLOYMENT_SPEC: &[Field] = &[
    pointer(1, "replicas", Ty::Int),
    field(2, "selector", Ty::Message(LABEL_SELECTOR)),
    field(3, "template", Ty::Message(POD_TEMPLATE_SPEC)),
    field(4, "strategy", Ty::Message(DEPLOYMENT_STRATEGY)),
    field(5, "minReadySeconds", Ty::Int),
    pointer(6, "revisionHistoryLimit", Ty::Int),
    field(7, "paused", Ty::Bool),
    pointer(9, "progressDeadlineSeconds", Ty::Int),
];

/// apps/v1 Deployment.
const DEPLOYMENT: &[Field] = &[
    field(1, "metadata", Ty::Message(OBJECT_META)),
    field(2, "spec", Ty::Message(DEPLOYMENT_SPEC)),
    field(3, "status", Ty::Ignored),
];

/// batch/v1 JobSpec (podFailurePolicy, successPolicy and the like are refused as unknown).
const JOB_SPEC: &[Field] = &[
    pointer(1, "parallelism", Ty::Int),
    pointer(2, "completions", Ty::Int),
    pointer(3, "activeDeadlineSeconds", Ty::Int),
    field(4, "selector", Ty::Message(LABEL_SELECTOR)),
    pointer(5, "manualSelector", Ty::Bool),
    field(6, "template", Ty::Message(POD_TEMPLATE_SPEC)),
    pointer(7, "backoffLimit", Ty::Int),
    pointer(8, "ttlSecondsAfterFinished", Ty::Int),
    pointer(9, "completionMode", Ty::Str),
    pointer(10, "suspend", Ty::Bool),
];

/// batch/v1 Job.
const JOB: &[Field] = &[
    field(1, "metadata", Ty::Message(OBJECT_META)),
    field(2, "spec", Ty::Message(JOB_SPEC)),
    field(3, "status", Ty::Ignored),
];

/// autoscaling/v2 CrossVersionObjectReference.
const CROSS_VERSION_OBJECT_REFERENCE: &[Field] = &[
    field(1, "kind", Ty::Str),
    field(2, "name", Ty::Str),
    field(3, "apiVersion", Ty::Str),
];

/// autoscaling/v2 MetricTarget.
const METRIC_TARGET: &[Field] = &[
    field(1, "type", Ty::Str),
    pointer(2, "value", Ty::Quantity),
    pointer(3, "averageValue", Ty::Quantity),
    pointer(4, "averageUtilization", Ty::Int),
];

/// autoscaling/v2 MetricIdentifier.
const METRIC_IDENTIFIER: &[Field] = &[
    field(1, "name", Ty::Str),
    field(2, "selector", Ty::Message(LABEL_SELECTOR)),
];

/// autoscaling/v2 ResourceMetricSource.
const RESOURCE_METRIC_SOURCE: &[Field] = &[
    field(1, "name", Ty::Str),
    field(2, "target", Ty::Message(METRIC_TARGET)),
];

/// autoscaling/v2 ContainerResourceMetricSource.
const CONTAINER_RESOURCE_METRIC_SOURCE: &[Field] = &[
    field(1, "name", Ty::Str),
    field(2, "target", Ty::Message(METRIC_TARGET)),
    field(3, "container", Ty::Str),
];

/// autoscaling/v2 PodsMetricSource and ExternalMetricSource (same shape).
const PODS_METRIC_SOURCE: &[Field] = &[
    field(1, "metric", Ty::Message(METRIC_IDENTIFIER)),
    field(2, "target", Ty::Message(METRIC_TARGET)),
];

/// autoscaling/v2 ObjectMetricSource.
const OBJECT_METRIC_SOURCE: &[Field] = &[
    field(
        1,
        "describedObject",
        Ty::Message(CROSS_VERSION_OBJECT_REFERENCE),
    ),
    field(2, "target", Ty::Message(METRIC_TARGET)),
    field(3, "metric", Ty::Message(METRIC_IDENTIFIER)),
];

/// autoscaling/v2 MetricSpec.
const METRIC_SPEC: &[Field] = &[
    field(1, "type", Ty::Str),
    pointer(2, "object", Ty::Message(OBJECT_METRIC_SOURCE)),
    pointer(3, "pods", Ty::Message(PODS_METRIC_SOURCE)),
    pointer(4, "resource", Ty::Message(RESOURCE_METRIC_SOURCE)),
    pointer(5, "external", Ty::Message(PODS_METRIC_SOURCE)),
    pointer(
        7,
        "containerResource",
        Ty::Message(CONTAINER_RESOURCE_METRIC_SOURCE),
    ),
];

/// autoscaling/v2 HPAScalingPolicy.
const HPA_SCALING_POLICY: &[Field] = &[
    field(1, "type", Ty::Str),
    field(2, "value", Ty::Int),
    field(3, "periodSeconds", Ty::Int),
];

/// autoscaling/v2 HPAScalingRules.
const HPA_SCALING_RULES: &[Field] = &[
    pointer(3, "stabilizationWindowSeconds", Ty::Int),
    pointer(1, "selectPolicy", Ty::Str),
    repeated(2, "policies", Ty::Message(HPA_SCALING_POLICY)),
    pointer(4, "tolerance", Ty::Quantity),
];

/// autoscaling/v2 HorizontalPodAutoscalerBehavior.
const HPA_BEHAVIOR: &[Field] = &[
    pointer(1, "scaleUp", Ty::Message(HPA_SCALING_RULES)),
    pointer(2, "scaleDown", Ty::Message(HPA_SCALING_RULES)),
];

/// autoscaling/v2 HorizontalPodAutoscalerSpec.
const HPA_SPEC: &[Field] = &[
    field(
        1,
        "scaleTargetRef",
        Ty::Message(CROSS_VERSION_OBJECT_REFERENCE),
    ),
    pointer(2, "minReplicas", Ty::Int),
    field(3, "maxReplicas", Ty::Int),
    repeated(4, "metrics", Ty::Message(METRIC_SPEC)),
    pointer(5, "behavior", Ty::Message(HPA_BEHAVIOR)),
];

/// autoscaling/v2 HorizontalPodAutoscaler (what `kubectl autoscale` sends).
const HORIZONTAL_POD_AUTOSCALER: &[Field] = &[
    field(1, "metadata", Ty::Message(OBJECT_META)),
    field(2, "spec", Ty::Message(HPA_SPEC)),
    field(3, "status", Ty::Ignored),
];

/// meta/v1 Preconditions.
const PRECONDITIONS: &[Field] = &[
    pointer(1, "uid", Ty::Str),
    pointer(2, "resourceVersion", Ty::Str),
];

/// meta/v1 DeleteOptions: the body of a DELETE from client-go's typed clients (e.g. the pod
/// deletions of `kubectl drain`).
const DELETE_OPTIONS: &[Field] = &[
    pointer(1, "gracePeriodSeconds", Ty::Int),
    field(2, "preconditions", Ty::Message(PRECONDITIONS)),
    pointer(3, "orphanDependents", Ty::Bool),
    pointer(4, "propagationPolicy", Ty::Str),
    repeated(5, "dryRun", Ty::Str),
    pointer(
        6,
        "ignoreStoreReadErrorWithClusterBreakingPotential",
        Ty::Bool,
    ),
];

/// authorization/v1 FieldSelectorAttributes and LabelSelectorAttributes (the same shape:
/// 1 rawSelector, 2 requirements of {1 key, 2 operator, 3 values}).
const SELECTOR_ATTRIBUTES: &[Field] = &[
    field(1, "rawSelector", Ty::Str),
    repeated(2, "requirements", Ty::Message(LABEL_SELECTOR_REQUIREMENT)),
];

/// authorization/v1 ResourceAttributes.
const RESOURCE_ATTRIBUTES: &[Field] = &[
    field(1, "namespace", Ty::Str),
    field(2, "verb", Ty::Str),
    field(3, "group", Ty::Str),
    field(4, "version", Ty::Str),
    field(5, "resource", Ty::Str),
    field(6, "subresource", Ty::Str),
    field(7, "name", Ty::Str),
    field(8, "fieldSelector", Ty::Message(SELECTOR_ATTRIBUTES)),
    field(9, "labelSelector", Ty::Message(SELECTOR_ATTRIBUTES)),
];

/// authorization/v1 NonResourceAttributes.
const NON_RESOURCE_ATTRIBUTES: &[Field] = &[field(1, "path", Ty::Str), field(2, "verb", Ty::Str)];

/// authorization/v1 SelfSubjectAccessReviewSpec. Both attributes are pointers in Go, so an
/// empty one that was sent stays present (and validation sees it).
const SELF_SUBJECT_ACCESS_REVIEW_SPEC: &[Field] = &[
    pointer(1, "resourceAttributes", Ty::Message(RESOURCE_ATTRIBUTES)),
    pointer(
        2,
        "nonResourceAttributes",
        Ty::Message(NON_RESOURCE_ATTRIBUTES),
    ),
];

/// authorization/v1 SelfSubjectAccessReview (`kubectl auth can-i`).
const SELF_SUBJECT_ACCESS_REVIEW: &[Field] = &[
    field(1, "metadata", Ty::Message(OBJECT_META)),
    field(2, "spec", Ty::Message(SELF_SUBJECT_ACCESS_REVIEW_SPEC)),
    field(3, "status", Ty::Ignored),
];

/// authorization/v1 SelfSubjectRulesReviewSpec.
const SELF_SUBJECT_RULES_REVIEW_SPEC: &[Field] = &[field(1, "namespace", Ty::Str)];

/// authorization/v1 SelfSubjectRulesReview (`kubectl auth can-i --list`).
const SELF_SUBJECT_RULES_REVIEW: &[Field] = &[
    field(1, "metadata", Ty::Message(OBJECT_META)),
    field(2, "spec", Ty::Message(SELF_SUBJECT_RULES_REVIEW_SPEC)),
    field(3, "status", Ty::Ignored),
];

/// authentication/v1 SelfSubjectReview (`kubectl auth whoami`).
const SELF_SUBJECT_REVIEW: &[Field] = &[
    field(1, "metadata", Ty::Message(OBJECT_META)),
    field(2, "status", Ty::Ignored),
];

/// policy/v1 Eviction (`kubectl drain` posts one per pod to `pods/NAME/eviction`).
const EVICTION: &[Field] = &[
    field(1, "metadata", Ty::Message(OBJECT_META)),
    field(2, "deleteOptions", Ty::Message(DELETE_OPTIONS)),
];

/// policy/v1 PodDisruptionBudgetSpec.
const POD_DISRUPTION_BUDGET_SPEC: &[Field] = &[
    field(1, "minAvailable", Ty::IntOrString),
    field(2, "selector", Ty::Message(LABEL_SELECTOR)),
    field(3, "maxUnavailable", Ty::IntOrString),
    pointer(4, "unhealthyPodEvictionPolicy", Ty::Str),
];

/// policy/v1 PodDisruptionBudget (`kubectl create poddisruptionbudget`).
const POD_DISRUPTION_BUDGET: &[Field] = &[
    field(1, "metadata", Ty::Message(OBJECT_META)),
    field(2, "spec", Ty::Message(POD_DISRUPTION_BUDGET_SPEC)),
    field(3, "status", Ty::Ignored),
];

/// Whether `body` is a Kubernetes protobuf body (by its magic number).
pub fn is_protobuf(body: &[u8]) -> bool {
    body.starts_with(MAGIC)
}

/// The kinds decoded from protobuf, by apiVersion and kind.
const KINDS: &[(&str, &str, &[Field])] = &[
    ("v1", "DeleteOptions", DELETE_OPTIONS),
    ("meta.k8s.io/v1", "DeleteOptions", DELETE_OPTIONS),
    ("v1", "Secret", SECRET),
    ("v1", "ConfigMap", CONFIG_MAP),
    ("v1", "Namespace", NAMESPACE),
    ("v1", "ServiceAccount", SERVICE_ACCOUNT),
    ("v1", "Service", SERVICE),
    ("apps/v1", "Deployment", DEPLOYMENT),
    ("batch/v1", "Job", JOB),
    ("policy/v1", "Eviction", EVICTION),
    ("policy/v1", "PodDisruptionBudget", POD_DISRUPTION_BUDGET),
    (
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        HORIZONTAL_POD_AUTOSCALER,
    ),
    (
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
        SELF_SUBJECT_ACCESS_REVIEW,
    ),
    (
        "authorization.k8s.io/v1",
        "SelfSubjectRulesReview",
        SELF_SUBJECT_RULES_REVIEW,
    ),
    (
        "authentication.k8s.io/v1",
        "SelfSubjectReview",
        SELF_SUBJECT_REVIEW,
    ),
];

/// Whether `kind` of `api_version` can be decoded from protobuf.
pub fn supports(api_version: &str, kind: &str) -> bool {
    schema_of(api_version, kind).is_some()
}

fn schema_of(api_version: &str, kind: &str) -> Option<&'static [Field]> {
    KINDS
        .iter()
        .find(|(v, k, _)| *v == api_version && *k == kind)
        .map(|(_, _, fields)| *fields)
}

/// Decodes a Kubernetes protobuf body (`k8s\0` + `runtime.Unknown`) into the object's JSON
/// form, with `apiVersion` and `kind` from the envelope.
pub fn decode(body: &[u8]) -> Result<Value, DecodeError> {
    let envelope = body.strip_prefix(MAGIC).ok_or_else(|| {
        DecodeError::Malformed(
            "the protobuf body does not start with the Kubernetes magic number \"k8s\\x00\"".into(),
        )
    })?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    let mut content_encoding = String::new();
    for item in Reader::new(envelope) {
        let (number, value) = item.map_err(|e| malformed("runtime.Unknown", &e))?;
        match (number, value) {
            (1, Wire::Len(type_meta)) => {
                for item in Reader::new(type_meta) {
                    match item.map_err(|e| malformed("runtime.TypeMeta", &e))? {
                        (1, Wire::Len(v)) => api_version = utf8(v, "apiVersion")?,
                        (2, Wire::Len(v)) => kind = utf8(v, "kind")?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Len(v)) => raw = v,
            (3, Wire::Len(v)) => content_encoding = utf8(v, "contentEncoding")?,
            _ => {}
        }
    }
    if !content_encoding.is_empty() {
        return Err(DecodeError::UnsupportedKind(format!(
            "protobuf bodies with contentEncoding {content_encoding:?} are not supported"
        )));
    }
    if kind.is_empty() || api_version.is_empty() {
        return Err(DecodeError::Malformed(
            "the protobuf body has no apiVersion and kind".into(),
        ));
    }
    let schema = schema_of(&api_version, &kind).ok_or_else(|| {
        DecodeError::UnsupportedKind(format!(
            "{kind} ({api_version}) cannot be sent as protobuf to this server"
        ))
    })?;
    let mut object = decode_message(raw, schema, &kind)?;
    object.insert("apiVersion".into(), json!(api_version));
    object.insert("kind".into(), json!(kind));
    Ok(Value::Object(object))
}

fn malformed(what: &str, error: &str) -> DecodeError {
    DecodeError::Malformed(format!("error decoding protobuf {what}: {error}"))
}

fn utf8(bytes: &[u8], path: &str) -> Result<String, DecodeError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| DecodeError::Malformed(format!("protobuf field {path} is not valid UTF-8")))
}

/// Decodes one message by its schema. `path` names it in error messages.
fn decode_message(
    bytes: &[u8],
    schema: &[Field],
    path: &str,
) -> Result<Map<String, Value>, DecodeError> {
    let mut object = Map::new();
    for item in Reader::new(bytes) {
        let (number, wire) = item.map_err(|e| malformed(path, &e))?;
        let Some(field) = schema.iter().find(|f| f.number == number) else {
            return Err(DecodeError::Malformed(format!(
                "protobuf field {number} of {path} is not supported by this server; send the object as JSON"
            )));
        };
        let child = format!("{path}.{}", field.name);
        let value = decode_value(wire, field, &child)?;
        if field.repeated {
            let list = object
                .entry(field.name)
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(list) = list {
                // Packed repeated scalars are not used by any field above (all are strings or
                // messages), so one wire item is one element.
                list.push(value.unwrap_or(Value::Null));
            }
            continue;
        }
        match value {
            Some(Value::Object(entries))
                if matches!(field.ty, Ty::MapStr | Ty::MapBytes | Ty::MapQuantity) =>
            {
                // Each map entry arrives as its own item of the same field.
                let map = object
                    .entry(field.name)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(map) = map {
                    map.extend(entries);
                }
            }
            Some(value) => {
                object.insert(field.name.to_string(), value);
            }
            None => {
                object.remove(field.name);
            }
        }
    }
    Ok(object)
}

/// Decodes one wire item of `field`; `None` for a zero value that JSON would omit.
fn decode_value(wire: Wire<'_>, field: &Field, path: &str) -> Result<Option<Value>, DecodeError> {
    let wrong_type =
        || DecodeError::Malformed(format!("protobuf field {path} has the wrong wire type"));
    let keep = field.pointer || field.repeated;
    Ok(match field.ty {
        Ty::Str => {
            let Wire::Len(bytes) = wire else {
                return Err(wrong_type());
            };
            let text = utf8(bytes, path)?;
            (keep || !text.is_empty()).then(|| json!(text))
        }
        Ty::Int => {
            let Wire::Varint(n) = wire else {
                return Err(wrong_type());
            };
            // int32/int64 are two's complement in a varint.
            let n = n as i64;
            (keep || n != 0).then(|| json!(n))
        }
        Ty::Bool => {
            let Wire::Varint(n) = wire else {
                return Err(wrong_type());
            };
            (keep || n != 0).then(|| json!(n != 0))
        }
        Ty::Message(schema) => {
            let Wire::Len(bytes) = wire else {
                return Err(wrong_type());
            };
            let message = decode_message(bytes, schema, path)?;
            (keep || !message.is_empty()).then_some(Value::Object(message))
        }
        Ty::MapStr | Ty::MapBytes | Ty::MapQuantity => {
            let Wire::Len(bytes) = wire else {
                return Err(wrong_type());
            };
            let (key, value) = decode_map_entry(bytes, field.ty, path)?;
            let mut entry = Map::new();
            entry.insert(key, value);
            Some(Value::Object(entry))
        }
        Ty::Time => {
            let Wire::Len(bytes) = wire else {
                return Err(wrong_type());
            };
            decode_time(bytes, path)?
        }
        Ty::Ignored => None,
        Ty::Quantity => {
            let Wire::Len(bytes) = wire else {
                return Err(wrong_type());
            };
            let mut text = String::new();
            for item in Reader::new(bytes) {
                match item.map_err(|e| malformed(path, &e))? {
                    (1, Wire::Len(v)) => text = utf8(v, path)?,
                    _ => return Err(wrong_type()),
                }
            }
            (keep || !text.is_empty()).then(|| json!(text))
        }
        Ty::IntOrString => {
            let Wire::Len(bytes) = wire else {
                return Err(wrong_type());
            };
            let (mut is_string, mut int, mut string) = (false, 0i64, String::new());
            for item in Reader::new(bytes) {
                match item.map_err(|e| malformed(path, &e))? {
                    (1, Wire::Varint(t)) => is_string = t == 1,
                    (2, Wire::Varint(v)) => int = v as i64 as i32 as i64,
                    (3, Wire::Len(v)) => string = utf8(v, path)?,
                    _ => return Err(wrong_type()),
                }
            }
            Some(if is_string { json!(string) } else { json!(int) })
        }
    })
}

/// Decodes a map entry {1 key, 2 value}.
fn decode_map_entry(bytes: &[u8], ty: Ty, path: &str) -> Result<(String, Value), DecodeError> {
    let mut key = String::new();
    let mut value = match ty {
        Ty::MapQuantity => json!("0"),
        _ => json!(""),
    };
    for item in Reader::new(bytes) {
        match (item.map_err(|e| malformed(path, &e))?, ty) {
            ((1, Wire::Len(k)), _) => key = utf8(k, path)?,
            ((2, Wire::Len(v)), Ty::MapStr) => value = json!(utf8(v, path)?),
            ((2, Wire::Len(v)), Ty::MapBytes) => {
                value = json!(base64::engine::general_purpose::STANDARD.encode(v));
            }
            ((2, Wire::Len(v)), Ty::MapQuantity) => {
                // resource.Quantity {1 string}.
                for item in Reader::new(v) {
                    if let (1, Wire::Len(s)) = item.map_err(|e| malformed(path, &e))? {
                        value = json!(utf8(s, path)?);
                    }
                }
            }
            _ => {
                return Err(DecodeError::Malformed(format!(
                    "protobuf map entry of {path} is malformed"
                )));
            }
        }
    }
    Ok((key, value))
}

/// meta/v1 Time {1 seconds, 2 nanos} as Kubernetes' RFC 3339 (second precision), or `None`
/// for the zero time (which Kubernetes' JSON writes as null).
fn decode_time(bytes: &[u8], path: &str) -> Result<Option<Value>, DecodeError> {
    let mut seconds = 0i64;
    for item in Reader::new(bytes) {
        match item.map_err(|e| malformed(path, &e))? {
            (1, Wire::Varint(s)) => seconds = s as i64,
            (2, Wire::Varint(_)) => {}
            _ => {
                return Err(DecodeError::Malformed(format!(
                    "protobuf field {path} is not a Time"
                )));
            }
        }
    }
    if seconds == 0 {
        return Ok(None);
    }
    Ok(Some(json!(rfc3339(seconds))))
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (Howard Hinnant's civil-from-days).
fn rfc3339(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// One field's value on the wire.
#[derive(Debug, Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Fixed64,
    Len(&'a [u8]),
    Fixed32,
}

/// An iterator over the (field number, value) items of one message.
struct Reader<'a> {
    bytes: &'a [u8],
    failed: bool,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader {
            bytes,
            failed: false,
        }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for i in 0..10 {
            let (&byte, rest) = self
                .bytes
                .split_first()
                .ok_or_else(|| "truncated varint".to_string())?;
            self.bytes = rest;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() < n {
            return Err(format!(
                "length {n} runs past the end of the message ({} bytes left)",
                self.bytes.len()
            ));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn item(&mut self) -> Result<(u64, Wire<'a>), String> {
        let tag = self.varint()?;
        let number = tag >> 3;
        if number == 0 {
            return Err("field number 0".into());
        }
        let wire = match tag & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Wire::Fixed64
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|e| e.to_string())?;
                Wire::Len(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Wire::Fixed32
            }
            other => return Err(format!("unsupported wire type {other}")),
        };
        Ok((number, wire))
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<(u64, Wire<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.bytes.is_empty() {
            return None;
        }
        let item = self.item();
        self.failed = item.is_err();
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bodies captured from kubectl 1.37.1 (`kubectl create ...` against a listener).
    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/protobuf/kubectl-1.37-create-{name}.bin",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The DeleteOptions body kubectl 1.37 `drain` sent with each pod's DELETE (captured).
    const KUBECTL_DRAIN_DELETE_OPTIONS: &[u8] =
        b"k8s\x00\x0a\x13\x0a\x02v1\x12\x0dDeleteOptions\x12\x00\x1a\x00\x22\x00";

    /// A length-delimited field.
    fn bytes_field(number: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![number << 3 | 2, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn delete_options_sent_as_protobuf_are_read_like_their_json() {
        let query = crate::http::Query::new();
        let options = crate::http::delete_options(&query, KUBECTL_DRAIN_DELETE_OPTIONS).unwrap();
        assert_eq!(options.propagation_policy, None);
        assert_eq!(options.grace_period_seconds, None);
        assert!(!options.dry_run);

        // Every field: gracePeriodSeconds 0, preconditions, propagationPolicy, dryRun.
        let mut raw = vec![1 << 3, 0];
        let mut preconditions = bytes_field(1, b"u-1");
        preconditions.extend(bytes_field(2, b"42"));
        raw.extend(bytes_field(2, &preconditions));
        raw.extend(bytes_field(4, b"Foreground"));
        raw.extend(bytes_field(5, b"All"));
        let mut type_meta = bytes_field(1, b"v1");
        type_meta.extend(bytes_field(2, b"DeleteOptions"));
        let mut body = b"k8s\x00".to_vec();
        body.extend(bytes_field(1, &type_meta));
        body.extend(bytes_field(2, &raw));
        let options = crate::http::delete_options(&query, &body).unwrap();
        assert_eq!(options.grace_period_seconds, Some(0));
        assert_eq!(options.precondition_uid.as_deref(), Some("u-1"));
        assert_eq!(options.precondition_resource_version.as_deref(), Some("42"));
        assert_eq!(options.propagation_policy.as_deref(), Some("Foreground"));
        assert!(options.dry_run);

        // Another kind in the envelope is refused, not read as options.
        let secret = fixture("secret_generic");
        let err = crate::http::delete_options(&query, &secret).unwrap_err();
        assert!(err.to_string().contains("invalid DeleteOptions"), "{err}");
    }

    #[test]
    fn kubectl_create_secret_generic_decodes_like_its_json() {
        let object = decode(&fixture("secret_generic")).unwrap();
        assert_eq!(
            object,
            json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "s1"},
                "data": {"a": "Yg=="},
            })
        );
    }

    #[test]
    fn kubectl_create_secret_docker_registry_decodes_with_its_type() {
        let object = decode(&fixture("secret_docker-registry")).unwrap();
        assert_eq!(object["kind"], "Secret");
        assert_eq!(object["metadata"]["name"], "r1");
        assert_eq!(object["type"], "kubernetes.io/dockerconfigjson");
        let config = object["data"][".dockerconfigjson"].as_str().unwrap();
        let config = base64::engine::general_purpose::STANDARD
            .decode(config)
            .unwrap();
        let config: Value = serde_json::from_slice(&config).unwrap();
        assert_eq!(config["auths"]["x"]["username"], "u");
    }

    #[test]
    fn kubectl_create_configmap_decodes_like_its_json() {
        let object = decode(&fixture("configmap")).unwrap();
        assert_eq!(
            object,
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "c1"},
                "data": {"k": "v"},
            })
        );
    }

    #[test]
    fn kubectl_create_namespace_and_serviceaccount_decode() {
        assert_eq!(
            decode(&fixture("namespace")).unwrap(),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n1"}})
        );
        assert_eq!(
            decode(&fixture("serviceaccount")).unwrap(),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa1"}})
        );
    }

    #[test]
    fn kubectl_create_service_clusterip_decodes_ports_and_selector() {
        let object = decode(&fixture("service_clusterip")).unwrap();
        assert_eq!(
            object,
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "svc1", "labels": {"app": "svc1"}},
                "spec": {
                    "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                    "selector": {"app": "svc1"},
                    "type": "ClusterIP",
                },
            })
        );
    }

    #[test]
    fn kubectl_create_deployment_decodes_like_its_json() {
        let object = decode(&fixture("deployment")).unwrap();
        assert_eq!(
            object,
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "d1", "labels": {"app": "d1"}},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "d1"}},
                    "template": {
                        "metadata": {"labels": {"app": "d1"}},
                        "spec": {"containers": [{"name": "nginx", "image": "nginx"}]},
                    },
                },
            })
        );
    }

    #[test]
    fn kubectl_create_job_decodes_like_its_json() {
        let object = decode(&fixture("job")).unwrap();
        assert_eq!(
            object,
            json!({
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": "j1"},
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [{"name": "j1", "image": "busybox"}],
                            "restartPolicy": "Never",
                        },
                    },
                },
            })
        );
    }

    #[test]
    fn kubectl_autoscale_with_cpu_utilization_decodes_like_its_json() {
        // `kubectl autoscale deploy x --min=1 --max=4 --cpu=50%`; the deprecated
        // `--cpu-percent=50` sends the same bytes.
        let object = decode(&fixture("hpa")).unwrap();
        assert_eq!(
            object,
            json!({
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "x"},
                "spec": {
                    "scaleTargetRef": {"kind": "Deployment", "name": "x", "apiVersion": "apps/v1"},
                    "minReplicas": 1,
                    "maxReplicas": 4,
                    "metrics": [{
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 50},
                        },
                    }],
                },
            })
        );
        let resource =
            crate::resources::find("autoscaling", "v2", "horizontalpodautoscalers").unwrap();
        assert_eq!(crate::admission::validate(resource, &object), []);
    }

    #[test]
    fn kubectl_autoscale_with_a_cpu_quantity_and_memory_decodes_both_metrics() {
        // `kubectl autoscale deploy x --min=0 --max=4 --cpu=500m --memory=60%`: kubectl leaves
        // out a zero minReplicas, so the server's default (1) applies, as with JSON.
        let object = decode(&fixture("hpa_cpu-value_memory")).unwrap();
        assert_eq!(
            object["spec"],
            json!({
                "scaleTargetRef": {"kind": "Deployment", "name": "x", "apiVersion": "apps/v1"},
                "maxReplicas": 4,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "AverageValue", "averageValue": "500m"},
                        },
                    },
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "memory",
                            "target": {"type": "Utilization", "averageUtilization": 60},
                        },
                    },
                ],
            })
        );
    }

    #[test]
    fn kinds_without_a_schema_are_unsupported_not_malformed() {
        let error = decode(&fixture("ingress")).unwrap_err();
        assert!(
            matches!(&error, DecodeError::UnsupportedKind(m) if m.contains("Ingress (networking.k8s.io/v1)")),
            "{error:?}"
        );
    }

    #[test]
    fn truncated_and_unprefixed_bodies_are_malformed() {
        let body = fixture("secret_generic");
        let error = decode(&body[..body.len() - 3]).unwrap_err();
        assert!(matches!(error, DecodeError::Malformed(_)), "{error:?}");
        let error = decode(br#"{"kind":"Secret"}"#).unwrap_err();
        assert!(
            matches!(&error, DecodeError::Malformed(m) if m.contains("magic")),
            "{error:?}"
        );
    }

    #[test]
    fn zero_replicas_is_kept_because_the_field_is_a_pointer() {
        // Deployment {2 spec {1 replicas: 0}} inside runtime.Unknown.
        let raw = [0x12, 0x02, 0x08, 0x00];
        let mut body = b"k8s\0".to_vec();
        let type_meta = b"\x0a\x07apps/v1\x12\x0aDeployment";
        body.push(0x0a);
        body.push(type_meta.len() as u8);
        body.extend_from_slice(type_meta);
        body.push(0x12);
        body.push(raw.len() as u8);
        body.extend_from_slice(&raw);
        let object = decode(&body).unwrap();
        assert_eq!(object["spec"], json!({"replicas": 0}));
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
