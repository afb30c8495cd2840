//! `meta.k8s.io/v1` Table output, which `kubectl get` asks for and prints as columns.
//!
//! Each kind has the columns a Kubernetes user knows from `kubectl get`; kinds without a
//! specific printer get NAME and AGE.

use serde_json::{Value, json};

use crate::resources::Resource;

struct Column {
    name: &'static str,
    kind: &'static str,
    priority: u8,
}

const fn col(name: &'static str, kind: &'static str, priority: u8) -> Column {
    Column {
        name,
        kind,
        priority,
    }
}

fn columns(kind: &str) -> Vec<Column> {
    let name = col("Name", "string", 0);
    let age = col("Age", "string", 0);
    match kind {
        "Pod" => vec![
            name,
            col("Ready", "string", 0),
            col("Status", "string", 0),
            col("Restarts", "string", 0),
            age,
            col("Runtime", "string", 0),
            col("IP", "string", 1),
            col("Node", "string", 1),
            col("Nominated Node", "string", 1),
            col("Readiness Gates", "string", 1),
        ],
        "Deployment" => vec![
            name,
            col("Ready", "string", 0),
            col("Up-to-date", "integer", 0),
            col("Available", "integer", 0),
            age,
            col("Containers", "string", 1),
            col("Images", "string", 1),
            col("Selector", "string", 1),
        ],
        "ReplicaSet" => vec![
            name,
            col("Desired", "integer", 0),
            col("Current", "integer", 0),
            col("Ready", "integer", 0),
            age,
            col("Containers", "string", 1),
            col("Images", "string", 1),
            col("Selector", "string", 1),
        ],
        "ConfigMap" => vec![name, col("Data", "integer", 0), age],
        "Secret" => vec![
            name,
            col("Type", "string", 0),
            col("Data", "integer", 0),
            age,
        ],
        "Namespace" => vec![name, col("Status", "string", 0), age],
        "Service" => vec![
            name,
            col("Type", "string", 0),
            col("Cluster-IP", "string", 0),
            col("External-IP", "string", 0),
            col("Port(s)", "string", 0),
            age,
            col("Selector", "string", 1),
        ],
        "RuntimeClass" => vec![name, col("Handler", "string", 0), age],
        "Endpoints" => vec![name, col("Endpoints", "string", 0), age],
        "EndpointSlice" => vec![
            name,
            col("AddressType", "string", 0),
            col("Ports", "string", 0),
            col("Endpoints", "string", 0),
            age,
        ],
        "Job" => vec![
            name,
            col("Status", "string", 0),
            col("Completions", "string", 0),
            col("Duration", "string", 0),
            age,
            col("Containers", "string", 1),
            col("Images", "string", 1),
            col("Selector", "string", 1),
        ],
        "Node" => vec![
            name,
            col("Status", "string", 0),
            col("Roles", "string", 0),
            age,
            col("Version", "string", 0),
            col("Internal-IP", "string", 1),
            col("External-IP", "string", 1),
            col("OS-Image", "string", 1),
            col("Kernel-Version", "string", 1),
            col("Container-Runtime", "string", 1),
        ],
        "PodDisruptionBudget" => vec![
            name,
            col("Min Available", "string", 0),
            col("Max Unavailable", "string", 0),
            col("Allowed Disruptions", "integer", 0),
            age,
        ],
        "HorizontalPodAutoscaler" => vec![
            name,
            col("Reference", "string", 0),
            col("Targets", "string", 0),
            col("MinPods", "string", 0),
            col("MaxPods", "integer", 0),
            col("Replicas", "integer", 0),
            age,
        ],
        "Event" => vec![
            col("Last Seen", "string", 0),
            col("Type", "string", 0),
            col("Reason", "string", 0),
            col("Object", "string", 0),
            col("Subobject", "string", 1),
            col("Source", "string", 1),
            col("Message", "string", 0),
            col("First Seen", "string", 1),
            col("Count", "string", 1),
            col("Name", "string", 1),
        ],
        _ => vec![name, age],
    }
}

