//! IPv6 header view and extension-header walk (RFC 8200).

use std::net::Ipv6Addr;

use crate::{Layer, WireError, array, be16, be32, byte, ensure_len};

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;

/// Byte offsets of the fixed IPv6 header fields (see [`crate::ipv4::field`]).
pub mod field {
    /// Version (high nibble), traffic class and flow label (32 bits).
    pub const VER_TC_FLOW: usize = 0;
    /// Payload length (16 bits).
    pub const PAYLOAD_LEN: usize = 4;
    /// Next header.
    pub const NEXT_HEADER: usize = 6;
    /// Hop limit.
    pub const HOP_LIMIT: usize = 7;
    /// Source address (16 bytes).
    pub const SRC_ADDR: usize = 8;
    /// Destination address (16 bytes).
    pub const DST_ADDR: usize = 24;
}

/// Next header value of the Hop-by-Hop Options header.
pub const NEXT_HOP_BY_HOP: u8 = 0;
/// Next header value of the Routing header.
pub const NEXT_ROUTING: u8 = 43;
/// Next header value of the Fragment header.
pub const NEXT_FRAGMENT: u8 = 44;
/// Next header value meaning "nothing follows".
pub const NEXT_NONE: u8 = 59;
/// Next header value of the Destination Options header.
pub const NEXT_DEST_OPTS: u8 = 60;

/// A read-only view of an IPv6 packet.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |Version| Traffic Class |           Flow Label                  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |         Payload Length        |  Next Header  |   Hop Limit   |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                                                               |
/// +                                                               +
/// |                                                               |
/// +                         Source Address                        +
/// |                                                               |
/// +                                                               +
/// |                                                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                                                               |
/// +                                                               +
/// |                                                               |
/// +                      Destination Address                      +
/// |                                                               |
/// +                                                               +
/// |                                                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// Extension headers (if any) are part of [`Packet::payload`];
/// [`Packet::upper_layer`] walks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
    /// Where the payload ends: 40 + payload length for a whole packet, the end
    /// of the buffer for a quote.
    end: usize,
    /// Which layer truncation errors of the extension walk report.
    ext_layer: Layer,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks a complete packet: at least 40 bytes, version 6, and the payload
    /// length within the buffer. Bytes past it (link-layer padding) are ignored.
    ///
    /// A payload length of zero is taken at its word (an empty payload); jumbograms
    /// (RFC 2675) are not supported and then fail in the upper layer.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        check_header(b, Layer::Ipv6)?;
        let end = HEADER_LEN + usize::from(be16(b, 4));
        ensure_len(Layer::Ipv6, end, b.len())?;
        Ok(Packet {
            buffer,
            end,
            ext_layer: Layer::Ipv6Extension,
        })
    }

    /// Checks only the fixed header, for the copy of our own packet that an
    /// ICMPv6 error quotes: the payload length describes the original, not the
    /// quote, so the payload runs to the end of the buffer.
    pub fn new_quoted(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        check_header(b, Layer::QuotedIp)?;
        let end = b.len();
        Ok(Packet {
            buffer,
            end,
            ext_layer: Layer::QuotedIp,
        })
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// The version field (always 6 once checked).
    pub fn version(&self) -> u8 {
        byte(self.bytes(), field::VER_TC_FLOW) >> 4
    }

    /// The traffic class (DSCP and ECN).
    pub fn traffic_class(&self) -> u8 {
        ((be16(self.bytes(), field::VER_TC_FLOW) >> 4) & 0xff) as u8
    }

    /// The 20-bit flow label.
    pub fn flow_label(&self) -> u32 {
        be32(self.bytes(), 0) & 0x000f_ffff
    }

    /// The payload length field: bytes after the fixed header, extension
    /// headers included.
    pub fn payload_len(&self) -> u16 {
        be16(self.bytes(), field::PAYLOAD_LEN)
    }

    /// The next header field of the fixed header.
    pub fn next_header(&self) -> u8 {
        byte(self.bytes(), field::NEXT_HEADER)
    }

    /// The hop limit.
    pub fn hop_limit(&self) -> u8 {
        byte(self.bytes(), field::HOP_LIMIT)
    }

    /// The source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(array::<16>(self.bytes(), field::SRC_ADDR))
    }

    /// The destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(array::<16>(self.bytes(), field::DST_ADDR))
    }

    /// Everything after the fixed header: up to the payload length for a
    /// checked packet, up to the end of the buffer for a quote.
    pub fn payload(&self) -> &[u8] {
        self.bytes().get(HEADER_LEN..self.end).unwrap_or(&[])
    }

    /// Walks the extension headers to the upper-layer protocol; see
    /// [`walk_extensions`].
    pub fn upper_layer(&self) -> Result<UpperLayer<'_>, WireError> {
        walk(self.next_header(), self.payload(), self.ext_layer)
    }
}

