//! What may be signed: SAN rules, key types, CSR size. Pure functions over
//! already-parsed values, so every rule is table-tested here.
//!
//! Two kinds of refusal: INVALID_ARGUMENT for requests no signer should accept
//! (too big, too many names, a weak or unknown key), PERMISSION_DENIED for
//! requests this operator has chosen not to allow (names outside the allowed
//! ranges, a caller asking for an address that is not its own).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::pki::keys::{KeyType, MAX_RSA_BITS, MIN_RSA_BITS};
use crate::pki::{names, San};

/// Defaults: a Talos worker's CSR is < 2 KiB with a handful of names.
pub const DEFAULT_MAX_SANS: usize = 64;
pub const DEFAULT_MAX_CSR_BYTES: usize = 16 * 1024;

#[derive(Clone, Debug)]
pub struct Policy {
    /// `None`: any IP SAN. Loopback SANs are always allowed (workers add 127.0.0.1).
    pub allowed_ip_sans: Option<Vec<IpNet>>,
    /// `None`: any DNS SAN.
    pub allowed_dns_sans: Option<Vec<DnsPattern>>,
    /// The caller's address must be one of the CSR's IP SANs.
    pub peer_ip_must_match: bool,
    pub max_sans: usize,
    pub max_csr_bytes: usize,
    pub key_types: Vec<KeyClass>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allowed_ip_sans: None,
            allowed_dns_sans: None,
            peer_ip_must_match: false,
            max_sans: DEFAULT_MAX_SANS,
            max_csr_bytes: DEFAULT_MAX_CSR_BYTES,
            key_types: KeyClass::DEFAULT.to_vec(),
        }
    }
}

/// Why a request was refused; `kind` is a stable label for logs and metrics.
#[derive(Debug, PartialEq, Eq)]
pub struct Denial {
    pub kind: &'static str,
    pub forbidden: bool,
    pub reason: String,
}

fn invalid(kind: &'static str, reason: String) -> Denial {
    Denial {
        kind,
        forbidden: false,
        reason,
    }
}

fn forbidden(kind: &'static str, reason: String) -> Denial {
    Denial {
        kind,
        forbidden: true,
        reason,
    }
}

impl Policy {
    pub fn check_csr_size(&self, len: usize) -> Result<(), Denial> {
        if len > self.max_csr_bytes {
            return Err(invalid(
                "csr_size",
                format!(
                    "csr is {len} bytes; the limit is {} (--max-csr-bytes)",
                    self.max_csr_bytes
                ),
            ));
        }
        Ok(())
    }

    /// Whether a CSR key of this type may be certified.
    pub fn check_key(&self, key: KeyType) -> Result<(), Denial> {
        match key {
            KeyType::Rsa(bits) if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) => Err(invalid(
                "key_type",
                format!(
                    "CSR key is RSA-{bits}; RSA keys must have {MIN_RSA_BITS} to {MAX_RSA_BITS} bits"
                ),
            )),
            kt if self.key_types.iter().any(|c| c.matches(kt)) => Ok(()),
            kt => Err(self.refuse_key(&kt.to_string())),
        }
    }

    /// The refusal of a CSR key type, `what` naming it (also for the types
    /// we never certify: Ed448, DSA, brainpool curves…).
    pub fn refuse_key(&self, what: &str) -> Denial {
        let allowed: Vec<&str> = self.key_types.iter().map(|k| k.name()).collect();
        invalid(
            "key_type",
            format!(
                "CSR key is {what}; allowed: {} (--allowed-key-types)",
                allowed.join(", ")
            ),
        )
    }

    /// The policy in one line, for the startup log and `check`.
    pub fn describe(&self) -> String {
        fn list<T: fmt::Display>(v: &Option<Vec<T>>) -> String {
            v.as_ref().map_or("any".to_string(), |v| {
                v.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            })
        }
        let keys: Vec<&str> = self.key_types.iter().map(|k| k.name()).collect();
        format!(
            "ip_sans={} dns_sans={} peer_ip_must_match={} max_sans={} max_csr_bytes={} key_types={}",
            list(&self.allowed_ip_sans),
            list(&self.allowed_dns_sans),
            self.peer_ip_must_match,
            self.max_sans,
            self.max_csr_bytes,
            keys.join(","),
        )
    }

    /// The SAN rules, in the order an operator reads them in the README.
    pub fn check_sans(&self, sans: &[San], peer: Option<IpAddr>) -> Result<(), Denial> {
        if sans.len() > self.max_sans {
            return Err(invalid(
                "max_sans",
                format!(
                    "CSR has {} SANs; the limit is {} (--max-sans)",
                    sans.len(),
                    self.max_sans
                ),
            ));
        }
        for san in sans {
            match san {
                San::Ip(ip) => self.check_ip_san(*ip)?,
                San::Dns(name) => self.check_dns_san(name)?,
            }
        }
        if self.peer_ip_must_match {
            self.check_peer(sans, peer)?;
        }
        Ok(())
    }

    fn check_ip_san(&self, ip: IpAddr) -> Result<(), Denial> {
        let Some(nets) = &self.allowed_ip_sans else {
            return Ok(());
        };
        let ip = ip.to_canonical();
        if ip.is_loopback() || nets.iter().any(|n| n.contains(ip)) {
            return Ok(());
        }
        Err(forbidden(
            "ip_san",
            format!("IP SAN {ip} is outside --allowed-ip-sans"),
        ))
    }

    fn check_dns_san(&self, name: &str) -> Result<(), Denial> {
        let Some(patterns) = &self.allowed_dns_sans else {
            return Ok(());
        };
        if patterns.iter().any(|p| p.matches(name)) {
            return Ok(());
        }
        Err(forbidden(
            "dns_san",
            format!("DNS SAN {name} is outside --allowed-dns-sans"),
        ))
    }

    /// The caller proves nothing about names, but its source address is hard to
    /// forge on TCP: a worker may ask for its own address, not a neighbour's.
    fn check_peer(&self, sans: &[San], peer: Option<IpAddr>) -> Result<(), Denial> {
        let Some(peer) = peer.map(|p| p.to_canonical()) else {
            return Err(forbidden(
                "peer_ip",
                "the caller's address is unknown".to_string(),
            ));
        };
        let listed = sans
            .iter()
            .any(|s| matches!(s, San::Ip(ip) if ip.to_canonical() == peer));
        if listed {
            Ok(())
        } else {
            Err(forbidden(
                "peer_ip",
                format!(
                    "caller address {peer} is not among the CSR's IP SANs (--peer-ip-must-match)"
                ),
            ))
        }
    }
}

