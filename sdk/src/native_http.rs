//! Outgoing HTTP for native builds (a container running the same code as a Wasm function):
//! plain HTTP/1.1 over `std::net::TcpStream`, one connection per request, with the same
//! buffered [`Request`]/[`Response`] as the `wasi:http` path. No TLS: inside a cluster,
//! Services are called over plain HTTP.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::http::{Error, Request, Response};

/// The longest response accepted (the same bound as a request body in the samples).
const MAX_RESPONSE: usize = 16 << 20;
/// The timeout when the request sets none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends the request and reads the whole response.
pub(crate) fn send(request: Request) -> Result<Response, Error> {
    let scheme = request.scheme().unwrap_or("http");
    if scheme != "http" {
        return Err(Error::new(format!(
            "{scheme}: only plain http is supported by native builds"
        )));
    }
    let authority = request.authority().unwrap_or_default().to_owned();
    let address = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.clone()
    } else {
        format!("{authority}:80")
    };
    let timeout = request.timeout().unwrap_or(DEFAULT_TIMEOUT);
    let target = address
        .to_socket_addrs()
        .map_err(|e| Error::new(format!("cannot resolve {authority}: {e}")))?
        .next()
        .ok_or_else(|| Error::new(format!("{authority} has no address")))?;
    let mut stream = TcpStream::connect_timeout(&target, timeout)
        .map_err(|e| Error::new(format!("cannot connect to {authority}: {e}")))?;
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));

    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\n",
        request.method(),
        request.path_with_query()
    );
    for (name, value) in request.headers() {
        if name.eq_ignore_ascii_case("host") || name.eq_ignore_ascii_case("connection") {
            continue;
        }
        head.push_str(&format!("{name}: {}\r\n", String::from_utf8_lossy(value)));
    }
    let body = request.into_body();
    head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(&body))
        .map_err(|e| Error::new(format!("cannot send to {authority}: {e}")))?;
    read_response(BufReader::new(stream))
}

fn read_response(mut reader: impl BufRead) -> Result<Response, Error> {
    let broken = |what: &str| Error::new(format!("malformed response: {what}"));
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|e| Error::new(format!("no response: {e}")))?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| broken("status line"))?;
    let mut headers = Vec::new();
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        reader
            .read_line(&mut line)
            .map_err(|e| Error::new(format!("response cut off: {e}")))?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').ok_or_else(|| broken("header"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| broken("content-length"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
        headers.push((name.to_owned(), value.as_bytes().to_vec()));
    }
    let body = if chunked {
        read_chunked(&mut reader)?
    } else {
        let mut body = Vec::new();
        let limit = length.unwrap_or(MAX_RESPONSE).min(MAX_RESPONSE);
        reader
            .take(limit as u64)
            .read_to_end(&mut body)
            .map_err(|e| Error::new(format!("response body cut off: {e}")))?;
        body
    };
    Ok(Response::from_parts(status, headers, body))
}

fn read_chunked(reader: &mut impl BufRead) -> Result<Vec<u8>, Error> {
    let broken = || Error::new("malformed chunked body");
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line).map_err(|_| broken())?;
        let size_text = line.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size_text, 16).map_err(|_| broken())?;
        if size == 0 {
            return Ok(body);
        }
        if body.len() + size > MAX_RESPONSE {
            return Err(Error::new("response larger than 16 MiB"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader
            .read_exact(&mut body[start..])
            .map_err(|_| broken())?;
        line.clear();
        reader.read_line(&mut line).map_err(|_| broken())?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_once(reply: &'static [u8]) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 2 {
                line.clear();
            }
            (&stream).write_all(reply).unwrap();
        });
        port
    }

    #[test]
    fn responses_with_length_and_chunked_bodies_are_read() {
        let port = serve_once(b"HTTP/1.1 201 Created\r\ncontent-length: 5\r\nx-a: b\r\n\r\nhello");
        let response = send(Request::get(&format!("http://127.0.0.1:{port}/x"))).unwrap();
        assert_eq!(response.status(), 201);
        assert_eq!(response.body(), b"hello");
        let port = serve_once(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        );
        let response = send(Request::get(&format!("http://127.0.0.1:{port}/"))).unwrap();
        assert_eq!(response.body(), b"abcde");
    }

    #[test]
    fn refused_connections_and_https_are_errors() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(send(Request::get(&format!("http://127.0.0.1:{port}/"))).is_err());
        let error = send(Request::get("https://127.0.0.1:1/")).unwrap_err();
        assert!(error.to_string().contains("plain http"), "{error}");
    }
}
