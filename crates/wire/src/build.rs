//! Writing probes: prebuilt packets patched per probe.
//!
//! Every template writes a complete packet, IP header included, as a Linux
//! `IPPROTO_RAW` socket (implied `IP_HDRINCL`) or an IPv6 raw socket with
//! `IPV6_HDRINCL` expects it. `new` lays out everything that is the same for
//! every probe and sums it once; `write` copies that into the caller's buffer,
//! stores the per-probe fields and finishes each checksum by adding only the
//! words that changed (RFC 1624 style incremental sums). Nothing allocates.
//!
//! IPv4 headers are 20 bytes with Don't Fragment set (as Linux sends by
//! default); IPv6 headers have traffic class and flow label 0 and no
//! extension headers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::checksum::{self, combine, finish, pseudo_header_v4, pseudo_header_v6};
use crate::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, TcpFlags, WireError, icmpv4, icmpv6};

/// MSS advertised in IPv4 SYNs: a 1500-byte Ethernet MTU less 40 bytes of headers.
pub const MSS_V4: u16 = 1460;
/// MSS advertised in IPv6 SYNs: a 1500-byte MTU less 60 bytes of headers.
pub const MSS_V6: u16 = 1440;
/// Payload of every echo request, so that replies (which echo it) are recognisable
/// in a capture.
pub const ECHO_PAYLOAD: [u8; 16] = *b"HarbormasterPing";

const V4_HEADER: usize = 20;
const V6_HEADER: usize = 40;
/// TCP header of a SYN: 20 bytes plus the 4-byte MSS option.
const SYN_TCP_LEN: usize = 24;
const ECHO_ICMP_LEN: usize = 8 + ECHO_PAYLOAD.len();
const UDP_HEADER: usize = 8;
/// Where the per-probe IPv4 fields go (see [`crate::ipv4::field`]).
const IP_IDENT: usize = crate::ipv4::field::IDENT;
const IP_CHECKSUM: usize = crate::ipv4::field::CHECKSUM;
const IP_LENGTH: usize = crate::ipv4::field::LENGTH;

/// The IP identification of a SYN: the two halves of the sequence number
/// XOR-ed, so that it varies per probe like a real stack's without any state.
#[inline]
pub const fn syn_ip_id(seq: u32) -> u16 {
    (seq >> 16) as u16 ^ seq as u16
}

/// Writes a 20-byte IPv4 header with identification and checksum zero.
fn put_ipv4(out: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, protocol: u8, total: u16) {
    use crate::ipv4::field as f;
    out[f::VER_IHL] = 0x45;
    out[f::LENGTH..f::LENGTH + 2].copy_from_slice(&total.to_be_bytes());
    out[f::FLAGS_FRAG..f::FLAGS_FRAG + 2].copy_from_slice(&crate::ipv4::FLAG_DF.to_be_bytes());
    out[f::TTL] = ttl;
    out[f::PROTOCOL] = protocol;
    out[f::SRC_ADDR..f::SRC_ADDR + 4].copy_from_slice(&src.octets());
    out[f::DST_ADDR..f::DST_ADDR + 4].copy_from_slice(&dst.octets());
}

/// Writes a 40-byte IPv6 header.
fn put_ipv6(out: &mut [u8], src: &Ipv6Addr, dst: &Ipv6Addr, hop_limit: u8, next: u8, payload: u16) {
    use crate::ipv6::field as f;
    out[f::VER_TC_FLOW] = 0x60;
    out[f::PAYLOAD_LEN..f::PAYLOAD_LEN + 2].copy_from_slice(&payload.to_be_bytes());
    out[f::NEXT_HEADER] = next;
    out[f::HOP_LIMIT] = hop_limit;
    out[f::SRC_ADDR..f::SRC_ADDR + 16].copy_from_slice(&src.octets());
    out[f::DST_ADDR..f::DST_ADDR + 16].copy_from_slice(&dst.octets());
}

/// The first `need` bytes of `buf`, or [`WireError::BufferTooSmall`].
#[inline]
fn out_buf(buf: &mut [u8], need: usize) -> Result<&mut [u8], WireError> {
    let have = buf.len();
    buf.get_mut(..need)
        .ok_or(WireError::BufferTooSmall { need, have })
}

