//! HTTP types for handlers, and an outgoing HTTP client.
//!
//! [`Request`] and [`Response`] are plain, fully buffered values: a handler receives the whole
//! request body and returns the whole response body. The same two types serve the client
//! side: build a [`Request`] (or use [`get`] / [`post`]), [`send`] it through the host's
//! `wasi:http/outgoing-handler`, and get a [`Response`] back.
//!
//! Calling a Kubernetes Service from a function is an ordinary URL, e.g.
//! `http::get("http://hello-http.default.svc:8080/")` — the host resolves and routes it.
//!
//! The client needs `wasm32-wasip2`; on other targets [`send`] returns an [`Error`] (so code
//! using it still compiles for wasip1 and for host-side unit tests).

use std::fmt;
use std::time::Duration;

/// A header list: `(name, value)` pairs in order; names may repeat.
pub type Headers = Vec<(String, Vec<u8>)>;

/// An HTTP request: what a handler receives, or what [`send`] sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: String,
    scheme: Option<String>,
    authority: Option<String>,
    path_with_query: String,
    headers: Headers,
    body: Vec<u8>,
    timeout: Option<Duration>,
}

impl Request {
    /// A request with `method` (e.g. `"GET"`) for `url`.
    ///
    /// `url` is either absolute (`http://host:port/path?query`, needed for [`send`]) or just a
    /// path with an optional query (`/path?query`, handy in tests).
    pub fn new(method: impl Into<String>, url: &str) -> Self {
        let (scheme, rest) = match url.split_once("://") {
            Some((scheme, rest)) => (Some(scheme.to_ascii_lowercase()), rest),
            None => (None, url),
        };
        let (authority, path_with_query) = if scheme.is_some() {
            match rest.find(['/', '?']) {
                Some(i) => (Some(rest[..i].to_string()), rest[i..].to_string()),
                None => (Some(rest.to_string()), String::new()),
            }
        } else {
            (None, rest.to_string())
        };
        let path_with_query = if path_with_query.starts_with('/') {
            path_with_query
        } else {
            format!("/{path_with_query}")
        };
        Request {
            method: method.into(),
            scheme,
            authority,
            path_with_query,
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
        }
    }

    /// A `GET` request for `url` (see [`Request::new`]).
    pub fn get(url: &str) -> Self {
        Self::new("GET", url)
    }

    /// A `POST` request for `url` with `body`.
    pub fn post(url: &str, body: impl Into<Vec<u8>>) -> Self {
        Self::new("POST", url).with_body(body)
    }

    /// Builds a request from its parts, as the host delivered them.
    pub fn from_parts(
        method: impl Into<String>,
        scheme: Option<String>,
        authority: Option<String>,
        path_with_query: impl Into<String>,
        headers: Headers,
        body: Vec<u8>,
    ) -> Self {
        let path_with_query = path_with_query.into();
        Request {
            method: method.into(),
            scheme,
            authority,
            path_with_query: if path_with_query.is_empty() {
                "/".to_string()
            } else {
                path_with_query
            },
            headers,
            body,
            timeout: None,
        }
    }

    /// Appends a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Replaces the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// For [`send`]: limits connecting, waiting for the first response byte, and each pause
    /// between body bytes to `timeout` each.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The method, upper case as sent: `"GET"`, `"POST"`, ...
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The scheme (`"http"`, `"https"`), if known.
    pub fn scheme(&self) -> Option<&str> {
        self.scheme.as_deref()
    }

    /// The authority (`host[:port]`), if known.
    pub fn authority(&self) -> Option<&str> {
        self.authority.as_deref()
    }

    /// The path and query as sent, e.g. `/file/etc/hello?x=1`. Never empty.
    pub fn path_with_query(&self) -> &str {
        &self.path_with_query
    }

    /// The path without the query, still percent-encoded, e.g. `/file/etc/hello`.
    pub fn path(&self) -> &str {
        match self.path_with_query.split_once('?') {
            Some((path, _)) => path,
            None => &self.path_with_query,
        }
    }

    /// The raw query string after `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.path_with_query.split_once('?').map(|(_, q)| q)
    }

    /// The first value of query parameter `name`, percent-decoded (`+` means space).
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query()?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(&k.replace('+', " ")) == name)
                .then(|| percent_decode(&v.replace('+', " ")))
        })
    }

    /// The first value of header `name` (case-insensitive), if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// All headers, in order.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body as text (invalid UTF-8 is replaced with U+FFFD).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Takes the body.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    /// The timeout set by [`Request::with_timeout`].
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
}

/// An HTTP response: what a handler returns, or what [`send`] receives.
///
/// Handlers may also return anything that converts into one: `&str` and `String` become a
/// `200` `text/plain` response, `(u16, String)` a text response with that status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    headers: Headers,
    body: Vec<u8>,
}

