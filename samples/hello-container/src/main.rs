//! # hello-container — the hello-http protocol as an ordinary Linux process
//!
//! A small HTTP/1.1 server (std only, a thread per connection, keep-alive) on port 8080 (or
//! `PORT`) that answers with `hello_http::route` — the same code as the Wasm sample — and
//! prints one line per request, so the Wasm and the container sample behave identically for
//! tests and demos. Built statically for `x86_64-unknown-linux-musl` and packaged as an OCI
//! image archive by `make samples` (`samples/out/hello-container.tar`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

use wharf_sdk::{Request, Response, config};

/// The largest request body accepted.
const MAX_BODY: usize = 8 << 20;

fn main() {
    // Stop at once on SIGTERM (as PID 1 in a container, nothing else would).
    match signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM]) {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                if signals.forever().next().is_some() {
                    println!("hello-container: SIGTERM, stopping");
                    std::process::exit(0);
                }
            });
        }
        Err(err) => eprintln!("hello-container: cannot handle SIGTERM: {err}"),
    }
    let port = config::env_or("PORT", "8080");
    let listener = match TcpListener::bind(("0.0.0.0", port.parse().unwrap_or(8080))) {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("hello-container: cannot listen on port {port}: {err}");
            std::process::exit(1);
        }
    };
    println!("hello-container: listening on port {port}");
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || serve(stream));
    }
}

/// Serves requests on one connection until the client closes it.
fn serve(stream: TcpStream) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while let Some((request, keep_alive)) = read_request(&mut reader) {
        let response = if request.path() == "/panic" {
            // A process cannot panic for one request only: like a crashing server, it exits.
            println!(
                "hello-container: {} {} -> exit",
                request.method(),
                request.path()
            );
            std::process::exit(101);
        } else {
            hello_http::route(&request)
        };
        println!(
            "hello-container: {} {} -> {}",
            request.method(),
            request.path(),
            response.status()
        );
        if write_response(&mut writer, &response, keep_alive).is_err() || !keep_alive {
            return;
        }
    }
}

/// Reads one request; `None` at the end of the connection or on a malformed request.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(Request, bool)> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let version = parts.next().unwrap_or("HTTP/1.1").to_owned();
    let mut request = Request::new(method, &target);
    let mut length = 0usize;
    let mut keep_alive = version == "HTTP/1.1";
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().ok()?;
        }
        if name.eq_ignore_ascii_case("connection") {
            keep_alive = !value.eq_ignore_ascii_case("close");
        }
        request = request.with_header(name, value);
    }
    if length > MAX_BODY {
        return None;
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((request.with_body(body), keep_alive))
}

fn write_response(
    writer: &mut TcpStream,
    response: &Response,
    keep_alive: bool,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status(),
        reason(response.status())
    );
    for (name, value) in response.headers() {
        if !name.eq_ignore_ascii_case("content-length") {
            head.push_str(&format!("{name}: {}\r\n", String::from_utf8_lossy(value)));
        }
    }
    head.push_str(&format!("content-length: {}\r\n", response.body().len()));
    if !keep_alive {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");
    writer.write_all(head.as_bytes())?;
    writer.write_all(response.body())?;
    writer.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "",
    }
}
