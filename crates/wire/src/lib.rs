//! Packet wire formats for the Harbormaster probe engine.
//!
//! Two jobs, both pure code (no I/O, no `unsafe`, never a panic on any input):
//!
//! - **Reading replies.** [`parse_reply`] takes one IP packet as a Linux
//!   `AF_PACKET`/`SOCK_DGRAM` socket hands it over and returns a small `Copy`
//!   [`Reply`]: a TCP segment, an ICMP error with the header it quotes, an echo
//!   reply, a UDP datagram, or "something else". It allocates nothing.
//! - **Writing probes.** [`SynTemplate`], [`EchoTemplate`] and [`UdpTemplate`]
//!   prebuild a packet (IP header included, for an `IPPROTO_RAW` socket) once and
//!   patch the per-probe fields into a caller's buffer, with checksums finished
//!   from precomputed partial sums.
//!
//! # Why hand-written rather than `etherparse`
//!
//! The reply path needs only a tiny fixed subset: addresses, TTL, ports,
//! sequence and acknowledgement numbers, TCP flags, ICMP type and code, and the
//! original header quoted inside an ICMP error. That quote usually carries only
//! 8 bytes of the TCP header and a total length that claims more than was
//! quoted, so it has to be read with explicit, lax truncation rules that a
//! general-purpose parser does not offer. And the SYN builder is called about
//! 130,000 times a second, so it copies a 44- or 64-byte template and adds four
//! words to a precomputed checksum instead of serialising headers. `etherparse`
//! is still used, as a dev-dependency, to cross-check both directions in tests.
//!
//! # Layout
//!
//! In the style of smoltcp, each protocol module has a `Packet<T: AsRef<[u8]>>`
//! view whose `new_checked` verifies every length before any field is read:
//! [`ipv4`], [`ipv6`] (with its extension-header walk), [`tcp`], [`udp`],
//! [`icmpv4`], [`icmpv6`]. [`checksum`] has the RFC 1071 sums. [`reply`] and
//! [`build`] are the two jobs above.
//!
//! ```
//! use harbormaster_wire::{parse_reply, Reply, SynTemplate, TcpFlags};
//! use std::net::IpAddr;
//!
//! let me: IpAddr = "192.0.2.10".parse().unwrap();
//! let target: IpAddr = "198.51.100.20".parse().unwrap();
//! let syn = SynTemplate::new(me, target, 64, 1024).unwrap();
//! let mut buf = [0u8; 64];
//! let n = syn.write(&mut buf, 40000, 443, 0x1234_5678).unwrap();
//!
//! // Our own probe parses as a TCP segment with only SYN set.
//! let Reply::Tcp(tcp) = parse_reply(&buf[..n]).unwrap() else { panic!() };
//! assert_eq!((tcp.src, tcp.dst_port, tcp.seq), (me, 443, 0x1234_5678));
//! assert_eq!(tcp.flags, TcpFlags::SYN);
//! ```

#![forbid(unsafe_code)]

use std::fmt;

pub mod build;
pub mod checksum;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod payload;
pub mod reply;
pub mod tcp;
pub mod udp;

#[cfg(test)]
mod fixtures;

pub use build::{EchoTemplate, SynTemplate, UdpTemplate};
pub use reply::{
    EchoReply, IcmpError, IcmpKind, Quote, Reply, TcpReply, UdpReply, is_link_housekeeping,
    parse_reply, udp_payload,
};

/// IP protocol number of ICMP (RFC 792).
pub const PROTO_ICMP: u8 = 1;
/// IP protocol number of TCP (RFC 9293).
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP (RFC 768).
pub const PROTO_UDP: u8 = 17;
/// IP protocol (IPv6 next header) number of ICMPv6 (RFC 4443).
pub const PROTO_ICMPV6: u8 = 58;

