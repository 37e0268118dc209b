//! UDP protocol payloads: one request per protocol that makes a listening
//! service answer, and a parser that turns the answer into typed evidence.
//!
//! A UDP port that drops an empty datagram looks exactly like a filtered one,
//! so a scanner learns that a UDP service is there only by sending something
//! the service understands. Each module here builds such a request and reads
//! the reply. Every payload is written by us from the protocol's own
//! specification (RFC 1035/6762/6891 for DNS and mDNS, RFC 5905 and RFC 1305
//! appendix B for NTP, RFC 1157/3416 and X.690 for SNMP, the UPnP Device
//! Architecture for SSDP, memcached's `protocol.txt`, RFC 7252/6690 for CoAP,
//! RFC 862/864/865 for echo, chargen and QOTD, RFC 1833/5531 for the
//! portmapper, RFC 1350 for TFTP, OpenVPN 2.x's control channel, RFC 3261 for SIP, the IPMI v2.0 specification for IPMI); no third-party payload file
//! is used (see data/SOURCES.md).
//!
//! Not yet here (issue 12 lists them; each needs a daemon or a faithful
//! responder to test against): NetBIOS-NS 137, CLDAP 389, IKE 500, RIP 520,
//! MS-SQL browser 1434, WS-Discovery 3702 (Debian's wsdd
//! answers only multicast probes), ARD 3283, QUIC 443, Ubiquiti discovery
//! 10001.
//!
//! # Cookies
//!
//! As with the TCP SYN cookie, a reply counts only if it carries a value the
//! probe put in, so that stray or spoofed datagrams are not taken for answers.
//! Each request takes a 32-bit `cookie` and puts as much of it as the protocol
//! has room for in a field the server must echo: the DNS ID (16 bits), the
//! NTP transmit timestamp (the server returns it as the origin timestamp; all
//! 64 bits are derived from the cookie), the NTP control sequence number (16
//! bits), the SNMP request ID (31 bits), the memcached request ID (16 bits),
//! the CoAP message ID and token (16 + 32 bits), the RPC XID (32 bits), the
//! OpenVPN session ID (64 bits derived from 32), the SIP Call-ID (32 bits as
//! hex), the echo payload (32 bits). NTP mode 7 and IPMI have only a 7- and
//! a 6-bit sequence number, which is checked. SSDP, TFTP, chargen and QOTD
//! have no such field; for them [`PayloadSpec::cookie_bits`] is 0 and the
//! caller must match on the source address and port alone.
//!
//! # Bounds
//!
//! Requests are written into a caller's buffer; none is longer than
//! [`MAX_REQUEST_LEN`]. Parsers read only within the reply slice (every
//! length is checked first), never panic, and allocate at most a few short
//! strings, each capped at [`MAX_TEXT`] bytes, and lists capped at
//! [`MAX_ITEMS`] entries.

use std::fmt;

pub mod coap;
pub mod dns;
pub mod ipmi;
pub mod memcached;
pub mod ntp;
pub mod openvpn;
pub mod rpc;
pub mod simple;
pub mod sip;
pub mod snmp;
pub mod ssdp;
pub mod tftp;

/// The longest request any payload here writes, in bytes (the SIP OPTIONS
/// is 291).
pub const MAX_REQUEST_LEN: usize = 320;
/// The longest string a parser keeps from a reply (longer ones are cut, at a
/// character boundary, and marked with `…`).
pub const MAX_TEXT: usize = 256;
/// The most list entries (DNS names, SSDP headers) a parser keeps from one reply.
pub const MAX_ITEMS: usize = 16;

