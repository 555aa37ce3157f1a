//! Typed, validated configuration: no strings past this point.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::ops::audit::Destination;
use crate::pki::San;
use crate::policy::{DnsPattern, IpNet, KeyClass};
use crate::throttle::Limits;

pub const DEFAULT_PORT: u16 = 50001;

/// Where the accepted machine token comes from.
pub enum TokenSource {
    /// The token itself and the setting that gave it: TALOS_TOKEN, or
    /// `--talos-token` (accepted for the Go signer's manifests; argv is
    /// world-readable, so it warns).
    Value(String, &'static str),
    File(PathBuf),
}

pub struct ServeConfig {
    pub listen: SocketAddr,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    /// Which setting or default layout chose the CA files (startup log).
    pub ca_origin: String,
    /// Where the serving certificate comes from, and why (startup log).
    pub serving_origin: String,
    pub token: TokenSource,
    pub accepted_cas: Vec<PathBuf>,
    /// SANs for our serving certificate beyond loopback: IPs then DNS names.
    pub server_sans: Vec<San>,
    pub cert_validity: Duration,
    pub serving_cert_validity: Duration,
    /// `--tls-cert` / `--tls-key`: serve these instead of a generated cert.
    pub external_tls: Option<(PathBuf, PathBuf)>,
    pub workers: usize,
    /// gRPC completion queues (each one thread).
    pub cq_count: usize,
    /// Calls queued or being signed before new ones are refused.
    pub max_queue: usize,
    pub policy: PolicyConfig,
    pub throttle: Limits,
    pub audit: Destination,
    /// How often input files are checked for changes; zero: only on SIGHUP.
    pub reload_interval: Duration,
    pub health_listen: Option<SocketAddr>,
    pub metrics_listen: Option<SocketAddr>,
    /// `--fips`: load the FIPS provider and refuse non-approved keys.
    pub fips: bool,
    /// `--fips-allow-ed25519`: for modules that approve EdDSA.
    pub fips_allow_ed25519: bool,
    /// `--dev`: which throwaway material to create before loading.
    pub dev: Option<DevPlan>,
}

/// The signing policy as configured; completed with the CA's key type at load.
pub struct PolicyConfig {
    pub allowed_ip_sans: Option<Vec<IpNet>>,
    pub allowed_dns_sans: Option<Vec<DnsPattern>>,
    pub peer_ip_must_match: bool,
    pub max_sans: usize,
    pub max_csr_bytes: usize,
    /// `None`: the defaults plus the machine CA's own type.
    pub key_types: Option<Vec<KeyClass>>,
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

/// Comma-separated IPs, whitespace trimmed; anything that is not an IP is an
/// error rather than being dropped, since a missing SAN breaks workers later.
pub fn parse_ip_list(what: &str, text: &str) -> Result<Vec<IpAddr>, String> {
    list_items(text)
        .map(|item| {
            item.parse()
                .map_err(|_| format!("{what}: {item:?} is not an IP address"))
        })
        .collect()
}

/// Comma-separated DNS names for our serving certificate.
pub fn parse_dns_list(what: &str, text: &str) -> Result<Vec<String>, String> {
    list_items(text)
        .map(|item| {
            if item.parse::<IpAddr>().is_ok() {
                return Err(format!(
                    "{what}: {item:?} is an IP address; put it in SERVER_IPS / --server-ips"
                ));
            }
            let ok = item.len() <= 253
                && item
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'*'));
            if ok {
                Ok(item.to_string())
            } else {
                Err(format!("{what}: {item:?} is not a valid DNS name"))
            }
        })
        .collect()
}

/// Comma-separated values parsed with `FromStr`, each error naming the setting.
pub fn parse_list<T: std::str::FromStr<Err = String>>(
    what: &str,
    text: &str,
) -> Result<Vec<T>, String> {
    list_items(text)
        .map(|item| item.parse().map_err(|e| format!("{what}: {e}")))
        .collect()
}

pub fn list_items(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty())
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

    #[test]
    fn ip_lists_trim_and_refuse_non_ips() {
        let ips = parse_ip_list("SERVER_IPS", " 10.0.0.1 , fd00::1,").unwrap();
        assert_eq!(
            ips,
            vec![
                "10.0.0.1".parse::<IpAddr>().unwrap(),
                "fd00::1".parse().unwrap()
            ]
        );
        let err = parse_ip_list("SERVER_IPS", "10.0.0.1,cp.example").unwrap_err();
        assert_eq!(err, "SERVER_IPS: \"cp.example\" is not an IP address");
        assert!(parse_ip_list("SERVER_IPS", "10.0.0.300").is_err());
    }

    #[test]
    fn dns_lists_refuse_ips_and_junk() {
        assert_eq!(
            parse_dns_list("x", "cp.example, b").unwrap(),
            vec!["cp.example", "b"]
        );
        assert!(parse_dns_list("x", "10.0.0.1")
            .unwrap_err()
            .contains("SERVER_IPS"));
        assert!(parse_dns_list("x", "a b").is_err());
    }
}
