//! The one rule for the names a certificate of ours may carry: a DNS SAN is a
//! plain host name, an IP SAN an address someone can dial. Every caller uses
//! these functions: a worker's CSR, the operator's SERVER_DNS_NAMES and
//! SERVER_IPS, the suffix of an `--allowed-dns-sans` pattern, and
//! `worker-config --cert-san`/`--dns-domain`. The one difference between who
//! gives a name is the pattern form `*.suffix`, which exists only in
//! `--allowed-dns-sans` (signer::policy), and means "names below suffix",
//! never a wildcard certificate.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::printable;

/// Longest DNS name (RFC 1035 presentation form, no trailing dot).
const MAX_NAME: usize = 253;
/// Longest label (RFC 1035).
const MAX_LABEL: usize = 63;

/// Why a name was refused; the text completes "DNS name \"x\" ...".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameError {
    name: String,
    why: &'static str,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\" {}", self.name, self.why)
    }
}

fn refuse(bytes: &[u8], why: &'static str) -> NameError {
    NameError {
        name: printable(&bytes[..bytes.len().min(64)]),
        why,
    }
}

/// A host name as a DNS SAN: letters, digits, `-` and `_` in dot-separated
/// labels of 1 to 63 octets that neither start nor end with `-`, at most 253
/// octets in all. Refused, each for its own reason:
/// - any `*`: a Talos worker names itself; a wildcard certificate would be
///   valid for every node below it;
/// - a last label of digits only (`10.0.0.1`, `host.123`): clients match an
///   address against IP SANs only, so such a name can never be dialled;
///   addresses belong in IP SANs;
/// - empty labels (`a..b`, a trailing dot), which Go's x509 and webpki refuse.
pub fn host_name(bytes: &[u8]) -> Result<&str, NameError> {
    if bytes.is_empty() {
        return Err(refuse(bytes, "is empty"));
    }
    if bytes.len() > MAX_NAME {
        return Err(refuse(bytes, "is longer than 253 characters"));
    }
    if bytes.contains(&b'*') {
        return Err(refuse(
            bytes,
            "is a wildcard; only exact host names are certified",
        ));
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(refuse(
            bytes,
            "is not a host name (letters, digits, '-', '_' and '.' only)",
        ));
    }
    let mut last = &bytes[..0];
    for label in bytes.split(|b| *b == b'.') {
        if label.is_empty() {
            return Err(refuse(bytes, "has an empty label"));
        }
        if label.len() > MAX_LABEL {
            return Err(refuse(bytes, "has a label longer than 63 characters"));
        }
        if label.starts_with(b"-") || label.ends_with(b"-") {
            return Err(refuse(bytes, "has a label that starts or ends with '-'"));
        }
        last = label;
    }
    if last.iter().all(u8::is_ascii_digit) {
        return Err(refuse(
            bytes,
            "looks like an IP address (its last label is all digits); addresses go in IP SANs",
        ));
    }
    // Checked ASCII above.
    std::str::from_utf8(bytes).map_err(|_| refuse(bytes, "is not ASCII"))
}

/// An IP SAN's octets: 4 (IPv4) or 16 (IPv6), naming an address a client
/// could dial. The unspecified and multicast addresses name no host.
pub fn ip_address(bytes: &[u8]) -> Result<IpAddr, String> {
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::from(
            <[u8; 4]>::try_from(bytes).expect("4 octets"),
        )),
        16 => IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(bytes).expect("16 octets"),
        )),
        n => {
            return Err(format!(
                "IP SAN has {n} bytes; an IP address has 4 (IPv4) or 16 (IPv6)"
            ))
        }
    };
    usable_ip(ip)
}

/// Refuses addresses no certificate should name (also for SERVER_IPS).
pub fn usable_ip(ip: IpAddr) -> Result<IpAddr, String> {
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    if ip.is_unspecified() || ip.is_multicast() || broadcast {
        return Err(format!(
            "IP SAN {ip} is an unspecified, multicast or broadcast address, not a host"
        ));
    }
    Ok(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        let long_label = format!("{}.example", "a".repeat(64));
        let long_name = ["abcdefghi"; 26].join(".");
        let table: [(&str, Result<(), &str>); 24] = [
            ("worker-1", Ok(())),
            ("worker-1.example", Ok(())),
            ("Worker-1.Example.ORG", Ok(())),
            ("_srv.example", Ok(())),
            ("a", Ok(())),
            ("1worker.example", Ok(())),
            ("host.example1", Ok(())),
            ("", Err("is empty")),
            ("*", Err("wildcard")),
            ("*.nodes.example", Err("wildcard")),
            ("a.*.example", Err("wildcard")),
            ("w*.example", Err("wildcard")),
            ("a..b", Err("empty label")),
            (".a", Err("empty label")),
            ("a.b.", Err("empty label")),
            ("-a.example", Err("starts or ends with '-'")),
            ("a-.example", Err("starts or ends with '-'")),
            ("a b", Err("not a host name")),
            ("a\0b", Err("not a host name")),
            ("ünï.example", Err("not a host name")),
            ("10.0.0.1", Err("looks like an IP address")),
            ("0.0.0.0", Err("looks like an IP address")),
            ("host.123", Err("looks like an IP address")),
            ("a:b", Err("not a host name")),
        ];
        for (name, want) in table {
            match (host_name(name.as_bytes()), want) {
                (Ok(got), Ok(())) => assert_eq!(got, name),
                (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{name:?}: {e}"),
                (got, want) => panic!("{name:?}: got {got:?}, want {want:?}"),
            }
        }
        assert!(host_name(long_label.as_bytes()).is_err());
        assert!(host_name(long_name.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("253"));
        assert!(host_name(b"n\xffde")
            .unwrap_err()
            .to_string()
            .contains("\\xff"));
    }

    #[test]
    fn ip_addresses() {
        assert_eq!(ip_address(&[10, 0, 0, 1]), Ok("10.0.0.1".parse().unwrap()));
        assert_eq!(
            ip_address(&[127, 0, 0, 1]),
            Ok("127.0.0.1".parse().unwrap())
        );
        let v6: [u8; 16] = "fd00::7".parse::<Ipv6Addr>().unwrap().octets();
        assert_eq!(ip_address(&v6), Ok("fd00::7".parse().unwrap()));
        for bad in [&[][..], &[1, 2, 3], &[10, 0, 0, 1, 9], &[0u8; 15]] {
            assert!(ip_address(bad).unwrap_err().contains("an IP address has 4"));
        }
        for bad in [[0, 0, 0, 0], [255, 255, 255, 255], [224, 0, 0, 1]] {
            assert!(
                ip_address(&bad).unwrap_err().contains("not a host"),
                "{bad:?}"
            );
        }
        assert!(ip_address(&[0u8; 16]).is_err());
        let mcast: [u8; 16] = "ff02::1".parse::<Ipv6Addr>().unwrap().octets();
        assert!(ip_address(&mcast).is_err());
    }
}
