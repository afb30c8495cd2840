//! Client verbs for people without kubectl: `apply`, `get`, `delete`. They talk to the API over
//! HTTP exactly like any other client.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use wharf_apiserver::resources::{self, Resource};

use crate::kubeconfig;

/// Where the API is and which namespace to use.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// Path to a kubeconfig (default: $KUBECONFIG, else .wharf/kubeconfig).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// API server URL; overrides the kubeconfig.
    #[arg(long, global = true)]
    server: Option<String>,
    /// Namespace (default: the kubeconfig's, else `default`).
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
}

struct Api {
    http: reqwest::Client,
    base: String,
    namespace: String,
}

impl Target {
    fn connect(&self) -> Result<Api> {
        let (base, namespace) = match &self.server {
            Some(server) => (
                server.trim_end_matches('/').to_owned(),
                "default".to_owned(),
            ),
            None => {
                let path = self
                    .kubeconfig
                    .clone()
                    .or_else(|| std::env::var_os("KUBECONFIG").map(PathBuf::from))
                    .unwrap_or_else(|| PathBuf::from(".wharf/kubeconfig"));
                kubeconfig::read_server(&path).with_context(|| {
                    "no Wharf to talk to: start one with `wharf up`, or pass --server/--kubeconfig"
                })?
            }
        };
        Ok(Api {
            http: reqwest::Client::new(),
            base,
            namespace: self.namespace.clone().unwrap_or(namespace),
        })
    }
}

impl Api {
    fn path(&self, resource: &Resource, namespace: Option<&str>, name: Option<&str>) -> String {
        let mut path = if resource.group.is_empty() {
            format!("{}/api/{}", self.base, resource.version)
        } else {
            format!("{}/apis/{}/{}", self.base, resource.group, resource.version)
        };
        if resource.namespaced
            && let Some(ns) = namespace
        {
            path.push_str(&format!("/namespaces/{ns}"));
        }
        path.push('/');
        path.push_str(resource.plural);
        if let Some(name) = name {
            path.push('/');
            path.push_str(name);
        }
        path
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        content_type: Option<&str>,
        accept: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Value)> {
        let mut request = self
            .http
            .request(method, url)
            .header(reqwest::header::ACCEPT, accept);
        if let Some(ct) = content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, ct);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the Wharf API at {}", self.base))?;
        let status = response.status();
        let bytes = response.bytes().await?;
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, value))
    }
}

/// The error message of a `kind: Status` body, or the HTTP status.
fn status_error(code: StatusCode, body: &Value) -> anyhow::Error {
    match body["message"].as_str() {
        Some(message) => anyhow!(
            "{} ({}): {message}",
            body["reason"].as_str().unwrap_or("Error"),
            code.as_u16()
        ),
        None => anyhow!("the API answered {code}"),
    }
}

/// Reads every object from files, directories (`.yaml`, `.yml`, `.json`) or stdin (`-`).
fn read_objects(paths: &[PathBuf]) -> Result<Vec<Value>> {
    let mut objects = Vec::new();
    for path in paths {
        if path == Path::new("-") {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            objects.extend(parse_documents(&text, "stdin")?);
        } else if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension()
                        .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
                })
                .collect();
            entries.sort();
            for entry in entries {
                let text = std::fs::read_to_string(&entry)
                    .with_context(|| format!("cannot read {}", entry.display()))?;
                objects.extend(parse_documents(&text, &entry.display().to_string())?);
            }
        } else {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            objects.extend(parse_documents(&text, &path.display().to_string())?);
        }
    }
    Ok(objects)
}

/// Parses a multi-document YAML (or JSON) text; `List` objects are expanded.
fn parse_documents(text: &str, origin: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(document)
            .with_context(|| format!("{origin}: document {} is not valid YAML", index + 1))?;
        match value {
            Value::Null => {}
            Value::Object(_) if value["kind"] == "List" => {
                out.extend(value["items"].as_array().cloned().unwrap_or_default());
            }
            Value::Object(_) => out.push(value),
            _ => bail!("{origin}: document {} is not an object", index + 1),
        }
    }
    Ok(out)
}

fn resource_of(object: &Value) -> Result<&'static Resource> {
    let api_version = object["apiVersion"].as_str().unwrap_or("");
    let kind = object["kind"].as_str().unwrap_or("");
    if api_version.is_empty() || kind.is_empty() {
        bail!("an object has no apiVersion or kind");
    }
    resources::find_kind(api_version, kind)
        .ok_or_else(|| anyhow!("no kind {kind:?} is served in version {api_version:?}"))
}

