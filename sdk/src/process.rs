//! Ending a command with an exit code the host can see.

/// Exits the program with `code` (0–255).
///
/// Rust's `std::process::exit` on `wasm32-wasip2` can only report success or failure (stable
/// `wasi:cli/exit.exit` takes a result), so every non-zero code would reach the host as 1. This
/// uses `wasi:cli/exit.exit-with-code` (WASI 0.2.12, provided by wasmtime 48 and Wharf), so a
/// pod's status shows the exact code. On other targets it is `std::process::exit`.
pub fn exit(code: i32) -> ! {
    #[cfg(all(target_os = "wasi", target_env = "p2"))]
    if code != 0 {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        wasip2::cli::exit::exit_with_code(code.clamp(0, 255) as u8);
    }
    std::process::exit(code)
}
