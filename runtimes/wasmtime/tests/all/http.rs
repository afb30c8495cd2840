//! In-process `wasi:http`: the hello-http sample served through the runtime's handler, a fresh
//! instance per request, failures confined to their request.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use wharf_runtime::conformance::config;
use wharf_runtime::{Body, HttpHandler, Runtime, Signal};

use crate::runtime;

fn get(path: &str) -> http::Request<Body> {
    http::Request::builder()
        .uri(format!("http://hello.local{path}"))
        .body(
            Empty::<Bytes>::new()
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .unwrap()
}

async fn call(handler: &dyn HttpHandler, path: &str) -> (u16, String) {
    let response = handler.handle(get(path)).await;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasi_http_component_serves_requests_and_failures_stay_in_their_request() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path(), &dir.path().join("cache"));
    runtime.prepare("hello-http:latest").await.unwrap();
    let mut config = config("web", "hello-http:latest", dir.path());
    config.env = vec![("GREETING".into(), "hi from the test".into())];
    config.request_timeout = Duration::from_millis(500);
    let log_path = config.log_path.clone();
    runtime.create(config).await.unwrap();
    assert!(
        runtime.http_handler("web").is_none(),
        "not serving before start"
    );
    runtime.start("web").await.unwrap();
    let handler = runtime
        .http_handler("web")
        .expect("an HTTP container has a handler");

    let (status, body) = call(handler.as_ref(), "/").await;
    assert_eq!(status, 200);
    assert!(body.contains("hi from the test"), "{body}");
    let (status, body) = call(handler.as_ref(), "/env/GREETING").await;
    assert_eq!((status, body.trim()), (200, "hi from the test"));
    assert_eq!(call(handler.as_ref(), "/status/418").await.0, 418);

    // A panicking request is a 500; the next one is served by a fresh instance.
    let (status, _) = call(handler.as_ref(), "/panic").await;
    assert_eq!(status, 500);
    assert_eq!(call(handler.as_ref(), "/").await.0, 200);

    // A request that runs past its deadline is stopped with a 504.
    let (status, body) = call(handler.as_ref(), "/work/5000").await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(call(handler.as_ref(), "/").await.0, 200);

    // Concurrent requests each get their own instance.
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let handler = handler.clone();
        tasks.push(tokio::spawn(
            async move { call(handler.as_ref(), "/").await.0 },
        ));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains(" stdout "), "guest output is logged: {log}");
    assert!(log.contains("request failed"), "failures are logged: {log}");

    runtime.kill("web", Signal::Terminate).await.unwrap();
    let exit = runtime.wait("web").await.unwrap();
    assert_eq!((exit.code, exit.reason.as_str()), (0, "Completed"));
    assert!(
        runtime.http_handler("web").is_none(),
        "a stopped container serves nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_container_reports_the_cpu_and_memory_of_its_requests() {
    use wharf_runtime::conformance::stats_until;
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path(), &dir.path().join("cache"));
    runtime.prepare("hello-http:latest").await.unwrap();
    runtime
        .create(config("busy-web", "hello-http:latest", dir.path()))
        .await
        .unwrap();
    assert_eq!(
        runtime.stats("busy-web").await.unwrap(),
        Default::default(),
        "a created container has used nothing"
    );
    runtime.start("busy-web").await.unwrap();
    let handler = runtime.http_handler("busy-web").unwrap();
    let idle = runtime.stats("busy-web").await.unwrap();
    assert_eq!(idle.memory_bytes, 0, "no instance lives between requests");

    // While a request burns CPU, its instance holds memory and the CPU time grows.
    let request = tokio::spawn({
        let handler = handler.clone();
        async move { call(handler.as_ref(), "/work/1500").await }
    });
    let limit = Duration::from_secs(10);
    let busy = stats_until(&runtime, "busy-web", limit, |s| {
        s.memory_bytes > 0 && s.cpu_usage_ns >= idle.cpu_usage_ns + 200_000_000
    })
    .await;
    let (status, body) = request.await.unwrap();
    assert_eq!(status, 200, "{body}");

    // Once the request is over its instance is gone: no memory, and the CPU time stays.
    let done = stats_until(&runtime, "busy-web", limit, |s| s.memory_bytes == 0).await;
    assert!(
        done.cpu_usage_ns >= busy.cpu_usage_ns,
        "{done:?} after {busy:?}"
    );

    // A cheap request costs far less CPU than a busy one.
    let before = runtime.stats("busy-web").await.unwrap();
    assert_eq!(call(handler.as_ref(), "/").await.0, 200);
    let after = stats_until(&runtime, "busy-web", limit, |s| s.memory_bytes == 0).await;
    let cheap = after.cpu_usage_ns - before.cpu_usage_ns;
    assert!(
        cheap > 0,
        "the request's instantiation and handling are counted"
    );
    assert!(cheap < 100_000_000, "a hello costs {cheap} ns of CPU");

    runtime.kill("busy-web", Signal::Terminate).await.unwrap();
    runtime.wait("busy-web").await.unwrap();
    let exited = runtime.stats("busy-web").await.unwrap();
    assert_eq!(
        exited.cpu_usage_ns, after.cpu_usage_ns,
        "an exited container keeps its CPU time"
    );
    runtime.delete("busy-web").await.unwrap();
    assert!(matches!(
        runtime.stats("busy-web").await,
        Err(wharf_runtime::RuntimeError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_gives_its_memory_back_when_it_exits() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path(), &dir.path().join("cache"));
    runtime.prepare("hello-job:latest").await.unwrap();
    runtime
        .create(config("job", "hello-job:latest", dir.path()))
        .await
        .unwrap();
    runtime.start("job").await.unwrap();
    let exit = runtime.wait("job").await.unwrap();
    assert_eq!(exit.code, 0);
    let stats = runtime.stats("job").await.unwrap();
    assert_eq!(stats.memory_bytes, 0, "{stats:?}");
    assert!(stats.cpu_usage_ns > 0, "{stats:?}");
}
