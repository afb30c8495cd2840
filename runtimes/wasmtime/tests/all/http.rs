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
