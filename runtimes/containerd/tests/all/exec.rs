//! Exec beyond the conformance suite: nothing is left behind in containerd or the state
//! directory, whichever way an exec ends (even when its caller gives up), and a restarted
//! runtime can exec into the containers it found again.

use std::time::Duration;

use wharf_containerd::ContainerdRuntime;
use wharf_runtime::conformance::exec_request;
use wharf_runtime::{Runtime, RuntimeError, Signal};

use crate::{Node, exec_command};

/// The processes of a container's task, as containerd lists them (without the header).
fn task_processes(node: &Node, id: &str) -> Vec<String> {
    node.ctr(&["tasks", "ps", id]).into_iter().skip(1).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_leaves_no_process_or_fifo_behind_however_it_ends() {
    let node = Node::start().await;
    node.import_fixtures().await;
    let runtime = &node.runtime;
    let id = "exec-leak";
    node.start_forever(id).await;
    let command = exec_command();
    let limit = Duration::from_secs(30);

    let output = runtime
        .exec(id, exec_request(&command, &["ok"], &[], limit))
        .await
        .expect("exec");
    assert_eq!(output.exit_code, 0);
    let err = runtime
        .exec(
            id,
            exec_request(
                &command,
                &[],
                &[("SLEEP_SECONDS", "600")],
                Duration::from_secs(1),
            ),
        )
        .await
        .expect_err("timeout");
    assert!(matches!(err, RuntimeError::TimedOut(_)), "{err:?}");
    let missing = ["/wharf-no-such-command".to_owned()];
    let err = runtime
        .exec(id, exec_request(&missing, &[], &[], limit))
        .await
        .expect_err("missing command");
    assert!(matches!(err, RuntimeError::StartFailed(_)), "{err:?}");

    assert_eq!(
        task_processes(&node, id).len(),
        1,
        "only the container's own"
    );
    assert_eq!(node.fifo_entries(id), ["stderr", "stdout"]);
    runtime.kill(id, Signal::Kill).await.unwrap();
    runtime.wait(id).await.unwrap();
    runtime.delete(id).await.unwrap();
    assert_eq!(node.ctr(&["tasks", "ls", "-q"]), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_whose_caller_gives_up_is_still_killed_at_its_timeout() {
    let node = Node::start().await;
    node.import_fixtures().await;
    let id = "exec-dropped";
    node.start_forever(id).await;
    let request = exec_request(
        &exec_command(),
        &[],
        &[("SLEEP_SECONDS", "600")],
        Duration::from_secs(2),
    );
    // The caller stops waiting (and drops the future) while the command runs.
    let gave_up = tokio::time::timeout(Duration::from_millis(700), node.runtime.exec(id, request));
    assert!(
        gave_up.await.is_err(),
        "the exec ended before its caller gave up"
    );
    assert_eq!(task_processes(&node, id).len(), 2, "the exec runs");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while task_processes(&node, id).len() > 1 || node.fifo_entries(id).len() > 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the abandoned exec was not cleaned up: {:?}, {:?}",
            task_processes(&node, id),
            node.fifo_entries(id)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    node.runtime.kill(id, Signal::Kill).await.unwrap();
    node.runtime.wait(id).await.unwrap();
    node.runtime.delete(id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_runtime_can_exec_into_the_containers_it_found_again() {
    let node = Node::start().await;
    node.import_fixtures().await;
    let id = "exec-again";
    node.start_forever(id).await;

    let again = ContainerdRuntime::connect(Node::config(&node.containerd, node.dir.path()))
        .await
        .expect("connect again");
    let limit = Duration::from_secs(30);
    let output = again
        .exec(id, exec_request(&exec_command(), &["again"], &[], limit))
        .await
        .expect("exec");
    assert_eq!(output.exit_code, 0);
    assert!(String::from_utf8_lossy(&output.stdout).contains("hello again"));
    again.kill(id, Signal::Kill).await.unwrap();
    again.wait(id).await.unwrap();
    again.delete(id).await.unwrap();
}
