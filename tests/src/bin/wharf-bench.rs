//! Control-plane benchmarks, side by side with etcd in one run:
//!
//! - durable creates/s and p50/p99 latency with 1, 16 and 64 concurrent clients, against a
//!   Wharf API (`POST .../configmaps`) and against etcd (`POST /v3/kv/put` through its JSON
//!   gateway) with the same object bytes;
//! - watch delivery latency (p50/p99) from a create to 100 concurrent watchers.
//!
//! Prints one Markdown table row per measurement. `scripts/bench.sh` starts both servers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures::StreamExt;
use serde_json::{Value, json};
use wharf_e2e::bench::{ms, percentile};

#[derive(Parser, Debug)]
struct Args {
    /// Wharf API base URL.
    #[arg(long)]
    wharf: String,
    /// etcd client URL (omit to skip the reference).
    #[arg(long)]
    etcd: Option<String>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Client counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    clients: Vec<usize>,
    /// Watchers for the watch-latency measurement.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
}

struct LoadResult {
    ops: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl LoadResult {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
}

fn configmap(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "bench", "labels": {"app": "bench"}},
        "data": {"color": "blue", "size": "medium", "owner": "benchmarks"}
    })
}

/// Runs `clients` concurrent loops of `op` for `duration`.
async fn load<F, Fut>(clients: usize, duration: Duration, op: F) -> Result<LoadResult>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for client in 0..clients {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                op(client, i).await?;
                latencies.push(t.elapsed());
                i += 1;
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    Ok(LoadResult {
        ops: latencies.len(),
        elapsed,
        latencies,
    })
}

async fn wharf_creates(
    base: &str,
    clients: usize,
    duration: Duration,
    round: usize,
) -> Result<LoadResult> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let url = format!("{base}/api/v1/namespaces/bench/configmaps");
    load(clients, duration, move |client, i| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let body = serde_json::to_vec(&configmap(&format!("cm-{round}-{client}-{i}")))?;
            let response = http
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await?;
            if response.status().as_u16() != 201 {
                bail!("create answered {}", response.status());
            }
            response.bytes().await?;
            Ok(())
        }
    })
    .await
}

async fn etcd_puts(
    base: &str,
    clients: usize,
    duration: Duration,
    round: usize,
) -> Result<LoadResult> {
    use base64::Engine;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let url = format!("{base}/v3/kv/put");
    load(clients, duration, move |client, i| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let name = format!("cm-{round}-{client}-{i}");
            let key = format!("/registry/configmaps/bench/{name}");
            let value = serde_json::to_vec(&configmap(&name))?;
            let b64 = base64::engine::general_purpose::STANDARD;
            let body = json!({"key": b64.encode(key), "value": b64.encode(value)});
            let response = http.post(&url).json(&body).send().await?;
            if !response.status().is_success() {
                bail!("etcd put answered {}", response.status());
            }
            response.bytes().await?;
            Ok(())
        }
    })
    .await
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Creates objects carrying their send time while `watchers` watches receive them; returns the
/// delivery latencies of every (event, watcher) pair.
async fn watch_latency(
    base: &str,
    watchers: usize,
    duration: Duration,
) -> Result<(Vec<Duration>, usize)> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .build()?;
    let list: Value = http
        .get(format!("{base}/api/v1/namespaces/bench-watch/configmaps"))
        .send()
        .await?
        .json()
        .await?;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .context("list without resourceVersion")?
        .to_owned();
    let received = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let url = format!(
            "{base}/api/v1/namespaces/bench-watch/configmaps?watch=true&resourceVersion={rv}"
        );
        let http = http.clone();
        let received = received.clone();
        tasks.push(tokio::spawn(async move {
            let response = http.get(&url).send().await?;
            let mut stream = response.bytes_stream();
            let mut buffer = Vec::new();
            let mut latencies = Vec::new();
            while let Some(chunk) = stream.next().await {
                buffer.extend_from_slice(&chunk?);
                while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    let event: Value = serde_json::from_slice(&line)?;
                    if event["object"]["metadata"]["name"] == "stop" {
                        return Ok::<_, anyhow::Error>(latencies);
                    }
                    if let Some(sent) = event["object"]["data"]["sent"]
                        .as_str()
                        .and_then(|s| s.parse::<u64>().ok())
                    {
                        latencies.push(Duration::from_micros(now_micros().saturating_sub(sent)));
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok(latencies)
        }));
    }
    // Let the watches connect.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let url = format!("{base}/api/v1/namespaces/bench-watch/configmaps");
    let deadline = Instant::now() + duration;
    let mut created = 0usize;
    while Instant::now() < deadline {
        let body = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("w-{created}")},
            "data": {"sent": now_micros().to_string()}
        });
        let response = http.post(&url).json(&body).send().await?;
        if response.status().as_u16() != 201 {
            bail!("create answered {}", response.status());
        }
        created += 1;
        // About 100 creates/s: each is fanned out to every watcher.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    http.post(&url)
        .json(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "stop"}}))
        .send()
        .await?;
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    all.sort_unstable();
    Ok((all, created))
}

async fn ensure_namespace(base: &str, name: &str) -> Result<()> {
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{base}/api/v1/namespaces"))
        .json(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
        .send()
        .await?;
    if !(response.status().is_success() || response.status().as_u16() == 409) {
        bail!("cannot create namespace {name}: {}", response.status());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let duration = Duration::from_secs(args.seconds);
    ensure_namespace(&args.wharf, "bench").await?;
    ensure_namespace(&args.wharf, "bench-watch").await?;
    for (round, clients) in args.clients.iter().copied().enumerate() {
        let wharf = wharf_creates(&args.wharf, clients, duration, round).await?;
        let etcd = match &args.etcd {
            Some(url) => Some(etcd_puts(url, clients, duration, round).await?),
            None => None,
        };
        let (etcd_rate, etcd_lat, ratio) = match &etcd {
            Some(e) => (
                format!("etcd 3.4: {:.0}/s", e.rate()),
                format!(
                    "p50 {} ms, p99 {} ms",
                    ms(percentile(&e.latencies, 0.5)),
                    ms(percentile(&e.latencies, 0.99))
                ),
                format!("{:.2}x", wharf.rate() / e.rate()),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        println!(
            "| durable creates, {clients} clients | {:.0}/s (p50 {} ms, p99 {} ms) | {etcd_rate} ({etcd_lat}) | {ratio} |",
            wharf.rate(),
            ms(percentile(&wharf.latencies, 0.5)),
            ms(percentile(&wharf.latencies, 0.99)),
        );
    }
    let (latencies, created) = watch_latency(&args.wharf, args.watchers, duration).await?;
    let expected = created * args.watchers;
    println!(
        "| watch delivery, {} watchers, {created} creates | p50 {} ms, p99 {} ms ({} of {expected} events) | - | - |",
        args.watchers,
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        latencies.len(),
    );
    if latencies.len() != expected {
        bail!(
            "watchers received {} events, expected {expected}",
            latencies.len()
        );
    }
    Ok(())
}
