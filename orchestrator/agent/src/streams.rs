//! The agent's exec endpoint (the kubelet's `exec`), which the API server proxies
//! `kubectl exec` to: `/exec/NAMESPACE/POD/CONTAINER?command=...&stdin=..&stdout=..&
//! stderr=..&tty=..`, upgraded to one of the two carriers of Kubernetes' channel protocol:
//!
//! - WebSocket (`GET`, kubectl >= 1.30), subprotocol `v5.channel.k8s.io` or
//!   `v4.channel.k8s.io`. Every binary message starts with its channel: 0 stdin (client to
//!   server), 1 stdout, 2 stderr, 3 the outcome as a `metav1.Status` (sent once, at the end), 4
//!   terminal resizes (`{"Width":W,"Height":H}`, client to server), and in v5 255 to close a
//!   stream (`[255, 0]`: the client's stdin has ended).
//! - SPDY/3.1 (`POST` with `Upgrade: SPDY/3.1`, every kubectl before 1.30), stream protocol
//!   `v4.channel.k8s.io` (`X-Stream-Protocol-Version`). The client opens one SPDY stream per
//!   channel, named by its `streamType` header (`error`, `stdin`, `stdout`, `stderr`,
//!   `resize`); the command starts once all that the request calls for are open, as in the
//!   kubelet. stdin ends with the stream's FIN; resizes are JSON objects, one per line; the
//!   Status is written to the error stream, which is then finished, as are the others.
//!
//! The exit code reaches kubectl in the Status: `Success`, or `Failure` with reason
//! `NonZeroExitCode` and the code as the message of an `ExitCode` cause. Anything that keeps
//! the command from running — no such container, a runtime that cannot exec (Wasm) — is a
//! `Failure` Status too, whose message kubectl prints. One loop ([`ExecIo`] over either
//! carrier) moves the bytes.
//!
//! The command runs through [`Runtime::exec_stream`]; closing the connection drops the
//! session, which kills the command.
//!
//! Port forwarding (the kubelet's `portForward`, `/portForward/NAMESPACE/POD`) is a SPDY/3.1
//! session, tunnelled in WebSocket binary messages (subprotocol
//! `SPDY/3.1+portforward.k8s.io`, kubectl >= 1.31) or directly on the upgraded connection
//! (stream protocol `portforward.k8s.io`, older kubectl). For every local connection kubectl
//! opens two SPDY streams with headers `streamType: error|data`, `port` and `requestID`; the
//! data stream carries the connection's bytes both ways, and the error stream a message if the
//! pod's port cannot be reached. A container pod is reached at its IP on the node's bridge; a
//! Wasm pod serving HTTP in process gets an HTTP/1 server connection over the tunnelled bytes,
//! answered by its `HttpHandler` (whatever the port). Module [`spdy`] holds the framing and
//! the session.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use wharf_runtime::{ContainerState, ExecRequest, ExecSession, HttpHandler, Runtime, TerminalSize};

use crate::Agent;
use crate::spdy;

/// The channel protocol with stream closing (kubectl >= 1.30).
pub const PROTOCOL_V5: &str = "v5.channel.k8s.io";
/// The channel protocol with a Status on the error channel and resizes.
pub const PROTOCOL_V4: &str = "v4.channel.k8s.io";

/// The channels of the protocol.
pub mod channel {
    /// Client to server: the command's stdin.
    pub const STDIN: u8 = 0;
    /// Server to client: the command's stdout.
    pub const STDOUT: u8 = 1;
    /// Server to client: the command's stderr.
    pub const STDERR: u8 = 2;
    /// Server to client: how it ended, a `metav1.Status`.
    pub const ERROR: u8 = 3;
    /// Client to server: a new terminal size.
    pub const RESIZE: u8 = 4;
    /// v5, client to server: the stream in the next byte has ended.
    pub const CLOSE: u8 = 255;
}

/// What a client's message asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientMessage {
    /// Bytes for the command's stdin.
    Stdin(Bytes),
    /// The terminal has a new size.
    Resize(TerminalSize),
    /// The client's stdin has ended (v5).
    CloseStdin,
    /// Something to ignore: an empty message, another channel, a malformed resize.
    Ignored,
}

/// Decodes one binary message from the client.
pub fn parse_client_message(message: &Bytes) -> ClientMessage {
    let Some(&first) = message.first() else {
        return ClientMessage::Ignored;
    };
    let payload = message.slice(1..);
    match first {
        channel::STDIN if !payload.is_empty() => ClientMessage::Stdin(payload),
        channel::RESIZE => {
            let size: Value = serde_json::from_slice(&payload).unwrap_or(Value::Null);
            let dimension = |name: &str| {
                size[name]
                    .as_u64()
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|n| *n > 0)
            };
            match (dimension("Width"), dimension("Height")) {
                (Some(width), Some(height)) => {
                    ClientMessage::Resize(TerminalSize { width, height })
                }
                _ => ClientMessage::Ignored,
            }
        }
        channel::CLOSE if payload.first() == Some(&channel::STDIN) => ClientMessage::CloseStdin,
        _ => ClientMessage::Ignored,
    }
}

/// One message for the client: `data` on `channel`.
pub fn frame(channel: u8, data: &[u8]) -> Bytes {
    let mut message = Vec::with_capacity(data.len() + 1);
    message.push(channel);
    message.extend_from_slice(data);
    message.into()
}

