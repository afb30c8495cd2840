//! The glue between [`crate::http`]'s buffered types and the `wasi:http@0.2` resources
//! (compiled on `wasm32-wasip2` only).
//!
//! Incoming: read method, URL parts, headers and the whole body; call the handler; write
//! status, headers (+ `content-length`) and the whole body, then finish the body.
//! Outgoing: build an `outgoing-request`, hand it to `wasi:http/outgoing-handler`, stream the
//! body, block on the response future, read the whole response.

use std::io::Read;

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    RequestOptions, ResponseOutparam, Scheme,
};
use wasip2::io::streams::StreamError;

use crate::http::{Error, Headers, Request, Response};

/// Runs `handler` for one incoming request and sends its response.
///
/// A request whose body cannot be read gets a 400 without calling the handler. A panic in the
/// handler aborts the instance before the response is set; the host turns that into a 500.
pub fn serve<F, R>(handler: F, request: IncomingRequest, response_out: ResponseOutparam)
where
    F: FnOnce(Request) -> R,
    R: Into<Response>,
{
    let response = match read_request(request) {
        Ok(request) => handler(request).into(),
        Err(err) => Response::text(400, format!("cannot read request: {err}\n")),
    };
    respond(response_out, response);
}

fn read_request(request: IncomingRequest) -> Result<Request, String> {
    let method = method_to_str(request.method());
    let scheme = request.scheme().map(|s| match s {
        Scheme::Http => "http".to_string(),
        Scheme::Https => "https".to_string(),
        Scheme::Other(other) => other,
    });
    let authority = request.authority();
    let path_with_query = request.path_with_query().unwrap_or_default();
    let headers = request.headers().entries();
    let body = request
        .consume()
        .map_err(|()| "request body already consumed".to_string())?;
    let body = read_body(body)?;
    Ok(Request::from_parts(
        method,
        scheme,
        authority,
        path_with_query,
        headers,
        body,
    ))
}

fn respond(response_out: ResponseOutparam, response: Response) {
    let (status, mut headers, body) = response.into_parts();
    let bodiless = matches!(status, 100..=199 | 204 | 304);
    if !bodiless
        && !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        headers.push((
            "content-length".to_string(),
            body.len().to_string().into_bytes(),
        ));
    }
    let outgoing = OutgoingResponse::new(fields_lenient(&headers));
    if outgoing.set_status_code(status).is_err() {
        eprintln!("wharf-sdk: handler returned invalid status {status}; answering 500");
        let fallback = OutgoingResponse::new(Fields::new());
        let _ = fallback.set_status_code(500);
        let fallback_body = fallback.body().expect("fresh response has a body");
        ResponseOutparam::set(response_out, Ok(fallback));
        let _ = OutgoingBody::finish(fallback_body, None);
        return;
    }
    let outgoing_body = outgoing.body().expect("fresh response has a body");
    ResponseOutparam::set(response_out, Ok(outgoing));
    let body = if bodiless { &[][..] } else { &body[..] };
    if let Err(err) = write_body(outgoing_body, body) {
        // The client went away or the host refused the body: nothing left to tell anyone.
        eprintln!("wharf-sdk: writing the response body failed: {err}");
    }
}

/// Headers for a response; ones the host refuses (hop-by-hop, invalid) are skipped with a
/// warning on stderr rather than failing the whole response.
fn fields_lenient(headers: &Headers) -> Fields {
    let fields = Fields::new();
    for (name, value) in headers {
        if let Err(err) = fields.append(name, value) {
            eprintln!("wharf-sdk: dropping response header {name:?}: {err:?}");
        }
    }
    fields
}

