//! The talos-csr-signer binary: read the command line, run the subcommand.

use std::process::ExitCode;

use talos_csr_signer::cli::args::Command;
use talos_csr_signer::cmd;

fn main() -> ExitCode {
    let cli = cmd::parse_args();
    cmd::init_logging();
    cmd::exit(match cli.command {
        Command::Serve(args) => cmd::serve::run(args),
        Command::Request(args) => cmd::request::run(args),
        Command::Import(args) => cmd::import::run(args),
        Command::WorkerConfig(args) => cmd::worker_config::run(args),
    })
}
