//! Typed, validated configuration of `serve`: no strings past this point.
//! `cli::resolve` builds it from flags, environment and default layouts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::pki::San;
use crate::signer::audit::Destination;
use crate::signer::snapshot::Sources;
use crate::signer::throttle::Limits;

pub const DEFAULT_PORT: u16 = 50001;

pub struct ServeConfig {
    pub listen: SocketAddr,
    /// The files and settings every snapshot is loaded from (reload too).
    pub sources: Sources,
    /// Which setting or default layout chose the CA files (startup log).
    pub ca_origin: String,
    /// Where the serving certificate comes from, and why (startup log).
    pub serving_origin: String,
    /// SANs for our serving certificate beyond loopback: IPs then DNS names.
    pub server_sans: Vec<San>,
    pub serving_cert_validity: Duration,
    pub workers: usize,
    /// gRPC completion queues (each one thread).
    pub cq_count: usize,
    /// Calls queued or being signed before new ones are refused.
    pub max_queue: usize,
    pub throttle: Limits,
    pub audit: Destination,
    /// How often input files are checked for changes; zero: only on SIGHUP.
    pub reload_interval: Duration,
    pub health_listen: Option<SocketAddr>,
    pub metrics_listen: Option<SocketAddr>,
    /// `--fips`: load the FIPS provider and refuse non-approved keys.
    pub fips: bool,
    /// `--dev`: which throwaway material to create before loading.
    pub dev: Option<DevPlan>,
}

pub struct DevPlan {
    pub dir: PathBuf,
    pub make_ca: bool,
    pub make_token: bool,
}

/// Parses Go-style durations made of `<number><unit>` parts: `24h`, `1h30m`,
/// `90s`, `7d`. Zero is refused: a certificate must live for some time.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration; write e.g. 24h, 90m, 1h30m or 7d");
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// Shows a duration the way `parse_duration` reads it.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        _ if s % 86_400 == 0 && s >= 7 * 86_400 => format!("{}d", s / 86_400),
        _ if s % 3600 == 0 => format!("{}h", s / 3600),
        _ if s % 60 == 0 => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        for bad in [
            "",
            "0h",
            "24",
            "h",
            "1y",
            "-1h",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(format_duration(Duration::from_secs(86_400)), "24h");
        assert_eq!(format_duration(Duration::from_secs(604_800)), "7d");
        assert_eq!(format_duration(Duration::from_secs(5400)), "90m");
    }
}
