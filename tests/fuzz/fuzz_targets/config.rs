//! Configuration parsing: durations, IP/DNS lists, CIDRs, patterns, key
//! classes, token files, and whole command lines (as `argv::normalize`
//! rewrites them: implied `serve`, `--flag=value`, Go flag names) with
//! environments.
//! Input: a first line of arguments, then `NAME=value` environment lines.
#![no_main]

use std::collections::HashMap;

use argh::FromArgs;
use libfuzzer_sys::fuzz_target;
use talos_csr_signer::auth::TokenSet;
use talos_csr_signer::cli::{Cli, Command};
use talos_csr_signer::config;
use talos_csr_signer::policy::{DnsPattern, IpNet, KeyClass};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = config::parse_duration(text);
    let _ = config::parse_ip_list("X", text);
    let _ = config::parse_dns_list("X", text);
    let _ = config::parse_list::<IpNet>("X", text);
    let _ = config::parse_list::<DnsPattern>("X", text);
    let _ = config::parse_list::<KeyClass>("X", text);
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
    let Ok(argv) = talos_csr_signer::argv::normalize(&args) else {
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
