//! Importing OCI image archives: a good one twice, and the ways an archive can be broken.

use std::io::Read;
use std::path::Path;

use wharf_runtime::{Runtime, RuntimeError};

use crate::{HELLO, Node, sample_archive};

/// Rewrites an archive entry by entry, letting `change` alter (or drop, with `None`) each.
fn rewrite_archive(
    from: &Path,
    to: &Path,
    mut change: impl FnMut(&str, Vec<u8>) -> Option<Vec<u8>>,
) {
    let mut input = tar::Archive::new(std::fs::File::open(from).unwrap());
    let mut output = tar::Builder::new(std::fs::File::create(to).unwrap());
    for entry in input.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        if let Some(bytes) = change(&name, bytes) {
            let mut header = entry.header().clone();
            header.set_size(bytes.len() as u64);
            header.set_cksum();
            output.append(&header, bytes.as_slice()).unwrap();
        }
    }
    output.finish().unwrap();
}

fn assert_invalid(result: Result<Vec<String>, RuntimeError>, expected: &str) {
    match result {
        Err(RuntimeError::InvalidArtifact { detail, .. }) => {
            assert!(
                detail.contains(expected),
                "the error should mention {expected:?}: {detail}"
            );
        }
        other => panic!("expected InvalidArtifact mentioning {expected:?}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_archive_is_a_clear_error_and_creates_no_image() {
    let node = Node::start().await;
    let good = sample_archive("hello-job-container.tar");
    let dir = node.dir.path();

    let not_a_tar = dir.join("not-a-tar.tar");
    std::fs::write(&not_a_tar, b"this is not an archive at all, just some text").unwrap();
    assert_invalid(node.runtime.import_archive(&not_a_tar).await, "tar archive");

    // Blobs whose bytes do not match their digests: containerd refuses to commit them. (This
    // comes first: a blob the store already has is not written, nor checked, again.)
    let tampered = dir.join("tampered.tar");
    rewrite_archive(&good, &tampered, |name, mut bytes| {
        if name.starts_with("blobs/") {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0xff;
        }
        Some(bytes)
    });
    assert_invalid(node.runtime.import_archive(&tampered).await, "blob sha256:");

    // An archive cut short in the middle of a blob.
    let truncated = dir.join("truncated.tar");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = node
        .runtime
        .import_archive(&truncated)
        .await
        .expect_err("a truncated archive");
    assert!(
        matches!(err, RuntimeError::InvalidArtifact { .. }),
        "{err:?}"
    );

    // Blobs already in the store (from the truncated archive) are not written again; the
    // index is what is missing here.
    let no_index = dir.join("no-index.tar");
    rewrite_archive(&good, &no_index, |name, bytes| {
        (name != "index.json").then_some(bytes)
    });
    assert_invalid(
        node.runtime.import_archive(&no_index).await,
        "not an OCI image layout",
    );

    let err = node.runtime.prepare(HELLO).await.expect_err("no image");
    assert!(matches!(err, RuntimeError::ImageNotFound { .. }), "{err:?}");
    assert_eq!(node.ctr(&["images", "ls", "-q"]), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_was_never_imported_is_image_not_found() {
    let node = Node::start().await;
    let err = node
        .runtime
        .prepare("never-imported:1")
        .await
        .expect_err("prepare");
    match err {
        RuntimeError::ImageNotFound { image, detail } => {
            assert_eq!(image, "never-imported:1");
            assert!(detail.contains("import"), "{detail}");
        }
        other => panic!("expected ImageNotFound, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn importing_an_archive_twice_gives_one_unpacked_image_and_no_leases() {
    let node = Node::start().await;
    let archive = sample_archive("hello-container.tar");
    for _ in 0..2 {
        let names = node.runtime.import_archive(&archive).await.expect("import");
        assert_eq!(names, ["hello-container:latest"]);
    }
    assert_eq!(
        node.ctr(&["images", "ls", "-q"]),
        ["hello-container:latest"]
    );
    // The image is unpacked: its one layer is a committed snapshot.
    let snapshots = node.ctr(&["snapshots", "ls"]);
    assert_eq!(snapshots.len(), 2, "{snapshots:?}");
    assert!(snapshots[1].contains("Committed"), "{snapshots:?}");
    // Unpacking was done under leases, and they are gone.
    assert_eq!(node.ctr(&["leases", "ls", "-q"]), Vec::<String>::new());
    // The image resolves by its short name, as a pod spec writes it.
    node.runtime
        .prepare("hello-container")
        .await
        .expect("prepare");
}
