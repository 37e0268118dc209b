//! ONC RPC portmapper (RFC 1833 for rpcbind's protocol, RFC 5531 for RPC
//! messages, RFC 4506 for XDR): a version-2 `PMAPPROC_DUMP` call, which
//! asks for every registered program.
//!
//! An internet-reachable portmapper lists the RPC services of the host (NFS,
//! mountd, NIS, …) and answers a 40-byte call with a list several times its
//! size. The cookie is the call's XID, which the reply repeats (32 bits).

use super::{Evidence, MAX_ITEMS, PayloadError, PayloadSpec, Protocol, need, put};

/// Portmapper DUMP, port 111.
pub const PORTMAPPER: PayloadSpec = PayloadSpec {
    port: 111,
    protocol: Protocol::Portmapper,
    cookie_bits: 32,
    multi_reply: false,
    write,
    parse,
    reference: "RFC 1833, RFC 5531, RFC 4506",
    reply_from_other_port: false,
};

/// The portmapper's program number.
pub const PROG_PORTMAP: u32 = 100_000;
/// `PMAPPROC_DUMP` in version 2.
pub const PROC_DUMP: u32 = 4;

/// One registration: program, version, transport protocol (6 TCP, 17 UDP), port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mapping {
    /// RPC program number (100003 is NFS, 100005 mountd, …).
    pub program: u32,
    /// Program version.
    pub version: u32,
    /// IP protocol number.
    pub protocol: u32,
    /// Port.
    pub port: u32,
}

/// A portmapper's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcEvidence {
    /// The XID (the cookie).
    pub xid: u32,
    /// Whether the call was accepted (MSG_ACCEPTED) rather than denied.
    pub accepted: bool,
    /// accept_stat (0 SUCCESS, 1 PROG_UNAVAIL, 2 PROG_MISMATCH, …) or, when
    /// denied, reject_stat.
    pub status: u32,
    /// Registrations in the list (all of them counted).
    pub mappings_total: usize,
    /// The first [`MAX_ITEMS`] registrations.
    pub mappings: Vec<Mapping>,
}

/// Writes the 40-byte call: XID, CALL, RPC version 2, program 100000
/// version 2 procedure DUMP, AUTH_NULL credentials and verifier.
pub fn write(cookie: u32, buf: &mut [u8]) -> Result<usize, PayloadError> {
    let words = [cookie, 0, 2, PROG_PORTMAP, 2, PROC_DUMP, 0, 0, 0, 0];
    let mut m = [0u8; 40];
    for (chunk, w) in m.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&w.to_be_bytes());
    }
    put(buf, &m)
}

/// Reads the big-endian word at `at`, or fails as truncated.
fn word(m: &[u8], at: usize, what: &'static str) -> Result<u32, PayloadError> {
    need(what, m, at + 4)?;
    Ok(u32::from_be_bytes([m[at], m[at + 1], m[at + 2], m[at + 3]]))
}

