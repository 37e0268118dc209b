//! CoAP (RFC 7252): a confirmable GET of `/.well-known/core`, the resource
//! directory of RFC 6690, and the server's answer.
//!
//! An internet-reachable CoAP server is a reflector (the link-format list of
//! its resources is often many times the request) and names its resources.
//!
//! The cookie goes in both places the server echoes: the message ID (16
//! bits; an ACK or RST carries the ID of the message it answers) and a
//! 4-byte token (a response carries the request's token, also a separate
//! response sent later in a new message).
//!
//! A CoAP message has no length of its own (the datagram's is used), so a
//! datagram cut at an option or in the payload is a valid shorter message;
//! cuts inside the header, token or an option are rejected.

use super::{Evidence, PayloadError, PayloadSpec, Protocol, need, put, text};

/// CoAP GET /.well-known/core, port 5683.
pub const COAP: PayloadSpec = PayloadSpec {
    port: 5683,
    protocol: Protocol::Coap,
    cookie_bits: 32,
    multi_reply: false,
    write,
    parse,
    reference: "RFC 7252, RFC 6690",
    reply_from_other_port: false,
};

/// Message type: confirmable.
pub const TYPE_CON: u8 = 0;
/// Message type: non-confirmable.
pub const TYPE_NON: u8 = 1;
/// Message type: acknowledgement.
pub const TYPE_ACK: u8 = 2;
/// Message type: reset.
pub const TYPE_RST: u8 = 3;
/// Option number Content-Format.
pub const OPTION_CONTENT_FORMAT: u16 = 12;

/// The server's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoapEvidence {
    /// CON, NON, ACK or RST (0–3).
    pub message_type: u8,
    /// Response code class (2 success, 4 client error, 5 server error; 0 for
    /// an empty ACK or RST).
    pub code_class: u8,
    /// Response code detail (`2.05` Content is class 2, detail 5).
    pub code_detail: u8,
    /// The message ID.
    pub message_id: u16,
    /// Content-Format, if given (40 is `application/link-format`).
    pub content_format: Option<u16>,
    /// Payload bytes.
    pub payload_len: usize,
    /// The payload's start as text (the link-format resource list).
    pub payload_sample: String,
}

/// Writes the request (25 bytes): CON, GET, message ID and token from the cookie.
pub fn write(cookie: u32, buf: &mut [u8]) -> Result<usize, PayloadError> {
    let mut m = [0u8; 25];
    m[0] = 0x40 | (TYPE_CON << 4) | 4; // version 1, CON, token length 4
    m[1] = 0x01; // 0.01 GET
    m[2..4].copy_from_slice(&(cookie as u16).to_be_bytes());
    m[4..8].copy_from_slice(&cookie.to_be_bytes());
    // Uri-Path (11) ".well-known": delta 11, length 11; Uri-Path "core": delta 0, length 4.
    m[8] = 0xbb;
    m[9..20].copy_from_slice(b".well-known");
    m[20] = 0x04;
    m[21..25].copy_from_slice(b"core");
    put(buf, &m)
}

/// Reads an option's extended delta or length nibble at `at`.
fn extended(m: &[u8], nibble: u8, at: &mut usize) -> Result<u16, PayloadError> {
    match nibble {
        13 => {
            need("CoAP option", m, *at + 1)?;
            let v = u16::from(m[*at]) + 13;
            *at += 1;
            Ok(v)
        }
        14 => {
            need("CoAP option", m, *at + 2)?;
            let v = u16::from_be_bytes([m[*at], m[*at + 1]]).saturating_add(269);
            *at += 2;
            Ok(v)
        }
        15 => Err(PayloadError::Malformed("CoAP option nibble 15")),
        n => Ok(u16::from(n)),
    }
}

