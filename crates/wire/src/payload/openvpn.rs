//! OpenVPN over UDP: a `P_CONTROL_HARD_RESET_CLIENT_V2`, the first packet of
//! a client's TLS control channel, and the server's
//! `P_CONTROL_HARD_RESET_SERVER_V2`. OpenVPN has no RFC; this follows the
//! protocol description in OpenVPN's own source tree (the packet layout
//! comment in `ssl_pkt.h` and the reliability layer's ACK format), which
//! every OpenVPN 2.x speaks.
//!
//! A server without `tls-auth`/`tls-crypt` answers anyone's reset, and its
//! reliability layer resends the answer (after 2 s, then with back-off)
//! until the handshake completes or times out: a small but repeated
//! reflection. A server with `tls-auth` or `tls-crypt` drops our
//! unauthenticated packet and stays silent.
//!
//! Layout without `tls-auth`: one byte of opcode (high 5 bits) and key ID
//! (low 3), the sender's 8-byte session ID, a one-byte count of
//! acknowledged packet IDs, those IDs (4 bytes each) and, when the count is
//! not zero, the 8-byte session ID of the peer being acknowledged, then (not
//! in a pure ACK) the 4-byte packet ID of this message.
//!
//! The cookie is our session ID (all 64 bits derived from it), which the
//! server's reset repeats as the session it acknowledges.

use super::{Evidence, PayloadError, PayloadSpec, Protocol, need, put};

/// OpenVPN hard reset, port 1194.
pub const OPENVPN: PayloadSpec = PayloadSpec {
    port: 1194,
    protocol: Protocol::OpenVpn,
    cookie_bits: 32,
    multi_reply: true,
    write,
    parse,
    reference: "OpenVPN 2.x protocol description (ssl_pkt.h)",
    reply_from_other_port: false,
};

/// Opcode `P_CONTROL_HARD_RESET_CLIENT_V2`.
pub const OP_HARD_RESET_CLIENT_V2: u8 = 7;
/// Opcode `P_CONTROL_HARD_RESET_SERVER_V2`.
pub const OP_HARD_RESET_SERVER_V2: u8 = 8;
/// Opcode `P_ACK_V1`.
pub const OP_ACK_V1: u8 = 5;

/// Our 8-byte session ID for `cookie`.
pub fn session_id(cookie: u32) -> [u8; 8] {
    let mut s = [0u8; 8];
    s[..4].copy_from_slice(&cookie.to_be_bytes());
    s[4..].copy_from_slice(&(!cookie.rotate_left(7)).to_be_bytes());
    s
}

/// A server's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenVpnEvidence {
    /// The opcode (8: hard reset from a server; 5: a bare ACK).
    pub opcode: u8,
    /// The key ID (0 for a new session).
    pub key_id: u8,
    /// The server's session ID.
    pub server_session: u64,
    /// How many of our packet IDs it acknowledged.
    pub acked: u8,
    /// This message's packet ID (none in a bare ACK).
    pub packet_id: Option<u32>,
}

/// Writes the 14-byte hard reset: opcode 7 key 0, our session ID, no
/// acknowledgements, packet ID 0.
pub fn write(cookie: u32, buf: &mut [u8]) -> Result<usize, PayloadError> {
    let mut m = [0u8; 14];
    m[0] = OP_HARD_RESET_CLIENT_V2 << 3;
    m[1..9].copy_from_slice(&session_id(cookie));
    // m[9] = 0 acknowledgements, m[10..14] = packet ID 0.
    put(buf, &m)
}

/// Reads a server's reset or ACK, which must acknowledge our session.
pub fn parse(reply: &[u8], cookie: u32) -> Result<Evidence, PayloadError> {
    need("OpenVPN header", reply, 10)?;
    let opcode = reply[0] >> 3;
    let key_id = reply[0] & 7;
    if opcode != OP_HARD_RESET_SERVER_V2 && opcode != OP_ACK_V1 {
        return Err(PayloadError::Malformed(
            "OpenVPN opcode is not a server reset or ACK",
        ));
    }
    let mut server = [0u8; 8];
    server.copy_from_slice(&reply[1..9]);
    let acked = reply[9];
    if acked == 0 {
        return Err(PayloadError::Malformed(
            "OpenVPN reply acknowledges nothing",
        ));
    }
    if acked > 8 {
        return Err(PayloadError::Malformed("OpenVPN ACK count above 8"));
    }
    let remote = 10 + 4 * usize::from(acked);
    need("OpenVPN acknowledgements", reply, remote + 8)?;
    let want = session_id(cookie);
    if reply[remote..remote + 8] != want {
        let mut got = [0u8; 8];
        got.copy_from_slice(&reply[remote..remote + 8]);
        return Err(PayloadError::CookieMismatch {
            expected: u64::from_be_bytes(want),
            got: u64::from_be_bytes(got),
        });
    }
    let end = remote + 8;
    let packet_id = if opcode == OP_ACK_V1 {
        None
    } else {
        need("OpenVPN packet ID", reply, end + 4)?;
        Some(u32::from_be_bytes([
            reply[end],
            reply[end + 1],
            reply[end + 2],
            reply[end + 3],
        ]))
    };
    Ok(Evidence::OpenVpn(OpenVpnEvidence {
        opcode,
        key_id,
        server_session: u64::from_be_bytes(server),
        acked,
        packet_id,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    /// OpenVPN 2.6.14's answer (captured in a test namespace) to a reset
    /// whose session ID was 1122334455667788.
    fn server_reset(ours: [u8; 8]) -> Vec<u8> {
        let mut m = vec![
            0x40, 0x0b, 0xc2, 0x10, 0x90, 0x05, 0x93, 0x5e, 0x58, 0x01, 0, 0, 0, 0,
        ];
        m.extend_from_slice(&ours);
        m.extend_from_slice(&[0, 0, 0, 0]);
        m
    }

    #[test]
    fn reset_and_answer() {
        let req = OPENVPN.request(0x1122_3344);
        assert_eq!(req.len(), 14);
        assert_eq!(req[0], 0x38);
        assert_eq!(&req[1..5], &[0x11, 0x22, 0x33, 0x44]);
        assert!(OPENVPN.parse(&req, 0x1122_3344).is_err());
        let reply = server_reset(session_id(0x1122_3344));
        assert_eq!(reply.len(), 26);
        match OPENVPN.parse(&reply, 0x1122_3344).unwrap() {
            Evidence::OpenVpn(o) => {
                assert_eq!(
                    (o.opcode, o.key_id, o.acked, o.packet_id),
                    (8, 0, 1, Some(0))
                );
                assert_eq!(o.server_session, 0x0bc2_1090_0593_5e58);
            }
            e => panic!("{e:?}"),
        }
        assert!(matches!(
            OPENVPN.parse(&reply, 0x1122_3345),
            Err(PayloadError::CookieMismatch { .. })
        ));
        every_prefix_fails(&OPENVPN, &reply, 0x1122_3344);
        mutations_never_panic(&OPENVPN, &reply, 0x1122_3344);
        // A bare ACK has no packet ID of its own.
        let mut ack = reply[..22].to_vec();
        ack[0] = OP_ACK_V1 << 3;
        assert!(matches!(
            OPENVPN.parse(&ack, 0x1122_3344),
            Ok(Evidence::OpenVpn(OpenVpnEvidence {
                packet_id: None,
                ..
            }))
        ));
    }
}
