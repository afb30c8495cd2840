//! The agent's exec endpoint (the kubelet's `exec`), which the API server proxies
//! `kubectl exec` to: `GET /exec/NAMESPACE/POD/CONTAINER?command=...&stdin=..&stdout=..&
//! stderr=..&tty=..`, upgraded to a WebSocket that speaks Kubernetes' channel protocol
//! (`v5.channel.k8s.io`, or `v4.channel.k8s.io` for older clients).
//!
//! Every binary WebSocket message starts with its channel: 0 stdin (client to server), 1
//! stdout, 2 stderr, 3 the outcome as a `metav1.Status` (sent once, at the end), 4 terminal
//! resizes (`{"Width":W,"Height":H}`, client to server), and in v5 255 to close a stream
//! (`[255, 0]`: the client's stdin has ended). The exit code reaches kubectl in the Status:
//! `Success`, or `Failure` with reason `NonZeroExitCode` and the code as the message of an
//! `ExitCode` cause. Anything that keeps the command from running — no such container, a
//! runtime that cannot exec (Wasm) — is a `Failure` Status too, whose message kubectl prints.
//!
//! The command runs through [`Runtime::exec_stream`]; closing the WebSocket drops the session,
//! which kills the command.
//!
//! Port forwarding (the kubelet's `portForward`, `GET /portForward/NAMESPACE/POD`) is what
//! kubectl >= 1.31 speaks: SPDY/3.1 tunnelled in WebSocket binary messages (subprotocol
//! `SPDY/3.1+portforward.k8s.io`). For every local connection kubectl opens two SPDY streams
//! with headers `streamType: error|data`, `port` and `requestID`; the data stream carries the
//! connection's bytes both ways, and the error stream a message if the pod's port cannot be
//! reached. A container pod is reached at its IP on the node's bridge; a Wasm pod serving
//! HTTP in process gets an HTTP/1 server connection over the tunnelled bytes, answered by its
//! `HttpHandler` (whatever the port). Module [`spdy`] holds the framing.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Path as UrlPath, Query, State};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use wharf_runtime::{ContainerState, ExecRequest, ExecSession, HttpHandler, Runtime, TerminalSize};

use crate::Agent;

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

/// The options of an exec request, from its query (`command` repeats, one per argument).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecOptions {
    /// The argv.
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

