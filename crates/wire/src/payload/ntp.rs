//! NTP: a client request (mode 3, RFC 5905), a control query (mode 6,
//! READVAR, RFC 1305 appendix B, re-described in RFC 9327) and a private
//! query (mode 7, `MON_GETLIST_1`, ntpd's own message format).
//!
//! The client request shows that a server answers time queries at all (a
//! 1:1 reflector). Modes 6 and 7 are the ones that made NTP a large
//! amplifier: a server that answers them to anyone exposes its variables
//! (version, system) or its list of recent clients. Chrony implements
//! neither; ntpd answers both unless `restrict … noquery` is set.
//!
//! Cookies: the client request's transmit timestamp (the server copies it
//! into the origin timestamp) is derived from all 32 bits; the mode-6
//! sequence number carries 16; mode 7 has only a 7-bit sequence.

use super::{Evidence, PayloadError, PayloadSpec, Protocol, need, put, text};

/// NTP client request, port 123.
pub const CLIENT: PayloadSpec = PayloadSpec {
    port: 123,
    protocol: Protocol::Ntp,
    cookie_bits: 32,
    multi_reply: false,
    write: write_client,
    parse: parse_client,
    reference: "RFC 5905",
    reply_from_other_port: false,
};

/// NTP mode-6 READVAR of the system variables, port 123.
pub const CONTROL: PayloadSpec = PayloadSpec {
    port: 123,
    protocol: Protocol::NtpControl,
    cookie_bits: 16,
    multi_reply: true,
    write: write_control,
    parse: parse_control,
    reference: "RFC 1305 appendix B, RFC 9327",
    reply_from_other_port: false,
};

/// NTP mode-7 `MON_GETLIST_1` (ntpd's monitor list), port 123.
pub const PRIVATE: PayloadSpec = PayloadSpec {
    port: 123,
    protocol: Protocol::NtpPrivate,
    cookie_bits: 7,
    multi_reply: true,
    write: write_private,
    parse: parse_private,
    reference: "ntpd ntp_request.h (mode 7 is implementation-specific)",
    reply_from_other_port: false,
};

/// Mode of a client request.
pub const MODE_CLIENT: u8 = 3;
/// Mode of a server reply.
pub const MODE_SERVER: u8 = 4;
/// Control message mode.
pub const MODE_CONTROL: u8 = 6;
/// Private (implementation-specific) mode.
pub const MODE_PRIVATE: u8 = 7;
/// Mode-6 opcode READVAR.
pub const OP_READVAR: u8 = 2;
/// Mode-7 implementation number of ntpd (`IMPL_XNTPD`).
pub const IMPL_XNTPD: u8 = 3;
/// Mode-7 request code `MON_GETLIST_1`.
pub const REQ_MON_GETLIST_1: u8 = 42;

/// The 64-bit transmit timestamp our client request carries for `cookie`:
/// the cookie as seconds and a mix of it as the fraction, so that all 64
/// bits of the echoed origin timestamp are checked.
pub fn transmit_timestamp(cookie: u32) -> u64 {
    (u64::from(cookie) << 32) | u64::from(cookie.rotate_left(16) ^ 0x9e37_79b9)
}

/// What a server's reply to a client request says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NtpEvidence {
    /// Leap indicator (3: clock not synchronised).
    pub leap: u8,
    /// Version number.
    pub version: u8,
    /// Mode (4: server).
    pub mode: u8,
    /// Stratum (0: kiss-o'-death; 1: primary; 2–15: secondary; 16: unsynchronised).
    pub stratum: u8,
    /// Poll interval, log2 seconds.
    pub poll: i8,
    /// Precision, log2 seconds.
    pub precision: i8,
    /// Reference ID: for stratum 0 and 1 four ASCII characters (a kiss code
    /// or a clock source), otherwise usually an IPv4 address or hash.
    pub reference_id: [u8; 4],
    /// The kiss code (`RATE`, `DENY`, …) when stratum is 0.
    pub kiss_code: Option<String>,
    /// The server's transmit timestamp, seconds since 1900 (NTP era 0).
    pub transmit_seconds: u32,
}