fn check_header(b: &[u8], layer: Layer) -> Result<(), WireError> {
    ensure_len(layer, HEADER_LEN, b.len())?;
    if byte(b, 0) >> 4 != 6 {
        return Err(WireError::Malformed("IPv6 version field is not 6"));
    }
    Ok(())
}

/// The upper-layer protocol of an IPv6 packet and its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer<'a> {
    /// The protocol number (next header value) of the upper layer, e.g.
    /// [`crate::PROTO_TCP`]; [`NEXT_NONE`] when nothing follows.
    pub protocol: u8,
    /// Total length of the extension headers that were skipped.
    pub ext_len: usize,
    /// The upper-layer header and data.
    pub payload: &'a [u8],
}

/// Walks the extension headers that can stand between the IPv6 header and a
/// transport header (Hop-by-Hop 0, Routing 43, Fragment 44, Destination
/// Options 60) and returns the first other next header value with its bytes.
///
/// `next_header` is the fixed header's next header field and `data` the
/// payload after the fixed header. A fragment header with a non-zero offset is
/// [`WireError::Unsupported`]: a non-first fragment carries no transport
/// header. Other values, including Authentication Header (51) and ESP (50),
/// end the walk and are reported as the upper layer.
pub fn walk_extensions(next_header: u8, data: &[u8]) -> Result<UpperLayer<'_>, WireError> {
    walk(next_header, data, Layer::Ipv6Extension)
}