/// A prebuilt SYN probe: IPv4 or IPv6 header plus a 24-byte TCP header with
/// an MSS option (1460 for IPv4, 1440 for IPv6), patched per probe with the
/// ports and sequence number.
///
/// The per-probe cost of [`SynTemplate::write`] is one 44- or 64-byte copy,
/// a few stores and two short checksum finishes.
#[derive(Debug, Clone)]
pub struct SynTemplate {
    /// The packet with ports, sequence number, IP identification and both
    /// checksums zero.
    bytes: [u8; V6_HEADER + SYN_TCP_LEN],
    len: usize,
    /// Offset of the TCP header.
    tcp_at: usize,
    /// IPv4 only: sum of the header as templated (identification and checksum zero).
    ip_sum: u32,
    /// Pseudo-header plus the TCP header as templated.
    tcp_sum: u32,
    src: IpAddr,
    dst: IpAddr,
}

impl SynTemplate {
    /// Prebuilds SYNs from `src` to `dst` with the given TTL (hop limit) and
    /// TCP window. Fails with [`WireError::AddressFamilyMismatch`] unless both
    /// addresses are of the same family.
    pub fn new(src: IpAddr, dst: IpAddr, ttl: u8, window: u16) -> Result<Self, WireError> {
        let mut bytes = [0u8; V6_HEADER + SYN_TCP_LEN];
        let (tcp_at, mss, pseudo) = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                put_ipv4(
                    &mut bytes,
                    s,
                    d,
                    ttl,
                    PROTO_TCP,
                    (V4_HEADER + SYN_TCP_LEN) as u16,
                );
                (
                    V4_HEADER,
                    MSS_V4,
                    pseudo_header_v4(s, d, PROTO_TCP, SYN_TCP_LEN as u16),
                )
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                put_ipv6(&mut bytes, &s, &d, ttl, PROTO_TCP, SYN_TCP_LEN as u16);
                (
                    V6_HEADER,
                    MSS_V6,
                    pseudo_header_v6(&s, &d, PROTO_TCP, SYN_TCP_LEN as u32),
                )
            }
            _ => return Err(WireError::AddressFamilyMismatch),
        };
        let len = tcp_at + SYN_TCP_LEN;
        let tcp = &mut bytes[tcp_at..len];
        tcp[12] = ((SYN_TCP_LEN / 4) as u8) << 4;
        tcp[13] = TcpFlags::SYN.0;
        tcp[14..16].copy_from_slice(&window.to_be_bytes());
        let [hi, lo] = mss.to_be_bytes();
        tcp[20..24].copy_from_slice(&[crate::tcp::OPT_MSS, 4, hi, lo]);
        // The per-probe fields are still zero, so these sums are exactly the
        // constant parts of the two checksums.
        let ip_sum = if tcp_at == V4_HEADER {
            checksum::sum(&bytes[..V4_HEADER])
        } else {
            0
        };
        let tcp_sum = combine(pseudo, checksum::sum(&bytes[tcp_at..len]));
        Ok(SynTemplate {
            bytes,
            len,
            tcp_at,
            ip_sum,
            tcp_sum,
            src,
            dst,
        })
    }

    /// Length of every packet written: 44 for IPv4, 64 for IPv6.
    #[expect(clippy::len_without_is_empty, reason = "a probe is never empty")]
    pub fn len(&self) -> usize {
        self.len
    }

    /// The source address.
    pub fn src(&self) -> IpAddr {
        self.src
    }

    /// The destination address.
    pub fn dst(&self) -> IpAddr {
        self.dst
    }

    /// Writes a complete packet (IP header included, as for a Linux
    /// `IPPROTO_RAW` / `IP_HDRINCL` socket) for this port pair and sequence
    /// number into the start of `buf` and returns the bytes written
    /// ([`SynTemplate::len`]). For IPv4 it fills the total length, an IP
    /// identification derived from `seq` ([`syn_ip_id`]), the header checksum
    /// and the TCP checksum; for IPv6 the payload length and the TCP checksum.
    ///
    /// Fails only with [`WireError::BufferTooSmall`]; bytes of `buf` past the
    /// packet are left alone.
    #[inline]
    pub fn write(
        &self,
        buf: &mut [u8],
        src_port: u16,
        dst_port: u16,
        seq: u32,
    ) -> Result<usize, WireError> {
        let out = out_buf(buf, self.len)?;
        out.copy_from_slice(&self.bytes[..self.len]);
        if self.tcp_at == V4_HEADER {
            let id = syn_ip_id(seq);
            out[IP_IDENT..IP_IDENT + 2].copy_from_slice(&id.to_be_bytes());
            out[IP_CHECKSUM..IP_CHECKSUM + 2]
                .copy_from_slice(&finish(self.ip_sum + u32::from(id)).to_be_bytes());
        }
        let tcp = &mut out[self.tcp_at..];
        tcp[0..2].copy_from_slice(&src_port.to_be_bytes());
        tcp[2..4].copy_from_slice(&dst_port.to_be_bytes());
        tcp[4..8].copy_from_slice(&seq.to_be_bytes());
        // Four words of at most 0xFFFF on top of a folded sum cannot overflow a u32.
        let sum =
            self.tcp_sum + u32::from(src_port) + u32::from(dst_port) + (seq >> 16) + (seq & 0xffff);
        tcp[16..18].copy_from_slice(&finish(sum).to_be_bytes());
        Ok(self.len)
    }
}

