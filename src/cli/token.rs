//! The one rule for where the machine token comes from, for `serve` (the
//! token to accept) and `request` (the token to send):
//!
//! - a value: the flag (`--talos-token`, `--token`), else TALOS_TOKEN;
//! - a file: `--token-file`, else TALOS_TOKEN_FILE;
//! - a flag beats its variable (the Go signer reads its flags that way), but
//!   a value and a file together are ambiguous and refused;
//! - an empty variable counts as unset; an empty value that is all there is,
//!   is an error naming it.
//!
//! What comes after (a systemd credential, `--dev` material) is the
//! caller's, when this finds nothing.

use std::path::PathBuf;

use crate::signer::auth::TokenSource;

/// The token flags of one command: the value flag's name and value, and the
/// file flag's value.
pub struct TokenFlags {
    pub value: Option<(&'static str, String)>,
    pub file: Option<PathBuf>,
}

pub fn resolve(
    flags: TokenFlags,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<TokenSource>, String> {
    let set = |var: &str| env(var).filter(|v| !v.trim().is_empty());
    let value = match flags.value {
        Some((flag, v)) if v.trim().is_empty() => {
            return Err(format!(
                "{flag} is empty; set it to machine.token, or better use TALOS_TOKEN or \
                 --token-file"
            ))
        }
        Some((flag, v)) => {
            log::warn!(
                "{flag} puts the machine token on the command line, where every user of this \
                 machine can read it (ps, /proc/*/cmdline); set TALOS_TOKEN or --token-file \
                 instead"
            );
            Some((flag, v))
        }
        None => set("TALOS_TOKEN").map(|v| ("TALOS_TOKEN", v)),
    };
    let file = match flags.file {
        Some(f) => Some(("--token-file", f)),
        None => set("TALOS_TOKEN_FILE").map(|f| ("TALOS_TOKEN_FILE", PathBuf::from(f))),
    };
    match (value, file) {
        (Some((v, _)), Some((f, _))) => Err(format!(
            "both {v} and a token file ({f}) are set; use one of them"
        )),
        (Some((setting, v)), None) => Ok(Some(TokenSource::Value(v.trim().to_string(), setting))),
        (None, Some((_, f))) => Ok(Some(TokenSource::File(f))),
        (None, None) if env("TALOS_TOKEN").is_some() => Err(
            "TALOS_TOKEN is empty; set it to machine.token (trustdinfo.token in a `talosctl gen \
             secrets` bundle)"
                .to_string(),
        ),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        value: Option<&str>,
        file: Option<&str>,
        vars: &[(&str, &str)],
    ) -> Result<Option<TokenSource>, String> {
        let flags = TokenFlags {
            value: value.map(|v| ("--token", v.to_string())),
            file: file.map(PathBuf::from),
        };
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        resolve(flags, &|k| {
            vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn one_precedence_for_every_command() {
        let value = |v: &str, s: &'static str| Ok(Some(TokenSource::Value(v.into(), s)));
        let file = |f: &str| Ok(Some(TokenSource::File(f.into())));
        assert_eq!(
            run(Some("a.b"), None, &[("TALOS_TOKEN", "c.d")]),
            value("a.b", "--token")
        );
        assert_eq!(
            run(None, None, &[("TALOS_TOKEN", " c.d ")]),
            value("c.d", "TALOS_TOKEN")
        );
        assert_eq!(
            run(None, Some("/f"), &[("TALOS_TOKEN_FILE", "/g")]),
            file("/f")
        );
        assert_eq!(run(None, None, &[("TALOS_TOKEN_FILE", "/g")]), file("/g"));
        assert_eq!(run(None, Some("/f"), &[("TALOS_TOKEN", " ")]), file("/f"));
        assert_eq!(run(None, None, &[]), Ok(None));
        let err = |r: Result<Option<TokenSource>, String>| r.unwrap_err();
        assert!(err(run(Some("a"), Some("/f"), &[]))
            .contains("both --token and a token file (--token-file)"));
        assert!(err(run(None, Some("/f"), &[("TALOS_TOKEN", "x")]))
            .contains("both TALOS_TOKEN and a token file"));
        assert!(
            err(run(Some("a"), None, &[("TALOS_TOKEN_FILE", "/g")])).contains("(TALOS_TOKEN_FILE)")
        );
        assert!(err(run(Some(" "), None, &[])).contains("--token is empty"));
        assert!(err(run(None, None, &[("TALOS_TOKEN", "")])).contains("TALOS_TOKEN is empty"));
    }
}
