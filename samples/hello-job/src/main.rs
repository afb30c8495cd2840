//! # hello-job — Wharf's sample WASI command
//!
//! An ordinary `fn main` program, built twice:
//! * for `wasm32-wasip2`: a component exporting `wasi:cli/run` (`samples/out/hello-job.wasm`);
//! * for `wasm32-wasip1`: a core module exporting `_start` (`samples/out/hello-job-p1.wasm`).
//!
//! What it does, in order:
//! 1. prints one line to stdout: `hello-job: <GREETING> args=[...]` (env `GREETING`, else
//!    `Hello from Wharf!`; the arguments after the program name);
//! 2. if env `SLEEP_MS` is set, sleeps that many milliseconds (for lifecycle tests: a pod
//!    that stays Running for a while, termination grace);
//! 3. if env `ECHO_STDIN` is set, copies stdin to stdout upper-cased, line by line, until end
//!    of file (for `kubectl attach` and `kubectl run -i`: what comes back went through the
//!    program);
//! 4. prints one line to stderr: `hello-job: exiting with code N`;
//! 5. exits with `N`: the first argument if it is an integer, else env `EXIT_CODE`, else 0.
//!
//! Exit codes: a wasip1 module reports any code through `proc_exit`; the wasip2 component uses
//! `wasi:cli/exit.exit-with-code` (WASI 0.2.12) through `wharf_sdk::process::exit`, so the host
//! sees the exact code either way.

use std::time::Duration;

use wharf_sdk::config;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let greeting = config::env_or("GREETING", "Hello from Wharf!");
    println!("hello-job: {greeting} args={args:?}");

    if let Some(ms) = config::env("SLEEP_MS").and_then(|ms| ms.trim().parse::<u64>().ok()) {
        std::thread::sleep(Duration::from_millis(ms));
    }

    if config::env("ECHO_STDIN").is_some() {
        echo_stdin_upper_cased();
    }

    let code = exit_code(
        args.first().map(String::as_str),
        config::env("EXIT_CODE").as_deref(),
    );
    eprintln!("hello-job: exiting with code {code}");
    wharf_sdk::process::exit(code);
}

/// Copies stdin to stdout upper-cased, a line at a time (flushed, so an attached client sees
/// each answer at once), until end of file.
fn echo_stdin_upper_cased() {
    use std::io::{BufRead, Write};
    let mut stdout = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let _ = writeln!(stdout, "{}", line.to_uppercase());
        let _ = stdout.flush();
    }
}

/// The exit code: the first argument if it is an integer, else `EXIT_CODE`, else 0.
fn exit_code(first_arg: Option<&str>, env: Option<&str>) -> i32 {
    first_arg
        .and_then(|arg| arg.trim().parse().ok())
        .or_else(|| env.and_then(|env| env.trim().parse().ok()))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::exit_code;

    #[test]
    fn exit_code_precedence() {
        assert_eq!(exit_code(None, None), 0);
        assert_eq!(exit_code(None, Some("3")), 3);
        assert_eq!(exit_code(Some("7"), Some("3")), 7);
        assert_eq!(exit_code(Some("not-a-number"), Some("3")), 3);
        assert_eq!(exit_code(None, Some("junk")), 0);
    }
}
