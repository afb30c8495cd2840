//! SPDY/3.1, as much as Kubernetes' streaming needs (kubectl's exec and port-forward before
//! WebSocket, and port-forward tunnelled in WebSocket): frames, SYN_STREAM headers
//! (zlib-compressed with the protocol's dictionary), SYN_REPLY, RST_STREAM, PING, and a
//! [`Session`] that reads and writes frames on a connection of either kind.

use bytes::{BufMut, Bytes, BytesMut};
use flate2::{Decompress, FlushDecompress};

/// The `Upgrade` token of a SPDY connection.
pub const UPGRADE: &str = "SPDY/3.1";
/// The header in which a client offers, and the server names, the stream protocol.
pub const PROTOCOL_HEADER: &str = "x-stream-protocol-version";

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
pub fn syn_stream(payload: &[u8], codec: &mut HeaderCodec) -> Option<(u32, Vec<(String, String)>)> {
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
            let result =
                self.inflate
                    .decompress_vec(&block[consumed..], &mut plain, FlushDecompress::Sync);
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

/// The FIN of `stream` (an empty data frame).
pub fn fin(stream: u32) -> Bytes {
    data_frame(stream, true, b"")
}

/// A SPDY session on an upgraded connection. Two tasks move the bytes: one cuts the client's
/// bytes into frames (answering pings itself), one writes the frames queued on [`Session::out`].
/// The channels hold back both ways, so a slow client slows the session and a session that
/// stops reading slows the client, never buffering without bound.
pub struct Session {
    /// The client's frames, in order; `None` once the client has closed the connection.
    pub frames: tokio::sync::mpsc::Receiver<Frame>,
    /// Frames for the client, written in order.
    pub out: tokio::sync::mpsc::Sender<Bytes>,
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl Drop for Session {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// How many frames wait in each direction.
const QUEUE: usize = 64;

impl Session {
    /// A session on a raw connection (`Upgrade: SPDY/3.1`).
    pub fn over_stream<S>(connection: S) -> Session
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut reader, mut writer) = tokio::io::split(connection);
        let (mut cutter, frames, out, mut outgoing) = Cutter::channels();
        let reading = tokio::spawn(async move {
            let mut chunk = vec![0; 32 * 1024];
            loop {
                match reader.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if !cutter.feed(&chunk[..n]).await {
                            return;
                        }
                    }
                }
            }
        });
        let writing = tokio::spawn(async move {
            while let Some(frame) = outgoing.recv().await {
                if writer.write_all(&frame).await.is_err() {
                    return;
                }
            }
        });
        Session {
            frames,
            out,
            tasks: [reading, writing],
        }
    }

    /// A session tunnelled in a WebSocket's binary messages (`SPDY/3.1+portforward.k8s.io`).
    pub fn over_websocket(socket: axum::extract::ws::WebSocket) -> Session {
        use axum::extract::ws::Message;
        use futures::{SinkExt, StreamExt};
        let (mut sink, mut stream) = socket.split();
        let (mut cutter, frames, out, mut outgoing) = Cutter::channels();
        let reading = tokio::spawn(async move {
            loop {
                match stream.next().await {
                    Some(Ok(Message::Binary(data))) => {
                        if !cutter.feed(&data).await {
                            return;
                        }
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                    Some(Ok(_)) => {}
                }
            }
        });
        let writing = tokio::spawn(async move {
            while let Some(frame) = outgoing.recv().await {
                if sink.send(Message::Binary(frame)).await.is_err() {
                    return;
                }
            }
        });
        Session {
            frames,
            out,
            tasks: [reading, writing],
        }
    }

    /// Waits (up to `grace`) for the client to close the connection, having queued its last
    /// frames: closing first, with the client's bytes unread, could reset the connection
    /// before those frames arrive.
    pub async fn close(mut self, grace: std::time::Duration) {
        let _ = tokio::time::timeout(grace, async { while self.frames.recv().await.is_some() {} })
            .await;
    }
}

/// Cuts the client's bytes into frames for the session, answering pings on the way.
struct Cutter {
    buffer: BytesMut,
    frames: tokio::sync::mpsc::Sender<Frame>,
    pongs: tokio::sync::mpsc::Sender<Bytes>,
}

