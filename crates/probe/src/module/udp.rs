//! UDP probing over IPv4 and IPv6. A probe is a datagram whose payload comes
//! from a [`UdpPayloads`] table (a protocol request for the well-known
//! exposure ports, an empty datagram elsewhere); the cookie goes into the
//! protocol's own ID field where it has one, so the table also judges whether
//! a reply's payload answers our request.
//!
//! What comes back means (see `../shared/guide/probing.md`): a UDP reply →
//! open; ICMP port unreachable (3/3, ICMPv6 1/4) → closed; any other ICMP
//! unreachable → filtered; nothing → the port is filtered *or* a service that
//! ignores our datagram, which the engine reports as `no-response` and the
//! presentation layer words accordingly.
//!
//! An ICMP error quotes our datagram's ports but rarely anything the cookie
//! could be checked against, so it is matched by addresses, ports and the try
//! encoded in the source port, as nmap does for UDP.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use harbormaster_wire::{IcmpKind, PROTO_UDP, Reply, UdpTemplate, WireError, udp_payload};

use super::{Answer, Classified, ProbeModule, icmp_reason};
use crate::cookie::CookieKey;
use crate::result::{Evidence, Reason, Transport as Protocol};
use crate::transport::MAX_PROBE;

/// What a UDP probe carries to each port, and which replies answer it.
pub trait UdpPayloads: Send + Sync + fmt::Debug {
    /// Writes the payload for `port`, carrying `cookie`, into `buf`; returns
    /// its length (0 for an empty datagram). `buf` holds at least 1,000 bytes
    /// (more than [`harbormaster_wire::payload::MAX_REQUEST_LEN`]).
    fn write(&self, port: u16, cookie: u32, buf: &mut [u8]) -> usize;

    /// Whether `payload`, from the target's `port`, answers the request
    /// carrying `cookie`. Protocols without an ID field accept any payload.
    fn accepts(&self, port: u16, cookie: u32, payload: &[u8]) -> bool;
}

/// Empty datagrams to every port; any reply answers.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyDatagrams;

impl UdpPayloads for EmptyDatagrams {
    fn write(&self, _port: u16, _cookie: u32, _buf: &mut [u8]) -> usize {
        0
    }

    fn accepts(&self, _port: u16, _cookie: u32, _payload: &[u8]) -> bool {
        true
    }
}

/// The protocol requests of [`harbormaster_wire::payload`] for the ports
/// that have one (DNS, NTP, SNMP, SSDP, memcached, …), empty datagrams
/// elsewhere; a reply to a port with a request must parse as an answer to it,
/// cookie included.
#[derive(Debug, Clone, Copy, Default)]
pub struct WirePayloads;

impl UdpPayloads for WirePayloads {
    fn write(&self, port: u16, cookie: u32, buf: &mut [u8]) -> usize {
        harbormaster_wire::payload::payload_for(port)
            .and_then(|spec| (spec.write)(cookie, buf).ok())
            .unwrap_or(0)
    }

    fn accepts(&self, port: u16, cookie: u32, payload: &[u8]) -> bool {
        harbormaster_wire::payload::payload_for(port)
            .is_none_or(|spec| spec.parse(payload, cookie).is_ok())
    }
}

/// The UDP module of one scan.
#[derive(Debug, Clone)]
pub struct UdpProbe {
    source: IpAddr,
    target: IpAddr,
    key: CookieKey,
    template: UdpTemplate,
    payloads: Arc<dyn UdpPayloads>,
}

impl UdpProbe {
    /// The module for datagrams from `source` to `target` with hop limit
    /// `ttl`, carrying what `payloads` says; fails when the two addresses are
    /// of different families.
    pub fn new(
        source: IpAddr,
        target: IpAddr,
        ttl: u8,
        key: CookieKey,
        payloads: Arc<dyn UdpPayloads>,
    ) -> Result<UdpProbe, WireError> {
        Ok(UdpProbe {
            source,
            target,
            key,
            template: UdpTemplate::new(source, target, ttl)?,
            payloads,
        })
    }

    fn cookie(&self, sport: u16, dport: u16) -> u32 {
        self.key.cookie(self.source, self.target, sport, dport)
    }
}

/// Whether an ICMP error is "port unreachable" in its family.
fn port_unreachable(kind: IcmpKind) -> bool {
    matches!(
        kind,
        IcmpKind::V4 {
            icmp_type: 3,
            code: 3
        } | IcmpKind::V6 {
            icmp_type: 1,
            code: 4
        }
    )
}

impl ProbeModule for UdpProbe {
    fn protocol(&self) -> Protocol {
        Protocol::Udp
    }

    fn write(&self, buf: &mut [u8], sport: u16, dport: u16) -> Result<usize, WireError> {
        let mut payload = [0u8; MAX_PROBE];
        let room = self
            .template
            .max_payload()
            .min(MAX_PROBE - self.template.header_len());
        let n = self
            .payloads
            .write(dport, self.cookie(sport, dport), &mut payload[..room])
            .min(room);
        self.template.write(buf, sport, dport, &payload[..n])
    }

