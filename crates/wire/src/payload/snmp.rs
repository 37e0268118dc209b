//! SNMP: a community-`public` GetRequest for `sysDescr.0` (RFC 1157 for v1,
//! RFC 1901/3416 for v2c; BER from X.690), and its GetResponse.
//!
//! An agent that answers this to anyone leaks what the device is (the
//! sysDescr string usually names the OS and version) and, through GetBulk,
//! can be made to send far more than it receives.
//!
//! The BER reader is hand-written: only single-byte tags, definite lengths
//! of at most four length bytes, and integers of at most eight bytes are
//! accepted, every length is checked against what is left of its parent,
//! and nothing is allocated but the community and sysDescr strings (capped).
//! The SNMP crates on crates.io (`snmp-parser` on nom/asn1-rs, `rasn-snmp`
//! on the rasn framework) would bring a general ASN.1 stack into a crate that
//! is otherwise dependency-free for one PDU with one variable binding.

use super::{Evidence, PayloadError, PayloadSpec, Protocol, put, text};

/// SNMPv2c GetRequest of sysDescr.0, community `public`, port 161.
pub const SNMP: PayloadSpec = PayloadSpec {
    port: 161,
    protocol: Protocol::Snmp,
    cookie_bits: 31,
    multi_reply: false,
    write: write_v2c,
    parse,
    reference: "RFC 1157, RFC 1901, RFC 3416, X.690",
    reply_from_other_port: false,
};

/// The community string we send.
pub const COMMUNITY: &[u8] = b"public";
/// `sysDescr.0` (1.3.6.1.2.1.1.1.0), BER-encoded contents of the OID.
pub const SYS_DESCR_OID: &[u8] = &[0x2b, 6, 1, 2, 1, 1, 1, 0];
/// Message version field for SNMPv1.
pub const VERSION_1: i64 = 0;
/// Message version field for SNMPv2c.
pub const VERSION_2C: i64 = 1;

const TAG_INTEGER: u8 = 0x02;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_NULL: u8 = 0x05;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_GET_REQUEST: u8 = 0xa0;
const TAG_GET_RESPONSE: u8 = 0xa2;

/// What a value in the response was, when it was not a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueKind {
    /// An OCTET STRING (sysDescr's type).
    String,
    /// SNMPv2 `noSuchObject`.
    NoSuchObject,
    /// SNMPv2 `noSuchInstance`.
    NoSuchInstance,
    /// SNMPv2 `endOfMibView`.
    EndOfMibView,
    /// NULL (an SNMPv1 agent's value in an error response).
    Null,
    /// Any other tag.
    Other(u8),
    /// No variable binding at all.
    Missing,
}

/// An agent's GetResponse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnmpEvidence {
    /// 0 for v1, 1 for v2c.
    pub version: i64,
    /// The community the agent echoed.
    pub community: String,
    /// The request ID (equal to the cookie's low 31 bits).
    pub request_id: i64,
    /// error-status (0 noError, 2 noSuchName in v1, …).
    pub error_status: i64,
    /// error-index.
    pub error_index: i64,
    /// Whether the first binding is for sysDescr.0.
    pub oid_is_sys_descr: bool,
    /// The kind of the first binding's value.
    pub value: ValueKind,
    /// sysDescr.0, when the value is a string.
    pub sys_descr: Option<String>,
}

/// Appends a BER length.
fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        // Requests here are far below 64 KiB.
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
}

/// Appends a TLV.
fn push_tlv(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    out.push(tag);
    push_len(out, value.len());
    out.extend_from_slice(value);
}

/// The minimal two's-complement contents of a non-negative INTEGER.
fn int_contents(v: u32) -> Vec<u8> {
    let b = v.to_be_bytes();
    let mut i = 0;
    while i < 3 && b[i] == 0 && b[i + 1] & 0x80 == 0 {
        i += 1;
    }
    let mut out = Vec::with_capacity(5);
    if b[i] & 0x80 != 0 {
        out.push(0);
    }
    out.extend_from_slice(&b[i..]);
    out
}

