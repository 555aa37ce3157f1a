use std::fmt::Arguments;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use argh::FromArgs;
use talos_csr_signer::cli::{Cli, Command, ImportArgs, RequestArgs, ServeArgs, WorkerConfigArgs};
use talos_csr_signer::config::{ServeConfig, TokenSource};
use talos_csr_signer::server::{self, Failure, Started};
use talos_csr_signer::{client, dev};

fn main() -> ExitCode {
    let cli = parse_args();
    talos_csr_signer::ops::journal::init();
    redirect_grpc_core_log();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Request(args) => request(args),
        Command::Import(args) => import(args),
        Command::WorkerConfig(args) => worker_config(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            print_error(&e);
            ExitCode::FAILURE
        }
    }
}

/// Sends gRPC core's messages through our logger. Its INFO level is internal
/// chatter (`grpc epoll fd: 5`), so at our default level only its errors pass;
/// RUST_LOG=debug shows everything.
fn redirect_grpc_core_log() {
    let level = log::max_level();
    if level < log::LevelFilter::Debug {
        log::set_max_level(level.min(log::LevelFilter::Warn));
    }
    grpcio::redirect_log();
    log::set_max_level(level);
}

/// argh, given the command line as `argv::normalize` rewrites it (implied
/// `serve`, `check`, `--flag=value`, the Go signer's flag names).
fn parse_args() -> Cli {
    let args: Vec<String> = std::env::args().collect();
    let cmd = Path::new(&args[0])
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("talos-csr-signer");
    let rest = talos_csr_signer::argv::normalize(&args[1..]).unwrap_or_else(|e| {
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
            let prefix = talos_csr_signer::ops::journal::error_prefix();
            eprintln!("{prefix}{}", early.output);
        }
        std::process::exit(if ok { 0 } else { 2 })
    })
}

/// Writes to standard output, flushed. A failed write is the command's error,
/// not a panic: `import --secret > file` on a full disk must fail, and a reader
/// that went away (`| head`) must not produce a backtrace.
fn out(text: Arguments) -> Result<(), String> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_fmt(text)
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("cannot write to standard output: {e}"))
}