/// The Status that ends a session: success, a non-zero exit code (in the shape kubectl reads
/// the code from), or a failure to run the command at all.
pub fn outcome_status(outcome: &Result<i32, String>) -> Value {
    match outcome {
        Ok(0) => json!({"metadata": {}, "status": "Success"}),
        Ok(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit code {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Err(message) => json!({
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "InternalError",
            "code": 500,
        }),
    }
}

/// The options of an exec or attach request, from its query (`command` repeats, one per
/// argument).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecOptions {
    /// Whether this attaches to the container's own process (`pods/attach`) rather than
    /// running a new command.
    pub attach: bool,
    /// The argv (exec only).
    pub command: Vec<String>,
    /// Whether the client sends stdin.
    pub stdin: bool,
    /// Whether the client wants stdout.
    pub stdout: bool,
    /// Whether the client wants stderr.
    pub stderr: bool,
    /// Whether the command gets a terminal.
    pub tty: bool,
}

impl ExecOptions {
    /// Reads the options from the query's pairs.
    pub fn from_query(pairs: &[(String, String)]) -> ExecOptions {
        let flag = |name: &str| {
            pairs
                .iter()
                .rev()
                .find(|(key, _)| key == name)
                .is_some_and(|(_, v)| v == "1" || v.eq_ignore_ascii_case("true"))
        };
        ExecOptions {
            attach: false,
            command: pairs
                .iter()
                .filter(|(key, _)| key == "command")
                .map(|(_, value)| value.clone())
                .collect(),
            stdin: flag("stdin"),
            stdout: flag("stdout"),
            stderr: flag("stderr"),
            tty: flag("tty"),
        }
    }
}

/// The uid of pod `namespace/pod` on this node.
fn pod_uid(agent: &Agent, namespace: &str, pod: &str) -> Result<String, String> {
    agent
        .pod_names()
        .into_iter()
        .find(|(_, (ns, name))| ns == namespace && name == pod)
        .map(|(uid, _)| uid)
        .ok_or_else(|| format!("pod {namespace}/{pod} is not running on this node"))
}

/// The running container `container` of pod `namespace/pod` on this node: its runtime and
/// id (the latest restart's).
fn running_container(
    agent: &Agent,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Result<(Arc<dyn Runtime>, String), String> {
    let uid = pod_uid(agent, namespace, pod)?;
    // Container ids are `UID-CONTAINER-RESTART` (see `worker`).
    let prefix = format!("{uid}-{container}-");
    let mut found: Option<(u32, Arc<dyn Runtime>, String, bool)> = None;
    for runtime in agent.runtimes() {
        for (id, state) in runtime.list() {
            let Some(restart) = id
                .strip_prefix(&prefix)
                .and_then(|rest| rest.parse::<u32>().ok())
            else {
                continue;
            };
            let running = matches!(state, ContainerState::Running);
            if found.as_ref().is_none_or(|(n, ..)| restart > *n) {
                found = Some((restart, runtime.clone(), id, running));
            }
        }
    }
    match found {
        Some((_, runtime, id, true)) => Ok((runtime, id)),
        Some(_) => Err(format!(
            "container {container} in pod {namespace}/{pod} is not running"
        )),
        None => Err(format!(
            "container {container} is not valid for pod {pod}, or has not been created yet"
        )),
    }
}

/// `/exec/NAMESPACE/POD/CONTAINER?...`: upgrades to the channel protocol (WebSocket, or
/// SPDY/3.1 for kubectl before 1.30) and runs the command.
pub async fn exec(
    State(agent): State<Arc<Agent>>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    request: Request,
) -> Response {
    let options = ExecOptions::from_query(&query);
    streams(agent, (namespace, pod, container), options, request).await
}

/// `/attach/NAMESPACE/POD/CONTAINER?...`: as [`exec`], connected to the container's own
/// process (its stdin, if the pod spec gives it one, its output from now on and its terminal)
/// instead of a new command. The session ends when the container exits or the client
/// detaches; the container runs on.
pub async fn attach(
    State(agent): State<Arc<Agent>>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    request: Request,
) -> Response {
    let options = ExecOptions {
        attach: true,
        command: Vec::new(),
        ..ExecOptions::from_query(&query)
    };
    streams(agent, (namespace, pod, container), options, request).await
}

/// Upgrades an exec or attach request and runs its session.
async fn streams(
    agent: Arc<Agent>,
    (namespace, pod, container): (String, String, String),
    options: ExecOptions,
    request: Request,
) -> Response {
    let target = move || running_container(&agent, &namespace, &pod, &container);
    if is_spdy(request.headers()) {
        return spdy_upgrade(request, PROTOCOL_V4, move |connection| async move {
            let session = spdy::Session::over_stream(connection);
            spdy_exec_session(session, target(), options).await;
        });
    }
    match websocket_upgrade(request).await {
        Ok(upgrade) => {
            upgrade
                .protocols([PROTOCOL_V5, PROTOCOL_V4])
                .on_upgrade(move |socket| async move {
                    session(socket, target(), options).await;
                })
        }
        Err(refused) => refused,
    }
}

/// Whether a request asks to switch to SPDY/3.1.
fn is_spdy(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(spdy::UPGRADE))
}

/// The WebSocket handshake of `request`, or why it is not one.
async fn websocket_upgrade(request: Request) -> Result<WebSocketUpgrade, Response> {
    use axum::extract::FromRequestParts;
    use axum::response::IntoResponse;
    let (mut parts, _) = request.into_parts();
    WebSocketUpgrade::from_request_parts(&mut parts, &())
        .await
        .map_err(IntoResponse::into_response)
}

/// Answers a SPDY/3.1 upgrade that offers `protocol` (in `X-Stream-Protocol-Version`, as
/// client-go sends every version it speaks) and runs `serve` on the upgraded connection;
/// refuses it, as the kubelet does, if the client does not speak `protocol`.
fn spdy_upgrade<F, Fut>(mut request: Request, protocol: &'static str, serve: F) -> Response
where
    F: FnOnce(hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    let offered: Vec<String> = request
        .headers()
        .get_all(spdy::PROTOCOL_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_owned())
        .collect();
    if !offered.iter().any(|p| p == protocol) {
        return (
            StatusCode::FORBIDDEN,
            format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports [{protocol}]"
            ),
        )
            .into_response();
    }
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => serve(hyper_util::rt::TokioIo::new(upgraded)).await,
            Err(e) => tracing::debug!(error = %e, "a SPDY upgrade did not complete"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, spdy::UPGRADE)
        .header(spdy::PROTOCOL_HEADER, protocol)
        .body(axum::body::Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Runs one exec session on an upgraded WebSocket.
async fn session(
    mut socket: WebSocket,
    target: Result<(Arc<dyn Runtime>, String), String>,
    options: ExecOptions,
) {
    let outcome = run_exec(&mut socket, target, &options).await;
    // `None`: the client went away, and there is nobody to tell.
    if let Some(outcome) = outcome {
        let status = serde_json::to_vec(&outcome_status(&outcome)).unwrap_or_default();
        let _ = socket
            .send(Message::Binary(frame(channel::ERROR, &status)))
            .await;
        // A normal closure: kubectl takes a close without a code for an error.
        let close = CloseFrame {
            code: close_code::NORMAL,
            reason: "".into(),
        };
        if socket.send(Message::Close(Some(close))).await.is_ok() {
            // The closing handshake: read until the client's close, so that nothing it still
            // sent (a resize, stdin) is left unread — closing a TCP socket with unread data
            // resets the connection, and the reset can overtake the Status on its way.
            let _ = tokio::time::timeout(CLOSE_GRACE, async {
                while let Some(Ok(message)) = socket.recv().await {
                    if matches!(message, Message::Close(_)) {
                        break;
                    }
                }
            })
            .await;
        }
    }
}

/// Starts the command and runs it to its end over `io`; `None` when the client went away.
async fn run_exec(
    io: &mut impl ExecIo,
    target: Result<(Arc<dyn Runtime>, String), String>,
    options: &ExecOptions,
) -> Option<Result<i32, String>> {
    let started = match target {
        Ok((runtime, id)) if options.attach => runtime
            .attach(&id, options.stdin)
            .await
            .map_err(|e| e.to_string()),
        Ok((runtime, id)) => {
            let mut request = ExecRequest::new(options.command.clone(), std::time::Duration::MAX);
            request.stdin = options.stdin;
            request.tty = options.tty;
            runtime
                .exec_stream(&id, request)
                .await
                .map_err(|e| e.to_string())
        }
        Err(message) => Err(message),
    };
    match started {
        // An attach ends well whatever the container's exit code, as the kubelet's does:
        // `kubectl run` reads the code from the pod.
        Ok(session) if options.attach => pump(io, session, options)
            .await
            .map(|outcome| outcome.map(|_| 0)),
        Ok(exec) => pump(io, exec, options).await,
        Err(message) => Some(Err(message)),
    }
}

/// The client's side of an exec session, whatever carries it.
trait ExecIo: Send {
    /// The client's next message; `None` once the client has gone. Cancel-safe: it is raced
    /// against the command's output.
    fn next_input(&mut self) -> impl std::future::Future<Output = Option<ClientMessage>> + Send;
    /// Sends `data` on output `channel` (stdout or stderr); `false` once the client has gone.
    fn output(
        &mut self,
        channel: u8,
        data: Bytes,
    ) -> impl std::future::Future<Output = bool> + Send;
}

impl ExecIo for WebSocket {
    async fn next_input(&mut self) -> Option<ClientMessage> {
        loop {
            match self.recv().await {
                Some(Ok(Message::Binary(data))) => return Some(parse_client_message(&data)),
                // The Python client sends text frames; the kubelet reads a frame's bytes
                // whatever its type, and so does this.
                Some(Ok(Message::Text(text))) => {
                    return Some(parse_client_message(&Bytes::from(text)));
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    async fn output(&mut self, channel: u8, data: Bytes) -> bool {
        self.send(Message::Binary(frame(channel, &data)))
            .await
            .is_ok()
    }
}

/// The streams kubectl opens for an exec over SPDY (`v4.channel.k8s.io`): one per channel,
/// named by their `streamType` header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct ExecStreams {
    error: Option<u32>,
    stdin: Option<u32>,
    stdout: Option<u32>,
    stderr: Option<u32>,
    resize: Option<u32>,
}

impl ExecStreams {
    /// Whether every stream `options` call for is open (as the kubelet, the command starts
    /// only then).
    fn complete(&self, options: &ExecOptions) -> bool {
        self.error.is_some()
            && (!options.stdin || self.stdin.is_some())
            && (!options.stdout || self.stdout.is_some())
            && (!options.stderr || self.stderr.is_some())
            && (!options.tty || self.resize.is_some())
    }

    /// Records stream `id` of `kind`; `false` for a kind exec has no use for.
    fn open(&mut self, kind: &str, id: u32) -> bool {
        let slot = match kind {
            "error" => &mut self.error,
            "stdin" => &mut self.stdin,
            "stdout" => &mut self.stdout,
            "stderr" => &mut self.stderr,
            "resize" => &mut self.resize,
            _ => return false,
        };
        *slot = Some(id);
        true
    }
}

/// How long kubectl may take to open its streams.
const STREAMS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// An exec over SPDY: the streams, and what the client sent that is not handled yet.
struct SpdyExec {
    session: spdy::Session,
    headers: spdy::HeaderCodec,
    streams: ExecStreams,
    /// Terminal sizes, one JSON object per line, as they arrive (in pieces).
    resizes: BytesMut,
    /// Decoded messages not handed out yet.
    inputs: std::collections::VecDeque<ClientMessage>,
}

impl SpdyExec {
    /// Accepts the client's streams until all that `options` call for are open.
    async fn accept(session: spdy::Session, options: &ExecOptions) -> Result<SpdyExec, String> {
        let mut exec = SpdyExec {
            session,
            headers: spdy::HeaderCodec::new(),
            streams: ExecStreams::default(),
            resizes: BytesMut::new(),
            inputs: Default::default(),
        };
        tokio::time::timeout(STREAMS_TIMEOUT, async {
            while !exec.streams.complete(options) {
                let frame = exec
                    .session
                    .frames
                    .recv()
                    .await
                    .ok_or("the client went away")?;
                exec.take(frame).await?;
            }
            Ok::<_, String>(())
        })
        .await
        .map_err(|_| "the client did not open its streams in time".to_owned())??;
        Ok(exec)
    }

    /// Handles one frame from the client: opens streams, decodes stdin and resizes. An
    /// unreadable header block ends the session (the header stream's state is lost with it).
    async fn take(&mut self, frame: spdy::Frame) -> Result<(), String> {
        match frame {
            spdy::Frame::Control {
                kind: spdy::SYN_STREAM,
                payload,
                ..
            } => {
                let Some((id, headers)) = spdy::syn_stream(&payload, &mut self.headers) else {
                    return Err("an unreadable SYN_STREAM".into());
                };
                let kind = spdy::header(&headers, "streamtype").unwrap_or("");
                let reply = if self.streams.open(kind, id) {
                    spdy::syn_reply(id, &mut self.headers)
                } else {
                    spdy::rst_stream(id, spdy::RST_PROTOCOL_ERROR)
                };
                let _ = self.session.out.send(reply).await;
            }
            spdy::Frame::Data {
                stream,
                flags,
                payload,
            } => {
                if Some(stream) == self.streams.stdin {
                    if !payload.is_empty() {
                        self.inputs.push_back(ClientMessage::Stdin(payload));
                    }
                    if flags & spdy::FLAG_FIN != 0 {
                        self.inputs.push_back(ClientMessage::CloseStdin);
                    }
                } else if Some(stream) == self.streams.resize {
                    self.resizes.extend_from_slice(&payload);
                    while let Some(end) = self.resizes.iter().position(|b| *b == b'\n') {
                        let line = self.resizes.split_to(end + 1);
                        let mut message = vec![channel::RESIZE];
                        message.extend_from_slice(&line[..end]);
                        self.inputs.push_back(parse_client_message(&message.into()));
                    }
                    // A size is a few bytes: a line this long is not one.
                    if self.resizes.len() > MAX_RESIZE_LINE {
                        self.resizes.clear();
                    }
                }
            }
            spdy::Frame::Control {
                kind: spdy::RST_STREAM,
                payload,
                ..
            } => {
                if spdy::stream_id(&payload).is_some_and(|id| Some(id) == self.streams.stdin) {
                    self.inputs.push_back(ClientMessage::CloseStdin);
                }
            }
            spdy::Frame::Control { .. } => {}
        }
        Ok(())
    }
}

/// The longest resize line kept while waiting for its end.
const MAX_RESIZE_LINE: usize = 4096;

impl ExecIo for SpdyExec {
    async fn next_input(&mut self) -> Option<ClientMessage> {
        loop {
            if let Some(message) = self.inputs.pop_front() {
                return Some(message);
            }
            let frame = self.session.frames.recv().await?;
            if matches!(
                frame,
                spdy::Frame::Control {
                    kind: spdy::GOAWAY,
                    ..
                }
            ) {
                return None;
            }
            if self.take(frame).await.is_err() {
                return None;
            }
        }
    }

    async fn output(&mut self, channel: u8, data: Bytes) -> bool {
        let stream = match channel {
            channel::STDOUT => self.streams.stdout,
            channel::STDERR => self.streams.stderr,
            _ => None,
        };
        match stream {
            Some(stream) => self
                .session
                .out
                .send(spdy::data_frame(stream, false, &data))
                .await
                .is_ok(),
            None => true,
        }
    }
}

/// Runs one exec over SPDY: once kubectl has opened its streams, the command runs; its
/// outcome goes on the error stream as a Status (kubectl reads that stream to its end), and
/// every stream the server writes is finished.
async fn spdy_exec_session(
    session: spdy::Session,
    target: Result<(Arc<dyn Runtime>, String), String>,
    options: ExecOptions,
) {
    let mut exec = match SpdyExec::accept(session, &options).await {
        Ok(exec) => exec,
        Err(reason) => {
            tracing::debug!(%reason, "exec over SPDY did not start");
            return;
        }
    };
    let Some(outcome) = run_exec(&mut exec, target, &options).await else {
        return;
    };
    let status = serde_json::to_vec(&outcome_status(&outcome)).unwrap_or_default();
    let streams = exec.streams.clone();
    let mut last = Vec::new();
    if let Some(error) = streams.error {
        last.push(spdy::data_frame(error, false, &status));
        last.push(spdy::fin(error));
    }
    last.extend(
        [
            streams.stdout,
            streams.stderr,
            streams.stdin,
            streams.resize,
        ]
        .into_iter()
        .flatten()
        .map(spdy::fin),
    );
    for frame in last {
        if exec.session.out.send(frame).await.is_err() {
            return;
        }
    }
    exec.session.close(CLOSE_GRACE).await;
}

/// How long the client may take to answer the server's close.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Moves bytes between the WebSocket and the command until its output has ended, then
/// returns how it ended; `None` when the client closed the connection first (the session is
/// dropped then, which kills the command).
///
/// One loop for every direction, so that stdin waiting for the command never stops output
/// from being read (a command that writes before it reads would otherwise deadlock with a
/// client that keeps sending): while a stdin chunk waits for room, the socket is not read.
async fn pump(
    io: &mut impl ExecIo,
    exec: ExecSession,
    options: &ExecOptions,
) -> Option<Result<i32, String>> {
    let ExecSession {
        mut stdin,
        mut stdout,
        mut stderr,
        resize,
        exit,
    } = exec;
    let mut stdout_open = true;
    let mut stderr_open = stderr.is_some();
    let mut pending: Option<Bytes> = None;
    while stdout_open || stderr_open {
        tokio::select! {
            message = io.next_input(), if pending.is_none() => match message {
                Some(ClientMessage::Stdin(bytes)) if stdin.is_some() => pending = Some(bytes),
                Some(ClientMessage::Resize(size)) => {
                    let _ = resize.try_send(size);
                }
                Some(ClientMessage::CloseStdin) => stdin = None,
                Some(_) => {}
                None => return None,
            },
            permit = reserve(stdin.clone()), if pending.is_some() => {
                match permit {
                    Some(permit) => {
                        permit.send(pending.take().expect("guarded"));
                    }
                    // The command no longer reads its stdin.
                    None => {
                        pending = None;
                        stdin = None;
                    }
                }
            }
            chunk = stdout.recv(), if stdout_open => match chunk {
                Some(bytes) if options.stdout => {
                    if !io.output(channel::STDOUT, bytes).await {
                        return None;
                    }
                }
                Some(_) => {}
                None => stdout_open = false,
            },
            chunk = async { stderr.as_mut().expect("guarded").recv().await }, if stderr_open => match chunk {
                Some(bytes) if options.stderr => {
                    if !io.output(channel::STDERR, bytes).await {
                        return None;
                    }
                }
                Some(_) => {}
                None => stderr_open = false,
            },
        }
        if pending.is_some() && stdin.is_none() {
            pending = None;
        }
    }
    drop(stdin);
    match exit.await {
        Ok(Ok(code)) => Some(Ok(code)),
        Ok(Err(e)) => Some(Err(e.to_string())),
        Err(_) => Some(Err("the exec session ended without an exit code".into())),
    }
}

/// The WebSocket subprotocol of kubectl's port forwarding: SPDY/3.1 inside WebSocket.
pub const PORT_FORWARD_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// The stream protocol of port forwarding directly over SPDY.
pub const PORT_FORWARD_SPDY_PROTOCOL: &str = "portforward.k8s.io";

/// Where a pod's forwarded connections go.
#[derive(Clone)]
enum ForwardTarget {
    /// A pod with an address (containers: the pod IP on the node's bridge).
    Address(IpAddr),
    /// A Wasm pod that serves HTTP in process.
    Handler(Arc<dyn HttpHandler>),
}

/// Where pod `namespace/pod` on this node is reached.
async fn forward_target(
    agent: &Agent,
    namespace: &str,
    pod: &str,
) -> Result<ForwardTarget, String> {
    let uid = pod_uid(agent, namespace, pod)?;
    if let Some((_, handler)) = agent.http_handlers(&uid).into_iter().next() {
        return Ok(ForwardTarget::Handler(handler));
    }
    let pods = wharf_apiserver::resources::find("", "v1", "pods").expect("pods are served");
    let object = agent
        .api
        .get(pods, Some(namespace), pod)
        .await
        .map_err(|e| format!("cannot look up pod {namespace}/{pod}: {e}"))?;
    object["status"]["podIP"]
        .as_str()
        .and_then(|ip| ip.parse().ok())
        .map(ForwardTarget::Address)
        .ok_or_else(|| format!("pod {namespace}/{pod} has no IP yet"))
}

/// `/portForward/NAMESPACE/POD`: upgrades to SPDY (over WebSocket, or directly for kubectl
/// before 1.31) and forwards every connection kubectl opens to the pod.
pub async fn port_forward(
    State(agent): State<Arc<Agent>>,
    UrlPath((namespace, pod)): UrlPath<(String, String)>,
    request: Request,
) -> Response {
    if is_spdy(request.headers()) {
        return spdy_upgrade(
            request,
            PORT_FORWARD_SPDY_PROTOCOL,
            move |connection| async move {
                let target = forward_target(&agent, &namespace, &pod).await;
                forward_session(spdy::Session::over_stream(connection), target).await;
            },
        );
    }
    match websocket_upgrade(request).await {
        Ok(upgrade) => {
            upgrade
                .protocols([PORT_FORWARD_PROTOCOL])
                .on_upgrade(move |socket| async move {
                    let target = forward_target(&agent, &namespace, &pod).await;
                    forward_session(spdy::Session::over_websocket(socket), target).await;
                })
        }
        Err(refused) => refused,
    }
}

/// One stream kubectl opened.
enum OpenStream {
    /// An error stream: nothing is read from it.
    Error,
    /// A data stream, with the sender of its connection's inbound bytes (`None` once the
    /// client has finished sending).
    Data(Option<mpsc::UnboundedSender<Bytes>>),
}

/// Runs the SPDY session of one `kubectl port-forward` until the client goes.
async fn forward_session(mut session: spdy::Session, target: Result<ForwardTarget, String>) {
    let mut headers = spdy::HeaderCodec::new();
    let mut streams: HashMap<u32, OpenStream> = HashMap::new();
    // The error stream of each request id, until its data stream arrives.
    let mut error_streams: HashMap<String, u32> = HashMap::new();
    while let Some(frame) = session.frames.recv().await {
        let reply = match frame {
            spdy::Frame::Data {
                stream,
                flags,
                payload,
            } => {
                if let Some(OpenStream::Data(inbound)) = streams.get_mut(&stream) {
                    if let Some(sender) = inbound
                        && !payload.is_empty()
                    {
                        let _ = sender.send(payload);
                    }
                    if flags & spdy::FLAG_FIN != 0 {
                        *inbound = None;
                    }
                }
                None
            }
            spdy::Frame::Control {
                kind: spdy::SYN_STREAM,
                payload,
                ..
            } => {
                let Some((stream, opened)) = spdy::syn_stream(&payload, &mut headers) else {
                    tracing::debug!("port-forward: an unreadable SYN_STREAM ends the session");
                    return;
                };
                let header = |name: &str| spdy::header(&opened, name);
                let request = header("requestid").unwrap_or("").to_owned();
                let port = header("port").and_then(|p| p.parse::<u16>().ok());
                match (header("streamtype"), port) {
                    (Some("error"), Some(_)) => {
                        streams.insert(stream, OpenStream::Error);
                        error_streams.insert(request, stream);
                        Some(spdy::syn_reply(stream, &mut headers))
                    }
                    (Some("data"), Some(port)) => {
                        // Unbounded: the session's one loop must never wait for one
                        // connection's target (it carries every connection's frames), and
                        // kubectl sends only what its local client wrote.
                        let (sender, inbound) = mpsc::unbounded_channel();
                        streams.insert(stream, OpenStream::Data(Some(sender)));
                        let error_stream = error_streams.remove(&request);
                        tokio::spawn(forward_connection(
                            target.clone(),
                            port,
                            stream,
                            error_stream,
                            inbound,
                            session.out.clone(),
                        ));
                        Some(spdy::syn_reply(stream, &mut headers))
                    }
                    _ => Some(spdy::rst_stream(stream, spdy::RST_PROTOCOL_ERROR)),
                }
            }
            spdy::Frame::Control {
                kind: spdy::RST_STREAM,
                payload,
                ..
            } => {
                if let Some(stream) = spdy::stream_id(&payload) {
                    streams.remove(&stream);
                }
                None
            }
            spdy::Frame::Control {
                kind: spdy::GOAWAY, ..
            } => return,
            // SETTINGS, WINDOW_UPDATE (the client enforces no flow control), HEADERS.
            spdy::Frame::Control { .. } => None,
        };
        if let Some(reply) = reply
            && session.out.send(reply).await.is_err()
        {
            return;
        }
    }
}

/// Forwards one connection: its inbound bytes to the target, the target's bytes back on the
/// data stream, until the target's side ends (as the kubelet does); then both streams are
/// finished. A target that cannot be reached is reported on the error stream.
async fn forward_connection(
    target: Result<ForwardTarget, String>,
    port: u16,
    data_stream: u32,
    error_stream: Option<u32>,
    mut inbound: mpsc::UnboundedReceiver<Bytes>,
    frames: mpsc::Sender<Bytes>,
) {
    let connected: Result<Box<dyn Duplex>, String> = match target {
        Err(message) => Err(message),
        Ok(ForwardTarget::Address(ip)) => tokio::net::TcpStream::connect((ip, port))
            .await
            .map(|stream| Box::new(stream) as Box<dyn Duplex>)
            .map_err(|e| format!("cannot connect to port {port} of the pod ({ip}): {e}")),
        Ok(ForwardTarget::Handler(handler)) => {
            let (ours, theirs) = tokio::io::duplex(64 * 1024);
            tokio::spawn(serve_http(theirs, handler));
            Ok(Box::new(ours))
        }
    };
    match connected {
        Err(message) => {
            if let Some(error_stream) = error_stream {
                let _ = frames
                    .send(spdy::data_frame(error_stream, false, message.as_bytes()))
                    .await;
            }
        }
        Ok(connection) => {
            let (mut reader, mut writer) = tokio::io::split(connection);
            let upstream = async {
                while let Some(chunk) = inbound.recv().await {
                    if writer.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
                // kubectl's side finished sending: half-close, the answer may still come.
                let _ = writer.shutdown().await;
                std::future::pending::<()>().await
            };
            let downstream = async {
                let mut chunk = vec![0; 32 * 1024];
                loop {
                    match reader.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let frame = spdy::data_frame(data_stream, false, &chunk[..n]);
                            if frames.send(frame).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            };
            tokio::select! {
                () = upstream => {}
                () = downstream => {}
            }
        }
    }
    let _ = frames.send(spdy::data_frame(data_stream, true, b"")).await;
    if let Some(error_stream) = error_stream {
        let _ = frames.send(spdy::data_frame(error_stream, true, b"")).await;
    }
}

/// A byte stream both ways.
trait Duplex: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Duplex for T {}

/// Serves HTTP/1 on `stream` with a Wasm pod's in-process handler.
async fn serve_http(stream: tokio::io::DuplexStream, handler: Arc<dyn HttpHandler>) {
    let service =
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let handler = handler.clone();
            async move {
                let request =
                    request.map(|body| body.map_err(std::io::Error::other).boxed_unsync());
                Ok::<_, Infallible>(handler.handle(request).await)
            }
        });
    let served = hyper::server::conn::http1::Builder::new()
        .half_close(true)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .await;
    if let Err(e) = served {
        tracing::debug!(error = %e, "a port-forwarded HTTP connection ended with an error");
    }
}

/// Room for one chunk of stdin; `None` when there is no stdin (any more).
async fn reserve(
    stdin: Option<tokio::sync::mpsc::Sender<Bytes>>,
) -> Option<tokio::sync::mpsc::OwnedPermit<Bytes>> {
    stdin?.reserve_owned().await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_are_decoded_by_their_channel() {
        assert_eq!(
            parse_client_message(&Bytes::from_static(b"\x00hello")),
            ClientMessage::Stdin(Bytes::from_static(b"hello"))
        );
        assert_eq!(
            parse_client_message(&Bytes::from_static(b"\x04{\"Width\":120,\"Height\":40}")),
            ClientMessage::Resize(TerminalSize {
                width: 120,
                height: 40
            })
        );
        assert_eq!(
            parse_client_message(&Bytes::from_static(b"\xff\x00")),
            ClientMessage::CloseStdin
        );
        for ignored in [
            &b""[..],
            b"\x00",
            b"\x04{}",
            b"\x04junk",
            b"\xff\x01",
            b"\x07x",
        ] {
            assert_eq!(
                parse_client_message(&Bytes::copy_from_slice(ignored)),
                ClientMessage::Ignored,
                "{ignored:?}"
            );
        }
    }

    #[test]
    fn a_frame_is_its_channel_then_its_data() {
        assert_eq!(&frame(channel::STDERR, b"oops")[..], b"\x02oops");
        assert_eq!(&frame(channel::STDOUT, b"")[..], b"\x01");
    }

    #[test]
    fn the_exit_code_travels_as_kubectl_reads_it() {
        assert_eq!(
            outcome_status(&Ok(0)),
            json!({"metadata": {}, "status": "Success"})
        );
        let status = outcome_status(&Ok(3));
        assert_eq!(status["status"], "Failure");
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(
            status["details"]["causes"],
            json!([{"reason": "ExitCode", "message": "3"}])
        );
        let status = outcome_status(&Err("not supported: no shell".into()));
        assert_eq!(status["status"], "Failure");
        assert_eq!(status["message"], "not supported: no shell");
        assert_ne!(status["reason"], "NonZeroExitCode");
    }

    /// Reads one frame the server wrote.
    async fn read_frame(from_server: &mut (impl tokio::io::AsyncRead + Unpin)) -> spdy::Frame {
        let mut buffer = BytesMut::new();
        let mut chunk = [0u8; 1];
        loop {
            if let Some(frame) = spdy::next_frame(&mut buffer) {
                return frame;
            }
            from_server.read_exact(&mut chunk).await.expect("a frame");
            buffer.extend_from_slice(&chunk);
        }
    }

    #[tokio::test]
    async fn garbage_after_the_upgrade_ends_the_sessions_without_running_anything() {
        // A SYN_STREAM whose header block is not zlib, then noise: a port-forward session
        // ends at the unreadable headers, an exec never starts its command.
        let mut garbage =
            spdy::control_frame(spdy::SYN_STREAM, 0, b"\0\0\0\x01\0\0\0\0\0\0junk").to_vec();
        garbage.extend_from_slice(&[0xff; 100]);
        let (client, server) = tokio::io::duplex(4096);
        let (_from_server, mut to_server) = tokio::io::split(client);
        to_server.write_all(&garbage).await.unwrap();
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            forward_session(spdy::Session::over_stream(server), Err("unused".into())),
        )
        .await
        .expect("the port-forward session ends");

        let (client, server) = tokio::io::duplex(4096);
        let (_from_server, mut to_server) = tokio::io::split(client);
        to_server.write_all(&garbage).await.unwrap();
        let options = ExecOptions {
            stdout: true,
            ..ExecOptions::default()
        };
        let accepted = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            SpdyExec::accept(spdy::Session::over_stream(server), &options),
        )
        .await
        .expect("accept gives up at the unreadable headers");
        assert!(accepted.is_err(), "no stream was opened");
    }

    #[tokio::test]
    async fn an_exec_over_spdy_waits_for_its_streams_and_ends_with_the_status_on_the_error_stream()
    {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let options = ExecOptions {
            command: vec!["sh".into()],
            stdout: true,
            stderr: true,
            ..ExecOptions::default()
        };
        let session = tokio::spawn(spdy_exec_session(
            spdy::Session::over_stream(server),
            Err("container app is not running".into()),
            options,
        ));
        let (mut from_server, mut to_server) = tokio::io::split(client);
        let mut compress = spdy::tests::client_compressor();
        for (id, kind) in [(1, "error"), (3, "stdout"), (5, "stderr")] {
            let syn = spdy::tests::client_syn_stream(&mut compress, id, &[("streamtype", kind)]);
            to_server.write_all(&syn).await.unwrap();
            let reply = read_frame(&mut from_server).await;
            assert!(
                matches!(&reply, spdy::Frame::Control { kind: spdy::SYN_REPLY, payload, .. }
                    if spdy::stream_id(payload) == Some(id)),
                "{reply:?}"
            );
        }
        let spdy::Frame::Data {
            stream: 1,
            flags: 0,
            payload,
        } = read_frame(&mut from_server).await
        else {
            panic!("the Status on the error stream first");
        };
        let status: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(status["status"], "Failure");
        assert_eq!(status["message"], "container app is not running");
        let mut finished = Vec::new();
        for _ in 0..3 {
            match read_frame(&mut from_server).await {
                spdy::Frame::Data {
                    stream,
                    flags: spdy::FLAG_FIN,
                    payload,
                } if payload.is_empty() => finished.push(stream),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            finished,
            [1, 3, 5],
            "every stream the server writes is finished"
        );
        // The server waits for the client to close.
        drop(to_server);
        drop(from_server);
        tokio::time::timeout(std::time::Duration::from_secs(5), session)
            .await
            .expect("the session ends when the client closes")
            .unwrap();
    }

    #[tokio::test]
    async fn stdin_its_end_and_resizes_cut_anywhere_arrive_whole_over_spdy() {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (_from_server, mut to_server) = tokio::io::split(client);
        let options = ExecOptions {
            stdin: true,
            stdout: true,
            tty: true,
            ..ExecOptions::default()
        };
        let mut compress = spdy::tests::client_compressor();
        let mut sent = Vec::new();
        for (id, kind) in [(1, "error"), (3, "stdin"), (5, "stdout"), (7, "resize")] {
            sent.extend_from_slice(&spdy::tests::client_syn_stream(
                &mut compress,
                id,
                &[("streamtype", kind)],
            ));
        }
        sent.extend_from_slice(&spdy::data_frame(7, false, b"{\"Width\":80,"));
        sent.extend_from_slice(&spdy::data_frame(3, false, b"echo hi\n"));
        sent.extend_from_slice(&spdy::data_frame(
            7,
            false,
            b"\"Height\":24}\n{\"Width\":100,\"Height\":30}\n",
        ));
        sent.extend_from_slice(&spdy::data_frame(3, true, b""));
        to_server.write_all(&sent).await.unwrap();
        let mut exec = SpdyExec::accept(spdy::Session::over_stream(server), &options)
            .await
            .expect("every stream opened");
        let mut inputs = Vec::new();
        for _ in 0..4 {
            inputs.push(exec.next_input().await.expect("an input"));
        }
        assert_eq!(
            inputs,
            [
                ClientMessage::Stdin(Bytes::from_static(b"echo hi\n")),
                ClientMessage::Resize(TerminalSize {
                    width: 80,
                    height: 24
                }),
                ClientMessage::Resize(TerminalSize {
                    width: 100,
                    height: 30
                }),
                ClientMessage::CloseStdin,
            ]
        );
    }

    #[test]
    fn an_exec_starts_only_once_the_streams_its_options_call_for_are_open() {
        let options = ExecOptions {
            stdin: true,
            stdout: true,
            stderr: false,
            tty: true,
            ..ExecOptions::default()
        };
        let mut streams = ExecStreams::default();
        for (kind, id) in [("error", 1), ("stdin", 3), ("stdout", 5)] {
            assert!(!streams.complete(&options));
            assert!(streams.open(kind, id));
        }
        assert!(
            !streams.complete(&options),
            "a terminal needs its resize stream"
        );
        assert!(!streams.open("data", 9), "not a stream of exec");
        assert!(streams.open("resize", 7));
        assert!(streams.complete(&options));
    }

    #[test]
    fn exec_options_keep_every_command_argument_in_order() {
        let pairs: Vec<(String, String)> = [
            ("command", "sh"),
            ("container", "c"),
            ("command", "-c"),
            ("command", "exit 3"),
            ("stdin", "true"),
            ("stdout", "1"),
            ("tty", "false"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let options = ExecOptions::from_query(&pairs);
        assert_eq!(options.command, ["sh", "-c", "exit 3"]);
        assert!(options.stdin && options.stdout && !options.stderr && !options.tty);
    }
}
