//! Who gets probed. The target is always the requester: the peer address of the
//! HTTP connection, or — only when that peer is a trusted proxy — the client
//! address the proxy reports. Never a request parameter. Some addresses are
//! refused outright.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// Why an address will not be probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The server's own address.
    #[error("this is the server's own address")]
    OwnAddress,
    /// 127.0.0.0/8 or ::1.
    #[error("loopback addresses are not probed")]
    Loopback,
    /// 169.254.0.0/16 or fe80::/10.
    #[error("link-local addresses are not probed")]
    LinkLocal,
    /// Multicast or broadcast.
    #[error("multicast and broadcast addresses are not probed")]
    Multicast,
    /// 0.0.0.0 or ::.
    #[error("the unspecified address is not probed")]
    Unspecified,
    /// A private, shared or reserved range, without `--allow-private`.
    #[error(
        "private and reserved ranges are probed only when the operator allows it (--allow-private)"
    )]
    Private,
}

/// Unwraps IPv4-mapped IPv6 (`::ffff:a.b.c.d`) so policy sees the real family.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The address to probe for a request from `peer` with `headers`.
///
/// Forwarding headers are read only when `peer` is a trusted proxy; then the
/// client is the right-most address in the chain that is not itself a trusted
/// proxy (addresses further left were written by the client and prove nothing).
pub fn target(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut chain: Vec<IpAddr> = Vec::new();
    for value in headers.get_all("forwarded") {
        for element in value.to_str().unwrap_or("").split(',') {
            for pair in element.split(';') {
                if let Some((k, v)) = pair.trim().split_once('=')
                    && k.trim().eq_ignore_ascii_case("for")
                    && let Some(ip) = parse_node(v)
                {
                    chain.push(ip);
                }
            }
        }
    }
    if chain.is_empty() {
        for value in headers.get_all("x-forwarded-for") {
            chain.extend(
                value
                    .to_str()
                    .unwrap_or("")
                    .split(',')
                    .filter_map(parse_node),
            );
        }
    }
    chain
        .into_iter()
        .rev()
        .map(canonical)
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer)
}

/// Parses a `Forwarded` node or an X-Forwarded-For item: `1.2.3.4`, `"[2001:db8::1]:443"`, `1.2.3.4:80`.
fn parse_node(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    s.rsplit_once(':').and_then(|(ip, _)| ip.parse().ok())
}

/// Every address on this host's interfaces (read once at start-up), so a
/// request from one of our own addresses is refused whichever address it
/// reached.
pub fn interface_addresses() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter_map(|a| {
            let sa = a.address?;
            if let Some(v4) = sa.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                sa.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .collect()
}

/// Whether `ip` may be probed, given the server's own addresses.
pub fn check(ip: IpAddr, own: &[IpAddr], allow_private: bool) -> Result<(), Refusal> {
    let ip = canonical(ip);
    if own.iter().any(|o| canonical(*o) == ip) {
        return Err(Refusal::OwnAddress);
    }
    if ip.is_unspecified() {
        return Err(Refusal::Unspecified);
    }
    if ip.is_loopback() {
        return Err(Refusal::Loopback);
    }
    if ip.is_multicast() || ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
        return Err(Refusal::Multicast);
    }
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    };
    if link_local {
        return Err(Refusal::LinkLocal);
    }
    if !allow_private && is_private(ip) {
        return Err(Refusal::Private);
    }
    Ok(())
}

/// RFC 1918, shared address space (RFC 6598), benchmarking (RFC 2544),
/// documentation ranges, IETF protocol assignments, and IPv6 unique-local and
/// documentation prefixes: none of these is a visitor arriving over the internet.
pub fn is_private(ip: IpAddr) -> bool {
    const V4: [(Ipv4Addr, u8); 8] = [
        (Ipv4Addr::new(10, 0, 0, 0), 8),
        (Ipv4Addr::new(172, 16, 0, 0), 12),
        (Ipv4Addr::new(192, 168, 0, 0), 16),
        (Ipv4Addr::new(100, 64, 0, 0), 10),
        (Ipv4Addr::new(198, 18, 0, 0), 15),
        (Ipv4Addr::new(192, 0, 0, 0), 24),
        (Ipv4Addr::new(192, 0, 2, 0), 24),
        (Ipv4Addr::new(198, 51, 100, 0), 24),
    ];
    const V6: [(Ipv6Addr, u8); 2] = [
        (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7),
        (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32),
    ];
    match ip {
        IpAddr::V4(v4) => {
            v4.octets()[..3] == [203, 0, 113]
                || V4.iter().any(|(net, len)| {
                    let mask = u32::MAX << (32 - len);
                    u32::from(v4) & mask == u32::from(*net)
                })
        }
        IpAddr::V6(v6) => V6.iter().any(|(net, len)| {
            let mask = u128::MAX << (128 - len);
            u128::from(v6) & mask == u128::from(*net)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn untrusted_peers_cannot_choose_the_target() {
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        let h = headers(&[("x-forwarded-for", "8.8.8.8"), ("forwarded", "for=1.1.1.1")]);
        assert_eq!(target(peer, &h, &[]), peer);
        let other: IpNet = "10.0.0.0/8".parse().unwrap();
        assert_eq!(target(peer, &h, &[other]), peer);
    }

    #[test]
    fn trusted_proxies_report_the_client() {
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.9")]);
        // The client wrote 6.6.6.6; the right-most untrusted hop is the real client.
        assert_eq!(
            target(proxy, &h, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        let h = headers(&[("forwarded", "for=\"[2001:db8::7]:4711\";proto=https")]);
        assert_eq!(
            target(proxy, &h, &trusted),
            "2001:db8::7".parse::<IpAddr>().unwrap()
        );
        let h = headers(&[("x-forwarded-for", "garbage")]);
        assert_eq!(target(proxy, &h, &trusted), proxy);
    }

    #[test]
    fn interface_addresses_include_loopback() {
        let own = interface_addresses();
        assert!(own.iter().any(|a| a.is_loopback()), "{own:?}");
    }

    #[test]
    fn refusals() {
        let own: Vec<IpAddr> = vec!["192.0.2.10".parse().unwrap()];
        let check = |s: &str, allow| check(s.parse().unwrap(), &own, allow);
        assert_eq!(check("192.0.2.10", true), Err(Refusal::OwnAddress));
        assert_eq!(check("127.0.0.1", true), Err(Refusal::Loopback));
        assert_eq!(check("::1", true), Err(Refusal::Loopback));
        assert_eq!(check("::ffff:127.0.0.1", true), Err(Refusal::Loopback));
        assert_eq!(check("169.254.1.1", true), Err(Refusal::LinkLocal));
        assert_eq!(check("fe80::1", true), Err(Refusal::LinkLocal));
        assert_eq!(check("224.0.0.1", true), Err(Refusal::Multicast));
        assert_eq!(check("ff02::1", true), Err(Refusal::Multicast));
        assert_eq!(check("0.0.0.0", true), Err(Refusal::Unspecified));
        assert_eq!(check("10.1.2.3", false), Err(Refusal::Private));
        assert_eq!(check("198.18.0.2", false), Err(Refusal::Private));
        assert_eq!(check("fd00::5", false), Err(Refusal::Private));
        assert_eq!(check("198.18.0.2", true), Ok(()));
        assert_eq!(check("8.8.8.8", false), Ok(()));
        assert_eq!(check("2a00:1450::1", false), Ok(()));
    }
}
