//! SIP (RFC 3261): an OPTIONS request, which every SIP element answers about
//! itself, and its response.
//!
//! An internet-reachable SIP server or phone names its software (Server or
//! User-Agent header) and is a reflector: the response is larger than the
//! request. The request carries `Max-Forwards: 0`, so a proxy answers
//! itself and forwards nothing (RFC 3261 §11, §16.3), and `rport` (RFC
//! 3581), so the answer comes back to the address and port it came from
//! whatever the Via host says.
//!
//! The cookie (8 hex digits) is in the Via branch, the From tag and the
//! Call-ID; the response must repeat the Call-ID.

use super::{Evidence, PayloadError, PayloadSpec, Protocol, put, text};

/// SIP OPTIONS, port 5060.
pub const SIP: PayloadSpec = PayloadSpec {
    port: 5060,
    protocol: Protocol::Sip,
    cookie_bits: 32,
    multi_reply: false,
    write,
    parse,
    reference: "RFC 3261, RFC 3581",
    reply_from_other_port: false,
};

/// The most header lines read from one response.
const MAX_LINES: usize = 64;

/// A SIP element's response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipEvidence {
    /// The status code (200 OK, 404, 483 Too Many Hops, …).
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// The Server (or User-Agent) header: the software.
    pub server: Option<String>,
    /// The Allow header: the methods it supports.
    pub allow: Option<String>,
}

fn hex(cookie: u32) -> [u8; 8] {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 8];
    for (i, o) in out.iter_mut().enumerate() {
        *o = H[((cookie >> (28 - 4 * i)) & 0xf) as usize];
    }
    out
}

