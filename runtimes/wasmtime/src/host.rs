//! What lives in each guest's `Store`: the WASI and `wasi:http` contexts built from the
//! container's config (args, env, read-only mounts, stdio), the memory limiter, and the
//! policy for outgoing HTTP.
//!
//! Guest stdio: stdout and stderr go to the container's log (and from there to attached
//! clients). With `tty` the guest still has no terminal (`isatty` is false everywhere), but
//! its stderr is written as stdout, as a container on a terminal would log it. Stdin is empty
//! unless the container has one (`stdin` in its config), then it is a [`StdinReader`] fed by
//! attached clients ([`crate::stdio`]); HTTP handlers never get one.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{AsyncStdinStream, IsTerminal, StdoutStream};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};
use wharf_runtime::ContainerConfig;
use wharf_runtime::logs::{LogFile, LogWriter, Stream};

use crate::stdio::StdinReader;
use crate::usage::Usage;

/// Refuses memory and table growth beyond the container's limit, and remembers that it did,
/// so a guest that traps after an allocation failure is reported as OOMKilled. It also counts
/// what it allows into the container's [`Usage`], and gives it back when the store (and so
/// the limiter) is dropped.
#[derive(Debug)]
pub struct Limiter {
    memory_limit: usize,
    /// Whether a growth was refused.
    pub refused: bool,
    /// The container's usage, which this instance's memories and tables count in.
    usage: Arc<Usage>,
    /// Bytes this instance holds (and counts in `usage`).
    held: u64,
}

/// Bytes per table element: tables hold pointers (function references, externrefs).
const TABLE_ELEMENT_BYTES: u64 = size_of::<usize>() as u64;

impl Limiter {
    /// A limiter allowing `memory_limit` bytes of linear memory per memory, counting what it
    /// allows in `usage`.
    pub fn new(memory_limit: usize, usage: Arc<Usage>) -> Limiter {
        Limiter {
            memory_limit,
            refused: false,
            usage,
            held: 0,
        }
    }

    /// Counts a growth from `current` to `desired` units of `unit_bytes`.
    ///
    /// An allowed growth that then fails anyway (beyond the maximum the guest declared) stays
    /// counted until the store is dropped: wasmtime also reports some failures without asking
    /// first, so a failure cannot be matched to the growth it undoes.
    fn take(&mut self, current: usize, desired: usize, unit_bytes: u64) {
        let units = u64::try_from(desired.saturating_sub(current)).unwrap_or(u64::MAX);
        let bytes = units.saturating_mul(unit_bytes);
        self.held = self.held.saturating_add(bytes);
        self.usage.add_memory(bytes);
    }
}