/// A pod's STATUS cell as kubectl prints it: the reason of a waiting or terminated container
/// (`ContainerCreating`, `CrashLoopBackOff`, `OOMKilled`, `Completed`, ...) over the phase, and
/// `Terminating` once deleted.
fn pod_status(pod: &Value) -> String {
    let mut reason = pod
        .pointer("/status/reason")
        .and_then(Value::as_str)
        .or_else(|| pod.pointer("/status/phase").and_then(Value::as_str))
        .unwrap_or("Pending")
        .to_owned();
    let statuses = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut running = false;
    for status in statuses.iter().rev() {
        let state = &status["state"];
        if let Some(why) = state["waiting"]["reason"]
            .as_str()
            .filter(|r| !r.is_empty())
        {
            reason = why.to_owned();
        } else if state["terminated"].is_object() {
            let terminated = &state["terminated"];
            reason = match terminated["reason"].as_str().filter(|r| !r.is_empty()) {
                Some(why) => why.to_owned(),
                None => match terminated["signal"].as_i64().filter(|s| *s != 0) {
                    Some(signal) => format!("Signal:{signal}"),
                    None => format!("ExitCode:{}", terminated["exitCode"].as_i64().unwrap_or(0)),
                },
            };
        } else if state["running"].is_object() && status["ready"] == true {
            running = true;
        }
    }
    if reason == "Completed" && running {
        reason = "Running".into();
    }
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        reason = "Terminating".into();
    }
    reason
}

/// Which runtime runs a pod: its runtime class, else what its node reported (the scheme of a
/// container id), else `<pending>` until the node decides.
fn pod_runtime(pod: &Value) -> String {
    if let Some(class) = pod
        .pointer("/spec/runtimeClassName")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
    {
        return class.to_owned();
    }
    pod.pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find_map(|s| s["containerID"].as_str()?.split_once("://").map(|(r, _)| r))
        .unwrap_or("<pending>")
        .to_owned()
}

/// An HPA's TARGETS cell as kubectl prints it: `cpu: 75%/50%` per metric (`<unknown>` before
/// the first measurement), at most two, then `+ N more...`.
fn hpa_targets(object: &Value) -> String {
    let specs = object
        .pointer("/spec/metrics")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let statuses = object
        .pointer("/status/currentMetrics")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let entries: Vec<String> = specs
        .iter()
        .map(|spec| {
            let kind = spec["type"].as_str().unwrap_or("");
            let member = match kind {
                "Resource" => "resource",
                "ContainerResource" => "containerResource",
                "Pods" => "pods",
                "Object" => "object",
                "External" => "external",
                _ => "",
            };
            let body = &spec[member];
            let metric_name = |v: &Value| {
                v["name"]
                    .as_str()
                    .or_else(|| v.pointer("/metric/name").and_then(Value::as_str))
                    .map(str::to_owned)
            };
            let name = metric_name(body).unwrap_or_default();
            let status = statuses
                .iter()
                .find(|s| s["type"] == kind && metric_name(&s[member]).as_deref() == Some(&name));
            let target = &body["target"];
            let current = status.map(|s| &s[member]["current"]);
            let (current, target) = match target["averageUtilization"].as_i64() {
                Some(utilization) => (
                    current
                        .and_then(|c| c["averageUtilization"].as_i64())
                        .map(|u| format!("{u}%")),
                    format!("{utilization}%"),
                ),
                None => {
                    let field = if target["type"] == "Value" {
                        "value"
                    } else {
                        "averageValue"
                    };
                    (
                        current.and_then(|c| c[field].as_str()).map(str::to_owned),
                        target[field].as_str().unwrap_or("").to_owned(),
                    )
                }
            };
            format!(
                "{name}: {}/{target}",
                current.unwrap_or_else(|| "<unknown>".into())
            )
        })
        .collect();
    match entries.len() {
        0 => "<none>".into(),
        1 | 2 => entries.join(", "),
        n => format!("{} + {} more...", entries[..2].join(", "), n - 2),
    }
}

