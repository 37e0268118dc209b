//! ICMP and ICMPv6 echo (ping), the watch's probe: one per scan ident, a
//! sequence number per request. An echo reply counts for the scan whose ident
//! it echoes and whose target sent it.

use std::net::IpAddr;

use harbormaster_wire::{EchoReply, EchoTemplate, WireError};

/// The echo probe of one scan.
#[derive(Debug, Clone)]
pub struct IcmpEcho {
    target: IpAddr,
    ident: u16,
    template: EchoTemplate,
}

impl IcmpEcho {
    /// Echo requests from `source` to `target` carrying `ident`.
    pub fn new(source: IpAddr, target: IpAddr, ttl: u8, ident: u16) -> Result<IcmpEcho, WireError> {
        Ok(IcmpEcho {
            target,
            ident,
            template: EchoTemplate::new(source, target, ttl)?,
        })
    }

    /// Writes echo request number `seq` into `buf`; returns its length.
    pub fn write(&self, buf: &mut [u8], seq: u16) -> Result<usize, WireError> {
        self.template.write(buf, self.ident, seq)
    }

    /// Whether `reply` answers one of these requests.
    pub fn matches(&self, reply: &EchoReply) -> bool {
        reply.from == self.target && reply.ident == self.ident
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use harbormaster_wire::{Reply, parse_reply};

    #[test]
    fn matches_replies_from_the_target_with_our_ident() {
        for (me, target) in [("198.18.0.1", "198.18.0.2"), ("fd00::1", "fd00::2")] {
            let (me, target): (IpAddr, IpAddr) = (me.parse().unwrap(), target.parse().unwrap());
            let ping = IcmpEcho::new(me, target, 64, 0x4801).unwrap();
            let mut buf = [0u8; 64];
            assert!(ping.write(&mut buf, 3).unwrap() > 0);
            let reply = EchoReply {
                from: target,
                to: me,
                ttl: 64,
                ident: 0x4801,
                seq: 3,
            };
            assert!(ping.matches(&reply));
            assert!(!ping.matches(&EchoReply {
                ident: 0x4802,
                ..reply
            }));
            assert!(!ping.matches(&EchoReply { from: me, ..reply }));
            // Our own request is not a reply.
            let n = ping.write(&mut buf, 4).unwrap();
            assert!(!matches!(parse_reply(&buf[..n]), Ok(Reply::EchoReply(_))));
        }
    }
}
