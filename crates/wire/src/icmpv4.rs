//! ICMPv4 message view (RFC 792).

use crate::{Layer, WireError, array, be16, byte, checksum, ensure_len};

/// Length of the ICMP header (type, code, checksum and the 4-byte rest of header).
pub const HEADER_LEN: usize = 8;

/// Echo Reply.
pub const TYPE_ECHO_REPLY: u8 = 0;
/// Destination Unreachable.
pub const TYPE_DEST_UNREACHABLE: u8 = 3;
/// Echo (request).
pub const TYPE_ECHO_REQUEST: u8 = 8;
/// Time Exceeded.
pub const TYPE_TIME_EXCEEDED: u8 = 11;
/// Parameter Problem.
pub const TYPE_PARAM_PROBLEM: u8 = 12;

/// Destination Unreachable code: port unreachable.
pub const CODE_PORT_UNREACHABLE: u8 = 3;
/// Destination Unreachable code: communication administratively prohibited (RFC 1812).
pub const CODE_ADMIN_PROHIBITED: u8 = 13;

/// A read-only view of an ICMPv4 message.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |     Type      |     Code      |          Checksum             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |           Identifier          |        Sequence Number        |  echo
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                             unused                            |  errors
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |   Data: echo payload, or for errors the Internet Header +     |
/// |         at least 64 bits of the Original Data Datagram        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks that the 8-byte header is present.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        ensure_len(Layer::Icmpv4, HEADER_LEN, buffer.as_ref().len())?;
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

    /// Bytes 4..8, whose meaning depends on the type.
    pub fn rest_of_header(&self) -> [u8; 4] {
        array::<4>(self.bytes(), 4)
    }

    /// Whether the type is one of the errors that quote the offending datagram
    /// and that [`crate::parse_reply`] reports: 3, 11 or 12.
    pub fn is_error(&self) -> bool {
        matches!(
            self.msg_type(),
            TYPE_DEST_UNREACHABLE | TYPE_TIME_EXCEEDED | TYPE_PARAM_PROBLEM
        )
    }

    /// Everything after the header: the echo data, or the quoted datagram of
    /// an error (possibly followed by RFC 4884 extensions).
    pub fn payload(&self) -> &[u8] {
        self.bytes().get(HEADER_LEN..).unwrap_or(&[])
    }

    /// Whether the checksum over the whole message is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum::is_valid(checksum::sum(self.bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{ECHO4, ICMP4_3_3, ICMP4_3_13};

    #[test]
    fn reads_an_echo_reply() {
        let m = Packet::new_checked(&ECHO4[20..]).unwrap();
        assert_eq!(m.msg_type(), TYPE_ECHO_REPLY);
        assert_eq!(m.msg_code(), 0);
        assert_eq!(m.checksum(), 0x8e67);
        assert_eq!(m.echo_ident(), 0x4242);
        assert_eq!(m.echo_seq_no(), 7);
        assert_eq!(m.rest_of_header(), [0x42, 0x42, 0, 7]);
        assert!(!m.is_error());
        assert_eq!(m.payload(), b"HarbormasterPing");
        assert!(m.verify_checksum());
    }

    #[test]
    fn reads_errors() {
        let m = Packet::new_checked(&ICMP4_3_13[20..]).unwrap();
        assert_eq!((m.msg_type(), m.msg_code()), (3, CODE_ADMIN_PROHIBITED));
        assert!(m.is_error());
        assert_eq!(m.payload(), &ICMP4_3_13[28..]);
        assert!(m.verify_checksum());
        let m = Packet::new_checked(&ICMP4_3_3[20..]).unwrap();
        assert_eq!((m.msg_type(), m.msg_code()), (3, CODE_PORT_UNREACHABLE));
        assert!(m.verify_checksum());
        let mut bad = ICMP4_3_3;
        bad[40] ^= 1;
        assert!(!Packet::new_checked(&bad[20..]).unwrap().verify_checksum());
    }

    #[test]
    fn header_must_be_complete() {
        for n in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&ECHO4[20..20 + n]).unwrap_err(),
                WireError::Truncated {
                    layer: Layer::Icmpv4,
                    need: 8,
                    have: n
                }
            );
        }
        assert_eq!(
            Packet::new_checked(&ECHO4[20..28]).unwrap().payload(),
            &[] as &[u8]
        );
    }
}
