//! Pod networks: one network namespace per container pod, wired to a node-local bridge by the
//! standard CNI plugins (`loopback`, then `bridge` with `host-local` address management).
//!
//! This is the sandbox half of Kubernetes' CRI: the namespace belongs to the pod, and every
//! container of the pod joins it, so they share one IP and `localhost`. Wasm pods run in the
//! agent's process and need none. The namespace is made with `ip netns add` (a bind mount under
//! `/run/netns`, so `ip netns` lists it) and the plugins are run as the CNI specification says:
//! an executable, the command in `CNI_COMMAND`, the network configuration on stdin, the result
//! (or an error object) on stdout.
//!
//! What is attached is recorded under the state directory, so that an agent that restarts
//! finds its pods' namespaces again (their containers kept running) and removes those whose
//! pods are gone.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Where Debian's `containernetworking-plugins` puts the plugins.
pub const DEFAULT_PLUGIN_DIR: &str = "/usr/lib/cni";
/// The node bridge of `wharf up` unless told otherwise.
pub const DEFAULT_BRIDGE: &str = "wharf0";
/// The pod address range of `wharf up` unless told otherwise.
pub const DEFAULT_SUBNET: &str = "10.88.0.0/16";
/// The interface name of a pod's end of its veth pair.
const POD_INTERFACE: &str = "eth0";
/// Where `ip netns add` puts named network namespaces.
const NETNS_DIR: &str = "/run/netns";

/// Why a pod network cannot be set up or removed.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// A required program (a CNI plugin, `ip`) is missing.
    #[error("{0}")]
    Missing(String),
    /// A command failed.
    #[error("{what}: {detail}")]
    Failed {
        /// What was attempted.
        what: String,
        /// The command's own message.
        detail: String,
    },
}

/// Settings of the node's pod network.
#[derive(Clone, Debug)]
pub struct NetworkConfig {
    /// Where the CNI plugins are.
    pub plugin_dir: PathBuf,
    /// The node bridge (at most 15 characters).
    pub bridge: String,
    /// The pod address range (CIDR); the bridge takes its first address.
    pub subnet: String,
    /// Where attachments and `host-local`'s allocations are recorded.
    pub state_dir: PathBuf,
}

/// A pod's network: the namespace its containers join and its address.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PodNetwork {
    /// The network namespace (a path under `/run/netns`).
    pub netns: PathBuf,
    /// The pod's IP.
    pub ip: IpAddr,
}

/// The node's pod networks.
#[derive(Debug)]
pub struct PodNetworks {
    config: NetworkConfig,
}

impl PodNetworks {
    /// Pod networks with these settings; fails with a clear message when the CNI plugins or
    /// `ip` are missing.
    pub fn new(config: NetworkConfig) -> Result<PodNetworks, NetworkError> {
        for plugin in ["bridge", "host-local", "loopback"] {
            if !config.plugin_dir.join(plugin).is_file() {
                return Err(NetworkError::Missing(format!(
                    "the CNI plugin {plugin:?} is not in {} (Debian package containernetworking-plugins)",
                    config.plugin_dir.display()
                )));
            }
        }
        if config.bridge.is_empty() || config.bridge.len() > 15 {
            return Err(NetworkError::Missing(format!(
                "bridge name {:?} must have 1 to 15 characters",
                config.bridge
            )));
        }
        if find_program("ip").is_none() {
            return Err(NetworkError::Missing(
                "the `ip` command is missing (Debian package iproute2)".into(),
            ));
        }
        std::fs::create_dir_all(config.state_dir.join("pods")).map_err(|e| {
            NetworkError::Failed {
                what: format!("create {}", config.state_dir.display()),
                detail: e.to_string(),
            }
        })?;
        Ok(PodNetworks { config })
    }

    /// The settings.
    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    fn record_path(&self, pod_uid: &str) -> PathBuf {
        self.config
            .state_dir
            .join("pods")
            .join(format!("{pod_uid}.json"))
    }

    /// The network attached to a pod earlier, if it still exists.
    pub fn attached(&self, pod_uid: &str) -> Option<PodNetwork> {
        let text = std::fs::read(self.record_path(pod_uid)).ok()?;
        let network: PodNetwork = serde_json::from_slice(&text).ok()?;
        network.netns.exists().then_some(network)
    }

    /// Gives a pod its network namespace and address; returns the existing one if the pod has
    /// one already (e.g. after an agent restart).
    pub async fn attach(&self, pod_uid: &str) -> Result<PodNetwork, NetworkError> {
        if let Some(network) = self.attached(pod_uid) {
            return Ok(network);
        }
        let name = netns_name(pod_uid);
        // Whatever a failed or interrupted attempt left is removed first (an address is only
        // ever given to a pod inside its namespace, so without one there is nothing to undo).
        if Path::new(NETNS_DIR).join(&name).exists() || self.record_path(pod_uid).exists() {
            self.detach(pod_uid).await?;
        }
        run_ip(&["netns", "add", &name]).await?;
        let netns = Path::new(NETNS_DIR).join(&name);
        let attached = async {
            self.plugin("ADD", &self.loopback_config(), pod_uid, &netns)
                .await?;
            let result = self
                .plugin("ADD", &self.bridge_config(), pod_uid, &netns)
                .await?;
            pod_ip(&result).ok_or_else(|| NetworkError::Failed {
                what: "read the bridge plugin's result".into(),
                detail: format!("no IP address in {result}"),
            })
        };
        let ip = match attached.await {
            Ok(ip) => ip,
            Err(error) => {
                let _ = self.detach(pod_uid).await;
                return Err(error);
            }
        };
        let network = PodNetwork { netns, ip };
        let record = serde_json::to_vec(&network).expect("a pod network serializes");
        std::fs::write(self.record_path(pod_uid), record).map_err(|e| NetworkError::Failed {
            what: "record the pod network".into(),
            detail: e.to_string(),
        })?;
        Ok(network)
    }