/// The GetRequest for `version` (0 = v1, 1 = v2c) and request ID
/// `cookie & 0x7fff_ffff`; 39 to 42 bytes.
pub fn get_request(version: u8, cookie: u32) -> Vec<u8> {
    let mut vb = Vec::new();
    push_tlv(&mut vb, TAG_OID, SYS_DESCR_OID);
    push_tlv(&mut vb, TAG_NULL, &[]);
    let mut vbs = Vec::new();
    push_tlv(&mut vbs, TAG_SEQUENCE, &vb);
    let mut pdu = Vec::new();
    push_tlv(&mut pdu, TAG_INTEGER, &int_contents(cookie & 0x7fff_ffff));
    push_tlv(&mut pdu, TAG_INTEGER, &[0]);
    push_tlv(&mut pdu, TAG_INTEGER, &[0]);
    push_tlv(&mut pdu, TAG_SEQUENCE, &vbs);
    let mut msg = Vec::new();
    push_tlv(&mut msg, TAG_INTEGER, &[version]);
    push_tlv(&mut msg, TAG_OCTET_STRING, COMMUNITY);
    push_tlv(&mut msg, TAG_GET_REQUEST, &pdu);
    let mut out = Vec::new();
    push_tlv(&mut out, TAG_SEQUENCE, &msg);
    out
}

/// Writes the SNMPv2c request.
pub fn write_v2c(cookie: u32, buf: &mut [u8]) -> Result<usize, PayloadError> {
    put(buf, &get_request(1, cookie))
}

/// Writes the SNMPv1 request (for agents that speak only v1).
pub fn write_v1(cookie: u32, buf: &mut [u8]) -> Result<usize, PayloadError> {
    put(buf, &get_request(0, cookie))
}

/// A cursor over a run of BER elements.
struct Ber<'a> {
    b: &'a [u8],
}

impl<'a> Ber<'a> {
    /// Reads the next element: its tag and contents.
    fn next(&mut self, what: &'static str) -> Result<(u8, &'a [u8]), PayloadError> {
        let trunc = |need: usize, have: usize| PayloadError::Truncated { what, need, have };
        let b = self.b;
        let (&tag, rest) = b.split_first().ok_or(trunc(2, b.len()))?;
        if tag & 0x1f == 0x1f {
            return Err(PayloadError::Malformed("BER multi-byte tag"));
        }
        let (&first, rest) = rest.split_first().ok_or(trunc(2, b.len()))?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 {
                return Err(PayloadError::Malformed("BER indefinite length"));
            }
            if n > 4 {
                return Err(PayloadError::Malformed(
                    "BER length of more than four bytes",
                ));
            }
            let bytes = rest.get(..n).ok_or(trunc(2 + n, b.len()))?;
            let len = bytes.iter().fold(0usize, |a, &x| (a << 8) | usize::from(x));
            (len, &rest[n..])
        };
        let header = b.len() - rest.len();
        let value = rest
            .get(..len)
            .ok_or(trunc(header.saturating_add(len), b.len()))?;
        self.b = &rest[len..];
        Ok((tag, value))
    }

    /// Reads an element that must have tag `want`.
    fn expect(&mut self, want: u8, what: &'static str) -> Result<&'a [u8], PayloadError> {
        let (tag, v) = self.next(what)?;
        if tag != want {
            return Err(PayloadError::Malformed(what));
        }
        Ok(v)
    }

    /// Reads an INTEGER of at most eight bytes.
    fn integer(&mut self, what: &'static str) -> Result<i64, PayloadError> {
        let v = self.expect(TAG_INTEGER, what)?;
        if v.is_empty() || v.len() > 8 {
            return Err(PayloadError::Malformed(
                "BER integer of 0 or more than 8 bytes",
            ));
        }
        let init: i64 = if v[0] & 0x80 != 0 { -1 } else { 0 };
        Ok(v.iter().fold(init, |a, &x| (a << 8) | i64::from(x)))
    }
}

