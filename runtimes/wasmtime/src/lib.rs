//! The in-process wasmtime implementation of [`Runtime`].
//!
//! One [`Engine`] per node (pooling allocator, epoch interruption), one linker per guest shape,
//! artifacts compiled once and cached on disk by digest ([`artifact`]). Two workload shapes:
//!
//! - **commands** — a core module with `_start` (WASI preview 1) or a component exporting
//!   `wasi:cli/run` — run like a process: args, env, stdout/stderr to the log, an exit code;
//! - **HTTP handlers** — components exporting `wasi:http/incoming-handler` — are "running" while
//!   they serve; every request gets a fresh instance ([`http::ProxyHandler`]), so a request that
//!   traps fails alone.
//!
//! Guests cannot starve each other: an epoch ticks every [`EPOCH_TICK`], guests yield to the
//! async executor on every tick, and requests have a deadline. Memory is limited per instance
//! by `resources.limits.memory` (and the pool's slot size).
//!
//! [`Runtime::stats`] comes from host-side accounting per container ([`usage`]): the CPU time
//! of the executor threads while they poll the container's guests, and the linear memories and
//! tables of its live instances.
//!
//! [`Runtime::exec`] is not supported and fails with [`RuntimeError::Unsupported`]: a Wasm
//! workload is one guest, not a file system of programs, so there is no second command to
//! run beside it (no shell, no `cat`), and an HTTP component has no lasting instance to run
//! one in (each request gets a fresh one). Calling one of the guest's own exports instead
//! would be a different feature with different semantics, not exec.
//!
//! [`Runtime::attach`] connects clients to a running guest's own stdio (`kubectl attach`,
//! `kubectl run -i`). A command whose container has `stdin` reads a stdin fed by attached
//! clients: its reads wait until something is sent, and see end of file once the stdin is
//! closed (with `stdinOnce`, when the first client given stdin closes it or detaches; without,
//! it stays open for the next client). Output comes from the container's log as it is
//! written. A guest has no terminal: with `tty`, its stderr is merged into stdout (in the log
//! too) and resizes are ignored. An HTTP component can be attached to as well, to follow what
//! its requests' instances write, but it has no stdin (each request gets a fresh instance, so
//! there is no lasting one to read it).

pub mod artifact;
mod host;
pub mod http;
mod stdio;
pub mod usage;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::sync::{Notify, mpsc, watch};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, PoolingAllocationConfig, Store, UpdateDeadline};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wharf_runtime::logs::{AttachedOutput, LogFile};
use wharf_runtime::{
    ContainerConfig, ContainerState, ContainerStats, ExecOutput, ExecRequest, ExecSession, Exit,
    HttpHandler, Lifecycle, Runtime, RuntimeError, Signal,
};

use crate::artifact::{CompileCache, Compiled, ImageSource};
use crate::host::{Host, ModuleHost};
use crate::stdio::StdinWriter;
use crate::usage::{CpuTimed, Usage};

/// How often the engine's epoch advances: the scheduling quantum of guests.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Settings of the node's engine.
#[derive(Clone, Debug)]
pub struct WasmtimeConfig {
    /// Where compiled artifacts are cached.
    pub cache_dir: PathBuf,
    /// How many instances may exist at once (pool size).
    pub max_instances: u32,
}

/// A prepared image: compiled and pre-linked for its shape.
#[derive(Clone)]
enum Prepared {
    /// A core module with `_start`.
    Module(wasmtime::InstancePre<ModuleHost>),
    /// A component exporting `wasi:cli/run`.
    Command(CommandPre<Host>),
    /// A component exporting `wasi:http/incoming-handler`.
    Http(ProxyPre<Host>),
}

/// One container.
struct Container {
    config: ContainerConfig,
    prepared: Prepared,
    /// The lifecycle, published so `wait` can await the exit and a command's task can record it.
    life: watch::Sender<Lifecycle>,
    /// Wakes a running command so it stops; carries the exit code the stop reports.
    stop: Arc<Notify>,
    stop_code: Arc<Mutex<Option<i32>>>,
    handler: Option<Arc<http::ProxyHandler>>,
    /// CPU time and memory of the container's instances (all of them, over its life).
    usage: Arc<Usage>,
    /// The log the guest writes, once started: attached clients follow it.
    log: Option<Arc<LogFile>>,
    /// The runtime's end of a command's stdin, when the container has one (`stdio.stdin`):
    /// attached clients write to it.
    stdin: Option<Arc<StdinWriter>>,
}

