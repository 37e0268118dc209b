//! IPv4 header view (RFC 791).

use std::net::Ipv4Addr;

use crate::{Layer, WireError, array, be16, byte, checksum, ensure_len};

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;

/// Byte offsets of the IPv4 header fields, named once for every reader and
/// writer of the layout (the views below, the probe builders, the kernel
/// packet filter).
pub mod field {
    /// Version (high nibble) and header length in 32-bit words (low nibble).
    pub const VER_IHL: usize = 0;
    /// Type of service.
    pub const TOS: usize = 1;
    /// Total length (16 bits).
    pub const LENGTH: usize = 2;
    /// Identification (16 bits).
    pub const IDENT: usize = 4;
    /// Flags and fragment offset (16 bits).
    pub const FLAGS_FRAG: usize = 6;
    /// Time to live.
    pub const TTL: usize = 8;
    /// Payload protocol.
    pub const PROTOCOL: usize = 9;
    /// Header checksum (16 bits).
    pub const CHECKSUM: usize = 10;
    /// Source address (4 bytes).
    pub const SRC_ADDR: usize = 12;
    /// Destination address (4 bytes).
    pub const DST_ADDR: usize = 16;
}

/// "Don't Fragment" bit in the flags/fragment-offset word.
pub const FLAG_DF: u16 = 0x4000;
/// "More Fragments" bit in the flags/fragment-offset word.
pub const FLAG_MF: u16 = 0x2000;

/// A read-only view of an IPv4 packet.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |Version|  IHL  |Type of Service|          Total Length         |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |         Identification        |Flags|      Fragment Offset    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Time to Live |    Protocol   |         Header Checksum       |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                       Source Address                          |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                    Destination Address                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                    Options                    |    Padding    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// Built with [`Packet::new_checked`] (a whole received datagram) or
/// [`Packet::new_quoted`] (the start of a datagram quoted in an ICMP error);
/// either way every accessor reads only bytes that were checked to exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
    /// Where the payload ends: the total length for a whole datagram, the end
    /// of the buffer for a quote.
    end: usize,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks a complete datagram: at least 20 bytes, version 4, IHL at least 5,
    /// the header within the buffer, and a total length no shorter than the
    /// header and no longer than the buffer. Bytes past the total length
    /// (Ethernet padding of short frames) are allowed and ignored.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        let header_len = check_header(b, Layer::Ipv4)?;
        let total = usize::from(be16(b, 2));
        if total < header_len {
            return Err(WireError::Malformed(
                "IPv4 total length is shorter than its header",
            ));
        }
        ensure_len(Layer::Ipv4, total, b.len())?;
        Ok(Packet { buffer, end: total })
    }

    /// Checks only the header, for the copy of our own datagram that an ICMP
    /// error quotes: a router quotes the header and as little as 8 bytes of
    /// what follows, so the total length (which describes the original) is not
    /// compared with the buffer and the payload runs to the end of the buffer.
    pub fn new_quoted(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        check_header(b, Layer::QuotedIp)?;
        let end = b.len();
        Ok(Packet { buffer, end })
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// The version field (always 4 once checked).
    pub fn version(&self) -> u8 {
        byte(self.bytes(), field::VER_IHL) >> 4
    }

    /// The header length in bytes (IHL × 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(byte(self.bytes(), field::VER_IHL) & 0x0f) * 4
    }

    /// The type-of-service byte (DSCP and ECN).
    pub fn tos(&self) -> u8 {
        byte(self.bytes(), field::TOS)
    }

    /// The total length field: header plus payload, in bytes.
    pub fn total_len(&self) -> u16 {
        be16(self.bytes(), field::LENGTH)
    }

    /// The identification field.
    pub fn ident(&self) -> u16 {
        be16(self.bytes(), field::IDENT)
    }

    /// Whether "Don't Fragment" is set.
    pub fn dont_frag(&self) -> bool {
        be16(self.bytes(), field::FLAGS_FRAG) & FLAG_DF != 0
    }

    /// Whether "More Fragments" is set.
    pub fn more_frags(&self) -> bool {
        be16(self.bytes(), field::FLAGS_FRAG) & FLAG_MF != 0
    }

    /// The fragment offset in bytes (the field counts 8-byte units).
    pub fn frag_offset(&self) -> u16 {
        (be16(self.bytes(), field::FLAGS_FRAG) & 0x1fff) << 3
    }

    /// The time-to-live field.
    pub fn ttl(&self) -> u8 {
        byte(self.bytes(), field::TTL)
    }

    /// The protocol of the payload (see the `PROTO_*` constants).
    pub fn protocol(&self) -> u8 {
        byte(self.bytes(), field::PROTOCOL)
    }

    /// The header checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.bytes(), field::CHECKSUM)
    }

    /// The source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(array::<4>(self.bytes(), field::SRC_ADDR))
    }

    /// The destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(array::<4>(self.bytes(), field::DST_ADDR))
    }

    /// The options, between the fixed header and the payload.
    pub fn options(&self) -> &[u8] {
        self.bytes()
            .get(HEADER_LEN..self.header_len())
            .unwrap_or(&[])
    }

    /// The payload: up to the total length for a checked datagram, up to the
    /// end of the buffer for a quote.
    pub fn payload(&self) -> &[u8] {
        self.bytes().get(self.header_len()..self.end).unwrap_or(&[])
    }

    /// Whether the header checksum is correct.
    ///
    /// [`crate::parse_reply`] does not call this: a reply is authenticated by
    /// the engine's cookie, which a corrupted header fails anyway, and the
    /// header of a quote has often been rewritten by routers and NATs.
    pub fn verify_checksum(&self) -> bool {
        let header = self.bytes().get(..self.header_len()).unwrap_or(&[]);
        !header.is_empty() && checksum::is_valid(checksum::sum(header))
    }
}