/// How kubectl names an object in its messages: `deployment.apps/web`, `configmap/c`.
fn describe(resource: &Resource, name: &str) -> String {
    if resource.group.is_empty() {
        format!("{}/{name}", resource.singular)
    } else {
        format!("{}.{}/{name}", resource.singular, resource.group)
    }
}

/// `wharf apply -f`: create what is missing, update what exists (server-side apply).
pub async fn apply(target: &Target, paths: &[PathBuf]) -> Result<()> {
    let api = target.connect()?;
    let objects = read_objects(paths)?;
    if objects.is_empty() {
        bail!("no objects found in {paths:?}");
    }
    for object in objects {
        let resource = resource_of(&object)?;
        let name = object["metadata"]["name"]
            .as_str()
            .ok_or_else(|| anyhow!("a {} has no metadata.name", resource.kind))?
            .to_owned();
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or(&api.namespace)
            .to_owned();
        let url = api.path(resource, Some(&namespace), Some(&name));
        let (before, _) = api
            .send(Method::GET, &url, None, "application/json", None)
            .await?;
        let body = serde_json::to_vec(&object)?;
        let (code, answer) = api
            .send(
                Method::PATCH,
                &format!("{url}?fieldManager=wharf"),
                Some("application/apply-patch+yaml"),
                "application/json",
                Some(body),
            )
            .await?;
        if !code.is_success() {
            return Err(status_error(code, &answer)
                .context(format!("applying {}", describe(resource, &name))));
        }
        let verb = if before == StatusCode::NOT_FOUND {
            "created"
        } else {
            "configured"
        };
        println!("{} {verb}", describe(resource, &name));
    }
    Ok(())
}

fn resolve_kind(kind: &str) -> Result<&'static Resource> {
    resources::find_by_user_name(kind)
        .ok_or_else(|| anyhow!("the server doesn't have a resource type {kind:?}"))
}

/// `wharf get KIND [NAME]`.
pub async fn get(
    target: &Target,
    kind: &str,
    name: Option<&str>,
    output: &str,
    all_namespaces: bool,
    selector: Option<&str>,
) -> Result<()> {
    let api = target.connect()?;
    let resource = resolve_kind(kind)?;
    let namespace = (!all_namespaces).then_some(api.namespace.as_str());
    let mut url = api.path(resource, namespace, name);
    if let Some(selector) = selector {
        url.push_str(&format!(
            "?labelSelector={}",
            form_urlencoded::byte_serialize(selector.as_bytes()).collect::<String>()
        ));
    }
    let accept = if output == "table" {
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    } else {
        "application/json"
    };
    let (code, body) = api.send(Method::GET, &url, None, accept, None).await?;
    if !code.is_success() {
        return Err(status_error(code, &body));
    }
    match output {
        "json" => println!("{}", serde_json::to_string_pretty(&body)?),
        "yaml" => print!("{}", serde_yaml::to_string(&body)?),
        "name" => {
            let items = body["items"]
                .as_array()
                .cloned()
                .unwrap_or_else(|| vec![body.clone()]);
            for item in items {
                println!(
                    "{}",
                    describe(resource, item["metadata"]["name"].as_str().unwrap_or(""))
                );
            }
        }
        "table" => print_table(&body, all_namespaces),
        other => bail!("unknown output format {other:?}: use table, json, yaml or name"),
    }
    Ok(())
}