/// The wasmtime runtime of a node.
pub struct WasmtimeRuntime {
    engine: Engine,
    component_linker: Linker<Host>,
    module_linker: wasmtime::Linker<ModuleHost>,
    cache: CompileCache,
    source: Arc<dyn ImageSource>,
    prepared: Mutex<HashMap<String, (String, Prepared)>>,
    /// One preparation at a time per image: pods of a new image that start together wait for
    /// its one compilation instead of each compiling (and holding) their own.
    preparing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// How many artifacts were compiled (not loaded from the cache).
    compilations: std::sync::atomic::AtomicU64,
    containers: Arc<Mutex<HashMap<String, Container>>>,
}

impl std::fmt::Debug for WasmtimeRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmtimeRuntime").finish_non_exhaustive()
    }
}

fn other(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Other(e.to_string())
}

impl WasmtimeRuntime {
    /// How many artifacts this runtime has compiled, rather than loaded from its cache.
    pub fn compilations(&self) -> u64 {
        self.compilations.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Builds the engine and linkers and starts the epoch ticker.
    pub fn new(
        config: WasmtimeConfig,
        source: Arc<dyn ImageSource>,
    ) -> Result<WasmtimeRuntime, RuntimeError> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(config.max_instances)
            .total_core_instances(config.max_instances)
            .total_memories(config.max_instances)
            .total_tables(config.max_instances)
            .max_memory_size(host::DEFAULT_MEMORY_LIMIT);
        let mut engine_config = Config::new();
        engine_config
            .epoch_interruption(true)
            .wasm_component_model(true)
            .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&engine_config).map_err(other)?;

