//! # wharf-sdk — write Wharf Wasm workloads in a few lines
//!
//! Wharf runs two shapes of Wasm workload (see DESIGN.md, *Runtimes*):
//!
//! * **HTTP functions** — a `wasi:http/incoming-handler` component, built for
//!   `wasm32-wasip2` as a `cdylib`. The host creates a fresh instance per request. With this
//!   SDK you write a plain `fn(Request) -> Response` and register it with [`http_handler!`].
//! * **Commands / jobs** — a `wasi:cli` command: an ordinary `fn main()` binary built for
//!   `wasm32-wasip2` (a component exporting `wasi:cli/run`) or `wasm32-wasip1` (a core module
//!   exporting `_start`). Nothing to register; use [`config`] (and, on wasip2, [`http`]'s
//!   client) from `main`.
//!
//! Configuration reaches a guest the Kubernetes way: environment variables (`env`,
//! `env.valueFrom`, `envFrom`) and files at `volumeMounts` (ConfigMaps, Secrets), which Wharf
//! preopens read-only. [`config`] reads both.
//!
//! The SDK is synchronous and small: it sits on the standard WASI 0.2 bindings (the `wasip2`
//! crate, i.e. what `wasi` 0.14 re-exports), reads request bodies fully into memory, and
//! writes a response in one go.
//!
//! ## A complete HTTP function
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! wharf-sdk = { path = "../sdk" }
//! ```
//!
//! `src/lib.rs`:
//!
//! ```
//! use wharf_sdk::{config, http, Request, Response};
//!
//! fn handle(req: Request) -> Response {
//!     match (req.method(), req.path()) {
//!         ("GET", "/") => {
//!             let greeting = config::env_or("GREETING", "Hello from Wharf!");
//!             println!("served {} {}", req.method(), req.path()); // shows in `kubectl logs`
//!             Response::text(200, format!("{greeting}\n"))
//!         }
//!         // A mounted ConfigMap/Secret key.
//!         ("GET", "/greeting") => match config::file("/etc/hello/greeting") {
//!             Some(text) => Response::text(200, text),
//!             None => Response::not_found(),
//!         },
//!         // Call another Service through the host (wasi:http/outgoing-handler).
//!         ("GET", "/upstream") => match http::get("http://backend.default.svc:8080/") {
//!             Ok(upstream) => Response::text(upstream.status(), upstream.into_body()),
//!             Err(err) => Response::text(502, format!("upstream failed: {err}\n")),
//!         },
//!         ("POST", "/echo") => Response::new(200).with_body(req.into_body()),
//!         _ => Response::not_found(),
//!     }
//! }
//!
//! wharf_sdk::http_handler!(handle);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the artifact
//! `target/wasm32-wasip2/release/<crate>.wasm` is a component exporting
//! `wasi:http/incoming-handler@0.2.x`.
//!
//! ## A complete command
//!
//! ```no_run
//! fn main() {
//!     let who = wharf_sdk::config::env_or("WHO", "world");
//!     println!("hello, {who}");
//!     eprintln!("args: {:?}", std::env::args().collect::<Vec<_>>());
//!     std::process::exit(0);
//! }
//! ```
//!
//! ## What the host must provide
//!
//! A Rust component always imports the `wasi:cli` interfaces its std uses (environment,
//! stdio, exit, clocks, filesystem for preopens, random) next to `wasi:http/types` and, if the
//! client is used, `wasi:http/outgoing-handler`. Wasmtime's `wasmtime_wasi::p2` +
//! `wasmtime_wasi_http` linkers provide all of them (`wasmtime serve -Scli`).
//!
//! A panic aborts the instance (`panic = "abort"` on Wasm): the host sees a trap and answers
//! that one request with a 500; other requests and instances are unaffected.

#![warn(missing_docs)]
// The command example above is about `fn main`, so it spells it out.
#![allow(clippy::needless_doctest_main)]

pub mod config;
pub mod http;
pub mod process;

pub use http::{Request, Response};

#[cfg(not(target_os = "wasi"))]
mod native_http;
#[cfg(all(target_os = "wasi", target_env = "p2"))]
mod wasi_http;

/// Registers `handler` as this component's `wasi:http/incoming-handler`.
///
/// `handler` is a function (or closure) taking a [`Request`] and returning something that
/// converts into a [`Response`] (a `Response`, a `String`, a `&str`, `(u16, String)`, ...).
/// Use it once per component, at the crate root of a `cdylib` built for `wasm32-wasip2`.
///
/// ```
/// fn handle(req: wharf_sdk::Request) -> wharf_sdk::Response {
///     wharf_sdk::Response::text(200, format!("you asked for {}\n", req.path()))
/// }
/// wharf_sdk::http_handler!(handle);
/// ```
///
/// On targets other than `wasm32-wasip2` the macro expands to nothing, so a handler crate
/// still compiles (and its routing can be unit-tested) on the host.
#[macro_export]
macro_rules! http_handler {
    ($handler:expr) => {
        #[cfg(all(target_os = "wasi", target_env = "p2"))]
        const _: () = {
            struct __WharfHttpHandler;

            impl $crate::__private::IncomingHandler for __WharfHttpHandler {
                fn handle(
                    request: $crate::__private::IncomingRequest,
                    response_out: $crate::__private::ResponseOutparam,
                ) {
                    $crate::__private::serve($handler, request, response_out)
                }
            }

            $crate::__private::wasip2::http::proxy::export!(__WharfHttpHandler);
        };
    };
}

/// Implementation details of [`http_handler!`]; not a stable API.
#[doc(hidden)]
#[cfg(all(target_os = "wasi", target_env = "p2"))]
pub mod __private {
    pub use crate::wasi_http::serve;
    pub use wasip2;
    pub use wasip2::exports::http::incoming_handler::Guest as IncomingHandler;
    pub use wasip2::http::types::{IncomingRequest, ResponseOutparam};
}
