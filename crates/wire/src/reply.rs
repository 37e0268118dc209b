//! Reading what comes back: [`parse_reply`] and the [`Reply`] it returns.

use std::fmt;
use std::net::IpAddr;

use crate::{
    Layer, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, TcpFlags, WireError, be16, be32,
    ensure_len, icmpv4, icmpv6, ipv4, ipv6, tcp, udp,
};

/// One received packet, reduced to what the probe engine needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reply {
    /// A TCP segment (SYN-ACK, RST, ...).
    Tcp(TcpReply),
    /// An ICMP or ICMPv6 error about a packet, with what it quotes of it:
    /// ICMPv4 types 3 (destination unreachable), 11 (time exceeded) and
    /// 12 (parameter problem); ICMPv6 types 1, 3 and 4.
    IcmpError(IcmpError),
    /// An ICMP echo reply (type 0) or ICMPv6 echo reply (type 129).
    EchoReply(EchoReply),
    /// A UDP datagram.
    Udp(UdpReply),
    /// Anything else that parsed: another IP protocol, or an ICMP/ICMPv6
    /// message of another type (echo requests, redirects, Packet Too Big,
    /// neighbour discovery...). `protocol` is the IP protocol number (the
    /// upper-layer one for IPv6, after extension headers).
    Other {
        /// Who sent it (for the watch's unsolicited-packet report).
        src: IpAddr,
        /// Where it was sent (a multicast group is not us).
        dst: IpAddr,
        /// The IP protocol number.
        protocol: u8,
    },
}

/// A TCP segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpReply {
    /// Source address (the target, for a reply to a probe).
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IPv4 TTL or IPv6 hop limit, as received.
    pub ttl: u8,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number (meaningful when ACK is set).
    pub ack: u32,
    /// The flag bits.
    pub flags: TcpFlags,
    /// Window size.
    pub window: u16,
}

/// An ICMP or ICMPv6 error and the header of the packet it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IcmpError {
    /// Who sent the error: the target itself or a router on the way.
    pub from: IpAddr,
    /// Who the error is for (us).
    pub to: IpAddr,
    /// TTL or hop limit of the error packet, as received.
    pub ttl: u8,
    /// Type and code.
    pub kind: IcmpKind,
    /// What the error quotes of the packet that caused it.
    pub quote: Quote,
}

/// The type and code of an ICMP error, by family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IcmpKind {
    /// ICMPv4 (RFC 792).
    V4 {
        /// ICMP type.
        icmp_type: u8,
        /// ICMP code.
        code: u8,
    },
    /// ICMPv6 (RFC 4443).
    V6 {
        /// ICMPv6 type.
        icmp_type: u8,
        /// ICMPv6 code.
        code: u8,
    },
}

impl IcmpKind {
    /// The type.
    pub fn icmp_type(&self) -> u8 {
        match *self {
            IcmpKind::V4 { icmp_type, .. } | IcmpKind::V6 { icmp_type, .. } => icmp_type,
        }
    }

    /// The code.
    pub fn code(&self) -> u8 {
        match *self {
            IcmpKind::V4 { code, .. } | IcmpKind::V6 { code, .. } => code,
        }
    }

    /// Port unreachable: ICMPv4 3/3 or ICMPv6 1/4. For a UDP probe this means
    /// the port is closed.
    pub fn is_port_unreachable(&self) -> bool {
        matches!(
            *self,
            IcmpKind::V4 {
                icmp_type: icmpv4::TYPE_DEST_UNREACHABLE,
                code: icmpv4::CODE_PORT_UNREACHABLE
            } | IcmpKind::V6 {
                icmp_type: icmpv6::TYPE_DEST_UNREACHABLE,
                code: icmpv6::CODE_PORT_UNREACHABLE
            }
        )
    }

    /// Time exceeded in transit (ICMPv4 11, ICMPv6 3): the probe's TTL ran out
    /// at the sender of the error.
    pub fn is_time_exceeded(&self) -> bool {
        matches!(
            *self,
            IcmpKind::V4 {
                icmp_type: icmpv4::TYPE_TIME_EXCEEDED,
                ..
            } | IcmpKind::V6 {
                icmp_type: icmpv6::TYPE_TIME_EXCEEDED,
                ..
            }
        )
    }

    /// A filter said no: ICMPv4 3/9, 3/10 or 3/13 (administratively
    /// prohibited), ICMPv6 1/1.
    pub fn is_admin_prohibited(&self) -> bool {
        matches!(
            *self,
            IcmpKind::V4 {
                icmp_type: icmpv4::TYPE_DEST_UNREACHABLE,
                code: 9 | 10 | 13
            } | IcmpKind::V6 {
                icmp_type: icmpv6::TYPE_DEST_UNREACHABLE,
                code: icmpv6::CODE_ADMIN_PROHIBITED
            }
        )
    }

    /// A short stable label for reports: `icmp-TYPE-CODE` or `icmpv6-TYPE-CODE`,
    /// e.g. `icmp-3-13`, `icmpv6-1-4`. Same text as `Display`.
    pub fn label(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for IcmpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IcmpKind::V4 { icmp_type, code } => write!(f, "icmp-{icmp_type}-{code}"),
            IcmpKind::V6 { icmp_type, code } => write!(f, "icmpv6-{icmp_type}-{code}"),
        }
    }
}