        let mut component_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut component_linker).map_err(other)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut component_linker)
            .map_err(other)?;
        let mut module_linker = wasmtime::Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut module_linker, |h: &mut ModuleHost| {
            &mut h.wasi
        })
        .map_err(other)?;

        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("wasmtime-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(other)?;

        Ok(WasmtimeRuntime {
            engine,
            component_linker,
            module_linker,
            cache: CompileCache::new(&config.cache_dir).map_err(other)?,
            source,
            prepared: Mutex::new(HashMap::new()),
            preparing: Mutex::new(HashMap::new()),
            compilations: std::sync::atomic::AtomicU64::new(0),
            containers: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The engine (for benchmarks and tests).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn link(&self, image: &str, compiled: Compiled) -> Result<Prepared, RuntimeError> {
        let start_failed =
            |e: wasmtime::Error| RuntimeError::StartFailed(format!("{image}: {e:#}"));
        match compiled {
            Compiled::Module(module) => {
                if module.get_export("_start").is_none() {
                    return Err(RuntimeError::InvalidArtifact {
                        image: image.to_owned(),
                        detail: "the module exports no `_start` function (not a WASI command)"
                            .into(),
                    });
                }
                let pre = self
                    .module_linker
                    .instantiate_pre(&module)
                    .map_err(start_failed)?;
                Ok(Prepared::Module(pre))
            }
            Compiled::Component(component) => {
                let shape = component_shape(&self.engine, &component);
                let pre = self
                    .component_linker
                    .instantiate_pre(&component)
                    .map_err(start_failed)?;
                match shape {
                    Some(Shape::Http) => {
                        Ok(Prepared::Http(ProxyPre::new(pre).map_err(start_failed)?))
                    }
                    Some(Shape::Command) => {
                        Ok(Prepared::Command(CommandPre::new(pre).map_err(start_failed)?))
                    }
                    None => Err(RuntimeError::InvalidArtifact {
                        image: image.to_owned(),
                        detail: "the component exports neither wasi:cli/run nor wasi:http/incoming-handler".into(),
                    }),
                }
            }
        }
    }

    fn with_container<R>(
        &self,
        id: &str,
        f: impl FnOnce(&mut Container) -> Result<R, RuntimeError>,
    ) -> Result<R, RuntimeError> {
        let mut containers = self.containers.lock().unwrap_or_else(|e| e.into_inner());
        let container = containers
            .get_mut(id)
            .ok_or_else(|| RuntimeError::NotFound(id.to_owned()))?;
        f(container)
    }
}

enum Shape {
    Command,
    Http,
}

/// Which of the two supported worlds a component exports.
fn component_shape(engine: &Engine, component: &Component) -> Option<Shape> {
    let ty = component.component_type();
    let mut shape = None;
    for (name, _) in ty.exports(engine) {
        if name.starts_with("wasi:http/incoming-handler@") {
            return Some(Shape::Http);
        }
        if name.starts_with("wasi:cli/run@") {
            shape = Some(Shape::Command);
        }
    }
    shape
}

fn exit(code: i32, reason: &str, message: Option<String>) -> Exit {
    Exit {
        code,
        reason: reason.to_owned(),
        message,
        finished_at: SystemTime::now(),
    }
}

/// Classifies how a guest's run ended.
fn exit_of(result: wasmtime::Result<Result<(), ()>>, memory_refused: bool) -> Exit {
    match result {
        Ok(Ok(())) => exit(0, "Completed", None),
        Ok(Err(())) => exit(1, "Error", None),
        Err(error) => {
            if let Some(code) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
                let reason = if code.0 == 0 { "Completed" } else { "Error" };
                return exit(code.0, reason, None);
            }
            if memory_refused {
                return exit(137, "OOMKilled", Some(format!("{error:#}")));
            }
            exit(1, "Error", Some(format!("{error:#}")))
        }
    }
}

/// Why a Wasm workload cannot exec (what `kubectl exec` into a Wasm pod prints).
const EXEC_UNSUPPORTED: &str = "exec into a Wasm workload: the guest is a single program with no \
     shell or other commands beside it, and an HTTP component has no lasting instance to run \
     one in";

#[async_trait]
impl Runtime for WasmtimeRuntime {
    fn name(&self) -> &'static str {
        "wasmtime"
    }

    async fn prepare(&self, image: &str) -> Result<(), RuntimeError> {
        let bytes = self.source.fetch(image).await?;
        let digest = artifact::digest(&bytes);
        let is_prepared = || {
            self.prepared
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(image)
                .is_some_and(|(known, _)| *known == digest)
        };
        if is_prepared() {
            return Ok(());
        }
        let turn = self
            .preparing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(image.to_owned())
            .or_default()
            .clone();
        let _turn = turn.lock().await;
        if is_prepared() {
            return Ok(());
        }
        let (engine, cache, name) = (self.engine.clone(), self.cache.clone(), image.to_owned());
        let (compiled, cached) =
            tokio::task::spawn_blocking(move || cache.load_or_compile(&engine, &name, &bytes))
                .await
                .map_err(other)??;
        tracing::debug!(image, digest, cached, "prepared Wasm artifact");
        if !cached {
            self.compilations
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let prepared = self.link(image, compiled)?;
        self.prepared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(image.to_owned(), (digest, prepared));
        Ok(())
    }

    async fn create(&self, config: ContainerConfig) -> Result<(), RuntimeError> {
        let prepared = self
            .prepared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&config.image)
            .map(|(_, p)| p.clone())
            .ok_or_else(|| RuntimeError::ImageNotFound {
                image: config.image.clone(),
                detail: "the image was not prepared on this node".into(),
            })?;
        let mut containers = self.containers.lock().unwrap_or_else(|e| e.into_inner());
        if containers.contains_key(&config.id) {
            return Err(RuntimeError::Other(format!(
                "container {:?} already exists",
                config.id
            )));
        }
        let (life, _) = watch::channel(Lifecycle::new(&config.id));
        containers.insert(
            config.id.clone(),
            Container {
                config,
                prepared,
                life,
                stop: Arc::new(Notify::new()),
                stop_code: Arc::new(Mutex::new(None)),
                handler: None,
                usage: Arc::new(Usage::default()),
                log: None,
                stdin: None,
            },
        );
        Ok(())
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let log_failed =
            |e: std::io::Error| RuntimeError::StartFailed(format!("cannot open the log: {e}"));
        self.with_container(id, |container| {
            let mut started = Ok(());
            container.life.send_if_modified(|life| {
                started = life.start();
                started.is_ok()
            });
            started?;
            let log = LogFile::open(&container.config.log_path).map_err(log_failed)?;
            container.log = Some(log.clone());
            // A command's own stdin, when it has one; an HTTP handler has no lasting instance
            // to read one.
            let stdio = container.config.stdio;
            let is_command = !matches!(container.prepared, Prepared::Http(_));
            let stdin = if stdio.stdin && is_command {
                let (writer, reader) = stdio::pipe(stdio.stdin_once);
                container.stdin = Some(writer);
                Some(reader)
            } else {
                None
            };
            match container.prepared.clone() {
                Prepared::Http(pre) => {
                    container.handler = Some(Arc::new(http::ProxyHandler::new(
                        pre,
                        container.config.clone(),
                        log,
                        container.usage.clone(),
                    )));
                }
                Prepared::Command(pre) => {
                    let host = host::component_host(
                        &container.config,
                        &log,
                        container.usage.clone(),
                        stdin,
                    )
                    .map_err(RuntimeError::StartFailed)?;
                    let run = async move {
                        let mut store = command_store(pre.engine(), host);
                        let command = pre.instantiate_async(&mut store).await?;
                        let result = command.wasi_cli_run().call_run(&mut store).await;
                        let refused = store.data().limiter.refused;
                        Ok::<_, wasmtime::Error>((result, refused))
                    };
                    spawn_command(container, run);
                }
                Prepared::Module(pre) => {
                    let host =
                        host::module_host(&container.config, &log, container.usage.clone(), stdin)
                            .map_err(RuntimeError::StartFailed)?;
                    let run = async move {
                        let mut store = command_store(pre.module().engine(), host);
                        let instance = pre.instantiate_async(&mut store).await?;
                        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
                        let result = start.call_async(&mut store, ()).await.map(Ok);
                        let refused = store.data().limiter.refused;
                        Ok::<_, wasmtime::Error>((result, refused))
                    };
                    spawn_command(container, run);
                }
            }
            Ok(())
        })
    }

    async fn kill(&self, id: &str, signal: Signal) -> Result<(), RuntimeError> {
        self.with_container(id, |container| {
            container.life.borrow().check_signal()?;
            // A Wasm guest cannot handle signals: both stop it now. An HTTP handler stopped
            // with Terminate ends cleanly (it only stops taking requests).
            let code = match (signal, &container.prepared) {
                (Signal::Terminate, Prepared::Http(_)) => 0,
                (Signal::Terminate, _) => 143,
                (Signal::Kill, _) => 137,
            };
            if container.handler.take().is_some() {
                let reason = if code == 0 { "Completed" } else { "Error" };
                container
                    .life
                    .send_modify(|life| life.exit(exit(code, reason, None)));
            } else {
                *container
                    .stop_code
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(code);
                container.stop.notify_one();
            }
            Ok(())
        })
    }

    async fn wait(&self, id: &str) -> Result<Exit, RuntimeError> {
        let mut life = self.with_container(id, |c| Ok(c.life.subscribe()))?;
        loop {
            if let ContainerState::Exited(exit) = life.borrow_and_update().state() {
                return Ok(exit.clone());
            }
            if life.changed().await.is_err() {
                return Err(RuntimeError::NotFound(id.to_owned()));
            }
        }
    }

    async fn delete(&self, id: &str) -> Result<(), RuntimeError> {
        let mut containers = self.containers.lock().unwrap_or_else(|e| e.into_inner());
        let container = containers
            .get(id)
            .ok_or_else(|| RuntimeError::NotFound(id.to_owned()))?;
        container.life.borrow().check_delete()?;
        containers.remove(id);
        Ok(())
    }

    /// Always fails: [`RuntimeError::NotFound`] for an unknown container, otherwise
    /// [`RuntimeError::Unsupported`] (see the module documentation for why).
    async fn exec(&self, id: &str, _request: ExecRequest) -> Result<ExecOutput, RuntimeError> {
        self.with_container(id, |_| Ok(()))?;
        Err(RuntimeError::Unsupported(EXEC_UNSUPPORTED.into()))
    }

    /// Attaches to a running guest (see the module documentation): its output from now on,
    /// from its log, and its stdin when asked for and it has one still open. With `tty`, the
    /// output is all on stdout and resizes are ignored (a guest has no terminal). An HTTP
    /// component's session follows what its requests' instances write, without stdin.
    async fn attach(&self, id: &str, stdin: bool) -> Result<ExecSession, RuntimeError> {
        let (log, life, writer, tty) = self.with_container(id, |container| {
            container.life.borrow().check_running("attach")?;
            // A running guest was started, which opened its log.
            let log = container
                .log
                .clone()
                .ok_or_else(|| RuntimeError::Other(format!("container {id} runs without a log")))?;
            let writer = container.stdin.clone().filter(|_| stdin);
            Ok((
                log,
                container.life.subscribe(),
                writer,
                container.config.stdio.tty,
            ))
        })?;
        let AttachedOutput {
            stdout,
            stderr,
            exit,
        } = log.attach_output(tty, life, id);
        let (resize, mut resizes) = mpsc::channel(4);
        tokio::spawn(async move {
            // A guest has no terminal to resize.
            while resizes.recv().await.is_some() {}
        });
        Ok(ExecSession {
            stdin: writer.and_then(|writer| writer.attach()),
            stdout,
            stderr,
            resize,
            exit,
        })
    }

    /// Always fails, as [`Runtime::exec`] does here: `kubectl exec` into a Wasm pod gets the
    /// reason.
    async fn exec_stream(
        &self,
        id: &str,
        _request: ExecRequest,
    ) -> Result<ExecSession, RuntimeError> {
        self.with_container(id, |_| Ok(()))?;
        Err(RuntimeError::Unsupported(EXEC_UNSUPPORTED.into()))
    }

    /// The CPU time spent running the container's guests and the memory its live instances
    /// hold (see [`usage`]). An HTTP container holds no memory between requests; an exited one
    /// keeps its CPU time and holds nothing.
    async fn stats(&self, id: &str) -> Result<ContainerStats, RuntimeError> {
        self.with_container(id, |container| Ok(container.usage.stats()))
    }

    fn state(&self, id: &str) -> Option<ContainerState> {
        let containers = self.containers.lock().unwrap_or_else(|e| e.into_inner());
        containers.get(id).map(|c| c.life.borrow().state().clone())
    }

    fn http_handler(&self, id: &str) -> Option<Arc<dyn HttpHandler>> {
        let containers = self.containers.lock().unwrap_or_else(|e| e.into_inner());
        containers
            .get(id)
            .and_then(|c| c.handler.clone())
            .map(|h| h as Arc<dyn HttpHandler>)
    }

    async fn ready(&self) -> Result<(), RuntimeError> {
        // In process: ready whenever the agent is.
        Ok(())
    }

    fn list(&self) -> HashMap<String, ContainerState> {
        let containers = self.containers.lock().unwrap_or_else(|e| e.into_inner());
        containers
            .iter()
            .map(|(id, c)| (id.clone(), c.life.borrow().state().clone()))
            .collect()
    }
}