/// Why a packet could not be read or written.
///
/// Small and `Copy` so that the reply path can count failures by kind without
/// allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The bytes end before a header (or the length a header claims) does.
    /// `need` and `have` count bytes from the start of `layer`.
    #[error("{layer} truncated: need {need} bytes, have {have}")]
    Truncated {
        /// Which header ran short.
        layer: Layer,
        /// Bytes needed from the start of that header.
        need: usize,
        /// Bytes available from the start of that header.
        have: usize,
    },
    /// A field holds a value that no valid packet has (a version that does not
    /// match, a header length below the minimum, a length field shorter than its
    /// own header).
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// Well-formed, but not something this crate reads, such as a non-first
    /// fragment (which carries no transport header).
    #[error("unsupported packet: {0}")]
    Unsupported(&'static str),
    /// A builder was given a source and destination of different address families.
    #[error("source and destination addresses are of different families")]
    AddressFamilyMismatch,
    /// A builder's output buffer is too small for the packet.
    #[error("buffer too small: need {need} bytes, have {have}")]
    BufferTooSmall {
        /// Bytes the packet needs.
        need: usize,
        /// Bytes the buffer has.
        have: usize,
    },
    /// A builder's payload would make the packet exceed its length field.
    #[error("payload of {len} bytes is longer than the maximum of {max}")]
    PayloadTooLong {
        /// The payload length given.
        len: usize,
        /// The longest payload that fits.
        max: usize,
    },
}

/// The header a [`WireError::Truncated`] refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Layer {
    /// The first byte of an IP packet (an empty packet has no version to read).
    Ip,
    /// An IPv4 header or the datagram its total length describes.
    Ipv4,
    /// An IPv6 header or the datagram its payload length describes.
    Ipv6,
    /// An IPv6 extension header.
    Ipv6Extension,
    /// A TCP header.
    Tcp,
    /// A UDP header or the datagram its length field describes.
    Udp,
    /// An ICMPv4 header.
    Icmpv4,
    /// An ICMPv6 header.
    Icmpv6,
    /// The IP header (and IPv6 extension headers) quoted inside an ICMP error.
    QuotedIp,
    /// The start of the transport header quoted inside an ICMP error.
    QuotedTransport,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::Ip => "IP packet",
            Layer::Ipv4 => "IPv4 packet",
            Layer::Ipv6 => "IPv6 packet",
            Layer::Ipv6Extension => "IPv6 extension header",
            Layer::Tcp => "TCP header",
            Layer::Udp => "UDP datagram",
            Layer::Icmpv4 => "ICMPv4 header",
            Layer::Icmpv6 => "ICMPv6 header",
            Layer::QuotedIp => "quoted IP header",
            Layer::QuotedTransport => "quoted transport header",
        })
    }
}

/// Fails with [`WireError::Truncated`] unless `have >= need`.
pub(crate) fn ensure_len(layer: Layer, need: usize, have: usize) -> Result<(), WireError> {
    if have < need {
        Err(WireError::Truncated { layer, need, have })
    } else {
        Ok(())
    }
}

/// Reads the big-endian `u16` at `at`. Callers check lengths first; the
/// fallback keeps an unchecked read from ever panicking.
#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..).and_then(|s| s.get(..2)) {
        Some(&[x, y]) => u16::from_be_bytes([x, y]),
        _ => 0,
    }
}

/// Reads the big-endian `u32` at `at`; see [`be16`].
#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    match b.get(at..).and_then(|s| s.get(..4)) {
        Some(&[w, x, y, z]) => u32::from_be_bytes([w, x, y, z]),
        _ => 0,
    }
}

/// Reads the byte at `at`; see [`be16`].
#[inline]
pub(crate) fn byte(b: &[u8], at: usize) -> u8 {
    b.get(at).copied().unwrap_or(0)
}

/// Reads the `N` bytes at `at`; see [`be16`].
#[inline]
pub(crate) fn array<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    b.get(at..)
        .and_then(|s| s.get(..N))
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .unwrap_or([0; N])
}