/// Why a reply is not a valid answer to our request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// The reply ends before a field (or a length it claims) does.
    #[error("{what} truncated: need {need} bytes, have {have}")]
    Truncated {
        /// The protocol element that ran short.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// A field holds a value no valid reply has.
    #[error("malformed reply: {0}")]
    Malformed(&'static str),
    /// Well-formed, but the cookie field does not hold what we sent: a reply
    /// to someone else's request, or a forgery.
    #[error("cookie mismatch: expected {expected:#x}, got {got:#x}")]
    CookieMismatch {
        /// What our request carried (the bits the protocol has room for).
        expected: u64,
        /// What the reply carried.
        got: u64,
    },
    /// The caller's buffer cannot hold the request.
    #[error("buffer too small: need {need} bytes, have {have}")]
    BufferTooSmall {
        /// Bytes the request needs.
        need: usize,
        /// Bytes the buffer has.
        have: usize,
    },
}

/// Fails with [`PayloadError::Truncated`] unless `b` has at least `need` bytes.
pub(crate) fn need(what: &'static str, b: &[u8], need: usize) -> Result<(), PayloadError> {
    if b.len() < need {
        Err(PayloadError::Truncated {
            what,
            need,
            have: b.len(),
        })
    } else {
        Ok(())
    }
}

/// Copies `src` to the start of `buf`, or says how much room was missing.
pub(crate) fn put(buf: &mut [u8], src: &[u8]) -> Result<usize, PayloadError> {
    match buf.get_mut(..src.len()) {
        Some(dst) => {
            dst.copy_from_slice(src);
            Ok(src.len())
        }
        None => Err(PayloadError::BufferTooSmall {
            need: src.len(),
            have: buf.len(),
        }),
    }
}

/// `bytes` as text for evidence: invalid UTF-8 replaced, control characters
/// other than tab dropped, at most [`MAX_TEXT`] bytes kept.
pub(crate) fn text(bytes: &[u8]) -> String {
    let cut = bytes.len() > MAX_TEXT;
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_TEXT)]);
    let mut out: String = s
        .chars()
        .filter(|c| !c.is_control() || *c == '\t')
        .collect();
    if cut {
        out.push('…');
    }
    out
}

/// The protocols this module has a payload for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// Echo (RFC 862), port 7.
    Echo,
    /// Character generator (RFC 864), port 19.
    Chargen,
    /// Quote of the day (RFC 865), port 17.
    Qotd,
    /// DNS with recursion desired (RFC 1035), port 53.
    Dns,
    /// NTP client request, mode 3 (RFC 5905), port 123.
    Ntp,
    /// NTP control message, mode 6, READVAR (RFC 1305 appendix B), port 123.
    NtpControl,
    /// NTP private mode 7 (ntpd's `monlist`), port 123.
    NtpPrivate,
    /// SNMPv2c GetRequest for sysDescr.0 with community `public` (RFC 3416), port 161.
    Snmp,
    /// SSDP M-SEARCH (UPnP Device Architecture), port 1900.
    Ssdp,
    /// Multicast DNS service enumeration, legacy unicast (RFC 6762/6763), port 5353.
    Mdns,
    /// CoAP GET of /.well-known/core (RFC 7252/6690), port 5683.
    Coap,
    /// memcached UDP `stats` (memcached protocol.txt), port 11211.
    Memcached,
    /// ONC RPC portmapper DUMP (RFC 1833), port 111.
    Portmapper,
    /// TFTP read request (RFC 1350), port 69.
    Tftp,
    /// OpenVPN control-channel hard reset, port 1194.
    OpenVpn,
    /// SIP OPTIONS (RFC 3261), port 5060.
    Sip,
    /// IPMI Get Channel Authentication Capabilities over RMCP, port 623.
    Ipmi,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Echo => "echo",
            Protocol::Chargen => "chargen",
            Protocol::Qotd => "qotd",
            Protocol::Dns => "dns",
            Protocol::Ntp => "ntp",
            Protocol::NtpControl => "ntp-control",
            Protocol::NtpPrivate => "ntp-private",
            Protocol::Snmp => "snmp",
            Protocol::Ssdp => "ssdp",
            Protocol::Mdns => "mdns",
            Protocol::Coap => "coap",
            Protocol::Memcached => "memcached",
            Protocol::Portmapper => "portmapper",
            Protocol::Tftp => "tftp",
            Protocol::OpenVpn => "openvpn",
            Protocol::Sip => "sip",
            Protocol::Ipmi => "ipmi",
        })
    }
}

