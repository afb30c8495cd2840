//! Secrets encrypted at rest: a Secret applied with kubectl reads back, while nothing under the
//! data dir — the raw redb file included — holds its value, plain or base64; it survives a
//! restart and `wharf secrets rotate-key`.

use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use wharf_e2e::{Wharf, run, wharf_bin};

/// A value no other test or file could contain by chance.
pub(crate) fn random_value() -> String {
    let mut parts = Vec::new();
    for salt in 0..2u64 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(salt);
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
        );
        hasher.write_u32(std::process::id());
        parts.push(format!("{:016x}", hasher.finish()));
    }
    format!("s3cret-{}", parts.join(""))
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let Ok(metadata) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if metadata.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap().flatten() {
                pending.push(entry.path());
            }
        } else if metadata.is_file() {
            let bytes = std::fs::read(&path).unwrap_or_default();
            if bytes.windows(needle.len()).any(|window| window == needle) {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

/// Asserts that no file under the data dir holds the value, plain or base64.
fn assert_not_on_disk(data: &Path, value: &str) {
    let encoded = base64::engine::general_purpose::STANDARD.encode(value);
    assert!(
        data.join("state.redb").is_file(),
        "no redb file in {data:?}"
    );
    for needle in [value, encoded.as_str()] {
        let found = files_containing(data, needle.as_bytes());
        assert!(found.is_empty(), "{needle:?} found on disk in {found:?}");
    }
}

fn read_password(wharf: &Wharf) -> String {
    let encoded = run(wharf.kubectl().args([
        "get",
        "secret",
        "db-credentials",
        "-o",
        "jsonpath={.data.password}",
    ]))
    .unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .unwrap();
    String::from_utf8(decoded).unwrap()
}

#[test]
fn secret_values_are_never_on_disk_and_survive_restart_and_key_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut wharf = Wharf::start_isolated(&data).unwrap();
    let keyring = data.join("encryption.key");
    assert!(keyring.is_file(), "wharf up creates the encryption key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&keyring).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the key file is private");
    }

    let value = random_value();
    let manifest = dir.path().join("secret.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db-credentials\ntype: Opaque\nstringData:\n  password: {value}\n"
        ),
    )
    .unwrap();
    run(wharf.kubectl().arg("apply").arg("-f").arg(&manifest)).unwrap();
    assert_eq!(read_password(&wharf), value);

    wharf.terminate(Duration::from_secs(20)).unwrap();
    assert_not_on_disk(&data, &value);

    wharf.restart().unwrap();
    assert_eq!(read_password(&wharf), value, "after a restart");

    // Rotation refuses to run against a running server, and says why.
    let refused = std::process::Command::new(wharf_bin())
        .args(["secrets", "rotate-key", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("stop it first"), "{message}");

    wharf.terminate(Duration::from_secs(20)).unwrap();
    let rotated = run(std::process::Command::new(wharf_bin())
        .args(["secrets", "rotate-key", "--data-dir"])
        .arg(&data))
    .unwrap();
    assert!(rotated.contains("new key k2"), "{rotated}");
    let keys = std::fs::read_to_string(&keyring).unwrap();
    assert!(keys.contains("\"k2\""), "{keys}");
    assert!(
        !keys.contains("\"k1\""),
        "the old key is dropped once nothing uses it: {keys}"
    );
    assert_not_on_disk(&data, &value);

    wharf.restart().unwrap();
    assert_eq!(read_password(&wharf), value, "after the key rotation");
}