/// The signing policy as configured; completed with the machine CA's key
/// type when the snapshot loads.
#[derive(Clone, Debug, Default)]
pub struct PolicyConfig {
    pub allowed_ip_sans: Option<Vec<IpNet>>,
    pub allowed_dns_sans: Option<Vec<DnsPattern>>,
    pub peer_ip_must_match: bool,
    pub max_sans: usize,
    pub max_csr_bytes: usize,
    /// `None`: the defaults plus the machine CA's own type.
    pub key_types: Option<Vec<KeyClass>>,
}

impl PolicyConfig {
    /// Workers make their key the type of their CA, so the CA's own type is
    /// always allowed unless the operator lists key types explicitly.
    /// `no_ed25519` (FIPS mode without --fips-allow-ed25519) takes Ed25519
    /// out, and refuses a list that names it.
    pub fn resolve(&self, ca_key: KeyType, no_ed25519: bool) -> Result<Policy, String> {
        let listed = self.key_types.as_ref();
        if no_ed25519 && listed.is_some_and(|t| t.contains(&KeyClass::Ed25519)) {
            return Err(format!(
                "ALLOWED_KEY_TYPES lists ed25519, refused in FIPS mode: {}",
                crate::pki::fips::ED25519_REFUSED
            ));
        }
        let mut key_types = listed.cloned().unwrap_or_else(|| {
            let mut types = KeyClass::DEFAULT.to_vec();
            let own = KeyClass::of(ca_key);
            if !types.contains(&own) {
                types.push(own);
            }
            types
        });
        if no_ed25519 {
            key_types.retain(|k| *k != KeyClass::Ed25519);
        }
        Ok(Policy {
            allowed_ip_sans: self.allowed_ip_sans.clone(),
            allowed_dns_sans: self.allowed_dns_sans.clone(),
            peer_ip_must_match: self.peer_ip_must_match,
            max_sans: self.max_sans,
            max_csr_bytes: self.max_csr_bytes,
            key_types,
        })
    }
}

/// An address range: `10.0.0.0/8`, `fd00::/64`, or a single address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[full] & mask == b[full] & mask
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad =
            || format!("{s:?} is not an IP range; write e.g. 10.0.0.0/8, fd00::/64 or 10.1.2.3");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse::<IpAddr>().map_err(|_| bad())?.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        // Host bits set (10.1.2.3/8) is almost always a typo for something else.
        if mask_host_bits(addr, prefix) != addr {
            return Err(format!(
                "{s:?} has host bits set; did you mean {}/{prefix}?",
                mask_host_bits(addr, prefix)
            ));
        }
        Ok(IpNet { addr, prefix })
    }
}

