//! From a pod spec to what a runtime needs: environment (with `valueFrom` and `envFrom`
//! resolved against ConfigMaps and Secrets), volume mounts (set up by [`crate::volumes`]), limits, and
//! the runtime to use. The same for both runtimes.

use base64::Engine;
use serde_json::Value;
use wharf_apiserver::client::ClusterApi;
use wharf_apiserver::resources;
use wharf_runtime::{Limits, Mount, RunAs};

use crate::volumes::{MountError, PodVolumes};

/// A problem with the pod's configuration: the container waits with reason
/// `CreateContainerConfigError` and this message, as in Kubernetes.
pub type ConfigError = String;

/// Parses a Kubernetes quantity of bytes (`128Mi`, `1G`, `500000`, `1.5Gi`).
pub fn parse_bytes(quantity: &str) -> Option<u64> {
    let q = quantity.trim();
    let suffixes: [(&str, f64); 12] = [
        ("Ki", 1024f64),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("Pi", 1024f64.powi(5)),
        ("Ei", 1024f64.powi(6)),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    for (suffix, factor) in suffixes {
        if let Some(number) = q.strip_suffix(suffix) {
            return number.parse::<f64>().ok().map(|n| (n * factor) as u64);
        }
    }
    q.parse::<f64>().ok().map(|n| n as u64)
}

/// Parses a CPU quantity into millicores (`500m`, `2`, `0.25`).
pub fn parse_millicores(quantity: &str) -> Option<u64> {
    let q = quantity.trim();
    match q.strip_suffix('m') {
        Some(milli) => milli.parse().ok(),
        None => q.parse::<f64>().ok().map(|cores| (cores * 1000.0) as u64),
    }
}

/// The container's limits.
pub fn limits(container: &Value) -> Limits {
    let limits = &container["resources"]["limits"];
    Limits {
        memory_bytes: limits["memory"].as_str().and_then(parse_bytes),
        cpu_millis: limits["cpu"].as_str().and_then(parse_millicores),
    }
}

/// The user and group from `securityContext` (the container's over the pod's).
pub fn run_as(pod: &Value, container: &Value) -> RunAs {
    let id = |field: &str| {
        container["securityContext"][field]
            .as_u64()
            .or_else(|| pod["spec"]["securityContext"][field].as_u64())
            .and_then(|n| u32::try_from(n).ok())
    };
    RunAs {
        user: id("runAsUser"),
        group: id("runAsGroup"),
    }
}

/// A list of strings of the container spec (`command`, `args`); empty when absent.
pub fn strings(container: &Value, field: &str) -> Vec<String> {
    container[field]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// Kubernetes' service links (`enableServiceLinks`, on by default): for every Service with a
/// cluster IP in the pod's namespace, `NAME_SERVICE_HOST`, `NAME_SERVICE_PORT` (the first
/// port), `NAME_SERVICE_PORT_PORTNAME`, and the Docker-link style `NAME_PORT*` variables, with
/// the name upper-cased and `-` as `_`. Sorted by Service name, as the kubelet does.
pub fn service_links(services: &[Value]) -> Vec<(String, String)> {
    let mut services: Vec<&Value> = services
        .iter()
        .filter(|s| {
            s["spec"]["clusterIP"]
                .as_str()
                .is_some_and(|ip| !ip.is_empty() && ip != "None")
        })
        .collect();
    services.sort_by_key(|s| s["metadata"]["name"].as_str().unwrap_or(""));
    let mut env = Vec::new();
    for service in services {
        let name = service["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_uppercase()
            .replace('-', "_");
        let ip = service["spec"]["clusterIP"].as_str().unwrap_or("");
        let ports = service["spec"]["ports"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let Some(first) = ports.first() else {
            continue;
        };
        env.push((format!("{name}_SERVICE_HOST"), ip.to_owned()));
        env.push((format!("{name}_SERVICE_PORT"), first["port"].to_string()));
        for port in &ports {
            if let Some(port_name) = port["name"].as_str().filter(|n| !n.is_empty()) {
                env.push((
                    format!(
                        "{name}_SERVICE_PORT_{}",
                        port_name.to_uppercase().replace('-', "_")
                    ),
                    port["port"].to_string(),
                ));
            }
        }
        let protocol = |port: &Value| port["protocol"].as_str().unwrap_or("TCP").to_lowercase();
        env.push((
            format!("{name}_PORT"),
            format!("{}://{ip}:{}", protocol(first), first["port"]),
        ));
        for port in &ports {
            let (number, proto) = (&port["port"], protocol(port));
            let prefix = format!("{name}_PORT_{number}_{}", proto.to_uppercase());
            env.push((prefix.clone(), format!("{proto}://{ip}:{number}")));
            env.push((format!("{prefix}_PROTO"), proto.clone()));
            env.push((format!("{prefix}_PORT"), number.to_string()));
            env.push((format!("{prefix}_ADDR"), ip.to_owned()));
        }
    }
    env
}

/// Reads a ConfigMap's or Secret's data as (key, text) pairs; `None` if it does not exist.
async fn source_data(
    api: &dyn ClusterApi,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Result<Option<Vec<(String, String)>>, ConfigError> {
    let plural = if kind == "Secret" {
        "secrets"
    } else {
        "configmaps"
    };
    let resource = resources::find("", "v1", plural).expect("served");
    let object = match api.get(resource, Some(namespace), name).await {
        Ok(object) => object,
        Err(wharf_apiserver::ApiError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(format!("cannot read {kind} {name:?}: {e}")),
    };
    let mut pairs = Vec::new();
    if let Some(data) = object["data"].as_object() {
        for (key, value) in data {
            let text = value.as_str().unwrap_or_default();
            let text = if kind == "Secret" {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|_| format!("secret {name:?} key {key:?} is not valid base64"))?;
                String::from_utf8_lossy(&bytes).into_owned()
            } else {
                text.to_owned()
            };
            pairs.push((key.clone(), text));
        }
    }
    Ok(Some(pairs))
}

fn field_ref(pod: &Value, path: &str, host_ip: &str, pod_ip: &str) -> Option<String> {
    let text = |p: &str| pod.pointer(p).and_then(Value::as_str).map(str::to_owned);
    match path {
        "metadata.name" => text("/metadata/name"),
        "metadata.namespace" => text("/metadata/namespace"),
        "metadata.uid" => text("/metadata/uid"),
        "spec.nodeName" => text("/spec/nodeName"),
        "spec.serviceAccountName" => text("/spec/serviceAccountName"),
        "status.hostIP" => Some(host_ip.to_owned()),
        "status.podIP" => Some(pod_ip.to_owned()),
        _ => {
            // metadata.labels['x'] and metadata.annotations['x'].
            let (map, key) = path.strip_suffix("']")?.split_once("['")?;
            let map = match map {
                "metadata.labels" => "labels",
                "metadata.annotations" => "annotations",
                _ => return None,
            };
            pod["metadata"][map][key].as_str().map(str::to_owned)
        }
    }
}

/// The container's environment, in Kubernetes' order: `envFrom` first, then `env` (later
/// entries win), with `$(VAR)` references to earlier variables expanded. `host_ip` and `pod_ip`
/// answer the `status.hostIP` and `status.podIP` field references.
pub async fn environment(
    api: &dyn ClusterApi,
    pod: &Value,
    container: &Value,
    host_ip: &str,
    pod_ip: &str,
) -> Result<Vec<(String, String)>, ConfigError> {
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, name: String, value: String| {
        env.retain(|(n, _)| *n != name);
        env.push((name, value));
    };
    for source in container["envFrom"].as_array().cloned().unwrap_or_default() {
        let prefix = source["prefix"].as_str().unwrap_or("");
        for (kind, field) in [("ConfigMap", "configMapRef"), ("Secret", "secretRef")] {
            let reference = &source[field];
            let Some(name) = reference["name"].as_str() else {
                continue;
            };
            match source_data(api, kind, namespace, name).await? {
                Some(pairs) => {
                    for (key, value) in pairs {
                        set(&mut env, format!("{prefix}{key}"), value);
                    }
                }
                None if reference["optional"] == true => {}
                None => return Err(format!("{} {name:?} not found", kind.to_lowercase())),
            }
        }
    }
    for entry in container["env"].as_array().cloned().unwrap_or_default() {
        let Some(name) = entry["name"].as_str().map(str::to_owned) else {
            continue;
        };
        if let Some(value) = entry["value"].as_str() {
            let expanded = expand(value, &env);
            set(&mut env, name, expanded);
            continue;
        }
        let from = &entry["valueFrom"];
        let value = if let Some(path) = from["fieldRef"]["fieldPath"].as_str() {
            field_ref(pod, path, host_ip, pod_ip)
                .ok_or_else(|| format!("unsupported fieldRef {path:?} for env {name:?}"))?
        } else {
            let (kind, reference) = if from["secretKeyRef"].is_object() {
                ("Secret", &from["secretKeyRef"])
            } else if from["configMapKeyRef"].is_object() {
                ("ConfigMap", &from["configMapKeyRef"])
            } else {
                set(&mut env, name, String::new());
                continue;
            };
            let source = reference["name"].as_str().unwrap_or("");
            let key = reference["key"].as_str().unwrap_or("");
            let optional = reference["optional"] == true;
            // Kubernetes tells a missing object (`secret "NAME" not found`) from a missing key.
            let Some(pairs) = source_data(api, kind, namespace, source).await? else {
                if optional {
                    continue;
                }
                return Err(format!("{} {source:?} not found", kind.to_lowercase()));
            };
            let found = pairs.into_iter().find(|(k, _)| k == key).map(|(_, v)| v);
            match found {
                Some(value) => value,
                None if optional => continue,
                None => {
                    return Err(format!(
                        "couldn't find key {key} in {} {namespace}/{source}",
                        kind
                    ));
                }
            }
        };
        set(&mut env, name, value);
    }
    Ok(env)
}

/// Expands `$(NAME)` references to variables defined earlier; `$$` escapes `$`.
fn expand(value: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(inner) = tail.strip_prefix("$(")
            && let Some(end) = inner.find(')')
            && let Some((_, v)) = env.iter().find(|(n, _)| n == &inner[..end])
        {
            out.push_str(v);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// Sets up the pod's volumes that `container` mounts (see [`crate::volumes`]: Secrets on a
/// tmpfs, updates written atomically) and returns its mounts. ConfigMap and Secret volumes are
/// read-only, as in Kubernetes.
pub async fn mounts(
    volumes: &PodVolumes,
    api: &dyn ClusterApi,
    pod: &Value,
    container: &Value,
) -> Result<Vec<Mount>, MountError> {
    let declared = pod["spec"]["volumes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut mounts = Vec::new();
    for mount in container["volumeMounts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let name = mount["name"].as_str().unwrap_or("");
        let path = mount["mountPath"].as_str().unwrap_or("").to_owned();
        let volume = declared
            .iter()
            .find(|v| v["name"] == name)
            .ok_or_else(|| MountError {
                volume: name.to_owned(),
                message: "the volume is not defined in the pod".into(),
            })?;
        let host_path = volumes.set_up(api, volume).await?;
        let read_only = volume["emptyDir"].is_null() || mount["readOnly"] == true;
        mounts.push(Mount {
            host_path,
            container_path: path,
            read_only,
        });
    }
    Ok(mounts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities_parse_like_kubernetes() {
        assert_eq!(parse_bytes("128Mi"), Some(128 << 20));
        assert_eq!(parse_bytes("1G"), Some(1_000_000_000));
        assert_eq!(parse_bytes("1.5Gi"), Some(3 << 29));
        assert_eq!(parse_bytes("4096"), Some(4096));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_millicores("500m"), Some(500));
        assert_eq!(parse_millicores("2"), Some(2000));
        assert_eq!(parse_millicores("0.25"), Some(250));
    }

    #[test]
    fn variable_references_expand_to_earlier_values() {
        let env = vec![("A".to_owned(), "x".to_owned())];
        assert_eq!(expand("$(A)-$(B)-$$(A)", &env), "x-$(B)-$(A)");
        assert_eq!(expand("plain", &env), "plain");
    }

    #[test]
    fn the_containers_security_context_wins_over_the_pods() {
        let pod = json!({"spec": {"securityContext": {"runAsUser": 1000, "runAsGroup": 100}}});
        let container = json!({"securityContext": {"runAsUser": 2000}});
        assert_eq!(
            run_as(&pod, &container),
            RunAs {
                user: Some(2000),
                group: Some(100)
            }
        );
        assert_eq!(run_as(&json!({}), &json!({})), RunAs::default());
    }

    #[test]
    fn command_and_args_are_read_apart() {
        let c = serde_json::json!({"command": ["run"], "args": ["--fast", "x"]});
        assert_eq!(strings(&c, "command"), ["run"]);
        assert_eq!(strings(&c, "args"), ["--fast", "x"]);
        assert!(strings(&json!({}), "command").is_empty());
    }

    #[test]
    fn service_links_follow_kubernetes_names() {
        let services = [
            json!({"metadata": {"name": "hello-container"},
                   "spec": {"clusterIP": "10.96.0.5",
                            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}}),
            json!({"metadata": {"name": "headless"}, "spec": {"clusterIP": "None",
                   "ports": [{"port": 1}]}}),
            json!({"metadata": {"name": "api"}, "spec": {"clusterIP": "10.96.0.9",
                   "ports": [{"port": 80}, {"port": 9090, "name": "metrics"}]}}),
        ];
        let env: std::collections::HashMap<String, String> =
            service_links(&services).into_iter().collect();
        assert_eq!(env["HELLO_CONTAINER_SERVICE_HOST"], "10.96.0.5");
        assert_eq!(env["HELLO_CONTAINER_SERVICE_PORT"], "8080");
        assert_eq!(env["HELLO_CONTAINER_SERVICE_PORT_HTTP"], "8080");
        assert_eq!(env["HELLO_CONTAINER_PORT"], "tcp://10.96.0.5:8080");
        assert_eq!(env["HELLO_CONTAINER_PORT_8080_TCP_ADDR"], "10.96.0.5");
        assert_eq!(env["API_SERVICE_PORT"], "80");
        assert_eq!(env["API_SERVICE_PORT_METRICS"], "9090");
        assert_eq!(env["API_PORT_9090_TCP"], "tcp://10.96.0.9:9090");
        assert!(!env.keys().any(|k| k.starts_with("HEADLESS")));
        // Sorted by Service name: api before hello-container.
        assert_eq!(service_links(&services)[0].0, "API_SERVICE_HOST");
    }
}
