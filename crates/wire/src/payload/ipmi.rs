//! IPMI over LAN (RMCP, port 623): an IPMI v1.5 session-less "Get Channel
//! Authentication Capabilities" request, written from the IPMI v2.0
//! specification (rev. 1.1: §13 RMCP and the v1.5 session header, §22.13
//! the command) and DMTF's ASF 2.0 (DSP0136) for the RMCP header.
//!
//! A BMC reachable from the internet is a serious exposure (power control,
//! consoles, and IPMI 2.0's RAKP hands out password hashes to anyone who
//! names a user). This request needs no session and no credentials; the
//! answer says which authentication types the BMC accepts (among them
//! "none"), whether null or anonymous logins are on, and whether it speaks
//! IPMI 2.0 (RMCP+).
//!
//! The cookie is the request's 6-bit sequence number (rqSeq), which the
//! response repeats; both IPMI checksums are checked as well.

use super::{Evidence, PayloadError, PayloadSpec, Protocol, need, put};

/// IPMI Get Channel Authentication Capabilities, port 623.
pub const IPMI: PayloadSpec = PayloadSpec {
    port: 623,
    protocol: Protocol::Ipmi,
    cookie_bits: 6,
    multi_reply: false,
    write,
    parse,
    reference: "IPMI v2.0 rev. 1.1 §13, §22.13; DMTF DSP0136 (RMCP)",
    reply_from_other_port: false,
};

/// Command number of Get Channel Authentication Capabilities.
pub const CMD_GET_CHANNEL_AUTH_CAPS: u8 = 0x38;
/// NetFn App (request); the response is NetFn + 1.
pub const NETFN_APP: u8 = 0x06;
/// The BMC's slave address.
pub const BMC_ADDR: u8 = 0x20;
/// Our software ID as requester (remote console 0x81).
pub const REQUESTER: u8 = 0x81;

/// What the BMC says about authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpmiEvidence {
    /// Completion code (0 is success).
    pub completion: u8,
    /// The channel the request arrived on.
    pub channel: u8,
    /// Authentication type "none" accepted.
    pub auth_none: bool,
    /// MD2 accepted.
    pub auth_md2: bool,
    /// MD5 accepted.
    pub auth_md5: bool,
    /// Plain password ("straight") accepted.
    pub auth_password: bool,
    /// The BMC speaks IPMI 2.0 (RMCP+).
    pub ipmi_v2: bool,
    /// Anonymous login (null user, null password) enabled.
    pub anonymous_login: bool,
    /// Null user names enabled.
    pub null_usernames: bool,
}

/// The two's-complement checksum IPMI puts after a run of bytes.
fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |a, &b| a.wrapping_add(b))
        .wrapping_neg()
}

/// Writes the 23-byte request: RMCP (class IPMI), a v1.5 session header
/// without a session, and the command for "this channel", administrator
/// level, asking for the IPMI 2.0 extended data.
pub fn write(cookie: u32, buf: &mut [u8]) -> Result<usize, PayloadError> {
    let seq = (cookie & 0x3f) as u8;
    let head = [BMC_ADDR, NETFN_APP << 2];
    let body = [REQUESTER, seq << 2, CMD_GET_CHANNEL_AUTH_CAPS, 0x8e, 0x04];
    let mut m = [0u8; 23];
    // RMCP: version 6, reserved, sequence 0xff (no ACK wanted), class 7 (IPMI).
    m[..4].copy_from_slice(&[0x06, 0x00, 0xff, 0x07]);
    // Session header: auth type none, sequence 0, session ID 0 (bytes 4..13),
    // then the message length.
    m[13] = 9;
    m[14..16].copy_from_slice(&head);
    m[16] = checksum(&head);
    m[17..22].copy_from_slice(&body);
    m[22] = checksum(&body);
    put(buf, &m)
}