/// What a valid reply showed about the service.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Evidence {
    /// The echo service returned our datagram unchanged.
    Echo,
    /// A chargen or QOTD service (or anything that answers anything) sent
    /// text; its start is kept.
    Text {
        /// Length of the reply in bytes.
        len: usize,
        /// The reply's start as text.
        sample: String,
    },
    /// A DNS server's answer.
    Dns(dns::DnsEvidence),
    /// An mDNS responder's answer.
    Mdns(dns::MdnsEvidence),
    /// An NTP server's answer to a client request.
    Ntp(ntp::NtpEvidence),
    /// An NTP server answered a mode-6 control or mode-7 private query.
    NtpQuery(ntp::NtpQueryEvidence),
    /// An SNMP agent's GetResponse.
    Snmp(snmp::SnmpEvidence),
    /// An SSDP search response.
    Ssdp(ssdp::SsdpEvidence),
    /// One datagram of a memcached UDP reply.
    Memcached(memcached::MemcachedEvidence),
    /// A CoAP server's answer.
    Coap(coap::CoapEvidence),
    /// A portmapper's answer.
    Rpc(rpc::RpcEvidence),
    /// A TFTP server's answer.
    Tftp(tftp::TftpEvidence),
    /// An OpenVPN server's answer.
    OpenVpn(openvpn::OpenVpnEvidence),
    /// A SIP element's response.
    Sip(sip::SipEvidence),
    /// A BMC's authentication capabilities.
    Ipmi(ipmi::IpmiEvidence),
}

/// A request writer: writes the request carrying `cookie` into `buf` and
/// returns its length.
pub type WriteFn = fn(cookie: u32, buf: &mut [u8]) -> Result<usize, PayloadError>;
/// A reply parser: reads one reply datagram to a request that carried `cookie`.
pub type ParseFn = fn(reply: &[u8], cookie: u32) -> Result<Evidence, PayloadError>;

/// One protocol payload: the port it is sent to, how to write it, how to read
/// the answer.
#[derive(Debug, Clone, Copy)]
pub struct PayloadSpec {
    /// The well-known port.
    pub port: u16,
    /// Which protocol.
    pub protocol: Protocol,
    /// How many bits of the cookie the reply must echo (0: none; match on the
    /// source address and port only).
    pub cookie_bits: u8,
    /// Whether one request can draw several reply datagrams (SSDP answers
    /// once per device and service; memcached splits a long reply; chargen
    /// and QOTD may send more than one), so a receiver keeps listening after
    /// the first.
    pub multi_reply: bool,
    /// Writes the request.
    pub write: WriteFn,
    /// Parses one reply datagram.
    pub parse: ParseFn,
    /// The specification the request and parser are written from.
    pub reference: &'static str,
    /// Whether the reply comes from another port than the request went to
    /// (TFTP answers from a fresh transfer ID), so a receiver matches on
    /// the source address and our port only.
    pub reply_from_other_port: bool,
}

impl PayloadSpec {
    /// The request carrying `cookie`, as a new vector (at most [`MAX_REQUEST_LEN`] bytes).
    pub fn request(&self, cookie: u32) -> Vec<u8> {
        let mut buf = [0u8; MAX_REQUEST_LEN];
        // Every writer fits MAX_REQUEST_LEN (checked by a test), so the
        // fallback to an empty request is unreachable in practice.
        let n = (self.write)(cookie, &mut buf).unwrap_or(0);
        buf[..n].to_vec()
    }

    /// Parses one reply datagram to a request that carried `cookie`.
    pub fn parse(&self, reply: &[u8], cookie: u32) -> Result<Evidence, PayloadError> {
        (self.parse)(reply, cookie)
    }
}

/// Every payload, in port order; a port may have several (NTP: a client
/// request, then the mode-6 and mode-7 queries).
pub static PAYLOADS: &[PayloadSpec] = &[
    simple::ECHO,
    simple::QOTD,
    simple::CHARGEN,
    dns::DNS,
    tftp::TFTP,
    rpc::PORTMAPPER,
    ntp::CLIENT,
    ntp::CONTROL,
    ntp::PRIVATE,
    snmp::SNMP,
    ipmi::IPMI,
    openvpn::OPENVPN,
    ssdp::SSDP,
    sip::SIP,
    dns::MDNS,
    coap::COAP,
    memcached::MEMCACHED,
];

/// Every payload for `port`, the most informative first (empty if none).
pub fn payloads_for(port: u16) -> &'static [PayloadSpec] {
    let start = PAYLOADS.partition_point(|p| p.port < port);
    let end = PAYLOADS.partition_point(|p| p.port <= port);
    &PAYLOADS[start..end]
}

/// The main payload for `port`, if it has one.
pub fn payload_for(port: u16) -> Option<&'static PayloadSpec> {
    payloads_for(port).first()
}

/// Writes the main payload for `port` carrying `cookie` into `buf` and
/// returns its length: 0 when the port has no payload (send an empty
/// datagram) or `buf` is shorter than the request (at most
/// [`MAX_REQUEST_LEN`] bytes).
pub fn write_for_port(port: u16, cookie: u32, buf: &mut [u8]) -> usize {
    payload_for(port)
        .and_then(|spec| (spec.write)(cookie, buf).ok())
        .unwrap_or(0)
}