/// The running container `container` of pod `namespace/pod` on this node: its runtime and
/// id (the latest restart's).
fn running_container(
    agent: &Agent,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Result<(Arc<dyn Runtime>, String), String> {
    let uid = agent
        .pod_names()
        .into_iter()
        .find(|(_, (ns, name))| ns == namespace && name == pod)
        .map(|(uid, _)| uid)
        .ok_or_else(|| format!("pod {namespace}/{pod} is not running on this node"))?;
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

/// `GET /exec/NAMESPACE/POD/CONTAINER?...`: upgrades to the channel protocol and runs the
/// command.
pub async fn exec(
    State(agent): State<Arc<Agent>>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let options = ExecOptions::from_query(&query);
    upgrade
        .protocols([PROTOCOL_V5, PROTOCOL_V4])
        .on_upgrade(move |socket| async move {
            let target = running_container(&agent, &namespace, &pod, &container);
            session(socket, target, options).await;
        })
}

/// Runs one exec session on an upgraded WebSocket.
async fn session(
    mut socket: WebSocket,
    target: Result<(Arc<dyn Runtime>, String), String>,
    options: ExecOptions,
) {
    let started = match target {
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
    let outcome = match started {
        Ok(exec) => pump(&mut socket, exec, &options).await,
        Err(message) => Some(Err(message)),
    };
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
    socket: &mut WebSocket,
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
            message = socket.recv(), if pending.is_none() => match message {
                Some(Ok(Message::Binary(data))) => match parse_client_message(&data) {
                    ClientMessage::Stdin(bytes) if stdin.is_some() => pending = Some(bytes),
                    ClientMessage::Resize(size) => {
                        let _ = resize.try_send(size);
                    }
                    ClientMessage::CloseStdin => stdin = None,
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                Some(Ok(_)) => {}
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
                    if socket.send(Message::Binary(frame(channel::STDOUT, &bytes))).await.is_err() {
                        return None;
                    }
                }
                Some(_) => {}
                None => stdout_open = false,
            },
            chunk = async { stderr.as_mut().expect("guarded").recv().await }, if stderr_open => match chunk {
                Some(bytes) if options.stderr => {
                    if socket.send(Message::Binary(frame(channel::STDERR, &bytes))).await.is_err() {
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
    let uid = agent
        .pod_names()
        .into_iter()
        .find(|(_, (ns, name))| ns == namespace && name == pod)
        .map(|(uid, _)| uid)
        .ok_or_else(|| format!("pod {namespace}/{pod} is not running on this node"))?;
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

/// `GET /portForward/NAMESPACE/POD`: upgrades to SPDY over WebSocket and forwards every
/// connection kubectl opens to the pod.
pub async fn port_forward(
    State(agent): State<Arc<Agent>>,
    UrlPath((namespace, pod)): UrlPath<(String, String)>,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .protocols([PORT_FORWARD_PROTOCOL])
        .on_upgrade(move |socket| async move {
            let target = forward_target(&agent, &namespace, &pod).await;
            forward_session(socket, target).await;
        })
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
async fn forward_session(mut socket: WebSocket, target: Result<ForwardTarget, String>) {
    let (frames, mut outgoing) = mpsc::channel::<Bytes>(64);
    let mut buffer = BytesMut::new();
    let mut headers = spdy::HeaderCodec::new();
    let mut streams: HashMap<u32, OpenStream> = HashMap::new();
    // The error stream of each request id, until its data stream arrives.
    let mut error_streams: HashMap<String, u32> = HashMap::new();
    loop {
        let data = tokio::select! {
            message = socket.recv() => match message {
                Some(Ok(Message::Binary(data))) => data,
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => continue,
            },
            Some(frame) = outgoing.recv() => {
                if socket.send(Message::Binary(frame)).await.is_err() {
                    return;
                }
                continue;
            }
        };
        buffer.extend_from_slice(&data);
        while let Some(frame) = spdy::next_frame(&mut buffer) {
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
                    let header = |name: &str| {
                        opened
                            .iter()
                            .find(|(key, _)| key.eq_ignore_ascii_case(name))
                            .map(|(_, value)| value.as_str())
                    };
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
                            // connection's target (it carries every connection's output and
                            // the pings), and kubectl sends only what its local client wrote.
                            let (sender, inbound) = mpsc::unbounded_channel();
                            streams.insert(stream, OpenStream::Data(Some(sender)));
                            let error_stream = error_streams.remove(&request);
                            tokio::spawn(forward_connection(
                                target.clone(),
                                port,
                                stream,
                                error_stream,
                                inbound,
                                frames.clone(),
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
                // Pings from the client are answered with the same frame.
                spdy::Frame::Control {
                    kind: spdy::PING,
                    payload,
                    ..
                } => Some(spdy::control_frame(spdy::PING, 0, &payload)),
                spdy::Frame::Control {
                    kind: spdy::GOAWAY, ..
                } => return,
                // SETTINGS, WINDOW_UPDATE (the client enforces no flow control), HEADERS.
                spdy::Frame::Control { .. } => None,
            };
            if let Some(reply) = reply
                && socket.send(Message::Binary(reply)).await.is_err()
            {
                return;
            }
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

/// SPDY/3.1 framing, as much as port forwarding needs: frames, SYN_STREAM headers
/// (zlib-compressed with the protocol's dictionary), SYN_REPLY, RST_STREAM, PING.
pub mod spdy {
    use bytes::{BufMut, Bytes, BytesMut};
    use flate2::{Decompress, FlushDecompress};

    /// Control frame types.
    pub const SYN_STREAM: u16 = 1;
    /// A stream accepted.
    pub const SYN_REPLY: u16 = 2;
    /// A stream ended abnormally.
    pub const RST_STREAM: u16 = 3;
    /// A ping, answered with the same frame.
    pub const PING: u16 = 6;
    /// The session ends.
    pub const GOAWAY: u16 = 7;
    /// The last frame of a stream in this direction.
    pub const FLAG_FIN: u8 = 0x01;
    /// RST_STREAM status: the stream was not understood.
    pub const RST_PROTOCOL_ERROR: u32 = 1;
    /// The SPDY version.
    const VERSION: u16 = 3;

    /// One frame.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum Frame {
        /// A control frame.
        Control {
            /// Its type.
            kind: u16,
            /// Its flags.
            flags: u8,
            /// What follows the 8-byte header.
            payload: Bytes,
        },
        /// A data frame.
        Data {
            /// The stream.
            stream: u32,
            /// Its flags.
            flags: u8,
            /// The data.
            payload: Bytes,
        },
    }

    /// Takes the first complete frame off `buffer`, if it holds one.
    pub fn next_frame(buffer: &mut BytesMut) -> Option<Frame> {
        if buffer.len() < 8 {
            return None;
        }
        let length = u32::from_be_bytes([0, buffer[5], buffer[6], buffer[7]]) as usize;
        if buffer.len() < 8 + length {
            return None;
        }
        let head = buffer.split_to(8);
        let payload = buffer.split_to(length).freeze();
        let flags = head[4];
        Some(if head[0] & 0x80 != 0 {
            Frame::Control {
                kind: u16::from_be_bytes([head[2], head[3]]),
                flags,
                payload,
            }
        } else {
            Frame::Data {
                stream: u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & 0x7fff_ffff,
                flags,
                payload,
            }
        })
    }

    /// A control frame of `kind`.
    pub fn control_frame(kind: u16, flags: u8, payload: &[u8]) -> Bytes {
        let mut frame = BytesMut::with_capacity(8 + payload.len());
        frame.put_u16(0x8000 | VERSION);
        frame.put_u16(kind);
        frame.put_u32((u32::from(flags) << 24) | payload.len() as u32);
        frame.put_slice(payload);
        frame.freeze()
    }

    /// A data frame on `stream`.
    pub fn data_frame(stream: u32, fin: bool, data: &[u8]) -> Bytes {
        let mut frame = BytesMut::with_capacity(8 + data.len());
        frame.put_u32(stream & 0x7fff_ffff);
        let flags = if fin { FLAG_FIN } else { 0 };
        frame.put_u32((u32::from(flags) << 24) | data.len() as u32);
        frame.put_slice(data);
        frame.freeze()
    }

    /// The stream id at the start of a control frame's payload.
    pub fn stream_id(payload: &[u8]) -> Option<u32> {
        let id: [u8; 4] = payload.get(..4)?.try_into().ok()?;
        Some(u32::from_be_bytes(id) & 0x7fff_ffff)
    }

    /// The stream id and headers of a SYN_STREAM.
    pub fn syn_stream(
        payload: &[u8],
        codec: &mut HeaderCodec,
    ) -> Option<(u32, Vec<(String, String)>)> {
        let stream = stream_id(payload)?;
        let headers = codec.decode(payload.get(10..)?).ok()?;
        Some((stream, headers))
    }

    /// The SYN_REPLY accepting `stream`, with no headers.
    pub fn syn_reply(stream: u32, codec: &mut HeaderCodec) -> Bytes {
        let mut payload = (stream & 0x7fff_ffff).to_be_bytes().to_vec();
        payload.extend_from_slice(&codec.encode_empty());
        control_frame(SYN_REPLY, 0, &payload)
    }

    /// The RST_STREAM of `stream` with `status`.
    pub fn rst_stream(stream: u32, status: u32) -> Bytes {
        let mut payload = (stream & 0x7fff_ffff).to_be_bytes().to_vec();
        payload.extend_from_slice(&status.to_be_bytes());
        control_frame(RST_STREAM, 0, &payload)
    }

    /// The header blocks of one session: each direction is one zlib stream for the whole
    /// session, the client's compressed with the SPDY/3 dictionary.
    pub struct HeaderCodec {
        inflate: Decompress,
        started_output: bool,
    }

    impl Default for HeaderCodec {
        fn default() -> HeaderCodec {
            HeaderCodec::new()
        }
    }

    impl HeaderCodec {
        /// A codec at the start of a session.
        pub fn new() -> HeaderCodec {
            HeaderCodec {
                inflate: Decompress::new(true),
                started_output: false,
            }
        }

        /// Decodes the client's next header block into its (lower-case) names and values.
        pub fn decode(&mut self, block: &[u8]) -> Result<Vec<(String, String)>, String> {
            let mut plain = Vec::with_capacity(256);
            let mut consumed = 0;
            loop {
                if plain.capacity() - plain.len() < 256 {
                    plain.reserve(1024);
                }
                let before = self.inflate.total_in();
                let room = plain.capacity() - plain.len();
                let produced_before = plain.len();
                let result = self.inflate.decompress_vec(
                    &block[consumed..],
                    &mut plain,
                    FlushDecompress::Sync,
                );
                consumed += (self.inflate.total_in() - before) as usize;
                match result {
                    Ok(_) => {}
                    Err(e) if e.needs_dictionary().is_some() => {
                        self.inflate
                            .set_dictionary(&dictionary())
                            .map_err(|e| format!("the SPDY header dictionary: {e}"))?;
                        continue;
                    }
                    Err(e) => return Err(format!("a SPDY header block: {e}")),
                }
                let produced = plain.len() - produced_before;
                if consumed >= block.len() && produced < room {
                    break;
                }
                if produced == 0 && consumed >= block.len() {
                    break;
                }
            }
            parse_header_block(&plain)
        }

        /// Our next header block, empty: zlib's header once, then a stored (uncompressed)
        /// deflate block holding a count of zero, then an empty stored block — what a sync
        /// flush writes, and what makes Go's decompressor hand over the data before it
        /// looks for the next block (beyond this frame). A stream without a preset
        /// dictionary is valid for the client's decompressor, so nothing needs compressing.
        pub fn encode_empty(&mut self) -> Vec<u8> {
            let mut block = Vec::with_capacity(16);
            if !self.started_output {
                // CMF/FLG: deflate, 32 KiB window, no dictionary, check bits valid.
                block.extend_from_slice(&[0x78, 0x01]);
                self.started_output = true;
            }
            let plain = 0u32.to_be_bytes();
            let length = plain.len() as u16;
            block.push(0x00); // not final, stored
            block.extend_from_slice(&length.to_le_bytes());
            block.extend_from_slice(&(!length).to_le_bytes());
            block.extend_from_slice(&plain);
            block.extend_from_slice(&[0x00, 0x00, 0x00, 0xff, 0xff]);
            block
        }
    }

    /// Parses a decompressed header block: a count, then length-prefixed names and values
    /// (a value may hold several, separated by NUL; they are kept joined).
    pub fn parse_header_block(plain: &[u8]) -> Result<Vec<(String, String)>, String> {
        let mut rest = plain;
        let mut take = |n: usize| -> Result<&[u8], String> {
            if rest.len() < n {
                return Err("a truncated SPDY header block".into());
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        let count = u32::from_be_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
        let mut headers = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            let length = u32::from_be_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
            let name = String::from_utf8_lossy(take(length)?).to_lowercase();
            let length = u32::from_be_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
            let value = String::from_utf8_lossy(take(length)?).into_owned();
            headers.push((name, value));
        }
        Ok(headers)
    }

    /// The SPDY/3 header compression dictionary (SPDY draft 3, section 2.6.10.1): these
    /// names, each with a 4-byte big-endian length, then a run of common values.
    pub fn dictionary() -> Vec<u8> {
        const NAMES: &[&str] = &[
            "options",
            "head",
            "post",
            "put",
            "delete",
            "trace",
            "accept",
            "accept-charset",
            "accept-encoding",
            "accept-language",
            "accept-ranges",
            "age",
            "allow",
            "authorization",
            "cache-control",
            "connection",
            "content-base",
            "content-encoding",
            "content-language",
            "content-length",
            "content-location",
            "content-md5",
            "content-range",
            "content-type",
            "date",
            "etag",
            "expect",
            "expires",
            "from",
            "host",
            "if-match",
            "if-modified-since",
            "if-none-match",
            "if-range",
            "if-unmodified-since",
            "last-modified",
            "location",
            "max-forwards",
            "pragma",
            "proxy-authenticate",
            "proxy-authorization",
            "range",
            "referer",
            "retry-after",
            "server",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "user-agent",
            "vary",
            "via",
            "warning",
            "www-authenticate",
            "method",
            "get",
            "status",
            "200 OK",
            "version",
            "HTTP/1.1",
            "url",
            "public",
            "set-cookie",
            "keep-alive",
            "origin",
        ];
        const VALUES: &str = concat!(
            "100101201202205206300302303304305306307402405406407408409410411412413414415416417",
            "502504505",
            "203 Non-Authoritative Information",
            "204 No Content",
            "301 Moved Permanently",
            "400 Bad Request",
            "401 Unauthorized",
            "403 Forbidden",
            "404 Not Found",
            "500 Internal Server Error",
            "501 Not Implemented",
            "503 Service Unavailable",
            "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
            "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
            "chunked,text/html,image/png,image/jpg,image/gif,application/xml,",
            "application/xhtml+xml,text/plain,text/javascript,public",
            "private",
            "max-age=",
            "gzip,deflate,sdch",
            "charset=utf-8",
            "charset=iso-8859-1,utf-,*,enq=0.",
        );
        let mut dictionary = Vec::with_capacity(1500);
        for name in NAMES {
            dictionary.extend_from_slice(&(name.len() as u32).to_be_bytes());
            dictionary.extend_from_slice(name.as_bytes());
        }
        dictionary.extend_from_slice(VALUES.as_bytes());
        dictionary
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

    /// The header blocks of the first two SYN_STREAMs kubectl 1.37 sent for one forwarded
    /// connection (its error stream, then its data stream), as captured: one zlib stream with
    /// the SPDY/3 dictionary, the second block compressed against the first.
    const KUBECTL_ERROR_STREAM_HEADERS: &[u8] = b"x\xf9\xe3\xc6\xa7\xc2\x02%:H\xf9[\x04N\xea\x16\x06\x16\x06\x0c\x0c\x0c\x9cE\x90\xf8\xca\x04\xa5cF\x03pJ,)JM\xcc\x85\x166\xac\xa9\xa0\xa8\0\0\0\0\xff\xff";
    const KUBECTL_DATA_STREAM_HEADERS: &[u8] = b"\x82jF\x95\x02\x95C\x89\x84\x8d\x04\0\0\0\xff\xff";

    #[test]
    fn kubectl_port_forward_headers_decode_with_the_spdy_dictionary() {
        let mut codec = spdy::HeaderCodec::new();
        let mut error = codec.decode(KUBECTL_ERROR_STREAM_HEADERS).expect("decode");
        error.sort();
        assert_eq!(
            error,
            [
                ("port".to_owned(), "8080".to_owned()),
                ("requestid".to_owned(), "0".to_owned()),
                ("streamtype".to_owned(), "error".to_owned()),
            ]
        );
        let data = codec.decode(KUBECTL_DATA_STREAM_HEADERS).expect("decode");
        assert!(
            data.contains(&("streamtype".to_owned(), "data".to_owned())),
            "{data:?}"
        );
    }

    #[test]
    fn our_header_blocks_are_one_zlib_stream_a_decompressor_reads_block_by_block() {
        let mut codec = spdy::HeaderCodec::new();
        let mut inflate = flate2::Decompress::new(true);
        for _ in 0..3 {
            let block = codec.encode_empty();
            let mut plain = Vec::with_capacity(64);
            inflate
                .decompress_vec(&block, &mut plain, flate2::FlushDecompress::Sync)
                .expect("inflate");
            assert_eq!(plain, [0, 0, 0, 0], "a header block with no headers");
            assert_eq!(spdy::parse_header_block(&plain), Ok(Vec::new()));
        }
    }

    #[test]
    fn spdy_frames_are_cut_from_the_byte_stream_whole() {
        let mut stream = BytesMut::new();
        stream.extend_from_slice(&spdy::data_frame(3, false, b"hello"));
        stream.extend_from_slice(&spdy::control_frame(spdy::PING, 0, &7u32.to_be_bytes()));
        stream.extend_from_slice(&spdy::data_frame(3, true, b""));
        // Frames arrive split anywhere (kubectl writes each field as a WebSocket message).
        let mut buffer = BytesMut::new();
        let mut frames = Vec::new();
        for byte in stream {
            buffer.extend_from_slice(&[byte]);
            while let Some(frame) = spdy::next_frame(&mut buffer) {
                frames.push(frame);
            }
        }
        assert_eq!(
            frames,
            [
                spdy::Frame::Data {
                    stream: 3,
                    flags: 0,
                    payload: Bytes::from_static(b"hello")
                },
                spdy::Frame::Control {
                    kind: spdy::PING,
                    flags: 0,
                    payload: Bytes::copy_from_slice(&7u32.to_be_bytes())
                },
                spdy::Frame::Data {
                    stream: 3,
                    flags: spdy::FLAG_FIN,
                    payload: Bytes::new()
                },
            ]
        );
        assert!(buffer.is_empty());
        let reply = spdy::rst_stream(5, spdy::RST_PROTOCOL_ERROR);
        assert_eq!(
            &reply[..8],
            [0x80, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, 0x08]
        );
        assert_eq!(spdy::stream_id(&reply[8..]), Some(5));
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
