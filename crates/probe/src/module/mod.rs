//! Probe modules: what a probe looks like on the wire and what a reply to it
//! proves. The engine's event loop and scan state machine know no protocol;
//! they ask a scan's module to write the probe for (port, source port) and to
//! classify whatever arrives for the scan's source-port block.
//!
//! A module is built per scan, for one source and one target address and
//! the scan's secret [`CookieKey`](crate::CookieKey), so it can both stamp its
//! probes with a cookie and check that a reply carries it. That split follows
//! ZMap's probe modules (`make_packet` / `validate_packet` /
//! `process_packet`) with smoltcp-style wire views underneath.
//!
//! The try number of a probe is never in the module's hands: the scan picks
//! the source port (`block base + try`), so every protocol gets exact RTT
//! samples and tells answers to retries (loss evidence) for free.

mod icmp_echo;
mod tcp_syn;
mod udp;

pub use icmp_echo::IcmpEcho;
pub use tcp_syn::TcpSyn;
pub use udp::{EmptyDatagrams, UdpPayloads, UdpProbe, WirePayloads};

use harbormaster_wire::{PROTO_TCP, PROTO_UDP, Reply, WireError};

use crate::result::{Evidence, Reason, Transport as Protocol};

/// A valid answer to one of a scan's probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// Our source port the reply answers (it names the try).
    pub sport: u16,
    /// The target's port the probe went to.
    pub dport: u16,
    /// What the reply proves.
    pub reason: Reason,
    /// TTL or hop limit of the reply.
    pub ttl: u8,
    /// TCP window of the reply, when it was a TCP segment (middlebox signature).
    pub window: Option<u16>,
    /// Whether the answer may feed the loss and congestion estimates. ICMP
    /// errors may not: routers rate-limit them (RFC 1812), so a missing one
    /// says nothing about the path.
    pub counts_for_loss: bool,
    /// The start of the reply's payload (UDP), kept in the result.
    pub evidence: Option<Evidence>,
}

/// What a module makes of a packet routed to its scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classified {
    /// Not about this scan's probes (another protocol, another peer, or a
    /// kind of packet that proves nothing, such as a bare ACK).
    Ignore,
    /// Shaped like an answer to one of our probes but without the cookie:
    /// forged, or left over from an earlier scan with another key.
    Forged,
    /// A valid answer.
    Answer(Answer),
}

/// One kind of per-port probe.
pub trait ProbeModule: Send {
    /// The transport whose ports this module probes.
    fn protocol(&self) -> Protocol;

    /// Writes the probe for the target's `dport`, sent from our `sport`, into
    /// `buf` (whole IP packet); returns its length.
    fn write(&self, buf: &mut [u8], sport: u16, dport: u16) -> Result<usize, WireError>;

    /// Classifies `reply` (parsed from `packet`, which starts at the IP header
    /// and may be truncated to the receive snap length).
    fn classify(&self, reply: &Reply, packet: &[u8]) -> Classified;
}

/// The local port a packet concerns, if any: the destination port of a TCP
/// segment or UDP datagram, or the source port of the TCP or UDP probe that an
/// ICMP error quotes. The event loop routes by it to the scan that owns the
/// port's source-port block, whatever the protocol.
pub fn local_port(reply: &Reply) -> Option<u16> {
    match reply {
        Reply::Tcp(t) => Some(t.dst_port),
        Reply::Udp(u) => Some(u.dst_port),
        Reply::IcmpError(e) if matches!(e.quote.protocol, PROTO_TCP | PROTO_UDP) => {
            Some(e.quote.src_port)
        }
        _ => None,
    }
}

/// The reason an ICMP or ICMPv6 error gives, as recorded in results.
pub(crate) fn icmp_reason(kind: harbormaster_wire::IcmpKind) -> Reason {
    use harbormaster_wire::IcmpKind;
    match kind {
        IcmpKind::V4 { icmp_type, code } => Reason::Icmp {
            v6: false,
            icmp_type,
            code,
        },
        IcmpKind::V6 { icmp_type, code } => Reason::Icmp {
            v6: true,
            icmp_type,
            code,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn routes_by_the_local_port_of_every_protocol() {
        let me: IpAddr = "198.18.0.1".parse().unwrap();
        let target: IpAddr = "198.18.0.2".parse().unwrap();
        let mut buf = [0u8; 128];
        // A TCP segment to our port 61442 routes by its destination port.
        let syn = harbormaster_wire::SynTemplate::new(target, me, 64, 1024).unwrap();
        let n = syn.write(&mut buf, 80, 61442, 7).unwrap();
        let reply = harbormaster_wire::parse_reply(&buf[..n]).unwrap();
        assert_eq!(local_port(&reply), Some(61442));
        // A UDP datagram likewise.
        let udp = harbormaster_wire::UdpTemplate::new(target, me, 64).unwrap();
        let n = udp.write(&mut buf, 53, 61443, b"x").unwrap();
        let reply = harbormaster_wire::parse_reply(&buf[..n]).unwrap();
        assert_eq!(local_port(&reply), Some(61443));
        // An echo reply concerns no port.
        let echo = harbormaster_wire::EchoTemplate::new(target, me, 64).unwrap();
        let n = echo.write(&mut buf, 1, 2).unwrap();
        let reply = harbormaster_wire::parse_reply(&buf[..n]).unwrap();
        assert_eq!(local_port(&reply), None);
    }
}
