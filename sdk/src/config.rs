//! Configuration: environment variables and mounted ConfigMap / Secret files.
//!
//! Wharf delivers a pod's configuration to a Wasm guest exactly as Kubernetes does to a
//! container: `env` / `env.valueFrom` / `envFrom` become environment variables, and a
//! `volumeMounts` entry of a ConfigMap or Secret volume becomes a read-only preopened directory
//! at `mountPath`, one file per key. So `/etc/hello/greeting` is key `greeting` of the volume
//! mounted at `/etc/hello`.
//!
//! These helpers are plain `std` and work on every target (wasip2, wasip1, the host).
//!
//! ```no_run
//! use wharf_sdk::config;
//!
//! let greeting = config::env_or("GREETING", "Hello from Wharf!");
//! let token = config::file("/var/run/secrets/api/token"); // None if not mounted
//! let settings = config::files("/etc/app"); // every key of a mounted ConfigMap
//! ```

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

/// The value of environment variable `name`, if set and valid UTF-8.
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The value of environment variable `name`, or `default` if it is unset.
pub fn env_or(name: &str, default: &str) -> String {
    env(name).unwrap_or_else(|| default.to_string())
}

/// The contents of file `path` as text (invalid UTF-8 replaced), or `None` if it cannot be
/// read (missing, not mounted, a directory, ...). Contents are returned as is, including any
/// trailing newline.
pub fn file(path: impl AsRef<Path>) -> Option<String> {
    read(path)
        .ok()
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

/// The contents of file `path` as text, or `default` if it cannot be read.
pub fn file_or(path: impl AsRef<Path>, default: &str) -> String {
    file(path).unwrap_or_else(|| default.to_string())
}

/// The raw contents of file `path` (for binary Secret values), with the I/O error if any.
pub fn read(path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
    std::fs::read(path)
}

/// Every key of the ConfigMap / Secret volume mounted at `dir`: file name → contents as text.
///
/// Skips hidden entries (Kubernetes' `..data` bookkeeping) and anything that is not a readable
/// file. Empty if `dir` is not mounted.
pub fn files(dir: impl AsRef<Path>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        if let Some(text) = file(entry.path()) {
            out.insert(name, text);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_helpers() {
        assert_eq!(env("WHARF_SDK_TEST_SURELY_UNSET"), None);
        assert_eq!(env_or("WHARF_SDK_TEST_SURELY_UNSET", "dflt"), "dflt");
        assert!(env("PATH").is_some());
    }

    #[test]
    fn file_helpers() {
        let dir = std::env::temp_dir().join(format!("wharf-sdk-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("greeting"), "hi\n").unwrap();
        std::fs::write(dir.join(".hidden"), "x").unwrap();
        std::fs::create_dir_all(dir.join("sub")).unwrap();

        assert_eq!(file(dir.join("greeting")).as_deref(), Some("hi\n"));
        assert_eq!(file(dir.join("missing")), None);
        assert_eq!(file(dir.join("sub")), None);
        assert_eq!(file_or(dir.join("missing"), "d"), "d");
        let all = files(&dir);
        assert_eq!(all.len(), 1);
        assert_eq!(all["greeting"], "hi\n");
        assert!(files(dir.join("nope")).is_empty());

        std::fs::remove_dir_all(&dir).unwrap();
    }
}
