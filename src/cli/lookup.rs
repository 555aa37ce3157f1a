//! Flag values with their environment fallbacks, for `resolve`.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::values;
use crate::server::config::parse_duration;

/// Flag values with their environment fallbacks: a flag wins; an empty
/// variable counts as unset. `env` is `std::env::var` in production and a
/// table in tests.
pub(crate) struct Lookup<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// `Path::exists` in production: the default file layouts are chosen by
    /// which files are there.
    pub exists: &'a dyn Fn(&Path) -> bool,
}

impl Lookup<'_> {
    pub fn text(&self, flag: Option<String>, var: &str) -> Option<String> {
        flag.or_else(|| self.var(var))
    }

    /// An environment variable; empty counts as unset.
    pub fn var(&self, var: &str) -> Option<String> {
        (self.env)(var).filter(|v| !v.trim().is_empty())
    }

    pub fn path(&self, flag: Option<PathBuf>, var: &str) -> Option<PathBuf> {
        self.text(flag.map(|p| p.display().to_string()), var)
            .map(PathBuf::from)
    }

    /// Like `path`, with the name of the setting that gave it, for the
    /// startup log.
    pub fn named_path(
        &self,
        flag: Option<PathBuf>,
        flag_name: &str,
        var: &str,
    ) -> Option<(PathBuf, String)> {
        match flag {
            Some(p) => Some((p, flag_name.to_string())),
            None => self.var(var).map(|v| (PathBuf::from(v), var.to_string())),
        }
    }

    pub fn duration(
        &self,
        flag: Option<String>,
        var: &str,
        default: &str,
    ) -> Result<Duration, String> {
        let text = self.text(flag, var).unwrap_or_else(|| default.to_string());
        parse_duration(&text).map_err(|e| format!("{var}: {e}"))
    }

    /// Like `duration`, but `0` (off) is allowed.
    pub fn interval(
        &self,
        flag: Option<String>,
        var: &str,
        default: &str,
    ) -> Result<Duration, String> {
        match self.text(flag, var) {
            Some(t) if t.trim() == "0" => Ok(Duration::ZERO),
            other => self.duration(other, var, default),
        }
    }

    pub fn number(
        &self,
        flag: Option<String>,
        var: &str,
        default: usize,
        range: RangeInclusive<usize>,
    ) -> Result<usize, String> {
        let Some(text) = self.text(flag, var) else {
            return Ok(default);
        };
        match text.trim().parse::<usize>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(format!(
                "{var}: {text:?} is not a number from {} to {}",
                range.start(),
                range.end()
            )),
        }
    }

    pub fn list<T: std::str::FromStr<Err = String>>(
        &self,
        flag: Option<String>,
        var: &str,
    ) -> Result<Option<Vec<T>>, String> {
        self.text(flag, var)
            .map(|t| values::parse_list(var, &t))
            .transpose()
    }

    /// A switch, or its variable set to 1/true/yes (0/false/no: off).
    pub fn switch(&self, flag: bool, var: &str) -> Result<bool, String> {
        match (self.env)(var)
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            _ if flag => Ok(true),
            None | Some("") | Some("0") | Some("false") | Some("no") => Ok(false),
            Some("1") | Some("true") | Some("yes") => Ok(true),
            Some(other) => Err(format!("{var}: {other:?} is not true or false")),
        }
    }

    pub fn addr(&self, flag: Option<String>, var: &str) -> Result<Option<SocketAddr>, String> {
        self.text(flag, var)
            .map(|a| {
                a.trim().parse().map_err(|_| {
                    format!("{var}: {a:?} is not IP:PORT; write e.g. 0.0.0.0:9090 or [::]:9090")
                })
            })
            .transpose()
    }
}