/// Sends an outgoing request; see [`crate::http::send`].
pub fn send(request: Request) -> Result<Response, Error> {
    let method = str_to_method(request.method());
    let scheme = match request.scheme().unwrap_or("http") {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_string()),
    };
    let authority = request.authority().unwrap_or_default().to_string();
    let path_with_query = request.path_with_query().to_string();
    let timeout = request.timeout();

    let mut headers = request.headers().clone();
    let body = request.into_body();
    if !body.is_empty()
        && !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        headers.push((
            "content-length".to_string(),
            body.len().to_string().into_bytes(),
        ));
    }
    let fields = Fields::new();
    for (name, value) in &headers {
        fields
            .append(name, value)
            .map_err(|err| Error::new(format!("header {name:?} refused: {err:?}")))?;
    }

    let outgoing = OutgoingRequest::new(fields);
    outgoing
        .set_method(&method)
        .map_err(|()| Error::new(format!("invalid method {method:?}")))?;
    outgoing
        .set_scheme(Some(&scheme))
        .map_err(|()| Error::new(format!("invalid scheme {scheme:?}")))?;
    outgoing
        .set_authority(Some(&authority))
        .map_err(|()| Error::new(format!("invalid authority {authority:?}")))?;
    outgoing
        .set_path_with_query(Some(&path_with_query))
        .map_err(|()| Error::new(format!("invalid path {path_with_query:?}")))?;
    let outgoing_body = outgoing
        .body()
        .map_err(|()| Error::new("request body already taken"))?;

    let options = timeout.map(|timeout| {
        let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        let options = RequestOptions::new();
        // An Err only means the host does not support that particular timeout.
        let _ = options.set_connect_timeout(Some(nanos));
        let _ = options.set_first_byte_timeout(Some(nanos));
        let _ = options.set_between_bytes_timeout(Some(nanos));
        options
    });

    // Hand the request over first, then stream the body: the host reads it concurrently.
    let future = outgoing_handler::handle(outgoing, options)
        .map_err(|err| Error::new(format!("request refused: {err}")))?;
    write_body(outgoing_body, &body)
        .map_err(|err| Error::new(format!("sending request body: {err}")))?;

    let incoming = loop {
        if let Some(result) = future.get() {
            break result;
        }
        future.subscribe().block();
    };
    let incoming = incoming
        .map_err(|()| Error::new("response already taken"))?
        .map_err(|err| Error::new(format!("request failed: {err}")))?;

    let status = incoming.status();
    let headers = incoming.headers().entries();
    let body = incoming
        .consume()
        .map_err(|()| Error::new("response body already consumed"))?;
    let body = read_body(body).map_err(|err| Error::new(format!("reading response: {err}")))?;
    Ok(Response::from_parts(status, headers, body))
}

/// Reads a whole incoming body; the stream (a child resource) is dropped before finishing.
fn read_body(body: IncomingBody) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    {
        let mut stream = body
            .stream()
            .map_err(|()| "body stream already taken".to_string())?;
        stream
            .read_to_end(&mut bytes)
            .map_err(|err| err.to_string())?;
    }
    drop(IncomingBody::finish(body));
    Ok(bytes)
}

/// Writes a whole outgoing body and finishes it (no trailers).
///
/// The stream reporting `closed` is not an error: the reader has gone away, either because it
/// already has everything it wanted (a `content-length` satisfied) or because the peer left.
fn write_body(body: OutgoingBody, bytes: &[u8]) -> Result<(), String> {
    let mut closed = false;
    {
        let stream = body
            .write()
            .map_err(|()| "body stream already taken".to_string())?;
        // `blocking-write-and-flush` takes at most 4096 bytes per call.
        for chunk in bytes.chunks(4096) {
            match stream.blocking_write_and_flush(chunk) {
                Ok(()) => {}
                Err(StreamError::Closed) => {
                    closed = true;
                    break;
                }
                Err(StreamError::LastOperationFailed(err)) => return Err(err.to_debug_string()),
            }
        }
    }
    match OutgoingBody::finish(body, None) {
        Ok(()) => Ok(()),
        Err(_) if closed => Ok(()),
        Err(err) => Err(err.to_string()),
    }
}

fn method_to_str(method: Method) -> String {
    match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Connect => "CONNECT",
        Method::Options => "OPTIONS",
        Method::Trace => "TRACE",
        Method::Patch => "PATCH",
        Method::Other(other) => return other,
    }
    .to_string()
}

fn str_to_method(method: &str) -> Method {
    match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "CONNECT" => Method::Connect,
        "OPTIONS" => Method::Options,
        "TRACE" => Method::Trace,
        "PATCH" => Method::Patch,
        other => Method::Other(other.to_string()),
    }
}