fn mask_host_bits(addr: IpAddr, prefix: u8) -> IpAddr {
    fn mask<const N: usize>(mut b: [u8; N], prefix: u8) -> [u8; N] {
        for (i, byte) in b.iter_mut().enumerate() {
            let keep = (usize::from(prefix)).saturating_sub(i * 8).min(8);
            *byte &= if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
        }
        b
    }
    match addr {
        IpAddr::V4(v4) => IpAddr::from(mask(v4.octets(), prefix)),
        IpAddr::V6(v6) => IpAddr::from(mask(v6.octets(), prefix)),
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// `node-1.example.org` (exact) or `*.example.org` (any name below it, at any
/// depth). Case-insensitive, as DNS is. The name, or the suffix after `*.`,
/// follows the one host-name rule (`pki::names`); `*.` is the only place a
/// `*` may appear, and it never lets a wildcard certificate through, since no
/// certified name may hold one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsPattern {
    Exact(String),
    Below(String),
}

impl DnsPattern {
    pub fn matches(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        match self {
            DnsPattern::Exact(n) => name == *n,
            DnsPattern::Below(suffix) => {
                name.len() > suffix.len() + 1
                    && name.ends_with(suffix.as_str())
                    && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
            }
        }
    }
}

impl FromStr for DnsPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        let (below, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest.to_string()),
            None => (false, lower),
        };
        names::host_name(name.as_bytes())
            .map_err(|e| format!("{s:?} is not a DNS name or *.suffix pattern: {e}"))?;
        Ok(if below {
            DnsPattern::Below(name)
        } else {
            DnsPattern::Exact(name)
        })
    }
}

impl fmt::Display for DnsPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsPattern::Exact(n) => f.write_str(n),
            DnsPattern::Below(n) => write!(f, "*.{n}"),
        }
    }
}

/// A CSR key class operators can allow: `ed25519`, `ecdsa-p256`, `ecdsa-p384`,
/// `ecdsa-p521`, `rsa` (always at least 2048 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyClass {
    Ed25519,
    EcP256,
    EcP384,
    EcP521,
    Rsa,
}

impl KeyClass {
    /// Talos worker keys follow their CA's type; these cover Talos's default
    /// (Ed25519) and the usual custom PKIs.
    pub const DEFAULT: [KeyClass; 4] = [
        KeyClass::Ed25519,
        KeyClass::EcP256,
        KeyClass::EcP384,
        KeyClass::Rsa,
    ];

    pub fn of(kt: KeyType) -> KeyClass {
        match kt {
            KeyType::Ed25519 => KeyClass::Ed25519,
            KeyType::EcP256 => KeyClass::EcP256,
            KeyType::EcP384 => KeyClass::EcP384,
            KeyType::EcP521 => KeyClass::EcP521,
            KeyType::Rsa(_) => KeyClass::Rsa,
        }
    }

    pub fn matches(self, kt: KeyType) -> bool {
        KeyClass::of(kt) == self
    }

    pub fn name(self) -> &'static str {
        match self {
            KeyClass::Ed25519 => "ed25519",
            KeyClass::EcP256 => "ecdsa-p256",
            KeyClass::EcP384 => "ecdsa-p384",
            KeyClass::EcP521 => "ecdsa-p521",
            KeyClass::Rsa => "rsa",
        }
    }
}