/// The flags byte of a TCP header (byte 13: CWR ECE URG ACK PSH RST SYN FIN).
///
/// `Display` writes one letter per set flag in the order `FSRPAUEC` (so SYN+ACK
/// is `SA` and RST+ACK is `RA`, as scapy and most scanners print them), or `-`
/// when no flag is set.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No more data from sender.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// Synchronize sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// Push function.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// Acknowledgment field is significant.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// Urgent pointer field is significant.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECN-Echo (RFC 3168).
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// Congestion Window Reduced (RFC 3168).
    pub const CWR: TcpFlags = TcpFlags(0x80);

    /// Letters for `Display`, in bit order FIN first.
    const LETTERS: [(TcpFlags, char); 8] = [
        (TcpFlags::FIN, 'F'),
        (TcpFlags::SYN, 'S'),
        (TcpFlags::RST, 'R'),
        (TcpFlags::PSH, 'P'),
        (TcpFlags::ACK, 'A'),
        (TcpFlags::URG, 'U'),
        (TcpFlags::ECE, 'E'),
        (TcpFlags::CWR, 'C'),
    ];

    /// Whether every flag set in `other` is also set in `self`.
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any flag set in `other` is also set in `self`.
    pub const fn intersects(self, other: TcpFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl std::ops::BitAnd for TcpFlags {
    type Output = TcpFlags;
    fn bitand(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 & rhs.0)
    }
}

impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        for (flag, letter) in Self::LETTERS {
            if self.contains(flag) {
                fmt::Write::write_char(f, letter)?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for TcpFlags {
    // Letters read better than a number in logs and fuzz output, and all eight
    // bits have one, so nothing is lost.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TcpFlags({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_display_in_scanner_order() {
        assert_eq!((TcpFlags::SYN | TcpFlags::ACK).to_string(), "SA");
        assert_eq!((TcpFlags::RST | TcpFlags::ACK).to_string(), "RA");
        assert_eq!(
            (TcpFlags::FIN | TcpFlags::PSH | TcpFlags::ACK).to_string(),
            "FPA"
        );
        assert_eq!(TcpFlags(0xff).to_string(), "FSRPAUEC");
        assert_eq!(TcpFlags(0).to_string(), "-");
        assert_eq!(format!("{:?}", TcpFlags(0x12)), "TcpFlags(SA)");
    }

    #[test]
    fn flags_contains_and_intersects() {
        let sa = TcpFlags(0x12);
        assert!(sa.contains(TcpFlags::SYN));
        assert!(sa.contains(TcpFlags::SYN | TcpFlags::ACK));
        assert!(!sa.contains(TcpFlags::RST | TcpFlags::ACK));
        assert!(sa.intersects(TcpFlags::RST | TcpFlags::ACK));
        assert!(!sa.intersects(TcpFlags::RST));
        assert!(sa.contains(TcpFlags(0)));
        assert_eq!(sa & TcpFlags::ACK, TcpFlags::ACK);
    }

    #[test]
    fn byte_readers_never_panic() {
        let b = [1u8, 2, 3];
        assert_eq!(be16(&b, 0), 0x0102);
        assert_eq!(be16(&b, 2), 0);
        assert_eq!(be16(&b, usize::MAX - 1), 0);
        assert_eq!(be32(&b, 0), 0);
        assert_eq!(byte(&b, 3), 0);
        assert_eq!(array::<2>(&b, 1), [2, 3]);
        assert_eq!(array::<4>(&b, 0), [0; 4]);
    }

    #[test]
    fn errors_display() {
        let e = WireError::Truncated {
            layer: Layer::Tcp,
            need: 20,
            have: 8,
        };
        assert_eq!(e.to_string(), "TCP header truncated: need 20 bytes, have 8");
        assert_eq!(
            WireError::Unsupported("IPv4 non-first fragment").to_string(),
            "unsupported packet: IPv4 non-first fragment"
        );
    }
}
