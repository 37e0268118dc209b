//! DNS (RFC 1035, EDNS0 from RFC 6891) and multicast DNS (RFC 6762/6763).
//!
//! The DNS request asks for the root zone's NS records with recursion
//! desired, the question an open resolver answers from its root hints or
//! cache without any lookup of a name we choose. The reply's flags say what
//! the server is: an open recursive resolver answers with RA set; a closed
//! one refuses (RCODE 5); an authority for the root answers with AA. The
//! request carries an EDNS0 OPT record offering a 1,232-byte UDP payload
//! (the size the 2020 DNS flag day settled on), as a real client does, so the
//! measured amplification is the one such a client would draw.
//!
//! The mDNS request is a legacy unicast query (from a port other than 5353,
//! RFC 6762 §6.7) for `_services._dns-sd._udp.local` PTR, the service
//! enumeration of RFC 6763 §9; the responder returns the service types it
//! advertises, with our ID.
//!
//! Hand-written rather than `hickory-proto` (already in the dependency tree
//! through hickory-resolver): this crate is pure and has no dependencies, the
//! parser must be lax about what it does not need (it reads flags and counts,
//! walks every record for length checks, and decodes only NS and PTR names)
//! and strict about bounds (name pointers followed at most 32 times, at most
//! [`MAX_ITEMS`] names kept), and a general message parser allocates every
//! record of a hostile reply.

use super::{Evidence, MAX_ITEMS, PayloadError, PayloadSpec, Protocol, need, put};

/// DNS, port 53: root NS with recursion desired.
pub const DNS: PayloadSpec = PayloadSpec {
    port: 53,
    protocol: Protocol::Dns,
    cookie_bits: 16,
    multi_reply: false,
    write: write_dns,
    parse: parse_dns,
    reference: "RFC 1035, RFC 6891",
    reply_from_other_port: false,
};

/// mDNS, port 5353: service enumeration as a legacy unicast query.
pub const MDNS: PayloadSpec = PayloadSpec {
    port: 5353,
    protocol: Protocol::Mdns,
    cookie_bits: 16,
    multi_reply: false,
    write: write_mdns,
    parse: parse_mdns,
    reference: "RFC 6762, RFC 6763",
    reply_from_other_port: false,
};

/// Record type NS.
pub const TYPE_NS: u16 = 2;
/// Record type PTR.
pub const TYPE_PTR: u16 = 12;
/// Record type OPT (EDNS0).
pub const TYPE_OPT: u16 = 41;
/// Class IN.
pub const CLASS_IN: u16 = 1;
/// RCODE NOERROR.
pub const RCODE_NOERROR: u8 = 0;
/// RCODE NXDOMAIN.
pub const RCODE_NXDOMAIN: u8 = 3;
/// RCODE REFUSED.
pub const RCODE_REFUSED: u8 = 5;
/// The UDP payload size our OPT record offers.
pub const EDNS_UDP_SIZE: u16 = 1232;

/// The mDNS service-enumeration name, as wire-format labels.
const SERVICES_NAME: &[u8] = b"\x09_services\x07_dns-sd\x04_udp\x05local\x00";

/// What the server did with a recursion-desired query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DnsVerdict {
    /// Answered with recursion available: an open resolver (a reflector for
    /// anyone on the internet if it answers us).
    Recursed,
    /// Answered REFUSED: it does not resolve for us.
    Refused,
    /// Answered from its own zone data (AA set, no recursion offered).
    Authoritative,
    /// Any other answer (a referral, SERVFAIL, an empty answer without RA).
    Other,
}

/// The header and sections of a DNS reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsEvidence {
    /// The ID (equal to the low 16 bits of the cookie).
    pub id: u16,
    /// RCODE (the low four bits; an extended RCODE in OPT is not combined).
    pub rcode: u8,
    /// AA: the server is an authority for the name.
    pub authoritative: bool,
    /// TC: the reply was cut to fit UDP.
    pub truncated: bool,
    /// RD echoed.
    pub recursion_desired: bool,
    /// RA: the server offers recursion.
    pub recursion_available: bool,
    /// ANCOUNT.
    pub answers: u16,
    /// NSCOUNT.
    pub authority: u16,
    /// ARCOUNT.
    pub additional: u16,
    /// NS or PTR names in the answer section (at most [`MAX_ITEMS`]).
    pub names: Vec<String>,
    /// What the flags say.
    pub verdict: DnsVerdict,
}

