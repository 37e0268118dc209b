//! Who counts as one visitor for the limits, and the caps on live event streams.
//!
//! An IPv6 host is usually given a whole /64 (or more), so counting single IPv6
//! addresses would let one host take every slot by changing its address; the
//! limits count IPv6 visitors per prefix instead ([`limit_key`]).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// The address the limits count `ip` under: IPv4 as it is, an IPv4-mapped IPv6
/// address as its IPv4 address, any other IPv6 address masked to its first
/// `ipv6_prefix` bits (clamped to 0..=128).
pub fn limit_key(ip: IpAddr, ipv6_prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let bits = u32::from(ipv6_prefix.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

/// Why a stream was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamRefusal {
    /// The scan has as many watchers as allowed.
    PerScan(usize),
    /// The visitor has as many streams open as allowed.
    PerAddress(usize),
}

impl std::fmt::Display for StreamRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamRefusal::PerScan(n) => write!(
                f,
                "this test already has {n} live views open, the most this server allows"
            ),
            StreamRefusal::PerAddress(n) => write!(
                f,
                "your address already has {n} live views open, the most this server allows"
            ),
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    by_scan: HashMap<String, usize>,
    by_key: HashMap<IpAddr, usize>,
}

/// Counts open event streams per scan and per visitor key.
#[derive(Debug)]
pub struct StreamSlots {
    per_scan: usize,
    per_address: usize,
    counts: Mutex<Counts>,
}

impl StreamSlots {
    /// Slots allowing `per_scan` streams of one scan and `per_address` streams
    /// of one visitor key.
    pub fn new(per_scan: usize, per_address: usize) -> Arc<StreamSlots> {
        Arc::new(StreamSlots {
            per_scan,
            per_address,
            counts: Mutex::default(),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot for a stream of `scan` watched by `key`; the slot is given
    /// back when the guard drops (the client went away or the stream ended).
    pub fn acquire(
        self: &Arc<Self>,
        scan: &str,
        key: IpAddr,
    ) -> Result<StreamGuard, StreamRefusal> {
        let mut c = self.counts();
        if c.by_scan.get(scan).copied().unwrap_or(0) >= self.per_scan {
            return Err(StreamRefusal::PerScan(self.per_scan));
        }
        if c.by_key.get(&key).copied().unwrap_or(0) >= self.per_address {
            return Err(StreamRefusal::PerAddress(self.per_address));
        }
        *c.by_scan.entry(scan.to_string()).or_default() += 1;
        *c.by_key.entry(key).or_default() += 1;
        Ok(StreamGuard {
            slots: self.clone(),
            scan: scan.to_string(),
            key,
        })
    }

    /// Streams open now (all scans).
    pub fn open(&self) -> usize {
        self.counts().by_scan.values().sum()
    }
}

/// One admitted stream; dropping it frees the slot.
#[derive(Debug)]
pub struct StreamGuard {
    slots: Arc<StreamSlots>,
    scan: String,
    key: IpAddr,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut c = self.slots.counts();
        // Entries at zero are removed so the maps stay as small as the open streams.
        if let Some(n) = c.by_scan.get_mut(&self.scan) {
            *n -= 1;
            if *n == 0 {
                c.by_scan.remove(&self.scan);
            }
        }
        if let Some(n) = c.by_key.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                c.by_key.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn keys_mask_ipv6_and_unwrap_mapped_ipv4() {
        assert_eq!(limit_key(ip("198.51.100.7"), 64), ip("198.51.100.7"));
        assert_eq!(limit_key(ip("::ffff:198.51.100.7"), 64), ip("198.51.100.7"));
        assert_eq!(
            limit_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), 64),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            limit_key(ip("2001:db8:1:2:aaaa::1"), 48),
            ip("2001:db8:1::")
        );
        assert_eq!(limit_key(ip("2001:db8::1"), 128), ip("2001:db8::1"));
        assert_eq!(limit_key(ip("2001:db8::1"), 0), ip("::"));
        assert_eq!(limit_key(ip("2001:db8::1"), 200), ip("2001:db8::1"));
        assert_eq!(
            limit_key(ip("2001:db8:0:1::1"), 56),
            limit_key(ip("2001:db8:0:ff::1"), 56)
        );
        assert_ne!(
            limit_key(ip("2001:db8:0:1::1"), 64),
            limit_key(ip("2001:db8:0:2::1"), 64)
        );
    }

    #[test]
    fn stream_slots_cap_and_release() {
        let s = StreamSlots::new(2, 3);
        let a = ip("198.51.100.1");
        let g1 = s.acquire("x", a).unwrap();
        let _g2 = s.acquire("x", a).unwrap();
        assert_eq!(
            s.acquire("x", ip("198.51.100.2")).unwrap_err(),
            StreamRefusal::PerScan(2)
        );
        let _g3 = s.acquire("y", a).unwrap();
        assert_eq!(s.acquire("z", a).unwrap_err(), StreamRefusal::PerAddress(3));
        drop(g1);
        assert_eq!(s.open(), 2);
        let _g4 = s.acquire("x", a).unwrap();
        assert_eq!(s.acquire("z", a).unwrap_err(), StreamRefusal::PerAddress(3));
    }
}