/// Reads `reply`, a datagram from the target's `port`, as the answer to the
/// main payload for that port sent with `cookie`: `None` when the port has
/// no payload (any datagram is then an answer to an empty probe).
pub fn parse_for_port(
    port: u16,
    reply: &[u8],
    cookie: u32,
) -> Option<Result<Evidence, PayloadError>> {
    payload_for(port).map(|spec| spec.parse(reply, cookie))
}

/// What a reflector sent back for what it was sent, measured from the
/// datagrams that arrived (UDP payload bytes, not counting IP and UDP headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Amplification {
    /// Requests sent.
    pub request_packets: u32,
    /// UDP payload bytes sent.
    pub request_bytes: u64,
    /// Valid reply datagrams received (duplicates excluded).
    pub reply_packets: u32,
    /// UDP payload bytes received in those datagrams.
    pub reply_bytes: u64,
}

impl Amplification {
    /// Records one request of `len` payload bytes.
    pub fn sent(&mut self, len: usize) {
        self.request_packets = self.request_packets.saturating_add(1);
        self.request_bytes = self.request_bytes.saturating_add(len as u64);
    }

    /// Records one valid reply of `len` payload bytes.
    pub fn received(&mut self, len: usize) {
        self.reply_packets = self.reply_packets.saturating_add(1);
        self.reply_bytes = self.reply_bytes.saturating_add(len as u64);
    }

    /// Reply bytes per request byte (UDP payloads); 0 when nothing was sent.
    pub fn factor(&self) -> f64 {
        if self.request_bytes == 0 {
            0.0
        } else {
            self.reply_bytes as f64 / self.request_bytes as f64
        }
    }

    /// Reply bytes per request byte counting `overhead` header bytes per
    /// datagram each way (28 for IPv4 + UDP, 48 for IPv6 + UDP): what the
    /// victim's link carries against what the attacker's does.
    pub fn factor_with_headers(&self, overhead: u64) -> f64 {
        let sent = self.request_bytes + overhead * u64::from(self.request_packets);
        let got = self.reply_bytes + overhead * u64::from(self.reply_packets);
        if sent == 0 {
            0.0
        } else {
            got as f64 / sent as f64
        }
    }

    /// Reply datagrams per request datagram; 0 when nothing was sent.
    pub fn packet_factor(&self) -> f64 {
        if self.request_packets == 0 {
            0.0
        } else {
            f64::from(self.reply_packets) / f64::from(self.request_packets)
        }
    }
}

impl fmt::Display for Amplification {
    /// `1 request of 48 bytes → 1 reply of 48 bytes (1.0×)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural =
            |n: u32, one: &'static str, many: &'static str| if n == 1 { one } else { many };
        write!(
            f,
            "{} {} of {} bytes → {} {} of {} bytes ({:.1}×)",
            self.request_packets,
            plural(self.request_packets, "request", "requests"),
            self.request_bytes,
            self.reply_packets,
            plural(self.reply_packets, "reply", "replies"),
            self.reply_bytes,
            self.factor()
        )
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    /// Every strict prefix of `reply` must be rejected without a panic.
    pub fn every_prefix_fails(spec: &PayloadSpec, reply: &[u8], cookie: u32) {
        for n in 0..reply.len() {
            assert!(
                spec.parse(&reply[..n], cookie).is_err(),
                "{}: prefix of {n} of {} bytes parsed",
                spec.protocol,
                reply.len()
            );
        }
    }