/// An mDNS responder's answer to service enumeration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MdnsEvidence {
    /// The ID (equal to the low 16 bits of the cookie).
    pub id: u16,
    /// ANCOUNT.
    pub answers: u16,
    /// Service types advertised (PTR targets, e.g. `_workstation._tcp.local`),
    /// at most [`MAX_ITEMS`].
    pub services: Vec<String>,
}

/// Writes a DNS header with one question and `arcount` additional records.
fn header(id: u16, flags: u16, arcount: u16) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[0..2].copy_from_slice(&id.to_be_bytes());
    h[2..4].copy_from_slice(&flags.to_be_bytes());
    h[4..6].copy_from_slice(&1u16.to_be_bytes());
    h[10..12].copy_from_slice(&arcount.to_be_bytes());
    h
}

/// Writes the DNS request: `. IN NS`, RD set, an EDNS0 OPT offering
/// [`EDNS_UDP_SIZE`]; 28 bytes.
pub fn write_dns(cookie: u32, buf: &mut [u8]) -> Result<usize, PayloadError> {
    let mut m = [0u8; 28];
    m[..12].copy_from_slice(&header(cookie as u16, 0x0100, 1));
    // Question: the root name (one zero byte), type NS, class IN.
    m[13..15].copy_from_slice(&TYPE_NS.to_be_bytes());
    m[15..17].copy_from_slice(&CLASS_IN.to_be_bytes());
    // OPT: root owner, type 41, class = UDP size, TTL 0 (no extended flags), RDLENGTH 0.
    m[18..20].copy_from_slice(&TYPE_OPT.to_be_bytes());
    m[20..22].copy_from_slice(&EDNS_UDP_SIZE.to_be_bytes());
    put(buf, &m)
}

/// Writes the mDNS legacy unicast query for `_services._dns-sd._udp.local`
/// PTR; 46 bytes.
pub fn write_mdns(cookie: u32, buf: &mut [u8]) -> Result<usize, PayloadError> {
    let mut m = [0u8; 12 + SERVICES_NAME.len() + 4];
    m[..12].copy_from_slice(&header(cookie as u16, 0, 0));
    m[12..12 + SERVICES_NAME.len()].copy_from_slice(SERVICES_NAME);
    let q = 12 + SERVICES_NAME.len();
    m[q..q + 2].copy_from_slice(&TYPE_PTR.to_be_bytes());
    m[q + 2..q + 4].copy_from_slice(&CLASS_IN.to_be_bytes());
    put(buf, &m)
}

/// A record or question read from a message: where its fixed part is.
struct Rr {
    /// Offset of the owner name.
    name: usize,
    rtype: u16,
    /// Offset and length of RDATA (empty for a question).
    rdata: usize,
}

/// The offset just past the name at `at` (not following pointers).
fn skip_name(m: &[u8], mut at: usize) -> Result<usize, PayloadError> {
    // Each label consumes at least one byte, so this ends within m.len() steps.
    loop {
        let Some(&len) = m.get(at) else {
            return Err(PayloadError::Truncated {
                what: "DNS name",
                need: at + 1,
                have: m.len(),
            });
        };
        match len & 0xc0 {
            0x00 if len == 0 => return Ok(at + 1),
            0x00 => at += 1 + usize::from(len),
            0xc0 => {
                need("DNS name pointer", m, at + 2)?;
                return Ok(at + 2);
            }
            _ => return Err(PayloadError::Malformed("DNS label type 0x40/0x80")),
        }
    }
}

