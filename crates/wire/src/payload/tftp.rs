//! TFTP (RFC 1350, options from RFC 2347): a read request for a file that
//! should not exist, and the server's ERROR (or DATA, or OACK).
//!
//! An internet-reachable TFTP server hands out whatever is in its directory
//! (router configurations, boot images) to anyone who names a file; that it
//! answers at all is the finding. The request names a file no server should
//! have, so a server answers "file not found" and nothing is transferred.
//!
//! TFTP has no field that echoes the request, so there is no cookie; and a
//! server answers from a new port (its transfer ID, RFC 1350 §4), so a
//! receiver matches replies on the source address and the destination port
//! alone ([`PayloadSpec::reply_from_other_port`]).

use super::{Evidence, PayloadError, PayloadSpec, Protocol, need, put, text};

/// TFTP read request, port 69.
pub const TFTP: PayloadSpec = PayloadSpec {
    port: 69,
    protocol: Protocol::Tftp,
    cookie_bits: 0,
    multi_reply: false,
    write,
    parse,
    reference: "RFC 1350, RFC 2347",
    reply_from_other_port: true,
};

/// The file we ask for.
pub const FILENAME: &[u8] = b"harbormaster-probe-no-such-file";

/// Opcode read request.
pub const OP_RRQ: u16 = 1;
/// Opcode data.
pub const OP_DATA: u16 = 3;
/// Opcode acknowledgement.
pub const OP_ACK: u16 = 4;
/// Opcode error.
pub const OP_ERROR: u16 = 5;
/// Opcode option acknowledgement (RFC 2347).
pub const OP_OACK: u16 = 6;

/// A TFTP server's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TftpEvidence {
    /// DATA, ERROR or OACK.
    pub opcode: u16,
    /// ERROR: the error code (1 file not found, 2 access violation, …).
    pub error_code: Option<u16>,
    /// ERROR: the server's message.
    pub message: Option<String>,
    /// DATA: the block number (1 for the first).
    pub block: Option<u16>,
    /// DATA: bytes of file content in this block.
    pub data_len: usize,
}

/// Writes `RRQ harbormaster-probe-no-such-file octet` (40 bytes).
pub fn write(_cookie: u32, buf: &mut [u8]) -> Result<usize, PayloadError> {
    let mut m = [0u8; 2 + FILENAME.len() + 1 + 5 + 1];
    m[1] = OP_RRQ as u8;
    m[2..2 + FILENAME.len()].copy_from_slice(FILENAME);
    m[3 + FILENAME.len()..3 + FILENAME.len() + 5].copy_from_slice(b"octet");
    put(buf, &m)
}

/// Reads a server's answer: DATA (block and up to 512 bytes; a datagram is
/// a whole block, so any length is complete), ERROR (code and a
/// NUL-terminated message) or OACK (NUL-terminated option pairs).
pub fn parse(reply: &[u8], _cookie: u32) -> Result<Evidence, PayloadError> {
    need("TFTP header", reply, 4)?;
    let opcode = u16::from_be_bytes([reply[0], reply[1]]);
    let word = u16::from_be_bytes([reply[2], reply[3]]);
    let ev = |error_code, message, block, data_len| {
        Ok(Evidence::Tftp(TftpEvidence {
            opcode,
            error_code,
            message,
            block,
            data_len,
        }))
    };
    match opcode {
        OP_DATA => {
            if reply.len() > 4 + 512 {
                return Err(PayloadError::Malformed(
                    "TFTP DATA block longer than 512 bytes",
                ));
            }
            ev(None, None, Some(word), reply.len() - 4)
        }
        OP_ERROR => {
            let msg = &reply[4..];
            let Some(nul) = msg.iter().position(|&b| b == 0) else {
                return Err(PayloadError::Truncated {
                    what: "TFTP error message",
                    need: reply.len() + 1,
                    have: reply.len(),
                });
            };
            if word > 8 {
                return Err(PayloadError::Malformed("TFTP error code above 8"));
            }
            ev(Some(word), Some(text(&msg[..nul])), None, 0)
        }
        OP_OACK => {
            if reply.last() != Some(&0) {
                return Err(PayloadError::Truncated {
                    what: "TFTP option acknowledgement",
                    need: reply.len() + 1,
                    have: reply.len(),
                });
            }
            ev(None, None, None, 0)
        }
        OP_RRQ | 2 | OP_ACK => Err(PayloadError::Malformed("TFTP packet is a request or ACK")),
        _ => Err(PayloadError::Malformed("TFTP opcode unknown")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn request_and_error() {
        let r = TFTP.request(0);
        assert_eq!(r.len(), 40);
        assert_eq!(&r[..2], &[0, 1]);
        assert!(r.ends_with(b"\0octet\0"));
        assert!(TFTP.parse(&r, 0).is_err());
        // tftpd-hpa's answer.
        let err = b"\x00\x05\x00\x01File not found\x00";
        match TFTP.parse(err, 0).unwrap() {
            Evidence::Tftp(t) => {
                assert_eq!((t.opcode, t.error_code), (OP_ERROR, Some(1)));
                assert_eq!(t.message.as_deref(), Some("File not found"));
            }
            e => panic!("{e:?}"),
        }
        every_prefix_fails(&TFTP, err, 0);
        mutations_never_panic(&TFTP, err, 0);
    }

    #[test]
    fn data_and_oack() {
        let mut data = vec![0, 3, 0, 1];
        data.extend_from_slice(b"hostname router\n");
        assert!(matches!(
            TFTP.parse(&data, 0),
            Ok(Evidence::Tftp(TftpEvidence {
                block: Some(1),
                data_len: 16,
                ..
            }))
        ));
        let mut big = vec![0, 3, 0, 1];
        big.resize(4 + 513, 0);
        assert!(TFTP.parse(&big, 0).is_err());
        assert!(TFTP.parse(b"\x00\x06blksize\x001428\x00", 0).is_ok());
        assert!(TFTP.parse(b"\x00\x06blksize\x001428", 0).is_err());
        assert!(
            TFTP.parse(b"\x00\x04\x00\x01", 0).is_err(),
            "an ACK is not an answer"
        );
    }
}