/// The request for `cookie` (291 bytes).
pub fn request(cookie: u32) -> Vec<u8> {
    let h = hex(cookie);
    let h = std::str::from_utf8(&h).unwrap_or("00000000");
    format!(
        "OPTIONS sip:harbormaster.invalid SIP/2.0\r\n\
         Via: SIP/2.0/UDP harbormaster.invalid;branch=z9hG4bK-{h};rport\r\n\
         Max-Forwards: 0\r\n\
         From: <sip:probe@harbormaster.invalid>;tag={h}\r\n\
         To: <sip:harbormaster.invalid>\r\n\
         Call-ID: {h}@harbormaster.invalid\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Writes [`request`].
pub fn write(cookie: u32, buf: &mut [u8]) -> Result<usize, PayloadError> {
    put(buf, &request(cookie))
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// Reads a response: `SIP/2.0 <code> <reason>`, headers up to a blank line,
/// our Call-ID, a CSeq for OPTIONS, and exactly Content-Length bytes of body.
pub fn parse(reply: &[u8], cookie: u32) -> Result<Evidence, PayloadError> {
    let end = find(reply, b"\r\n\r\n").ok_or(PayloadError::Truncated {
        what: "SIP response headers",
        need: reply.len() + 1,
        have: reply.len(),
    })?;
    let head = &reply[..end];
    let body_len = reply.len() - end - 4;
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = lines.next().unwrap_or_default();
    let rest = status_line
        .strip_prefix(b"SIP/2.0 ")
        .ok_or(PayloadError::Malformed(
            "SIP reply is not a SIP/2.0 response",
        ))?;
    let code = rest
        .get(..3)
        .ok_or(PayloadError::Malformed("SIP status code"))?;
    let status: u16 = std::str::from_utf8(code)
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|c| (100..700).contains(c))
        .ok_or(PayloadError::Malformed("SIP status code"))?;
    let reason = text(rest.get(4..).unwrap_or_default());
    let (mut call_id, mut cseq, mut server, mut allow, mut length) = (None, None, None, None, None);
    for line in lines.take(MAX_LINES) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        let value = line[colon + 1..].trim_ascii();
        let is = |long: &[u8], short: &[u8]| {
            name.eq_ignore_ascii_case(long)
                || (!short.is_empty() && name.eq_ignore_ascii_case(short))
        };
        if is(b"Call-ID", b"i") {
            call_id.get_or_insert(value);
        } else if is(b"CSeq", b"") {
            cseq.get_or_insert(value);
        } else if is(b"Server", b"") || (is(b"User-Agent", b"") && server.is_none()) {
            server = Some(text(value));
        } else if is(b"Allow", b"") {
            allow.get_or_insert_with(|| text(value));
        } else if is(b"Content-Length", b"l") {
            length.get_or_insert(value);
        }
    }
    let call_id = call_id.ok_or(PayloadError::Malformed("SIP response has no Call-ID"))?;
    let want_id = [&hex(cookie)[..], b"@harbormaster.invalid"].concat();
    if call_id != want_id {
        let got = call_id
            .get(..8)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .unwrap_or(0);
        return Err(PayloadError::CookieMismatch {
            expected: u64::from(cookie),
            got: u64::from(got),
        });
    }
    let cseq = cseq.ok_or(PayloadError::Malformed("SIP response has no CSeq"))?;
    if !cseq.ends_with(b"OPTIONS") {
        return Err(PayloadError::Malformed("SIP response is not to OPTIONS"));
    }
    let declared: usize = match length {
        Some(v) => std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(PayloadError::Malformed("SIP Content-Length"))?,
        None => body_len,
    };
    if declared != body_len {
        return Err(PayloadError::Truncated {
            what: "SIP body",
            // Content-Length is the sender's word: up to usize::MAX.
            need: (reply.len() - body_len).saturating_add(declared),
            have: reply.len(),
        });
    }
    Ok(Evidence::Sip(SipEvidence {
        status,
        reason,
        server,
        allow,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    /// Kamailio 5.6.3's answer (captured in a test namespace), for cookie 0xdeadbeef.
    const KAMAILIO: &[u8] = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP harbormaster.invalid;branch=z9hG4bK-deadbeef;rport=51474;received=198.18.0.9\r\nFrom: <sip:probe@harbormaster.invalid>;tag=deadbeef\r\nTo: <sip:harbormaster.invalid>;tag=c76dc810db5fe7d4da04ee295171b524.1a3e0000\r\nCall-ID: deadbeef@harbormaster.invalid\r\nCSeq: 1 OPTIONS\r\nServer: kamailio (5.6.3 (x86_64/linux))\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn options_and_answer() {
        let req = SIP.request(0xdead_beef);
        assert_eq!(req.len(), 291);
        assert!(req.starts_with(b"OPTIONS sip:harbormaster.invalid SIP/2.0\r\n"));
        assert!(SIP.parse(&req, 0xdead_beef).is_err());
        match SIP.parse(KAMAILIO, 0xdead_beef).unwrap() {
            Evidence::Sip(s) => {
                assert_eq!((s.status, s.reason.as_str()), (200, "OK"));
                assert_eq!(s.server.as_deref(), Some("kamailio (5.6.3 (x86_64/linux))"));
            }
            e => panic!("{e:?}"),
        }
        assert_eq!(
            SIP.parse(KAMAILIO, 0xdead_beee),
            Err(PayloadError::CookieMismatch {
                expected: 0xdead_beee,
                got: 0xdead_beef
            })
        );
        every_prefix_fails(&SIP, KAMAILIO, 0xdead_beef);
        mutations_never_panic(&SIP, KAMAILIO, 0xdead_beef);
    }

    #[test]
    fn bodies_compact_forms_and_errors() {
        let r = b"SIP/2.0 483 Too Many Hops\r\ni: 00000001@harbormaster.invalid\r\nCSeq: 1 OPTIONS\r\nUser-Agent: phone\r\nl: 4\r\n\r\nabcd";
        match SIP.parse(r, 1).unwrap() {
            Evidence::Sip(s) => {
                assert_eq!(s.status, 483);
                assert_eq!(s.server.as_deref(), Some("phone"));
            }
            e => panic!("{e:?}"),
        }
        assert!(SIP.parse(&r[..r.len() - 1], 1).is_err(), "short body");
        assert!(
            SIP.parse(b"SIP/2.0 200 OK\r\nCSeq: 1 OPTIONS\r\n\r\n", 1)
                .is_err(),
            "no Call-ID"
        );
        assert!(
            SIP.parse(b"SIP/2.0 200 OK\r\nCall-ID: 00000001@harbormaster.invalid\r\nCSeq: 1 INVITE\r\n\r\n", 1).is_err()
        );
        assert!(SIP.parse(b"HTTP/1.1 200 OK\r\n\r\n", 1).is_err());
        // Found by fuzz/fuzz_targets/payload.rs: a Content-Length near
        // usize::MAX overflowed the "need" arithmetic.
        let huge = b"SIP/2.0 200 OK\r\nCall-ID: 00000001@harbormaster.invalid\r\nCSeq: 1 OPTIONS\r\nContent-Length: 18446744073709551615\r\n\r\n";
        assert!(matches!(
            SIP.parse(huge, 1),
            Err(PayloadError::Truncated { .. })
        ));
    }
}