/// A prebuilt ICMP echo request (ping): IPv4 with ICMP type 8, or IPv6 with
/// ICMPv6 type 128 (whose checksum includes the IPv6 pseudo-header), carrying
/// the 16-byte [`ECHO_PAYLOAD`].
#[derive(Debug, Clone)]
pub struct EchoTemplate {
    bytes: [u8; V6_HEADER + ECHO_ICMP_LEN],
    len: usize,
    icmp_at: usize,
    ip_sum: u32,
    icmp_sum: u32,
}

impl EchoTemplate {
    /// Prebuilds echo requests from `src` to `dst` with the given TTL (hop
    /// limit). Fails with [`WireError::AddressFamilyMismatch`] unless both
    /// addresses are of the same family.
    pub fn new(src: IpAddr, dst: IpAddr, ttl: u8) -> Result<Self, WireError> {
        let mut bytes = [0u8; V6_HEADER + ECHO_ICMP_LEN];
        let (icmp_at, msg_type, pseudo) = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                put_ipv4(
                    &mut bytes,
                    s,
                    d,
                    ttl,
                    PROTO_ICMP,
                    (V4_HEADER + ECHO_ICMP_LEN) as u16,
                );
                // ICMPv4 has no pseudo-header.
                (V4_HEADER, icmpv4::TYPE_ECHO_REQUEST, 0)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                put_ipv6(&mut bytes, &s, &d, ttl, PROTO_ICMPV6, ECHO_ICMP_LEN as u16);
                let pseudo = pseudo_header_v6(&s, &d, PROTO_ICMPV6, ECHO_ICMP_LEN as u32);
                (V6_HEADER, icmpv6::TYPE_ECHO_REQUEST, pseudo)
            }
            _ => return Err(WireError::AddressFamilyMismatch),
        };
        let len = icmp_at + ECHO_ICMP_LEN;
        bytes[icmp_at] = msg_type;
        bytes[icmp_at + 8..len].copy_from_slice(&ECHO_PAYLOAD);
        let ip_sum = if icmp_at == V4_HEADER {
            checksum::sum(&bytes[..V4_HEADER])
        } else {
            0
        };
        let icmp_sum = combine(pseudo, checksum::sum(&bytes[icmp_at..len]));
        Ok(EchoTemplate {
            bytes,
            len,
            icmp_at,
            ip_sum,
            icmp_sum,
        })
    }

    /// Length of every packet written: 44 for IPv4, 64 for IPv6.
    #[expect(clippy::len_without_is_empty, reason = "a probe is never empty")]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Writes a complete echo request with this identifier and sequence number
    /// into the start of `buf` and returns the bytes written. The IPv4
    /// identification is the sequence number.
    ///
    /// Fails only with [`WireError::BufferTooSmall`].
    #[inline]
    pub fn write(&self, buf: &mut [u8], ident: u16, seq: u16) -> Result<usize, WireError> {
        let out = out_buf(buf, self.len)?;
        out.copy_from_slice(&self.bytes[..self.len]);
        if self.icmp_at == V4_HEADER {
            out[IP_IDENT..IP_IDENT + 2].copy_from_slice(&seq.to_be_bytes());
            out[IP_CHECKSUM..IP_CHECKSUM + 2]
                .copy_from_slice(&finish(self.ip_sum + u32::from(seq)).to_be_bytes());
        }
        let icmp = &mut out[self.icmp_at..];
        icmp[4..6].copy_from_slice(&ident.to_be_bytes());
        icmp[6..8].copy_from_slice(&seq.to_be_bytes());
        let sum = self.icmp_sum + u32::from(ident) + u32::from(seq);
        icmp[2..4].copy_from_slice(&finish(sum).to_be_bytes());
        Ok(self.len)
    }
}

/// A prebuilt UDP probe: IPv4 or IPv6 header and UDP header, followed by a
/// payload given per probe.
///
/// The payload differs per probe, so its checksum is summed on every
/// [`UdpTemplate::write`]; only the address part of the pseudo-header and the
/// IP header are precomputed.
#[derive(Debug, Clone)]
pub struct UdpTemplate {
    bytes: [u8; V6_HEADER + UDP_HEADER],
    udp_at: usize,
    ip_sum: u32,
    /// Pseudo-header sum without the length (added per probe).
    pseudo_sum: u32,
}

