//! `kubectl exec`, `kubectl attach`, `kubectl run -i` and `kubectl port-forward` end to end,
//! with real kubectl 1.37 (WebSocket) and 1.20 (SPDY/3.1) through the API server to the pod's
//! agent. exec (into containerd): the exit code, stdout and stderr apart, stdin (echoed by
//! `cat`, with its end reaching the command), a terminal under `script` (with the size kubectl
//! sends), `kubectl cp` both ways, and a Wasm pod's clear refusal. attach and `run -i --rm`
//! (container and Wasm pods alike): the pod's own stdin and output, `stdinOnce`, several
//! clients at once, detaching. port-forward (SPDY, tunnelled in WebSocket by 1.37, direct from
//! 1.20): HTTP through the tunnel to a container pod's IP and to a Wasm pod's in-process
//! handler.
//!
//! The container image is Debian's static busybox (`busybox-static`, installed by
//! scripts/setup.sh) packed by scripts/oci-pack.py as `/busybox`, and for attach the
//! hello-job sample in both forms.

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
    wharf.import_image(&busybox_archive(dir.path()));
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

/// A running kubectl (`port-forward`, `attach`), stopped when dropped.
struct Background(std::process::Child);

impl Drop for Background {
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
    wharf.import_image(&samples_out().join("hello-container.tar"));
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
        let _forward = Background(
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

/// Runs `command` with `input` on its stdin (then its end), and returns how it ended.
fn with_input(command: &mut Command, input: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).expect("write stdin");
    drop(stdin);
    child.wait_with_output().expect("wait")
}

/// A pod of hello-job (as a container or a Wasm command) that echoes its stdin upper-cased,
/// whose stdin stays open across attaches.
fn echo_pod(name: &str, image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  \
         terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {image}\n    \
         stdin: true\n    env:\n    - {{name: ECHO_STDIN, value: \"1\"}}\n"
    )
}

#[test]
fn kubectl_run_i_and_attach_connect_to_the_pods_own_process_on_both_runtimes() {
    let dir = tempfile::tempdir().unwrap();
    let wharf =
        Wharf::start_isolated_with(&dir.path().join("data"), &["--containerd", "managed"]).unwrap();
    wharf.import_image(&samples_out().join("hello-job-container.tar"));
    wharf.push_sample("hello-job.wasm", "hello-job:latest");
    let images = [
        ("container", "hello-job-container:latest"),
        ("wasm", "hello-job:latest"),
    ];

    wharf.import_image(&busybox_archive(dir.path()));

    // `kubectl run -i --rm`: the pod's stdin is the client's (until its end, `stdinOnce`), its
    // output comes back, kubectl exits with the container's code, and the pod is deleted when
    // it has ended.
    for (version, binary) in kubectls() {
        for (runtime, image) in images {
            let name = format!("run-{runtime}-{}", version.replace('.', "-"));
            let ran = with_input(
                wharf.kubectl_of(&binary).args([
                    "run",
                    "-i",
                    "--rm",
                    "--restart=Never",
                    &name,
                    &format!("--image={image}"),
                    "--env=ECHO_STDIN=1",
                    "--env=EXIT_CODE=3",
                ]),
                "hello\nfrom kubectl run\n",
            );
            let stdout = text(&ran.stdout);
            assert_eq!(
                ran.status.code(),
                Some(3),
                "kubectl {version}, {runtime}: {ran:?}"
            );
            assert!(
                stdout.contains("HELLO\nFROM KUBECTL RUN\n"),
                "kubectl {version}, {runtime}: {stdout}\n{}",
                text(&ran.stderr)
            );
            until(&format!("{name} to be deleted"), 30, || {
                !output_of(wharf.kubectl().args(["get", "pod", &name]))
                    .status
                    .success()
            });
        }

        // `kubectl run -it`: a terminal (under `script`: the test has none of its own) of the
        // size kubectl sends. The command waits for kubectl to attach before it looks.
        let name = format!("tty-{}", version.replace('.', "-"));
        let inner = format!(
            "stty cols 93 rows 29; {} run -it --rm --restart=Never {name} \
             --image=wharf-busybox:latest -- /busybox sh -c 'sleep 2; /busybox stty size; exit 5'",
            binary.display()
        );
        let ran = output_of(
            Command::new("script")
                .args(["-qec", &inner, "/dev/null"])
                .env("KUBECONFIG", wharf.kubeconfig()),
        );
        assert_eq!(ran.status.code(), Some(5), "{version}: {ran:?}");
        assert!(text(&ran.stdout).contains("29 93"), "{version}: {ran:?}");
    }

    // `kubectl attach`: several clients at once, each sees all the output; detaching leaves
    // the pod running, and its stdin open for the next one.
    for (runtime, image) in images {
        let name = format!("attach-{runtime}");
        let manifest = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&manifest, echo_pod(&name, image)).unwrap();
        run(wharf.kubectl().args(["apply", "-f"]).arg(&manifest)).unwrap();
        until(&format!("{name} to run"), 60, || {
            run(wharf
                .kubectl()
                .args(["get", "pod", &name, "-o", "jsonpath={.status.phase}"]))
            .unwrap_or_default()
                == "Running"
        });
        for (version, binary) in kubectls() {
            let out = dir.path().join(format!("{name}-{version}.out"));
            let watcher = Background(
                wharf
                    .kubectl_of(&binary)
                    .args(["attach", &name])
                    .stdin(Stdio::null())
                    .stdout(std::fs::File::create(&out).unwrap())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
            let line = format!("through kubectl {version}");
            // The writer sends a line and stays until it comes back to the watcher: its end of
            // stdin would not end the session (no `stdinOnce`), so it is stopped then.
            let mut writer = Background(
                wharf
                    .kubectl_of(&binary)
                    .args(["attach", "-i", &name])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
            let mut stdin = writer.0.stdin.take().unwrap();
            let expected = line.to_uppercase();
            // The watcher may attach after the first line: send until it has seen one.
            eventually(
                &format!("{runtime}: a line through kubectl {version} attach"),
                30,
                || {
                    stdin.write_all(format!("{line}\n").as_bytes()).ok()?;
                    std::thread::sleep(std::time::Duration::from_millis(300));
                    std::fs::read_to_string(&out)
                        .ok()?
                        .contains(&expected)
                        .then_some(())
                },
            );
            drop((stdin, writer, watcher));
            assert_eq!(
                run(wharf
                    .kubectl()
                    .args(["get", "pod", &name, "-o", "jsonpath={.status.phase}"]))
                .unwrap(),
                "Running",
                "{runtime}: detaching stops nothing"
            );
        }
        let restarts = run(wharf.kubectl().args([
            "get",
            "pod",
            &name,
            "-o",
            "jsonpath={.status.containerStatuses[0].restartCount}",
        ]))
        .unwrap();
        assert_eq!(restarts, "0", "{runtime}");
    }
}