fn print_table(table: &Value, with_namespace: bool) {
    let columns: Vec<&Value> = table["columnDefinitions"]
        .as_array()
        .map(|c| c.iter().filter(|c| c["priority"] == 0).collect())
        .unwrap_or_default();
    let rows = table["rows"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        eprintln!("No resources found.");
        return;
    }
    let mut lines: Vec<Vec<String>> = Vec::new();
    let mut header: Vec<String> = columns
        .iter()
        .map(|c| c["name"].as_str().unwrap_or("").to_ascii_uppercase())
        .collect();
    if with_namespace {
        header.insert(0, "NAMESPACE".into());
    }
    lines.push(header);
    for row in &rows {
        let all = table["columnDefinitions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut cells: Vec<String> = row["cells"]
            .as_array()
            .map(|cells| {
                cells
                    .iter()
                    .zip(&all)
                    .filter(|(_, c)| c["priority"] == 0)
                    .map(|(cell, _)| match cell {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        if with_namespace {
            let ns = row["object"]["metadata"]["namespace"]
                .as_str()
                .unwrap_or("");
            cells.insert(0, ns.to_owned());
        }
        lines.push(cells);
    }
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|i| {
            lines
                .iter()
                .map(|l| l.get(i).map_or(0, String::len))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for line in lines {
        let text: Vec<String> = line
            .iter()
            .enumerate()
            .map(|(i, cell)| format!("{cell:<width$}", width = widths[i]))
            .collect();
        println!("{}", text.join("   ").trim_end());
    }
}

/// The artifact name a file is pushed as by default: its stem, tag `latest`.
fn default_reference(file: &Path) -> String {
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("app")
        .to_lowercase();
    format!("{stem}:latest")
}

/// `wharf push FILE [--name NAME:TAG]`: uploads a Wasm artifact; returns its reference.
pub async fn push(target: &Target, file: &Path, name: Option<&str>) -> Result<String> {
    let api = target.connect()?;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let reference = name.map_or_else(|| default_reference(file), str::to_owned);
    let url = format!("{}/wharf/v1/artifacts/{reference}", api.base);
    let response = api
        .http
        .put(&url)
        .header(reqwest::header::CONTENT_TYPE, "application/wasm")
        .body(bytes)
        .send()
        .await
        .with_context(|| format!("cannot reach the Wharf API at {}", api.base))?;
    let code = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !code.is_success() {
        return Err(status_error(code, &body).context(format!("pushing {}", file.display())));
    }
    println!(
        "pushed {reference} ({}, {} bytes, {})",
        body["kind"].as_str().unwrap_or("wasm"),
        body["size"],
        body["digest"].as_str().unwrap_or("")
    );
    Ok(reference)
}

/// The image name recorded in an OCI image archive (`io.containerd.image.name`, else
/// `org.opencontainers.image.ref.name`).
fn archive_image_name(file: &Path) -> Result<String> {
    let archive =
        std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
    let not_an_archive = || format!("{} is not an OCI image archive (a tar)", file.display());
    let mut archive = tar::Archive::new(archive);
    for entry in archive.entries().with_context(not_an_archive)? {
        let mut entry = entry.with_context(not_an_archive)?;
        if entry.path()?.to_str() == Some("index.json") {
            let mut text = String::new();
            entry.read_to_string(&mut text)?;
            let index: Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: index.json is not JSON", file.display()))?;
            let annotations = &index["manifests"][0]["annotations"];
            return annotations["io.containerd.image.name"]
                .as_str()
                .or_else(|| annotations["org.opencontainers.image.ref.name"].as_str())
                .map(str::to_owned)
                .ok_or_else(|| {
                    anyhow!(
                        "{}: the archive names no image; pass --name",
                        file.display()
                    )
                });
        }
    }
    bail!(
        "{} is not an OCI image archive (no index.json)",
        file.display()
    )
}

/// `wharf image import FILE [--name NAME:TAG]`.
pub async fn image_import(target: &Target, file: &Path, name: Option<&str>) -> Result<()> {
    let name = match name {
        Some(name) => name.to_owned(),
        None => archive_image_name(file)?,
    };
    push(target, file, Some(&name)).await.map(drop)
}

/// `wharf logs POD [-c CONTAINER] [-f]`.
pub async fn logs(target: &Target, pod: &str, container: Option<&str>, follow: bool) -> Result<()> {
    use futures::StreamExt;
    use std::io::Write;
    let api = target.connect()?;
    let pods = resolve_kind("pods")?;
    let mut url = format!(
        "{}/log?follow={follow}",
        api.path(pods, Some(&api.namespace), Some(pod))
    );
    if let Some(container) = container {
        url.push_str(&format!("&container={container}"));
    }
    let response = api
        .http
        .get(&url)
        .send()
        .await
        .with_context(|| format!("cannot reach the Wharf API at {}", api.base))?;
    let code = response.status();
    if !code.is_success() {
        let body: Value = response.json().await.unwrap_or(Value::Null);
        return Err(status_error(code, &body));
    }
    let mut stream = response.bytes_stream();
    let mut stdout = std::io::stdout();
    while let Some(chunk) = stream.next().await {
        stdout.write_all(&chunk?)?;
        stdout.flush()?;
    }
    Ok(())
}

/// `wharf deploy app.wasm`: push, then a Deployment and a NodePort Service; prints the URL.
pub async fn deploy(target: &Target, file: &Path, name: Option<&str>, replicas: u32) -> Result<()> {
    let reference = push(target, file, name.map(|n| format!("{n}:latest")).as_deref()).await?;
    let app = reference.split(':').next().unwrap_or("app").to_owned();
    let api = target.connect()?;
    let deployment = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": app, "labels": {"app": app}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": {"app": app}},
                "spec": {
                    "runtimeClassName": "wasmtime",
                    "containers": [{"name": app, "image": reference, "ports": [{"containerPort": 8080}]}]
                }
            }
        }
    });
    let service = serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": app},
        "spec": {"type": "NodePort", "selector": {"app": app}, "ports": [{"port": 8080, "targetPort": 8080}]}
    });
    let mut created_service = Value::Null;
    for object in [deployment, service] {
        let resource = resource_of(&object)?;
        let url = format!(
            "{}?fieldManager=wharf",
            api.path(resource, Some(&api.namespace), Some(&app))
        );
        let (code, answer) = api
            .send(
                Method::PATCH,
                &url,
                Some("application/apply-patch+yaml"),
                "application/json",
                Some(serde_json::to_vec(&object)?),
            )
            .await?;
        if !code.is_success() {
            return Err(status_error(code, &answer)
                .context(format!("creating {}", describe(resource, &app))));
        }
        println!("{} configured", describe(resource, &app));
        if resource.kind == "Service" {
            created_service = answer;
        }
    }
    let node_port = created_service["spec"]["ports"][0]["nodePort"].clone();
    let (_, nodes) = api
        .send(
            Method::GET,
            &format!("{}/api/v1/nodes", api.base),
            None,
            "application/json",
            None,
        )
        .await?;
    let ip = nodes["items"][0]["status"]["addresses"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP"))
        .and_then(|a| a["address"].as_str())
        .unwrap_or("127.0.0.1")
        .to_owned();
    println!("{app} is deployed: curl http://{ip}:{node_port}/");
    Ok(())
}