/// The name at `at` as dotted text (lower case, pointers followed at most 32
/// times, at most 255 bytes), or `None` if it is malformed.
fn read_name(m: &[u8], mut at: usize) -> Option<String> {
    let mut out = String::new();
    let mut hops = 0;
    loop {
        let len = *m.get(at)?;
        match len & 0xc0 {
            0x00 if len == 0 => break,
            0x00 => {
                let label = m.get(at + 1..at + 1 + usize::from(len))?;
                if out.len() + label.len() + 1 > 255 {
                    return None;
                }
                if !out.is_empty() {
                    out.push('.');
                }
                for &c in label {
                    // Names are bytes; keep printable ASCII, escape the rest.
                    if c.is_ascii_graphic() && c != b'.' && c != b'\\' {
                        out.push(c.to_ascii_lowercase() as char);
                    } else {
                        out.push_str(&format!("\\{c:03}"));
                    }
                }
                at += 1 + usize::from(len);
            }
            0xc0 => {
                hops += 1;
                if hops > 32 {
                    return None;
                }
                let lo = *m.get(at + 1)?;
                at = (usize::from(len & 0x3f) << 8) | usize::from(lo);
            }
            _ => return None,
        }
    }
    if out.is_empty() {
        out.push('.');
    }
    Some(out)
}

/// Reads a question (`rr == false`) or a resource record at `at`; returns it
/// and the offset after it.
fn read_entry(m: &[u8], at: usize, rr: bool) -> Result<(Rr, usize), PayloadError> {
    let end = skip_name(m, at)?;
    let fixed = if rr { 10 } else { 4 };
    need("DNS record", m, end + fixed)?;
    let rtype = u16::from_be_bytes([m[end], m[end + 1]]);
    if !rr {
        return Ok((
            Rr {
                name: at,
                rtype,
                rdata: end + 4,
            },
            end + 4,
        ));
    }
    let rdlen = usize::from(u16::from_be_bytes([m[end + 8], m[end + 9]]));
    let rdata = end + 10;
    need("DNS record data", m, rdata + rdlen)?;
    Ok((
        Rr {
            name: at,
            rtype,
            rdata,
        },
        rdata + rdlen,
    ))
}

/// A parsed reply: header fields and the names of answers of type `want`.
struct Parsed {
    id: u16,
    flags: u16,
    counts: [u16; 4],
    /// Owner name and type of the first question.
    question: Option<(String, u16)>,
    names: Vec<String>,
}

/// Checks ID and QR, then walks every section so that a reply cut anywhere
/// is rejected.
fn parse_message(m: &[u8], cookie: u32, want: u16) -> Result<Parsed, PayloadError> {
    need("DNS header", m, 12)?;
    let id = u16::from_be_bytes([m[0], m[1]]);
    let flags = u16::from_be_bytes([m[2], m[3]]);
    let counts = [4, 6, 8, 10].map(|i| u16::from_be_bytes([m[i], m[i + 1]]));
    if flags & 0x8000 == 0 {
        return Err(PayloadError::Malformed(
            "DNS message is a query, not a response",
        ));
    }
    if (flags >> 11) & 0xf != 0 {
        return Err(PayloadError::Malformed("DNS opcode is not QUERY"));
    }
    if id != cookie as u16 {
        return Err(PayloadError::CookieMismatch {
            expected: u64::from(cookie as u16),
            got: u64::from(id),
        });
    }
    let mut at = 12;
    let mut question = None;
    for i in 0..counts[0] {
        let (q, next) = read_entry(m, at, false)?;
        if i == 0 {
            let name = read_name(m, q.name).ok_or(PayloadError::Malformed("DNS question name"))?;
            question = Some((name, q.rtype));
        }
        at = next;
    }
    let mut names = Vec::new();
    for (section, &count) in counts.iter().enumerate().skip(1) {
        for _ in 0..count {
            let (rr, next) = read_entry(m, at, true)?;
            if section == 1 && rr.rtype == want && names.len() < MAX_ITEMS {
                names.extend(read_name(m, rr.rdata));
            }
            at = next;
        }
    }
    Ok(Parsed {
        id,
        flags,
        counts,
        question,
        names,
    })
}

