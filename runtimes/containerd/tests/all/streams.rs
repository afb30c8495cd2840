//! The interactive exec (`Runtime::exec_stream`, what `kubectl exec` runs on): stdin reaches
//! the command and its end closes the command's stdin, stdout and stderr arrive apart, the
//! exit code comes last, a terminal has the requested size, and a session that is dropped
//! kills its command and leaves nothing behind.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use wharf_runtime::conformance::exec_request;
use wharf_runtime::{ExecRequest, ExecSession, Runtime, RuntimeError, Signal, TerminalSize};

use crate::Node;

const LIMIT: Duration = Duration::from_secs(30);

async fn stop(node: &Node, id: &str) {
    node.runtime.kill(id, Signal::Kill).await.unwrap();
    node.runtime.wait(id).await.unwrap();
    node.runtime.delete(id).await.unwrap();
}

fn forever(args: &[&str], env: &[(&str, &str)]) -> ExecRequest {
    exec_request(&["/forever".to_owned()], args, env, LIMIT)
}

/// Everything a stream delivers until it ends.
async fn drain(mut stream: mpsc::Receiver<Bytes>) -> String {
    let mut all = Vec::new();
    while let Some(chunk) = tokio::time::timeout(LIMIT, stream.recv())
        .await
        .expect("the stream ended in time")
    {
        all.extend_from_slice(&chunk);
    }
    String::from_utf8_lossy(&all).into_owned()
}

/// The output of both streams and the exit code of a session without stdin.
async fn finish(session: ExecSession) -> (String, String, i32) {
    let ExecSession {
        stdout,
        stderr,
        exit,
        ..
    } = session;
    let stderr = stderr.expect("stderr without a terminal");
    let (out, err) = tokio::join!(drain(stdout), drain(stderr));
    let code = tokio::time::timeout(LIMIT, exit)
        .await
        .expect("an exit code in time")
        .expect("the session reports its end")
        .expect("the command ran");
    (out, err, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interactive_exec_streams_stdin_stdout_stderr_and_the_exit_code() {
    let node = Node::start().await;
    node.import_fixtures().await;
    let id = "exec-stream";
    node.start_forever(id).await;
    let runtime = &node.runtime;

    // stdout and stderr apart, the exit code last.
    let session = runtime
        .exec_stream(id, forever(&["hello", "there"], &[("EXIT_CODE", "3")]))
        .await
        .expect("exec_stream");
    assert!(session.stdin.is_none(), "no stdin was asked for");
    let (out, err, code) = finish(session).await;
    assert_eq!(out, "hello there\n");
    assert_eq!(err, "forever hello: a line on stderr\n");
    assert_eq!(code, 3);

    // stdin reaches the command, and closing it ends the command's input.
    let mut request = forever(&["cat"], &[]);
    request.stdin = true;
    let mut session = runtime.exec_stream(id, request).await.expect("exec_stream");
    let stdin = session.stdin.take().expect("stdin");
    let large = "0123456789abcdef".repeat(64 * 1024);
    let writer = tokio::spawn(async move {
        stdin.send(Bytes::from_static(b"hello\n")).await.unwrap();
        for chunk in large.as_bytes().chunks(32 * 1024) {
            stdin.send(Bytes::copy_from_slice(chunk)).await.unwrap();
        }
        // Dropping the sender closes the command's stdin.
    });
    let (out, err, code) = finish(session).await;
    writer.await.unwrap();
    assert_eq!((out.len(), &out[..6]), (6 + 16 * 64 * 1024, "hello\n"));
    assert_eq!((err.as_str(), code), ("", 0));

    // A terminal of the requested size, its output on stdout alone.
    let mut request = forever(&["tty"], &[]);
    request.tty = true;
    request.stdin = true;
    request.terminal_size = Some(TerminalSize {
        width: 100,
        height: 30,
    });
    let session = runtime.exec_stream(id, request).await.expect("exec_stream");
    assert!(session.stderr.is_none(), "a terminal has one output");
    let ExecSession {
        stdin,
        stdout,
        exit,
        ..
    } = session;
    let out = drain(stdout).await;
    drop(stdin);
    assert_eq!(out.trim_end(), "tty: yes 30x100");
    assert_eq!(exit.await.unwrap(), Ok(0));

    // A command that cannot start is an error, and leaves no FIFO behind.
    let missing = exec_request(&["/wharf-no-such-command".to_owned()], &[], &[], LIMIT);
    let err = runtime.exec_stream(id, missing).await.expect_err("missing");
    assert!(matches!(err, RuntimeError::StartFailed(_)), "{err:?}");
    assert_eq!(node.fifo_entries(id), ["stderr", "stdout"]);
    assert_eq!(
        node.ctr(&["tasks", "ps", id]).len(),
        2,
        "only the container's own process (and the header)"
    );
    stop(&node, id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_exec_session_kills_its_command_and_leaves_nothing_behind() {
    let node = Node::start().await;
    node.import_fixtures().await;
    let id = "exec-stream-dropped";
    node.start_forever(id).await;
    let mut request = forever(&["hello"], &[("SLEEP_SECONDS", "600")]);
    request.stdin = true;
    let session = node
        .runtime
        .exec_stream(id, request)
        .await
        .expect("exec_stream");
    assert_eq!(node.ctr(&["tasks", "ps", id]).len(), 3, "the exec runs");
    drop(session);

    let deadline = tokio::time::Instant::now() + LIMIT;
    while node.ctr(&["tasks", "ps", id]).len() > 2 || node.fifo_entries(id).len() > 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dropped session's command was not cleaned up: {:?}, {:?}",
            node.ctr(&["tasks", "ps", id]),
            node.fifo_entries(id)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop(&node, id).await;
}