/// Reads the BMC's response to [`write`].
pub fn parse(reply: &[u8], cookie: u32) -> Result<Evidence, PayloadError> {
    need("RMCP header", reply, 4)?;
    if reply[0] != 0x06 || reply[3] & 0x1f != 0x07 {
        return Err(PayloadError::Malformed("not an RMCP message of class IPMI"));
    }
    need("IPMI session header", reply, 5)?;
    // Authentication type none carries no 16-byte auth code; others do.
    let auth = reply[4];
    let len_at = if auth == 0 { 13 } else { 29 };
    need("IPMI session header", reply, len_at + 1)?;
    let len = usize::from(reply[len_at]);
    let msg_at = len_at + 1;
    need("IPMI message", reply, msg_at + len)?;
    let msg = &reply[msg_at..msg_at + len];
    // rqAddr, netFn/rqLUN, checksum, rsAddr, rqSeq/rsLUN, cmd, completion, checksum.
    if msg.len() < 8 {
        return Err(PayloadError::Truncated {
            what: "IPMI response",
            need: msg_at + 8,
            have: reply.len(),
        });
    }
    if checksum(&msg[..2]) != msg[2] || checksum(&msg[3..msg.len() - 1]) != msg[msg.len() - 1] {
        return Err(PayloadError::Malformed("IPMI checksum"));
    }
    if msg[1] >> 2 != NETFN_APP + 1 || msg[5] != CMD_GET_CHANNEL_AUTH_CAPS {
        return Err(PayloadError::Malformed(
            "IPMI message is not this command's response",
        ));
    }
    let seq = msg[4] >> 2;
    if u32::from(seq) != cookie & 0x3f {
        return Err(PayloadError::CookieMismatch {
            expected: u64::from(cookie & 0x3f),
            got: u64::from(seq),
        });
    }
    let completion = msg[6];
    let data = &msg[7..msg.len() - 1];
    let ev = |channel, types: u8, status: u8| {
        Evidence::Ipmi(IpmiEvidence {
            completion,
            channel,
            auth_none: types & 0x01 != 0,
            auth_md2: types & 0x02 != 0,
            auth_md5: types & 0x04 != 0,
            auth_password: types & 0x10 != 0,
            ipmi_v2: types & 0x80 != 0,
            anonymous_login: status & 0x01 != 0,
            null_usernames: status & 0x02 != 0,
        })
    };
    if completion != 0 {
        return Ok(ev(0, 0, 0));
    }
    // Channel, auth type support, auth status, extended capabilities, OEM
    // ID (3), OEM auxiliary data.
    if data.len() < 8 {
        return Err(PayloadError::Truncated {
            what: "IPMI authentication capabilities",
            need: msg_at + 7 + 8 + 1,
            have: reply.len(),
        });
    }
    Ok(ev(data[0], data[1], data[2]))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    /// OpenIPMI's ipmi_sim (2.0.33) answering rqSeq 0x15 (captured in a test namespace).
    const IPMI_SIM: &[u8] = &[
        0x06, 0x00, 0xff, 0x07, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0x81, 0x1c, 0x63, 0x20, 0x54,
        0x38, 0x00, 0x01, 0x97, 0x06, 0x03, 0x00, 0x00, 0x00, 0x00, 0xb3,
    ];

    #[test]
    fn request_and_response() {
        let req = IPMI.request(0x15);
        assert_eq!(req.len(), 23);
        assert_eq!(&req[..4], &[6, 0, 0xff, 7]);
        assert_eq!(
            &req[13..],
            &[9, 0x20, 0x18, 0xc8, 0x81, 0x54, 0x38, 0x8e, 0x04, 0x61]
        );
        assert!(IPMI.parse(&req, 0x15).is_err());
        match IPMI.parse(IPMI_SIM, 0x15).unwrap() {
            Evidence::Ipmi(i) => {
                assert_eq!((i.completion, i.channel), (0, 1));
                assert!(i.auth_none && i.auth_md2 && i.auth_md5 && i.auth_password && i.ipmi_v2);
                assert!(i.null_usernames && !i.anonymous_login);
            }
            e => panic!("{e:?}"),
        }
        assert!(matches!(
            IPMI.parse(IPMI_SIM, 0x16),
            Err(PayloadError::CookieMismatch {
                expected: 0x16,
                got: 0x15
            })
        ));
        every_prefix_fails(&IPMI, IPMI_SIM, 0x15);
        mutations_never_panic(&IPMI, IPMI_SIM, 0x15);
        let mut bad = IPMI_SIM.to_vec();
        bad[22] ^= 1;
        assert_eq!(
            IPMI.parse(&bad, 0x15),
            Err(PayloadError::Malformed("IPMI checksum"))
        );
    }
}