impl Cutter {
    /// A cutter, the session's ends of its channels, and the writer's end of the outgoing one.
    fn channels() -> (
        Cutter,
        tokio::sync::mpsc::Receiver<Frame>,
        tokio::sync::mpsc::Sender<Bytes>,
        tokio::sync::mpsc::Receiver<Bytes>,
    ) {
        let (frames, frames_out) = tokio::sync::mpsc::channel(QUEUE);
        let (out, outgoing) = tokio::sync::mpsc::channel(QUEUE);
        let cutter = Cutter {
            buffer: BytesMut::new(),
            frames,
            pongs: out.clone(),
        };
        (cutter, frames_out, out, outgoing)
    }

    /// Takes in `bytes`; `false` once the session is gone.
    async fn feed(&mut self, bytes: &[u8]) -> bool {
        self.buffer.extend_from_slice(bytes);
        while let Some(frame) = next_frame(&mut self.buffer) {
            let delivered = match frame {
                Frame::Control {
                    kind: PING,
                    payload,
                    ..
                } => self
                    .pongs
                    .send(control_frame(PING, 0, &payload))
                    .await
                    .is_ok(),
                frame => self.frames.send(frame).await.is_ok(),
            };
            if !delivered {
                return false;
            }
        }
        true
    }
}

/// The value of header `name` (lower-case) among a stream's headers.
pub fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The header blocks of the first two SYN_STREAMs kubectl 1.37 sent for one forwarded
    /// connection (its error stream, then its data stream), as captured: one zlib stream with
    /// the SPDY/3 dictionary, the second block compressed against the first.
    const KUBECTL_ERROR_STREAM_HEADERS: &[u8] = b"x\xf9\xe3\xc6\xa7\xc2\x02%:H\xf9[\x04N\xea\x16\x06\x16\x06\x0c\x0c\x0c\x9cE\x90\xf8\xca\x04\xa5cF\x03pJ,)JM\xcc\x85\x166\xac\xa9\xa0\xa8\0\0\0\0\xff\xff";
    const KUBECTL_DATA_STREAM_HEADERS: &[u8] = b"\x82jF\x95\x02\x95C\x89\x84\x8d\x04\0\0\0\xff\xff";

    #[test]
    fn kubectl_port_forward_headers_decode_with_the_spdy_dictionary() {
        let mut codec = HeaderCodec::new();
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
        let mut codec = HeaderCodec::new();
        let mut inflate = flate2::Decompress::new(true);
        for _ in 0..3 {
            let block = codec.encode_empty();
            let mut plain = Vec::with_capacity(64);
            inflate
                .decompress_vec(&block, &mut plain, flate2::FlushDecompress::Sync)
                .expect("inflate");
            assert_eq!(plain, [0, 0, 0, 0], "a header block with no headers");
            assert_eq!(parse_header_block(&plain), Ok(Vec::new()));
        }
    }

    #[test]
    fn spdy_frames_are_cut_from_the_byte_stream_whole() {
        let mut stream = BytesMut::new();
        stream.extend_from_slice(&data_frame(3, false, b"hello"));
        stream.extend_from_slice(&control_frame(PING, 0, &7u32.to_be_bytes()));
        stream.extend_from_slice(&data_frame(3, true, b""));
        // Frames arrive split anywhere (kubectl writes each field as a WebSocket message).
        let mut buffer = BytesMut::new();
        let mut frames = Vec::new();
        for byte in stream {
            buffer.extend_from_slice(&[byte]);
            while let Some(frame) = next_frame(&mut buffer) {
                frames.push(frame);
            }
        }
        assert_eq!(
            frames,
            [
                Frame::Data {
                    stream: 3,
                    flags: 0,
                    payload: Bytes::from_static(b"hello")
                },
                Frame::Control {
                    kind: PING,
                    flags: 0,
                    payload: Bytes::copy_from_slice(&7u32.to_be_bytes())
                },
                Frame::Data {
                    stream: 3,
                    flags: FLAG_FIN,
                    payload: Bytes::new()
                },
            ]
        );
        assert!(buffer.is_empty());
        let reply = rst_stream(5, RST_PROTOCOL_ERROR);
        assert_eq!(
            &reply[..8],
            [0x80, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, 0x08]
        );
        assert_eq!(stream_id(&reply[8..]), Some(5));
    }

    /// A client's SYN_STREAM for `stream` with `headers`, compressed as client-go does (one
    /// zlib stream per session, with the SPDY/3 dictionary).
    pub(crate) fn client_syn_stream(
        compress: &mut flate2::Compress,
        stream: u32,
        headers: &[(&str, &str)],
    ) -> Bytes {
        let mut plain = (headers.len() as u32).to_be_bytes().to_vec();
        for (name, value) in headers {
            for part in [name, value] {
                plain.extend_from_slice(&(part.len() as u32).to_be_bytes());
                plain.extend_from_slice(part.as_bytes());
            }
        }
        let mut block = Vec::with_capacity(plain.len() + 64);
        compress
            .compress_vec(&plain, &mut block, flate2::FlushCompress::Sync)
            .expect("deflate");
        let mut payload = stream.to_be_bytes().to_vec();
        payload.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // associated stream, priority
        payload.extend_from_slice(&block);
        control_frame(SYN_STREAM, 0, &payload)
    }

    /// A compressor as a client's, with the dictionary set.
    pub(crate) fn client_compressor() -> flate2::Compress {
        let mut compress = flate2::Compress::new(flate2::Compression::default(), true);
        compress.set_dictionary(&dictionary()).expect("dictionary");
        compress
    }

    #[test]
    fn a_client_header_block_round_trips_through_the_codec() {
        let mut compress = client_compressor();
        let mut codec = HeaderCodec::new();
        for (id, kind) in [(1, "error"), (3, "stdout")] {
            let frame = client_syn_stream(&mut compress, id, &[("streamType", kind)]);
            let mut buffer = BytesMut::from(&frame[..]);
            let Some(Frame::Control {
                kind: SYN_STREAM,
                payload,
                ..
            }) = next_frame(&mut buffer)
            else {
                panic!("not a SYN_STREAM");
            };
            let (stream, headers) = syn_stream(&payload, &mut codec).expect("decodes");
            assert_eq!(stream, id);
            assert_eq!(header(&headers, "streamtype"), Some(kind));
        }
    }

    #[tokio::test]
    async fn a_session_answers_pings_itself_and_hands_over_every_other_frame_in_order() {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let mut session = Session::over_stream(server);
        let (mut from_server, mut to_server) = tokio::io::split(client);
        let mut compress = client_compressor();
        let mut sent = Vec::new();
        sent.extend_from_slice(&client_syn_stream(
            &mut compress,
            1,
            &[("streamtype", "stdin")],
        ));
        sent.extend_from_slice(&control_frame(PING, 0, &9u32.to_be_bytes()));
        sent.extend_from_slice(&data_frame(1, true, b"input"));
        // In pieces, as a network delivers them.
        for piece in sent.chunks(5) {
            to_server.write_all(piece).await.unwrap();
        }
        let first = session.frames.recv().await.expect("the SYN_STREAM");
        assert!(
            matches!(
                first,
                Frame::Control {
                    kind: SYN_STREAM,
                    ..
                }
            ),
            "{first:?}"
        );
        assert_eq!(
            session.frames.recv().await,
            Some(Frame::Data {
                stream: 1,
                flags: FLAG_FIN,
                payload: Bytes::from_static(b"input")
            })
        );
        let mut pong = [0u8; 12];
        from_server.read_exact(&mut pong).await.unwrap();
        assert_eq!(&pong[..], &control_frame(PING, 0, &9u32.to_be_bytes())[..]);

        session
            .out
            .send(data_frame(2, true, b"output"))
            .await
            .unwrap();
        let mut written = [0u8; 14];
        from_server.read_exact(&mut written).await.unwrap();
        assert_eq!(&written[..], &data_frame(2, true, b"output")[..]);

        // The client closes: the session's frames end.
        drop(to_server);
        drop(from_server);
        assert_eq!(session.frames.recv().await, None);
    }
}