/// A mode-6 or mode-7 answer: the server answers such queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NtpQueryEvidence {
    /// 6 or 7.
    pub mode: u8,
    /// The server flagged an error (it still answered).
    pub error: bool,
    /// More fragments follow.
    pub more: bool,
    /// Data bytes in this datagram.
    pub data_len: usize,
    /// Mode 6: the `version=` variable, if sent.
    pub version: Option<String>,
    /// Mode 6: the `system=` variable, if sent.
    pub system: Option<String>,
    /// Mode 7: items in this datagram (monitor list entries).
    pub items: u16,
}

/// Writes the 48-byte client request (LI 0, version 4, mode 3).
pub fn write_client(cookie: u32, buf: &mut [u8]) -> Result<usize, PayloadError> {
    let mut m = [0u8; 48];
    m[0] = (4 << 3) | MODE_CLIENT;
    m[40..48].copy_from_slice(&transmit_timestamp(cookie).to_be_bytes());
    put(buf, &m)
}

/// Reads a server's reply to [`write_client`]: mode 4 and our timestamp as
/// its origin.
pub fn parse_client(reply: &[u8], cookie: u32) -> Result<Evidence, PayloadError> {
    need("NTP packet", reply, 48)?;
    let mode = reply[0] & 7;
    if mode != MODE_SERVER {
        return Err(PayloadError::Malformed("NTP reply is not mode 4 (server)"));
    }
    let mut origin = [0u8; 8];
    origin.copy_from_slice(&reply[24..32]);
    let origin = u64::from_be_bytes(origin);
    let want = transmit_timestamp(cookie);
    if origin != want {
        return Err(PayloadError::CookieMismatch {
            expected: want,
            got: origin,
        });
    }
    let stratum = reply[1];
    let reference_id = [reply[12], reply[13], reply[14], reply[15]];
    let kiss_code = (stratum == 0).then(|| text(&reference_id).trim_end().to_string());
    Ok(Evidence::Ntp(NtpEvidence {
        leap: reply[0] >> 6,
        version: (reply[0] >> 3) & 7,
        mode,
        stratum,
        poll: reply[2] as i8,
        precision: reply[3] as i8,
        reference_id,
        kiss_code,
        transmit_seconds: u32::from_be_bytes([reply[40], reply[41], reply[42], reply[43]]),
    }))
}

/// Writes the 12-byte mode-6 READVAR request for the system variables
/// (association 0), the cookie's low 16 bits as sequence number.
pub fn write_control(cookie: u32, buf: &mut [u8]) -> Result<usize, PayloadError> {
    let mut m = [0u8; 12];
    m[0] = (2 << 3) | MODE_CONTROL;
    m[1] = OP_READVAR;
    m[2..4].copy_from_slice(&(cookie as u16).to_be_bytes());
    put(buf, &m)
}

/// The value of `name=` in a mode-6 variable list (`a=1, version="x", …`).
fn variable(data: &[u8], name: &str) -> Option<String> {
    let s = String::from_utf8_lossy(data);
    for item in s.split(',') {
        let item = item.trim();
        if let Some(v) = item.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
            return Some(text(v.trim_matches('"').as_bytes()));
        }
    }
    None
}

