//! Admission: Kubernetes' defaults and validation, applied to every object before it is stored.
//!
//! Defaults are the ones users see in `kubectl get -o yaml` of a real cluster (restartPolicy,
//! terminationGracePeriodSeconds, Deployment strategy, ...). Validation returns every problem
//! at once, each naming its field, so a 422 tells the user all that is wrong.

use serde_json::{Map, Value, json};
use wharf_apimachinery::{labels, validation};

use crate::error::Cause;
use crate::resources::Resource;

/// Fills in the defaults Kubernetes applies to `object` of `resource`.
pub fn apply_defaults(resource: &Resource, object: &mut Value) {
    match resource.kind {
        "Pod" => {
            if let Some(spec) = object.get_mut("spec") {
                default_pod_spec(spec);
            }
            // A new pod is Pending with its QoS class until its node reports on it.
            if object["status"]["phase"].is_null() {
                let qos = qos_class(&object["spec"]);
                let status = ensure_object(object, "status");
                status["phase"] = json!("Pending");
                status["qosClass"] = json!(qos);
            }
        }
        "Deployment" => {
            let spec = ensure_object(object, "spec");
            default_field(spec, "replicas", json!(1));
            default_field(spec, "revisionHistoryLimit", json!(10));
            default_field(spec, "progressDeadlineSeconds", json!(600));
            let strategy = ensure_object(spec, "strategy");
            default_field(strategy, "type", json!("RollingUpdate"));
            if strategy["type"] == "RollingUpdate" {
                let rolling = ensure_object(strategy, "rollingUpdate");
                default_field(rolling, "maxSurge", json!("25%"));
                default_field(rolling, "maxUnavailable", json!("25%"));
            }
            default_template(spec);
        }
        "ReplicaSet" => {
            let spec = ensure_object(object, "spec");
            default_field(spec, "replicas", json!(1));
            default_template(spec);
        }
        "Job" => {
            let spec = ensure_object(object, "spec");
            default_field(spec, "parallelism", json!(1));
            default_field(spec, "completions", json!(1));
            default_field(spec, "backoffLimit", json!(6));
            default_field(spec, "completionMode", json!("NonIndexed"));
            default_field(spec, "suspend", json!(false));
            default_template(spec);
        }
        "Service" => {
            let spec = ensure_object(object, "spec");
            default_field(spec, "type", json!("ClusterIP"));
            default_field(spec, "sessionAffinity", json!("None"));
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for port in ports {
                    default_field(port, "protocol", json!("TCP"));
                    if port.get("targetPort").is_none()
                        && let Some(number) = port.get("port").cloned()
                    {
                        port["targetPort"] = number;
                    }
                }
            }
        }
        "HorizontalPodAutoscaler" => {
            let spec = ensure_object(object, "spec");
            default_field(spec, "minReplicas", json!(1));
            if spec["metrics"].as_array().is_none_or(Vec::is_empty) {
                spec["metrics"] = json!([{"type": "Resource", "resource": {
                    "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80},
                }}]);
            }
            // As in Kubernetes, a behavior that is given gets both directions filled in; the
            // scale-down window is left to the controller.
            if spec.get("behavior").is_some_and(Value::is_object) {
                let behavior = &mut spec["behavior"];
                let up = ensure_object(behavior, "scaleUp");
                default_field(up, "stabilizationWindowSeconds", json!(0));
                default_field(up, "selectPolicy", json!("Max"));
                default_field(
                    up,
                    "policies",
                    json!([
                        {"type": "Pods", "value": 4, "periodSeconds": 15},
                        {"type": "Percent", "value": 100, "periodSeconds": 15},
                    ]),
                );
                let down = ensure_object(behavior, "scaleDown");
                default_field(down, "selectPolicy", json!("Max"));
                default_field(
                    down,
                    "policies",
                    json!([{"type": "Percent", "value": 100, "periodSeconds": 15}]),
                );
            }
        }
        "Secret" => default_field(object, "type", json!("Opaque")),
        "Namespace" => {
            let spec = ensure_object(object, "spec");
            default_field(spec, "finalizers", json!(["kubernetes"]));
            let status = ensure_object(object, "status");
            default_field(status, "phase", json!("Active"));
        }
        _ => {}
    }
}

fn ensure_object<'a>(parent: &'a mut Value, field: &str) -> &'a mut Value {
    if !parent.get(field).is_some_and(Value::is_object) {
        parent[field] = json!({});
    }
    &mut parent[field]
}

fn default_field(object: &mut Value, field: &str, value: Value) {
    if object.get(field).is_none_or(Value::is_null) {
        object[field] = value;
    }
}

