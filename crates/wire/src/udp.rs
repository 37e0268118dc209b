//! UDP header view (RFC 768).

use std::net::IpAddr;

use crate::{Layer, PROTO_UDP, WireError, be16, checksum, ensure_len};

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

/// A read-only view of a UDP datagram.
///
/// ```text
///  0      7 8     15 16    23 24    31
/// +--------+--------+--------+--------+
/// |     Source      |   Destination   |
/// |      Port       |      Port       |
/// +--------+--------+--------+--------+
/// |                 |                 |
/// |     Length      |    Checksum     |
/// +--------+--------+--------+--------+
/// |
/// |          data octets ...
/// +---------------- ...
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks that the header is present and that the length field is at
    /// least 8 and within the buffer. Bytes past the length are ignored.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        ensure_len(Layer::Udp, HEADER_LEN, b.len())?;
        let len = usize::from(be16(b, 4));
        if len < HEADER_LEN {
            return Err(WireError::Malformed(
                "UDP length is shorter than its header",
            ));
        }
        ensure_len(Layer::Udp, len, b.len())?;
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

    /// The length field: header plus data, in bytes.
    pub fn len(&self) -> u16 {
        be16(self.bytes(), 4)
    }

    /// Whether the datagram carries no data (length 8).
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    /// The checksum field (0 over IPv4 means "not computed").
    pub fn checksum(&self) -> u16 {
        be16(self.bytes(), 6)
    }

    /// The data, as long as the length field says.
    pub fn payload(&self) -> &[u8] {
        self.bytes()
            .get(HEADER_LEN..usize::from(self.len()))
            .unwrap_or(&[])
    }

    /// Whether the checksum is correct for this datagram sent from `src` to
    /// `dst` (a zero checksum over IPv4 counts as correct, as RFC 768 says;
    /// false for addresses of different families).
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        if src.is_ipv4() && dst.is_ipv4() && self.checksum() == 0 {
            return true;
        }
        let dgram = self.bytes().get(..usize::from(self.len())).unwrap_or(&[]);
        match checksum::pseudo_header(src, dst, PROTO_UDP, u32::from(self.len())) {
            Some(pseudo) => checksum::is_valid(checksum::combine(pseudo, checksum::sum(dgram))),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{ICMP4_3_3, ICMP6_1_4};

    #[test]
    fn reads_every_field() {
        // The UDP datagram quoted whole inside the ICMPv6 fixture.
        let u = Packet::new_checked(&ICMP6_1_4[88..]).unwrap();
        assert_eq!(u.src_port(), 40003);
        assert_eq!(u.dst_port(), 161);
        assert_eq!(u.len(), 12);
        assert!(!u.is_empty());
        assert_eq!(u.checksum(), 0xd527);
        assert_eq!(u.payload(), &[0x30, 0x26, 0x02, 0x01]);
        let (s, d) = (
            "2001:db8::10".parse().unwrap(),
            "2001:db8:1::20".parse().unwrap(),
        );
        assert!(u.verify_checksum(s, d));
        assert!(!u.verify_checksum(s, "192.0.2.10".parse().unwrap()));

        let u4 = Packet::new_checked(&ICMP4_3_3[48..]).unwrap();
        let (s, d) = (
            "192.0.2.10".parse().unwrap(),
            "198.51.100.20".parse().unwrap(),
        );
        assert!(u4.verify_checksum(s, d));
    }

    #[test]
    fn zero_checksum_means_none_over_ipv4_only() {
        let mut b = ICMP4_3_3[48..].to_vec();
        b[6..8].copy_from_slice(&[0, 0]);
        let u = Packet::new_checked(&b[..]).unwrap();
        let (s, d) = (
            "192.0.2.10".parse().unwrap(),
            "198.51.100.20".parse().unwrap(),
        );
        assert!(u.verify_checksum(s, d));
        let (s6, d6) = (
            "2001:db8::10".parse().unwrap(),
            "2001:db8:1::20".parse().unwrap(),
        );
        assert!(!u.verify_checksum(s6, d6));
    }

    #[test]
    fn length_field_bounds() {
        let d = &ICMP4_3_3[48..];
        for n in 0..d.len() {
            assert!(Packet::new_checked(&d[..n]).is_err(), "prefix {n}");
        }
        let mut b = d.to_vec();
        b[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert!(matches!(
            Packet::new_checked(&b[..]),
            Err(WireError::Malformed(_))
        ));
        b[4..6].copy_from_slice(&8u16.to_be_bytes());
        let u = Packet::new_checked(&b[..]).unwrap();
        assert!(u.is_empty());
        assert_eq!(u.payload(), &[] as &[u8]);
        b[4..6].copy_from_slice(&13u16.to_be_bytes());
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap_err(),
            WireError::Truncated {
                layer: Layer::Udp,
                need: 13,
                have: 12
            }
        );
    }
}