fn env_var(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

/// sysexits.h's EX_CONFIG: the unit's RestartPreventExitStatus= names it, so
/// a configuration error ends in `failed` after one attempt instead of a
/// restart every few seconds, while a crash is still restarted.
const EX_CONFIG: u8 = 78;

fn serve(args: ServeArgs) -> Result<ExitCode, String> {
    if args.check {
        return check(args);
    }
    let failure = match start(args) {
        Ok(()) => return Ok(ExitCode::SUCCESS),
        Err(f) => f,
    };
    let (message, code) = match failure {
        Failure::Config(m) => (m, ExitCode::from(EX_CONFIG)),
        Failure::Runtime(m) => (m, ExitCode::FAILURE),
    };
    log::logger().flush();
    print_error(&message);
    Ok(code)
}

/// The one line a failed command ends with (priority 3 under journald).
fn print_error(message: &str) {
    let prefix = talos_csr_signer::ops::journal::error_prefix();
    eprintln!("{prefix}talos-csr-signer: error: {message}");
}

fn start(args: ServeArgs) -> Result<(), Failure> {
    let cfg = args.resolve(&env_var).map_err(Failure::Config)?;
    // Before anything else uses OpenSSL (dev keys, the gRPC environment).
    talos_csr_signer::fips::setup(cfg.fips, cfg.fips_allow_ed25519).map_err(Failure::Config)?;
    if let Some(plan) = &cfg.dev {
        dev::prepare(plan).map_err(Failure::Config)?;
    }
    server::run(&cfg, |started| {
        if cfg.dev.is_some() {
            print_dev_hint(&cfg, started);
        }
    })
}

/// `check`: exit 0 with a report when the configuration loads, 1 otherwise.
fn check(args: ServeArgs) -> Result<ExitCode, String> {
    let json = args.json;
    let loaded = args.resolve(&env_var).and_then(|cfg| {
        talos_csr_signer::fips::setup(cfg.fips, cfg.fips_allow_ed25519)?;
        talos_csr_signer::check::run(&cfg)
    });
    let (text, code) = match loaded {
        Ok(report) if json => (report.json(), ExitCode::SUCCESS),
        Ok(report) => (report.text(), ExitCode::SUCCESS),
        Err(e) if json => (talos_csr_signer::check::json_error(&e), ExitCode::FAILURE),
        Err(e) => return Err(e),
    };
    out(format_args!("{text}"))?;
    Ok(code)
}

/// The exact command that exercises a `--dev` server; never the token itself.
fn print_dev_hint(cfg: &ServeConfig, started: &Started) {
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let exe = std::env::current_exe()
        .map_or_else(|_| "talos-csr-signer".into(), |p| p.display().to_string());
    let mut endpoint = started.addr;
    if endpoint.ip().is_unspecified() {
        endpoint.set_ip([127, 0, 0, 1].into());
    }
    let token = match &cfg.token {
        TokenSource::File(p) => format!("--token-file {}", abs(p).display()),
        TokenSource::Value(_, "TALOS_TOKEN") => "--token \"$TALOS_TOKEN\"".to_string(),
        TokenSource::Value(_, setting) => format!("--token <the {setting} value>"),
    };
    let mut hint = String::new();
    if let Some(plan) = &cfg.dev {
        hint += &format!(
            "dev mode: throwaway machine CA and token in {} (never use them for real workers)\n",
            abs(&plan.dir).display()
        );
    }
    hint += &format!(
        "request a certificate like a Talos worker with:\n  {exe} request --endpoint {endpoint} --ca {} {token} --cn dev-worker --ip 127.0.0.1 --dns dev-worker\n",
        abs(&cfg.ca_cert).display()
    );
    // A hint nobody can read is no reason to stop serving.
    let _ = out(format_args!("{hint}"));
}

fn import(args: ImportArgs) -> Result<ExitCode, String> {
    let material = talos_csr_signer::import::read(&args.from)?;
    match (&args.out, args.secret) {
        (Some(dir), false) => {
            talos_csr_signer::import::write(&material, dir)?;
            eprintln!(
                "wrote ca.crt, ca.key (0600) and token (0600) in {}: {}",
                dir.display(),
                material.summary
            );
        }
        (None, true) => {
            let manifest =
                talos_csr_signer::import::secret_manifest(&material, &args.name, &args.namespace);
            out(format_args!("{manifest}"))?;
            eprintln!(
                "printed Secret {}/{}: {}",
                args.namespace, args.name, material.summary
            );
        }
        _ => return Err("import needs exactly one of --out DIR or --secret".to_string()),
    }
    Ok(ExitCode::SUCCESS)
}

fn worker_config(args: WorkerConfigArgs) -> Result<ExitCode, String> {
    let req = args.resolve()?;
    let written = talos_csr_signer::worker_config::run(&req)?;
    eprint!(
        "{}",
        talos_csr_signer::worker_config::describe(&written, &req.out)
    );
    Ok(ExitCode::SUCCESS)
}

fn request(args: RequestArgs) -> Result<ExitCode, String> {
    let plan = client::Plan::resolve(args, &env_var)?;
    let answer = client::call(&plan)?;
    let checks = client::verify(&plan, &answer);
    let mut ok = true;
    for check in &checks {
        match &check.result {
            Ok(detail) => out(format_args!("ok    {:<12} {detail}\n", check.what))?,
            Err(problem) => {
                ok = false;
                out(format_args!("FAIL  {:<12} {problem}\n", check.what))?;
            }
        }
    }
    if let Some(dir) = &plan.out {
        client::save(dir, &answer)?;
        out(format_args!(
            "saved key.pem, crt.pem and ca.pem in {}\n",
            dir.display()
        ))?;
    }
    if ok {
        out(format_args!("certificate for CN={} checks out\n", plan.cn))?;
        Ok(ExitCode::SUCCESS)
    } else {
        out(format_args!(
            "the signer's answer failed the checks above\n"
        ))?;
        Ok(ExitCode::FAILURE)
    }
}
