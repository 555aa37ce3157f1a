//! `serve` (the default command): load, listen, sign until told to stop. And
//! `check` / `serve --check`: load exactly as serve would, report, exit.

use std::path::Path;
use std::process::ExitCode;

use super::{check, dev, env_var, out, print_error, EX_CONFIG};
use crate::cli::args::ServeArgs;
use crate::pki::fips;
use crate::server::config::ServeConfig;
use crate::server::{self, Failure, Started};
use crate::signer::auth::TokenSource;

pub fn run(args: ServeArgs) -> Result<ExitCode, String> {
    if args.check {
        return check::run(args);
    }
    let (message, code) = match start(args) {
        Ok(()) => return Ok(ExitCode::SUCCESS),
        Err(Failure::Config(m)) => (m, ExitCode::from(EX_CONFIG)),
        Err(Failure::Runtime(m)) => (m, ExitCode::FAILURE),
    };
    log::logger().flush();
    print_error(&message);
    Ok(code)
}

fn start(args: ServeArgs) -> Result<(), Failure> {
    let cfg = args.resolve(&env_var).map_err(Failure::Config)?;
    // Before anything else uses OpenSSL (dev keys, the gRPC environment).
    fips::setup(cfg.fips, cfg.sources.fips_allow_ed25519).map_err(Failure::Config)?;
    if let Some(plan) = &cfg.dev {
        dev::prepare(plan).map_err(Failure::Config)?;
    }
    server::run(&cfg, |started| {
        if cfg.dev.is_some() {
            print_dev_hint(&cfg, started);
        }
    })
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
    let token = match &cfg.sources.token {
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
        abs(&cfg.sources.ca_cert).display()
    );
    // A hint nobody can read is no reason to stop serving.
    let _ = out(format_args!("{hint}"));
}
