//! Who gets probed. The target is always the requester: the peer address of the
//! HTTP connection, or — only when that peer is a trusted proxy — the client
//! address the proxy reports in the one header the operator named
//! (`--proxy-header`). Never a request parameter, never the proxy itself.
//! Some addresses are refused outright: see [`check`] and the special-purpose
//! tables below.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use ipnet::IpNet;

use crate::forwarding;
pub use crate::forwarding::{ChainError, ProxyHeader, canonical};

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
    /// A private, shared or unique-local range, without `--allow-private`.
    #[error(
        "private and reserved ranges are probed only when the operator allows it (--allow-private)"
    )]
    Private,
    /// A documentation or benchmarking range, without `--allow-private`.
    #[error(
        "documentation and benchmarking ranges are probed only when the operator allows it (--allow-private)"
    )]
    Documentation,
    /// A special-purpose range that is not globally reachable (or names an
    /// identifier, not a host): never probed, whatever the settings.
    #[error("this address is in a reserved special-purpose range that no visitor can come from")]
    Reserved,
    /// An address that embeds another host's IPv4 address.
    #[error(
        "{0} addresses embed another host's IPv4 address, so probing this one would probe that host or a translator, not necessarily you; connect over native IPv4 or IPv6 to be tested"
    )]
    EmbedsIpv4(Embedding),
    /// The peer is a trusted proxy, but its header names no client to probe.
    #[error(
        "this server sits behind a reverse proxy whose {header} header named no address that can be tested ({why}); the proxy is never probed instead, so ask the operator to check the proxy's configuration"
    )]
    Forwarding {
        /// The header the operator chose.
        header: ProxyHeader,
        /// What was wrong with it.
        why: ChainError,
    },
}

/// How an IPv6 address carries an IPv4 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Embedding {
    /// 64:ff9b::/96 and 64:ff9b:1::/48 (RFC 6052, RFC 8215).
    Nat64,
    /// 2002::/16 (RFC 3056).
    SixToFour,
    /// 2001::/32 (RFC 4380).
    Teredo,
    /// ::/96, deprecated (RFC 4291).
    Ipv4Compatible,
}

impl std::fmt::Display for Embedding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Embedding::Nat64 => "NAT64",
            Embedding::SixToFour => "6to4",
            Embedding::Teredo => "Teredo",
            Embedding::Ipv4Compatible => "IPv4-compatible IPv6",
        })
    }
}

/// The address to probe for a request from `peer` with `headers`.
///
/// An untrusted peer is its own target and its headers are ignored. A peer in
/// `trusted` is a proxy: only `header` is read (see [`forwarding`] for the
/// rules) and its right-most entry outside `trusted` is the client. When no
/// such entry can be read the answer is a refusal, never the proxy.
pub fn target(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[IpNet],
    header: ProxyHeader,
) -> Result<IpAddr, Refusal> {
    let peer = canonical(peer);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(&ip));
    if !is_trusted(peer) {
        return Ok(peer);
    }
    let lines: Vec<&[u8]> = headers
        .get_all(header.name())
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    forwarding::client(header, &lines, is_trusted)
        .map_err(|why| Refusal::Forwarding { header, why })
}

/// Every address on this host's interfaces right now, so a request from one
/// of our own addresses is refused whichever address it reached. Empty when
/// the kernel cannot be asked.
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

/// How long a read of the interface addresses is reused. An address added to
/// the host is treated as our own at most this long after it appears; reading
/// them costs a netlink dump, which every request need not pay.
pub const OWN_ADDRESSES_TTL: Duration = Duration::from_secs(1);

type Reader = Box<dyn Fn() -> Vec<IpAddr> + Send + Sync>;

/// The server's own addresses, re-read when the last read is older than a
/// time-to-live (addresses come and go while the service runs).
pub struct OwnAddresses {
    ttl: Duration,
    read: Reader,
    cached: Mutex<Option<(Instant, Arc<[IpAddr]>)>>,
}

