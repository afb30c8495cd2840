//! `kubectl exec` and `kubectl port-forward` end to end, with real kubectl 1.37 (WebSocket)
//! and 1.20 (SPDY/3.1) through the API server to the pod's agent. exec (into containerd): the
//! exit code, stdout and stderr apart, stdin (echoed by `cat`, with its end reaching the
//! command), a terminal under `script` (with the size kubectl sends), `kubectl cp` both ways,
//! and a Wasm pod's clear refusal. port-forward (SPDY, tunnelled in WebSocket by 1.37, direct
//! from 1.20): HTTP through the tunnel to a container pod's IP and to a Wasm pod's in-process
//! handler.
//!
//! The container image is Debian's static busybox (`busybox-static`, installed by
//! scripts/setup.sh) packed by scripts/oci-pack.py as `/busybox`.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use wharf_e2e::{
    Wharf, busybox_archive, eventually, free_port, kubectl, kubectl_1_20, run, samples_out, until,
    workspace_root,
};

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

/// kubectl 1.37 (exec and port-forward over WebSocket) and 1.20 (over SPDY/3.1).
fn kubectls() -> [(&'static str, std::path::PathBuf); 2] {
    [("1.37", kubectl()), ("1.20", kubectl_1_20())]
}

#[test]
fn kubectl_exec_runs_commands_in_container_pods_and_explains_wasm_pods() {
    let dir = tempfile::tempdir().unwrap();
    let wharf =
        Wharf::start_isolated_with(&dir.path().join("data"), &["--containerd", "managed"]).unwrap();
    run(wharf
        .cli()
        .args(["image", "import"])
        .arg(busybox_archive(dir.path())))
    .unwrap();
    let manifest = dir.path().join("shell.yaml");
    std::fs::write(&manifest, SHELL_POD).unwrap();
    run(wharf.kubectl().args(["apply", "-f"]).arg(&manifest)).unwrap();
    run(wharf
        .cli()
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

    for (version, binary) in kubectls() {
        let kc = || wharf.kubectl_of(&binary);
        // The exit code reaches kubectl; stdout and stderr stay apart.
        let ran = output_of(kc().args([
            "exec",
            "shell",
            "--",
            "/busybox",
            "sh",
            "-c",
            "echo to-stdout; echo to-stderr >&2; exit 3",
        ]));
        assert_eq!(ran.status.code(), Some(3), "{version}: {ran:?}");
        assert_eq!(text(&ran.stdout), "to-stdout\n", "{version}");
        assert!(
            text(&ran.stderr).starts_with("to-stderr\n"),
            "{version}: {ran:?}"
        );
        let ran = output_of(kc().args(["exec", "shell", "--", "/busybox", "true"]));
        assert_eq!(ran.status.code(), Some(0), "{version}: {ran:?}");
        assert_eq!(text(&ran.stderr), "", "{version}");

        // stdin is echoed, and its end ends `cat`.
        let input: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
        let mut cat = kc()
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
        assert!(echoed.status.success(), "{version}: {echoed:?}");
        assert!(
            text(&echoed.stdout) == input,
            "{version}: cat did not echo its stdin"
        );

        // A terminal, under `script` (the test has none of its own), of the size kubectl
        // sends on its resize channel or stream. (The size reaches the terminal once the
        // command has started, as with the kubelet: a command looking at once may see 0x0.)
        let inner = format!(
            "stty cols 91 rows 17; {} exec -it shell -- /busybox sh -c 'tty; sleep 1; /busybox stty size; exit 5'",
            binary.display()
        );
        let ran = output_of(
            Command::new("script")
                .args(["-qec", &inner, "/dev/null"])
                .env("KUBECONFIG", wharf.kubeconfig()),
        );
        assert_eq!(ran.status.code(), Some(5), "{version}: {ran:?}");
        assert!(
            text(&ran.stdout).contains("/dev/pts/"),
            "{version}: {ran:?}"
        );
        assert!(text(&ran.stdout).contains("17 91"), "{version}: {ran:?}");

        // kubectl cp: a tar stream through stdin into the container and back out of stdout,
        // byte for byte (kubectl runs `tar` there: busybox's, linked into the image's PATH,
        // which is `/`; the image has no /tmp either).
        let ran = output_of(kc().args([
            "exec",
            "shell",
            "--",
            "/busybox",
            "sh",
            "-c",
            "/busybox --install -s / && /busybox mkdir -p /tmp",
        ]));
        assert!(ran.status.success(), "{version}: {ran:?}");
        let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        let local = dir.path().join(format!("payload-{version}"));
        std::fs::write(&local, &payload).unwrap();
        let remote = format!("shell:/tmp/payload-{version}");
        let ran = output_of(kc().arg("cp").arg(&local).arg(&remote));
        assert!(ran.status.success(), "{version}: {ran:?}");
        let back = dir.path().join(format!("back-{version}"));
        let ran = output_of(kc().arg("cp").arg(&remote).arg(&back));
        assert!(ran.status.success(), "{version}: {ran:?}");
        assert!(
            std::fs::read(&back).unwrap() == payload,
            "{version}: the file came back changed"
        );

        // A Wasm pod has nothing to exec into, and kubectl says why instead of hanging.
        let ran = output_of(kc().args(["exec", &wasm_pod, "--", "sh"]));
        assert_eq!(ran.status.code(), Some(1), "{version}: {ran:?}");
        assert!(
            text(&ran.stderr).contains("exec into a Wasm workload"),
            "{version}: {ran:?}"
        );
    }
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
    run(wharf
        .cli()
        .args(["image", "import"])
        .arg(samples_out().join("hello-container.tar")))
    .unwrap();
    run(wharf
        .kubectl()
        .args(["apply", "-f"])
        .arg(workspace_root().join("samples/hello-container")))
    .unwrap();
    run(wharf
        .cli()
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

    for ((version, binary), pod) in kubectls()
        .into_iter()
        .flat_map(|kc| pods.iter().map(move |pod| (kc.clone(), pod)))
    {
        let port = free_port();
        let _forward = PortForward(
            wharf
                .kubectl_of(&binary)
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
        until(
            &format!("{pod} to answer through port-forward of kubectl {version}"),
            30,
            || {
                Command::new("curl")
                    .args(["-sf", "-m", "3", &url])
                    .output()
                    .is_ok_and(|o| {
                        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("Hello")
                    })
            },
        );
        // Later connections go through the same tunnel.
        for _ in 0..3 {
            let answer = output_of(Command::new("curl").args(["-sf", "-m", "5", &url]));
            assert!(answer.status.success(), "{version} {pod}: {answer:?}");
        }
    }
}