/// Reads a mode-6 response to [`write_control`].
pub fn parse_control(reply: &[u8], cookie: u32) -> Result<Evidence, PayloadError> {
    need("NTP control header", reply, 12)?;
    if reply[0] & 7 != MODE_CONTROL {
        return Err(PayloadError::Malformed("NTP reply is not mode 6"));
    }
    if reply[1] & 0x80 == 0 {
        return Err(PayloadError::Malformed(
            "NTP control message is not a response",
        ));
    }
    if reply[1] & 0x1f != OP_READVAR {
        return Err(PayloadError::Malformed(
            "NTP control response to another opcode",
        ));
    }
    let seq = u16::from_be_bytes([reply[2], reply[3]]);
    if seq != cookie as u16 {
        return Err(PayloadError::CookieMismatch {
            expected: u64::from(cookie as u16),
            got: u64::from(seq),
        });
    }
    let count = usize::from(u16::from_be_bytes([reply[10], reply[11]]));
    need("NTP control data", reply, 12 + count)?;
    let data = &reply[12..12 + count];
    Ok(Evidence::NtpQuery(NtpQueryEvidence {
        mode: MODE_CONTROL,
        error: reply[1] & 0x40 != 0,
        more: reply[1] & 0x20 != 0,
        data_len: count,
        version: variable(data, "version"),
        system: variable(data, "system"),
        items: 0,
    }))
}

/// Writes the 48-byte mode-7 `MON_GETLIST_1` request (8-byte header, 40
/// bytes of zero data as ntpd's own client sends), the cookie's low 7 bits as
/// sequence.
pub fn write_private(cookie: u32, buf: &mut [u8]) -> Result<usize, PayloadError> {
    let mut m = [0u8; 48];
    m[0] = (2 << 3) | MODE_PRIVATE;
    m[1] = (cookie & 0x7f) as u8;
    m[2] = IMPL_XNTPD;
    m[3] = REQ_MON_GETLIST_1;
    put(buf, &m)
}