    /// Flips every byte of `reply` in turn and parses it: any result is fine,
    /// a panic is not.
    pub fn mutations_never_panic(spec: &PayloadSpec, reply: &[u8], cookie: u32) {
        let mut m = reply.to_vec();
        for i in 0..m.len() {
            for x in [0x00, 0xff, 0x80, 0x7f, 0x01] {
                let old = m[i];
                m[i] = x;
                let _ = spec.parse(&m, cookie);
                m[i] = old;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_every_request_fits() {
        assert!(PAYLOADS.windows(2).all(|w| w[0].port <= w[1].port));
        for spec in PAYLOADS {
            let mut buf = [0u8; MAX_REQUEST_LEN];
            let n = (spec.write)(0xdead_beef, &mut buf).unwrap();
            assert!(n > 0 && n <= MAX_REQUEST_LEN, "{}", spec.protocol);
            // A buffer one byte short is refused, not overrun.
            let mut short = vec![0u8; n - 1];
            assert!(matches!(
                (spec.write)(0xdead_beef, &mut short),
                Err(PayloadError::BufferTooSmall { .. })
            ));
            assert_eq!(spec.request(0xdead_beef), buf[..n].to_vec());
            // Our own request is not mistaken for a reply.
            assert!(spec.parse(&buf[..n], 0xdead_beef).is_err() || spec.protocol == Protocol::Echo);
            assert!(spec.parse(&[], 0).is_err());
        }
    }

    #[test]
    fn lookup_by_port() {
        assert_eq!(payload_for(53).unwrap().protocol, Protocol::Dns);
        assert_eq!(payload_for(161).unwrap().protocol, Protocol::Snmp);
        assert_eq!(payload_for(111).unwrap().protocol, Protocol::Portmapper);
        assert!(payload_for(69).unwrap().reply_from_other_port);
        let ntp: Vec<Protocol> = payloads_for(123).iter().map(|p| p.protocol).collect();
        assert_eq!(
            ntp,
            [Protocol::Ntp, Protocol::NtpControl, Protocol::NtpPrivate]
        );
        assert!(payload_for(80).is_none());
        assert!(payloads_for(0).is_empty() && payloads_for(65535).is_empty());
    }

    #[test]
    fn by_port_helpers() {
        let mut buf = [0u8; MAX_REQUEST_LEN];
        let n = write_for_port(161, 77, &mut buf);
        assert_eq!(&buf[..n], &snmp::SNMP.request(77)[..]);
        assert_eq!(write_for_port(80, 77, &mut buf), 0, "no payload for 80");
        assert_eq!(
            write_for_port(1900, 0, &mut buf[..10]),
            0,
            "buffer too short"
        );
        assert!(parse_for_port(80, b"x", 0).is_none());
        let echo = simple::ECHO.request(5);
        assert_eq!(parse_for_port(7, &echo, 5), Some(Ok(Evidence::Echo)));
        assert!(matches!(parse_for_port(7, &echo, 6), Some(Err(_))));
    }

    #[test]
    fn amplification_is_what_arrived() {
        let mut a = Amplification::default();
        assert_eq!(a.factor(), 0.0);
        a.sent(48);
        a.received(48);
        assert_eq!(
            a.to_string(),
            "1 request of 48 bytes → 1 reply of 48 bytes (1.0×)"
        );
        let mut s = Amplification::default();
        s.sent(94);
        for _ in 0..13 {
            s.received(415);
        }
        assert!((s.factor() - 5395.0 / 94.0).abs() < 1e-9);
        assert_eq!(s.packet_factor(), 13.0);
        assert!(s.factor_with_headers(28) < s.factor());
        assert!(
            s.to_string()
                .starts_with("1 request of 94 bytes → 13 replies of 5395 bytes")
        );
    }

    /// A deterministic, in-tree version of fuzz/fuzz_targets/payload.rs:
    /// random and mutated inputs for every parser, never a panic, and a
    /// reply accepted for a cookie is refused for a cookie one bit away.
    #[test]
    fn random_inputs_never_panic_and_respect_cookies() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for spec in PAYLOADS {
            let base = spec.request(0x0102_0304);
            for _ in 0..20_000 {
                let len = (next() % 300) as usize;
                let mut data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                // Half the inputs start from our own request with a flipped
                // response bit, to get past the first checks more often.
                if next() % 2 == 0 && !base.is_empty() {
                    data = base.clone();
                    let i = (next() as usize) % data.len();
                    data[i] ^= 1 << (next() % 8);
                    data[0] |= 0x80;
                }
                let cookie = next() as u32;
                if spec.parse(&data, cookie).is_ok() && spec.cookie_bits > 0 {
                    assert!(spec.parse(&data, cookie ^ 1).is_err(), "{}", spec.protocol);
                }
            }
        }
    }

    #[test]
    fn text_is_bounded_and_clean() {
        assert_eq!(text(b"Linux\r\n\x00x"), "Linuxx");
        let long = vec![b'a'; 1000];
        assert_eq!(text(&long).len(), MAX_TEXT + '…'.len_utf8());
        assert_eq!(text(&[0xff, b'a']), "\u{fffd}a");
    }
}
