//! Configuration parsing: durations, IP/DNS lists, CIDRs, patterns, key
//! classes, token files, and whole command lines (as `argv::normalize`
//! rewrites them: implied `serve`, `--flag=value`, Go flag names) with
//! environments.
//! Input: a first line of arguments, then `NAME=value` environment lines.
#![no_main]

use std::collections::HashMap;

use argh::FromArgs;
use libfuzzer_sys::fuzz_target;
use talos_csr_signer::cli::args::{Cli, Command};
use talos_csr_signer::cli::values;
use talos_csr_signer::server::config;
use talos_csr_signer::signer::auth::TokenSet;
use talos_csr_signer::signer::policy::{DnsPattern, IpNet, KeyClass};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = config::parse_duration(text);
    let _ = values::parse_ip_list("X", text);
    // Every name the operator may configure follows the one host-name rule:
    // none holds a wildcard.
    if let Ok(names) = values::parse_dns_list("X", text) {
        assert!(names.iter().all(|n| !n.contains('*')), "{names:?}");
    }
    let _ = values::parse_list::<IpNet>("X", text);
    let _ = values::parse_list::<DnsPattern>("X", text);
    let _ = values::parse_list::<KeyClass>("X", text);
    let _ = TokenSet::from_file_text(text);
    let _ = TokenSet::from_env_text(text);

    let mut lines = text.lines();
    let args: Vec<String> = lines
        .next()
        .unwrap_or("")
        .split(' ')
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
    let env: HashMap<&str, &str> = lines.filter_map(|l| l.split_once('=')).collect();
    let Ok(argv) = talos_csr_signer::cli::argv::normalize(&args) else {
        return;
    };
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    if let Ok(Cli {
        command: Command::Serve(serve),
    }) = Cli::from_args(&["talos-csr-signer"], &argv)
    {
        let _ = serve.resolve(&|k| env.get(k).map(|v| v.to_string()));
    }
});