/// A store for a command: memory limited, yielding to the executor on every epoch tick so an
/// endless loop shares the thread with everyone else.
fn command_store<T: HasLimiter + Send + 'static>(engine: &Engine, host: T) -> Store<T> {
    let mut store = Store::new(engine, host);
    store.limiter(|h| h.limiter());
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
    store
}

/// Store data with a memory limiter.
trait HasLimiter {
    fn limiter(&mut self) -> &mut dyn wasmtime::ResourceLimiter;
}

impl HasLimiter for Host {
    fn limiter(&mut self) -> &mut dyn wasmtime::ResourceLimiter {
        &mut self.limiter
    }
}

impl HasLimiter for ModuleHost {
    fn limiter(&mut self) -> &mut dyn wasmtime::ResourceLimiter {
        &mut self.limiter
    }
}

/// Runs a command in the background; a stop signal drops the guest wherever it is (even if it
/// is blocked in a host call, where no epoch check would fire).
fn spawn_command<F>(container: &mut Container, run: F)
where
    F: Future<Output = wasmtime::Result<(wasmtime::Result<Result<(), ()>>, bool)>> + Send + 'static,
{
    let stop = container.stop.clone();
    let stop_code = container.stop_code.clone();
    let stdin = container.stdin.clone();
    let life = container.life.clone();
    let id = container.config.id.clone();
    // Only the guest's polls are charged to the container, not the waiting for a stop.
    let run = CpuTimed::new(run, container.usage.clone());
    tokio::spawn(async move {
        let finished = tokio::select! {
            outcome = run => match outcome {
                Ok((result, refused)) => exit_of(result, refused),
                Err(error) => exit(128, "StartError", Some(format!("{error:#}"))),
            },
            () = stop.notified() => {
                let code = stop_code.lock().unwrap_or_else(|e| e.into_inner()).unwrap_or(137);
                exit(code, "Error", Some("stopped".into()))
            }
        };
        tracing::debug!(container = %id, code = finished.code, reason = %finished.reason, "Wasm command exited");
        // The guest and its end of stdin are gone; no client can write to it any more.
        if let Some(stdin) = stdin {
            stdin.close();
        }
        life.send_modify(|life| life.exit(finished));
    });
}
