//! The three oldest UDP services: echo (RFC 862), quote of the day (RFC 865)
//! and character generator (RFC 864). Each answers any datagram, so the
//! request is short text; only echo can carry a cookie (it returns the
//! datagram unchanged).

use super::{Evidence, PayloadError, PayloadSpec, Protocol, need, put, text};

/// The echo request: a fixed prefix and the cookie as 8 hex digits.
const ECHO_PREFIX: &[u8] = b"harbormaster echo ";
const ECHO_LEN: usize = ECHO_PREFIX.len() + 8 + 1;

/// Echo, port 7: the reply must be our request byte for byte.
pub const ECHO: PayloadSpec = PayloadSpec {
    port: 7,
    protocol: Protocol::Echo,
    cookie_bits: 32,
    multi_reply: false,
    write: write_echo,
    parse: parse_echo,
    reference: "RFC 862",
    reply_from_other_port: false,
};

/// Quote of the day, port 17: any datagram draws a quote.
pub const QOTD: PayloadSpec = PayloadSpec {
    port: 17,
    protocol: Protocol::Qotd,
    cookie_bits: 0,
    multi_reply: false,
    write: write_newline,
    parse: parse_text,
    reference: "RFC 865",
    reply_from_other_port: false,
};

/// Character generator, port 19: any datagram draws 0 to 512 characters.
pub const CHARGEN: PayloadSpec = PayloadSpec {
    port: 19,
    protocol: Protocol::Chargen,
    cookie_bits: 0,
    multi_reply: false,
    write: write_newline,
    parse: parse_text,
    reference: "RFC 864",
    reply_from_other_port: false,
};

fn echo_request(cookie: u32) -> [u8; ECHO_LEN] {
    let mut r = [0u8; ECHO_LEN];
    r[..ECHO_PREFIX.len()].copy_from_slice(ECHO_PREFIX);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in 0..8 {
        let nibble = (cookie >> (28 - 4 * i)) & 0xf;
        r[ECHO_PREFIX.len() + i] = HEX[nibble as usize];
    }
    r[ECHO_LEN - 1] = b'\n';
    r
}

/// Writes the echo request for `cookie`.
pub fn write_echo(cookie: u32, buf: &mut [u8]) -> Result<usize, PayloadError> {
    put(buf, &echo_request(cookie))
}

/// Accepts only the exact request for `cookie` (an echo server's answer).
pub fn parse_echo(reply: &[u8], cookie: u32) -> Result<Evidence, PayloadError> {
    need("echo reply", reply, ECHO_LEN)?;
    let want = echo_request(cookie);
    if reply == want {
        return Ok(Evidence::Echo);
    }
    if reply.len() != ECHO_LEN || !reply.starts_with(ECHO_PREFIX) {
        return Err(PayloadError::Malformed(
            "echo reply is not the datagram sent",
        ));
    }
    Err(PayloadError::CookieMismatch {
        expected: u64::from(cookie),
        got: u64::from_str_radix(
            std::str::from_utf8(&reply[ECHO_PREFIX.len()..ECHO_LEN - 1]).unwrap_or("0"),
            16,
        )
        .unwrap_or(0),
    })
}

/// Writes a lone newline (QOTD and chargen ignore what they are sent).
pub fn write_newline(_cookie: u32, buf: &mut [u8]) -> Result<usize, PayloadError> {
    put(buf, b"\n")
}

/// Any non-empty datagram other than our own newline is the service's text.
pub fn parse_text(reply: &[u8], _cookie: u32) -> Result<Evidence, PayloadError> {
    need("text reply", reply, 1)?;
    if reply == b"\n" {
        return Err(PayloadError::Malformed("reply is our own request"));
    }
    Ok(Evidence::Text {
        len: reply.len(),
        sample: text(&reply[..reply.len().min(64)]),
    })
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn echo_round_trip_and_cookie() {
        let req = ECHO.request(0x0123_abcd);
        assert_eq!(req, b"harbormaster echo 0123abcd\n");
        assert_eq!(ECHO.parse(&req, 0x0123_abcd), Ok(Evidence::Echo));
        assert_eq!(
            ECHO.parse(&req, 0x0123_abce),
            Err(PayloadError::CookieMismatch {
                expected: 0x0123_abce,
                got: 0x0123_abcd
            })
        );
        assert!(ECHO.parse(b"harbormaster echo zzzzzzzz\n", 1).is_err());
        every_prefix_fails(&ECHO, &req, 0x0123_abcd);
        mutations_never_panic(&ECHO, &req, 0x0123_abcd);
    }

    #[test]
    fn text_services() {
        let quote = b"Measure twice, cut once.\r\n";
        match QOTD.parse(quote, 0).unwrap() {
            Evidence::Text { len, sample } => {
                assert_eq!(len, quote.len());
                assert_eq!(sample, "Measure twice, cut once.");
            }
            e => panic!("{e:?}"),
        }
        let line: Vec<u8> = (b' '..=b'~').cycle().take(512).collect();
        assert!(matches!(
            CHARGEN.parse(&line, 0),
            Ok(Evidence::Text { len: 512, .. })
        ));
        assert!(CHARGEN.parse(b"", 0).is_err());
        assert!(CHARGEN.parse(b"\n", 0).is_err());
    }
}