/// The start of the packet an ICMP error is about: normally one of our probes.
///
/// Quotes are read laxly, because routers quote little and rewrite what they
/// quote: the quoted IP header must be complete (with IPv6 extension headers),
/// but its length field is ignored. Past the IP header, TCP and UDP quotes need
/// 4 bytes for the ports and TCP needs 8 for the sequence number; other
/// protocols need nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quote {
    /// Source address of the quoted packet (us).
    pub src: IpAddr,
    /// Destination address of the quoted packet (the target).
    pub dst: IpAddr,
    /// Its IP protocol (upper-layer protocol for IPv6).
    pub protocol: u8,
    /// Its source port; 0 when the protocol is neither TCP nor UDP.
    pub src_port: u16,
    /// Its destination port; 0 when the protocol is neither TCP nor UDP.
    pub dst_port: u16,
    /// Its TCP sequence number, when the protocol is TCP and at least 8 bytes
    /// of the TCP header were quoted.
    pub seq: Option<u32>,
}

/// An ICMP or ICMPv6 echo reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EchoReply {
    /// Who answered.
    pub from: IpAddr,
    /// Who the reply is for (us).
    pub to: IpAddr,
    /// TTL or hop limit, as received.
    pub ttl: u8,
    /// The identifier, echoed from the request.
    pub ident: u16,
    /// The sequence number, echoed from the request.
    pub seq: u16,
}

/// A UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpReply {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// TTL or hop limit, as received.
    pub ttl: u8,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Bytes of data after the UDP header (from the UDP length field, which
    /// was checked against what arrived).
    pub payload_len: usize,
}

/// Parses one IP packet as received on a Linux `AF_PACKET`/`SOCK_DGRAM`
/// socket: the buffer starts at the IPv4 or IPv6 header. Trailing bytes past
/// the IP length (Ethernet padding) are ignored.
///
/// Lengths are checked at every layer before a field is read; any input gives
/// `Ok` or `Err`, never a panic, and nothing is allocated.
///
/// **No checksum is verified** — not the IPv4 header's and not TCP, UDP or
/// ICMP's. Packets seen on veth pairs and on NICs with checksum offload are
/// handed over with transport checksums not yet filled in, so a check would
/// drop genuine replies; the engine authenticates replies with a keyed cookie
/// (in the TCP sequence number, ports or ICMP identifier) instead. The views in
/// the protocol modules have `verify_checksum` methods for callers that want it.
///
/// Errors: [`WireError::Truncated`] when a header or a length field runs past
/// the data; [`WireError::Malformed`] for impossible field values;
/// [`WireError::Unsupported`] for non-first fragments (IPv4, IPv6, or quoted),
/// which carry no transport header.
pub fn parse_reply(packet: &[u8]) -> Result<Reply, WireError> {
    match packet.first().map(|b| b >> 4) {
        None => Err(WireError::Truncated {
            layer: Layer::Ip,
            need: 1,
            have: 0,
        }),
        Some(4) => parse_v4(packet),
        Some(6) => parse_v6(packet),
        Some(_) => Err(WireError::Malformed("IP version is neither 4 nor 6")),
    }
}

/// The data of a UDP datagram in `packet` (which starts at the IP header),
/// after the same checks as [`parse_reply`]; `None` when `packet` is not a
/// well-formed UDP datagram. Used to judge a reply by its payload.
pub fn udp_payload(packet: &[u8]) -> Option<&[u8]> {
    // Where the datagram lies in `packet`, found through the checked views.
    let (start, end) = match packet.first().map(|b| b >> 4) {
        Some(4) => {
            let ip = ipv4::Packet::new_checked(packet).ok()?;
            if ip.frag_offset() != 0 || ip.protocol() != PROTO_UDP {
                return None;
            }
            (ip.header_len(), usize::from(ip.total_len()))
        }
        Some(6) => {
            let ip = ipv6::Packet::new_checked(packet).ok()?;
            let upper = ip.upper_layer().ok()?;
            if upper.protocol != PROTO_UDP {
                return None;
            }
            let start = ipv6::HEADER_LEN + upper.ext_len;
            (start, start + upper.payload.len())
        }
        _ => return None,
    };
    let datagram = packet.get(start..end)?;
    let n = udp::Packet::new_checked(datagram).ok()?.payload().len();
    datagram.get(udp::HEADER_LEN..udp::HEADER_LEN + n)
}

/// Whether `packet` is ICMPv6 neighbour discovery (types 133–137) or a
/// multicast listener message (130–132, 143): traffic every IPv6 neighbour
/// sends to keep the link working, often in answer to our own packets, so a
/// scan watching its sender must not call it unsolicited. [`parse_reply`]
/// returns such packets as [`Reply::Other`] with protocol 58.
///
/// Lengths are checked before anything is read (extension headers are
/// walked); any input returns, never panics. False for anything else,
/// including IPv4 and bytes that are not an IPv6 header.
pub fn is_link_housekeeping(packet: &[u8]) -> bool {
    if packet.first().map(|b| b >> 4) != Some(6) {
        return false;
    }
    let Ok(ip) = ipv6::Packet::new_checked(packet) else {
        return false;
    };
    let Ok(upper) = ip.upper_layer() else {
        return false;
    };
    upper.protocol == PROTO_ICMPV6 && matches!(upper.payload.first(), Some(130..=137 | 143))
}

fn parse_v4(packet: &[u8]) -> Result<Reply, WireError> {
    let ip = ipv4::Packet::new_checked(packet)?;
    if ip.frag_offset() != 0 {
        return Err(WireError::Unsupported("IPv4 non-first fragment"));
    }
    let (src, dst, ttl) = (
        IpAddr::V4(ip.src_addr()),
        IpAddr::V4(ip.dst_addr()),
        ip.ttl(),
    );
    match ip.protocol() {
        PROTO_ICMP => {
            let m = icmpv4::Packet::new_checked(ip.payload())?;
            let echo = (m.msg_type() == icmpv4::TYPE_ECHO_REPLY)
                .then(|| (m.echo_ident(), m.echo_seq_no()));
            let kind = IcmpKind::V4 {
                icmp_type: m.msg_type(),
                code: m.msg_code(),
            };
            let error = m.is_error().then_some(kind);
            icmp_reply(src, dst, ttl, PROTO_ICMP, echo, error, || {
                quote_v4(m.payload())
            })
        }
        protocol => transport_reply(src, dst, ttl, protocol, ip.payload()),
    }
}