/// Reads a mode-7 response to [`write_private`] (an error response counts:
/// the server still answers mode 7).
pub fn parse_private(reply: &[u8], cookie: u32) -> Result<Evidence, PayloadError> {
    need("NTP private header", reply, 8)?;
    if reply[0] & 7 != MODE_PRIVATE {
        return Err(PayloadError::Malformed("NTP reply is not mode 7"));
    }
    if reply[0] & 0x80 == 0 {
        return Err(PayloadError::Malformed(
            "NTP private message is not a response",
        ));
    }
    let seq = reply[1] & 0x7f;
    if u32::from(seq) != cookie & 0x7f {
        return Err(PayloadError::CookieMismatch {
            expected: u64::from(cookie & 0x7f),
            got: u64::from(seq),
        });
    }
    if reply[3] != REQ_MON_GETLIST_1 {
        return Err(PayloadError::Malformed(
            "NTP private response to another request",
        ));
    }
    let err = reply[4] >> 4;
    let items = u16::from_be_bytes([reply[4] & 0x0f, reply[5]]);
    let size = usize::from(u16::from_be_bytes([reply[6] & 0x0f, reply[7]]));
    let data_len = usize::from(items) * size;
    need("NTP private data", reply, 8 + data_len)?;
    Ok(Evidence::NtpQuery(NtpQueryEvidence {
        mode: MODE_PRIVATE,
        error: err != 0,
        more: reply[0] & 0x40 != 0,
        data_len,
        version: None,
        system: None,
        items,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    /// A server reply to `req` (chrony's layout: stratum 8, local refid).
    fn server_reply(req: &[u8]) -> Vec<u8> {
        let mut m = vec![0u8; 48];
        m[0] = 0x24; // LI 0, VN 4, mode 4
        m[1] = 8;
        m[2] = 0;
        m[3] = 0xe6; // precision -26
        m[12..16].copy_from_slice(&[0x7f, 0x7f, 1, 1]);
        m[24..32].copy_from_slice(&req[40..48]);
        m[40..44].copy_from_slice(&0xeebb_efe8u32.to_be_bytes());
        m
    }

    #[test]
    fn client_request_and_reply() {
        let req = CLIENT.request(0x1122_3344);
        assert_eq!(req.len(), 48);
        assert_eq!(req[0], 0x23);
        assert_eq!(&req[40..44], &[0x11, 0x22, 0x33, 0x44]);
        let reply = server_reply(&req);
        match CLIENT.parse(&reply, 0x1122_3344).unwrap() {
            Evidence::Ntp(n) => {
                assert_eq!((n.mode, n.version, n.stratum, n.precision), (4, 4, 8, -26));
                assert_eq!(n.kiss_code, None);
                assert_eq!(n.transmit_seconds, 0xeebb_efe8);
            }
            e => panic!("{e:?}"),
        }
        assert!(matches!(
            CLIENT.parse(&reply, 0x1122_3345),
            Err(PayloadError::CookieMismatch { .. })
        ));
        // Our own request (mode 3) is not a reply.
        assert!(CLIENT.parse(&req, 0x1122_3344).is_err());
        every_prefix_fails(&CLIENT, &reply, 0x1122_3344);
        mutations_never_panic(&CLIENT, &reply, 0x1122_3344);
    }

    #[test]
    fn kiss_of_death() {
        let req = CLIENT.request(5);
        let mut reply = server_reply(&req);
        reply[1] = 0;
        reply[12..16].copy_from_slice(b"RATE");
        match CLIENT.parse(&reply, 5).unwrap() {
            Evidence::Ntp(n) => assert_eq!(n.kiss_code.as_deref(), Some("RATE")),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn control_readvar() {
        let req = CONTROL.request(0xffff_0a0b);
        assert_eq!(req, [0x16, 2, 0x0a, 0x0b, 0, 0, 0, 0, 0, 0, 0, 0]);
        let data = b"version=\"ntpd 4.2.8p15@1.3728-o\", processor=\"x86_64\", system=\"Linux/6.1.0\", leap=00";
        let mut reply = vec![0x16, 0x82, 0x0a, 0x0b, 0x06, 0x15, 0, 0, 0, 0];
        reply.extend_from_slice(&(data.len() as u16).to_be_bytes());
        reply.extend_from_slice(data);
        reply.extend_from_slice(&[0, 0]); // padding to a multiple of 4
        match CONTROL.parse(&reply, 0x0a0b).unwrap() {
            Evidence::NtpQuery(q) => {
                assert_eq!(q.mode, 6);
                assert_eq!(q.version.as_deref(), Some("ntpd 4.2.8p15@1.3728-o"));
                assert_eq!(q.system.as_deref(), Some("Linux/6.1.0"));
                assert!(!q.error && !q.more);
                assert_eq!(q.data_len, data.len());
            }
            e => panic!("{e:?}"),
        }
        assert!(matches!(
            CONTROL.parse(&reply, 0x0a0c),
            Err(PayloadError::CookieMismatch { .. })
        ));
        assert!(CONTROL.parse(&req, 0x0a0b).is_err());
        every_prefix_fails(&CONTROL, &reply[..reply.len() - 2], 0x0a0b);
        mutations_never_panic(&CONTROL, &reply, 0x0a0b);
    }

    #[test]
    fn private_monlist() {
        let req = PRIVATE.request(0x85);
        assert_eq!(req.len(), 48);
        assert_eq!(&req[..4], &[0x17, 0x05, 3, 42]);
        // Two 72-byte monitor entries.
        let mut reply = vec![0x97, 0x05, 3, 42, 0x00, 0x02, 0x00, 72];
        reply.extend_from_slice(&[0xaa; 144]);
        match PRIVATE.parse(&reply, 0x85).unwrap() {
            Evidence::NtpQuery(q) => {
                assert_eq!((q.mode, q.items, q.data_len, q.error), (7, 2, 144, false));
            }
            e => panic!("{e:?}"),
        }
        // An error answer (INFO_ERR_REQ) still shows mode 7 answers.
        let err = [0x97, 0x05, 3, 42, 0x20, 0, 0, 0];
        assert!(matches!(
            PRIVATE.parse(&err, 0x85),
            Ok(Evidence::NtpQuery(NtpQueryEvidence { error: true, .. }))
        ));
        assert!(matches!(
            PRIVATE.parse(&reply, 0x86),
            Err(PayloadError::CookieMismatch { .. })
        ));
        assert!(PRIVATE.parse(&req, 0x85).is_err());
        every_prefix_fails(&PRIVATE, &reply, 0x85);
        mutations_never_panic(&PRIVATE, &reply, 0x85);
    }
}
