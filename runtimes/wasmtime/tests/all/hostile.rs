//! Hostile and broken guests: each fails alone, clearly, and leaves the node and the other
//! guests unaffected.

use std::time::{Duration, Instant};

use wharf_runtime::conformance::config;
use wharf_runtime::{ContainerState, Runtime, RuntimeError, Signal};

use crate::{FOREVER, runtime, wat_image};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_does_not_starve_other_guests_and_stops_when_killed() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path(), &dir.path().join("cache"));
    let forever = wat_image(dir.path(), "forever", FOREVER);
    runtime.prepare(&forever).await.unwrap();
    runtime.prepare("hello-job:latest").await.unwrap();
    // More spinning guests than cores.
    for i in 0..4 {
        let id = format!("spin-{i}");
        runtime
            .create(config(&id, &forever, dir.path()))
            .await
            .unwrap();
        runtime.start(&id).await.unwrap();
    }
    let started = Instant::now();
    runtime
        .create(config("neighbour", "hello-job:latest", dir.path()))
        .await
        .unwrap();
    runtime.start("neighbour").await.unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(10), runtime.wait("neighbour"))
        .await
        .expect("a neighbour of spinning guests must still finish")
        .unwrap();
    assert_eq!(exit.code, 0);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    for i in 0..4 {
        let id = format!("spin-{i}");
        assert_eq!(runtime.state(&id), Some(ContainerState::Running));
        runtime.kill(&id, Signal::Kill).await.unwrap();
        let exit = tokio::time::timeout(Duration::from_secs(2), runtime.wait(&id))
            .await
            .expect("a killed loop stops within a few epoch ticks")
            .unwrap();
        assert_eq!(exit.code, 137);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_is_stopped_at_its_limit_as_oom_killed() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path(), &dir.path().join("cache"));
    // Grow memory by 1 MiB until growth fails, then trap.
    let bomb = wat_image(
        dir.path(),
        "bomb",
        r#"(module (memory 1)
             (func (export "_start")
               (loop (br_if 0 (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
               unreachable))"#,
    );
    runtime.prepare(&bomb).await.unwrap();
    let mut config = config("bomb", &bomb, dir.path());
    config.limits.memory_bytes = Some(32 << 20);
    runtime.create(config).await.unwrap();
    runtime.start("bomb").await.unwrap();
    let exit = runtime.wait("bomb").await.unwrap();
    assert_eq!(
        (exit.code, exit.reason.as_str()),
        (137, "OOMKilled"),
        "{exit:?}"
    );
    let stats = runtime.stats("bomb").await.unwrap();
    assert_eq!(stats.memory_bytes, 0, "the bomb's memory was given back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_of_a_guest_counts_its_initial_pages_and_growth_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path(), &dir.path().join("cache"));
    // One page, grown by 16 pages (1 MiB), then spinning.
    let grower = wat_image(
        dir.path(),
        "grower",
        r#"(module (memory 1)
             (func (export "_start")
               (drop (memory.grow (i32.const 16)))
               (loop (br 0))))"#,
    );
    runtime.prepare(&grower).await.unwrap();
    runtime
        .create(config("grower", &grower, dir.path()))
        .await
        .unwrap();
    runtime.start("grower").await.unwrap();
    let limit = Duration::from_secs(10);
    let stats = wharf_runtime::conformance::stats_until(&runtime, "grower", limit, |s| {
        s.memory_bytes >= 17 * 65536
    })
    .await;
    assert_eq!(stats.memory_bytes, 17 * 65536, "{stats:?}");
    runtime.kill("grower", Signal::Kill).await.unwrap();
    runtime.wait("grower").await.unwrap();
    wharf_runtime::conformance::stats_until(&runtime, "grower", limit, |s| s.memory_bytes == 0)
        .await;
}

#[tokio::test]
async fn invalid_bytes_are_an_invalid_artifact_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path(), &dir.path().join("cache"));
    std::fs::write(dir.path().join("junk.wasm"), b"this is not wasm at all").unwrap();
    let mut truncated = std::fs::read(dir.path().join("hello-job.wasm")).unwrap();
    truncated.truncate(truncated.len() / 2);
    std::fs::write(dir.path().join("truncated.wasm"), truncated).unwrap();
    for image in ["junk:1", "truncated:1"] {
        let err = runtime.prepare(image).await.unwrap_err();
        assert!(
            matches!(err, RuntimeError::InvalidArtifact { .. }),
            "{image}: {err:?}"
        );
    }
}

#[tokio::test]
async fn a_module_importing_what_the_host_lacks_fails_to_start_naming_the_import() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path(), &dir.path().join("cache"));
    let needy = wat_image(
        dir.path(),
        "needy",
        r#"(module (import "acme:gpu/compute" "launch" (func)) (func (export "_start")))"#,
    );
    let err = runtime.prepare(&needy).await.unwrap_err();
    assert!(matches!(err, RuntimeError::StartFailed(_)), "{err:?}");
    assert!(err.to_string().contains("launch"), "{err}");
    let no_start = wat_image(dir.path(), "library", r#"(module (func (export "add")))"#);
    let err = runtime.prepare(&no_start).await.unwrap_err();
    assert!(err.to_string().contains("_start"), "{err}");
}

#[tokio::test]
async fn proc_exit_sets_the_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path(), &dir.path().join("cache"));
    let exits = wat_image(
        dir.path(),
        "exits",
        r#"(module (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
             (memory (export "memory") 1)
             (func (export "_start") (call $exit (i32.const 7))))"#,
    );
    runtime.prepare(&exits).await.unwrap();
    runtime
        .create(config("exits", &exits, dir.path()))
        .await
        .unwrap();
    runtime.start("exits").await.unwrap();
    let exit = runtime.wait("exits").await.unwrap();
    assert_eq!((exit.code, exit.reason.as_str()), (7, "Error"));
}

#[tokio::test]
async fn compiled_code_is_cached_on_disk_and_reused_by_a_new_engine() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let first = runtime(dir.path(), &cache);
    first.prepare("hello-job:latest").await.unwrap();
    let entries = || -> Vec<(std::path::PathBuf, std::time::SystemTime)> {
        std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path(), e.metadata().unwrap().modified().unwrap())
            })
            .collect()
    };
    let cached = entries();
    assert_eq!(cached.len(), 1, "{cached:?}");
    drop(first);
    // A new engine (as after a restart) loads the cached code instead of compiling again.
    let second = runtime(dir.path(), &cache);
    second.prepare("hello-job:latest").await.unwrap();
    assert_eq!(entries(), cached);
    second
        .create(config("cached", "hello-job:latest", dir.path()))
        .await
        .unwrap();
    second.start("cached").await.unwrap();
    assert_eq!(second.wait("cached").await.unwrap().code, 0);
}
