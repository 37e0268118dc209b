//! memcached over UDP (memcached's `protocol.txt`, "UDP protocol"): an
//! 8-byte frame header (request ID, sequence number, total datagrams,
//! reserved) before an ordinary text command.
//!
//! memcached with UDP enabled was the largest reflector of 2018: a `stats`
//! of 15 bytes draws about 1.5 KB here, and a `get` of a large stored value
//! draws up to a megabyte. We send `stats` (which changes nothing on the
//! server) and read the version from its reply; [`write_version`] sends
//! `version` for a one-datagram check.

use super::{Evidence, PayloadError, PayloadSpec, Protocol, need, put, text};

/// memcached `stats` over UDP, port 11211.
pub const MEMCACHED: PayloadSpec = PayloadSpec {
    port: 11211,
    protocol: Protocol::Memcached,
    cookie_bits: 16,
    multi_reply: true,
    write: write_stats,
    parse,
    reference: "memcached protocol.txt (UDP protocol)",
    reply_from_other_port: false,
};

/// One datagram of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemcachedEvidence {
    /// The request ID (equal to the cookie's low 16 bits).
    pub request_id: u16,
    /// This datagram's sequence number (from 0).
    pub sequence: u16,
    /// How many datagrams the whole reply has.
    pub total: u16,
    /// The server's version, from `STAT version` or `VERSION` in this datagram.
    pub version: Option<String>,
    /// Bytes of reply text in this datagram.
    pub body_len: usize,
}

fn frame(cookie: u32, command: &[u8], buf: &mut [u8]) -> Result<usize, PayloadError> {
    let mut m = [0u8; 24];
    m[0..2].copy_from_slice(&(cookie as u16).to_be_bytes());
    m[4..6].copy_from_slice(&1u16.to_be_bytes());
    m[8..8 + command.len()].copy_from_slice(command);
    put(buf, &m[..8 + command.len()])
}

/// Writes `stats\r\n` in a frame (15 bytes).
pub fn write_stats(cookie: u32, buf: &mut [u8]) -> Result<usize, PayloadError> {
    frame(cookie, b"stats\r\n", buf)
}

/// Writes `version\r\n` in a frame (17 bytes).
pub fn write_version(cookie: u32, buf: &mut [u8]) -> Result<usize, PayloadError> {
    frame(cookie, b"version\r\n", buf)
}

/// Reads one reply datagram. The first (sequence 0) must start with a
/// memcached reply line (`STAT `, `VERSION `, `ERROR`, `CLIENT_ERROR`,
/// `SERVER_ERROR`); later ones continue the text anywhere. The last must
/// end the reply.
pub fn parse(reply: &[u8], cookie: u32) -> Result<Evidence, PayloadError> {
    need("memcached frame header", reply, 8)?;
    let request_id = u16::from_be_bytes([reply[0], reply[1]]);
    let sequence = u16::from_be_bytes([reply[2], reply[3]]);
    let total = u16::from_be_bytes([reply[4], reply[5]]);
    if request_id != cookie as u16 {
        return Err(PayloadError::CookieMismatch {
            expected: u64::from(cookie as u16),
            got: u64::from(request_id),
        });
    }
    if total == 0 || sequence >= total {
        return Err(PayloadError::Malformed(
            "memcached sequence not below total",
        ));
    }
    if reply[6..8] != [0, 0] {
        return Err(PayloadError::Malformed(
            "memcached reserved bytes are not zero",
        ));
    }
    let body = &reply[8..];
    need("memcached reply text", reply, 9)?;
    if sequence == 0 {
        const STARTS: [&[u8]; 5] = [
            b"STAT ",
            b"VERSION ",
            b"ERROR",
            b"CLIENT_ERROR",
            b"SERVER_ERROR",
        ];
        if !STARTS.iter().any(|s| body.starts_with(s)) {
            return Err(PayloadError::Malformed(
                "memcached reply does not start with a reply line",
            ));
        }
    }
    // The last datagram ends the reply: a one-line reply (VERSION, an error)
    // ends with its line, a `stats` listing with `END`. A datagram cut short
    // fails this; an earlier datagram has no end to check.
    let one_line = sequence == 0 && !body.starts_with(b"STAT ");
    let complete = if one_line {
        body.ends_with(b"\r\n")
    } else {
        body.ends_with(b"END\r\n")
    };
    if sequence + 1 == total && !complete {
        return Err(PayloadError::Truncated {
            what: "memcached last datagram",
            need: reply.len() + 1,
            have: reply.len(),
        });
    }
    let version = body
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .find_map(|l| {
            l.strip_prefix(b"STAT version ")
                .or_else(|| l.strip_prefix(b"VERSION "))
        })
        .map(text);
    Ok(Evidence::Memcached(MemcachedEvidence {
        request_id,
        sequence,
        total,
        version,
        body_len: body.len(),
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn version_reply() {
        let req = MEMCACHED.request(0x0004_4243);
        assert_eq!(req, b"\x42\x43\x00\x00\x00\x01\x00\x00stats\r\n");
        let mut buf = [0u8; 32];
        let n = write_version(0x4243, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"\x42\x43\x00\x00\x00\x01\x00\x00version\r\n");
        // memcached 1.6.18's answer (captured in the test namespace).
        let reply = b"BC\x00\x00\x00\x01\x00\x00VERSION 1.6.18\r\n";
        match MEMCACHED.parse(reply, 0x4243).unwrap() {
            Evidence::Memcached(m) => {
                assert_eq!((m.request_id, m.sequence, m.total), (0x4243, 0, 1));
                assert_eq!(m.version.as_deref(), Some("1.6.18"));
            }
            e => panic!("{e:?}"),
        }
        assert!(matches!(
            MEMCACHED.parse(reply, 0x4244),
            Err(PayloadError::CookieMismatch { .. })
        ));
        assert!(MEMCACHED.parse(&req, 0x4243).is_err());
        every_prefix_fails(&MEMCACHED, reply, 0x4243);
        mutations_never_panic(&MEMCACHED, reply, 0x4243);
    }

    #[test]
    fn stats_in_two_datagrams() {
        let first = b"BB\x00\x00\x00\x02\x00\x00STAT pid 21572\r\nSTAT uptime 26\r\nSTAT version 1.6.18\r\nSTAT curr_conn";
        let second = b"BB\x00\x01\x00\x02\x00\x00ections 3\r\nEND\r\n";
        match MEMCACHED.parse(first, 0x4242).unwrap() {
            Evidence::Memcached(m) => {
                assert_eq!((m.sequence, m.total), (0, 2));
                assert_eq!(m.version.as_deref(), Some("1.6.18"));
            }
            e => panic!("{e:?}"),
        }
        assert!(matches!(
            MEMCACHED.parse(second, 0x4242),
            Ok(Evidence::Memcached(MemcachedEvidence {
                sequence: 1,
                version: None,
                ..
            }))
        ));
        every_prefix_fails(&MEMCACHED, second, 0x4242);
        let mut bad = second.to_vec();
        bad[3] = 2; // sequence 2 of 2
        assert!(MEMCACHED.parse(&bad, 0x4242).is_err());
    }
}