impl Drop for Limiter {
    fn drop(&mut self) {
        // The store that owns this limiter is going away, and its instances' memories and
        // tables with it.
        self.usage.release_memory(self.held);
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    // Also called when an instance creates its memories and tables (from a size of zero), so
    // initial sizes are counted as well as growth.
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.memory_limit;
        self.refused |= !allowed;
        if allowed {
            self.take(current, desired, 1);
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= 1_000_000;
        if allowed {
            self.take(current, desired, TABLE_ELEMENT_BYTES);
        }
        Ok(allowed)
    }
}

/// Outgoing HTTP policy: the default client when the pod allows it, refusal otherwise.
#[derive(Debug)]
pub struct OutgoingHttp {
    allowed: bool,
}

impl WasiHttpHooks for OutgoingHttp {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = wasmtime_wasi_http::Result<(
                    http::Response<wasmtime_wasi_http::WasiBody>,
                    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                )>,
            > + Send,
    > {
        if self.allowed {
            return wasmtime_wasi_http::default_hooks().send_request(request, options, fut);
        }
        _ = fut;
        Box::new(async move { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

/// The state of one guest instance.
pub struct Host {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: OutgoingHttp,
    /// The memory limiter.
    pub limiter: Limiter,
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// The state of one core-module (WASI preview 1) guest.
pub struct ModuleHost {
    /// The preview 1 context.
    pub wasi: wasmtime_wasi::p1::WasiP1Ctx,
    /// The memory limiter.
    pub limiter: Limiter,
}

/// The default memory limit when a pod sets none (the pooling allocator's slot size).
pub const DEFAULT_MEMORY_LIMIT: usize = 256 << 20;

/// Builds the WASI context shared by both guest shapes, with `stdin` as the guest's stdin
/// (none: an empty one).
fn wasi_builder(
    config: &ContainerConfig,
    program: &str,
    log: &Arc<LogFile>,
    stdin: Option<StdinReader>,
) -> Result<WasiCtxBuilder, String> {
    let mut builder = WasiCtx::builder();
    let mut argv = vec![program.to_owned()];
    argv.extend(config.command.iter().chain(&config.args).cloned());
    builder.args(&argv);
    for (name, value) in &config.env {
        builder.env(name, value);
    }
    for mount in &config.mounts {
        let perms = if mount.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        builder
            .preopened_dir(&mount.host_path, &mount.container_path, perms)
            .map_err(|e| {
                format!(
                    "cannot mount {} at {}: {e}",
                    mount.host_path.display(),
                    mount.container_path
                )
            })?;
    }
    builder.stdout(LogStream {
        file: log.clone(),
        stream: Stream::Stdout,
    });
    // On a terminal, stderr is part of the terminal's output, logged as stdout.
    builder.stderr(LogStream {
        file: log.clone(),
        stream: if config.stdio.tty {
            Stream::Stdout
        } else {
            Stream::Stderr
        },
    });
    if let Some(stdin) = stdin {
        // Both contexts read it: preview 1's `fd_read` on fd 0 goes through the same stream.
        builder.stdin(AsyncStdinStream::new(stdin));
    }
    Ok(builder)
}

/// The memory limit of a container in bytes.
pub fn memory_limit(config: &ContainerConfig) -> usize {
    config
        .limits
        .memory_bytes
        .map_or(DEFAULT_MEMORY_LIMIT, |m| {
            usize::try_from(m).unwrap_or(usize::MAX)
        })
        .min(DEFAULT_MEMORY_LIMIT)
}

/// A component guest's state, counting its memory in `usage`, reading `stdin` (none: an
/// empty stdin).
pub fn component_host(
    config: &ContainerConfig,
    log: &Arc<LogFile>,
    usage: Arc<Usage>,
    stdin: Option<StdinReader>,
) -> Result<Host, String> {
    let mut builder = wasi_builder(config, &config.image, log, stdin)?;
    // Network access for components goes through wasi:http, governed by the pod's policy.
    builder.allow_tcp(false).allow_udp(false);
    Ok(Host {
        wasi: builder.build(),
        http: WasiHttpCtx::new(),
        table: ResourceTable::new(),
        hooks: OutgoingHttp {
            allowed: config.allow_outgoing_http,
        },
        limiter: Limiter::new(memory_limit(config), usage),
    })
}

/// A core-module guest's state, counting its memory in `usage`, reading `stdin` (none: an
/// empty stdin).
pub fn module_host(
    config: &ContainerConfig,
    log: &Arc<LogFile>,
    usage: Arc<Usage>,
    stdin: Option<StdinReader>,
) -> Result<ModuleHost, String> {
    let mut builder = wasi_builder(config, &config.image, log, stdin)?;
    Ok(ModuleHost {
        wasi: builder.build_p1(),
        limiter: Limiter::new(memory_limit(config), usage),
    })
}

/// Guest stdout/stderr into the container's log file.
struct LogStream {
    file: Arc<LogFile>,
    stream: Stream,
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LogSink(self.file.writer(self.stream)))
    }
}

/// Writes go straight to the log file: appends of whole lines to a local file are fast enough
/// to do inline, and keep the order of a guest's output.
struct LogSink(LogWriter);

impl AsyncWrite for LogSink {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0.write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.0.flush();
        Poll::Ready(Ok(()))
    }
}