fn count(value: &Value) -> usize {
    value.as_object().map_or(0, |m| m.len())
}

fn cells(kind: &str, object: &Value, now: k8s_openapi::jiff::Timestamp) -> Vec<Value> {
    let name = json!(
        object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    );
    let age = json!(age_of(object, now));
    let int = |pointer: &str| object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0);
    let text = |pointer: &str| {
        object
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    match kind {
        "Node" => {
            let conditions = object
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let ready = conditions.iter().find(|c| c["type"] == "Ready");
            let mut status = match ready.and_then(|c| c["status"].as_str()) {
                Some("True") => "Ready".to_owned(),
                _ => "NotReady".to_owned(),
            };
            if object.pointer("/spec/unschedulable") == Some(&json!(true)) {
                status.push_str(",SchedulingDisabled");
            }
            let address = object
                .pointer("/status/addresses")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP"))
                .and_then(|a| a["address"].as_str())
                .unwrap_or("<none>")
                .to_owned();
            let external = object
                .pointer("/status/addresses")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find(|a| a["type"] == "ExternalIP"))
                .and_then(|a| a["address"].as_str())
                .unwrap_or("<none>")
                .to_owned();
            vec![
                name,
                json!(status),
                json!("<none>"),
                age,
                json!(text("/status/nodeInfo/kubeletVersion")),
                json!(address),
                json!(external),
                json!(or_unknown(text("/status/nodeInfo/osImage"))),
                json!(or_unknown(text("/status/nodeInfo/kernelVersion"))),
                json!(text("/status/nodeInfo/containerRuntimeVersion")),
            ]
        }
        "Pod" => {
            let statuses = object
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let total = object
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = statuses.iter().filter(|s| s["ready"] == true).count();
            let restarts: i64 = statuses
                .iter()
                .map(|s| s["restartCount"].as_i64().unwrap_or(0))
                .sum();
            let status = pod_status(object);
            let ip = text("/status/podIP");
            let node = text("/spec/nodeName");
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(status),
                json!(restarts.to_string()),
                age,
                json!(pod_runtime(object)),
                json!(if ip.is_empty() { "<none>".into() } else { ip }),
                json!(if node.is_empty() {
                    "<none>".into()
                } else {
                    node
                }),
                json!(none_if_empty(text("/status/nominatedNodeName"))),
                json!(readiness_gates(object)),
            ]
        }
        "Deployment" => vec![
            name,
            json!(format!(
                "{}/{}",
                int("/status/readyReplicas"),
                int("/spec/replicas")
            )),
            json!(int("/status/updatedReplicas")),
            json!(int("/status/availableReplicas")),
            age,
            json!(template_containers(object, "name")),
            json!(template_containers(object, "image")),
            json!(label_selector(object.pointer("/spec/selector"))),
        ],
        "ReplicaSet" => vec![
            name,
            json!(int("/spec/replicas")),
            json!(int("/status/replicas")),
            json!(int("/status/readyReplicas")),
            age,
            json!(template_containers(object, "name")),
            json!(template_containers(object, "image")),
            json!(label_selector(object.pointer("/spec/selector"))),
        ],
        "ConfigMap" => vec![
            name,
            json!(count(&object["data"]) + count(&object["binaryData"])),
            age,
        ],
        "Secret" => vec![
            name,
            json!(text("/type")),
            json!(count(&object["data"])),
            age,
        ],
        "Namespace" => vec![name, json!(text("/status/phase")), age],
        "Service" => {
            let ports: Vec<String> = object
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map(|ports| {
                    ports
                        .iter()
                        .map(|p| {
                            let protocol = p["protocol"].as_str().unwrap_or("TCP");
                            match p["nodePort"].as_i64() {
                                Some(node_port) => format!("{}:{node_port}/{protocol}", p["port"]),
                                None => format!("{}/{protocol}", p["port"]),
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            let cluster_ip = text("/spec/clusterIP");
            vec![
                name,
                json!(text("/spec/type")),
                json!(if cluster_ip.is_empty() {
                    "<none>".into()
                } else {
                    cluster_ip
                }),
                json!("<none>"),
                json!(if ports.is_empty() {
                    "<none>".into()
                } else {
                    ports.join(",")
                }),
                age,
                json!(labels_text(object.pointer("/spec/selector"))),
            ]
        }
        "RuntimeClass" => vec![name, json!(text("/handler")), age],
        "Endpoints" => {
            // `IP:PORT` for every address and port, as kubectl prints them.
            let mut entries = Vec::new();
            for subset in object["subsets"].as_array().into_iter().flatten() {
                let ips: Vec<&str> = subset["addresses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a["ip"].as_str())
                    .collect();
                match subset["ports"].as_array().filter(|p| !p.is_empty()) {
                    None => entries.extend(ips.iter().map(|ip| ip.to_string())),
                    Some(ports) => {
                        for port in ports {
                            entries.extend(ips.iter().map(|ip| format!("{ip}:{}", port["port"])));
                        }
                    }
                }
            }
            vec![name, json!(first_three(&entries, "<none>")), age]
        }
        "EndpointSlice" => {
            let ports: Vec<String> = object["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| match p["port"].as_i64() {
                    Some(port) => port.to_string(),
                    None => "<unset>".into(),
                })
                .collect();
            let addresses: Vec<String> = object["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect();
            vec![
                name,
                json!(text("/addressType")),
                json!(first_three(&ports, "<unset>")),
                json!(first_three(&addresses, "<unset>")),
                age,
            ]
        }
        "Job" => {
            let is_true = |type_: &str| {
                object
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == type_ && c["status"] == "True")
            };
            let status = [
                ("Failed", "Failed"),
                ("Complete", "Complete"),
                ("Suspended", "Suspended"),
                ("FailureTarget", "FailureTarget"),
                ("SuccessCriteriaMet", "SuccessCriteriaMet"),
            ]
            .into_iter()
            .find(|(type_, _)| is_true(type_))
            .map_or("Running", |(_, shown)| shown);
            let completions = match object.pointer("/spec/completions").and_then(Value::as_i64) {
                Some(completions) => format!("{}/{completions}", int("/status/succeeded")),
                None => format!(
                    "{}/1 of {}",
                    int("/status/succeeded"),
                    object
                        .pointer("/spec/parallelism")
                        .and_then(Value::as_i64)
                        .unwrap_or(1)
                ),
            };
            let time = |pointer: &str| {
                object
                    .pointer(pointer)
                    .and_then(Value::as_str)
                    .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
            };
            let duration = match time("/status/startTime") {
                None => String::new(),
                Some(start) => {
                    let end = time("/status/completionTime").unwrap_or(now);
                    human_duration(end.as_second() - start.as_second())
                }
            };
            vec![
                name,
                json!(status),
                json!(completions),
                json!(duration),
                age,
                json!(template_containers(object, "name")),
                json!(template_containers(object, "image")),
                json!(label_selector(object.pointer("/spec/selector"))),
            ]
        }
        "PodDisruptionBudget" => {
            // As kubectl prints them: a number or a percentage, else N/A.
            let bound = |pointer: &str| match object.pointer(pointer) {
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::String(s)) => s.clone(),
                _ => "N/A".to_owned(),
            };
            vec![
                name,
                json!(bound("/spec/minAvailable")),
                json!(bound("/spec/maxUnavailable")),
                json!(int("/status/disruptionsAllowed")),
                age,
            ]
        }
        "HorizontalPodAutoscaler" => vec![
            name,
            json!(format!(
                "{}/{}",
                text("/spec/scaleTargetRef/kind"),
                text("/spec/scaleTargetRef/name")
            )),
            json!(hpa_targets(object)),
            json!(
                object
                    .pointer("/spec/minReplicas")
                    .and_then(Value::as_i64)
                    .map_or("<unset>".to_owned(), |n| n.to_string())
            ),
            json!(int("/spec/maxReplicas")),
            json!(int("/status/currentReplicas")),
            age,
        ],
        "Event" => {
            let involved = |field: &str| {
                object
                    .pointer(&format!("/involvedObject/{field}"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            };
            let time = |pointer: &str| {
                object
                    .pointer(pointer)
                    .and_then(Value::as_str)
                    .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
            };
            // As kubectl: lastTimestamp, else the series' last observation, else eventTime.
            let first = time("/firstTimestamp").or_else(|| time("/eventTime"));
            let last = time("/lastTimestamp")
                .or_else(|| time("/series/lastObservedTime"))
                .or(first);
            let ago = |at: Option<k8s_openapi::jiff::Timestamp>| {
                at.map_or("<unknown>".to_owned(), |at| {
                    human_duration(now.as_second() - at.as_second())
                })
            };
            let component = text("/source/component");
            let component = if component.is_empty() {
                text("/reportingComponent")
            } else {
                component
            };
            let host = text("/source/host");
            let source = match (component.is_empty(), host.is_empty()) {
                (_, true) => component,
                (true, false) => host,
                (false, false) => format!("{component}, {host}"),
            };
            let count = object
                .pointer("/series/count")
                .and_then(Value::as_i64)
                .or_else(|| object.pointer("/count").and_then(Value::as_i64))
                .unwrap_or(1);
            vec![
                json!(ago(last)),
                json!(text("/type")),
                json!(text("/reason")),
                json!(format!(
                    "{}/{}",
                    involved("kind").to_lowercase(),
                    involved("name")
                )),
                json!(involved("fieldPath")),
                json!(source),
                json!(text("/message")),
                json!(ago(first)),
                json!(count.to_string()),
                name,
            ]
        }
        _ => vec![name, age],
    }
}

/// `<none>` for an empty cell, as kubectl prints a missing value.
fn none_if_empty(value: String) -> String {
    if value.is_empty() {
        "<none>".into()
    } else {
        value
    }
}

/// `<unknown>` for an empty cell (kubectl's placeholder for node info it was not told).
fn or_unknown(value: String) -> String {
    if value.is_empty() {
        "<unknown>".into()
    } else {
        value
    }
}

/// A pod's READINESS GATES cell: `<none>`, or how many of its gates are True of how many.
fn readiness_gates(pod: &Value) -> String {
    let gates = pod
        .pointer("/spec/readinessGates")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if gates.is_empty() {
        return "<none>".into();
    }
    let conditions = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let met = gates
        .iter()
        .filter(|gate| {
            conditions
                .iter()
                .any(|c| c["type"] == gate["conditionType"] && c["status"] == "True")
        })
        .count();
    format!("{met}/{}", gates.len())
}

/// The `field` (`name` or `image`) of each container of a workload's pod template, joined by
/// commas (the CONTAINERS and IMAGES columns of `-o wide`).
fn template_containers(object: &Value, field: &str) -> String {
    object
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c[field].as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// A map of labels as `a=b,c=d` (sorted by key, as Go's `labels.FormatLabels`), or `<none>`.
fn labels_text(labels: Option<&Value>) -> String {
    let pairs: std::collections::BTreeMap<&str, &str> = labels
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
        .collect();
    if pairs.is_empty() {
        return "<none>".into();
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A LabelSelector as `metav1.FormatLabelSelector` prints it (`app=web,tier in (a,b),!x`),
/// `<none>` for a missing or empty one.
fn label_selector(selector: Option<&Value>) -> String {
    let Some(selector) = selector else {
        return "<none>".into();
    };
    let mut parts: Vec<String> = Vec::new();
    let labels = labels_text(selector.get("matchLabels"));
    if labels != "<none>" {
        parts.push(labels);
    }
    for expression in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = expression["key"].as_str().unwrap_or("");
        let values: Vec<&str> = expression["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        parts.push(match expression["operator"].as_str().unwrap_or("") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_owned(),
            "DoesNotExist" => format!("!{key}"),
            other => format!("{key} {other} ({})", values.join(",")),
        });
    }
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

/// The first three entries joined by commas and how many more there are (kubectl's format
/// for endpoints), or `empty`.
fn first_three(entries: &[String], empty: &str) -> String {
    match entries.len() {
        0 => empty.to_owned(),
        1..=3 => entries.join(","),
        n => format!("{} + {} more...", entries[..3].join(","), n - 3),
    }
}

/// Kubernetes' short human duration: `45s`, `3m12s`, `5h`, `2d3h`, `400d`.
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..120 => format!("{s}s"),
        120..600 => {
            let (m, rest) = (s / 60, s % 60);
            if rest == 0 {
                format!("{m}m")
            } else {
                format!("{m}m{rest}s")
            }
        }
        600..10_800 => format!("{}m", s / 60),
        10_800..28_800 => {
            let (h, m) = (s / 3600, (s % 3600) / 60);
            if m == 0 {
                format!("{h}h")
            } else {
                format!("{h}h{m}m")
            }
        }
        28_800..172_800 => format!("{}h", s / 3600),
        172_800..2_592_000 => {
            let (d, h) = (s / 86_400, (s % 86_400) / 3600);
            if h == 0 {
                format!("{d}d")
            } else {
                format!("{d}d{h}h")
            }
        }
        _ => format!("{}d", s / 86_400),
    }
}

fn age_of(object: &Value, now: k8s_openapi::jiff::Timestamp) -> String {
    let Some(created) = object
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
    else {
        return "<unknown>".into();
    };
    human_duration(now.as_second() - created.as_second())
}

/// Builds a Table of `objects`.
pub fn table(
    resource: &Resource,
    objects: &[Value],
    revision: Option<u64>,
    continue_token: Option<&str>,
) -> Value {
    let now = crate::meta::now();
    let definitions: Vec<Value> = columns(resource.kind)
        .into_iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.kind,
                "format": if c.name == "Name" { "name" } else { "" },
                "description": "",
                "priority": c.priority,
            })
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            json!({
                "cells": cells(resource.kind, object, now),
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": object.get("metadata").cloned().unwrap_or_default(),
                },
            })
        })
        .collect();
    let mut metadata = json!({});
    if let Some(revision) = revision {
        metadata["resourceVersion"] = json!(revision.to_string());
    }
    if let Some(token) = continue_token {
        metadata["continue"] = json!(token);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(900), "15m");
        assert_eq!(human_duration(4 * 3600 + 60), "4h1m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86_400 + 3600), "3d1h");
        assert_eq!(human_duration(400 * 86_400), "400d");
    }

    #[test]
    fn pod_rows_show_the_container_reason_and_the_runtime() {
        let resource = crate::resources::find("", "v1", "pods").unwrap();
        let pod = |status: Value, class: Option<&str>| {
            let mut pod = json!({
                "metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z"},
                "spec": {"containers": [{"name": "app"}]},
                "status": status,
            });
            if let Some(class) = class {
                pod["spec"]["runtimeClassName"] = json!(class);
            }
            pod
        };
        let row = |pod: Value| table(resource, &[pod], Some(3), None)["rows"][0]["cells"].clone();
        let crashing = row(pod(
            json!({"phase": "Running", "containerStatuses": [{"name": "app", "ready": false,
                "restartCount": 4, "containerID": "runc://abc",
                "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}),
            None,
        ));
        assert_eq!(crashing[2], "CrashLoopBackOff");
        assert_eq!(crashing[5], "runc", "runtime from the container id");
        let oom = row(pod(
            json!({"phase": "Running", "containerStatuses": [{"name": "app",
                "state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}]}),
            Some("wasmtime"),
        ));
        assert_eq!(
            (&oom[2], &oom[5]),
            (&json!("OOMKilled"), &json!("wasmtime"))
        );
        let running = row(pod(
            json!({"phase": "Running", "containerStatuses": [{"name": "app", "ready": true,
                "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]}),
            Some("wasmtime"),
        ));
        assert_eq!(running[2], "Running");
        let pending = row(pod(json!({}), None));
        assert_eq!(
            (&pending[2], &pending[5]),
            (&json!("Pending"), &json!("<pending>"))
        );
    }

    #[test]
    fn hpa_rows_show_targets_like_kubectl() {
        let hpa = json!({
            "metadata": {"name": "web", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {
                "scaleTargetRef": {"kind": "Deployment", "name": "web"},
                "minReplicas": 0, "maxReplicas": 5,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
                    {"type": "Pods", "pods": {"metric": {"name": "http_requests_per_second"}, "target": {"type": "AverageValue", "averageValue": "100"}}},
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "64Mi"}}},
                ],
            },
            "status": {"currentReplicas": 2, "currentMetrics": [
                {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 75, "averageValue": "75m"}}},
            ]},
        });
        let resource =
            crate::resources::find("autoscaling", "v2", "horizontalpodautoscalers").unwrap();
        let table = table(resource, &[hpa], Some(3), None);
        let cells = &table["rows"][0]["cells"];
        assert_eq!(cells[1], "Deployment/web");
        assert_eq!(
            cells[2],
            "cpu: 75%/50%, http_requests_per_second: <unknown>/100 + 1 more..."
        );
        assert_eq!(
            (&cells[3], &cells[4], &cells[5]),
            (&json!("0"), &json!(5), &json!(2))
        );
    }

    #[test]
    fn wide_columns_and_events_print_like_kubectl() {
        let deployment = json!({
            "metadata": {"name": "web", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {
                "selector": {"matchLabels": {"app": "web"},
                    "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]},
                "template": {"spec": {"containers": [
                    {"name": "app", "image": "app:1"}, {"name": "side", "image": "side:2"}]}},
            },
        });
        let resource = crate::resources::find("apps", "v1", "deployments").unwrap();
        let printed = table(resource, &[deployment], Some(3), None);
        let cells = &printed["rows"][0]["cells"];
        assert_eq!(
            (&cells[5], &cells[6], &cells[7]),
            (
                &json!("app,side"),
                &json!("app:1,side:2"),
                &json!("app=web,tier in (a,b)")
            )
        );
        let event = json!({
            "metadata": {"name": "p.1", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "involvedObject": {"kind": "Pod", "name": "p", "fieldPath": "spec.containers{app}"},
            "type": "Normal", "reason": "Started", "message": "Started container app",
            "source": {"component": "kubelet", "host": "vm"}, "count": 2,
            "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z",
        });
        let resource = crate::resources::find("", "v1", "events").unwrap();
        let table = table(resource, &[event], Some(3), None);
        let names: Vec<&str> = table["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["priority"] == 0)
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Last Seen", "Type", "Reason", "Object", "Message"]);
        let cells = &table["rows"][0]["cells"];
        assert_eq!(
            (&cells[1], &cells[2], &cells[3], &cells[5], &cells[8]),
            (
                &json!("Normal"),
                &json!("Started"),
                &json!("pod/p"),
                &json!("kubelet, vm"),
                &json!("2")
            )
        );
    }

    #[test]
    fn every_row_has_one_cell_per_column() {
        for resource in crate::resources::RESOURCES {
            let object =
                json!({"metadata": {"name": "x", "creationTimestamp": "2026-01-01T00:00:00Z"}});
            let table = table(resource, &[object], Some(3), None);
            let columns = table["columnDefinitions"].as_array().unwrap().len();
            let cells = table["rows"][0]["cells"].as_array().unwrap().len();
            assert_eq!(columns, cells, "{}", resource.kind);
        }
    }
}