impl std::fmt::Debug for OwnAddresses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnAddresses")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Default for OwnAddresses {
    fn default() -> Self {
        OwnAddresses::with_reader(OWN_ADDRESSES_TTL, Box::new(interface_addresses))
    }
}

impl OwnAddresses {
    /// Addresses from `read`, reused for `ttl`.
    pub fn with_reader(ttl: Duration, read: Reader) -> OwnAddresses {
        OwnAddresses {
            ttl,
            read,
            cached: Mutex::new(None),
        }
    }

    /// The addresses as of now (at most `ttl` old).
    pub fn current(&self) -> Arc<[IpAddr]> {
        self.current_at(Instant::now())
    }

    fn current_at(&self, now: Instant) -> Arc<[IpAddr]> {
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, addrs)) = cached.as_ref()
            && now.saturating_duration_since(*at) < self.ttl
        {
            return addrs.clone();
        }
        let fresh = (self.read)();
        // A failed read (nothing at all, not even loopback) keeps what we knew.
        let addrs: Arc<[IpAddr]> = match (fresh.is_empty(), cached.take()) {
            (true, Some((_, old))) => old,
            _ => fresh.into(),
        };
        *cached = Some((now, addrs.clone()));
        addrs
    }
}

/// Whether `ip` may be probed, given the server's own addresses.
pub fn check(ip: IpAddr, own: &[IpAddr], allow_private: bool) -> Result<(), Refusal> {
    let ip = canonical(ip);
    if own.iter().any(|o| canonical(*o) == ip) {
        return Err(Refusal::OwnAddress);
    }
    match special(ip) {
        None => Ok(()),
        Some(Refusal::Private | Refusal::Documentation) if allow_private => Ok(()),
        Some(r) => Err(r),
    }
}

/// Private, shared, unique-local, documentation and benchmarking ranges: none
/// of these is a visitor arriving over the internet.
pub fn is_private(ip: IpAddr) -> bool {
    matches!(
        special(canonical(ip)),
        Some(Refusal::Private | Refusal::Documentation)
    )
}

/// An entry of a special-purpose table: prefix, length, and what it means
/// (`None`: globally reachable, an exception inside a wider refused entry).
type Entry<T> = (T, u8, Option<Refusal>);

const fn v4(a: u8, b: u8, c: u8, d: u8) -> u32 {
    Ipv4Addr::new(a, b, c, d).to_bits()
}

#[allow(clippy::too_many_arguments)]
const fn v6(a: u16, b: u16, c: u16, d: u16, e: u16, f: u16, g: u16, h: u16) -> u128 {
    Ipv6Addr::new(a, b, c, d, e, f, g, h).to_bits()
}

use Refusal::{Documentation, LinkLocal, Loopback, Multicast, Private, Reserved, Unspecified};