/// Reads a reply to [`write`].
pub fn parse(reply: &[u8], cookie: u32) -> Result<Evidence, PayloadError> {
    let xid = word(reply, 0, "RPC reply header")?;
    let msg_type = word(reply, 4, "RPC reply header")?;
    if msg_type != 1 {
        return Err(PayloadError::Malformed("RPC message is not a REPLY"));
    }
    if xid != cookie {
        return Err(PayloadError::CookieMismatch {
            expected: u64::from(cookie),
            got: u64::from(xid),
        });
    }
    let reply_stat = word(reply, 8, "RPC reply status")?;
    let ev = |accepted, status, total, mappings| {
        Ok(Evidence::Rpc(RpcEvidence {
            xid,
            accepted,
            status,
            mappings_total: total,
            mappings,
        }))
    };
    match reply_stat {
        0 => {}
        1 => {
            // MSG_DENIED: reject_stat, then two words (RPC_MISMATCH low/high)
            // or one (AUTH_ERROR's auth_stat).
            let reject = word(reply, 12, "RPC reject status")?;
            let tail = if reject == 0 { 8 } else { 4 };
            need("RPC rejection", reply, 16 + tail)?;
            return ev(false, reject, 0, Vec::new());
        }
        _ => {
            return Err(PayloadError::Malformed(
                "RPC reply_stat is neither accepted nor denied",
            ));
        }
    }
    // Verifier: flavor, length, opaque body padded to four bytes (at most
    // 400 bytes by RFC 5531).
    let verf_len = word(reply, 16, "RPC verifier")? as usize;
    if verf_len > 400 {
        return Err(PayloadError::Malformed(
            "RPC verifier longer than 400 bytes",
        ));
    }
    let mut at = 20 + verf_len.div_ceil(4) * 4;
    let accept_stat = word(reply, at, "RPC accept status")?;
    at += 4;
    if accept_stat != 0 {
        if accept_stat == 2 {
            need("RPC version mismatch", reply, at + 8)?;
        }
        return ev(true, accept_stat, 0, Vec::new());
    }
    // pmaplist: (value-follows, mapping)* then FALSE. Each entry is 20
    // bytes, so the loop ends within reply.len() / 20 steps.
    let mut mappings = Vec::new();
    let mut total = 0;
    loop {
        match word(reply, at, "portmapper list")? {
            0 => break,
            1 => {}
            _ => return Err(PayloadError::Malformed("XDR boolean is not 0 or 1")),
        }
        let m = Mapping {
            program: word(reply, at + 4, "portmapper entry")?,
            version: word(reply, at + 8, "portmapper entry")?,
            protocol: word(reply, at + 12, "portmapper entry")?,
            port: word(reply, at + 16, "portmapper entry")?,
        };
        total += 1;
        if mappings.len() < MAX_ITEMS {
            mappings.push(m);
        }
        at += 20;
    }
    ev(true, 0, total, mappings)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    /// rpcbind 1.2.6's answer to our call (captured in a test namespace):
    /// itself, versions 4, 3, 2 over TCP and UDP, port 111.
    fn rpcbind_reply() -> Vec<u8> {
        let mut w = vec![0x1122_3344, 1, 0, 0, 0, 0];
        for proto in [6, 17] {
            for v in [4, 3, 2] {
                w.extend_from_slice(&[1, PROG_PORTMAP, v, proto, 111]);
            }
        }
        w.push(0);
        w.iter().flat_map(|x: &u32| x.to_be_bytes()).collect()
    }

    #[test]
    fn dump_call_and_reply() {
        let req = PORTMAPPER.request(0x1122_3344);
        assert_eq!(
            req,
            [
                0x11, 0x22, 0x33, 0x44, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1, 0x86, 0xa0, 0, 0, 0, 2, 0, 0,
                0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
            ]
        );
        assert!(PORTMAPPER.parse(&req, 0x1122_3344).is_err());
        let reply = rpcbind_reply();
        assert_eq!(reply.len(), 148);
        match PORTMAPPER.parse(&reply, 0x1122_3344).unwrap() {
            Evidence::Rpc(r) => {
                assert!(r.accepted);
                assert_eq!((r.status, r.mappings_total), (0, 6));
                assert_eq!(
                    r.mappings[0],
                    Mapping {
                        program: 100_000,
                        version: 4,
                        protocol: 6,
                        port: 111
                    }
                );
            }
            e => panic!("{e:?}"),
        }
        assert!(matches!(
            PORTMAPPER.parse(&reply, 0x1122_3345),
            Err(PayloadError::CookieMismatch { .. })
        ));
        every_prefix_fails(&PORTMAPPER, &reply, 0x1122_3344);
        mutations_never_panic(&PORTMAPPER, &reply, 0x1122_3344);
    }

    #[test]
    fn errors_and_denials() {
        let words = |w: &[u32]| -> Vec<u8> { w.iter().flat_map(|x| x.to_be_bytes()).collect() };
        // PROG_UNAVAIL
        let r = words(&[7, 1, 0, 0, 0, 1]);
        assert!(matches!(
            PORTMAPPER.parse(&r, 7),
            Ok(Evidence::Rpc(RpcEvidence {
                accepted: true,
                status: 1,
                ..
            }))
        ));
        // MSG_DENIED, AUTH_ERROR
        let r = words(&[7, 1, 1, 1, 1]);
        assert!(matches!(
            PORTMAPPER.parse(&r, 7),
            Ok(Evidence::Rpc(RpcEvidence {
                accepted: false,
                status: 1,
                ..
            }))
        ));
        every_prefix_fails(&PORTMAPPER, &r, 7);
        // A verifier that claims more than is there, a bad boolean.
        assert!(
            PORTMAPPER
                .parse(&words(&[7, 1, 0, 0, 0xffff_ffff]), 7)
                .is_err()
        );
        assert!(PORTMAPPER.parse(&words(&[7, 1, 0, 0, 0, 0, 2]), 7).is_err());
    }
}
