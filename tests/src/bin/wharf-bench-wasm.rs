//! Wasm benchmarks, side by side in one run (scripts/bench.sh starts the servers):
//!
//! - hello-http through Wharf's gateway vs `wasmtime serve` on the same component and the same
//!   load (`wrk`, 64 connections): requests/s, p50/p99, and the ratio;
//! - Wasm pod create→Running p50/p99 with a cached artifact;
//! - the first request to a freshly started function;
//! - replicas: one Deployment of N replicas of one function, until all are ready;
//! - density: N distinct functions (each its own artifact, compiled separately), one replica
//!   each, all answering, and the resident memory each adds.
//!
//! Prints Markdown table rows.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::{Value, json};
use wharf_e2e::bench::{Api, ms, percentile};

#[derive(Parser, Debug)]
struct Args {
    /// Wharf API base URL.
    #[arg(long)]
    wharf: String,
    /// The gateway IP of that Wharf (NodePorts listen there).
    #[arg(long)]
    gateway_ip: String,
    /// The PID of the wharf process (for memory figures).
    #[arg(long)]
    wharf_pid: u32,
    /// `wasmtime serve` base URL serving the same component.
    #[arg(long)]
    wasmtime_serve: Option<String>,
    /// The hello-http component.
    #[arg(long)]
    component: std::path::PathBuf,
    /// Seconds of load per HTTP measurement.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Pods for the create→Running measurement.
    #[arg(long, default_value_t = 50)]
    pods: usize,
    /// Distinct functions for the density measurement (at most 2,600: one NodePort each).
    #[arg(long, default_value_t = 1000)]
    functions: usize,
    /// Replicas of the one-function Deployment.
    #[arg(long, default_value_t = 1000)]
    replicas: usize,
}

/// Throughput and latency as wrk reports them.
struct WrkResult {
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

fn parse_duration_ms(text: &str) -> Option<f64> {
    let text = text.trim();
    for (suffix, factor) in [("us", 0.001), ("ms", 1.0), ("s", 1000.0), ("m", 60_000.0)] {
        if let Some(number) = text.strip_suffix(suffix) {
            return number.parse::<f64>().ok().map(|n| n * factor);
        }
    }
    None
}

fn wrk(url: &str, seconds: u64) -> Result<WrkResult> {
    let output = Command::new("wrk")
        .args(["-t2", "-c64", &format!("-d{seconds}s"), "--latency", url])
        .output()
        .context("run wrk (Debian package wrk)")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let field = |prefix: &str| -> Option<String> {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .map(|l| l.trim_start()[prefix.len()..].trim().to_owned())
    };
    let requests_per_second = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no Requests/sec in wrk output: {text}"))?;
    let p50_ms = field("50%")
        .and_then(|v| parse_duration_ms(&v))
        .unwrap_or(0.0);
    let p99_ms = field("99%")
        .and_then(|v| parse_duration_ms(&v))
        .unwrap_or(0.0);
    let errors = text
        .lines()
        .find(|l| l.contains("Non-2xx or 3xx responses"))
        .and_then(|l| l.rsplit(':').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Ok(WrkResult {
        requests_per_second,
        p50_ms,
        p99_ms,
        errors,
    })
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn pod(name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"runtimeClassName": "wasmtime", "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "web", "image": image, "ports": [{"containerPort": 8080}]}]}
    })
}

fn service(name: &str, node_port: u16) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name},
        "spec": {"type": "NodePort", "selector": {"app": name},
                 "ports": [{"port": 8080, "targetPort": 8080, "nodePort": node_port}]}
    })
}