/// The IANA IPv4 Special-Purpose Address Registry (RFC 6890 and successors),
/// plus multicast and class E. The longest matching prefix decides, so
/// globally reachable exceptions sit inside wider refused entries. Entries the
/// registry marks globally reachable and that identify a host (AS112 at
/// 192.31.196.0/24 and 192.175.48.0/24, AMT relays at 192.52.193.0/24, PCP and
/// TURN anycast at 192.0.0.9 and 192.0.0.10) are probed: a visitor from one
/// completed a TCP handshake with us, and our probes take the same route back
/// to the same instance.
pub const IPV4_SPECIAL: &[Entry<u32>] = &[
    (v4(0, 0, 0, 0), 8, Some(Reserved)), // "this network" (RFC 791)
    (v4(0, 0, 0, 0), 32, Some(Unspecified)), // RFC 1122
    (v4(10, 0, 0, 0), 8, Some(Private)), // RFC 1918
    (v4(100, 64, 0, 0), 10, Some(Private)), // shared address space (RFC 6598)
    (v4(127, 0, 0, 0), 8, Some(Loopback)), // RFC 1122
    (v4(169, 254, 0, 0), 16, Some(LinkLocal)), // RFC 3927
    (v4(172, 16, 0, 0), 12, Some(Private)), // RFC 1918
    (v4(192, 0, 0, 0), 24, Some(Reserved)), // IETF protocol assignments (RFC 6890)
    (v4(192, 0, 0, 9), 32, None),        // PCP anycast (RFC 7723)
    (v4(192, 0, 0, 10), 32, None),       // TURN anycast (RFC 8155)
    (v4(192, 0, 2, 0), 24, Some(Documentation)), // TEST-NET-1 (RFC 5737)
    (v4(192, 88, 99, 0), 24, Some(Reserved)), // deprecated 6to4 relay anycast (RFC 7526)
    (v4(192, 168, 0, 0), 16, Some(Private)), // RFC 1918
    (v4(198, 18, 0, 0), 15, Some(Documentation)), // benchmarking (RFC 2544)
    (v4(198, 51, 100, 0), 24, Some(Documentation)), // TEST-NET-2 (RFC 5737)
    (v4(203, 0, 113, 0), 24, Some(Documentation)), // TEST-NET-3 (RFC 5737)
    (v4(224, 0, 0, 0), 4, Some(Multicast)), // RFC 5771
    (v4(240, 0, 0, 0), 4, Some(Reserved)), // reserved (RFC 1112)
    (v4(255, 255, 255, 255), 32, Some(Multicast)), // limited broadcast (RFC 919)
];