    fn classify(&self, reply: &Reply, packet: &[u8]) -> Classified {
        match reply {
            Reply::Udp(u) => {
                if u.src != self.target || u.dst != self.source {
                    return Classified::Ignore;
                }
                let Some(data) = udp_payload(packet) else {
                    return Classified::Ignore;
                };
                let cookie = self.cookie(u.dst_port, u.src_port);
                if !self.payloads.accepts(u.src_port, cookie, data) {
                    return Classified::Forged;
                }
                Classified::Answer(Answer {
                    sport: u.dst_port,
                    dport: u.src_port,
                    reason: Reason::UdpReply,
                    ttl: u.ttl,
                    window: None,
                    counts_for_loss: true,
                    evidence: Some(Evidence::new(data, u.payload_len)),
                })
            }
            Reply::IcmpError(e) => {
                let q = &e.quote;
                if q.src != self.source || q.dst != self.target || q.protocol != PROTO_UDP {
                    return Classified::Ignore;
                }
                let reason = if port_unreachable(e.kind) {
                    Reason::PortUnreach
                } else {
                    icmp_reason(e.kind)
                };
                Classified::Answer(Answer {
                    sport: q.src_port,
                    dport: q.dst_port,
                    reason,
                    ttl: e.ttl,
                    window: None,
                    // Port unreachables are rate-limited by the target (RFC 1812,
                    // Linux 1/s after a burst): never evidence of path loss.
                    counts_for_loss: false,
                    evidence: None,
                })
            }
            _ => Classified::Ignore,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use harbormaster_wire::parse_reply;

    /// A test table: port 53 carries the cookie's low byte and only a reply
    /// starting with it answers; other ports get empty datagrams.
    #[derive(Debug)]
    struct Tagged;

    impl UdpPayloads for Tagged {
        fn write(&self, port: u16, cookie: u32, buf: &mut [u8]) -> usize {
            if port != 53 {
                return 0;
            }
            buf[0] = cookie as u8;
            1
        }
        fn accepts(&self, port: u16, cookie: u32, payload: &[u8]) -> bool {
            port != 53 || payload.first() == Some(&(cookie as u8))
        }
    }

    fn module(v6: bool) -> (IpAddr, IpAddr, UdpProbe) {
        let (me, target): (IpAddr, IpAddr) = if v6 {
            ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap())
        } else {
            ("198.18.0.1".parse().unwrap(), "198.18.0.2".parse().unwrap())
        };
        let key = CookieKey::from_bytes([3; 16]);
        (
            me,
            target,
            UdpProbe::new(me, target, 64, key, Arc::new(Tagged)).unwrap(),
        )
    }

    #[test]
    fn a_reply_with_the_protocol_cookie_is_open_with_evidence() {
        for v6 in [false, true] {
            let (me, target, m) = module(v6);
            let mut buf = [0u8; MAX_PROBE];
            let n = m.write(&mut buf, 61450, 53).unwrap();
            let tag = harbormaster_wire::udp_payload(&buf[..n]).unwrap()[0];
            let reply_t = UdpTemplate::new(target, me, 60).unwrap();
            let mut r = [0u8; 128];
            let n = reply_t.write(&mut r, 53, 61450, &[tag, 1, 2, 3]).unwrap();
            let Classified::Answer(a) = m.classify(&parse_reply(&r[..n]).unwrap(), &r[..n]) else {
                panic!("the tagged reply answers")
            };
            assert_eq!((a.sport, a.dport, a.reason), (61450, 53, Reason::UdpReply));
            let e = a.evidence.unwrap();
            assert_eq!((e.len(), e.head()), (4, &[tag, 1, 2, 3][..]));
            // The wrong tag is forged; a reply from another host is not ours.
            let n = reply_t.write(&mut r, 53, 61450, &[tag ^ 1]).unwrap();
            assert_eq!(
                m.classify(&parse_reply(&r[..n]).unwrap(), &r[..n]),
                Classified::Forged
            );
            let stranger = UdpTemplate::new(me, target, 60).unwrap();
            let n = stranger.write(&mut r, 53, 61450, &[tag]).unwrap();
            assert_eq!(
                m.classify(&parse_reply(&r[..n]).unwrap(), &r[..n]),
                Classified::Ignore
            );
            // Ports without an ID accept any reply, empty ones included.
            let n = reply_t.write(&mut r, 7, 61451, b"").unwrap();
            let Classified::Answer(a) = m.classify(&parse_reply(&r[..n]).unwrap(), &r[..n]) else {
                panic!("an empty reply answers an empty probe")
            };
            assert_eq!(a.evidence.unwrap().len(), 0);
        }
    }

    #[test]
    fn wire_payloads_send_the_protocol_request_and_check_its_cookie() {
        let mut buf = [0u8; 1024];
        // DNS: a query whose ID is the cookie's low 16 bits.
        let n = WirePayloads.write(53, 0x1234_abcd, &mut buf);
        assert!(n > 12, "a DNS query");
        assert_eq!(&buf[..2], &[0xab, 0xcd]);
        // Our own query does not answer itself; a port without a request gets
        // an empty datagram and accepts anything.
        assert!(!WirePayloads.accepts(53, 0x1234_abcd, &buf[..n]));
        assert_eq!(WirePayloads.write(40000, 1, &mut buf), 0);
        assert!(WirePayloads.accepts(40000, 1, b"anything"));
    }

    #[test]
    fn port_unreachable_is_closed_and_other_unreachables_are_filtered() {
        let v4 = |t, c| IcmpKind::V4 {
            icmp_type: t,
            code: c,
        };
        let v6 = |t, c| IcmpKind::V6 {
            icmp_type: t,
            code: c,
        };
        assert!(port_unreachable(v4(3, 3)));
        assert!(port_unreachable(v6(1, 4)));
        assert!(!port_unreachable(v4(3, 13)));
        assert!(!port_unreachable(v6(1, 1)));
        assert!(!port_unreachable(v6(3, 3)));
        assert_eq!(Reason::PortUnreach.state(), crate::PortState::Closed);
        assert_eq!(icmp_reason(v4(3, 13)).state(), crate::PortState::Filtered);
    }
}