impl Response {
    /// An empty response with `status` (e.g. `204`) and no headers.
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `text/plain; charset=utf-8` response.
    pub fn text(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self::new(status)
            .with_header("content-type", "text/plain; charset=utf-8")
            .with_body(body)
    }

    /// `200` with a text body.
    pub fn ok(body: impl Into<Vec<u8>>) -> Self {
        Self::text(200, body)
    }

    /// `404` with the body `not found`.
    pub fn not_found() -> Self {
        Self::text(404, "not found\n")
    }

    /// Builds a response from its parts.
    pub fn from_parts(status: u16, headers: Headers, body: Vec<u8>) -> Self {
        Response {
            status,
            headers,
            body,
        }
    }

    /// Appends a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Replaces the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The first value of header `name` (case-insensitive), if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// All headers, in order.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body as text (invalid UTF-8 is replaced with U+FFFD).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Takes the body.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    /// Splits into status, headers and body.
    pub fn into_parts(self) -> (u16, Headers, Vec<u8>) {
        (self.status, self.headers, self.body)
    }
}

impl From<&str> for Response {
    fn from(body: &str) -> Self {
        Response::ok(body)
    }
}

impl From<String> for Response {
    fn from(body: String) -> Self {
        Response::ok(body)
    }
}

impl From<(u16, String)> for Response {
    fn from((status, body): (u16, String)) -> Self {
        Response::text(status, body)
    }
}

impl From<(u16, &str)> for Response {
    fn from((status, body): (u16, &str)) -> Self {
        Response::text(status, body)
    }
}

/// An outgoing request that failed: invalid request, connection or protocol error, timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
}

impl Error {
    /// An error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Sends `request` (absolute URL) through the host and returns the buffered response.
///
/// Any status code is an `Ok`; `Err` means no response (bad URL, refused, timed out, ...).
pub fn send(request: Request) -> Result<Response, Error> {
    if request.authority.as_deref().is_none_or(str::is_empty) {
        return Err(Error::new(format!(
            "not an absolute http(s) URL: {}",
            request.path_with_query
        )));
    }
    #[cfg(all(target_os = "wasi", target_env = "p2"))]
    {
        crate::wasi_http::send(request)
    }
    #[cfg(not(target_os = "wasi"))]
    {
        crate::native_http::send(request)
    }
    #[cfg(all(target_os = "wasi", not(target_env = "p2")))]
    {
        Err(Error::new(
            "outgoing HTTP needs wasm32-wasip2 (wasi:http/outgoing-handler)",
        ))
    }
}

/// `GET url`. See [`send`].
pub fn get(url: &str) -> Result<Response, Error> {
    send(Request::get(url))
}

/// `POST url` with `body`. See [`send`].
pub fn post(url: &str, body: impl Into<Vec<u8>>) -> Result<Response, Error> {
    send(Request::post(url, body))
}

/// Decodes `%XX` escapes (invalid escapes are kept as they are; invalid UTF-8 is replaced).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_absolute_and_relative_urls() {
        let r = Request::get("http://hello-http.default.svc:8080/a/b?x=1&y=two+words");
        assert_eq!(r.scheme(), Some("http"));
        assert_eq!(r.authority(), Some("hello-http.default.svc:8080"));
        assert_eq!(r.path(), "/a/b");
        assert_eq!(r.query(), Some("x=1&y=two+words"));
        assert_eq!(r.query_param("y").as_deref(), Some("two words"));
        assert_eq!(r.query_param("z"), None);

        let r = Request::get("https://example.test");
        assert_eq!(r.authority(), Some("example.test"));
        assert_eq!(r.path_with_query(), "/");

        let r = Request::get("https://example.test?q");
        assert_eq!(r.path_with_query(), "/?q");

        let r = Request::new("GET", "/env/HOME");
        assert_eq!(r.authority(), None);
        assert_eq!(r.path(), "/env/HOME");
        assert_eq!(r.query(), None);
    }

    #[test]
    fn send_needs_an_absolute_url() {
        assert!(send(Request::get("/relative")).is_err());
    }

    #[test]
    fn headers_are_case_insensitive() {
        let r = Response::text(200, "hi").with_header("X-Thing", "1");
        assert_eq!(r.header("x-thing"), Some("1"));
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(r.header("missing"), None);
    }

    #[test]
    fn conversions() {
        assert_eq!(Response::from("hi").status(), 200);
        assert_eq!(Response::from((503, "busy")).status(), 503);
        assert_eq!(Response::from(String::from("x")).body(), b"x");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%20c"), "a/b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%C3%A9"), "é");
    }
}