/// The IANA IPv6 Special-Purpose Address Registry, plus multicast, deprecated
/// site-local, and everything outside 2000::/3 (the only space allocated for
/// global unicast). ::ffff:0:0/96 never reaches this table: [`canonical`]
/// turns it into IPv4 first. ORCHIDv2 (2001:20::/28) and DRIP entity tags
/// (2001:30::/28) are marked globally reachable but are identifiers that are
/// not routed, so they are refused.
pub const IPV6_SPECIAL: &[Entry<u128>] = &[
    (v6(0, 0, 0, 0, 0, 0, 0, 0), 3, Some(Reserved)), // 0000::/3, not global unicast
    (v6(0x8000, 0, 0, 0, 0, 0, 0, 0), 1, Some(Reserved)), // 8000::/1
    (v6(0x4000, 0, 0, 0, 0, 0, 0, 0), 2, Some(Reserved)), // 4000::/2
    (v6(0, 0, 0, 0, 0, 0, 0, 0), 128, Some(Unspecified)), // RFC 4291
    (v6(0, 0, 0, 0, 0, 0, 0, 1), 128, Some(Loopback)), // RFC 4291
    (
        v6(0, 0, 0, 0, 0, 0, 0, 0),
        96,
        Some(Refusal::EmbedsIpv4(Embedding::Ipv4Compatible)),
    ),
    (
        v6(0x64, 0xff9b, 0, 0, 0, 0, 0, 0),
        96,
        Some(Refusal::EmbedsIpv4(Embedding::Nat64)),
    ),
    (
        v6(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
        48,
        Some(Refusal::EmbedsIpv4(Embedding::Nat64)),
    ),
    (v6(0x100, 0, 0, 0, 0, 0, 0, 0), 64, Some(Reserved)), // discard-only (RFC 6666)
    (v6(0x100, 0, 0, 1, 0, 0, 0, 0), 64, Some(Reserved)), // dummy IPv6 prefix (listed in the IANA registry; its RFC number not confirmed offline)
    (v6(0x2001, 0, 0, 0, 0, 0, 0, 0), 23, Some(Reserved)), // IETF protocol assignments (RFC 2928)
    (
        v6(0x2001, 0, 0, 0, 0, 0, 0, 0),
        32,
        Some(Refusal::EmbedsIpv4(Embedding::Teredo)),
    ),
    (v6(0x2001, 1, 0, 0, 0, 0, 0, 1), 128, None), // PCP anycast (RFC 7723)
    (v6(0x2001, 1, 0, 0, 0, 0, 0, 2), 128, None), // TURN anycast (RFC 8155)
    (v6(0x2001, 1, 0, 0, 0, 0, 0, 3), 128, None), // DNS-SD SRP anycast (RFC 9665)
    (v6(0x2001, 2, 0, 0, 0, 0, 0, 0), 48, Some(Documentation)), // benchmarking (RFC 5180)
    (v6(0x2001, 3, 0, 0, 0, 0, 0, 0), 32, None),  // AMT (RFC 7450)
    (v6(0x2001, 4, 0x112, 0, 0, 0, 0, 0), 48, None), // AS112-v6 (RFC 7535)
    (v6(0x2001, 0x10, 0, 0, 0, 0, 0, 0), 28, Some(Reserved)), // ORCHID, deprecated (RFC 4843)
    (v6(0x2001, 0x20, 0, 0, 0, 0, 0, 0), 28, Some(Reserved)), // ORCHIDv2 (RFC 7343)
    (v6(0x2001, 0x30, 0, 0, 0, 0, 0, 0), 28, Some(Reserved)), // DRIP entity tags (RFC 9374)
    (v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32, Some(Documentation)), // RFC 3849
    (
        v6(0x2002, 0, 0, 0, 0, 0, 0, 0),
        16,
        Some(Refusal::EmbedsIpv4(Embedding::SixToFour)),
    ),
    (v6(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20, Some(Documentation)), // RFC 9637
    (v6(0x5f00, 0, 0, 0, 0, 0, 0, 0), 16, Some(Reserved)),      // SRv6 SIDs (RFC 9602)
    (v6(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7, Some(Private)),        // unique-local (RFC 4193)
    (v6(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, Some(LinkLocal)),     // RFC 4291
    (v6(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10, Some(Reserved)),      // site-local, deprecated (RFC 3879)
    (v6(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, Some(Multicast)),      // RFC 4291
];

/// The refusal the longest matching entry of `table` gives `bits` (`None`:
/// no entry, or a globally reachable one).
fn lookup<T>(table: &[Entry<T>], bits: T, width: u32) -> Option<Refusal>
where
    T: Copy + Eq + std::ops::Shr<u32, Output = T> + std::ops::Shl<u32, Output = T>,
{
    table
        .iter()
        .filter(|(net, len, _)| {
            let shift = width - u32::from(*len);
            // A /0 would shift by the full width; no table has one.
            *len == 0 || (bits >> shift) << shift == *net
        })
        .max_by_key(|(_, len, _)| *len)
        .and_then(|(_, _, r)| *r)
}

/// What the special-purpose tables say about `ip` (already canonical).
fn special(ip: IpAddr) -> Option<Refusal> {
    match ip {
        IpAddr::V4(a) => lookup(IPV4_SPECIAL, a.to_bits(), 32),
        IpAddr::V6(a) => lookup(IPV6_SPECIAL, a.to_bits(), 128),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const XFF: ProxyHeader = ProxyHeader::XForwardedFor;

    #[test]
    fn untrusted_peers_cannot_choose_the_target() {
        let peer = ip("203.0.113.9");
        let h = headers(&[
            ("x-forwarded-for", "8.8.8.8"),
            ("forwarded", "for=1.1.1.1"),
            ("x-real-ip", "1.0.0.1"),
        ]);
        for header in [XFF, ProxyHeader::Forwarded, ProxyHeader::XRealIp] {
            assert_eq!(target(peer, &h, &[], header), Ok(peer));
            let other: IpNet = "10.0.0.0/8".parse().unwrap();
            assert_eq!(target(peer, &h, &[other], header), Ok(peer));
        }
    }

    #[test]
    fn trusted_proxies_report_the_client_in_the_chosen_header_only() {
        let proxy = ip("10.0.0.2");
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.9")]);
        // The client wrote 6.6.6.6; the right-most untrusted hop is the real client.
        assert_eq!(target(proxy, &h, &trusted, XFF), Ok(ip("198.51.100.7")));
        let h = headers(&[("forwarded", "for=\"[2001:db8::7]:4711\";proto=https")]);
        assert_eq!(
            target(proxy, &h, &trusted, ProxyHeader::Forwarded),
            Ok(ip("2001:db8::7"))
        );
        // Issue 8: a client's own Forwarded header, passed through by an nginx
        // that writes X-Forwarded-For, must not choose the target.
        let h = headers(&[
            ("forwarded", "for=198.18.0.12"),
            ("x-real-ip", "198.18.0.12"),
            ("x-forwarded-for", "198.18.0.11"),
        ]);
        assert_eq!(target(proxy, &h, &trusted, XFF), Ok(ip("198.18.0.11")));
        let h = headers(&[
            ("x-real-ip", "198.18.0.11"),
            ("x-forwarded-for", "198.18.0.12"),
        ]);
        assert_eq!(
            target(proxy, &h, &trusted, ProxyHeader::XRealIp),
            Ok(ip("198.18.0.11"))
        );
        // An IPv4-mapped peer is the same proxy.
        let h = headers(&[("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(
            target(ip("::ffff:10.0.0.2"), &h, &trusted, XFF),
            Ok(ip("198.51.100.7"))
        );
    }

    #[test]
    fn a_trusted_proxy_without_a_usable_client_is_refused_never_probed() {
        let proxy = ip("10.0.0.2");
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let refused = |h: &HeaderMap, header: ProxyHeader, why: ChainError| {
            assert_eq!(
                target(proxy, h, &trusted, header),
                Err(Refusal::Forwarding { header, why }),
                "{h:?}"
            );
        };
        refused(&headers(&[]), XFF, ChainError::Missing);
        // The other headers are ignored, also as a fallback.
        refused(
            &headers(&[("forwarded", "for=198.51.100.7")]),
            XFF,
            ChainError::Missing,
        );
        refused(
            &headers(&[("x-forwarded-for", "garbage")]),
            XFF,
            ChainError::Unparseable,
        );
        refused(
            &headers(&[("x-forwarded-for", "10.0.0.2")]),
            XFF,
            ChainError::AllTrusted,
        );
        refused(
            &headers(&[("forwarded", "for=10.0.0.2")]),
            ProxyHeader::Forwarded,
            ChainError::AllTrusted,
        );
        refused(
            &headers(&[("forwarded", "for=unknown")]),
            ProxyHeader::Forwarded,
            ChainError::Unidentified,
        );
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"198.51.100.\xe9").unwrap(),
        );
        refused(&h, XFF, ChainError::NotAscii);
        let msg = Refusal::Forwarding {
            header: XFF,
            why: ChainError::Missing,
        }
        .to_string();
        assert!(
            msg.contains("X-Forwarded-For") && msg.contains("missing"),
            "{msg}"
        );
    }

    #[test]
    fn interface_addresses_include_loopback() {
        let own = interface_addresses();
        assert!(own.iter().any(|a| a.is_loopback()), "{own:?}");
    }

    #[test]
    fn own_addresses_are_reread_after_the_ttl() {
        static READS: AtomicUsize = AtomicUsize::new(0);
        let own = OwnAddresses::with_reader(
            Duration::from_secs(1),
            Box::new(|| {
                // The first read sees one address; every later read also sees one
                // added "after start-up".
                let n = READS.fetch_add(1, Ordering::SeqCst);
                let mut v = vec![ip("127.0.0.1")];
                if n > 0 {
                    v.push(ip("198.18.9.9"));
                }
                v
            }),
        );
        let t0 = Instant::now();
        assert_eq!(&*own.current_at(t0), &[ip("127.0.0.1")]);
        assert_eq!(own.current_at(t0 + Duration::from_millis(999)).len(), 1);
        assert_eq!(READS.load(Ordering::SeqCst), 1, "cached within the TTL");
        let later = own.current_at(t0 + Duration::from_secs(1));
        assert!(later.contains(&ip("198.18.9.9")), "{later:?}");
        assert_eq!(
            check(ip("198.18.9.9"), &later, true),
            Err(Refusal::OwnAddress)
        );
        assert_eq!(READS.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_failed_read_keeps_the_last_known_addresses() {
        static READS: AtomicUsize = AtomicUsize::new(0);
        let own = OwnAddresses::with_reader(
            Duration::from_secs(1),
            Box::new(|| {
                if READS.fetch_add(1, Ordering::SeqCst) == 0 {
                    vec![ip("198.18.0.1")]
                } else {
                    Vec::new()
                }
            }),
        );
        let t0 = Instant::now();
        own.current_at(t0);
        assert_eq!(
            &*own.current_at(t0 + Duration::from_secs(5)),
            &[ip("198.18.0.1")]
        );
    }

    #[test]
    fn refusals() {
        let own: Vec<IpAddr> = vec![ip("192.0.2.10")];
        let check = |s: &str, allow| check(ip(s), &own, allow);
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
        assert_eq!(check("198.18.0.2", false), Err(Refusal::Documentation));
        assert_eq!(check("fd00::5", false), Err(Refusal::Private));
        assert_eq!(check("198.18.0.2", true), Ok(()));
        assert_eq!(check("fd00::5", true), Ok(()));
        assert_eq!(check("8.8.8.8", false), Ok(()));
        assert_eq!(check("2a00:1450::1", false), Ok(()));
        // Never, whatever the settings.
        assert_eq!(check("240.0.0.1", true), Err(Refusal::Reserved));
        assert_eq!(check("100::1", true), Err(Refusal::Reserved));
        assert_eq!(
            check("64:ff9b::808:808", true),
            Err(Refusal::EmbedsIpv4(Embedding::Nat64))
        );
        let why = Refusal::EmbedsIpv4(Embedding::SixToFour).to_string();
        assert!(
            why.contains("6to4") && why.contains("another host's IPv4"),
            "{why}"
        );
    }

    /// What the special-purpose tables must say: (address, refusal), where
    /// `None` means globally reachable. Every entry of both registries with the
    /// first and last address inside it and the nearest ones outside.
    const CASES: &[(&str, Option<Refusal>)] = &[
        ("0.0.0.0", Some(Unspecified)),
        ("0.0.0.1", Some(Reserved)),
        ("0.255.255.255", Some(Reserved)),
        ("1.0.0.0", None),
        ("9.255.255.255", None),
        ("10.0.0.0", Some(Private)),
        ("10.255.255.255", Some(Private)),
        ("11.0.0.0", None),
        ("100.63.255.255", None),
        ("100.64.0.0", Some(Private)),
        ("100.127.255.255", Some(Private)),
        ("100.128.0.0", None),
        ("126.255.255.255", None),
        ("127.0.0.0", Some(Loopback)),
        ("127.255.255.255", Some(Loopback)),
        ("128.0.0.0", None),
        ("169.253.255.255", None),
        ("169.254.0.0", Some(LinkLocal)),
        ("169.254.255.255", Some(LinkLocal)),
        ("169.255.0.0", None),
        ("172.15.255.255", None),
        ("172.16.0.0", Some(Private)),
        ("172.31.255.255", Some(Private)),
        ("172.32.0.0", None),
        ("191.255.255.255", None),
        ("192.0.0.0", Some(Reserved)),
        ("192.0.0.8", Some(Reserved)),
        ("192.0.0.9", None),
        ("192.0.0.10", None),
        ("192.0.0.11", Some(Reserved)),
        ("192.0.0.170", Some(Reserved)),
        ("192.0.0.255", Some(Reserved)),
        ("192.0.1.0", None),
        ("192.0.1.255", None),
        ("192.0.2.0", Some(Documentation)),
        ("192.0.2.255", Some(Documentation)),
        ("192.0.3.0", None),
        ("192.31.196.0", None),
        ("192.31.196.255", None),
        ("192.52.193.1", None),
        ("192.88.98.255", None),
        ("192.88.99.0", Some(Reserved)),
        ("192.88.99.255", Some(Reserved)),
        ("192.88.100.0", None),
        ("192.167.255.255", None),
        ("192.168.0.0", Some(Private)),
        ("192.168.255.255", Some(Private)),
        ("192.169.0.0", None),
        ("192.175.48.1", None),
        ("198.17.255.255", None),
        ("198.18.0.0", Some(Documentation)),
        ("198.19.255.255", Some(Documentation)),
        ("198.20.0.0", None),
        ("198.51.99.255", None),
        ("198.51.100.0", Some(Documentation)),
        ("198.51.100.255", Some(Documentation)),
        ("198.51.101.0", None),
        ("203.0.112.255", None),
        ("203.0.113.0", Some(Documentation)),
        ("203.0.113.255", Some(Documentation)),
        ("203.0.114.0", None),
        ("223.255.255.255", None),
        ("224.0.0.0", Some(Multicast)),
        ("239.255.255.255", Some(Multicast)),
        ("240.0.0.0", Some(Reserved)),
        ("255.255.255.254", Some(Reserved)),
        ("255.255.255.255", Some(Multicast)),
        // IPv6
        ("::", Some(Unspecified)),
        ("::1", Some(Loopback)),
        ("::2", Some(Refusal::EmbedsIpv4(Embedding::Ipv4Compatible))),
        (
            "::8.8.8.8",
            Some(Refusal::EmbedsIpv4(Embedding::Ipv4Compatible)),
        ),
        (
            "::ffff:ffff",
            Some(Refusal::EmbedsIpv4(Embedding::Ipv4Compatible)),
        ),
        ("::ffff:ffff:ffff", Some(Multicast)), // mapped 255.255.255.255
        ("::1:0:0:0", Some(Reserved)),
        ("::ffff:8.8.8.8", None),
        ("::ffff:10.0.0.1", Some(Private)),
        ("64:ff9a:ffff:ffff:ffff:ffff:ffff:ffff", Some(Reserved)),
        ("64:ff9b::", Some(Refusal::EmbedsIpv4(Embedding::Nat64))),
        (
            "64:ff9b::ffff:ffff",
            Some(Refusal::EmbedsIpv4(Embedding::Nat64)),
        ),
        ("64:ff9b::1:0:0", Some(Reserved)),
        ("64:ff9b:1::", Some(Refusal::EmbedsIpv4(Embedding::Nat64))),
        (
            "64:ff9b:1:ffff:ffff:ffff:ffff:ffff",
            Some(Refusal::EmbedsIpv4(Embedding::Nat64)),
        ),
        ("64:ff9b:2::", Some(Reserved)),
        ("100::", Some(Reserved)),
        ("100::ffff:ffff:ffff:ffff", Some(Reserved)),
        ("100:0:0:1::", Some(Reserved)),
        ("1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(Reserved)),
        ("2000::", None),
        ("2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
        ("2001::", Some(Refusal::EmbedsIpv4(Embedding::Teredo))),
        (
            "2001:0:ffff:ffff:ffff:ffff:ffff:ffff",
            Some(Refusal::EmbedsIpv4(Embedding::Teredo)),
        ),
        ("2001:1::", Some(Reserved)),
        ("2001:1::1", None),
        ("2001:1::2", None),
        ("2001:1::3", None),
        ("2001:1::4", Some(Reserved)),
        ("2001:2::", Some(Documentation)),
        ("2001:2:0:ffff:ffff:ffff:ffff:ffff", Some(Documentation)),
        ("2001:2:1::", Some(Reserved)),
        ("2001:3::", None),
        ("2001:3:ffff:ffff:ffff:ffff:ffff:ffff", None),
        ("2001:4:112::", None),
        ("2001:4:112:ffff:ffff:ffff:ffff:ffff", None),
        ("2001:4:113::", Some(Reserved)),
        ("2001:f:ffff:ffff:ffff:ffff:ffff:ffff", Some(Reserved)),
        ("2001:10::", Some(Reserved)),
        ("2001:1f:ffff:ffff:ffff:ffff:ffff:ffff", Some(Reserved)),
        ("2001:20::", Some(Reserved)),
        ("2001:2f:ffff:ffff:ffff:ffff:ffff:ffff", Some(Reserved)),
        ("2001:30::", Some(Reserved)),
        ("2001:3f:ffff:ffff:ffff:ffff:ffff:ffff", Some(Reserved)),
        ("2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", Some(Reserved)),
        ("2001:200::", None),
        ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", None),
        ("2001:db8::", Some(Documentation)),
        (
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
            Some(Documentation),
        ),
        ("2001:db9::", None),
        ("2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
        ("2002::", Some(Refusal::EmbedsIpv4(Embedding::SixToFour))),
        (
            "2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            Some(Refusal::EmbedsIpv4(Embedding::SixToFour)),
        ),
        ("2003::", None),
        ("2620:4f:8000::", None),
        ("3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
        ("3fff::", Some(Documentation)),
        (
            "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff",
            Some(Documentation),
        ),
        ("3fff:1000::", None),
        ("3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
        ("4000::", Some(Reserved)),
        ("5eff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(Reserved)),
        ("5f00::", Some(Reserved)),
        ("5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(Reserved)),
        ("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(Reserved)),
        ("fc00::", Some(Private)),
        ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(Private)),
        ("fe00::", Some(Reserved)),
        ("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(Reserved)),
        ("fe80::", Some(LinkLocal)),
        ("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(LinkLocal)),
        ("fec0::", Some(Reserved)),
        ("feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(Reserved)),
        ("ff00::", Some(Multicast)),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(Multicast)),
    ];

    #[test]
    fn special_purpose_ranges_inside_and_at_their_edges() {
        let mut wrong = Vec::new();
        for (addr, want) in CASES {
            let got = special(canonical(ip(addr)));
            if got != *want {
                wrong.push(format!("{addr}: want {want:?}, got {got:?}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn every_table_entry_is_a_network_and_has_cases_at_both_ends() {
        for (net, len, _) in IPV4_SPECIAL {
            let n = ipnet::Ipv4Net::new(Ipv4Addr::from_bits(*net), *len).unwrap();
            assert_eq!(n.network().to_bits(), *net, "{n} has host bits");
            assert!(
                CASES.iter().any(|(c, _)| match ip(c) {
                    IpAddr::V4(a) => n.contains(&a),
                    _ => false,
                }),
                "no case inside {n}"
            );
        }
        for (net, len, _) in IPV6_SPECIAL {
            let n = ipnet::Ipv6Net::new(Ipv6Addr::from_bits(*net), *len).unwrap();
            assert_eq!(n.network().to_bits(), *net, "{n} has host bits");
            assert!(
                CASES.iter().any(|(c, _)| match ip(c) {
                    IpAddr::V6(a) => n.contains(&a),
                    _ => false,
                }),
                "no case inside {n}"
            );
        }
    }

    #[test]
    fn allow_private_opens_only_private_documentation_and_benchmarking() {
        for (addr, want) in CASES {
            let got = check(ip(addr), &[], true);
            let expected = match want {
                None | Some(Private | Documentation) => Ok(()),
                Some(r) => Err(*r),
            };
            assert_eq!(got, expected, "{addr}");
            let strict = check(ip(addr), &[], false);
            assert_eq!(strict, want.map_or(Ok(()), Err), "{addr}");
        }
    }
}