/// Reads a DNS server's reply to [`write_dns`].
pub fn parse_dns(reply: &[u8], cookie: u32) -> Result<Evidence, PayloadError> {
    let p = parse_message(reply, cookie, TYPE_NS)?;
    // A server may drop the question from an error reply; if it is there it
    // must be ours.
    if let Some((name, qtype)) = &p.question
        && (name != "." || *qtype != TYPE_NS)
    {
        return Err(PayloadError::Malformed("DNS reply is for another question"));
    }
    let rcode = (p.flags & 0xf) as u8;
    let authoritative = p.flags & 0x0400 != 0;
    let recursion_available = p.flags & 0x0080 != 0;
    let answers = p.counts[1];
    let verdict = if rcode == RCODE_REFUSED {
        DnsVerdict::Refused
    } else if recursion_available && rcode == RCODE_NOERROR && answers > 0 {
        DnsVerdict::Recursed
    } else if authoritative && (rcode == RCODE_NOERROR || rcode == RCODE_NXDOMAIN) {
        DnsVerdict::Authoritative
    } else {
        DnsVerdict::Other
    };
    Ok(Evidence::Dns(DnsEvidence {
        id: p.id,
        rcode,
        authoritative,
        truncated: p.flags & 0x0200 != 0,
        recursion_desired: p.flags & 0x0100 != 0,
        recursion_available,
        answers,
        authority: p.counts[2],
        additional: p.counts[3],
        names: p.names,
        verdict,
    }))
}