fn walk(mut next: u8, data: &[u8], layer: Layer) -> Result<UpperLayer<'_>, WireError> {
    let mut off = 0usize;
    // Every header moves `off` forward by at least 8 bytes, so the walk ends
    // after at most data.len() / 8 steps.
    loop {
        let rest = data.get(off..).unwrap_or(&[]);
        match next {
            NEXT_HOP_BY_HOP | NEXT_ROUTING | NEXT_DEST_OPTS => {
                // Next Header, Hdr Ext Len (in 8-octet units, not counting the first 8).
                ensure_len(layer, off + 2, data.len())?;
                let len = (usize::from(byte(rest, 1)) + 1) * 8;
                ensure_len(layer, off + len, data.len())?;
                next = byte(rest, 0);
                off += len;
            }
            NEXT_FRAGMENT => {
                // Next Header, reserved, offset(13 bits) res(2) M(1), identification(32).
                ensure_len(layer, off + 8, data.len())?;
                if be16(rest, 2) >> 3 != 0 {
                    return Err(WireError::Unsupported("IPv6 non-first fragment"));
                }
                next = byte(rest, 0);
                off += 8;
            }
            protocol => {
                return Ok(UpperLayer {
                    protocol,
                    ext_len: off,
                    payload: rest,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{SYN6, SYNACK6};

    fn v6(next: u8, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0x60, 0, 0, 0];
        b.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        b.extend_from_slice(&[next, 64]);
        b.extend_from_slice(&"2001:db8:1::20".parse::<Ipv6Addr>().unwrap().octets());
        b.extend_from_slice(&"2001:db8::10".parse::<Ipv6Addr>().unwrap().octets());
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn reads_every_field_of_a_syn_ack() {
        let p = Packet::new_checked(&SYNACK6[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0);
        assert_eq!(p.flow_label(), 0);
        assert_eq!(p.payload_len(), 24);
        assert_eq!(p.next_header(), crate::PROTO_TCP);
        assert_eq!(p.hop_limit(), 57);
        assert_eq!(p.src_addr(), "2001:db8:1::20".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.dst_addr(), "2001:db8::10".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.payload(), &SYNACK6[40..]);
        let up = p.upper_layer().unwrap();
        assert_eq!(
            (up.protocol, up.ext_len, up.payload),
            (6, 0, &SYNACK6[40..])
        );
    }

    #[test]
    fn traffic_class_and_flow_label() {
        let mut b = SYNACK6;
        b[..4].copy_from_slice(&[0x6a, 0xbc, 0xde, 0xf1]);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.traffic_class(), 0xab);
        assert_eq!(p.flow_label(), 0xcdef1);
    }

    #[test]
    fn every_strict_prefix_is_rejected() {
        for n in 0..SYNACK6.len() {
            assert!(Packet::new_checked(&SYNACK6[..n]).is_err(), "prefix {n}");
        }
        assert_eq!(
            Packet::new_checked(&SYNACK6[..50]).unwrap_err(),
            WireError::Truncated {
                layer: Layer::Ipv6,
                need: 64,
                have: 50
            }
        );
    }

    #[test]
    fn version_must_be_6() {
        let mut b = SYNACK6;
        b[0] = 0x45;
        assert!(matches!(
            Packet::new_checked(&b[..]),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn padding_is_ignored_and_quotes_run_to_the_end() {
        let mut b = SYN6.to_vec();
        b.extend_from_slice(&[0xee; 4]);
        assert_eq!(Packet::new_checked(&b[..]).unwrap().payload(), &SYN6[40..]);
        let q = Packet::new_quoted(&SYN6[..48]).unwrap();
        assert_eq!(q.payload(), &SYN6[40..48]);
    }

    #[test]
    fn walks_hop_by_hop_dest_opts_routing_and_first_fragment() {
        let tcp = &SYNACK6[40..];
        let mut payload = Vec::new();
        // Hop-by-Hop: next = Destination Options, length 0 (8 bytes), PadN.
        payload.extend_from_slice(&[NEXT_DEST_OPTS, 0, 1, 4, 0, 0, 0, 0]);
        // Destination Options: next = Routing, length 1 (16 bytes).
        payload.extend_from_slice(&[NEXT_ROUTING, 1, 1, 12]);
        payload.extend_from_slice(&[0; 12]);
        // Routing (type 0 with no addresses left): next = Fragment.
        payload.extend_from_slice(&[NEXT_FRAGMENT, 0, 0, 0, 0, 0, 0, 0]);
        // Fragment: next = TCP, offset 0, M=1, identification.
        payload.extend_from_slice(&[6, 0, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef]);
        payload.extend_from_slice(tcp);
        let b = v6(NEXT_HOP_BY_HOP, &payload);
        let p = Packet::new_checked(&b[..]).unwrap();
        let up = p.upper_layer().unwrap();
        assert_eq!(up.protocol, 6);
        assert_eq!(up.ext_len, 40);
        assert_eq!(up.payload, tcp);

        // etherparse agrees on where the transport header starts.
        let theirs = etherparse::Ipv6Slice::from_slice(&b).unwrap();
        assert_eq!(theirs.payload().payload, up.payload);
        assert_eq!(theirs.payload().ip_number.0, up.protocol);
    }

    #[test]
    fn non_first_fragment_is_unsupported() {
        // Fragment at offset 1480 (185 units).
        let frag = [6, 0, 0x05, 0xc8, 0, 0, 0, 1];
        let mut payload = frag.to_vec();
        payload.extend_from_slice(&[0; 24]);
        let b = v6(NEXT_FRAGMENT, &payload);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            p.upper_layer().unwrap_err(),
            WireError::Unsupported("IPv6 non-first fragment")
        );
    }

    #[test]
    fn truncated_extension_headers() {
        // Destination Options claiming 16 bytes but only 10 present.
        let b = v6(NEXT_DEST_OPTS, &[6, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            p.upper_layer().unwrap_err(),
            WireError::Truncated {
                layer: Layer::Ipv6Extension,
                need: 16,
                have: 10
            }
        );
        // Only one byte of a Hop-by-Hop header.
        assert_eq!(
            walk_extensions(NEXT_HOP_BY_HOP, &[6]).unwrap_err(),
            WireError::Truncated {
                layer: Layer::Ipv6Extension,
                need: 2,
                have: 1
            }
        );
        // Fragment header cut short.
        assert!(walk_extensions(NEXT_FRAGMENT, &[6, 0, 0, 0]).is_err());
        // Nothing at all after a next header of "no next header" is fine.
        let up = walk_extensions(NEXT_NONE, &[]).unwrap();
        assert_eq!((up.protocol, up.payload.len()), (NEXT_NONE, 0));
    }

    #[test]
    fn quoted_extension_truncation_reports_the_quote() {
        let b = v6(NEXT_DEST_OPTS, &[6, 1, 0, 0]);
        let q = Packet::new_quoted(&b[..]).unwrap();
        assert_eq!(
            q.upper_layer().unwrap_err(),
            WireError::Truncated {
                layer: Layer::QuotedIp,
                need: 16,
                have: 4
            }
        );
    }

    #[test]
    fn long_chains_terminate() {
        // 1000 empty Destination Options headers, each pointing to the next.
        let mut payload = Vec::new();
        for _ in 0..1000 {
            payload.extend_from_slice(&[NEXT_DEST_OPTS, 0, 1, 4, 0, 0, 0, 0]);
        }
        let err = walk_extensions(NEXT_DEST_OPTS, &payload).unwrap_err();
        assert_eq!(
            err,
            WireError::Truncated {
                layer: Layer::Ipv6Extension,
                need: 8002,
                have: 8000
            }
        );
    }
}
