//! Failed-token throttling per source address. After `limit` failures within
//! `window`, wrong tokens from that address are refused for `cooldown` before
//! any queueing, CSR parsing or signing; accepted tokens are still served
//! (many workers share one address behind NAT). The table is bounded: a
//! flood of addresses evicts the oldest.
//!
//! IPv6 callers are tracked per /64, the smallest block one host usually gets;
//! per-address tracking would let one host rotate through 2^64 addresses.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub limit: u32,
    pub window: Duration,
    pub cooldown: Duration,
    pub max_tracked: usize,
}

impl Default for Limits {
    /// A worker with a wrong token retries about 6 times a minute; a correct
    /// one never fails and is never throttled. 20 failures a minute keeps a
    /// few misconfigured workers behind one address out of the cool-down, and
    /// a prober on it to cheap refusals.
    fn default() -> Self {
        Limits {
            limit: 20,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(120),
            max_tracked: 10_000,
        }
    }
}

struct Entry {
    window_start: Instant,
    failures: u32,
    blocked_until: Option<Instant>,
    last_seen: Instant,
}

pub struct Throttle {
    limits: Limits,
    table: Mutex<HashMap<IpAddr, Entry>>,
}

impl Throttle {
    pub fn new(limits: Limits) -> Throttle {
        Throttle {
            limits,
            table: Mutex::new(HashMap::new()),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// How much longer `ip` is refused, if it is.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let until = table.get(&key(ip))?.blocked_until?;
        until.checked_duration_since(now).filter(|d| !d.is_zero())
    }

    /// Records a failed token; returns true when this failure starts a cool-down.
    pub fn failed(&self, ip: IpAddr, now: Instant) -> bool {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let k = key(ip);
        if !table.contains_key(&k) && table.len() >= self.limits.max_tracked {
            self.make_room(&mut table, now);
        }
        let e = table.entry(k).or_insert(Entry {
            window_start: now,
            failures: 0,
            blocked_until: None,
            last_seen: now,
        });
        e.last_seen = now;
        if now.duration_since(e.window_start) > self.limits.window {
            e.window_start = now;
            e.failures = 0;
        }
        e.failures += 1;
        if e.failures >= self.limits.limit && e.blocked_until.is_none_or(|u| u <= now) {
            e.blocked_until = Some(now + self.limits.cooldown);
            e.failures = 0;
            e.window_start = now;
            return true;
        }
        false
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Drops finished entries; if none are, the least recently seen one.
    fn make_room(&self, table: &mut HashMap<IpAddr, Entry>, now: Instant) {
        let window = self.limits.window;
        table.retain(|_, e| {
            e.blocked_until.is_some_and(|u| u > now) || now.duration_since(e.window_start) <= window
        });
        if table.len() >= self.limits.max_tracked {
            if let Some(oldest) = table
                .iter()
                .min_by_key(|(_, e)| e.last_seen)
                .map(|(k, _)| *k)
            {
                table.remove(&oldest);
            }
        }
    }
}

fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn limits(limit: u32) -> Limits {
        Limits {
            limit,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(30),
            max_tracked: 3,
        }
    }

    #[test]
    fn blocks_after_limit_and_only_that_address() {
        let t = Throttle::new(limits(3));
        let t0 = Instant::now();
        assert!(!t.failed(ip("10.0.0.1"), t0));
        assert!(!t.failed(ip("10.0.0.1"), t0));
        assert_eq!(t.blocked(ip("10.0.0.1"), t0), None);
        assert!(t.failed(ip("10.0.0.1"), t0));
        assert_eq!(t.blocked(ip("10.0.0.1"), t0), Some(Duration::from_secs(30)));
        assert_eq!(
            t.blocked(ip("::ffff:10.0.0.1"), t0),
            Some(Duration::from_secs(30)),
            "mapped form"
        );
        assert_eq!(t.blocked(ip("10.0.0.2"), t0), None);
        assert_eq!(
            t.blocked(ip("10.0.0.1"), t0 + Duration::from_secs(30)),
            None,
            "cool-down ends"
        );
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let t0 = Instant::now();
        // A worker with a wrong token: attempts at 0, 1, 3, 7, 15, 31 s, then
        // its controller restarts and tries the same again.
        let defaults = Throttle::new(Limits::default());
        for s in [0, 1, 3, 7, 15, 31, 62, 63, 65, 69, 77, 93] {
            let at = t0 + Duration::from_secs(s);
            assert!(!defaults.failed(ip("10.0.0.9"), at), "trips at {s}s");
            assert_eq!(defaults.blocked(ip("10.0.0.9"), at), None);
        }
        // Two failures, then the window passes: the count starts over.
        let t = Throttle::new(limits(3));
        t.failed(ip("10.0.0.8"), t0);
        t.failed(ip("10.0.0.8"), t0);
        assert!(!t.failed(ip("10.0.0.8"), t0 + Duration::from_secs(61)));
        assert!(!t.failed(ip("10.0.0.8"), t0 + Duration::from_secs(62)));
        assert!(t.failed(ip("10.0.0.8"), t0 + Duration::from_secs(63)));
    }

    #[test]
    fn ipv6_is_tracked_per_64() {
        let t = Throttle::new(limits(2));
        let t0 = Instant::now();
        t.failed(ip("2001:db8:1:2::1"), t0);
        assert!(t.failed(ip("2001:db8:1:2::ffff"), t0));
        assert!(t.blocked(ip("2001:db8:1:2:aaaa::9"), t0).is_some());
        assert!(t.blocked(ip("2001:db8:1:3::1"), t0).is_none());
    }

    #[test]
    fn table_stays_bounded() {
        let t = Throttle::new(limits(100));
        let t0 = Instant::now();
        for i in 0..50u8 {
            t.failed(
                IpAddr::from([10, 0, 0, i]),
                t0 + Duration::from_millis(u64::from(i)),
            );
            assert!(t.tracked() <= 3);
        }
        // The newest survive.
        t.failed(ip("10.0.0.49"), t0 + Duration::from_millis(60));
        assert_eq!(t.tracked(), 3);
    }
}
