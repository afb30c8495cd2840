//! # hello-http — Wharf's sample HTTP function
//!
//! A `wasi:http/incoming-handler` component built with [`wharf_sdk`]. It speaks the small
//! protocol shared by all of Wharf's HTTP samples (the container sample answers the same):
//!
//! | request          | response                                                          |
//! |------------------|-------------------------------------------------------------------|
//! | `GET /`          | 200, the greeting: env `GREETING`, else `Hello from Wharf!`        |
//! | `/env/NAME`      | 200, the value of env var `NAME`; 404 if unset                     |
//! | `/file/PATH`     | 200, the contents of file `/PATH` (e.g. `/file/etc/hello/greeting`); 404 if unreadable |
//! | `/status/CODE`   | an empty reply with status `CODE` (200–599; else 400)              |
//! | `/work/MS`       | burns about `MS` ms of CPU (at most 600000), then 200              |
//! | `/panic`         | the guest panics: the host must answer that request with a 500    |
//! | anything else    | 404                                                               |
//!
//! Bodies are exactly the value (no added newline), `text/plain; charset=utf-8`. Every
//! request prints one line to stdout (`hello-http: GET / -> 200`), so `kubectl logs` shows it.
//!
//! Extras of this Wasm sample only (not part of the shared protocol): `/echo` answers the
//! request body (and content type) back; `/fetch?url=URL` fetches `URL` through the host's
//! `wasi:http/outgoing-handler` and answers its status and body (502 if it failed).

use std::time::{Duration, Instant};

use wharf_sdk::{Request, Response, config, http};

/// The greeting when env `GREETING` is unset.
pub const DEFAULT_GREETING: &str = "Hello from Wharf!";

/// The longest `/work/MS` accepted, in milliseconds.
pub const MAX_WORK_MS: u64 = 600_000;

/// The handler: answers one request and logs one line to stdout.
pub fn handle(req: Request) -> Response {
    if req.path() == "/panic" {
        println!(
            "hello-http: {} {} -> panic",
            req.method(),
            req.path_with_query()
        );
        panic!("hello-http: /panic requested");
    }
    let response = route(&req);
    println!(
        "hello-http: {} {} -> {}",
        req.method(),
        req.path_with_query(),
        response.status()
    );
    response
}

wharf_sdk::http_handler!(handle);

/// The protocol, without logging (see the crate docs).
pub fn route(req: &Request) -> Response {
    let path = req.path();
    if path == "/" {
        return Response::ok(config::env_or("GREETING", DEFAULT_GREETING));
    }
    if let Some(name) = path.strip_prefix("/env/") {
        let name = http::percent_decode(name);
        return match config::env(&name) {
            Some(value) => Response::ok(value),
            None => Response::text(404, format!("env {name} is not set\n")),
        };
    }
    if let Some(file) = path.strip_prefix("/file/") {
        let file = format!("/{}", http::percent_decode(file));
        return match config::read(&file) {
            Ok(contents) => Response::ok(contents),
            Err(err) => Response::text(404, format!("cannot read {file}: {err}\n")),
        };
    }
    if let Some(code) = path.strip_prefix("/status/") {
        return match code.parse::<u16>() {
            Ok(code @ 200..=599) => Response::new(code),
            _ => Response::text(400, format!("not a status code (200-599): {code}\n")),
        };
    }
    if let Some(ms) = path.strip_prefix("/work/") {
        return match ms.parse::<u64>() {
            Ok(ms) if ms <= MAX_WORK_MS => {
                let started = Instant::now();
                burn_cpu(Duration::from_millis(ms));
                let took = started.elapsed().as_millis();
                Response::ok(format!("worked {took} ms"))
            }
            _ => Response::text(
                400,
                format!("not a duration in ms (0-{MAX_WORK_MS}): {ms}\n"),
            ),
        };
    }
    if path == "/echo" {
        let mut response = Response::new(200).with_body(req.body().to_vec());
        if let Some(content_type) = req.header("content-type") {
            response = response.with_header("content-type", content_type);
        }
        return response;
    }
    if path == "/fetch" {
        let Some(url) = req.query_param("url") else {
            return Response::text(400, "usage: /fetch?url=http://service:port/path\n");
        };
        return match http::get(&url) {
            Ok(upstream) => Response::text(upstream.status(), upstream.into_body()),
            Err(err) => Response::text(502, format!("fetching {url} failed: {err}\n")),
        };
    }
    Response::not_found()
}

/// Keeps the CPU busy for about `duration` (pure computation, checking the clock every few
/// microseconds so that the host's epoch interruption can still preempt it).
fn burn_cpu(duration: Duration) {
    let deadline = Instant::now() + duration;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    loop {
        for _ in 0..2048 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        std::hint::black_box(x);
        if Instant::now() >= deadline {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Response {
        handle(Request::get(path))
    }

    #[test]
    fn greeting() {
        let r = get("/");
        assert_eq!(r.status(), 200);
        let expected = std::env::var("GREETING").unwrap_or(DEFAULT_GREETING.to_string());
        assert_eq!(r.body_text(), expected);
    }

    #[test]
    fn env() {
        let r = get("/env/PATH");
        assert_eq!(r.status(), 200);
        assert_eq!(r.body_text(), std::env::var("PATH").unwrap());
        assert_eq!(get("/env/HELLO_HTTP_SURELY_UNSET").status(), 404);
    }

    #[test]
    fn files() {
        let path = std::env::temp_dir().join(format!("hello-http-test-{}", std::process::id()));
        std::fs::write(&path, "hi there\n").unwrap();
        let r = get(&format!("/file{}", path.display()));
        assert_eq!((r.status(), r.body_text().as_str()), (200, "hi there\n"));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(get(&format!("/file{}", path.display())).status(), 404);
    }

    #[test]
    fn status() {
        let r = get("/status/503");
        assert_eq!((r.status(), r.body()), (503, &b""[..]));
        assert_eq!(get("/status/204").status(), 204);
        assert_eq!(get("/status/99").status(), 400);
        assert_eq!(get("/status/abc").status(), 400);
    }

    #[test]
    fn work() {
        let started = Instant::now();
        let r = get("/work/30");
        assert_eq!(r.status(), 200);
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert_eq!(get("/work/-1").status(), 400);
        assert_eq!(get("/work/600001").status(), 400);
    }

    #[test]
    #[should_panic(expected = "/panic requested")]
    fn panics() {
        get("/panic");
    }

    #[test]
    fn extras_and_unknown() {
        let r = handle(Request::post("/echo", "ping").with_header("Content-Type", "x/y"));
        assert_eq!((r.status(), r.body()), (200, &b"ping"[..]));
        assert_eq!(r.header("content-type"), Some("x/y"));
        assert_eq!(get("/fetch").status(), 400);
        // Outgoing HTTP only exists on wasm32-wasip2.
        assert_eq!(
            get("/fetch?url=http%3A%2F%2F127.0.0.1%3A1%2F").status(),
            502
        );
        assert_eq!(get("/nope").status(), 404);
    }
}
