//! Values as operators write them in flags and environment variables:
//! comma-separated lists of addresses, names and other settings. Each error
//! names the setting it came from.

use std::net::IpAddr;

use crate::pki::names;

/// Comma-separated IPs, whitespace trimmed; anything that is not an address a
/// certificate may name is an error rather than being dropped, since a
/// missing SAN breaks workers later.
pub fn parse_ip_list(what: &str, text: &str) -> Result<Vec<IpAddr>, String> {
    list_items(text)
        .map(|item| {
            let ip: IpAddr = item
                .parse()
                .map_err(|_| format!("{what}: {item:?} is not an IP address"))?;
            names::usable_ip(ip).map_err(|e| format!("{what}: {e}"))
        })
        .collect()
}

/// Comma-separated DNS names for a certificate, by the one host-name rule
/// (`pki::names`), so the serving certificate never names what a worker's
/// certificate may not.
pub fn parse_dns_list(what: &str, text: &str) -> Result<Vec<String>, String> {
    list_items(text)
        .map(|item| {
            if item.parse::<IpAddr>().is_ok() {
                return Err(format!(
                    "{what}: {item:?} is an IP address; put it in SERVER_IPS / --server-ips"
                ));
            }
            names::host_name(item.as_bytes())
                .map(str::to_string)
                .map_err(|e| format!("{what}: {e}"))
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
        assert!(parse_ip_list("SERVER_IPS", "0.0.0.0")
            .unwrap_err()
            .contains("not a host"));
    }

    #[test]
    fn dns_lists_follow_the_one_host_name_rule() {
        assert_eq!(
            parse_dns_list("x", "cp.example, b").unwrap(),
            vec!["cp.example", "b"]
        );
        assert!(parse_dns_list("x", "10.0.0.1")
            .unwrap_err()
            .contains("SERVER_IPS"));
        assert!(parse_dns_list("x", "a b").is_err());
        assert!(parse_dns_list("SERVER_DNS_NAMES", "*.cp.example")
            .unwrap_err()
            .starts_with("SERVER_DNS_NAMES: \"*.cp.example\" is a wildcard"));
        assert!(parse_dns_list("x", "cp..example").is_err());
    }
}
