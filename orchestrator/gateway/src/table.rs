//! The routing table: which ready pods stand behind each NodePort and each Ingress rule. Built
//! by a pure function from Services, Pods and Ingresses; unit-tested without I/O.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

/// One endpoint of a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A ready pod; `port` names the container that listens on the Service's target port.
    Pod {
        /// The pod's uid.
        uid: String,
        /// The container serving the target port, if it could be told.
        port: Option<String>,
        /// The pod's IP and the target port, for pods reached over the network (containers).
        address: Option<std::net::SocketAddr>,
        /// For a Wasm pod (served in process by its node's agent): that agent's endpoint, which
        /// the gateways of other nodes forward to.
        agent: Option<std::net::SocketAddr>,
    },
}

/// The ready endpoints of one Service port, balanced round-robin.
#[derive(Debug)]
pub struct ServiceRoute {
    /// `namespace/name`, for messages.
    pub name: String,
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's selector (what a scaled-to-zero workload must match to be woken).
    pub selector: serde_json::Map<String, Value>,
    /// Ready endpoints.
    pub backends: Vec<Backend>,
    next: AtomicUsize,
}

impl ServiceRoute {
    /// The next endpoint, round-robin; `None` if none is ready.
    pub fn pick(&self) -> Option<&Backend> {
        if self.backends.is_empty() {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.backends.get(n % self.backends.len())
    }
}

#[derive(Debug)]
struct IngressPath {
    host: String,
    path: String,
    exact: bool,
    route: Arc<ServiceRoute>,
}

/// Every route of the node.
#[derive(Debug, Default)]
pub struct RouteTable {
    /// NodePort → its Service's endpoints.
    pub node_ports: HashMap<u16, Arc<ServiceRoute>>,
    /// Cluster IP and Service port → its Service's endpoints.
    pub cluster_ports: HashMap<std::net::SocketAddr, Arc<ServiceRoute>>,
    ingress: Vec<IngressPath>,
}

/// Whether a store key belongs to a kind the table is built from.
pub fn is_routing_key(key: &str) -> bool {
    key.starts_with("/core/services/")
        || key.starts_with("/core/pods/")
        || key.starts_with("/networking.k8s.io/ingresses/")
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp").is_none()
        && pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|conditions| {
                conditions
                    .iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
}

fn selects(selector: &serde_json::Map<String, Value>, pod: &Value) -> bool {
    !selector.is_empty()
        && selector.iter().all(|(key, value)| {
            pod.pointer("/metadata/labels").and_then(|l| l.get(key)) == Some(value)
        })
}

/// The port number `target` (a number, or a container port's name) stands for in `pod`.
fn port_number(pod: &Value, target: &Value) -> Option<u16> {
    match target {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(name) => pod
            .pointer("/spec/containers")?
            .as_array()?
            .iter()
            .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
            .find(|p| p["name"].as_str() == Some(name.as_str()))
            .and_then(|p| p["containerPort"].as_u64())
            .and_then(|n| u16::try_from(n).ok()),
        _ => None,
    }
}

/// The container of `pod` that listens on `target` (a port number or a port name).
fn container_for(pod: &Value, target: &Value) -> Option<String> {
    let containers = pod.pointer("/spec/containers")?.as_array()?;
    containers.iter().find_map(|container| {
        let ports = container["ports"].as_array()?;
        let serves = ports.iter().any(|port| match target {
            Value::Number(n) => port["containerPort"].as_i64() == n.as_i64(),
            Value::String(name) => port["name"].as_str() == Some(name.as_str()),
            _ => false,
        });
        serves.then(|| container["name"].as_str().unwrap_or("").to_owned())
    })
}

/// Node name → the node's agent endpoint (InternalIP and `daemonEndpoints` port).
fn agent_endpoints(nodes: &[Value]) -> HashMap<String, std::net::SocketAddr> {
    nodes
        .iter()
        .filter_map(|node| {
            let ip = node
                .pointer("/status/addresses")?
                .as_array()?
                .iter()
                .find(|a| a["type"] == "InternalIP")?["address"]
                .as_str()?
                .parse::<std::net::IpAddr>()
                .ok()?;
            let port = node
                .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")?
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())?;
            Some((
                text(node, "/metadata/name").to_owned(),
                std::net::SocketAddr::new(ip, port),
            ))
        })
        .collect()
}

/// Whether a pod runs in process on its node (Wasm) rather than behind its own IP.
fn runs_in_process(pod: &Value) -> bool {
    text(pod, "/spec/runtimeClassName") == "wasmtime"
        || pod
            .pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .is_some_and(|statuses| {
                statuses.iter().any(|s| {
                    s["containerID"]
                        .as_str()
                        .is_some_and(|id| id.starts_with("wasmtime://"))
                })
            })
}

fn service_route(
    service: &Value,
    port: &Value,
    pods: &[Value],
    agents: &HashMap<String, std::net::SocketAddr>,
) -> ServiceRoute {
    let namespace = text(service, "/metadata/namespace");
    let selector = service
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let target = port.get("targetPort").unwrap_or(&port["port"]);
    let backends = pods
        .iter()
        .filter(|pod| text(pod, "/metadata/namespace") == namespace)
        .filter(|pod| selects(&selector, pod) && is_ready(pod))
        .map(|pod| Backend::Pod {
            uid: text(pod, "/metadata/uid").to_owned(),
            port: container_for(pod, target),
            address: text(pod, "/status/podIP")
                .parse::<std::net::IpAddr>()
                .ok()
                .zip(port_number(pod, target))
                .map(|(ip, port)| std::net::SocketAddr::new(ip, port)),
            agent: runs_in_process(pod)
                .then(|| agents.get(text(pod, "/spec/nodeName")).copied())
                .flatten(),
        })
        .collect();
    ServiceRoute {
        name: format!("{namespace}/{}", text(service, "/metadata/name")),
        namespace: namespace.to_owned(),
        selector,
        backends,
        next: AtomicUsize::new(0),
    }
}

impl RouteTable {
    /// Builds the table.
    pub fn build(
        services: &[Value],
        pods: &[Value],
        ingresses: &[Value],
        nodes: &[Value],
    ) -> RouteTable {
        let mut table = RouteTable::default();
        let agents = agent_endpoints(nodes);
        // Routes by (namespace, service, port number) for Ingress backends.
        let mut by_service: HashMap<(String, String, i64), Arc<ServiceRoute>> = HashMap::new();
        for service in services {
            for port in service
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
            {
                let route = Arc::new(service_route(service, &port, pods, &agents));
                if let Some(node_port) = port["nodePort"]
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    && matches!(text(service, "/spec/type"), "NodePort" | "LoadBalancer")
                {
                    table.node_ports.insert(node_port, route.clone());
                }
                if let Ok(ip) = text(service, "/spec/clusterIP").parse::<std::net::IpAddr>()
                    && let Some(number) = port["port"].as_u64().and_then(|p| u16::try_from(p).ok())
                {
                    table
                        .cluster_ports
                        .insert(std::net::SocketAddr::new(ip, number), route.clone());
                }
                by_service.insert(
                    (
                        text(service, "/metadata/namespace").to_owned(),
                        text(service, "/metadata/name").to_owned(),
                        port["port"].as_i64().unwrap_or(0),
                    ),
                    route,
                );
            }
        }
        for ingress in ingresses {
            let namespace = text(ingress, "/metadata/namespace");
            let lookup = |backend: &Value| {
                let name = backend.pointer("/service/name")?.as_str()?;
                let number = backend
                    .pointer("/service/port/number")
                    .and_then(Value::as_i64);
                by_service
                    .iter()
                    .find(|((ns, n, p), _)| {
                        ns == namespace && n == name && number.is_none_or(|x| x == *p)
                    })
                    .map(|(_, route)| route.clone())
            };
            for rule in ingress
                .pointer("/spec/rules")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
            {
                let host = rule["host"].as_str().unwrap_or("").to_owned();
                for path in rule
                    .pointer("/http/paths")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
                {
                    if let Some(route) = lookup(&path["backend"]) {
                        table.ingress.push(IngressPath {
                            host: host.clone(),
                            path: path["path"].as_str().unwrap_or("/").to_owned(),
                            exact: path["pathType"] == "Exact",
                            route,
                        });
                    }
                }
            }
            if let Some(route) = ingress.pointer("/spec/defaultBackend").and_then(lookup) {
                table.ingress.push(IngressPath {
                    host: String::new(),
                    path: "/".into(),
                    exact: false,
                    route,
                });
            }
        }
        table
    }