fn parse_v6(packet: &[u8]) -> Result<Reply, WireError> {
    let ip = ipv6::Packet::new_checked(packet)?;
    let (src, dst, ttl) = (
        IpAddr::V6(ip.src_addr()),
        IpAddr::V6(ip.dst_addr()),
        ip.hop_limit(),
    );
    let upper = ip.upper_layer()?;
    match upper.protocol {
        PROTO_ICMPV6 => {
            let m = icmpv6::Packet::new_checked(upper.payload)?;
            let echo = (m.msg_type() == icmpv6::TYPE_ECHO_REPLY)
                .then(|| (m.echo_ident(), m.echo_seq_no()));
            let kind = IcmpKind::V6 {
                icmp_type: m.msg_type(),
                code: m.msg_code(),
            };
            let error = m.is_error().then_some(kind);
            icmp_reply(src, dst, ttl, PROTO_ICMPV6, echo, error, || {
                quote_v6(m.payload())
            })
        }
        protocol => transport_reply(src, dst, ttl, protocol, upper.payload),
    }
}

/// TCP and UDP replies (the same for both IP versions); anything else is `Other`.
fn transport_reply(
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    protocol: u8,
    payload: &[u8],
) -> Result<Reply, WireError> {
    match protocol {
        PROTO_TCP => tcp_reply(src, dst, ttl, payload),
        PROTO_UDP => udp_reply(src, dst, ttl, payload),
        protocol => Ok(Reply::Other { src, dst, protocol }),
    }
}

/// An ICMP or ICMPv6 message: an echo reply, an error quoting a packet of ours,
/// or something else (`Other`).
fn icmp_reply(
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    protocol: u8,
    echo: Option<(u16, u16)>,
    error: Option<IcmpKind>,
    quote: impl FnOnce() -> Result<Quote, WireError>,
) -> Result<Reply, WireError> {
    if let Some((ident, seq)) = echo {
        return Ok(Reply::EchoReply(EchoReply {
            from: src,
            to: dst,
            ttl,
            ident,
            seq,
        }));
    }
    match error {
        Some(kind) => Ok(Reply::IcmpError(IcmpError {
            from: src,
            to: dst,
            ttl,
            kind,
            quote: quote()?,
        })),
        None => Ok(Reply::Other { src, dst, protocol }),
    }
}

fn tcp_reply(src: IpAddr, dst: IpAddr, ttl: u8, segment: &[u8]) -> Result<Reply, WireError> {
    let t = tcp::Packet::new_checked(segment)?;
    Ok(Reply::Tcp(TcpReply {
        src,
        dst,
        ttl,
        src_port: t.src_port(),
        dst_port: t.dst_port(),
        seq: t.seq_number(),
        ack: t.ack_number(),
        flags: t.flags(),
        window: t.window_len(),
    }))
}

fn udp_reply(src: IpAddr, dst: IpAddr, ttl: u8, datagram: &[u8]) -> Result<Reply, WireError> {
    let u = udp::Packet::new_checked(datagram)?;
    Ok(Reply::Udp(UdpReply {
        src,
        dst,
        ttl,
        src_port: u.src_port(),
        dst_port: u.dst_port(),
        payload_len: u.payload().len(),
    }))
}

fn quote_v4(quoted: &[u8]) -> Result<Quote, WireError> {
    let ip = ipv4::Packet::new_quoted(quoted)?;
    if ip.frag_offset() != 0 {
        return Err(WireError::Unsupported("quoted IPv4 non-first fragment"));
    }
    let (src, dst) = (IpAddr::V4(ip.src_addr()), IpAddr::V4(ip.dst_addr()));
    quote_transport(src, dst, ip.protocol(), ip.payload())
}

fn quote_v6(quoted: &[u8]) -> Result<Quote, WireError> {
    let ip = ipv6::Packet::new_quoted(quoted)?;
    let (src, dst) = (IpAddr::V6(ip.src_addr()), IpAddr::V6(ip.dst_addr()));
    let upper = ip.upper_layer()?;
    quote_transport(src, dst, upper.protocol, upper.payload)
}

