//! TCP header view (RFC 9293).

use std::net::IpAddr;

use crate::{Layer, PROTO_TCP, TcpFlags, WireError, be16, be32, byte, checksum, ensure_len};

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = 20;

/// TCP option kind: end of option list.
pub const OPT_END: u8 = 0;
/// TCP option kind: no-operation (padding).
pub const OPT_NOP: u8 = 1;
/// TCP option kind: maximum segment size (length 4).
pub const OPT_MSS: u8 = 2;

/// A read-only view of a TCP segment.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |          Source Port          |       Destination Port        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                        Sequence Number                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                    Acknowledgment Number                      |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Data |       |C|E|U|A|P|R|S|F|                               |
/// | Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
/// |       |       |R|E|G|K|H|T|N|N|                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |           Checksum            |         Urgent Pointer        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                           [Options]                           |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                             Data                              |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// The buffer is the whole segment (the IP payload), so the payload is
/// everything after the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks that the fixed header is present, the data offset is at least 5
    /// and the header with its options fits in the buffer.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        ensure_len(Layer::Tcp, HEADER_LEN, b.len())?;
        let header_len = usize::from(byte(b, 12) >> 4) * 4;
        if header_len < HEADER_LEN {
            return Err(WireError::Malformed("TCP data offset is below 5"));
        }
        ensure_len(Layer::Tcp, header_len, b.len())?;
        Ok(Packet { buffer })
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// The source port.
    pub fn src_port(&self) -> u16 {
        be16(self.bytes(), 0)
    }

    /// The destination port.
    pub fn dst_port(&self) -> u16 {
        be16(self.bytes(), 2)
    }

    /// The sequence number.
    pub fn seq_number(&self) -> u32 {
        be32(self.bytes(), 4)
    }

    /// The acknowledgment number (meaningful when ACK is set).
    pub fn ack_number(&self) -> u32 {
        be32(self.bytes(), 8)
    }

    /// The header length in bytes (data offset × 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(byte(self.bytes(), 12) >> 4) * 4
    }

    /// The eight flag bits CWR..FIN.
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(byte(self.bytes(), 13))
    }

    /// The window size.
    pub fn window_len(&self) -> u16 {
        be16(self.bytes(), 14)
    }

    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.bytes(), 16)
    }

    /// The urgent pointer.
    pub fn urgent_at(&self) -> u16 {
        be16(self.bytes(), 18)
    }

    /// The raw options, between the fixed header and the data.
    pub fn options(&self) -> &[u8] {
        self.bytes()
            .get(HEADER_LEN..self.header_len())
            .unwrap_or(&[])
    }

    /// The maximum segment size option, if present and well formed.
    pub fn mss(&self) -> Option<u16> {
        let mut opts = self.options();
        while let [kind, rest @ ..] = opts {
            match *kind {
                OPT_END => return None,
                OPT_NOP => opts = rest,
                _ => {
                    let len = usize::from(*rest.first()?);
                    let body = opts.get(2..len)?;
                    if *kind == OPT_MSS {
                        return match body {
                            &[hi, lo] => Some(u16::from_be_bytes([hi, lo])),
                            _ => None,
                        };
                    }
                    // `body` exists, so len >= 2 and the walk advances.
                    opts = opts.get(len..)?;
                }
            }
        }
        None
    }

    /// The data after the header.
    pub fn payload(&self) -> &[u8] {
        self.bytes().get(self.header_len()..).unwrap_or(&[])
    }

    /// Whether the checksum is correct for this segment sent from `src` to
    /// `dst` (false for addresses of different families).
    ///
    /// [`crate::parse_reply`] does not call this; see its documentation.
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        let b = self.bytes();
        let Ok(len) = u32::try_from(b.len()) else {
            return false;
        };
        match checksum::pseudo_header(src, dst, PROTO_TCP, len) {
            Some(pseudo) => checksum::is_valid(checksum::combine(pseudo, checksum::sum(b))),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{RSTACK4, SYNACK4, SYNACK6};

    #[test]
    fn reads_every_field_of_a_syn_ack() {
        let t = Packet::new_checked(&SYNACK4[20..]).unwrap();
        assert_eq!(t.src_port(), 443);
        assert_eq!(t.dst_port(), 40000);
        assert_eq!(t.seq_number(), 0x8a3b_1c2d);
        assert_eq!(t.ack_number(), 0x1234_5679);
        assert_eq!(t.header_len(), 24);
        assert_eq!(t.flags(), TcpFlags::SYN | TcpFlags::ACK);
        assert_eq!(t.window_len(), 64240);
        assert_eq!(t.checksum(), 0x03c2);
        assert_eq!(t.urgent_at(), 0);
        assert_eq!(t.options(), &[2, 4, 0x05, 0xb4]);
        assert_eq!(t.mss(), Some(1460));
        assert_eq!(t.payload(), &[] as &[u8]);
        let (src, dst) = (
            "198.51.100.20".parse().unwrap(),
            "192.0.2.10".parse().unwrap(),
        );
        assert!(t.verify_checksum(src, dst));
    }

    #[test]
    fn verifies_v6_checksums_and_rejects_mixed_families() {
        let t = Packet::new_checked(&SYNACK6[40..]).unwrap();
        let src: IpAddr = "2001:db8:1::20".parse().unwrap();
        let dst: IpAddr = "2001:db8::10".parse().unwrap();
        assert!(t.verify_checksum(src, dst));
        assert!(!t.verify_checksum(src, "192.0.2.10".parse().unwrap()));
        let mut bad = SYNACK6;
        bad[50] ^= 0x40;
        assert!(
            !Packet::new_checked(&bad[40..])
                .unwrap()
                .verify_checksum(src, dst)
        );
    }

    #[test]
    fn rst_ack_has_no_options() {
        let t = Packet::new_checked(&RSTACK4[20..]).unwrap();
        assert_eq!(t.flags().to_string(), "RA");
        assert_eq!(t.header_len(), 20);
        assert_eq!(t.options(), &[] as &[u8]);
        assert_eq!(t.mss(), None);
    }

    #[test]
    fn every_strict_prefix_is_rejected() {
        let seg = &SYNACK4[20..];
        for n in 0..seg.len() {
            assert!(Packet::new_checked(&seg[..n]).is_err(), "prefix {n}");
        }
        assert_eq!(
            Packet::new_checked(&seg[..22]).unwrap_err(),
            WireError::Truncated {
                layer: Layer::Tcp,
                need: 24,
                have: 22
            }
        );
    }

    #[test]
    fn data_offset_bounds() {
        let mut seg = SYNACK4[20..].to_vec();
        seg[12] = 0x40;
        assert!(matches!(
            Packet::new_checked(&seg[..]),
            Err(WireError::Malformed(_))
        ));
        seg[12] = 0xf0;
        assert_eq!(
            Packet::new_checked(&seg[..]).unwrap_err(),
            WireError::Truncated {
                layer: Layer::Tcp,
                need: 60,
                have: 24
            }
        );
    }

    #[test]
    fn odd_option_lists() {
        let mut seg = vec![0u8; 20];
        seg[12] = 0x80; // 32-byte header, 12 bytes of options
        let cases: [(&[u8; 12], Option<u16>); 5] = [
            (&[1, 1, 2, 4, 0x05, 0xdc, 0, 0, 0, 0, 0, 0], Some(1500)),
            (&[3, 3, 7, 2, 4, 0x02, 0x18, 0, 0, 0, 0, 0], Some(536)),
            (&[2, 3, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0], None),
            (&[8, 0, 2, 4, 1, 1, 0, 0, 0, 0, 0, 0], None),
            (&[8, 40, 2, 4, 1, 1, 0, 0, 0, 0, 0, 0], None),
        ];
        for (opts, want) in cases {
            let mut s = seg.clone();
            s.extend_from_slice(opts);
            assert_eq!(Packet::new_checked(&s[..]).unwrap().mss(), want, "{opts:?}");
        }
    }
}