/// Reads an mDNS responder's legacy unicast reply to [`write_mdns`].
pub fn parse_mdns(reply: &[u8], cookie: u32) -> Result<Evidence, PayloadError> {
    let p = parse_message(reply, cookie, TYPE_PTR)?;
    if let Some((name, qtype)) = &p.question
        && (name != "_services._dns-sd._udp.local" || *qtype != TYPE_PTR)
    {
        return Err(PayloadError::Malformed(
            "mDNS reply is for another question",
        ));
    }
    if p.counts[1] == 0 {
        return Err(PayloadError::Malformed("mDNS reply has no answer"));
    }
    Ok(Evidence::Mdns(MdnsEvidence {
        id: p.id,
        answers: p.counts[1],
        services: p.names,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    /// A reply to `req` with `flags` and NS answers `a.root-servers.test`,
    /// `b.root-servers.test` (the second compressed against the first), and
    /// the OPT record back.
    fn dns_reply(req: &[u8], flags: u16) -> Vec<u8> {
        let mut m = req[..17].to_vec();
        m[2..4].copy_from_slice(&flags.to_be_bytes());
        m[6..8].copy_from_slice(&2u16.to_be_bytes()); // ANCOUNT
        m[10..12].copy_from_slice(&1u16.to_be_bytes()); // ARCOUNT
        let first = m.len() + 11;
        // ". NS IN ttl" + rdata a.root-servers.test
        let rd1 = b"\x01a\x0croot-servers\x04test\x00";
        m.extend_from_slice(&[0, 0, 2, 0, 1, 0, 0, 0x0e, 0x10]);
        m.extend_from_slice(&(rd1.len() as u16).to_be_bytes());
        m.extend_from_slice(rd1);
        // Second: b + pointer to "root-servers.test" in the first.
        let ptr = (first + 2) as u16 | 0xc000;
        m.extend_from_slice(&[0xc0, 12, 0, 2, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 1, b'b']);
        m.extend_from_slice(&ptr.to_be_bytes());
        m.extend_from_slice(&req[17..]);
        m
    }

    fn ev(spec: &PayloadSpec, m: &[u8], cookie: u32) -> DnsEvidence {
        match spec.parse(m, cookie) {
            Ok(Evidence::Dns(d)) => d,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn request_is_root_ns_with_rd_and_edns() {
        let req = DNS.request(0xabcd_1234);
        assert_eq!(req.len(), 28);
        assert_eq!(&req[..12], &[0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
        assert_eq!(&req[12..17], &[0, 0, 2, 0, 1]);
        assert_eq!(&req[17..], &[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn verdicts_from_flags() {
        let c = 0x5555_0102;
        let req = DNS.request(c);
        let rec = ev(&DNS, &dns_reply(&req, 0x8180), c);
        assert_eq!(rec.verdict, DnsVerdict::Recursed);
        assert_eq!(rec.names, ["a.root-servers.test", "b.root-servers.test"]);
        assert_eq!((rec.answers, rec.additional, rec.id), (2, 1, 0x0102));
        assert!(rec.recursion_desired && !rec.authoritative);
        assert_eq!(
            ev(&DNS, &dns_reply(&req, 0x8500), c).verdict,
            DnsVerdict::Authoritative
        );
        let mut refused = req.clone();
        refused[2..4].copy_from_slice(&0x8185u16.to_be_bytes());
        let r = ev(&DNS, &refused, c);
        assert_eq!((r.verdict, r.rcode), (DnsVerdict::Refused, 5));
        // No question at all (allowed on errors).
        let mut bare = req[..12].to_vec();
        bare[2..4].copy_from_slice(&0x8182u16.to_be_bytes());
        bare[4..6].copy_from_slice(&[0, 0]);
        bare[10..12].copy_from_slice(&[0, 0]);
        assert_eq!(ev(&DNS, &bare, c).verdict, DnsVerdict::Other);
    }

    #[test]
    fn wrong_cookie_query_and_question_are_rejected() {
        let req = DNS.request(7);
        let good = dns_reply(&req, 0x8180);
        assert_eq!(
            DNS.parse(&good, 8),
            Err(PayloadError::CookieMismatch {
                expected: 8,
                got: 7
            })
        );
        // Only the low 16 bits are carried.
        assert!(DNS.parse(&good, 0x0001_0007).is_ok());
        assert!(DNS.parse(&req, 7).is_err());
        let mut other = good.clone();
        other[14] = 1; // qtype A
        assert!(matches!(
            DNS.parse(&other, 7),
            Err(PayloadError::Malformed(_))
        ));
    }

    #[test]
    fn truncated_and_mutated_replies() {
        let req = DNS.request(99);
        let good = dns_reply(&req, 0x8180);
        every_prefix_fails(&DNS, &good, 99);
        mutations_never_panic(&DNS, &good, 99);
    }

    #[test]
    fn pointer_loops_and_bad_labels() {
        // Answer whose NS rdata points at itself.
        let req = DNS.request(1);
        let mut m = req[..17].to_vec();
        m[2] = 0x81;
        m[2..4].copy_from_slice(&0x8180u16.to_be_bytes());
        m[6..8].copy_from_slice(&1u16.to_be_bytes());
        m[10..12].copy_from_slice(&[0, 0]);
        let rd = m.len() + 11;
        m.extend_from_slice(&[0, 0, 2, 0, 1, 0, 0, 0, 1, 0, 2]);
        m.extend_from_slice(&((rd as u16) | 0xc000).to_be_bytes());
        let d = ev(&DNS, &m, 1);
        assert!(d.names.is_empty(), "a looping name is not kept");
        let mut bad = m.clone();
        bad[17] = 0x40;
        assert!(DNS.parse(&bad, 1).is_err());
    }

    /// Avahi 0.8's reply to our query (captured in the test namespace):
    /// one PTR to `_workstation._tcp.local`.
    const AVAHI: &[u8] = b"\x12\x34\x84\x00\x00\x01\x00\x01\x00\x00\x00\x00\x09_services\x07_dns-sd\x04_udp\x05local\x00\x00\x0c\x00\x01\xc0\x0c\x00\x0c\x00\x01\x00\x00\x00\x0a\x00\x14\x0c_workstation\x04_tcp\xc0\x23";

    #[test]
    fn mdns_services() {
        let req = MDNS.request(0x1234);
        assert_eq!(req.len(), 46);
        assert_eq!(&req[..12], &[0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            &req[12..],
            &AVAHI[12..46],
            "the question the responder repeated"
        );
        match MDNS.parse(AVAHI, 0x1234) {
            Ok(Evidence::Mdns(m)) => {
                assert_eq!(m.services, ["_workstation._tcp.local"]);
                assert_eq!(m.answers, 1);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            MDNS.parse(AVAHI, 0x1235),
            Err(PayloadError::CookieMismatch { .. })
        ));
        // A DNS parser refuses the mDNS question, and vice versa.
        assert!(DNS.parse(AVAHI, 0x1234).is_err());
        every_prefix_fails(&MDNS, AVAHI, 0x1234);
        mutations_never_panic(&MDNS, AVAHI, 0x1234);
    }
}
