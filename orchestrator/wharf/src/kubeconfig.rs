//! Writing the kubeconfig that `wharf up` leaves in its data dir, and reading the server URL
//! back out of a kubeconfig for the client verbs.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use serde_json::Value;

/// The kubeconfig for a Wharf API server at `server_url` (no credentials: the API listens on
/// loopback by default).
pub fn render(server_url: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: wharf
  cluster:
    server: {server_url}
users:
- name: wharf-admin
  user: {{}}
contexts:
- name: wharf
  context:
    cluster: wharf
    user: wharf-admin
    namespace: default
current-context: wharf
preferences: {{}}
"
    )
}

/// Writes the kubeconfig atomically (write to a temporary file, then rename).
pub fn write(path: &Path, server_url: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, render(server_url))
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The server URL and default namespace of the current context of the kubeconfig at `path`.
pub fn read_server(path: &Path) -> Result<(String, String)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
    let config: Value = serde_yaml::from_str(&text)
        .with_context(|| format!("{} is not a valid kubeconfig", path.display()))?;
    let current = config["current-context"].as_str().unwrap_or("");
    let contexts = config["contexts"].as_array().cloned().unwrap_or_default();
    let context = contexts
        .iter()
        .find(|c| c["name"] == current)
        .or(contexts.first())
        .map(|c| c["context"].clone())
        .unwrap_or(Value::Null);
    let cluster_name = context["cluster"].as_str().unwrap_or("");
    let clusters = config["clusters"].as_array().cloned().unwrap_or_default();
    let cluster = clusters
        .iter()
        .find(|c| c["name"] == cluster_name)
        .or(clusters.first())
        .ok_or_else(|| anyhow!("{} names no cluster", path.display()))?;
    let server = cluster["cluster"]["server"]
        .as_str()
        .ok_or_else(|| anyhow!("{} has no cluster server URL", path.display()))?
        .trim_end_matches('/')
        .to_owned();
    let namespace = context["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_owned();
    Ok((server, namespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_kubeconfig_reads_back_its_server() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        write(&path, "http://127.0.0.1:6443").unwrap();
        let (server, namespace) = read_server(&path).unwrap();
        assert_eq!(server, "http://127.0.0.1:6443");
        assert_eq!(namespace, "default");
    }
}
