//! Attaching to a container's own stdio (`Runtime::attach`) beyond the conformance suite: the
//! terminal of a `tty` container takes the attached client's size (read back from the host
//! with `stty`), a container without `tty` has no terminal, and a restarted runtime attaches
//! to the stdin of a container it found again.

use std::process::Command;
use std::time::{Duration, Instant};

use wharf_containerd::ContainerdRuntime;
use wharf_runtime::conformance::{config, read_until};
use wharf_runtime::{ContainerState, Runtime, Signal, Stdio, TerminalSize};

use crate::{HELLO, Node};

const LIMIT: Duration = Duration::from_secs(30);

/// The host pid of container `id`'s process, as `ctr task ls` lists it.
fn task_pid(node: &Node, id: &str) -> u32 {
    node.ctr(&["task", "ls"])
        .iter()
        .find_map(|line| {
            let mut columns = line.split_whitespace();
            (columns.next() == Some(id)).then(|| columns.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no task {id} in `ctr task ls`"))
}

/// `stty size` of the process's stdin: `Ok("ROWS COLUMNS")`, or `Err` with stty's message
/// when its stdin is no terminal.
fn terminal_size(pid: u32) -> Result<String, String> {
    let output = Command::new("stty")
        .arg("-F")
        .arg(format!("/proc/{pid}/fd/0"))
        .arg("size")
        .output()
        .expect("run stty");
    match output.status.success() {
        true => Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned()),
        false => Err(String::from_utf8_lossy(&output.stderr).into_owned()),
    }
}

/// Waits until the process's terminal is `rows` × `columns`.
async fn wait_for_size(pid: u32, rows: u16, columns: u16) {
    let expected = format!("{rows} {columns}");
    let deadline = Instant::now() + LIMIT;
    loop {
        let size = terminal_size(pid);
        if size.as_deref() == Ok(expected.as_str()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the terminal is not {expected}: {size:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `hello` fixture echoing its stdin upper-cased until end of file, with `stdio`.
fn echo_config(node: &Node, id: &str, stdio: Stdio) -> wharf_runtime::ContainerConfig {
    let mut config = config(id, HELLO, &node.dir.path().join("logs"));
    config.env = vec![("ECHO_STDIN".into(), "1".into())];
    config.stdio = stdio;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tty_container_s_terminal_takes_the_attached_client_s_size() {
    let node = Node::start().await;
    node.import_fixtures().await;
    let runtime = &node.runtime;
    let id = "attach-tty";
    let tty = Stdio {
        stdin: true,
        stdin_once: false,
        tty: true,
    };
    runtime.prepare(HELLO).await.unwrap();
    runtime.create(echo_config(&node, id, tty)).await.unwrap();
    runtime.start(id).await.unwrap();
    let pid = task_pid(&node, id);

    let mut session = runtime.attach(id, true).await.expect("attach");
    session
        .resize
        .send(TerminalSize {
            width: 100,
            height: 30,
        })
        .await
        .expect("a terminal takes resizes");
    wait_for_size(pid, 30, 100).await;
    // A second client's size replaces the first's.
    let second = runtime.attach(id, false).await.expect("attach again");
    second
        .resize
        .send(TerminalSize {
            width: 132,
            height: 43,
        })
        .await
        .expect("a terminal takes resizes");
    wait_for_size(pid, 43, 132).await;
    // The terminal is the process's stdin and output too.
    let stdin = session.stdin.take().expect("the container has a stdin");
    stdin.send("sized\n".into()).await.unwrap();
    read_until(&mut session.stdout, "SIZED").await;
    drop((session, second, stdin));
    runtime.kill(id, Signal::Kill).await.unwrap();
    runtime.wait(id).await.unwrap();
    runtime.delete(id).await.unwrap();

    // Without `tty` there is no terminal to resize: the process's stdin is no terminal, and a
    // resize changes nothing (the container runs on).
    let id = "attach-no-tty";
    node.start_forever(id).await;
    let pid = task_pid(&node, id);
    let session = runtime.attach(id, false).await.expect("attach");
    let _ = session.resize.try_send(TerminalSize {
        width: 100,
        height: 30,
    });
    let size = terminal_size(pid);
    assert!(
        size.is_err(),
        "a container without tty has a terminal: {size:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(runtime.state(id), Some(ContainerState::Running));
    drop(session);
    runtime.kill(id, Signal::Kill).await.unwrap();
    runtime.wait(id).await.unwrap();
    runtime.delete(id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_runtime_attaches_to_the_stdin_of_a_container_it_found_again() {
    let node = Node::start().await;
    node.import_fixtures().await;
    let id = "attach-again";
    let once = Stdio {
        stdin: true,
        stdin_once: true,
        tty: false,
    };
    // The first runtime runs on a runtime of its own, whose end takes down all its tasks and
    // closes all its FIFO ends, as the agent's exit would.
    let config = echo_config(&node, id, once);
    let runtime_config = Node::config(&node.containerd, node.dir.path());
    std::thread::spawn(move || {
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio.block_on(async {
            let first = ContainerdRuntime::connect(runtime_config).await.unwrap();
            first.prepare(HELLO).await.unwrap();
            first.create(config).await.unwrap();
            first.start(id).await.unwrap();
            let mut session = first.attach(id, true).await.expect("attach");
            let stdin = session.stdin.take().expect("a stdin");
            stdin.send("before\n".into()).await.unwrap();
            read_until(&mut session.stdout, "BEFORE").await;
            // Leaving without closing the stdin: the session is not the one to close it.
            std::mem::forget(stdin);
        });
    })
    .join()
    .expect("the first runtime ran");

    let again = ContainerdRuntime::connect(Node::config(&node.containerd, node.dir.path()))
        .await
        .expect("connect again");
    assert_eq!(again.state(id), Some(ContainerState::Running));
    let mut session = again.attach(id, true).await.expect("attach again");
    let stdin = session.stdin.take().expect("the stdin is still open");
    stdin.send("after\n".into()).await.unwrap();
    read_until(&mut session.stdout, "AFTER").await;
    // The stdin closes for good with this session's: the program reads end of file and ends.
    drop(stdin);
    let exit = tokio::time::timeout(LIMIT, again.wait(id))
        .await
        .expect("the container ended at the end of its stdin")
        .unwrap();
    assert_eq!(exit.code, 0, "{exit:?}");
    let code = tokio::time::timeout(LIMIT, session.exit)
        .await
        .expect("the session reports the exit")
        .expect("an exit")
        .expect("an exit code");
    assert_eq!(code, 0);
    again.delete(id).await.unwrap();
}