/// Reads an agent's response to [`write_v2c`] or [`write_v1`].
pub fn parse(reply: &[u8], cookie: u32) -> Result<Evidence, PayloadError> {
    let mut top = Ber { b: reply };
    let mut msg = Ber {
        b: top.expect(TAG_SEQUENCE, "SNMP message is not a SEQUENCE")?,
    };
    if !top.b.is_empty() {
        return Err(PayloadError::Malformed("bytes after the SNMP message"));
    }
    let version = msg.integer("SNMP version")?;
    if version != VERSION_1 && version != VERSION_2C {
        return Err(PayloadError::Malformed("SNMP version is not v1 or v2c"));
    }
    let community = text(msg.expect(TAG_OCTET_STRING, "SNMP community")?);
    let (tag, pdu) = msg.next("SNMP PDU")?;
    if tag != TAG_GET_RESPONSE {
        return Err(PayloadError::Malformed("SNMP PDU is not a GetResponse"));
    }
    let mut pdu = Ber { b: pdu };
    let request_id = pdu.integer("SNMP request-id")?;
    let want = i64::from(cookie & 0x7fff_ffff);
    if request_id != want {
        return Err(PayloadError::CookieMismatch {
            expected: want as u64,
            got: request_id as u64,
        });
    }
    let error_status = pdu.integer("SNMP error-status")?;
    let error_index = pdu.integer("SNMP error-index")?;
    let mut vbs = Ber {
        b: pdu.expect(TAG_SEQUENCE, "SNMP variable bindings")?,
    };
    let (mut oid_is_sys_descr, mut value, mut sys_descr) = (false, ValueKind::Missing, None);
    if !vbs.b.is_empty() {
        let mut vb = Ber {
            b: vbs.expect(TAG_SEQUENCE, "SNMP variable binding")?,
        };
        oid_is_sys_descr = vb.expect(TAG_OID, "SNMP binding name is not an OID")? == SYS_DESCR_OID;
        let (tag, v) = vb.next("SNMP binding value")?;
        value = match tag {
            TAG_OCTET_STRING => ValueKind::String,
            TAG_NULL => ValueKind::Null,
            0x80 => ValueKind::NoSuchObject,
            0x81 => ValueKind::NoSuchInstance,
            0x82 => ValueKind::EndOfMibView,
            t => ValueKind::Other(t),
        };
        if value == ValueKind::String && oid_is_sys_descr {
            sys_descr = Some(text(v));
        }
    }
    Ok(Evidence::Snmp(SnmpEvidence {
        version,
        community,
        request_id,
        error_status,
        error_index,
        oid_is_sys_descr,
        value,
        sys_descr,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    /// A GetResponse to `get_request(version, id)` carrying `value` (a TLV).
    fn response(version: u8, id: u32, status: u8, value: &[u8]) -> Vec<u8> {
        let req = get_request(version, id);
        let mut r = req.clone();
        // The PDU tag follows version (3 bytes) and community (8) inside the
        // outer header (2): offset 13.
        assert_eq!(r[13], TAG_GET_REQUEST);
        r[13] = TAG_GET_RESPONSE;
        // Rebuild with the value: simplest is to re-encode.
        let mut vb = Vec::new();
        push_tlv(&mut vb, TAG_OID, SYS_DESCR_OID);
        vb.extend_from_slice(value);
        let mut vbs = Vec::new();
        push_tlv(&mut vbs, TAG_SEQUENCE, &vb);
        let mut pdu = Vec::new();
        push_tlv(&mut pdu, TAG_INTEGER, &int_contents(id & 0x7fff_ffff));
        push_tlv(&mut pdu, TAG_INTEGER, &[status]);
        push_tlv(&mut pdu, TAG_INTEGER, &[if status == 0 { 0 } else { 1 }]);
        push_tlv(&mut pdu, TAG_SEQUENCE, &vbs);
        let mut msg = Vec::new();
        push_tlv(&mut msg, TAG_INTEGER, &[version]);
        push_tlv(&mut msg, TAG_OCTET_STRING, COMMUNITY);
        push_tlv(&mut msg, TAG_GET_RESPONSE, &pdu);
        let mut out = Vec::new();
        push_tlv(&mut out, TAG_SEQUENCE, &msg);
        out
    }

    fn string(s: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        push_tlv(&mut v, TAG_OCTET_STRING, s);
        v
    }

    #[test]
    fn request_bytes() {
        // Hand-assembled from RFC 3416's PDU layout.
        let want: &[u8] = &[
            0x30, 0x29, 0x02, 0x01, 0x01, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', 0xa0,
            0x1c, 0x02, 0x04, 0x12, 0x34, 0x56, 0x78, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30,
            0x0e, 0x30, 0x0c, 0x06, 0x08, 0x2b, 6, 1, 2, 1, 1, 1, 0, 0x05, 0x00,
        ];
        assert_eq!(SNMP.request(0x1234_5678), want);
        // High bit set → a leading zero keeps it positive; the cookie's top bit is dropped.
        assert_eq!(int_contents(0x80), [0, 0x80]);
        assert_eq!(int_contents(0), [0]);
        assert_eq!(int_contents(0x7fff_ffff), [0x7f, 0xff, 0xff, 0xff]);
        assert_eq!(get_request(1, 0xffff_ffff), get_request(1, 0x7fff_ffff));
    }

    #[test]
    fn sys_descr_from_a_response() {
        let descr = b"Linux target 6.1.0-18-amd64 #1 SMP PREEMPT_DYNAMIC x86_64";
        let r = response(1, 0x00c0_ffee, 0, &string(descr));
        match SNMP.parse(&r, 0x00c0_ffee).unwrap() {
            Evidence::Snmp(s) => {
                assert_eq!(
                    s.sys_descr.as_deref(),
                    Some(std::str::from_utf8(descr).unwrap())
                );
                assert_eq!((s.version, s.error_status, s.request_id), (1, 0, 0xc0ffee));
                assert_eq!(s.community, "public");
                assert!(s.oid_is_sys_descr);
            }
            e => panic!("{e:?}"),
        }
        assert!(matches!(
            SNMP.parse(&r, 0x00c0_ffef),
            Err(PayloadError::CookieMismatch { .. })
        ));
        // Our GetRequest is not a response.
        assert!(SNMP.parse(&SNMP.request(1), 1).is_err());
        every_prefix_fails(&SNMP, &r, 0x00c0_ffee);
        mutations_never_panic(&SNMP, &r, 0x00c0_ffee);
        let mut trailing = r.clone();
        trailing.push(0);
        assert!(SNMP.parse(&trailing, 0x00c0_ffee).is_err());
    }

    #[test]
    fn errors_and_exceptions() {
        // v1 noSuchName with a NULL value.
        let r = response(0, 9, 2, &[TAG_NULL, 0]);
        match SNMP.parse(&r, 9).unwrap() {
            Evidence::Snmp(s) => {
                assert_eq!(
                    (s.version, s.error_status, s.value),
                    (0, 2, ValueKind::Null)
                );
                assert_eq!(s.sys_descr, None);
            }
            e => panic!("{e:?}"),
        }
        let r = response(1, 9, 0, &[0x81, 0]);
        assert!(matches!(
            SNMP.parse(&r, 9),
            Ok(Evidence::Snmp(SnmpEvidence {
                value: ValueKind::NoSuchInstance,
                ..
            }))
        ));
        // Long-form lengths, indefinite lengths, oversized integers.
        assert!(matches!(
            SNMP.parse(&[0x30, 0x80, 0, 0], 0),
            Err(PayloadError::Malformed(_))
        ));
        assert!(SNMP.parse(&[0x30, 0x85, 1, 1, 1, 1, 1], 0).is_err());
        assert!(
            SNMP.parse(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff], 0)
                .is_err()
        );
        let mut long = vec![0x30, 0x81, 0x0b, 0x02, 0x09];
        long.extend_from_slice(&[1; 9]);
        long.extend_from_slice(&[0x04, 0x00]);
        assert!(SNMP.parse(&long, 0).is_err());
    }
}