    /// Removes a pod's network: releases its address, removes its veth and its namespace.
    /// Removing a network that does not exist succeeds.
    pub async fn detach(&self, pod_uid: &str) -> Result<(), NetworkError> {
        let name = netns_name(pod_uid);
        let netns = Path::new(NETNS_DIR).join(&name);
        // The CNI specification asks plugins to accept DEL for what is already gone, with or
        // without the namespace; host-local releases the address either way.
        let netns_arg = if netns.exists() {
            netns.clone()
        } else {
            PathBuf::new()
        };
        self.plugin("DEL", &self.bridge_config(), pod_uid, &netns_arg)
            .await?;
        if netns.exists() {
            self.plugin("DEL", &self.loopback_config(), pod_uid, &netns)
                .await?;
            run_ip(&["netns", "delete", &name]).await?;
        }
        match std::fs::remove_file(self.record_path(pod_uid)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(NetworkError::Failed {
                what: "remove the pod network's record".into(),
                detail: e.to_string(),
            }),
        }
    }

    /// The pods that have a network recorded here.
    pub fn recorded(&self) -> HashSet<String> {
        let Ok(entries) = std::fs::read_dir(self.config.state_dir.join("pods")) else {
            return HashSet::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".json"))
                    .map(str::to_owned)
            })
            .collect()
    }

    /// Removes the networks of pods not in `live`; returns how many were removed.
    pub async fn remove_stale(&self, live: &HashSet<String>) -> usize {
        let mut removed = 0;
        for uid in self.recorded().difference(live) {
            match self.detach(uid).await {
                Ok(()) => removed += 1,
                Err(error) => {
                    tracing::warn!(pod_uid = %uid, %error, "cannot remove a stale pod network")
                }
            }
        }
        removed
    }

    /// Removes the node bridge if no pod network is recorded (e.g. at a clean shutdown with no
    /// container pods left).
    pub async fn remove_bridge_if_unused(&self) -> Result<(), NetworkError> {
        if !self.recorded().is_empty()
            || !Path::new("/sys/class/net")
                .join(&self.config.bridge)
                .exists()
        {
            return Ok(());
        }
        run_ip(&["link", "delete", &self.config.bridge]).await
    }

    fn network_name(&self) -> String {
        format!("wharf-{}", self.config.bridge)
    }

    fn loopback_config(&self) -> Value {
        json!({"cniVersion": "1.0.0", "name": self.network_name(), "type": "loopback"})
    }

    fn bridge_config(&self) -> Value {
        bridge_config(&self.network_name(), &self.config)
    }

    /// Runs one CNI plugin; returns its result.
    async fn plugin(
        &self,
        command: &str,
        config: &Value,
        pod_uid: &str,
        netns: &Path,
    ) -> Result<Value, NetworkError> {
        let kind = config["type"].as_str().unwrap_or("?").to_owned();
        let what = format!("CNI {command} of the {kind} plugin");
        let failed = |detail: String| NetworkError::Failed {
            what: what.clone(),
            detail,
        };
        let mut child = Command::new(self.config.plugin_dir.join(&kind))
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", pod_uid)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", POD_INTERFACE)
            .env("CNI_PATH", &self.config.plugin_dir)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| failed(e.to_string()))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin
            .write_all(config.to_string().as_bytes())
            .await
            .map_err(|e| failed(e.to_string()))?;
        drop(stdin);
        let output = child
            .wait_with_output()
            .await
            .map_err(|e| failed(e.to_string()))?;
        let result: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
        if !output.status.success() {
            let message = result["msg"]
                .as_str()
                .map(|msg| match result["details"].as_str() {
                    Some(details) if !details.is_empty() => format!("{msg}: {details}"),
                    _ => msg.to_owned(),
                })
                .unwrap_or_else(|| String::from_utf8_lossy(&output.stderr).trim().to_owned());
            return Err(failed(message));
        }
        Ok(result)
    }
}

/// Addresses of the node itself on a bridge of their own (next to the pod bridge, which the CNI
/// plugin wants to hold only the pods' gateway address): Services' cluster IPs, so that the
/// gateway can listen on them, the node reaches them locally and pods through their default
/// route. The bridge is created with the first address and removed with the last.
#[derive(Debug)]
pub struct BridgeAddresses {
    bridge: String,
    held: std::sync::Mutex<HashSet<IpAddr>>,
}

