//! `Runtime::attach` to Wasm guests, for both command shapes (the hello-job sample as a
//! component and as a core module): stdin fed by attached clients, `stdinOnce`, detaching and
//! attaching again, the merged output of `tty`, and HTTP components (output only).

use std::time::Duration;

use wharf_runtime::conformance::{config, read_until};
use wharf_runtime::logs::{Stream, parse_record};
use wharf_runtime::{ContainerState, Runtime, RuntimeError, Signal, Stdio};

use crate::runtime;

fn is_invalid_state<T>(result: &Result<T, RuntimeError>) -> bool {
    matches!(result, Err(RuntimeError::InvalidState { .. }))
}

/// Stdin with `stdinOnce`: what the client sends is echoed, closing it ends the guest, and
/// the session ends with the exit code after the output.
async fn stdin_once_ends_the_guest(image: &str) {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path(), &dir.path().join("cache"));
    let id = "echo";
    let mut hello = config(id, image, dir.path());
    hello.env = vec![("ECHO_STDIN".into(), "1".into())];
    hello.stdio = Stdio {
        stdin: true,
        stdin_once: true,
        tty: false,
    };
    let log_path = hello.log_path.clone();
    runtime.prepare(image).await.unwrap();
    runtime.create(hello).await.unwrap();
    assert!(is_invalid_state(&runtime.attach(id, true).await));
    runtime.start(id).await.unwrap();
    // Reads wait for a client: the guest is still running without one.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(runtime.state(id), Some(ContainerState::Running));

    let mut session = runtime.attach(id, true).await.unwrap();
    let mut watcher = runtime.attach(id, false).await.unwrap();
    assert!(watcher.stdin.is_none());
    let stdin = session.stdin.take().expect("a stdin");
    stdin.send("hello there\n".into()).await.unwrap();
    read_until(&mut session.stdout, "HELLO THERE\n").await;
    read_until(&mut watcher.stdout, "HELLO THERE\n").await;
    drop(stdin);
    let mut stderr = session.stderr.take().expect("no tty: stderr apart");
    read_until(&mut stderr, "exiting with code 0").await;
    while session.stdout.recv().await.is_some() {}
    let code = tokio::time::timeout(Duration::from_secs(10), session.exit)
        .await
        .expect("an exit in time")
        .expect("an exit")
        .expect("a code");
    assert_eq!(code, 0);
    assert_eq!(runtime.wait(id).await.unwrap().code, 0);
    // Dropping the watcher's exit before reading it is fine too.
    drop(watcher);
    assert!(is_invalid_state(&runtime.attach(id, true).await));
    let log = std::fs::read_to_string(&log_path).unwrap();
    let records: Vec<_> = log.lines().filter_map(parse_record).collect();
    assert!(
        records
            .iter()
            .any(|r| r.stream == Stream::Stdout && r.content == "HELLO THERE"),
        "{log}"
    );
    assert!(records.iter().any(|r| r.stream == Stream::Stderr), "{log}");
    runtime.delete(id).await.unwrap();
    assert!(matches!(
        runtime.attach(id, true).await,
        Err(RuntimeError::NotFound(_))
    ));
}

/// Without `stdinOnce` the stdin outlives a client; with `tty` everything is stdout, in the
/// session and in the log; several clients may write.
async fn stdin_stays_open_and_tty_merges(image: &str) {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path(), &dir.path().join("cache"));
    let id = "echo-tty";
    let mut hello = config(id, image, dir.path());
    hello.env = vec![("ECHO_STDIN".into(), "1".into())];
    hello.stdio = Stdio {
        stdin: true,
        stdin_once: false,
        tty: true,
    };
    let log_path = hello.log_path.clone();
    runtime.prepare(image).await.unwrap();
    runtime.create(hello).await.unwrap();
    runtime.start(id).await.unwrap();

    let mut first = runtime.attach(id, true).await.unwrap();
    assert!(first.stderr.is_none(), "a tty has one output");
    first
        .resize
        .try_send(wharf_runtime::TerminalSize {
            width: 80,
            height: 24,
        })
        .unwrap();
    let mut second = runtime.attach(id, true).await.unwrap();
    let one = first.stdin.take().unwrap();
    let two = second.stdin.take().unwrap();
    one.send("one\n".into()).await.unwrap();
    read_until(&mut first.stdout, "ONE\n").await;
    two.send("two\n".into()).await.unwrap();
    read_until(&mut first.stdout, "TWO\n").await;
    drop((one, first));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(runtime.state(id), Some(ContainerState::Running));
    two.send("three\n".into()).await.unwrap();
    read_until(&mut second.stdout, "THREE\n").await;
    drop(two);
    let mut third = runtime.attach(id, true).await.unwrap();
    let stdin = third.stdin.take().expect("still open");
    stdin.send("four\n".into()).await.unwrap();
    read_until(&mut third.stdout, "FOUR\n").await;
    // Closing the last client's stdin does not close the guest's: it still runs.
    drop(stdin);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(runtime.state(id), Some(ContainerState::Running));
    runtime.kill(id, Signal::Kill).await.unwrap();
    while third.stdout.recv().await.is_some() {}
    assert_eq!(third.exit.await.unwrap().unwrap(), 137);
    assert_eq!(runtime.wait(id).await.unwrap().code, 137);
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.lines()
            .filter_map(parse_record)
            .all(|r| r.stream == Stream::Stdout),
        "with a tty everything is logged as stdout: {log}"
    );
    runtime.delete(id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_reads_the_stdin_of_attached_clients() {
    stdin_once_ends_the_guest("hello-job:latest").await;
    stdin_stays_open_and_tty_merges("hello-job:latest").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_core_module_reads_the_stdin_of_attached_clients() {
    stdin_once_ends_the_guest("hello-job-p1:latest").await;
    stdin_stays_open_and_tty_merges("hello-job-p1:latest").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_component_can_be_attached_to_without_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path(), &dir.path().join("cache"));
    let mut web = config("web", "hello-http:latest", dir.path());
    web.stdio.stdin = true;
    runtime.prepare("hello-http:latest").await.unwrap();
    runtime.create(web).await.unwrap();
    runtime.start("web").await.unwrap();
    let session = runtime.attach("web", true).await.unwrap();
    assert!(session.stdin.is_none(), "no lasting instance to read it");
    runtime.kill("web", Signal::Terminate).await.unwrap();
    let mut stdout = session.stdout;
    tokio::time::timeout(Duration::from_secs(10), async {
        while stdout.recv().await.is_some() {}
    })
    .await
    .expect("the output ends with the container");
    assert_eq!(session.exit.await.unwrap().unwrap(), 0);
    runtime.delete("web").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_created_without_stdin_gives_none() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path(), &dir.path().join("cache"));
    let forever = crate::wat_image(dir.path(), "forever", crate::FOREVER);
    runtime.prepare(&forever).await.unwrap();
    runtime
        .create(config("forever", &forever, dir.path()))
        .await
        .unwrap();
    runtime.start("forever").await.unwrap();
    let session = runtime.attach("forever", true).await.unwrap();
    assert!(session.stdin.is_none());
    assert!(session.stderr.is_some());
    drop(session);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(runtime.state("forever"), Some(ContainerState::Running));
    runtime.kill("forever", Signal::Kill).await.unwrap();
    assert_eq!(runtime.wait("forever").await.unwrap().code, 137);
    runtime.delete("forever").await.unwrap();
}
