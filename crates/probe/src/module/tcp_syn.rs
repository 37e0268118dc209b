//! TCP SYN probing over IPv4 and IPv6: a SYN whose sequence number is the
//! cookie; a SYN-ACK (open) or RST (closed) must acknowledge cookie + 1, and an
//! ICMP error (filtered) must quote the cookie as the sequence number.

use std::net::IpAddr;

use harbormaster_wire::{PROTO_TCP, Reply, SynTemplate, TcpFlags, WireError};

use super::{Answer, Classified, ProbeModule, icmp_reason};
use crate::cookie::CookieKey;
use crate::result::{Reason, Transport as Protocol};

/// TCP window our SYNs advertise.
const SYN_WINDOW: u16 = 1024;

/// The TCP SYN module of one scan.
#[derive(Debug, Clone)]
pub struct TcpSyn {
    source: IpAddr,
    target: IpAddr,
    key: CookieKey,
    template: SynTemplate,
}

impl TcpSyn {
    /// The module for probes from `source` to `target` with hop limit `ttl`;
    /// fails when the two addresses are of different families.
    pub fn new(
        source: IpAddr,
        target: IpAddr,
        ttl: u8,
        key: CookieKey,
    ) -> Result<TcpSyn, WireError> {
        Ok(TcpSyn {
            source,
            target,
            key,
            template: SynTemplate::new(source, target, ttl, SYN_WINDOW)?,
        })
    }

    fn cookie(&self, sport: u16, dport: u16) -> u32 {
        self.key.cookie(self.source, self.target, sport, dport)
    }
}

impl ProbeModule for TcpSyn {
    fn protocol(&self) -> Protocol {
        Protocol::Tcp
    }

    #[inline]
    fn write(&self, buf: &mut [u8], sport: u16, dport: u16) -> Result<usize, WireError> {
        self.template
            .write(buf, sport, dport, self.cookie(sport, dport))
    }

    fn classify(&self, reply: &Reply, _packet: &[u8]) -> Classified {
        match reply {
            Reply::Tcp(r) => {
                if r.src != self.target || r.dst != self.source {
                    return Classified::Ignore;
                }
                let reason = if r.flags.contains(TcpFlags::SYN) && r.flags.contains(TcpFlags::ACK) {
                    Reason::SynAck
                } else if r.flags.contains(TcpFlags::RST) {
                    Reason::Rst
                } else {
                    return Classified::Ignore;
                };
                if r.ack != self.cookie(r.dst_port, r.src_port).wrapping_add(1) {
                    return Classified::Forged;
                }
                Classified::Answer(Answer {
                    sport: r.dst_port,
                    dport: r.src_port,
                    reason,
                    ttl: r.ttl,
                    window: Some(r.window),
                    counts_for_loss: true,
                    evidence: None,
                })
            }
            Reply::IcmpError(e) => {
                let q = &e.quote;
                if q.src != self.source || q.dst != self.target || q.protocol != PROTO_TCP {
                    return Classified::Ignore;
                }
                if q.seq != Some(self.cookie(q.src_port, q.dst_port)) {
                    return Classified::Forged;
                }
                Classified::Answer(Answer {
                    sport: q.src_port,
                    dport: q.dst_port,
                    reason: icmp_reason(e.kind),
                    ttl: e.ttl,
                    window: None,
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

    fn addrs(v6: bool) -> (IpAddr, IpAddr) {
        if v6 {
            (
                "fd00:198:18::1".parse().unwrap(),
                "fd00:198:18::2".parse().unwrap(),
            )
        } else {
            ("198.18.0.1".parse().unwrap(), "198.18.0.2".parse().unwrap())
        }
    }

    /// A SYN-ACK or RST from the target answering `seq`, built by hand.
    fn answer(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, ack: u32, flags: u8) -> Vec<u8> {
        // Reuse the SYN builder for the headers, then turn it into the answer.
        let t = SynTemplate::new(src, dst, 61, 29200).unwrap();
        let mut buf = vec![0u8; 64];
        let n = t.write(&mut buf, sport, dport, 99).unwrap();
        buf.truncate(n);
        let tcp = if src.is_ipv4() { 20 } else { 40 };
        buf[tcp + 8..tcp + 12].copy_from_slice(&ack.to_be_bytes());
        buf[tcp + 13] = flags;
        buf
    }

    #[test]
    fn accepts_only_answers_carrying_the_cookie_in_both_families() {
        for v6 in [false, true] {
            let (me, target) = addrs(v6);
            let key = CookieKey::from_bytes([7; 16]);
            let m = TcpSyn::new(me, target, 64, key).unwrap();
            let mut probe = [0u8; 64];
            let n = m.write(&mut probe, 61441, 443).unwrap();
            let Ok(Reply::Tcp(syn)) = parse_reply(&probe[..n]) else {
                panic!("our probe parses")
            };
            let good = answer(target, me, 443, 61441, syn.seq.wrapping_add(1), 0x12);
            let reply = parse_reply(&good).unwrap();
            let Classified::Answer(a) = m.classify(&reply, &good) else {
                panic!("a SYN-ACK with the cookie is an answer ({v6})")
            };
            assert_eq!((a.sport, a.dport, a.reason), (61441, 443, Reason::SynAck));
            assert_eq!(a.window, Some(29200));
            assert!(a.counts_for_loss);
            let rst = answer(target, me, 443, 61441, syn.seq.wrapping_add(1), 0x14);
            let Classified::Answer(a) = m.classify(&parse_reply(&rst).unwrap(), &rst) else {
                panic!("a RST with the cookie is an answer")
            };
            assert_eq!(a.reason, Reason::Rst);
            let forged = answer(target, me, 443, 61441, syn.seq.wrapping_add(2), 0x12);
            assert_eq!(
                m.classify(&parse_reply(&forged).unwrap(), &forged),
                Classified::Forged
            );
            // Another host's answer is not ours to judge.
            let other = answer(me, target, 443, 61441, syn.seq.wrapping_add(1), 0x12);
            assert_eq!(
                m.classify(&parse_reply(&other).unwrap(), &other),
                Classified::Ignore
            );
            // A bare ACK proves nothing.
            let ack = answer(target, me, 443, 61441, syn.seq.wrapping_add(1), 0x10);
            assert_eq!(
                m.classify(&parse_reply(&ack).unwrap(), &ack),
                Classified::Ignore
            );
        }
    }
}