/// `wharf delete KIND NAME...` or `wharf delete -f FILE`.
pub async fn delete(
    target: &Target,
    args: &[String],
    files: &[PathBuf],
    propagation_policy: Option<&str>,
) -> Result<()> {
    let api = target.connect()?;
    let mut victims: Vec<(&'static Resource, String, String)> = Vec::new();
    if !files.is_empty() {
        for object in read_objects(files)? {
            let resource = resource_of(&object)?;
            let name = object["metadata"]["name"].as_str().unwrap_or("").to_owned();
            let namespace = object["metadata"]["namespace"]
                .as_str()
                .unwrap_or(&api.namespace)
                .to_owned();
            victims.push((resource, namespace, name));
        }
    } else {
        let (kind, names) = args
            .split_first()
            .ok_or_else(|| anyhow!("usage: wharf delete KIND NAME... | -f FILE"))?;
        if names.is_empty() {
            bail!("name which object of {kind} to delete");
        }
        let resource = resolve_kind(kind)?;
        for name in names {
            victims.push((resource, api.namespace.clone(), name.clone()));
        }
    }
    let body = propagation_policy
        .map(|p| serde_json::to_vec(&serde_json::json!({"propagationPolicy": p})))
        .transpose()?;
    let mut failed = false;
    for (resource, namespace, name) in victims {
        let url = api.path(resource, Some(&namespace), Some(&name));
        let (code, answer) = api
            .send(
                Method::DELETE,
                &url,
                Some("application/json"),
                "application/json",
                body.clone(),
            )
            .await?;
        if code.is_success() {
            println!("{} deleted", describe(resource, &name));
        } else {
            eprintln!("Error: {}", status_error(code, &answer));
            failed = true;
        }
    }
    if failed {
        bail!("some objects could not be deleted");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml_and_lists_expand_to_objects() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\nkind: List\napiVersion: v1\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n";
        let objects = parse_documents(text, "test").unwrap();
        let names: Vec<_> = objects
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn malformed_yaml_names_the_document() {
        let err = parse_documents("a: 1\n---\nb: [unclosed\n", "f.yaml").unwrap_err();
        assert!(format!("{err:#}").contains("f.yaml: document 2"), "{err:#}");
    }

    #[test]
    fn objects_are_described_by_singular_kind() {
        let deployments = resources::find("apps", "v1", "deployments").unwrap();
        let configmaps = resources::find("", "v1", "configmaps").unwrap();
        let ingresses = resources::find("networking.k8s.io", "v1", "ingresses").unwrap();
        assert_eq!(describe(deployments, "web"), "deployment.apps/web");
        assert_eq!(describe(configmaps, "c"), "configmap/c");
        assert_eq!(describe(ingresses, "i"), "ingress.networking.k8s.io/i");
    }
}
