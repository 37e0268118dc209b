//! ICMPv6 message view (RFC 4443).

use std::net::Ipv6Addr;

use crate::{Layer, PROTO_ICMPV6, WireError, array, be16, byte, checksum, ensure_len};

/// Length of the ICMPv6 header (type, code, checksum and the 4-byte message body start).
pub const HEADER_LEN: usize = 8;

/// Destination Unreachable.
pub const TYPE_DEST_UNREACHABLE: u8 = 1;
/// Packet Too Big.
pub const TYPE_PACKET_TOO_BIG: u8 = 2;
/// Time Exceeded.
pub const TYPE_TIME_EXCEEDED: u8 = 3;
/// Parameter Problem.
pub const TYPE_PARAM_PROBLEM: u8 = 4;
/// Echo Request.
pub const TYPE_ECHO_REQUEST: u8 = 128;
/// Echo Reply.
pub const TYPE_ECHO_REPLY: u8 = 129;

/// Destination Unreachable code: administratively prohibited.
pub const CODE_ADMIN_PROHIBITED: u8 = 1;
/// Destination Unreachable code: port unreachable.
pub const CODE_PORT_UNREACHABLE: u8 = 4;

/// A read-only view of an ICMPv6 message.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |     Type      |     Code      |          Checksum             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |           Identifier          |        Sequence Number        |  echo
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                    Unused / MTU / Pointer                     |  errors
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |   Data: echo payload, or for errors as much of the invoking   |
/// |   packet as possible without exceeding the minimum IPv6 MTU   |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// The checksum covers an IPv6 pseudo-header, so verifying it needs the
/// addresses: [`Packet::verify_checksum`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks that the 8-byte header is present.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        ensure_len(Layer::Icmpv6, HEADER_LEN, buffer.as_ref().len())?;
        Ok(Packet { buffer })
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// The message type.
    pub fn msg_type(&self) -> u8 {
        byte(self.bytes(), 0)
    }

    /// The message code.
    pub fn msg_code(&self) -> u8 {
        byte(self.bytes(), 1)
    }

    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.bytes(), 2)
    }

    /// The identifier of an echo request or reply.
    pub fn echo_ident(&self) -> u16 {
        be16(self.bytes(), 4)
    }

    /// The sequence number of an echo request or reply.
    pub fn echo_seq_no(&self) -> u16 {
        be16(self.bytes(), 6)
    }

    /// Bytes 4..8, whose meaning depends on the type (MTU for Packet Too Big,
    /// pointer for Parameter Problem).
    pub fn rest_of_header(&self) -> [u8; 4] {
        array::<4>(self.bytes(), 4)
    }

    /// Whether the type is one of the errors that [`crate::parse_reply`]
    /// reports: 1, 3 or 4. (Packet Too Big, 2, also quotes the packet but says
    /// nothing about reachability.)
    pub fn is_error(&self) -> bool {
        matches!(
            self.msg_type(),
            TYPE_DEST_UNREACHABLE | TYPE_TIME_EXCEEDED | TYPE_PARAM_PROBLEM
        )
    }

    /// Everything after the header: the echo data, or the quoted packet of an error.
    pub fn payload(&self) -> &[u8] {
        self.bytes().get(HEADER_LEN..).unwrap_or(&[])
    }

    /// Whether the checksum is correct for this message sent from `src` to `dst`.
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let b = self.bytes();
        let Ok(len) = u32::try_from(b.len()) else {
            return false;
        };
        let pseudo = checksum::pseudo_header_v6(src, dst, PROTO_ICMPV6, len);
        checksum::is_valid(checksum::combine(pseudo, checksum::sum(b)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{ECHO6, ICMP6_1_4};

    fn addrs() -> (Ipv6Addr, Ipv6Addr) {
        (
            "2001:db8:1::20".parse().unwrap(),
            "2001:db8::10".parse().unwrap(),
        )
    }

    #[test]
    fn reads_an_echo_reply() {
        let m = Packet::new_checked(&ECHO6[40..]).unwrap();
        assert_eq!(m.msg_type(), TYPE_ECHO_REPLY);
        assert_eq!(m.msg_code(), 0);
        assert_eq!(m.checksum(), 0xb16f);
        assert_eq!(m.echo_ident(), 0x4242);
        assert_eq!(m.echo_seq_no(), 9);
        assert!(!m.is_error());
        assert_eq!(m.payload(), b"HarbormasterPing");
        let (s, d) = addrs();
        assert!(m.verify_checksum(&s, &d));
        assert!(!m.verify_checksum(&d, &"2001:db8::11".parse().unwrap()));
    }

    #[test]
    fn reads_a_port_unreachable() {
        let m = Packet::new_checked(&ICMP6_1_4[40..]).unwrap();
        assert_eq!(
            (m.msg_type(), m.msg_code()),
            (TYPE_DEST_UNREACHABLE, CODE_PORT_UNREACHABLE)
        );
        assert_eq!(m.rest_of_header(), [0; 4]);
        assert!(m.is_error());
        assert_eq!(m.payload(), &ICMP6_1_4[48..]);
        let (s, d) = addrs();
        assert!(m.verify_checksum(&s, &d));
    }

    #[test]
    fn header_must_be_complete() {
        for n in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&ECHO6[40..40 + n]).unwrap_err(),
                WireError::Truncated {
                    layer: Layer::Icmpv6,
                    need: 8,
                    have: n
                }
            );
        }
    }
}