impl UdpTemplate {
    /// Prebuilds UDP probes from `src` to `dst` with the given TTL (hop
    /// limit). Fails with [`WireError::AddressFamilyMismatch`] unless both
    /// addresses are of the same family.
    pub fn new(src: IpAddr, dst: IpAddr, ttl: u8) -> Result<Self, WireError> {
        let mut bytes = [0u8; V6_HEADER + UDP_HEADER];
        let (udp_at, pseudo_sum) = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                put_ipv4(&mut bytes, s, d, ttl, PROTO_UDP, 0);
                (V4_HEADER, pseudo_header_v4(s, d, PROTO_UDP, 0))
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                put_ipv6(&mut bytes, &s, &d, ttl, PROTO_UDP, 0);
                (V6_HEADER, pseudo_header_v6(&s, &d, PROTO_UDP, 0))
            }
            _ => return Err(WireError::AddressFamilyMismatch),
        };
        // Total length, identification and checksum are zero here and added per probe.
        let ip_sum = if udp_at == V4_HEADER {
            checksum::sum(&bytes[..V4_HEADER])
        } else {
            0
        };
        Ok(UdpTemplate {
            bytes,
            udp_at,
            ip_sum,
            pseudo_sum,
        })
    }

    /// Length of the IP and UDP headers: 28 for IPv4, 48 for IPv6.
    pub fn header_len(&self) -> usize {
        self.udp_at + UDP_HEADER
    }

    /// The longest payload [`UdpTemplate::write`] accepts: 65,507 bytes for
    /// IPv4 (total length is 16 bits), 65,527 for IPv6 (UDP length is 16 bits;
    /// jumbograms are not built).
    pub fn max_payload(&self) -> usize {
        usize::from(u16::MAX)
            - if self.udp_at == V4_HEADER {
                V4_HEADER + UDP_HEADER
            } else {
                UDP_HEADER
            }
    }

    /// Writes a complete datagram with these ports and `payload` into the
    /// start of `buf` and returns the bytes written (`header_len() +
    /// payload.len()`). The IPv4 identification is the source port. A UDP
    /// checksum that comes out as 0 is sent as `0xFFFF`, as RFC 768 says.
    ///
    /// Fails with [`WireError::PayloadTooLong`] or [`WireError::BufferTooSmall`].
    pub fn write(
        &self,
        buf: &mut [u8],
        src_port: u16,
        dst_port: u16,
        payload: &[u8],
    ) -> Result<usize, WireError> {
        let max = self.max_payload();
        if payload.len() > max {
            return Err(WireError::PayloadTooLong {
                len: payload.len(),
                max,
            });
        }
        let header_len = self.header_len();
        let out = out_buf(buf, header_len + payload.len())?;
        out[..header_len].copy_from_slice(&self.bytes[..header_len]);
        // Both fit in 16 bits: checked against max_payload above.
        let udp_len = (UDP_HEADER + payload.len()) as u16;
        if self.udp_at == V4_HEADER {
            let total = (header_len + payload.len()) as u16;
            out[IP_LENGTH..IP_LENGTH + 2].copy_from_slice(&total.to_be_bytes());
            // The IP identification is the source port: unique per try.
            out[IP_IDENT..IP_IDENT + 2].copy_from_slice(&src_port.to_be_bytes());
            let sum = self.ip_sum + u32::from(total) + u32::from(src_port);
            out[IP_CHECKSUM..IP_CHECKSUM + 2].copy_from_slice(&finish(sum).to_be_bytes());
        } else {
            let at = crate::ipv6::field::PAYLOAD_LEN;
            out[at..at + 2].copy_from_slice(&udp_len.to_be_bytes());
        }
        let (udp, data) = out[self.udp_at..].split_at_mut(UDP_HEADER);
        udp[0..2].copy_from_slice(&src_port.to_be_bytes());
        udp[2..4].copy_from_slice(&dst_port.to_be_bytes());
        udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
        data.copy_from_slice(payload);
        // udp_len counts twice: once in the pseudo-header, once in the header.
        let head =
            self.pseudo_sum + 2 * u32::from(udp_len) + u32::from(src_port) + u32::from(dst_port);
        let csum = match finish(combine(head, checksum::sum(payload))) {
            0 => 0xffff,
            c => c,
        };
        udp[6..8].copy_from_slice(&csum.to_be_bytes());
        Ok(header_len + payload.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{SYN4, SYN6};
    use etherparse::{
        IpHeaders, Ipv4Header, NetSlice, PacketBuilder, SlicedPacket, TcpOptionElement,
        TransportSlice,
    };

    fn addrs(v6: bool) -> (IpAddr, IpAddr) {
        if v6 {
            (
                "2001:db8::10".parse().unwrap(),
                "2001:db8:1::20".parse().unwrap(),
            )
        } else {
            (
                "192.0.2.10".parse().unwrap(),
                "198.51.100.20".parse().unwrap(),
            )
        }
    }

    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// A from-scratch checksum of `data` with the 2-byte field at `at` taken as zero.
    fn naive_with_zeroed(pseudo: &[u8], data: &[u8], at: usize) -> u16 {
        let mut all = pseudo.to_vec();
        let mut d = data.to_vec();
        d[at..at + 2].copy_from_slice(&[0, 0]);
        all.extend_from_slice(&d);
        let mut s: u64 = 0;
        for (i, b) in all.iter().enumerate() {
            s += if i % 2 == 0 {
                u64::from(*b) << 8
            } else {
                u64::from(*b)
            };
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    #[test]
    fn syn_matches_the_fixtures_byte_for_byte() {
        let mut buf = [0u8; 64];
        let (s, d) = addrs(false);
        let t = SynTemplate::new(s, d, 64, 1024).unwrap();
        assert_eq!(t.len(), 44);
        assert_eq!(t.write(&mut buf, 40000, 443, 0x1234_5678), Ok(44));
        assert_eq!(buf[..44], SYN4);
        let (s, d) = addrs(true);
        let t = SynTemplate::new(s, d, 64, 1024).unwrap();
        assert_eq!(t.len(), 64);
        assert_eq!(t.write(&mut buf, 40000, 443, 0x1234_5678), Ok(64));
        assert_eq!(buf, SYN6);
        assert_eq!((t.src(), t.dst()), (s, d));
    }

    #[test]
    fn mixed_families_are_refused() {
        let (s4, _) = addrs(false);
        let (_, d6) = addrs(true);
        assert_eq!(
            SynTemplate::new(s4, d6, 64, 1024).unwrap_err(),
            WireError::AddressFamilyMismatch
        );
        assert_eq!(
            EchoTemplate::new(d6, s4, 64).unwrap_err(),
            WireError::AddressFamilyMismatch
        );
        assert_eq!(
            UdpTemplate::new(s4, d6, 64).unwrap_err(),
            WireError::AddressFamilyMismatch
        );
    }

    #[test]
    fn short_buffers_are_refused_and_long_ones_untouched_past_the_packet() {
        let (s, d) = addrs(false);
        let t = SynTemplate::new(s, d, 64, 1024).unwrap();
        let mut small = [0u8; 43];
        assert_eq!(
            t.write(&mut small, 1, 2, 3),
            Err(WireError::BufferTooSmall { need: 44, have: 43 })
        );
        assert_eq!(small, [0; 43]);
        let mut big = [0xeeu8; 100];
        assert_eq!(t.write(&mut big, 1, 2, 3), Ok(44));
        assert!(big[44..].iter().all(|&b| b == 0xee));

        let e = EchoTemplate::new(s, d, 64).unwrap();
        assert_eq!(
            e.write(&mut small, 1, 2),
            Err(WireError::BufferTooSmall { need: 44, have: 43 })
        );
        let u = UdpTemplate::new(s, d, 64).unwrap();
        assert_eq!(
            u.write(&mut small, 1, 2, &[0; 16]),
            Err(WireError::BufferTooSmall { need: 44, have: 43 })
        );
    }

    /// Our SYNs against etherparse: parsed fields, both checksums, and the
    /// exact bytes etherparse's own builder writes for the same header values.
    #[test]
    fn syn_cross_checked_with_etherparse() {
        let mut rng = XorShift(0x1234_5678_9abc_def1);
        let mut buf = [0u8; 64];
        for v6 in [false, true] {
            let (src, dst) = addrs(v6);
            for round in 0..3000 {
                let r = rng.next();
                let (ttl, window) = ((r >> 40) as u8, (r >> 48) as u16);
                let t = SynTemplate::new(src, dst, ttl, window).unwrap();
                let (sp, dp, seq) = (r as u16, (r >> 16) as u16, rng.next() as u32);
                let n = t.write(&mut buf, sp, dp, seq).unwrap();
                let pkt = &buf[..n];

                let sliced = SlicedPacket::from_ip(pkt).unwrap();
                let Some(TransportSlice::Tcp(tcp)) = &sliced.transport else {
                    panic!()
                };
                assert_eq!((tcp.source_port(), tcp.destination_port()), (sp, dp));
                assert_eq!(
                    (tcp.sequence_number(), tcp.acknowledgment_number()),
                    (seq, 0)
                );
                assert!(tcp.syn() && !tcp.ack() && !tcp.rst() && !tcp.fin());
                assert_eq!(tcp.window_size(), window);
                let opts: Vec<_> = tcp.options_iterator().map(Result::unwrap).collect();
                let mss = if v6 { MSS_V6 } else { MSS_V4 };
                assert_eq!(opts, [TcpOptionElement::MaximumSegmentSize(mss)]);

                let mut builder_bytes = Vec::new();
                match sliced.net.as_ref().unwrap() {
                    NetSlice::Ipv4(ip) => {
                        let h = ip.header();
                        assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
                        assert_eq!(
                            tcp.checksum(),
                            tcp.calc_checksum_ipv4(h.source(), h.destination()).unwrap()
                        );
                        assert_eq!(
                            (h.ttl(), h.identification(), h.dont_fragment()),
                            (ttl, syn_ip_id(seq), true)
                        );
                        assert_eq!(h.total_len(), 44);
                        let mut ip4 = Ipv4Header::new(
                            24,
                            ttl,
                            etherparse::IpNumber::TCP,
                            h.source(),
                            h.destination(),
                        )
                        .unwrap();
                        ip4.identification = syn_ip_id(seq);
                        PacketBuilder::ip(IpHeaders::Ipv4(ip4, Default::default()))
                            .tcp(sp, dp, seq, window)
                            .syn()
                            .options(&[TcpOptionElement::MaximumSegmentSize(mss)])
                            .unwrap()
                            .write(&mut builder_bytes, &[])
                            .unwrap();
                    }
                    NetSlice::Ipv6(ip) => {
                        let h = ip.header();
                        assert_eq!(
                            tcp.checksum(),
                            tcp.calc_checksum_ipv6(h.source(), h.destination()).unwrap()
                        );
                        assert_eq!((h.hop_limit(), h.payload_length()), (ttl, 24));
                        PacketBuilder::ipv6(h.source(), h.destination(), ttl)
                            .tcp(sp, dp, seq, window)
                            .syn()
                            .options(&[TcpOptionElement::MaximumSegmentSize(mss)])
                            .unwrap()
                            .write(&mut builder_bytes, &[])
                            .unwrap();
                    }
                    other => panic!("{other:?}"),
                }
                assert_eq!(pkt, &builder_bytes[..], "v6 {v6} round {round}");

                // And against a straightforward non-incremental sum.
                let tcp_at = if v6 { 40 } else { 20 };
                let mut pseudo = Vec::new();
                match (src, dst) {
                    (IpAddr::V4(s), IpAddr::V4(d)) => {
                        pseudo.extend_from_slice(&s.octets());
                        pseudo.extend_from_slice(&d.octets());
                        pseudo.extend_from_slice(&[0, 6, 0, 24]);
                        assert_eq!(
                            u16::from_be_bytes([pkt[10], pkt[11]]),
                            naive_with_zeroed(&[], &pkt[..20], 10)
                        );
                    }
                    (IpAddr::V6(s), IpAddr::V6(d)) => {
                        pseudo.extend_from_slice(&s.octets());
                        pseudo.extend_from_slice(&d.octets());
                        pseudo.extend_from_slice(&[0, 0, 0, 24, 0, 0, 0, 6]);
                    }
                    _ => unreachable!(),
                }
                let want = naive_with_zeroed(&pseudo, &pkt[tcp_at..], 16);
                assert_eq!(
                    u16::from_be_bytes([pkt[tcp_at + 16], pkt[tcp_at + 17]]),
                    want
                );
            }
        }
    }

    #[test]
    fn extreme_values_still_checksum() {
        let mut buf = [0u8; 64];
        for v6 in [false, true] {
            let (s, d) = addrs(v6);
            for (ttl, win) in [(0, 0), (255, 0xffff)] {
                let t = SynTemplate::new(s, d, ttl, win).unwrap();
                for (sp, dp, seq) in [
                    (0, 0, 0),
                    (0xffff, 0xffff, u32::MAX),
                    (1, 0xfffe, 0xffff_0000),
                ] {
                    let n = t.write(&mut buf, sp, dp, seq).unwrap();
                    let tcp = crate::tcp::Packet::new_checked(&buf[n - 24..n]).unwrap();
                    assert!(tcp.verify_checksum(s, d));
                    if !v6 {
                        assert!(
                            crate::ipv4::Packet::new_checked(&buf[..n])
                                .unwrap()
                                .verify_checksum()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn echo_cross_checked_with_etherparse() {
        let mut rng = XorShift(0xfeed_f00d_dead_beef);
        let mut buf = [0u8; 64];
        for v6 in [false, true] {
            let (src, dst) = addrs(v6);
            for _ in 0..2000 {
                let r = rng.next();
                let (ttl, ident, seq) = ((r >> 32) as u8, r as u16, (r >> 16) as u16);
                let t = EchoTemplate::new(src, dst, ttl).unwrap();
                let n = t.write(&mut buf, ident, seq).unwrap();
                assert_eq!(n, t.len());
                assert_eq!(n, if v6 { 64 } else { 44 });
                let pkt = &buf[..n];
                let sliced = SlicedPacket::from_ip(pkt).unwrap();
                let mut builder_bytes = Vec::new();
                match (
                    sliced.net.as_ref().unwrap(),
                    sliced.transport.as_ref().unwrap(),
                ) {
                    (NetSlice::Ipv4(ip), TransportSlice::Icmpv4(m)) => {
                        let h = ip.header();
                        assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
                        assert_eq!((h.ttl(), h.identification()), (ttl, seq));
                        assert_eq!(
                            m.icmp_type(),
                            etherparse::Icmpv4Type::EchoRequest(etherparse::IcmpEchoHeader {
                                id: ident,
                                seq
                            })
                        );
                        assert_eq!(m.payload(), ECHO_PAYLOAD);
                        let ok = etherparse::checksum::Sum16BitWords::new()
                            .add_slice(m.slice())
                            .ones_complement();
                        assert_eq!(ok, 0);
                        let mut ip4 = Ipv4Header::new(
                            24,
                            ttl,
                            etherparse::IpNumber::ICMP,
                            h.source(),
                            h.destination(),
                        )
                        .unwrap();
                        ip4.identification = seq;
                        PacketBuilder::ip(IpHeaders::Ipv4(ip4, Default::default()))
                            .icmpv4_echo_request(ident, seq)
                            .write(&mut builder_bytes, &ECHO_PAYLOAD)
                            .unwrap();
                    }
                    (NetSlice::Ipv6(ip), TransportSlice::Icmpv6(m)) => {
                        let h = ip.header();
                        assert_eq!(h.hop_limit(), ttl);
                        assert_eq!(
                            m.icmp_type(),
                            etherparse::Icmpv6Type::EchoRequest(etherparse::IcmpEchoHeader {
                                id: ident,
                                seq
                            })
                        );
                        assert!(m.is_checksum_valid(h.source(), h.destination()));
                        PacketBuilder::ipv6(h.source(), h.destination(), ttl)
                            .icmpv6_echo_request(ident, seq)
                            .write(&mut builder_bytes, &ECHO_PAYLOAD)
                            .unwrap();
                    }
                    other => panic!("{other:?}"),
                }
                assert_eq!(pkt, &builder_bytes[..]);
            }
        }
    }

    #[test]
    fn udp_cross_checked_with_etherparse() {
        let mut rng = XorShift(0x0123_4567_89ab_cdef);
        let mut buf = vec![0u8; 2048];
        for v6 in [false, true] {
            let (src, dst) = addrs(v6);
            for round in 0..2000 {
                let r = rng.next();
                let (ttl, sp, dp) = ((r >> 32) as u8, r as u16, (r >> 16) as u16);
                let payload: Vec<u8> = (0..(r >> 40) as usize % 300)
                    .map(|_| rng.next() as u8)
                    .collect();
                let t = UdpTemplate::new(src, dst, ttl).unwrap();
                let n = t.write(&mut buf, sp, dp, &payload).unwrap();
                assert_eq!(n, t.header_len() + payload.len());
                let pkt = &buf[..n];
                let sliced = SlicedPacket::from_ip(pkt).unwrap();
                let Some(TransportSlice::Udp(u)) = &sliced.transport else {
                    panic!()
                };
                assert_eq!((u.source_port(), u.destination_port()), (sp, dp));
                assert_eq!(u.payload(), &payload[..]);
                let header = u.to_header();
                let mut builder_bytes = Vec::new();
                match sliced.net.as_ref().unwrap() {
                    NetSlice::Ipv4(ip) => {
                        let h = ip.header();
                        assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
                        assert_eq!(h.identification(), sp);
                        let want = header
                            .calc_checksum_ipv4_raw(h.source(), h.destination(), &payload)
                            .unwrap();
                        assert_eq!(u.checksum(), want);
                        let mut ip4 = Ipv4Header::new(
                            (8 + payload.len()) as u16,
                            ttl,
                            etherparse::IpNumber::UDP,
                            h.source(),
                            h.destination(),
                        )
                        .unwrap();
                        ip4.identification = sp;
                        PacketBuilder::ip(IpHeaders::Ipv4(ip4, Default::default()))
                            .udp(sp, dp)
                            .write(&mut builder_bytes, &payload)
                            .unwrap();
                    }
                    NetSlice::Ipv6(ip) => {
                        let h = ip.header();
                        let want = header
                            .calc_checksum_ipv6_raw(h.source(), h.destination(), &payload)
                            .unwrap();
                        assert_eq!(u.checksum(), want);
                        PacketBuilder::ipv6(h.source(), h.destination(), ttl)
                            .udp(sp, dp)
                            .write(&mut builder_bytes, &payload)
                            .unwrap();
                    }
                    other => panic!("{other:?}"),
                }
                assert_eq!(pkt, &builder_bytes[..], "v6 {v6} round {round}");
            }
        }
    }

    #[test]
    fn udp_checksum_zero_goes_out_as_ffff() {
        // Exactly one source port makes the sum come out as 0; find it by trying them all.
        let mut buf = [0u8; 64];
        for v6 in [false, true] {
            let (src, dst) = addrs(v6);
            let t = UdpTemplate::new(src, dst, 64).unwrap();
            let mut ffff = 0;
            for sp in 0..=u16::MAX {
                let n = t.write(&mut buf, sp, 53, b"probe").unwrap();
                let c = u16::from_be_bytes([buf[t.header_len() - 2], buf[t.header_len() - 1]]);
                assert_ne!(c, 0, "sp {sp}");
                if c == 0xffff {
                    ffff += 1;
                    let u = crate::udp::Packet::new_checked(&buf[t.header_len() - 8..n]).unwrap();
                    assert!(u.verify_checksum(src, dst));
                }
            }
            assert!(ffff >= 1);
        }
    }

    #[test]
    fn udp_payload_limits() {
        let (s4, d4) = addrs(false);
        let (s6, d6) = addrs(true);
        let t4 = UdpTemplate::new(s4, d4, 64).unwrap();
        let t6 = UdpTemplate::new(s6, d6, 64).unwrap();
        assert_eq!((t4.header_len(), t4.max_payload()), (28, 65507));
        assert_eq!((t6.header_len(), t6.max_payload()), (48, 65527));
        let big = vec![0xabu8; 65528];
        let mut buf = vec![0u8; 70_000];
        assert_eq!(
            t4.write(&mut buf, 1, 2, &big[..65508]),
            Err(WireError::PayloadTooLong {
                len: 65508,
                max: 65507
            })
        );
        assert_eq!(t4.write(&mut buf, 1, 2, &big[..65507]), Ok(65535));
        let p = crate::ipv4::Packet::new_checked(&buf[..65535]).unwrap();
        assert!(p.verify_checksum());
        let u = crate::udp::Packet::new_checked(p.payload()).unwrap();
        assert!(u.verify_checksum(s4, d4));
        assert_eq!(
            t6.write(&mut buf, 1, 2, &big),
            Err(WireError::PayloadTooLong {
                len: 65528,
                max: 65527
            })
        );
        assert_eq!(t6.write(&mut buf, 1, 2, &big[..65527]), Ok(65575));
        let Ok(crate::Reply::Udp(r)) = crate::parse_reply(&buf[..65575]) else {
            panic!()
        };
        assert_eq!(r.payload_len, 65527);
        // An empty payload is fine.
        assert_eq!(t6.write(&mut buf, 1, 2, &[]), Ok(48));
    }

    #[test]
    fn probes_parse_back_through_parse_reply() {
        let mut buf = [0u8; 128];
        for v6 in [false, true] {
            let (s, d) = addrs(v6);
            let n = EchoTemplate::new(s, d, 9)
                .unwrap()
                .write(&mut buf, 7, 8)
                .unwrap();
            // Our own echo request is not a reply.
            let proto = if v6 { PROTO_ICMPV6 } else { PROTO_ICMP };
            assert!(matches!(
                crate::parse_reply(&buf[..n]),
                Ok(crate::Reply::Other { src, dst, protocol }) if protocol == proto && src == s && dst == d
            ));
            let n = UdpTemplate::new(s, d, 9)
                .unwrap()
                .write(&mut buf, 7, 8, b"x")
                .unwrap();
            let Ok(crate::Reply::Udp(u)) = crate::parse_reply(&buf[..n]) else {
                panic!()
            };
            assert_eq!(
                (u.src, u.dst, u.ttl, u.src_port, u.dst_port, u.payload_len),
                (s, d, 9, 7, 8, 1)
            );
        }
    }
}