/// Reads the server's answer to [`write`].
pub fn parse(reply: &[u8], cookie: u32) -> Result<Evidence, PayloadError> {
    need("CoAP header", reply, 4)?;
    if reply[0] >> 6 != 1 {
        return Err(PayloadError::Malformed("CoAP version is not 1"));
    }
    let message_type = (reply[0] >> 4) & 3;
    let tkl = usize::from(reply[0] & 0x0f);
    if tkl > 8 {
        return Err(PayloadError::Malformed("CoAP token length above 8"));
    }
    let (code_class, code_detail) = (reply[1] >> 5, reply[1] & 0x1f);
    let message_id = u16::from_be_bytes([reply[2], reply[3]]);
    need("CoAP token", reply, 4 + tkl)?;
    let token = &reply[4..4 + tkl];
    let empty = reply[1] == 0;
    if code_class == 0 && !empty {
        return Err(PayloadError::Malformed("CoAP message is a request"));
    }
    if matches!(code_class, 1 | 6 | 7) {
        return Err(PayloadError::Malformed("CoAP code class is reserved"));
    }
    let want_mid = cookie as u16;
    let want_token = cookie.to_be_bytes();
    match message_type {
        TYPE_ACK | TYPE_RST if message_id != want_mid => {
            return Err(PayloadError::CookieMismatch {
                expected: u64::from(want_mid),
                got: u64::from(message_id),
            });
        }
        TYPE_CON | TYPE_NON if empty => {
            return Err(PayloadError::Malformed(
                "CoAP empty message is not ACK or RST",
            ));
        }
        _ => {}
    }
    if empty {
        if tkl != 0 || reply.len() != 4 {
            return Err(PayloadError::Malformed(
                "CoAP empty message with token or data",
            ));
        }
    } else if token != want_token {
        let mut got = [0u8; 8];
        got[8 - tkl..].copy_from_slice(token);
        return Err(PayloadError::CookieMismatch {
            expected: u64::from(cookie),
            got: u64::from_be_bytes(got),
        });
    }
    let mut at = 4 + tkl;
    let mut number = 0u16;
    let mut content_format = None;
    let mut payload: &[u8] = &[];
    while at < reply.len() {
        let b = reply[at];
        at += 1;
        if b == 0xff {
            payload = &reply[at..];
            if payload.is_empty() {
                return Err(PayloadError::Truncated {
                    what: "CoAP payload after marker",
                    need: at + 1,
                    have: reply.len(),
                });
            }
            break;
        }
        let delta = extended(reply, b >> 4, &mut at)?;
        let len = usize::from(extended(reply, b & 0x0f, &mut at)?);
        number = number.saturating_add(delta);
        need("CoAP option value", reply, at + len)?;
        let value = &reply[at..at + len];
        if number == OPTION_CONTENT_FORMAT && value.len() <= 2 {
            content_format = Some(value.iter().fold(0u16, |a, &x| (a << 8) | u16::from(x)));
        }
        at += len;
    }
    Ok(Evidence::Coap(CoapEvidence {
        message_type,
        code_class,
        code_detail,
        message_id,
        content_format,
        payload_len: payload.len(),
        payload_sample: text(&payload[..payload.len().min(128)]),
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    /// A piggybacked 2.05 Content with Content-Format 40 and a link list.
    fn content(cookie: u32) -> Vec<u8> {
        let mut m = vec![0x64, 0x45];
        m.extend_from_slice(&(cookie as u16).to_be_bytes());
        m.extend_from_slice(&cookie.to_be_bytes());
        m.extend_from_slice(&[0xc1, 40]); // option 12, length 1, value 40
        m.push(0xff);
        m.extend_from_slice(b"</>;title=\"General Info\";ct=0,</time>;if=\"clock\";rt=\"ticks\"");
        m
    }

    #[test]
    fn request_bytes() {
        let r = COAP.request(0x0102_0304);
        assert_eq!(r.len(), 25);
        assert_eq!(&r[..8], &[0x44, 0x01, 0x03, 0x04, 1, 2, 3, 4]);
        assert_eq!(&r[8..], b"\xbb.well-known\x04core");
        assert!(
            COAP.parse(&r, 0x0102_0304).is_err(),
            "a request is not a reply"
        );
    }

    #[test]
    fn piggybacked_response() {
        let c = 0xa1b2_c3d4;
        let m = content(c);
        match COAP.parse(&m, c).unwrap() {
            Evidence::Coap(e) => {
                assert_eq!(
                    (e.message_type, e.code_class, e.code_detail),
                    (TYPE_ACK, 2, 5)
                );
                assert_eq!(e.content_format, Some(40));
                assert!(e.payload_sample.starts_with("</>;title="));
            }
            e => panic!("{e:?}"),
        }
        // Wrong message ID, then right ID and wrong token.
        assert!(matches!(
            COAP.parse(&m, c ^ 1),
            Err(PayloadError::CookieMismatch { .. })
        ));
        assert!(matches!(
            COAP.parse(&m, c ^ 0x0100_0000),
            Err(PayloadError::CookieMismatch { .. })
        ));
        // Cuts inside the header, the token and the option are rejected (a
        // cut in the payload is a shorter valid message; see the module doc).
        for n in (0..8).chain([9]) {
            assert!(COAP.parse(&m[..n], c).is_err(), "prefix {n}");
        }
        assert!(COAP.parse(&m[..11], c).is_err(), "marker without payload");
        mutations_never_panic(&COAP, &m, c);
    }

    #[test]
    fn empty_ack_rst_and_separate() {
        let c = 0x0000_7777;
        let ack = [0x60, 0, 0x77, 0x77];
        assert!(matches!(
            COAP.parse(&ack, c),
            Ok(Evidence::Coap(CoapEvidence {
                message_type: TYPE_ACK,
                code_class: 0,
                ..
            }))
        ));
        let rst = [0x70, 0, 0x77, 0x77];
        assert!(COAP.parse(&rst, c).is_ok());
        assert!(COAP.parse(&[0x70, 0, 0x77, 0x78], c).is_err());
        assert!(COAP.parse(&[0x50, 0, 0x77, 0x77], c).is_err(), "empty NON");
        // A separate response: new message ID, our token.
        let mut sep = vec![0x54, 0x84, 0x12, 0x34];
        sep.extend_from_slice(&c.to_be_bytes());
        assert!(matches!(
            COAP.parse(&sep, c),
            Ok(Evidence::Coap(CoapEvidence {
                code_class: 4,
                code_detail: 4,
                ..
            }))
        ));
        // Extended option deltas and lengths that run off the end.
        let mut ext = sep.clone();
        ext.extend_from_slice(&[0xd0]);
        assert!(COAP.parse(&ext, c).is_err());
        let mut ext = sep.clone();
        ext.extend_from_slice(&[0x0e, 0x00]);
        assert!(COAP.parse(&ext, c).is_err());
        let mut ext = sep;
        ext.extend_from_slice(&[0xf0]);
        assert!(COAP.parse(&ext, c).is_err());
    }
}
