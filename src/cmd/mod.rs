//! The subcommands, and what they share: reading the command line, the log,
//! writing to standard output, and how a command ends (one error line, an
//! exit code).

pub mod check;
pub mod dev;
pub mod import;
pub(crate) mod kubeconfig;
pub mod request;
pub mod serve;
pub mod worker_config;

use std::fmt::Arguments;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use argh::FromArgs;

use crate::cli::args::Cli;
use crate::server::journal;

/// sysexits.h's EX_CONFIG: the unit's RestartPreventExitStatus= names it, so
/// a configuration error ends in `failed` after one attempt instead of a
/// restart every few seconds, while a crash is still restarted.
pub const EX_CONFIG: u8 = 78;

/// argh, given the command line as `cli::argv::normalize` rewrites it
/// (implied `serve`, `check`, `--flag=value`, the Go signer's flag names).
/// `--help` prints and exits 0; a usage error exits 2.
pub fn parse_args() -> Cli {
    let args: Vec<String> = std::env::args().collect();
    let cmd = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("talos-csr-signer");
    let rest = crate::cli::argv::normalize(args.get(1..).unwrap_or(&[])).unwrap_or_else(|e| {
        print_error(&e);
        std::process::exit(2)
    });
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    Cli::from_args(&[cmd], &rest).unwrap_or_else(|early| {
        let ok = early.status.is_ok();
        if ok {
            // `--help | head` may close the pipe early: nothing to report then.
            let _ = out(format_args!("{}\n", early.output));
        } else {
            eprintln!("{}{}", journal::error_prefix(), early.output);
        }
        std::process::exit(if ok { 0 } else { 2 })
    })
}

/// The process's logger, with gRPC core's messages sent through it. gRPC
/// core's INFO level is internal chatter (`grpc epoll fd: 5`), so at our
/// default level only its errors pass; RUST_LOG=debug shows everything.
pub fn init_logging() {
    journal::init();
    let level = log::max_level();
    if level < log::LevelFilter::Debug {
        log::set_max_level(level.min(log::LevelFilter::Warn));
    }
    grpcio::redirect_log();
    log::set_max_level(level);
}

/// How a command ends: its code, or one error line and exit 1.
pub fn exit(result: Result<ExitCode, String>) -> ExitCode {
    result.unwrap_or_else(|e| {
        print_error(&e);
        ExitCode::FAILURE
    })
}

/// The one line a failed command ends with (priority 3 under journald).
pub fn print_error(message: &str) {
    eprintln!(
        "{}talos-csr-signer: error: {message}",
        journal::error_prefix()
    );
}

/// Writes to standard output, flushed. A failed write is the command's error,
/// not a panic: `import --secret > file` on a full disk must fail, and a reader
/// that went away (`| head`) must not produce a backtrace.
pub fn out(text: Arguments) -> Result<(), String> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_fmt(text)
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("cannot write to standard output: {e}"))
}

/// The process environment, as the resolvers read it (tests pass a table).
pub fn env_var(key: &str) -> Option<String> {
    std::env::var(key).ok()
}
