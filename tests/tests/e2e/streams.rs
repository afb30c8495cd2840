//! `kubectl exec` and `kubectl port-forward` end to end, with real kubectl 1.37 through the
//! API server to the pod's agent. exec (WebSocket, `v5.channel.k8s.io`, into containerd): the
//! exit code, stdout and stderr apart, stdin (echoed by `cat`, with its end reaching the
//! command), a terminal under `script`, and a Wasm pod's clear refusal. port-forward (SPDY
//! tunnelled in WebSocket): HTTP through the tunnel to a container pod's IP and to a Wasm
//! pod's in-process handler.
//!
//! The container image is Debian's static busybox (`busybox-static`, installed by
//! scripts/setup.sh) packed by scripts/oci-pack.py as `/busybox`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use wharf_e2e::{Wharf, eventually, free_port, run, samples_out, until, wharf_bin, workspace_root};

const BUSYBOX: &str = "/usr/bin/busybox";

/// The busybox image archive, packed into `dir`.
fn busybox_archive(dir: &Path) -> std::path::PathBuf {
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

const SHELL_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: shell
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: busybox
    image: wharf-busybox:latest
    args: ["sleep", "3600"]
"#;

fn output_of(command: &mut Command) -> Output {
    command.stdin(Stdio::null()).output().expect("run")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn kubectl_exec_runs_commands_in_container_pods_and_explains_wasm_pods() {
    let dir = tempfile::tempdir().unwrap();
    let wharf =
        Wharf::start_isolated_with(&dir.path().join("data"), &["--containerd", "managed"]).unwrap();
    run(Command::new(wharf_bin())
        .env("KUBECONFIG", wharf.kubeconfig())
        .args(["image", "import"])
        .arg(busybox_archive(dir.path())))
    .unwrap();
    let manifest = dir.path().join("shell.yaml");
    std::fs::write(&manifest, SHELL_POD).unwrap();
    run(wharf.kubectl().args(["apply", "-f"]).arg(&manifest)).unwrap();
    run(Command::new(wharf_bin())
        .env("KUBECONFIG", wharf.kubeconfig())
        .arg("deploy")
        .arg(samples_out().join("hello-http.wasm")))
    .unwrap();
    let wasm_pod = eventually("both pods running", 90, || {
        let listed = run(wharf.kubectl().args([
            "get",
            "pods",
            "--field-selector=status.phase=Running",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}{\"\\n\"}{end}",
        ]))
        .unwrap_or_default();
        let names: Vec<&str> = listed.lines().collect();
        let wasm = names.iter().find(|n| n.starts_with("hello-http-"))?;
        names.contains(&"shell").then(|| wasm.to_string())
    });

    // The exit code reaches kubectl; stdout and stderr stay apart.
    let ran = output_of(wharf.kubectl().args([
        "exec",
        "shell",
        "--",
        "/busybox",
        "sh",
        "-c",
        "echo to-stdout; echo to-stderr >&2; exit 3",
    ]));
    assert_eq!(ran.status.code(), Some(3), "{ran:?}");
    assert_eq!(text(&ran.stdout), "to-stdout\n");
    assert!(text(&ran.stderr).starts_with("to-stderr\n"), "{ran:?}");
    let ran = output_of(
        wharf
            .kubectl()
            .args(["exec", "shell", "--", "/busybox", "true"]),
    );
    assert_eq!(ran.status.code(), Some(0), "{ran:?}");
    assert_eq!(text(&ran.stderr), "");

    // stdin is echoed, and its end ends `cat`.
    let input: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
    let mut cat = wharf
        .kubectl()
        .args(["exec", "-i", "shell", "--", "/busybox", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = cat.stdin.take().unwrap();
    let writer = {
        let input = input.clone();
        std::thread::spawn(move || stdin.write_all(input.as_bytes()))
    };
    let echoed = cat.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(echoed.status.success(), "{echoed:?}");
    assert!(text(&echoed.stdout) == input, "cat did not echo its stdin");

    // A terminal, under `script` (the test has none of its own).
    let kubectl = wharf_e2e::kubectl();
    let inner = format!(
        "{} exec -it shell -- /busybox sh -c 'tty; exit 5'",
        kubectl.display()
    );
    let ran = output_of(
        Command::new("script")
            .args(["-qec", &inner, "/dev/null"])
            .env("KUBECONFIG", wharf.kubeconfig()),
    );
    assert_eq!(ran.status.code(), Some(5), "{ran:?}");
    assert!(text(&ran.stdout).contains("/dev/pts/"), "{ran:?}");

    // A Wasm pod has nothing to exec into, and kubectl says why instead of hanging.
    let ran = output_of(wharf.kubectl().args(["exec", &wasm_pod, "--", "sh"]));
    assert_eq!(ran.status.code(), Some(1), "{ran:?}");
    assert!(
        text(&ran.stderr).contains("exec into a Wasm workload"),
        "{ran:?}"
    );
}

/// A running `kubectl port-forward`, stopped when dropped.
struct PortForward(std::process::Child);

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn kubectl_port_forward_reaches_container_and_wasm_pods() {
    let dir = tempfile::tempdir().unwrap();
    let wharf =
        Wharf::start_isolated_with(&dir.path().join("data"), &["--containerd", "managed"]).unwrap();
    run(Command::new(wharf_bin())
        .env("KUBECONFIG", wharf.kubeconfig())
        .args(["image", "import"])
        .arg(samples_out().join("hello-container.tar")))
    .unwrap();
    run(wharf
        .kubectl()
        .args(["apply", "-f"])
        .arg(workspace_root().join("samples/hello-container")))
    .unwrap();
    run(Command::new(wharf_bin())
        .env("KUBECONFIG", wharf.kubeconfig())
        .arg("deploy")
        .arg(samples_out().join("hello-http.wasm")))
    .unwrap();
    let pods = eventually("both samples running", 90, || {
        let listed = run(wharf.kubectl().args([
            "get",
            "pods",
            "--field-selector=status.phase=Running",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}{\"\\n\"}{end}",
        ]))
        .unwrap_or_default();
        let find = |prefix: &str| {
            listed
                .lines()
                .find(|n| n.starts_with(prefix))
                .map(str::to_owned)
        };
        Some([find("hello-container-")?, find("hello-http-")?])
    });

    for pod in pods {
        let port = free_port();
        let _forward = PortForward(
            wharf
                .kubectl()
                .args([
                    "port-forward",
                    &format!("pod/{pod}"),
                    &format!("{port}:8080"),
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let url = format!("http://127.0.0.1:{port}/");
        until(&format!("{pod} to answer through port-forward"), 30, || {
            Command::new("curl")
                .args(["-sf", "-m", "3", &url])
                .output()
                .is_ok_and(|o| {
                    o.status.success() && String::from_utf8_lossy(&o.stdout).contains("Hello")
                })
        });
        // Later connections go through the same tunnel.
        for _ in 0..3 {
            let answer = output_of(Command::new("curl").args(["-sf", "-m", "5", &url]));
            assert!(answer.status.success(), "{pod}: {answer:?}");
        }
    }
}
