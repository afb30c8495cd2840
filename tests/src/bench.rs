//! What the benchmark binaries share: a small client of Wharf's API and the statistics they
//! report.

use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::Value;

/// The `q`-quantile (0.0–1.0) of `sorted`, nearest rank; zero for no samples.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

/// p50 and p99 of a sample, sorted in place.
pub fn p50_p99(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort_unstable();
    (percentile(samples, 0.5), percentile(samples, 0.99))
}

/// Milliseconds for a table: two decimals below 10 ms, one above.
pub fn ms(d: Duration) -> String {
    if d < Duration::from_millis(10) {
        format!("{:.2}", d.as_secs_f64() * 1000.0)
    } else {
        format!("{:.1}", d.as_secs_f64() * 1000.0)
    }
}

/// Wharf's API over HTTP, as the benchmarks drive it.
pub struct Api {
    /// The client (its connections are reused).
    pub http: reqwest::Client,
    /// The API's base URL, e.g. `http://127.0.0.1:6443`.
    pub base: String,
}

impl Api {
    /// A client of the API at `base`.
    pub fn new(base: impl Into<String>) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: base.into().trim_end_matches('/').to_owned(),
        }
    }

    /// Sends `method` to `path` with `body` (of `content_type`), and returns the answer's JSON;
    /// a status other than 2xx is an error that carries the answer.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, Value)>,
    ) -> Result<Value> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some((content_type, body)) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body.to_string());
        }
        let response = request.send().await?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path}: {status}: {value}");
        }
        Ok(value)
    }

    /// [`Api::request`] with a JSON body, if any.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        self.request(method, path, body.map(|b| ("application/json", b)))
            .await
    }

    /// GETs `path`.
    pub async fn get(&self, path: &str) -> Result<Value> {
        self.send(reqwest::Method::GET, path, None).await
    }

    /// POSTs `object` to the collection `path`.
    pub async fn create(&self, path: &str, object: Value) -> Result<Value> {
        self.send(reqwest::Method::POST, path, Some(object)).await
    }

    /// Merge-patches the object at `path`.
    pub async fn merge_patch(&self, path: &str, patch: Value) -> Result<Value> {
        self.request(
            reqwest::Method::PATCH,
            path,
            Some(("application/merge-patch+json", patch)),
        )
        .await
    }

    /// What `wharf push` and `wharf image import` do: upload the bytes under a reference.
    pub async fn push(&self, reference: &str, bytes: Vec<u8>, content_type: &str) -> Result<()> {
        let response = self
            .http
            .put(format!("{}/wharf/v1/artifacts/{reference}", self.base))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes)
            .send()
            .await?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            bail!("push {reference}: {status}: {body}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank_and_survive_no_samples() {
        let mut samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(
            p50_p99(&mut samples),
            (Duration::from_millis(51), Duration::from_millis(99))
        );
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
        assert_eq!(ms(Duration::from_micros(1234)), "1.23");
        assert_eq!(ms(Duration::from_micros(12345)), "12.3");
    }
}
