//! Wasm artifacts: where their bytes come from, what shape they have, and the on-disk cache of
//! compiled code (keyed by content digest and engine, so a restart never recompiles).

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Engine, Module};
use wharf_runtime::RuntimeError;

/// Where image bytes come from (the control plane's artifact store, an OCI registry, a folder).
#[async_trait]
pub trait ImageSource: Send + Sync + 'static {
    /// The bytes of `image`.
    async fn fetch(&self, image: &str) -> Result<Bytes, RuntimeError>;
}

/// Images as files in a folder: `NAME:TAG` is `DIR/NAME.wasm` (the tag is ignored), and an
/// absolute path is read as it is. For local use and tests.
#[derive(Clone, Debug)]
pub struct DirectorySource {
    dir: PathBuf,
}

impl DirectorySource {
    /// A source reading from `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> DirectorySource {
        DirectorySource { dir: dir.into() }
    }
}

#[async_trait]
impl ImageSource for DirectorySource {
    async fn fetch(&self, image: &str) -> Result<Bytes, RuntimeError> {
        let path = if Path::new(image).is_absolute() {
            PathBuf::from(image)
        } else {
            let name = image.rsplit('/').next().unwrap_or(image);
            let name = name.split(['@', ':']).next().unwrap_or(name);
            self.dir.join(format!("{name}.wasm"))
        };
        tokio::fs::read(&path)
            .await
            .map(Bytes::from)
            .map_err(|e| RuntimeError::ImageNotFound {
                image: image.to_owned(),
                detail: format!("{}: {e}", path.display()),
            })
    }
}

/// The hex sha256 of some bytes.
pub fn digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// The two binary formats a Wasm artifact can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A core module (WASI preview 1, `_start`).
    Module,
    /// A component (WASI preview 2).
    Component,
}

/// Tells a core module from a component by the header (magic, then the version and layer
/// fields of the binary format), rejecting anything else.
pub fn format_of(image: &str, bytes: &[u8]) -> Result<Format, RuntimeError> {
    const MODULE: [u8; 8] = *b"\0asm\x01\0\0\0";
    const COMPONENT: [u8; 8] = *b"\0asm\x0d\0\x01\0";
    if bytes.starts_with(&COMPONENT) {
        Ok(Format::Component)
    } else if bytes.starts_with(&MODULE) {
        Ok(Format::Module)
    } else {
        let shown: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
        Err(RuntimeError::InvalidArtifact {
            image: image.to_owned(),
            detail: format!(
                "not a WebAssembly module or component (starts with {})",
                shown.join(" ")
            ),
        })
    }
}

/// Compiled code, loaded from the cache or compiled now.
pub enum Compiled {
    /// A core module.
    Module(Module),
    /// A component.
    Component(Component),
}

/// The on-disk cache of compiled artifacts.
#[derive(Clone, Debug)]
pub struct CompileCache {
    dir: PathBuf,
}

impl CompileCache {
    /// A cache in `dir` (created if needed).
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<CompileCache> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(CompileCache { dir })
    }

    fn path(&self, engine: &Engine, digest: &str) -> PathBuf {
        // The engine's compatibility hash changes with the wasmtime version and the settings
        // that affect code, so stale code is never loaded.
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        self.dir
            .join(format!("{digest}-{:016x}.cwasm", hasher.finish()))
    }

    /// Loads compiled code for `bytes` from the cache, or compiles and stores it. Returns the
    /// code and whether it came from the cache.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        image: &str,
        bytes: &[u8],
    ) -> Result<(Compiled, bool), RuntimeError> {
        let format = format_of(image, bytes)?;
        let path = self.path(engine, &digest(bytes));
        if path.exists() {
            match deserialize(engine, format, &path) {
                Ok(compiled) => return Ok((compiled, true)),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "discarding unusable compiled artifact");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let invalid = |e: wasmtime::Error| RuntimeError::InvalidArtifact {
            image: image.to_owned(),
            detail: format!("{e:#}"),
        };
        let (compiled, serialized) = match format {
            Format::Module => {
                let module = Module::new(engine, bytes).map_err(invalid)?;
                let serialized = module.serialize().map_err(invalid)?;
                (Compiled::Module(module), serialized)
            }
            Format::Component => {
                let component = Component::new(engine, bytes).map_err(invalid)?;
                let serialized = component.serialize().map_err(invalid)?;
                (Compiled::Component(component), serialized)
            }
        };
        // Write to a temporary name and rename, so a crash never leaves a torn file behind.
        let tmp = path.with_extension("tmp");
        if let Err(error) =
            std::fs::write(&tmp, &serialized).and_then(|()| std::fs::rename(&tmp, &path))
        {
            tracing::warn!(path = %path.display(), %error, "cannot cache compiled artifact");
        }
        Ok((compiled, false))
    }
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, format: Format, path: &Path) -> wasmtime::Result<Compiled> {
    // SAFETY: wasmtime requires that deserialized code was produced by `serialize` of a
    // compatible engine and not tampered with. The cache directory is private to this node's
    // data dir, files are written only by `load_or_compile` above (atomically, via rename),
    // and the file name carries the engine's compatibility hash; wasmtime additionally checks
    // the header and engine settings and refuses incompatible code.
    unsafe {
        match format {
            Format::Module => Module::deserialize_file(engine, path).map(Compiled::Module),
            Format::Component => Component::deserialize_file(engine, path).map(Compiled::Component),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anything_but_wasm_is_an_invalid_artifact() {
        for bytes in [&b""[..], b"\x7fELF\x02\x01", b"hello world, not wasm"] {
            let err = format_of("x:1", bytes).unwrap_err();
            assert!(matches!(err, RuntimeError::InvalidArtifact { .. }), "{err}");
        }
        assert_eq!(format_of("m", b"\0asm\x01\0\0\0").unwrap(), Format::Module);
        assert_eq!(
            format_of("c", b"\0asm\x0d\0\x01\0").unwrap(),
            Format::Component
        );
    }

    #[test]
    fn digests_are_hex_sha256() {
        assert_eq!(
            digest(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