/// Reads ports (and the TCP sequence number) from the first bytes of a quoted
/// transport header. RFC 792 promises only 8 of them, which is exactly ports
/// plus sequence number for TCP.
fn quote_transport(src: IpAddr, dst: IpAddr, protocol: u8, t: &[u8]) -> Result<Quote, WireError> {
    let (src_port, dst_port, seq) = match protocol {
        PROTO_TCP | PROTO_UDP => {
            ensure_len(Layer::QuotedTransport, 4, t.len())?;
            let seq = (protocol == PROTO_TCP && t.len() >= 8).then(|| be32(t, 4));
            (be16(t, 0), be16(t, 2), seq)
        }
        _ => (0, 0, None),
    };
    Ok(Quote {
        src,
        dst,
        protocol,
        src_port,
        dst_port,
        seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{self, *};
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// An IPv6 packet from 2001:db8:1::20 to 2001:db8::10: an ICMPv6 echo
    /// request whose type byte is then set to `icmp_type`.
    fn icmpv6_from_target(icmp_type: u8) -> Vec<u8> {
        let (src, dst): (Ipv6Addr, Ipv6Addr) = (
            "2001:db8:1::20".parse().unwrap(),
            "2001:db8::10".parse().unwrap(),
        );
        let echo = crate::EchoTemplate::new(IpAddr::V6(src), IpAddr::V6(dst), 64).unwrap();
        let mut buf = vec![0u8; 128];
        let n = echo.write(&mut buf, 7, 1).unwrap();
        buf.truncate(n);
        buf[40] = icmp_type;
        buf
    }

    #[test]
    fn link_housekeeping_is_neighbour_discovery_and_mld_only() {
        // Neighbour discovery and MLD: the link working, not the host talking.
        for t in [130, 131, 132, 133, 134, 135, 136, 137, 143] {
            let nd = icmpv6_from_target(t);
            assert!(
                matches!(parse_reply(&nd), Ok(Reply::Other { protocol, .. }) if protocol == PROTO_ICMPV6),
                "{t}"
            );
            assert!(is_link_housekeeping(&nd), "type {t}");
        }
        // An echo request from the target is its own doing, as are other types.
        for t in [128, 138, 139, 142, 144, 200] {
            assert!(!is_link_housekeeping(&icmpv6_from_target(t)), "type {t}");
        }
        // Another protocol over IPv6, and IPv4 (whatever its payload).
        let mut sctp = icmpv6_from_target(135);
        sctp[6] = 132;
        assert!(!is_link_housekeeping(&sctp));
        let mut v4 = SYNACK4.to_vec();
        v4[9] = PROTO_ICMPV6;
        v4[20] = 135;
        assert!(!is_link_housekeeping(&v4));
    }

    #[test]
    fn link_housekeeping_of_truncated_input_is_false() {
        let nd = icmpv6_from_target(135);
        for len in 0..41 {
            assert!(!is_link_housekeeping(&nd[..len]), "cut to {len}");
        }
        assert!(is_link_housekeeping(&nd));
        assert!(!is_link_housekeeping(&[0x65; 60]));
    }

    fn v4(s: &str) -> IpAddr {
        s.parse::<Ipv4Addr>().unwrap().into()
    }
    fn v6(s: &str) -> IpAddr {
        s.parse::<Ipv6Addr>().unwrap().into()
    }

    /// Sets the IPv4 total length or IPv6 payload length to match `b`.
    fn fix_len(b: &mut [u8]) {
        let n = b.len();
        if b[0] >> 4 == 4 {
            b[2..4].copy_from_slice(&(n as u16).to_be_bytes());
        } else {
            b[4..6].copy_from_slice(&((n - 40) as u16).to_be_bytes());
        }
    }

    #[test]
    fn ipv4_syn_ack() {
        let want = TcpReply {
            src: v4("198.51.100.20"),
            dst: v4("192.0.2.10"),
            ttl: 52,
            src_port: 443,
            dst_port: 40000,
            seq: 0x8a3b_1c2d,
            ack: 0x1234_5679,
            flags: TcpFlags::SYN | TcpFlags::ACK,
            window: 64240,
        };
        assert_eq!(parse_reply(&SYNACK4), Ok(Reply::Tcp(want)));
    }

    #[test]
    fn ipv4_rst_ack_with_and_without_padding() {
        let want = Reply::Tcp(TcpReply {
            src: v4("198.51.100.20"),
            dst: v4("192.0.2.10"),
            ttl: 61,
            src_port: 81,
            dst_port: 40001,
            seq: 0,
            ack: 0x0bad_cafe,
            flags: TcpFlags::RST | TcpFlags::ACK,
            window: 0,
        });
        assert_eq!(parse_reply(&RSTACK4), Ok(want));
        let mut padded = RSTACK4.to_vec();
        padded.extend_from_slice(&[0; 6]);
        assert_eq!(parse_reply(&padded), Ok(want));
    }

    #[test]
    fn icmp_admin_prohibited_quoting_8_bytes_of_a_syn() {
        let Ok(Reply::IcmpError(e)) = parse_reply(&ICMP4_3_13) else {
            panic!()
        };
        assert_eq!(e.from, v4("203.0.113.1"));
        assert_eq!(e.to, v4("192.0.2.10"));
        assert_eq!(e.ttl, 250);
        assert_eq!(
            e.kind,
            IcmpKind::V4 {
                icmp_type: 3,
                code: 13
            }
        );
        assert_eq!(e.kind.label(), "icmp-3-13");
        assert!(!e.kind.is_port_unreachable());
        assert!(e.kind.is_admin_prohibited());
        assert!(!e.kind.is_time_exceeded());
        assert_eq!(
            e.quote,
            Quote {
                src: v4("192.0.2.10"),
                dst: v4("198.51.100.20"),
                protocol: PROTO_TCP,
                src_port: 40000,
                dst_port: 8080,
                seq: Some(0x1234_5678),
            }
        );
    }

    #[test]
    fn icmp_port_unreachable_quoting_udp() {
        let want = Reply::IcmpError(IcmpError {
            from: v4("198.51.100.20"),
            to: v4("192.0.2.10"),
            ttl: 64,
            kind: IcmpKind::V4 {
                icmp_type: 3,
                code: 3,
            },
            quote: Quote {
                src: v4("192.0.2.10"),
                dst: v4("198.51.100.20"),
                protocol: PROTO_UDP,
                src_port: 40002,
                dst_port: 53,
                seq: None,
            },
        });
        assert_eq!(parse_reply(&ICMP4_3_3), Ok(want));
        let Reply::IcmpError(e) = want else {
            unreachable!()
        };
        assert!(e.kind.is_port_unreachable());
        assert_eq!(e.kind.label(), "icmp-3-3");
    }

    #[test]
    fn ipv6_syn_ack() {
        let want = TcpReply {
            src: v6("2001:db8:1::20"),
            dst: v6("2001:db8::10"),
            ttl: 57,
            src_port: 22,
            dst_port: 40000,
            seq: 0x0102_0304,
            ack: 0xfedc_ba99,
            flags: TcpFlags::SYN | TcpFlags::ACK,
            window: 64800,
        };
        assert_eq!(parse_reply(&SYNACK6), Ok(Reply::Tcp(want)));
    }

    #[test]
    fn icmpv6_port_unreachable_quoting_udp() {
        let want = IcmpError {
            from: v6("2001:db8:1::20"),
            to: v6("2001:db8::10"),
            ttl: 64,
            kind: IcmpKind::V6 {
                icmp_type: 1,
                code: 4,
            },
            quote: Quote {
                src: v6("2001:db8::10"),
                dst: v6("2001:db8:1::20"),
                protocol: PROTO_UDP,
                src_port: 40003,
                dst_port: 161,
                seq: None,
            },
        };
        assert_eq!(parse_reply(&ICMP6_1_4), Ok(Reply::IcmpError(want)));
        assert!(want.kind.is_port_unreachable());
        assert_eq!(want.kind.label(), "icmpv6-1-4");
        assert_eq!(want.kind.to_string(), "icmpv6-1-4");
    }

    #[test]
    fn echo_replies() {
        assert_eq!(
            parse_reply(&ECHO4),
            Ok(Reply::EchoReply(EchoReply {
                from: v4("198.51.100.20"),
                to: v4("192.0.2.10"),
                ttl: 54,
                ident: 0x4242,
                seq: 7,
            }))
        );
        assert_eq!(
            parse_reply(&ECHO6),
            Ok(Reply::EchoReply(EchoReply {
                from: v6("2001:db8:1::20"),
                to: v6("2001:db8::10"),
                ttl: 58,
                ident: 0x4242,
                seq: 9,
            }))
        );
    }

    #[test]
    fn our_own_syns_parse_back() {
        let Ok(Reply::Tcp(t)) = parse_reply(&SYN4) else {
            panic!()
        };
        assert_eq!(
            (t.src_port, t.dst_port, t.seq, t.flags),
            (40000, 443, 0x1234_5678, TcpFlags::SYN)
        );
        let Ok(Reply::Tcp(t)) = parse_reply(&SYN6) else {
            panic!()
        };
        assert_eq!((t.src, t.ttl, t.window), (v6("2001:db8::10"), 64, 1024));
    }

    #[test]
    fn udp_reply() {
        // Turn the quoted datagram of the ICMPv4 fixture into a received one.
        let mut b = ICMP4_3_3[28..].to_vec();
        b[8] = 57; // TTL
        assert_eq!(
            parse_reply(&b),
            Ok(Reply::Udp(UdpReply {
                src: v4("192.0.2.10"),
                dst: v4("198.51.100.20"),
                ttl: 57,
                src_port: 40002,
                dst_port: 53,
                payload_len: 4,
            }))
        );
        let Ok(Reply::Udp(u)) = parse_reply(&ICMP6_1_4[48..]) else {
            panic!()
        };
        assert_eq!(
            (u.src_port, u.dst_port, u.payload_len, u.ttl),
            (40003, 161, 4, 63)
        );
    }

    #[test]
    fn other_types_and_protocols() {
        // An echo request (type 8) is not a reply.
        let mut b = ECHO4;
        b[20] = icmpv4::TYPE_ECHO_REQUEST;
        assert!(
            matches!(parse_reply(&b), Ok(Reply::Other { protocol, .. }) if protocol == PROTO_ICMP)
        );
        // ICMPv4 redirect (5) also quotes a header but is not reported as an error.
        let mut b = ICMP4_3_3;
        b[20] = 5;
        assert!(
            matches!(parse_reply(&b), Ok(Reply::Other { protocol, .. }) if protocol == PROTO_ICMP)
        );
        // ICMPv6 echo request, Packet Too Big and a Neighbour Solicitation (135).
        for t in [128, 2, 135] {
            let mut b = ICMP6_1_4;
            b[40] = t;
            assert!(
                matches!(parse_reply(&b), Ok(Reply::Other { protocol, .. }) if protocol == PROTO_ICMPV6),
                "type {t}"
            );
        }
        // GRE over IPv4.
        let mut b = SYNACK4;
        b[9] = 47;
        assert!(matches!(parse_reply(&b), Ok(Reply::Other { protocol, .. }) if protocol == 47));
        // IPv6 with "no next header".
        let mut b = SYNACK6;
        b[6] = ipv6::NEXT_NONE;
        assert!(
            matches!(parse_reply(&b), Ok(Reply::Other { protocol, .. }) if protocol == ipv6::NEXT_NONE)
        );
    }

    #[test]
    fn time_exceeded_and_param_problem_are_errors() {
        let mut b = ICMP4_3_13;
        b[20..22].copy_from_slice(&[11, 0]);
        let Ok(Reply::IcmpError(e)) = parse_reply(&b) else {
            panic!()
        };
        assert!(e.kind.is_time_exceeded());
        assert_eq!(e.kind.label(), "icmp-11-0");
        b[20..22].copy_from_slice(&[12, 0]);
        assert!(matches!(parse_reply(&b), Ok(Reply::IcmpError(_))));
        let mut b = ICMP6_1_4;
        b[40..42].copy_from_slice(&[3, 0]);
        let Ok(Reply::IcmpError(e)) = parse_reply(&b) else {
            panic!()
        };
        assert!(e.kind.is_time_exceeded());
        b[40..42].copy_from_slice(&[4, 1]);
        let Ok(Reply::IcmpError(e)) = parse_reply(&b) else {
            panic!()
        };
        assert_eq!((e.kind.icmp_type(), e.kind.code()), (4, 1));
    }

    #[test]
    fn quoted_ip_options_are_skipped() {
        // Quote a SYN whose IP header carries 4 bytes of options (IHL 6).
        let mut b = ICMP4_3_13[..48].to_vec();
        b[28] = 0x46;
        b.extend_from_slice(&[1, 1, 1, 0]);
        b.extend_from_slice(&ICMP4_3_13[48..]);
        fix_len(&mut b);
        let Ok(Reply::IcmpError(e)) = parse_reply(&b) else {
            panic!()
        };
        assert_eq!(
            (e.quote.src_port, e.quote.dst_port, e.quote.seq),
            (40000, 8080, Some(0x1234_5678))
        );
    }

    #[test]
    fn quoted_icmp_has_no_ports() {
        // A time exceeded about one of our pings: the quote is IPv4 + ICMP echo.
        let mut b = ICMP4_3_13;
        b[20] = 11;
        b[37] = PROTO_ICMP;
        let Ok(Reply::IcmpError(e)) = parse_reply(&b) else {
            panic!()
        };
        assert_eq!(
            (
                e.quote.protocol,
                e.quote.src_port,
                e.quote.dst_port,
                e.quote.seq
            ),
            (1, 0, 0, None)
        );
        // ...and is fine with no transport bytes quoted at all.
        let mut short = b[..48].to_vec();
        fix_len(&mut short);
        assert!(matches!(parse_reply(&short), Ok(Reply::IcmpError(_))));
    }

    #[test]
    fn quote_of_the_wrong_family_is_malformed() {
        let mut b = ICMP4_3_13;
        b[28] = 0x65;
        assert!(matches!(parse_reply(&b), Err(WireError::Malformed(_))));
        let mut b = ICMP6_1_4;
        b[48] = 0x45;
        assert!(matches!(parse_reply(&b), Err(WireError::Malformed(_))));
    }

    #[test]
    fn quoted_non_first_fragment_is_unsupported() {
        let mut b = ICMP4_3_13;
        b[34..36].copy_from_slice(&[0x00, 0x10]);
        assert!(matches!(parse_reply(&b), Err(WireError::Unsupported(_))));
    }

    #[test]
    fn outer_non_first_fragment_is_unsupported() {
        let mut b = SYNACK4;
        b[6..8].copy_from_slice(&[0x20, 0xb9]); // MF, offset 185 * 8
        assert_eq!(
            parse_reply(&b),
            Err(WireError::Unsupported("IPv4 non-first fragment"))
        );
        // A first fragment (MF, offset 0) still carries the TCP header.
        b[6..8].copy_from_slice(&[0x20, 0x00]);
        assert!(matches!(parse_reply(&b), Ok(Reply::Tcp(_))));
    }

    /// Builds an ICMPv4 3/13 whose quote is the first `k` bytes of our SYN.
    fn icmp4_quoting(k: usize) -> Vec<u8> {
        let mut b = ICMP4_3_13[..28].to_vec();
        b.extend_from_slice(&SYN4[..k]);
        fix_len(&mut b);
        b
    }

    /// Builds an ICMPv6 1/1 whose quote is the first `k` bytes of our SYN.
    fn icmp6_quoting(k: usize) -> Vec<u8> {
        let mut b = ICMP6_1_4[..48].to_vec();
        b[41] = 1;
        b.extend_from_slice(&SYN6[..k]);
        fix_len(&mut b);
        b
    }

    #[test]
    fn quote_truncation_rules_v4() {
        for k in 0..=SYN4.len() {
            let got = parse_reply(&icmp4_quoting(k));
            match k {
                0..20 => assert_eq!(
                    got,
                    Err(WireError::Truncated {
                        layer: Layer::QuotedIp,
                        need: 20,
                        have: k
                    })
                ),
                20..24 => assert_eq!(
                    got,
                    Err(WireError::Truncated {
                        layer: Layer::QuotedTransport,
                        need: 4,
                        have: k - 20
                    })
                ),
                _ => {
                    let Ok(Reply::IcmpError(e)) = got else {
                        panic!("k {k}: {got:?}")
                    };
                    assert_eq!((e.quote.src_port, e.quote.dst_port), (40000, 443), "k {k}");
                    let seq = (k >= 28).then_some(0x1234_5678);
                    assert_eq!(e.quote.seq, seq, "k {k}");
                }
            }
        }
    }

    #[test]
    fn quote_truncation_rules_v6() {
        for k in 0..=SYN6.len() {
            let got = parse_reply(&icmp6_quoting(k));
            match k {
                0..40 => assert_eq!(
                    got,
                    Err(WireError::Truncated {
                        layer: Layer::QuotedIp,
                        need: 40,
                        have: k
                    })
                ),
                40..44 => assert_eq!(
                    got,
                    Err(WireError::Truncated {
                        layer: Layer::QuotedTransport,
                        need: 4,
                        have: k - 40
                    })
                ),
                _ => {
                    let Ok(Reply::IcmpError(e)) = got else {
                        panic!("k {k}: {got:?}")
                    };
                    assert_eq!(
                        e.kind,
                        IcmpKind::V6 {
                            icmp_type: 1,
                            code: 1
                        }
                    );
                    assert!(e.kind.is_admin_prohibited());
                    assert_eq!(e.quote.src, v6("2001:db8::10"));
                    assert_eq!(e.quote.dst, v6("2001:db8:1::20"));
                    assert_eq!((e.quote.src_port, e.quote.dst_port), (40000, 443), "k {k}");
                    assert_eq!(e.quote.seq, (k >= 48).then_some(0x1234_5678), "k {k}");
                }
            }
        }
    }

    #[test]
    fn quoted_ipv6_extension_headers_are_walked() {
        // Quote: IPv6 header (next = Destination Options) + 8-byte DO + 8 bytes of TCP.
        let mut q = SYN6[..40].to_vec();
        q[6] = ipv6::NEXT_DEST_OPTS;
        q.extend_from_slice(&[PROTO_TCP, 0, 1, 4, 0, 0, 0, 0]);
        q.extend_from_slice(&SYN6[40..48]);
        let mut b = ICMP6_1_4[..48].to_vec();
        b.extend_from_slice(&q);
        fix_len(&mut b);
        let Ok(Reply::IcmpError(e)) = parse_reply(&b) else {
            panic!()
        };
        assert_eq!(
            (e.quote.protocol, e.quote.dst_port, e.quote.seq),
            (PROTO_TCP, 443, Some(0x1234_5678))
        );
        // Cut inside the extension header: the quote is unusable.
        let mut cut = b[..48 + 44].to_vec();
        fix_len(&mut cut);
        assert_eq!(
            parse_reply(&cut),
            Err(WireError::Truncated {
                layer: Layer::QuotedIp,
                need: 8,
                have: 4
            })
        );
    }

    #[test]
    fn outer_ipv6_extension_headers_are_walked() {
        let mut b = SYNACK6[..40].to_vec();
        b[6] = ipv6::NEXT_HOP_BY_HOP;
        b.extend_from_slice(&[ipv6::NEXT_FRAGMENT, 0, 1, 4, 0, 0, 0, 0]);
        b.extend_from_slice(&[PROTO_TCP, 0, 0, 1, 0, 0, 0, 7]);
        b.extend_from_slice(&SYNACK6[40..]);
        fix_len(&mut b);
        let Ok(Reply::Tcp(t)) = parse_reply(&b) else {
            panic!()
        };
        assert_eq!((t.src_port, t.seq, t.ttl), (22, 0x0102_0304, 57));
        // Offset 8 in the fragment header: not the first fragment.
        b[40 + 8 + 2..40 + 8 + 4].copy_from_slice(&[0, 8]);
        assert_eq!(
            parse_reply(&b),
            Err(WireError::Unsupported("IPv6 non-first fragment"))
        );
    }

    #[test]
    fn every_strict_prefix_of_every_fixture_fails() {
        for (i, f) in fixtures::ALL.iter().enumerate() {
            assert!(parse_reply(f).is_ok(), "fixture {i}");
            for n in 0..f.len() {
                assert!(parse_reply(&f[..n]).is_err(), "fixture {i} prefix {n}");
            }
        }
        assert_eq!(
            parse_reply(&[]),
            Err(WireError::Truncated {
                layer: Layer::Ip,
                need: 1,
                have: 0
            })
        );
    }

    #[test]
    fn header_field_abuse() {
        // ihl < 5
        let mut b = SYNACK4;
        b[0] = 0x43;
        assert!(matches!(parse_reply(&b), Err(WireError::Malformed(_))));
        // ihl * 4 > len
        b[0] = 0x4f;
        assert!(matches!(
            parse_reply(&b),
            Err(WireError::Truncated {
                layer: Layer::Ipv4,
                ..
            })
        ));
        // total length smaller than the header
        let mut b = SYNACK4;
        b[2..4].copy_from_slice(&12u16.to_be_bytes());
        assert!(matches!(parse_reply(&b), Err(WireError::Malformed(_))));
        // total length larger than what arrived
        b[2..4].copy_from_slice(&45u16.to_be_bytes());
        assert!(matches!(
            parse_reply(&b),
            Err(WireError::Truncated {
                layer: Layer::Ipv4,
                need: 45,
                have: 44
            })
        ));
        // total length that leaves no room for the TCP header
        b[2..4].copy_from_slice(&30u16.to_be_bytes());
        assert!(matches!(
            parse_reply(&b),
            Err(WireError::Truncated {
                layer: Layer::Tcp,
                need: 20,
                have: 10
            })
        ));
        // version 5, version 0
        for v in [0x55, 0x05] {
            let mut b = SYNACK4;
            b[0] = v;
            assert_eq!(
                parse_reply(&b),
                Err(WireError::Malformed("IP version is neither 4 nor 6"))
            );
        }
        // an IPv6 packet whose version nibble says 4, and the reverse
        let mut b = SYNACK6;
        b[0] = 0x40;
        assert!(parse_reply(&b).is_err());
        // (An IPv4 packet whose nibble says 6 is read as IPv6: here its ident
        // reads as a zero payload length and its flags byte as next header 64.)
        let mut b = SYNACK4;
        b[0] = 0x65;
        assert!(matches!(parse_reply(&b), Ok(Reply::Other { protocol, .. }) if protocol == 0x40));
        // IPv6 payload length beyond the buffer
        let mut b = SYNACK6;
        b[4..6].copy_from_slice(&25u16.to_be_bytes());
        assert_eq!(
            parse_reply(&b),
            Err(WireError::Truncated {
                layer: Layer::Ipv6,
                need: 65,
                have: 64
            })
        );
        // UDP length below 8
        let mut b = ICMP4_3_3[28..].to_vec();
        b[24..26].copy_from_slice(&4u16.to_be_bytes());
        assert!(matches!(parse_reply(&b), Err(WireError::Malformed(_))));
    }

    /// Parses packets written by etherparse with random field values.
    #[test]
    fn parses_what_etherparse_builds() {
        use etherparse::PacketBuilder;
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for i in 0..2000 {
            let r = next();
            let (sp, dp, seq, ack, win, ttl) = (
                r as u16,
                (r >> 16) as u16,
                next() as u32,
                next() as u32,
                (r >> 32) as u16,
                (r >> 48) as u8,
            );
            let payload = vec![0x5a; (r >> 56) as usize % 40];
            let v6_pair = i % 2 == 1;
            let (s4, d4) = ((next() as u32).to_be_bytes(), (next() as u32).to_be_bytes());
            let (s6, d6) = (
                (u128::from(next()) << 64 | 1).to_be_bytes(),
                (u128::from(next()) << 64 | 2).to_be_bytes(),
            );
            let (src, dst): (IpAddr, IpAddr) = if v6_pair {
                (Ipv6Addr::from(s6).into(), Ipv6Addr::from(d6).into())
            } else {
                (Ipv4Addr::from(s4).into(), Ipv4Addr::from(d4).into())
            };
            let base = || {
                if v6_pair {
                    PacketBuilder::ipv6(s6, d6, ttl)
                } else {
                    PacketBuilder::ipv4(s4, d4, ttl)
                }
            };

            // TCP with SYN+ACK or RST+ACK and payload.
            let mut b = Vec::new();
            let step = base().tcp(sp, dp, seq, win).ack(ack);
            let (step, flags) = if r & 1 == 0 {
                (step.syn(), TcpFlags(0x12))
            } else {
                (step.rst(), TcpFlags(0x14))
            };
            step.write(&mut b, &payload).unwrap();
            let want = TcpReply {
                src,
                dst,
                ttl,
                src_port: sp,
                dst_port: dp,
                seq,
                ack,
                flags,
                window: win,
            };
            assert_eq!(parse_reply(&b), Ok(Reply::Tcp(want)), "tcp {i}");

            // UDP.
            let mut b = Vec::new();
            base().udp(sp, dp).write(&mut b, &payload).unwrap();
            let want = UdpReply {
                src,
                dst,
                ttl,
                src_port: sp,
                dst_port: dp,
                payload_len: payload.len(),
            };
            assert_eq!(parse_reply(&b), Ok(Reply::Udp(want)), "udp {i}");

            // Echo reply.
            let mut b = Vec::new();
            if v6_pair {
                base()
                    .icmpv6_echo_reply(sp, dp)
                    .write(&mut b, &payload)
                    .unwrap();
            } else {
                base()
                    .icmpv4_echo_reply(sp, dp)
                    .write(&mut b, &payload)
                    .unwrap();
            }
            let want = EchoReply {
                from: src,
                to: dst,
                ttl,
                ident: sp,
                seq: dp,
            };
            assert_eq!(parse_reply(&b), Ok(Reply::EchoReply(want)), "echo {i}");
        }
    }

    /// A tiny deterministic PRNG so the corpus is the same on every run.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// 200,000 hostile inputs: random bytes, and fixtures with random byte
    /// mutations, truncations and extensions. None may panic; enough of them
    /// must get deep enough to parse for the test to mean something.
    #[test]
    fn random_and_mutated_inputs_never_panic() {
        let mut rng = XorShift(0x0ddb_1a5e_5bad_5eed);
        let mut ok = 0usize;
        let mut buf = Vec::with_capacity(256);
        for _ in 0..200_000 {
            buf.clear();
            match rng.below(4) {
                0 => {
                    // Random bytes, half of them with a plausible first byte.
                    let len = rng.below(128);
                    buf.extend((0..len).map(|_| rng.next() as u8));
                    if len > 0 && rng.below(2) == 0 {
                        buf[0] = if rng.below(2) == 0 { 0x45 } else { 0x60 };
                    }
                }
                1 => {
                    // A fixture with 1-4 random bytes changed.
                    let f = fixtures::ALL[rng.below(fixtures::ALL.len())];
                    buf.extend_from_slice(f);
                    for _ in 0..1 + rng.below(4) {
                        let at = rng.below(buf.len());
                        buf[at] = rng.next() as u8;
                    }
                }
                2 => {
                    // A truncated fixture with its length fields fixed up, then one mutation.
                    let f = fixtures::ALL[rng.below(fixtures::ALL.len())];
                    let min = if f[0] >> 4 == 4 { 20 } else { 40 };
                    buf.extend_from_slice(&f[..min + rng.below(f.len() - min + 1)]);
                    fix_len(&mut buf);
                    let at = rng.below(buf.len());
                    buf[at] ^= 1 << rng.below(8);
                }
                _ => {
                    // A fixture with random bytes appended and length fields set to cover them.
                    let f = fixtures::ALL[rng.below(fixtures::ALL.len())];
                    buf.extend_from_slice(f);
                    buf.extend((0..rng.below(64)).map(|_| rng.next() as u8));
                    if rng.below(2) == 0 {
                        fix_len(&mut buf);
                    }
                }
            }
            if let Ok(reply) = parse_reply(&buf) {
                ok += 1;
                // Formatting walks every field, as the fuzz target does.
                assert!(!format!("{reply:?}").is_empty());
            }
        }
        assert!(
            ok > 40_000,
            "only {ok} inputs parsed; the corpus is too shallow"
        );
    }

    #[test]
    fn udp_payload_is_the_checked_data_of_both_families() {
        for (src, dst) in [("198.18.0.2", "198.18.0.1"), ("fd00::2", "fd00::1")] {
            let (src, dst): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
            let t = crate::UdpTemplate::new(src, dst, 64).unwrap();
            let mut buf = [0u8; 128];
            let n = t.write(&mut buf, 53, 61441, b"answer").unwrap();
            assert_eq!(udp_payload(&buf[..n]), Some(&b"answer"[..]));
            // Every truncation is refused, never misread.
            for cut in 0..n {
                assert_eq!(udp_payload(&buf[..cut]), None, "{cut} of {n} bytes");
            }
            // A TCP segment has no UDP payload.
            let syn = crate::SynTemplate::new(src, dst, 64, 1024).unwrap();
            let n = syn.write(&mut buf, 1, 2, 3).unwrap();
            assert_eq!(udp_payload(&buf[..n]), None);
        }
    }
}