fn default_template(spec: &mut Value) {
    if let Some(pod_spec) = spec.get_mut("template").and_then(|t| t.get_mut("spec")) {
        default_pod_spec(pod_spec);
    }
}

/// A pod's QoS class as Kubernetes computes it: `Guaranteed` when every container has cpu
/// and memory limits equal to its requests (requests default to limits), `BestEffort` when no
/// container has any request or limit, else `Burstable`.
pub fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .filter_map(|field| spec[*field].as_array())
        .flatten()
        .collect();
    let resources = |c: &Value, kind: &str, name: &str| -> Option<String> {
        c["resources"][kind][name]
            .as_str()
            .map(str::to_owned)
            .or_else(|| c["resources"][kind][name].as_i64().map(|n| n.to_string()))
    };
    let any = containers.iter().any(|c| {
        ["requests", "limits"].iter().any(|kind| {
            c["resources"][*kind]
                .as_object()
                .is_some_and(|m| m.contains_key("cpu") || m.contains_key("memory"))
        })
    });
    if !any {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        ["cpu", "memory"].iter().all(|name| {
            let limit = resources(c, "limits", name);
            let request = resources(c, "requests", name).or_else(|| limit.clone());
            limit.is_some() && request == limit
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn default_pod_spec(spec: &mut Value) {
    default_field(spec, "restartPolicy", json!("Always"));
    default_field(spec, "terminationGracePeriodSeconds", json!(30));
    default_field(spec, "dnsPolicy", json!("ClusterFirst"));
    default_field(spec, "schedulerName", json!("default-scheduler"));
    for list in ["containers", "initContainers"] {
        if let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for container in containers {
                let image = container["image"].as_str().unwrap_or("");
                let pull = if image_tag_is_latest(image) {
                    "Always"
                } else {
                    "IfNotPresent"
                };
                default_field(container, "imagePullPolicy", json!(pull));
                default_field(
                    container,
                    "terminationMessagePath",
                    json!("/dev/termination-log"),
                );
                default_field(container, "terminationMessagePolicy", json!("File"));
                if let Some(ports) = container.get_mut("ports").and_then(Value::as_array_mut) {
                    for port in ports {
                        default_field(port, "protocol", json!("TCP"));
                    }
                }
            }
        }
    }
}

/// Whether an image reference has no tag or the `latest` tag (and no digest).
fn image_tag_is_latest(image: &str) -> bool {
    if image.contains('@') {
        return false;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        None => true,
        Some((_, tag)) => tag == "latest",
    }
}

/// Validates `object` of `resource`; an empty result means valid.
pub fn validate(resource: &Resource, object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    validate_metadata(resource, object, &mut causes);
    match resource.kind {
        "Pod" => match object.get("spec") {
            Some(spec) => validate_pod_spec(spec, "spec", &mut causes),
            None => causes.push(Cause::required("spec", "")),
        },
        "Deployment" | "ReplicaSet" => validate_workload(object, true, &mut causes),
        "Job" => validate_job(object, &mut causes),
        "Service" => validate_service(object, &mut causes),
        "HorizontalPodAutoscaler" => validate_horizontal_pod_autoscaler(object, &mut causes),
        "PodDisruptionBudget" => validate_pod_disruption_budget(object, &mut causes),
        "ConfigMap" | "Secret" => {
            for field in ["data", "binaryData", "stringData"] {
                if let Some(map) = object.get(field).and_then(Value::as_object) {
                    for key in map.keys() {
                        if let Err(message) = config_key(key) {
                            causes.push(Cause::invalid(&format!("{field}[{key}]"), key, &message));
                        }
                    }
                }
            }
        }
        _ => {}
    }
    causes
}

fn validate_metadata(resource: &Resource, object: &Value, causes: &mut Vec<Cause>) {
    let metadata = object.get("metadata").cloned().unwrap_or(json!({}));
    let name = metadata["name"].as_str().unwrap_or("");
    if name.is_empty() {
        causes.push(Cause::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        let check = match resource.kind {
            "Namespace" | "Service" => validation::dns1123_label(name),
            _ => validation::dns1123_subdomain(name),
        };
        if let Err(message) = check {
            causes.push(Cause::invalid("metadata.name", name, &message));
        }
    }
    if resource.namespaced
        && let Some(namespace) = metadata["namespace"].as_str()
        && let Err(message) = validation::dns1123_label(namespace)
    {
        causes.push(Cause::invalid("metadata.namespace", namespace, &message));
    }
    validate_labels(&metadata["labels"], "metadata.labels", causes);
    if let Some(annotations) = metadata["annotations"].as_object() {
        let mut total = 0;
        for (key, value) in annotations {
            total += key.len() + value.as_str().map_or(0, str::len);
            if let Err(message) = validation::qualified_name(key) {
                causes.push(Cause::invalid("metadata.annotations", key, &message));
            }
        }
        if total > 256 * 1024 {
            causes.push(Cause {
                reason: "FieldValueTooLong",
                field: "metadata.annotations".into(),
                message: "Too long: must have at most 262144 bytes".into(),
            });
        }
    }
}

fn validate_labels(labels: &Value, field: &str, causes: &mut Vec<Cause>) {
    let Some(labels) = labels.as_object() else {
        return;
    };
    for (key, value) in labels {
        if let Err(message) = validation::label_key(key) {
            causes.push(Cause::invalid(field, key, &message));
        }
        let value = value.as_str().unwrap_or("");
        if let Err(message) = validation::label_value(value) {
            causes.push(Cause::invalid(field, value, &message));
        }
    }
}

fn validate_pod_spec(spec: &Value, field: &str, causes: &mut Vec<Cause>) {
    let containers = spec["containers"].as_array().cloned().unwrap_or_default();
    if containers.is_empty() {
        causes.push(Cause::required(&format!("{field}.containers"), ""));
    }
    let mut names = Vec::new();
    for (i, container) in containers.iter().enumerate() {
        let at = format!("{field}.containers[{i}]");
        let name = container["name"].as_str().unwrap_or("");
        if name.is_empty() {
            causes.push(Cause::required(&format!("{at}.name"), ""));
        } else if let Err(message) = validation::dns1123_label(name) {
            causes.push(Cause::invalid(&format!("{at}.name"), name, &message));
        } else if names.contains(&name) {
            causes.push(Cause {
                reason: "FieldValueDuplicate",
                field: format!("{at}.name"),
                message: format!("Duplicate value: {name:?}"),
            });
        }
        names.push(name);
        if container["image"].as_str().unwrap_or("").trim().is_empty() {
            causes.push(Cause::required(&format!("{at}.image"), ""));
        }
        if spec["runtimeClassName"] == "wasmtime" {
            for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                for action in ["exec", "tcpSocket"] {
                    if container[probe].get(action).is_some() {
                        causes.push(Cause {
                            reason: "FieldValueNotSupported",
                            field: format!("{at}.{probe}.{action}"),
                            message: format!(
                                "Unsupported value: {action:?}: a Wasm workload (runtimeClassName wasmtime) has no second program to run and no socket to connect to; use httpGet, which the agent sends to the function in process"
                            ),
                        });
                    }
                }
            }
        }
        if let Some(ports) = container["ports"].as_array() {
            for (j, port) in ports.iter().enumerate() {
                let number = port["containerPort"].as_i64().unwrap_or(0);
                if !(1..=65535).contains(&number) {
                    causes.push(Cause::invalid(
                        &format!("{at}.ports[{j}].containerPort"),
                        &number.to_string(),
                        "must be between 1 and 65535, inclusive",
                    ));
                }
            }
        }
    }
    if let Some(policy) = spec["restartPolicy"].as_str()
        && !["Always", "OnFailure", "Never"].contains(&policy)
    {
        causes.push(Cause {
            reason: "FieldValueNotSupported",
            field: format!("{field}.restartPolicy"),
            message: format!(
                "Unsupported value: {policy:?}: supported values: \"Always\", \"OnFailure\", \"Never\""
            ),
        });
    }
}

fn validate_workload(object: &Value, needs_selector: bool, causes: &mut Vec<Cause>) {
    let spec = &object["spec"];
    if let Some(replicas) = spec["replicas"].as_i64()
        && replicas < 0
    {
        causes.push(Cause::invalid(
            "spec.replicas",
            &replicas.to_string(),
            "must be greater than or equal to 0",
        ));
    }
    let selector = &spec["selector"];
    let template_labels = spec["template"]["metadata"]["labels"].as_object();
    if needs_selector {
        match selector {
            Value::Object(map) if !map.is_empty() => {
                match labels::from_label_selector_object(selector) {
                    Ok(parsed) => {
                        if parsed.is_empty() {
                            causes.push(Cause::invalid(
                                "spec.selector",
                                "{}",
                                "empty selector is invalid for deployment",
                            ));
                        } else if !parsed.matches(template_labels) {
                            causes.push(Cause::invalid(
                                "spec.template.metadata.labels",
                                &label_text(template_labels),
                                "`selector` does not match template `labels`",
                            ));
                        }
                    }
                    Err(e) => causes.push(Cause::invalid("spec.selector", "", &e.to_string())),
                }
            }
            _ => causes.push(Cause::required("spec.selector", "")),
        }
    }
    validate_labels(
        &spec["template"]["metadata"]["labels"],
        "spec.template.metadata.labels",
        causes,
    );
    match spec["template"].get("spec") {
        Some(pod_spec) => validate_pod_spec(pod_spec, "spec.template.spec", causes),
        None => causes.push(Cause::required("spec.template.spec", "")),
    }
}

fn label_text(labels: Option<&Map<String, Value>>) -> String {
    labels
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn validate_job(object: &Value, causes: &mut Vec<Cause>) {
    validate_workload(object, false, causes);
    let policy = object["spec"]["template"]["spec"]["restartPolicy"]
        .as_str()
        .unwrap_or("");
    if policy != "Never" && policy != "OnFailure" {
        causes.push(Cause {
            reason: "FieldValueNotSupported",
            field: "spec.template.spec.restartPolicy".into(),
            message: format!(
                "Unsupported value: {policy:?}: supported values: \"OnFailure\", \"Never\""
            ),
        });
    }
}

fn validate_service(object: &Value, causes: &mut Vec<Cause>) {
    let spec = &object["spec"];
    let kind = spec["type"].as_str().unwrap_or("ClusterIP");
    if !["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"].contains(&kind) {
        causes.push(Cause {
            reason: "FieldValueNotSupported",
            field: "spec.type".into(),
            message: format!("Unsupported value: {kind:?}"),
        });
    }
    for (i, port) in spec["ports"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let number = port["port"].as_i64().unwrap_or(0);
        if !(1..=65535).contains(&number) {
            causes.push(Cause::invalid(
                &format!("spec.ports[{i}].port"),
                &number.to_string(),
                "must be between 1 and 65535, inclusive",
            ));
        }
        if let Some(node_port) = port["nodePort"].as_i64()
            && !(1..=65535).contains(&node_port)
        {
            causes.push(Cause::invalid(
                &format!("spec.ports[{i}].nodePort"),
                &node_port.to_string(),
                "must be between 1 and 65535, inclusive",
            ));
        }
    }
}

/// Kubernetes' HPA validation (autoscaling/v2), except that `minReplicas: 0` is allowed: Wharf
/// scales idle workloads to zero (Kubernetes allows it only behind the `HPAScaleToZero`
/// feature gate).
/// A PodDisruptionBudget: at most one of minAvailable and maxUnavailable, each a
/// non-negative number or a percentage of at most 100%, as Kubernetes validates them.
fn validate_pod_disruption_budget(object: &Value, causes: &mut Vec<Cause>) {
    let spec = &object["spec"];
    if !spec["minAvailable"].is_null() && !spec["maxUnavailable"].is_null() {
        causes.push(Cause::invalid(
            "spec",
            "",
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    for field in ["minAvailable", "maxUnavailable"] {
        let value = &spec[field];
        let valid = match value {
            Value::Null => true,
            Value::Number(n) => n.as_i64().is_some_and(|n| n >= 0),
            Value::String(text) => text
                .strip_suffix('%')
                .and_then(|p| p.parse::<u32>().ok())
                .is_some_and(|p| p <= 100),
            _ => false,
        };
        if !valid {
            let shown = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            causes.push(Cause::invalid(
                &format!("spec.{field}"),
                &shown,
                "must be a non-negative integer or a percentage between 0% and 100%",
            ));
        }
    }
    match spec["unhealthyPodEvictionPolicy"].as_str() {
        None | Some("IfHealthyBudget" | "AlwaysAllow") => {}
        Some(other) => causes.push(Cause {
            reason: "FieldValueNotSupported",
            field: "spec.unhealthyPodEvictionPolicy".into(),
            message: format!(
                "Unsupported value: {other:?}: supported values: \"AlwaysAllow\", \"IfHealthyBudget\""
            ),
        }),
    }
}

fn validate_horizontal_pod_autoscaler(object: &Value, causes: &mut Vec<Cause>) {
    let spec = &object["spec"];
    for member in ["kind", "name"] {
        if spec["scaleTargetRef"][member]
            .as_str()
            .unwrap_or("")
            .is_empty()
        {
            causes.push(Cause::required(
                &format!("spec.scaleTargetRef.{member}"),
                "",
            ));
        }
    }
    let min = spec["minReplicas"].as_i64();
    if let Some(min) = min
        && min < 0
    {
        causes.push(Cause::invalid(
            "spec.minReplicas",
            &min.to_string(),
            "must be greater than or equal to 0",
        ));
    }
    match spec["maxReplicas"].as_i64() {
        None => causes.push(Cause::required("spec.maxReplicas", "")),
        Some(max) if max < 1 => causes.push(Cause::invalid(
            "spec.maxReplicas",
            &max.to_string(),
            "must be greater than 0",
        )),
        Some(max) if min.unwrap_or(1) > max => causes.push(Cause::invalid(
            "spec.maxReplicas",
            &max.to_string(),
            "must be greater than or equal to `minReplicas`",
        )),
        Some(_) => {}
    }
    let metrics = spec["metrics"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (i, metric) in metrics.iter().enumerate() {
        validate_metric_spec(metric, &format!("spec.metrics[{i}]"), causes);
    }
    for direction in ["scaleUp", "scaleDown"] {
        let rules = &spec["behavior"][direction];
        if rules.is_object() {
            validate_scaling_rules(rules, &format!("spec.behavior.{direction}"), causes);
        }
    }
}

/// One entry of an HPA's `spec.metrics`: the member its type names, and only that one.
fn validate_metric_spec(metric: &Value, at: &str, causes: &mut Vec<Cause>) {
    const SOURCES: [(&str, &str); 5] = [
        ("Object", "object"),
        ("Pods", "pods"),
        ("Resource", "resource"),
        ("ContainerResource", "containerResource"),
        ("External", "external"),
    ];
    let kind = metric["type"].as_str().unwrap_or("");
    let populated: Vec<&str> = SOURCES
        .iter()
        .map(|(_, member)| *member)
        .filter(|member| metric[*member].is_object())
        .collect();
    let Some((_, member)) = SOURCES.iter().find(|(name, _)| *name == kind) else {
        if kind.is_empty() {
            causes.push(Cause::required(
                &format!("{at}.type"),
                "must specify a metric source type",
            ));
        } else {
            causes.push(Cause {
                reason: "FieldValueNotSupported",
                field: format!("{at}.type"),
                message: format!(
                    "Unsupported value: {kind:?}: supported values: \"ContainerResource\", \"External\", \"Object\", \"Pods\", \"Resource\""
                ),
            });
        }
        return;
    };
    if populated.iter().any(|m| m != member) {
        causes.push(Cause {
            reason: "FieldValueForbidden",
            field: at.to_owned(),
            message: "Forbidden: must populate the given metric source only".into(),
        });
    }
    let source = &metric[*member];
    let at = format!("{at}.{member}");
    if !source.is_object() {
        causes.push(Cause::required(
            &at,
            "must populate information for the given metric source",
        ));
        return;
    }
    match *member {
        "resource" | "containerResource" => {
            if source["name"].as_str().unwrap_or("").is_empty() {
                causes.push(Cause::required(
                    &format!("{at}.name"),
                    "must specify a resource name",
                ));
            }
            if *member == "containerResource"
                && source["container"].as_str().unwrap_or("").is_empty()
            {
                causes.push(Cause::required(
                    &format!("{at}.container"),
                    "must specify a container",
                ));
            }
            let target = &source["target"];
            validate_metric_target(target, &format!("{at}.target"), causes);
            let utilization = target
                .get("averageUtilization")
                .is_some_and(|v| !v.is_null());
            let average = target.get("averageValue").is_some_and(|v| !v.is_null());
            if target.is_object() && utilization == average {
                causes.push(if utilization {
                    Cause {
                        reason: "FieldValueForbidden",
                        field: format!("{at}.target.averageValue"),
                        message: "Forbidden: may not set both a target raw value and a target utilization".into(),
                    }
                } else {
                    Cause::required(
                        &format!("{at}.target.averageUtilization"),
                        "must set either a target raw value or a target utilization",
                    )
                });
            }
        }
        "pods" | "object" | "external" => {
            if source["metric"]["name"].as_str().unwrap_or("").is_empty() {
                causes.push(Cause::required(
                    &format!("{at}.metric.name"),
                    "must specify a metric name",
                ));
            }
            let target = &source["target"];
            validate_metric_target(target, &format!("{at}.target"), causes);
            if *member == "pods" && target.is_object() && target["averageValue"].is_null() {
                causes.push(Cause::required(
                    &format!("{at}.target.averageValue"),
                    "must specify a positive target averageValue",
                ));
            }
        }
        _ => {}
    }
}

/// A `MetricTarget`: a type of Utilization, Value or AverageValue and positive values.
fn validate_metric_target(target: &Value, at: &str, causes: &mut Vec<Cause>) {
    if !target.is_object() {
        causes.push(Cause::required(at, "must specify a metric target"));
        return;
    }
    match target["type"].as_str().unwrap_or("") {
        "" => causes.push(Cause::required(
            &format!("{at}.type"),
            "must specify a metric target type",
        )),
        "Utilization" | "Value" | "AverageValue" => {}
        other => causes.push(Cause::invalid(
            &format!("{at}.type"),
            other,
            "must be either Utilization, Value, or AverageValue",
        )),
    }
    for member in ["value", "averageValue"] {
        let quantity = &target[member];
        if quantity.is_null() {
            continue;
        }
        let text = quantity
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| quantity.to_string());
        if !quantity_is_positive(&text) {
            causes.push(Cause::invalid(
                &format!("{at}.{member}"),
                &text,
                "must be positive",
            ));
        }
    }
    if let Some(utilization) = target["averageUtilization"].as_i64()
        && utilization < 1
    {
        causes.push(Cause::invalid(
            &format!("{at}.averageUtilization"),
            &utilization.to_string(),
            "must be greater than 0",
        ));
    }
}

/// Whether a quantity (`500m`, `1.5`, `128Mi`, `2e3`) is well-formed and above zero.
fn quantity_is_positive(text: &str) -> bool {
    let text = text.trim();
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_end);
    let known_suffix = matches!(
        suffix,
        "" | "n"
            | "u"
            | "m"
            | "k"
            | "M"
            | "G"
            | "T"
            | "P"
            | "E"
            | "Ki"
            | "Mi"
            | "Gi"
            | "Ti"
            | "Pi"
            | "Ei"
    ) || suffix
        .strip_prefix(['e', 'E'])
        .is_some_and(|e| e.parse::<i32>().is_ok());
    known_suffix
        && number
            .trim_start_matches('+')
            .parse::<f64>()
            .is_ok_and(|n| n > 0.0)
}

/// An HPA's `behavior.scaleUp` or `behavior.scaleDown`.
fn validate_scaling_rules(rules: &Value, at: &str, causes: &mut Vec<Cause>) {
    if let Some(policy) = rules["selectPolicy"].as_str()
        && !["Max", "Min", "Disabled"].contains(&policy)
    {
        causes.push(Cause {
            reason: "FieldValueNotSupported",
            field: format!("{at}.selectPolicy"),
            message: format!(
                "Unsupported value: {policy:?}: supported values: \"Disabled\", \"Max\", \"Min\""
            ),
        });
    }
    if let Some(window) = rules["stabilizationWindowSeconds"].as_i64()
        && !(0..=3600).contains(&window)
    {
        causes.push(Cause::invalid(
            &format!("{at}.stabilizationWindowSeconds"),
            &window.to_string(),
            "must be between 0 and 3600 seconds, inclusive",
        ));
    }
    let policies = rules["policies"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (i, policy) in policies.iter().enumerate() {
        let at = format!("{at}.policies[{i}]");
        let kind = policy["type"].as_str().unwrap_or("");
        if kind != "Pods" && kind != "Percent" {
            causes.push(Cause {
                reason: "FieldValueNotSupported",
                field: format!("{at}.type"),
                message: format!(
                    "Unsupported value: {kind:?}: supported values: \"Percent\", \"Pods\""
                ),
            });
        }
        let value = policy["value"].as_i64().unwrap_or(0);
        if value < 1 {
            causes.push(Cause::invalid(
                &format!("{at}.value"),
                &value.to_string(),
                "must be greater than zero",
            ));
        }
        let period = policy["periodSeconds"].as_i64().unwrap_or(0);
        if !(1..=1800).contains(&period) {
            causes.push(Cause::invalid(
                &format!("{at}.periodSeconds"),
                &period.to_string(),
                "must be greater than zero and less than or equal to 1800",
            ));
        }
    }
}

/// ConfigMap and Secret keys: `[-._a-zA-Z0-9]+`, at most 253 characters, not `.` or `..`.
fn config_key(key: &str) -> Result<(), String> {
    let valid = !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if valid {
        Ok(())
    } else {
        Err("a valid config key must consist of alphanumeric characters, '-', '_' or '.'".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_classes_follow_requests_and_limits_like_kubernetes() {
        let pod = |resources: Value| json!({"containers": [{"name": "a", "resources": resources}]});
        assert_eq!(qos_class(&pod(json!({}))), "BestEffort");
        assert_eq!(
            qos_class(&pod(json!({"requests": {"cpu": "100m"}}))),
            "Burstable"
        );
        assert_eq!(
            qos_class(&pod(json!({"limits": {"cpu": "1", "memory": "64Mi"}}))),
            "Guaranteed",
            "requests default to limits"
        );
        assert_eq!(
            qos_class(&pod(json!({"limits": {"cpu": "1", "memory": "64Mi"},
                                  "requests": {"cpu": "500m", "memory": "64Mi"}}))),
            "Burstable"
        );
        let mut created =
            json!({"kind": "Pod", "spec": {"containers": [{"name": "a", "image": "x"}]}});
        apply_defaults(
            crate::resources::find("", "v1", "pods").unwrap(),
            &mut created,
        );
        assert_eq!(
            created["status"],
            json!({"phase": "Pending", "qosClass": "BestEffort"})
        );
    }
    use crate::resources::find;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"containers": [{"name": "c", "image": "img:1"}]}}
            }
        })
    }

    #[test]
    fn deployments_get_kubernetes_defaults() {
        let resource = find("apps", "v1", "deployments").unwrap();
        let mut object = deployment();
        apply_defaults(resource, &mut object);
        assert_eq!(object["spec"]["replicas"], 1);
        assert_eq!(
            object["spec"]["strategy"]["rollingUpdate"]["maxSurge"],
            "25%"
        );
        let pod = &object["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Always");
        assert_eq!(pod["terminationGracePeriodSeconds"], 30);
        assert_eq!(pod["containers"][0]["imagePullPolicy"], "IfNotPresent");
        assert!(validate(resource, &object).is_empty());
    }

    #[test]
    fn a_selector_that_does_not_match_the_template_is_invalid() {
        let resource = find("apps", "v1", "deployments").unwrap();
        let mut object = deployment();
        object["spec"]["selector"]["matchLabels"]["app"] = json!("other");
        let causes = validate(resource, &object);
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert_eq!(causes[0].field, "spec.template.metadata.labels");
    }

    #[test]
    fn invalid_names_and_label_values_are_reported_by_field() {
        let resource = find("", "v1", "configmaps").unwrap();
        let object = json!({
            "metadata": {"name": "Bad_Name", "labels": {"ok": "not ok!"}},
            "data": {"bad key": "x"}
        });
        let fields: Vec<_> = validate(resource, &object)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(
            fields,
            ["metadata.name", "metadata.labels", "data[bad key]"]
        );
    }

    #[test]
    fn pods_need_containers_with_names_and_images() {
        let resource = find("", "v1", "pods").unwrap();
        let object = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}, {"name": "c", "image": "x"}]}});
        let fields: Vec<_> = validate(resource, &object)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(
            fields,
            ["spec.containers[0].image", "spec.containers[1].name"]
        );
    }

    fn horizontal_pod_autoscaler() -> Value {
        json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 0,
                "maxReplicas": 5,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
                    {"type": "Pods", "pods": {"metric": {"name": "http_requests_per_second"}, "target": {"type": "AverageValue", "averageValue": "10"}}},
                ],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60, "policies": [{"type": "Percent", "value": 50, "periodSeconds": 30}]}},
            },
        })
    }

    fn fields_of(causes: Vec<Cause>) -> Vec<String> {
        causes.into_iter().map(|c| c.field).collect()
    }

    #[test]
    fn autoscalers_with_min_replicas_zero_are_valid() {
        let resource = find("autoscaling", "v2", "horizontalpodautoscalers").unwrap();
        assert!(validate(resource, &horizontal_pod_autoscaler()).is_empty());
    }

    #[test]
    fn autoscalers_get_kubernetes_defaults_and_keep_min_replicas_zero() {
        let resource = find("autoscaling", "v2", "horizontalpodautoscalers").unwrap();
        let mut object = json!({
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 3,
                     "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}},
        });
        apply_defaults(resource, &mut object);
        let spec = &object["spec"];
        assert_eq!(spec["minReplicas"], 1);
        assert_eq!(
            spec["metrics"][0]["resource"],
            json!({"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}})
        );
        assert_eq!(spec["behavior"]["scaleUp"]["policies"][0]["type"], "Pods");
        assert_eq!(
            spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
            60
        );
        assert_eq!(spec["behavior"]["scaleDown"]["selectPolicy"], "Max");
        assert!(validate(resource, &object).is_empty());
        let mut zero = horizontal_pod_autoscaler();
        zero.as_object_mut().unwrap()["spec"]
            .as_object_mut()
            .unwrap()
            .remove("behavior");
        apply_defaults(resource, &mut zero);
        assert_eq!(zero["spec"]["minReplicas"], 0);
        assert!(zero["spec"].get("behavior").is_none());
    }

    #[test]
    fn autoscalers_need_a_target_and_max_replicas_at_least_min_replicas() {
        let resource = find("autoscaling", "v2", "horizontalpodautoscalers").unwrap();
        let mut object = horizontal_pod_autoscaler();
        object["spec"]["scaleTargetRef"] = json!({"apiVersion": "apps/v1"});
        object["spec"]["minReplicas"] = json!(6);
        assert_eq!(
            fields_of(validate(resource, &object)),
            [
                "spec.scaleTargetRef.kind",
                "spec.scaleTargetRef.name",
                "spec.maxReplicas"
            ]
        );
        object["spec"]["maxReplicas"] = json!(0);
        object["spec"]["minReplicas"] = json!(-1);
        let causes = validate(resource, &object);
        assert!(
            causes
                .iter()
                .any(|c| c.field == "spec.maxReplicas" && c.message.contains("greater than 0")),
            "{causes:?}"
        );
        assert!(
            causes.iter().any(|c| c.field == "spec.minReplicas"),
            "{causes:?}"
        );
    }

    #[test]
    fn autoscaler_metrics_need_the_member_their_type_names_and_a_valid_target() {
        let resource = find("autoscaling", "v2", "horizontalpodautoscalers").unwrap();
        let mut object = horizontal_pod_autoscaler();
        object["spec"]["metrics"] = json!([
            {"type": "Resource", "pods": {"metric": {"name": "x"}, "target": {"type": "AverageValue", "averageValue": "1"}}},
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Percent", "averageUtilization": 0}}},
            {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue"}}},
            {"type": "Pods", "pods": {"metric": {}, "target": {"type": "AverageValue", "averageValue": "-1"}}},
            {"type": "Bogus"},
            {},
        ]);
        assert_eq!(
            fields_of(validate(resource, &object)),
            [
                "spec.metrics[0]",
                "spec.metrics[0].resource",
                "spec.metrics[1].resource.target.type",
                "spec.metrics[1].resource.target.averageUtilization",
                "spec.metrics[2].resource.target.averageUtilization",
                "spec.metrics[3].pods.metric.name",
                "spec.metrics[3].pods.target.averageValue",
                "spec.metrics[4].type",
                "spec.metrics[5].type",
            ]
        );
    }

    #[test]
    fn autoscaler_behavior_policies_are_validated() {
        let resource = find("autoscaling", "v2", "horizontalpodautoscalers").unwrap();
        let mut object = horizontal_pod_autoscaler();
        object["spec"]["behavior"] = json!({"scaleUp": {
            "selectPolicy": "Sometimes", "stabilizationWindowSeconds": 4000,
            "policies": [{"type": "Replicas", "value": 0, "periodSeconds": 0}],
        }});
        assert_eq!(
            fields_of(validate(resource, &object)),
            [
                "spec.behavior.scaleUp.selectPolicy",
                "spec.behavior.scaleUp.stabilizationWindowSeconds",
                "spec.behavior.scaleUp.policies[0].type",
                "spec.behavior.scaleUp.policies[0].value",
                "spec.behavior.scaleUp.policies[0].periodSeconds",
            ]
        );
    }

    #[test]
    fn latest_or_untagged_images_are_always_pulled() {
        assert!(image_tag_is_latest("nginx"));
        assert!(image_tag_is_latest("registry:5000/nginx:latest"));
        assert!(image_tag_is_latest("registry:5000/nginx"));
        assert!(!image_tag_is_latest("nginx:1.25"));
        assert!(!image_tag_is_latest("nginx@sha256:abc"));
    }

    #[test]
    fn exec_and_tcp_probes_are_refused_for_wasm_pods_and_kept_for_containers() {
        let deployments = find("apps", "v1", "deployments").unwrap();
        let mut wasm = deployment();
        wasm["spec"]["template"]["spec"]["runtimeClassName"] = json!("wasmtime");
        let container = &mut wasm["spec"]["template"]["spec"]["containers"][0];
        container["livenessProbe"] = json!({"exec": {"command": ["true"]}});
        container["readinessProbe"] = json!({"tcpSocket": {"port": 8080}});
        container["startupProbe"] = json!({"httpGet": {"path": "/", "port": 8080}});
        let causes = validate(deployments, &wasm);
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.template.spec.containers[0].livenessProbe.exec",
                "spec.template.spec.containers[0].readinessProbe.tcpSocket"
            ]
        );
        assert!(
            causes[0].message.contains("httpGet"),
            "{}",
            causes[0].message
        );
        let mut runc = wasm.clone();
        runc["spec"]["template"]["spec"]["runtimeClassName"] = json!("runc");
        assert!(validate(deployments, &runc).is_empty());
    }
}
