//! Which addresses count as one visitor for limits.
//!
//! One IPv4 address is one visitor. An IPv6 host usually holds a whole /64 (or
//! more) and can pick any address in it, so IPv6 visitors are counted per
//! prefix (`--ipv6-prefix`, default 64); otherwise one host could take every
//! slot of a limit by changing its address.

use std::net::{IpAddr, Ipv6Addr};

/// The key a limit counts `ip` under: an IPv4 address as it is (also when it
/// arrives IPv4-mapped, `::ffff:a.b.c.d`, on a dual-stack socket), an IPv6
/// address masked to its first `prefix` bits (0–128; larger values count as 128).
pub fn limit_key(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let bits = u32::from(prefix.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ip: &str, prefix: u8) -> String {
        limit_key(ip.parse().unwrap(), prefix).to_string()
    }

    #[test]
    fn ipv4_is_per_address() {
        assert_eq!(key("198.18.0.11", 64), "198.18.0.11");
        assert_eq!(key("198.18.0.11", 0), "198.18.0.11");
        assert_eq!(key("::ffff:198.18.0.11", 64), "198.18.0.11");
    }

    #[test]
    fn ipv6_is_per_prefix() {
        assert_eq!(key("2001:db8:1:2:3:4:5:6", 64), "2001:db8:1:2::");
        assert_eq!(
            key("2001:db8:1:2:ffff::1", 64),
            key("2001:db8:1:2:3:4:5:6", 64)
        );
        assert_ne!(key("2001:db8:1:3::1", 64), key("2001:db8:1:2::1", 64));
        assert_eq!(key("2001:db8:1:2:3:4:5:6", 48), "2001:db8:1::");
        assert_eq!(key("2001:db8:1:2:3:4:5:6", 56), "2001:db8:1::");
        assert_eq!(key("2001:db8:1:2ff:3:4:5:6", 56), "2001:db8:1:200::");
        assert_eq!(key("2001:db8::1", 128), "2001:db8::1");
        assert_eq!(key("2001:db8::1", 200), "2001:db8::1");
        assert_eq!(key("2001:db8::1", 0), "::");
    }
}