/// Header checks shared by whole datagrams and quotes; returns the header length.
fn check_header(b: &[u8], layer: Layer) -> Result<usize, WireError> {
    ensure_len(layer, HEADER_LEN, b.len())?;
    if byte(b, 0) >> 4 != 4 {
        return Err(WireError::Malformed("IPv4 version field is not 4"));
    }
    let header_len = usize::from(byte(b, 0) & 0x0f) * 4;
    if header_len < HEADER_LEN {
        return Err(WireError::Malformed("IPv4 header length (IHL) is below 5"));
    }
    ensure_len(layer, header_len, b.len())?;
    Ok(header_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{RSTACK4, SYNACK4};

    #[test]
    fn reads_every_field_of_a_syn_ack() {
        let p = Packet::new_checked(&SYNACK4[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.tos(), 0);
        assert_eq!(p.total_len(), 44);
        assert_eq!(p.ident(), 0);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert_eq!(p.ttl(), 52);
        assert_eq!(p.protocol(), crate::PROTO_TCP);
        assert_eq!(p.checksum(), 0x5a7a);
        assert!(p.verify_checksum());
        assert_eq!(p.src_addr(), Ipv4Addr::new(198, 51, 100, 20));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(192, 0, 2, 10));
        assert_eq!(p.options(), &[] as &[u8]);
        assert_eq!(p.payload(), &SYNACK4[20..]);
    }

    #[test]
    fn ethernet_padding_is_ignored() {
        // A 40-byte RST in a minimum-size Ethernet frame arrives with 6 bytes of padding.
        let mut padded = RSTACK4.to_vec();
        padded.extend_from_slice(&[0; 6]);
        let p = Packet::new_checked(&padded[..]).unwrap();
        assert_eq!(p.payload(), &RSTACK4[20..]);
    }

    #[test]
    fn options_are_skipped() {
        // IHL 6: one 4-byte option (NOP NOP NOP EOL) before the payload.
        let mut b = vec![
            0x46, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        b.extend_from_slice(&[1, 1, 1, 0]);
        b.extend_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        assert_eq!(p.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
    }

    #[test]
    fn every_strict_prefix_is_rejected() {
        for n in 0..SYNACK4.len() {
            assert!(Packet::new_checked(&SYNACK4[..n]).is_err(), "prefix {n}");
        }
        assert_eq!(
            Packet::new_checked(&SYNACK4[..10]).unwrap_err(),
            WireError::Truncated {
                layer: Layer::Ipv4,
                need: 20,
                have: 10
            }
        );
        assert_eq!(
            Packet::new_checked(&SYNACK4[..30]).unwrap_err(),
            WireError::Truncated {
                layer: Layer::Ipv4,
                need: 44,
                have: 30
            }
        );
    }

    #[test]
    fn bad_headers_are_rejected() {
        let mut b = SYNACK4;
        b[0] = 0x44; // IHL 4
        assert!(matches!(
            Packet::new_checked(&b[..]),
            Err(WireError::Malformed(_))
        ));
        b[0] = 0x40; // IHL 0
        assert!(matches!(
            Packet::new_checked(&b[..]),
            Err(WireError::Malformed(_))
        ));
        b[0] = 0x4f; // IHL 15: 60 bytes, more than the 44 there are
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap_err(),
            WireError::Truncated {
                layer: Layer::Ipv4,
                need: 60,
                have: 44
            }
        );
        b[0] = 0x65; // version 6 with an IPv4 layout
        assert!(matches!(
            Packet::new_checked(&b[..]),
            Err(WireError::Malformed(_))
        ));
        b[0] = 0x45;
        b[2..4].copy_from_slice(&19u16.to_be_bytes()); // total length inside the header
        assert!(matches!(
            Packet::new_checked(&b[..]),
            Err(WireError::Malformed(_))
        ));
        b[2..4].copy_from_slice(&0u16.to_be_bytes());
        assert!(matches!(
            Packet::new_checked(&b[..]),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn quotes_ignore_the_total_length() {
        // The first 28 bytes of a 44-byte SYN, as an ICMP error quotes it.
        let q = Packet::new_quoted(&crate::fixtures::SYN4[..28]).unwrap();
        assert_eq!(q.total_len(), 44);
        assert_eq!(q.payload(), &crate::fixtures::SYN4[20..28]);
        assert!(Packet::new_checked(&crate::fixtures::SYN4[..28]).is_err());
        assert_eq!(
            Packet::new_quoted(&crate::fixtures::SYN4[..19]).unwrap_err(),
            WireError::Truncated {
                layer: Layer::QuotedIp,
                need: 20,
                have: 19
            }
        );
    }

    #[test]
    fn fragment_fields() {
        let mut b = SYNACK4;
        b[6..8].copy_from_slice(&(FLAG_MF | 185).to_be_bytes());
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.more_frags());
        assert!(!p.dont_frag());
        assert_eq!(p.frag_offset(), 1480);
        assert!(!p.verify_checksum());
    }

    #[test]
    fn agrees_with_etherparse() {
        let ours = Packet::new_checked(&SYNACK4[..]).unwrap();
        let theirs = etherparse::Ipv4HeaderSlice::from_slice(&SYNACK4).unwrap();
        assert_eq!(ours.src_addr(), theirs.source_addr());
        assert_eq!(ours.dst_addr(), theirs.destination_addr());
        assert_eq!(ours.ttl(), theirs.ttl());
        assert_eq!(ours.protocol(), theirs.protocol().0);
        assert_eq!(ours.ident(), theirs.identification());
        assert_eq!(ours.checksum(), theirs.to_header().calc_header_checksum());
    }
}