    /// Every route of the table (a Service port may appear more than once).
    pub fn routes(&self) -> impl Iterator<Item = &Arc<ServiceRoute>> {
        self.node_ports
            .values()
            .chain(self.cluster_ports.values())
            .chain(self.ingress.iter().map(|i| &i.route))
    }

    /// The route of an Ingress request: rules for the host (without port) win over rules for
    /// any host; among them the longest matching path wins.
    pub fn ingress(&self, host: &str, path: &str) -> Option<&Arc<ServiceRoute>> {
        let host = host.split(':').next().unwrap_or("");
        let matches = |p: &IngressPath| {
            if p.exact {
                path == p.path
            } else {
                let prefix = p.path.trim_end_matches('/');
                path == prefix || path.starts_with(&format!("{prefix}/")) || prefix.is_empty()
            }
        };
        self.ingress
            .iter()
            .filter(|p| (p.host == host || p.host.is_empty()) && matches(p))
            .max_by_key(|p| (p.host == host, p.path.len()))
            .map(|p| &p.route)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, app: &str, ready: bool) -> Value {
        json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": {"app": app}},
            "spec": {"containers": [{"name": "web", "ports": [{"containerPort": 8080, "name": "http"}]}]},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        })
    }

    fn service(name: &str, app: &str, node_port: u16) -> Value {
        json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"type": "NodePort", "selector": {"app": app},
                     "ports": [{"port": 80, "targetPort": 8080, "nodePort": node_port}]}
        })
    }

    #[test]
    fn cluster_ips_route_every_service_port_including_cluster_ip_only_services() {
        let mut internal = service("db", "db", 0);
        internal["spec"] = json!({"type": "ClusterIP", "clusterIP": "10.96.0.7",
            "selector": {"app": "db"}, "ports": [{"port": 5432, "targetPort": 8080}]});
        let mut web = service("web", "web", 30080);
        web["spec"]["clusterIP"] = json!("10.96.0.8");
        let headless = json!({"metadata": {"name": "h", "namespace": "default"},
            "spec": {"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"port": 1}]}});
        let pods = [pod("a", "web", true), pod("d", "db", true)];
        let table = RouteTable::build(&[internal, web, headless], &pods, &[], &[]);
        let db = &table.cluster_ports[&"10.96.0.7:5432".parse().unwrap()];
        assert_eq!(db.name, "default/db");
        assert_eq!(db.backends.len(), 1);
        assert!(
            table
                .cluster_ports
                .contains_key(&"10.96.0.8:80".parse().unwrap())
        );
        assert_eq!(
            table.cluster_ports.len(),
            2,
            "a headless Service has no cluster IP"
        );
        assert!(!table.node_ports.contains_key(&0));
    }

    #[test]
    fn wasm_pods_of_other_nodes_are_reached_through_their_nodes_agent() {
        let mut wasm = pod("w", "web", true);
        wasm["spec"]["nodeName"] = json!("n2");
        wasm["spec"]["runtimeClassName"] = json!("wasmtime");
        wasm["status"]["podIP"] = json!("127.0.0.12");
        let mut container = pod("c", "web", true);
        container["spec"]["nodeName"] = json!("n2");
        container["status"]["podIP"] = json!("10.88.0.5");
        let node = json!({"metadata": {"name": "n2"}, "status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.12"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 41000}}}});
        let table = RouteTable::build(
            &[service("web", "web", 30080)],
            &[wasm, container],
            &[],
            &[node],
        );
        let agents: Vec<_> = table.node_ports[&30080]
            .backends
            .iter()
            .map(|Backend::Pod { uid, agent, .. }| (uid.clone(), *agent))
            .collect();
        assert!(agents.contains(&("uid-w".into(), Some("127.0.0.12:41000".parse().unwrap()))));
        assert!(
            agents.contains(&("uid-c".into(), None)),
            "containers go by pod IP"
        );
    }

    #[test]
    fn node_ports_route_to_ready_selected_pods_round_robin() {
        let pods = [
            pod("a", "web", true),
            pod("b", "web", true),
            pod("c", "web", false),
            pod("d", "db", true),
        ];
        let table = RouteTable::build(&[service("web", "web", 30080)], &pods, &[], &[]);
        let route = &table.node_ports[&30080];
        assert_eq!(route.backends.len(), 2);
        let picks: Vec<_> = (0..4)
            .map(|_| match route.pick().unwrap() {
                Backend::Pod { uid, port, .. } => (uid.clone(), port.clone()),
            })
            .collect();
        assert_eq!(picks[0], ("uid-a".into(), Some("web".into())));
        assert_eq!(picks[1].0, "uid-b");
        assert_eq!(picks[2].0, "uid-a");
    }

    #[test]
    fn a_service_without_ready_pods_has_no_backend() {
        let table = RouteTable::build(
            &[service("web", "web", 30080)],
            &[pod("c", "web", false)],
            &[],
            &[],
        );
        assert!(table.node_ports[&30080].pick().is_none());
    }

    #[test]
    fn ingress_prefers_the_host_and_the_longest_path() {
        let services = [service("web", "web", 30080), service("api", "api", 30081)];
        let pods = [pod("a", "web", true), pod("b", "api", true)];
        let ingress = json!({
            "metadata": {"name": "i", "namespace": "default"},
            "spec": {"rules": [
                {"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}},
                {"host": "shop.example", "http": {"paths": [
                    {"path": "/api", "pathType": "Prefix", "backend": {"service": {"name": "api", "port": {"number": 80}}}}
                ]}}
            ]}
        });
        let table = RouteTable::build(&services, &pods, &[ingress], &[]);
        assert_eq!(
            table.ingress("shop.example:8080", "/api/x").unwrap().name,
            "default/api"
        );
        assert_eq!(
            table.ingress("shop.example", "/apiary").unwrap().name,
            "default/web"
        );
        assert_eq!(
            table.ingress("other", "/api/x").unwrap().name,
            "default/web"
        );
    }

    #[test]
    fn only_services_pods_and_ingresses_trigger_rebuilds() {
        assert!(is_routing_key("/core/pods/default/a"));
        assert!(is_routing_key("/networking.k8s.io/ingresses/default/i"));
        assert!(!is_routing_key("/core/configmaps/default/a"));
    }
}