/// Waits until the pod is Running and Ready; returns when it became so.
async fn wait_running(api: &Api, name: &str, limit: Duration) -> Result<Instant> {
    let started = Instant::now();
    loop {
        let pod = api
            .send(
                reqwest::Method::GET,
                &format!("/api/v1/namespaces/default/pods/{name}"),
                None,
            )
            .await?;
        let ready = pod["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
        if ready {
            return Ok(Instant::now());
        }
        if started.elapsed() > limit {
            bail!("pod {name} not Running within {limit:?}: {}", pod["status"]);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A copy of a component that differs only by a custom section, so it has its own digest and
/// is compiled separately (a distinct function, as far as the node is concerned).
fn distinct_component(bytes: &[u8], tag: usize) -> Vec<u8> {
    let name = b"wharf-bench";
    let payload = tag.to_le_bytes();
    let mut section = vec![0u8]; // custom section id
    let len = 1 + name.len() + payload.len();
    section.push(len as u8);
    section.push(name.len() as u8);
    section.extend_from_slice(name);
    section.extend_from_slice(&payload);
    let mut out = bytes.to_vec();
    out.extend_from_slice(&section);
    out
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let api = Api::new(args.wharf.clone());
    let component = std::fs::read(&args.component)?;
    api.push("bench-http:latest", component.clone(), "application/wasm")
        .await?;

    // 1. Throughput through the gateway vs wasmtime serve.
    for i in 0..2 {
        api.send(
            reqwest::Method::POST,
            "/api/v1/namespaces/default/pods",
            Some(pod(&format!("bench-http-{i}"), "bench-http:latest")),
        )
        .await?;
    }
    let mut service_object = service("bench-http", 30001);
    service_object["spec"]["selector"] = json!({"bench": "http"});
    for i in 0..2 {
        let patch = json!({"metadata": {"labels": {"bench": "http"}}});
        api.http
            .patch(format!(
                "{}/api/v1/namespaces/default/pods/bench-http-{i}",
                api.base
            ))
            .header("content-type", "application/merge-patch+json")
            .body(patch.to_string())
            .send()
            .await?;
        wait_running(&api, &format!("bench-http-{i}"), Duration::from_secs(120)).await?;
    }
    api.send(
        reqwest::Method::POST,
        "/api/v1/namespaces/default/services",
        Some(service_object),
    )
    .await?;
    let gateway_url = format!("http://{}:30001/", args.gateway_ip);
    for _ in 0..100 {
        if reqwest::get(&gateway_url)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let wharf = wrk(&gateway_url, args.seconds)?;
    let serve = match &args.wasmtime_serve {
        Some(url) => Some(wrk(&format!("{url}/"), args.seconds)?),
        None => None,
    };
    let (peer, ratio) = match &serve {
        Some(s) => (
            format!(
                "wasmtime serve 48.0.8: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms",
                s.requests_per_second, s.p50_ms, s.p99_ms
            ),
            format!(
                "{:.2}x throughput, p99 {:.2}x",
                wharf.requests_per_second / s.requests_per_second,
                wharf.p99_ms / s.p99_ms.max(0.001)
            ),
        ),
        None => ("-".into(), "-".into()),
    };
    println!(
        "| hello-http, wrk 64 connections, {} s | {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} errors | {peer} | {ratio} |",
        args.seconds, wharf.requests_per_second, wharf.p50_ms, wharf.p99_ms, wharf.errors
    );

    // 2. Pod create→Running, artifact cached.
    let mut latencies = Vec::new();
    for i in 0..args.pods {
        let name = format!("bench-start-{i}");
        let started = Instant::now();
        api.send(
            reqwest::Method::POST,
            "/api/v1/namespaces/default/pods",
            Some(pod(&name, "bench-http:latest")),
        )
        .await?;
        let running = wait_running(&api, &name, Duration::from_secs(60)).await?;
        latencies.push(running - started);
        api.send(
            reqwest::Method::DELETE,
            &format!("/api/v1/namespaces/default/pods/{name}"),
            None,
        )
        .await?;
    }
    latencies.sort_unstable();
    println!(
        "| Wasm pod create→Running (Ready), cached artifact, {} pods one after another | p50 {} ms, p99 {} ms | - | - |",
        args.pods,
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99))
    );

    // 3. First request to a freshly started function (new pod, compiled code cached).
    api.send(
        reqwest::Method::POST,
        "/api/v1/namespaces/default/pods",
        Some(pod("bench-first", "bench-http:latest")),
    )
    .await?;
    api.send(
        reqwest::Method::POST,
        "/api/v1/namespaces/default/services",
        Some(service("bench-first", 30002)),
    )
    .await?;
    wait_running(&api, "bench-first", Duration::from_secs(60)).await?;
    let first_url = format!("http://{}:30002/", args.gateway_ip);
    let mut first = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while first.is_none() && Instant::now() < deadline {
        let t = Instant::now();
        if reqwest::get(&first_url)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            first = Some(t.elapsed());
        }
    }
    let t = Instant::now();
    reqwest::get(&first_url).await?;
    let second = t.elapsed();
    println!(
        "| first request to a fresh function (then the second) | {} ms (then {} ms) | - | - |",
        ms(first.context("the fresh function never answered")?),
        ms(second)
    );

    // 4. Density: distinct functions, one replica each, all answering.
    let before = rss_kib(args.wharf_pid);
    let started = Instant::now();
    for i in 0..args.functions {
        let name = format!("fn-{i}");
        api.push(
            &format!("{name}:latest"),
            distinct_component(&component, i),
            "application/wasm",
        )
        .await?;
        api.send(
            reqwest::Method::POST,
            "/api/v1/namespaces/default/pods",
            Some(pod(&name, &format!("{name}:latest"))),
        )
        .await?;
        api.send(
            reqwest::Method::POST,
            "/api/v1/namespaces/default/services",
            Some(service(&name, 30100 + i as u16)),
        )
        .await?;
    }
    for i in 0..args.functions {
        wait_running(&api, &format!("fn-{i}"), Duration::from_secs(600)).await?;
    }
    let deployed = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut answering = 0;
    for i in 0..args.functions {
        let url = format!("http://{}:{}/", args.gateway_ip, 30100 + i);
        if reqwest::get(&url)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            answering += 1;
        }
    }
    let after = rss_kib(args.wharf_pid);
    println!(
        "| density: {} distinct functions (own artifact, own compile), 1 replica each | {answering} answering; all Running {:.1} s after the first push; RSS +{} MiB, {:.0} KiB per function | - | - |",
        args.functions,
        deployed.as_secs_f64(),
        (after.saturating_sub(before)) / 1024,
        after.saturating_sub(before) as f64 / args.functions as f64
    );
    if answering != args.functions {
        bail!("only {answering} of {} functions answered", args.functions);
    }

    // 5. One Deployment of many replicas of one function, through the scheduler and the
    // ReplicaSet controller, until all are ready.
    let before = rss_kib(args.wharf_pid);
    let started = Instant::now();
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "bench-replicas"},
        "spec": {
            "replicas": args.replicas,
            "selector": {"matchLabels": {"bench": "replicas"}},
            "template": {
                "metadata": {"labels": {"bench": "replicas"}},
                "spec": {"containers": [{"name": "app", "image": "bench-http:latest"}]},
            },
        },
    });
    api.send(
        reqwest::Method::POST,
        "/apis/apps/v1/namespaces/default/deployments",
        Some(deployment),
    )
    .await?;
    loop {
        let status = api
            .http
            .get(format!(
                "{}/apis/apps/v1/namespaces/default/deployments/bench-replicas",
                api.base
            ))
            .send()
            .await?
            .json::<serde_json::Value>()
            .await?;
        if status["status"]["readyReplicas"].as_u64() == Some(args.replicas as u64) {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!(
                "the Deployment of {} replicas was not ready within 600 s",
                args.replicas
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = started.elapsed();
    let after = rss_kib(args.wharf_pid);
    println!(
        "| a Deployment of {} replicas of one function, create → all ready, one node | {:.1} s; RSS +{} MiB, {:.0} KiB per replica | - | - |",
        args.replicas,
        ready.as_secs_f64(),
        after.saturating_sub(before) / 1024,
        after.saturating_sub(before) as f64 / args.replicas as f64
    );
    Ok(())
}