impl FromStr for KeyClass {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            KeyClass::Ed25519,
            KeyClass::EcP256,
            KeyClass::EcP384,
            KeyClass::EcP521,
            KeyClass::Rsa,
        ]
        .into_iter()
        .find(|k| k.name() == s.trim().to_ascii_lowercase())
        .ok_or_else(|| {
            format!(
                "{s:?} is not a key type; use ed25519, ecdsa-p256, ecdsa-p384, ecdsa-p521 or rsa"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn sans(list: &[&str]) -> Vec<San> {
        list.iter()
            .map(|s| {
                s.parse()
                    .map(San::Ip)
                    .unwrap_or_else(|_| San::Dns(s.to_string()))
            })
            .collect()
    }

    #[test]
    fn ip_nets() {
        let cases = [
            ("10.0.0.0/8", "10.255.1.2", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("10.1.2.3", "10.1.2.3", true),
            ("10.1.2.3", "10.1.2.4", false),
            ("192.168.0.0/23", "192.168.1.255", true),
            ("192.168.0.0/23", "192.168.2.0", false),
            ("fd00::/64", "fd00::1", true),
            ("fd00::/64", "fd00:0:0:1::1", false),
            ("10.0.0.0/8", "::ffff:10.0.0.1", true),
            ("0.0.0.0/0", "1.2.3.4", true),
            ("0.0.0.0/0", "::1", false),
        ];
        for (net, addr, want) in cases {
            let n: IpNet = net.parse().unwrap();
            assert_eq!(n.contains(ip(addr)), want, "{net} ∋ {addr}");
        }
        for bad in [
            "10.0.0.0/33",
            "10.0.0/8",
            "cp.example",
            "fd00::/129",
            "10.1.2.3/8",
            "",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad:?} accepted");
        }
        assert!("10.1.2.3/8"
            .parse::<IpNet>()
            .unwrap_err()
            .contains("10.0.0.0/8"));
    }

    #[test]
    fn dns_patterns() {
        let cases = [
            ("node-1.example.org", "node-1.example.org", true),
            ("node-1.example.org", "NODE-1.example.org", true),
            ("node-1.example.org", "node-2.example.org", false),
            ("*.example.org", "a.example.org", true),
            ("*.example.org", "a.b.example.org", true),
            ("*.example.org", "example.org", false),
            ("*.example.org", "badexample.org", false),
            ("*.example.org", ".example.org", false),
        ];
        for (pat, name, want) in cases {
            let p: DnsPattern = pat.parse().unwrap();
            assert_eq!(p.matches(name), want, "{pat} ~ {name}");
        }
        for bad in [
            "",
            "*.",
            "a..b",
            "*",
            "a b",
            "**.x",
            "*.*.x",
            "a.*.x",
            "*.10.0.0.1",
        ] {
            assert!(bad.parse::<DnsPattern>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn san_rules() {
        let mut p = Policy {
            allowed_ip_sans: Some(vec!["10.5.0.0/16".parse().unwrap()]),
            allowed_dns_sans: Some(vec![
                "*.nodes.example".parse().unwrap(),
                "w1".parse().unwrap(),
            ]),
            ..Policy::default()
        };
        let table: [(&[&str], Result<(), &str>); 6] = [
            (
                &["10.5.0.7", "127.0.0.1", "::1", "w1", "a.nodes.example"],
                Ok(()),
            ),
            (&["10.6.0.7"], Err("IP SAN 10.6.0.7 is outside")),
            (&["10.5.0.7", "w2"], Err("DNS SAN w2 is outside")),
            (&["fd00::7"], Err("IP SAN fd00::7")),
            (&["::ffff:10.5.1.1"], Ok(())),
            (&[], Ok(())),
        ];
        for (list, want) in table {
            let got = p.check_sans(&sans(list), None);
            match want {
                Ok(()) => assert_eq!(got, Ok(()), "{list:?}"),
                Err(text) => {
                    let d = got.unwrap_err();
                    assert!(d.forbidden && d.reason.contains(text), "{list:?}: {d:?}");
                }
            }
        }
        p.max_sans = 2;
        let d = p.check_sans(&sans(&["w1", "w1", "w1"]), None).unwrap_err();
        assert_eq!((d.kind, d.forbidden), ("max_sans", false));
    }

    #[test]
    fn peer_binding() {
        let p = Policy {
            peer_ip_must_match: true,
            ..Policy::default()
        };
        let s = sans(&["10.0.0.5", "127.0.0.1", "w1"]);
        assert_eq!(p.check_sans(&s, Some(ip("10.0.0.5"))), Ok(()));
        assert_eq!(
            p.check_sans(&s, Some(ip("::ffff:10.0.0.5"))),
            Ok(()),
            "mapped peer"
        );
        assert_eq!(p.check_sans(&s, Some(ip("127.0.0.1"))), Ok(()));
        let d = p.check_sans(&s, Some(ip("10.0.0.6"))).unwrap_err();
        assert_eq!(d.kind, "peer_ip");
        assert!(d.reason.contains("10.0.0.6"));
        assert!(p.check_sans(&s, None).is_err());
        assert!(p.check_sans(&sans(&["w1"]), Some(ip("10.0.0.5"))).is_err());
        // Off by default.
        assert_eq!(
            Policy::default().check_sans(&sans(&["w1"]), Some(ip("10.0.0.9"))),
            Ok(())
        );
    }

    #[test]
    fn key_types_and_size() {
        let p = Policy::default();
        for ok in [
            KeyType::Ed25519,
            KeyType::EcP256,
            KeyType::EcP384,
            KeyType::Rsa(2048),
            KeyType::Rsa(4096),
        ] {
            assert_eq!(p.check_key(ok), Ok(()), "{ok}");
        }
        for bad in [KeyType::EcP521, KeyType::Rsa(1024), KeyType::Rsa(16384)] {
            let d = p.check_key(bad).unwrap_err();
            assert_eq!((d.kind, d.forbidden), ("key_type", false));
        }
        let d = p.refuse_key("Ed448");
        assert_eq!(
            d.reason,
            "CSR key is Ed448; allowed: ed25519, ecdsa-p256, ecdsa-p384, rsa (--allowed-key-types)"
        );
        let only_ec = Policy {
            key_types: vec![KeyClass::EcP256],
            ..Policy::default()
        };
        assert!(only_ec
            .check_key(KeyType::Ed25519)
            .unwrap_err()
            .reason
            .contains("allowed: ecdsa-p256"));
        assert!(p.check_csr_size(16 * 1024).is_ok());
        assert_eq!(
            p.check_csr_size(16 * 1024 + 1).unwrap_err().kind,
            "csr_size"
        );
    }
}