impl BridgeAddresses {
    /// Addresses on a bridge named after the pod bridge `pod_bridge` (`wharf0` → `wharf0-svc`,
    /// cut to the 15 characters an interface name may have).
    pub fn new(pod_bridge: &str) -> BridgeAddresses {
        let mut bridge = format!("{pod_bridge}-svc");
        if bridge.len() > 15 {
            bridge = format!("{}s", &pod_bridge[..pod_bridge.len().min(14)]);
        }
        BridgeAddresses {
            bridge,
            held: std::sync::Mutex::new(HashSet::new()),
        }
    }

    /// The bridge's name.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    fn bridge_exists(&self) -> bool {
        Path::new("/sys/class/net").join(&self.bridge).exists()
    }

    /// Adds `ip` (as a /32) to the bridge, creating the bridge if needed.
    pub fn add(&self, ip: IpAddr) -> Result<(), NetworkError> {
        if !self.bridge_exists() {
            let created = run_ip_blocking(&["link", "add", &self.bridge, "type", "bridge"]);
            // Another party (the CNI plugin) may have created it meanwhile.
            if created.is_err() && !self.bridge_exists() {
                return created;
            }
        }
        run_ip_blocking(&["link", "set", &self.bridge, "up"])?;
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        let address = format!("{ip}/{prefix}");
        match run_ip_blocking(&["addr", "add", &address, "dev", &self.bridge]) {
            Err(NetworkError::Failed { detail, .. }) if detail.contains("exists") => {}
            other => other?,
        }
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ip);
        Ok(())
    }

    /// Removes `ip` from the bridge; removes the bridge once it holds nothing.
    pub fn remove(&self, ip: IpAddr) {
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        let _ = run_ip_blocking(&[
            "addr",
            "del",
            &format!("{ip}/{prefix}"),
            "dev",
            &self.bridge,
        ]);
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.remove(&ip);
        if held.is_empty() && self.bridge_exists() {
            let _ = run_ip_blocking(&["link", "delete", &self.bridge]);
        }
    }
}

fn run_ip_blocking(args: &[&str]) -> Result<(), NetworkError> {
    let ip = find_program("ip")
        .ok_or_else(|| NetworkError::Missing("the `ip` command is missing".into()))?;
    let output = std::process::Command::new(ip)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| NetworkError::Failed {
            what: format!("ip {}", args.join(" ")),
            detail: e.to_string(),
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(NetworkError::Failed {
            what: format!("ip {}", args.join(" ")),
            detail: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// The namespace name of a pod (`ip netns` shows it).
pub fn netns_name(pod_uid: &str) -> String {
    format!("wharf-{pod_uid}")
}

/// The `bridge` plugin's configuration: the node bridge as the pods' gateway, addresses from
/// `host-local`, no masquerading (pods talk to the node and to each other).
fn bridge_config(name: &str, config: &NetworkConfig) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": name,
        "type": "bridge",
        "bridge": config.bridge,
        "isGateway": true,
        "ipMasq": false,
        "hairpinMode": true,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": config.subnet}]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": config.state_dir.join("ipam"),
        },
    })
}

/// The pod's address from a CNI result (`ips[0].address`, `10.88.0.5/16`).
fn pod_ip(result: &Value) -> Option<IpAddr> {
    result["ips"]
        .as_array()?
        .iter()
        .filter_map(|ip| ip["address"].as_str())
        .filter_map(|address| address.split('/').next()?.parse().ok())
        .next()
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

async fn run_ip(args: &[&str]) -> Result<(), NetworkError> {
    let ip = find_program("ip")
        .ok_or_else(|| NetworkError::Missing("the `ip` command is missing".into()))?;
    let output = Command::new(ip)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| NetworkError::Failed {
            what: format!("ip {}", args.join(" ")),
            detail: e.to_string(),
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(NetworkError::Failed {
            what: format!("ip {}", args.join(" ")),
            detail: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pod_ip_is_read_from_a_cni_result() {
        let result = json!({"cniVersion": "1.0.0",
            "ips": [{"interface": 2, "address": "10.88.0.7/16", "gateway": "10.88.0.1"}]});
        assert_eq!(pod_ip(&result), Some("10.88.0.7".parse().unwrap()));
        assert_eq!(pod_ip(&json!({"ips": []})), None);
        assert_eq!(pod_ip(&json!({})), None);
    }

    #[test]
    fn the_bridge_configuration_keeps_addresses_under_the_state_directory() {
        let config = NetworkConfig {
            plugin_dir: DEFAULT_PLUGIN_DIR.into(),
            bridge: "wharf0".into(),
            subnet: "10.88.0.0/16".into(),
            state_dir: "/data/network".into(),
        };
        let value = bridge_config("wharf-wharf0", &config);
        assert_eq!(value["bridge"], "wharf0");
        assert_eq!(value["ipMasq"], false);
        assert_eq!(value["ipam"]["dataDir"], "/data/network/ipam");
        assert_eq!(value["ipam"]["ranges"][0][0]["subnet"], "10.88.0.0/16");
    }
}
