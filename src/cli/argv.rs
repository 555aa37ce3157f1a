//! The command line as argh is given it. Everything that is spelled
//! differently from what argh reads is rewritten here, in one place:
//!
//! - no subcommand means `serve`: the Go talos-csr-signer has none, so its
//!   image runs with flags (or nothing) only;
//! - `check ARGS` is `serve --check ARGS`, so `check` takes exactly `serve`'s
//!   flags;
//! - `--flag=value` becomes `--flag value`: cobra and Kubernetes manifests
//!   write the first, argh reads only the second;
//! - the Go signer's flag names become ours (`--ca-cert-path` → `--ca-cert`…).
//!
//! Anything else goes to argh unchanged, so an unknown flag is still refused
//! by name.

/// Subcommands argh knows; anything else in first place is a flag for `serve`
/// or an error argh reports.
const SUBCOMMANDS: &[&str] = &["serve", "request", "import", "worker-config", "help"];

/// Flags that take no value. `--switch=true` is the switch, `--switch=false`
/// leaves it off, as cobra reads them. (A unit test checks this list against
/// argh's own flags, so a new switch cannot be forgotten here.)
const SWITCHES: &[&str] = &[
    "--peer-ip-must-match",
    "--dev",
    "--fips",
    "--fips-allow-ed25519",
    "--check",
    "--json",
    "--secret",
    "--force",
    "--help",
];

/// The Go talos-csr-signer's flags that have another name here.
const GO_FLAG_NAMES: &[(&str, &str)] = &[
    ("--ca-cert-path", "--ca-cert"),
    ("--ca-key-path", "--ca-key"),
    ("--tls-cert-path", "--tls-cert"),
    ("--tls-key-path", "--tls-key"),
];

/// Rewrites the arguments after the program name; the error is one line.
pub fn normalize(args: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::with_capacity(args.len() + 2);
    let rest = match args.first().map(String::as_str) {
        Some("check") => {
            out.extend(["serve".to_string(), "--check".to_string()]);
            &args[1..]
        }
        Some("-h" | "--help") => return Ok(args.to_vec()),
        Some(first) if SUBCOMMANDS.contains(&first) => {
            out.push(first.to_string());
            &args[1..]
        }
        Some(first) if first.starts_with('-') => {
            out.push("serve".to_string());
            args
        }
        None => return Ok(vec!["serve".to_string()]),
        // A word that is no subcommand: argh names it in its error.
        Some(_) => return Ok(args.to_vec()),
    };
    let mut options_ended = false;
    for arg in rest {
        if options_ended || !arg.starts_with("--") {
            out.push(arg.clone());
            continue;
        }
        if arg == "--" {
            options_ended = true;
            out.push(arg.clone());
            continue;
        }
        let (name, value) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (arg.as_str(), None),
        };
        let name = GO_FLAG_NAMES
            .iter()
            .find(|(go, _)| *go == name)
            .map_or(name, |(_, ours)| ours);
        match value {
            None => out.push(name.to_string()),
            Some(value) if SWITCHES.contains(&name) => {
                if switch_value(name, value)? {
                    out.push(name.to_string());
                }
            }
            Some(value) => out.extend([name.to_string(), value.to_string()]),
        }
    }
    Ok(out)
}

/// `--switch=VALUE`, read as Go's strconv.ParseBool reads it.
fn switch_value(name: &str, value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!(
            "{name}={value}: {name} is a switch; write {name}, {name}=true or {name}=false"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::Cli;
    use argh::FromArgs;

    fn norm(args: &[&str]) -> Result<Vec<String>, String> {
        normalize(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn no_subcommand_is_serve() {
        assert_eq!(norm(&[]).unwrap(), ["serve"]);
        assert_eq!(
            norm(&["--port", "6000"]).unwrap(),
            ["serve", "--port", "6000"]
        );
        assert_eq!(norm(&["--help"]).unwrap(), ["--help"]);
        assert_eq!(norm(&["request", "--endpoint", "x"]).unwrap()[0], "request");
        assert_eq!(
            norm(&["check", "--json"]).unwrap(),
            ["serve", "--check", "--json"]
        );
        // Not a subcommand and not a flag: left for argh to refuse by name.
        assert_eq!(norm(&["serv"]).unwrap(), ["serv"]);
    }

    #[test]
    fn go_flags_in_both_spellings() {
        assert_eq!(
            norm(&[
                "--port=50001",
                "--ca-cert-path=/etc/talos-ca/tls.crt",
                "--ca-key-path",
                "/etc/talos-ca/tls.key",
                "--tls-cert-path=/s/tls.crt",
                "--tls-key-path=/s/tls.key",
                "--talos-token=abc.def",
            ])
            .unwrap(),
            [
                "serve",
                "--port",
                "50001",
                "--ca-cert",
                "/etc/talos-ca/tls.crt",
                "--ca-key",
                "/etc/talos-ca/tls.key",
                "--tls-cert",
                "/s/tls.crt",
                "--tls-key",
                "/s/tls.key",
                "--talos-token",
                "abc.def",
            ]
        );
        // A value may itself contain '='; only the first one splits.
        assert_eq!(
            norm(&["serve", "--audit-log=/a=b"]).unwrap(),
            ["serve", "--audit-log", "/a=b"]
        );
    }

    #[test]
    fn switches_with_values() {
        assert_eq!(norm(&["--fips=true"]).unwrap(), ["serve", "--fips"]);
        assert_eq!(norm(&["--fips=false"]).unwrap(), ["serve"]);
        let e = norm(&["--dev=maybe"]).unwrap_err();
        assert!(e.contains("--dev is a switch"), "{e}");
        // After `--` nothing is rewritten.
        assert_eq!(
            norm(&["serve", "--", "--a=b"]).unwrap(),
            ["serve", "--", "--a=b"]
        );
    }

    /// Every `--flag` argh lists in a subcommand's help: it is a switch
    /// exactly when SWITCHES says so (argh asks for a value otherwise).
    #[test]
    fn switch_list_matches_argh() {
        for sub in ["serve", "request", "import", "worker-config"] {
            let help = Cli::from_args(&["talos-csr-signer"], &[sub, "--help"])
                .err()
                .unwrap()
                .output;
            let flags: Vec<&str> = help
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .filter(|w| w.starts_with("--"))
                .map(|w| w.trim_end_matches(','))
                .collect();
            assert!(flags.len() > 2, "{sub}: {help}");
            for flag in flags {
                let wants_value = match Cli::from_args(&["talos-csr-signer"], &[sub, flag]) {
                    Ok(_) => false,
                    Err(e) => e.output.contains("No value provided"),
                };
                assert_eq!(
                    !wants_value,
                    SWITCHES.contains(&flag),
                    "{sub} {flag}: SWITCHES is out of date"
                );
            }
        }
    }

    #[test]
    fn unknown_flags_still_refused_by_name() {
        let args = norm(&["--no-such-flag=1"]).unwrap();
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let e = Cli::from_args(&["talos-csr-signer"], &argv).err().unwrap();
        assert!(e.output.contains("--no-such-flag"), "{}", e.output);
    }
}
