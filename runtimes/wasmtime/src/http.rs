//! In-process HTTP for `wasi:http/incoming-handler` components: a fresh instance per request
//! (instantiation from the pooling allocator costs microseconds), a deadline per request, and
//! any guest failure — trap, panic, deadline, memory limit — turned into a 5xx for that request
//! alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wharf_runtime::logs::{LogFile, Stream};
use wharf_runtime::{Body, ContainerConfig, HttpHandler};

use crate::host::{self, Host};
use crate::usage::{CpuTimed, Usage};

/// Serves one running HTTP container.
pub struct ProxyHandler {
    pre: ProxyPre<Host>,
    config: ContainerConfig,
    log: Arc<LogFile>,
    /// Requests handled so far.
    pub requests: AtomicU64,
    /// Requests that ended in a guest failure.
    pub failures: AtomicU64,
    /// The container's CPU time and memory, which every request's instance counts in.
    usage: Arc<Usage>,
}

impl ProxyHandler {
    /// A handler for a prepared component and its container's config, counting the CPU time
    /// and memory of its requests in `usage`.
    pub fn new(
        pre: ProxyPre<Host>,
        config: ContainerConfig,
        log: Arc<LogFile>,
        usage: Arc<Usage>,
    ) -> ProxyHandler {
        ProxyHandler {
            pre,
            config,
            log,
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            usage,
        }
    }

    async fn serve(&self, request: http::Request<Body>) -> Result<http::Response<Body>, String> {
        let host = host::component_host(&self.config, &self.log, self.usage.clone(), None)?;
        let mut store = Store::new(self.pre.engine(), host);
        store.limiter(|h| &mut h.limiter);
        let deadline = Instant::now() + self.config.request_timeout;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(wasmtime::format_err!("the request deadline was exceeded"))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        let request = request.map(|body| {
            body.map_err(|e| wasmtime_wasi_http::Error::InternalError(Some(e.to_string())))
        });
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let (incoming, outparam) = {
            let mut http = store.data_mut().http();
            let incoming = http
                .new_incoming_request(Scheme::Http, request)
                .map_err(|e| format!("{e:#}"))?;
            let outparam = http
                .new_response_outparam(sender)
                .map_err(|e| format!("{e:#}"))?;
            (incoming, outparam)
        };
        let pre = self.pre.clone();
        // The guest runs in its own task, so it may keep streaming the body after the
        // response head has been handed back. Its polls (instantiation and handling) are
        // charged to the container's CPU time.
        let guest = async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            let result = proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, incoming, outparam)
                .await;
            result.map_err(|e| {
                if store.data().limiter.refused {
                    e.context("the memory limit was reached")
                } else {
                    e
                }
            })
        };
        let task = tokio::spawn(CpuTimed::new(guest, self.usage.clone()));
        match receiver.await {
            Ok(Ok(response)) => Ok(response.map(|body| {
                body.map_err(|e| std::io::Error::other(format!("{e:?}")))
                    .boxed_unsync()
            })),
            Ok(Err(code)) => Err(format!("the guest answered with an error: {code:?}")),
            Err(_) => Err(match task.await {
                Ok(Ok(())) => "the guest returned without setting a response".to_owned(),
                Ok(Err(e)) => format!("{e:#}"),
                Err(e) => e.to_string(),
            }),
        }
    }
}

/// A plain-text response.
pub fn text_response(status: u16, text: String) -> http::Response<Body> {
    let body = Full::new(Bytes::from(text))
        .map_err(|never| match never {})
        .boxed_unsync();
    http::Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(body)
        .expect("a status code from 100 to 599 and a static header make a valid response")
}

#[async_trait]
impl HttpHandler for ProxyHandler {
    async fn handle(&self, request: http::Request<Body>) -> http::Response<Body> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        match self.serve(request).await {
            Ok(response) => response,
            Err(error) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                // The container's own log says why, as a crashed process's would.
                let mut stderr = self.log.writer(Stream::Stderr);
                stderr.write(format!("wharf: request failed: {error}\n").as_bytes());
                let status = if error.contains("deadline") { 504 } else { 500 };
                // The client gets the cause, not the guest's backtrace (that is in the log).
                let cause = error
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("");
                text_response(status, format!("the function failed: {}\n", cause.trim()))
            }
        }
    }
}
