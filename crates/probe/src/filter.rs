//! The kernel packet filter (classic BPF) for the receive socket.
//!
//! It passes ICMP and ICMPv6, TCP segments and UDP datagrams to our
//! source-port range, and — for
//! scans that watch for unsolicited traffic — every IPv4 or IPv6 packet from a
//! watched address. Everything else never leaves the kernel, and what passes
//! is truncated to [`RECV_SNAP`] bytes. Building the program is pure code,
//! tested here with a small interpreter; installing it is in `sys`.
//!
//! The receive socket sees both IP versions (see `sys::packet_socket`), so
//! the program first branches on the version nibble: the IPv4 half reads the
//! protocol and the header length from the IPv4 header; the IPv6 half reads
//! the next-header field and, for TCP and UDP, the destination port right
//! after the fixed 40-byte header. An IPv6 reply with extension headers before
//! its TCP, UDP or ICMPv6 header passes only from a watched address: hosts do
//! not put extension headers on SYN-ACKs, RSTs, datagram replies or ICMPv6
//! errors, and walking a chain of them is more than classic BPF does safely.
//!
//! Classic BPF conditional jumps reach at most 255 instructions ahead (`jt`
//! and `jf` are bytes), so the program never jumps far conditionally: the
//! ICMP and our-port checks jump to an accept placed right after them, and the
//! watched addresses are compared in chunks (at most [`CHUNK`] IPv4 or
//! [`CHUNK6`] IPv6 addresses), each followed by its own accept; an
//! unconditional `ja` (32-bit offset) skips from one chunk to the next, and
//! from the version check to the IPv6 half.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::transport::RECV_SNAP;

/// One classic BPF instruction (the `struct sock_filter` layout).
pub type Insn = libc::sock_filter;

const LD_W_ABS: u16 = 0x20;
const LD_H_ABS: u16 = 0x28;
const LD_B_ABS: u16 = 0x30;
const LDX_B_MSH: u16 = 0xb1;
const LD_H_IND: u16 = 0x48;
const LD_MEM: u16 = 0x60;
const ST: u16 = 0x02;
const AND_K: u16 = 0x54;
const JA: u16 = 0x05;
const JEQ_K: u16 = 0x15;
const JGE_K: u16 = 0x35;
const RET_K: u16 = 0x06;

/// The kernel's limit on a classic BPF program's length (`BPF_MAXINSNS`).
pub const BPF_MAXINSNS: usize = 4096;

/// Watched IPv4 addresses compared before the next accept: the farthest
/// conditional jump (from a chunk's first comparison to its accept) is
/// `CHUNK` instructions.
const CHUNK: usize = 255;

/// Watched IPv6 addresses compared before the next accept. Each takes 8
/// instructions (four loads from scratch memory, four comparisons); the
/// farthest conditional jump, from the first address's last comparison to the
/// accept, is `8 × CHUNK6 − 7`.
///
/// The source address is read from the packet once, into scratch memory
/// `M[0..4]`, and each comparison loads a word from there: the kernel turns a
/// packet load into a bounds-checked sequence of several instructions but a
/// scratch load into one, and the converted program must fit the socket's
/// option memory (`optmem_max`) — with packet loads, 256 watched IPv6
/// addresses next to 1,024 IPv4 ones did not (ENOMEM).
const CHUNK6: usize = 32;

/// Loading the source address into scratch memory: four loads, four stores.
const SRC6_LOAD: usize = 8;

/// The version dispatch: `ldb [0]`, `and 0xf0`, `jeq 0x40`, `ja v6`.
const HEADER: usize = 4;

/// Instructions of the IPv4 half before its first address comparison.
const PROLOGUE: usize = 9;

/// Instructions of the IPv6 half before its first address comparison.
const PROLOGUE6: usize = 9;

const fn insn(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
    Insn { code, jt, jf, k }
}

/// Most watched IPv4 addresses one program holds. The engine runs at most 256
/// scans, so this is never reached in practice; with [`MAX_WATCHED_V6`] it
/// keeps the program (at most about 25 KB) inside `BPF_MAXINSNS`.
pub const MAX_WATCHED: usize = 1024;

/// Most watched IPv6 addresses one program holds: one per scan the engine can
/// run (256).
pub const MAX_WATCHED_V6: usize = 256;

/// Length of the IPv4 half for `n` watched addresses.
const fn v4_len(n: usize) -> usize {
    // Each chunk: its comparisons, then `ja` (or the final `ret 0`), then its accept.
    PROLOGUE + n + 2 * n.div_ceil(CHUNK) + if n == 0 { 1 } else { 0 }
}

/// Length of the IPv6 half for `n` watched addresses.
const fn v6_len(n: usize) -> usize {
    PROLOGUE6
        + if n == 0 {
            1
        } else {
            SRC6_LOAD + 8 * n + 2 * n.div_ceil(CHUNK6)
        }
}

/// Length of the program for `n4` IPv4 and `n6` IPv6 watched addresses.
const fn program_len(n4: usize, n6: usize) -> usize {
    HEADER + v4_len(n4) + v6_len(n6)
}

const _: () = assert!(program_len(MAX_WATCHED, MAX_WATCHED_V6) <= BPF_MAXINSNS);
const _: () = assert!(8 * CHUNK6 - 7 <= 255);

/// The offset of a conditional jump from the instruction at `from` to `to`.
///
/// The layout keeps every target within reach; a failure here is a bug in
/// [`program`], caught by the tests for every size up to the limits.
fn short(from: usize, to: usize) -> u8 {
    let off = to.checked_sub(from + 1).expect("BPF jumps go forward only");
    u8::try_from(off).expect("BPF conditional jump beyond 255 instructions")
}

/// The program for packets that start at the IPv4 or IPv6 header. At most
/// [`MAX_WATCHED`] IPv4 and [`MAX_WATCHED_V6`] IPv6 addresses are watched;
/// any beyond are ignored.
pub fn program(min_port: u16, watched: &[IpAddr]) -> Vec<Insn> {
    let mut v4: Vec<Ipv4Addr> = Vec::new();
    let mut v6: Vec<Ipv6Addr> = Vec::new();
    for a in watched {
        match a {
            IpAddr::V4(a) if v4.len() < MAX_WATCHED => v4.push(*a),
            IpAddr::V6(a) if v6.len() < MAX_WATCHED_V6 => v6.push(*a),
            _ => {}
        }
    }
    let snap = u32::try_from(RECV_SNAP).expect("snap length fits in 32 bits");
    let v6_start = HEADER + v4_len(v4.len());
    let mut p = vec![
        insn(LD_B_ABS, 0, 0, 0),
        insn(AND_K, 0, 0, 0xf0),
        insn(JEQ_K, short(2, HEADER), 0, 0x40),
        // Not IPv4: to the IPv6 half, which checks for 6 itself.
        insn(JA, 0, 0, (v6_start - HEADER) as u32),
    ];
    debug_assert_eq!(p.len(), HEADER);
    v4_half(&mut p, min_port, &v4, snap);
    debug_assert_eq!(p.len(), v6_start);
    v6_half(&mut p, min_port, &v6, snap);
    debug_assert_eq!(p.len(), program_len(v4.len(), v6.len()));
    debug_assert!(p.len() <= BPF_MAXINSNS);
    p
}

/// Appends the IPv4 half: ICMP, TCP and UDP to our ports, then the watched
/// sources.
fn v4_half(p: &mut Vec<Insn>, min_port: u16, watched: &[Ipv4Addr], snap: u32) {
    // 0 ld proto, 1 jeq icmp, 2 jeq tcp, 3 jeq udp, 4 ldx hlen, 5 ld dport
    // (the same offset in TCP and UDP), 6 jge min, 7 ret accept, 8 ld src,
    // then the address chunks (or `ret 0` for none).
    let base = p.len();
    let accept = base + 7;
    let src = base + 8;
    p.extend([
        insn(LD_B_ABS, 0, 0, 9),
        insn(JEQ_K, short(base + 1, accept), 0, 1),
        insn(JEQ_K, short(base + 2, base + 4), 0, 6),
        insn(JEQ_K, 0, short(base + 3, src), 17),
        insn(LDX_B_MSH, 0, 0, 0),
        insn(LD_H_IND, 0, 0, 2),
        insn(
            JGE_K,
            short(base + 6, accept),
            short(base + 6, src),
            u32::from(min_port),
        ),
        insn(RET_K, 0, 0, snap),
        insn(LD_W_ABS, 0, 0, 12),
    ]);
    debug_assert_eq!(p.len() - base, PROLOGUE);
    let chunks = watched.chunks(CHUNK);
    let last = chunks.len().saturating_sub(1);
    for (c, chunk) in chunks.enumerate() {
        let start = p.len();
        // The chunk's accept follows its comparisons and one `ja` / `ret 0`.
        let accept = start + chunk.len() + 1;
        for (i, a) in chunk.iter().enumerate() {
            p.push(insn(JEQ_K, short(start + i, accept), 0, u32::from(*a)));
        }
        if c == last {
            p.push(insn(RET_K, 0, 0, 0));
        } else {
            // Over the accept, to the next chunk's first comparison.
            p.push(insn(JA, 0, 0, 1));
        }
        p.push(insn(RET_K, 0, 0, snap));
    }
    if watched.is_empty() {
        p.push(insn(RET_K, 0, 0, 0));
    }
    debug_assert_eq!(p.len() - base, v4_len(watched.len()));
}

/// Appends the IPv6 half (A holds the version nibble): ICMPv6, TCP and UDP
/// to our ports, then the watched sources, four 32-bit words each (bytes 8–23).
fn v6_half(p: &mut Vec<Insn>, min_port: u16, watched: &[Ipv6Addr], snap: u32) {
    // 0 jeq 6, 1 ret 0, 2 ld next header, 3 jeq icmpv6, 4 jeq tcp, 5 jeq udp,
    // 6 ld dport (40 + 2, the same in TCP and UDP), 7 jge min, 8 ret accept,
    // then the address chunks.
    let base = p.len();
    let accept = base + 8;
    let src = base + 9;
    p.extend([
        insn(JEQ_K, 1, 0, 0x60),
        insn(RET_K, 0, 0, 0),
        insn(LD_B_ABS, 0, 0, 6),
        insn(JEQ_K, short(base + 3, accept), 0, 58),
        insn(JEQ_K, short(base + 4, base + 6), 0, 6),
        insn(JEQ_K, 0, short(base + 5, src), 17),
        insn(LD_H_ABS, 0, 0, 42),
        insn(
            JGE_K,
            short(base + 7, accept),
            short(base + 7, src),
            u32::from(min_port),
        ),
        insn(RET_K, 0, 0, snap),
    ]);
    debug_assert_eq!(p.len() - base, PROLOGUE6);
    if !watched.is_empty() {
        // The source address, word by word (bytes 8–23), into M[0..4].
        for w in 0..4u32 {
            p.push(insn(LD_W_ABS, 0, 0, 8 + 4 * w));
            p.push(insn(ST, 0, 0, w));
        }
    }
    let chunks = watched.chunks(CHUNK6);
    let last = chunks.len().saturating_sub(1);
    for (c, chunk) in chunks.enumerate() {
        let start = p.len();
        // After the comparisons: the terminator (`ja` / `ret 0`), then the accept.
        let end = start + 8 * chunk.len();
        let accept = end + 1;
        for (i, a) in chunk.iter().enumerate() {
            let at = start + 8 * i;
            // A mismatch goes on to the next address (or the terminator).
            // The last word first: it tells addresses in one prefix apart, so
            // most mismatches end at the first comparison.
            let next = at + 8;
            let octets = a.octets();
            for (step, w) in [3usize, 2, 1, 0].into_iter().enumerate() {
                let word = u32::from_be_bytes(
                    octets[4 * w..4 * w + 4]
                        .try_into()
                        .expect("four bytes of sixteen"),
                );
                let ld = at + 2 * step;
                let cmp = ld + 1;
                p.push(insn(LD_MEM, 0, 0, w as u32));
                let jt = if step == 3 { short(cmp, accept) } else { 0 };
                p.push(insn(JEQ_K, jt, short(cmp, next), word));
            }
        }
        if c == last {
            p.push(insn(RET_K, 0, 0, 0));
        } else {
            p.push(insn(JA, 0, 0, 1));
        }
        p.push(insn(RET_K, 0, 0, snap));
    }
    if watched.is_empty() {
        p.push(insn(RET_K, 0, 0, 0));
    }
    debug_assert_eq!(p.len() - base, v6_len(watched.len()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use harbormaster_wire::{EchoTemplate, SynTemplate, UdpTemplate};

    /// Runs the subset of classic BPF that `program` uses.
    fn run(p: &[Insn], pkt: &[u8]) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        // Scratch memory; `None` until stored, as the kernel's checker demands.
        let mut mem: [Option<u32>; 16] = [None; 16];
        let byte = |i: usize| pkt.get(i).copied();
        loop {
            let i = *p.get(pc).expect("the program ran past its end");
            pc += 1;
            match i.code {
                LD_B_ABS => match byte(i.k as usize) {
                    Some(b) => a = u32::from(b),
                    None => return 0,
                },
                LD_H_ABS => {
                    let k = i.k as usize;
                    match pkt.get(k..k + 2) {
                        Some(h) => a = u32::from(u16::from_be_bytes(h.try_into().unwrap())),
                        None => return 0,
                    }
                }
                LD_W_ABS => {
                    let k = i.k as usize;
                    match pkt.get(k..k + 4) {
                        Some(w) => a = u32::from_be_bytes(w.try_into().unwrap()),
                        None => return 0,
                    }
                }
                LDX_B_MSH => match byte(i.k as usize) {
                    Some(b) => x = 4 * u32::from(b & 0x0f),
                    None => return 0,
                },
                LD_H_IND => {
                    let k = (x + i.k) as usize;
                    match pkt.get(k..k + 2) {
                        Some(h) => a = u32::from(u16::from_be_bytes(h.try_into().unwrap())),
                        None => return 0,
                    }
                }
                AND_K => a &= i.k,
                ST => mem[i.k as usize] = Some(a),
                LD_MEM => a = mem[i.k as usize].expect("scratch memory read before it was stored"),
                JA => pc += i.k as usize,
                JEQ_K => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
                JGE_K => pc += usize::from(if a >= i.k { i.jt } else { i.jf }),
                RET_K => return i.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    /// What the kernel's checker (`bpf_check_classic`) demands: a length within
    /// limits, every jump landing inside the program, a `ret` at the end.
    fn verify(p: &[Insn]) {
        assert!(
            !p.is_empty() && p.len() <= BPF_MAXINSNS,
            "{} insns",
            p.len()
        );
        for (at, i) in p.iter().enumerate() {
            let targets: Vec<usize> = match i.code {
                JA => vec![at + 1 + i.k as usize],
                JEQ_K | JGE_K => vec![at + 1 + usize::from(i.jt), at + 1 + usize::from(i.jf)],
                _ => vec![],
            };
            for t in targets {
                assert!(t < p.len(), "jump at {at} to {t} leaves the program");
            }
        }
        assert_eq!(p.last().unwrap().code, RET_K);
    }

    fn packet(proto: u8, src: [u8; 4], dport: u16) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 40, 0, 0, 0, 0, 64, proto, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&[198, 18, 0, 1]);
        p.extend_from_slice(&[0, 80]);
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&[0; 16]);
        p
    }

    fn v4(watched: &[Ipv4Addr]) -> Vec<IpAddr> {
        watched.iter().copied().map(IpAddr::V4).collect()
    }

    /// Our IPv6 address in the fixtures (the test hosts' scanner).
    const US6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x198, 0x18, 0, 0, 0, 0, 1);

    /// Which IPv6 packet to build with the wire crate's builders.
    #[derive(Clone, Copy, Debug)]
    enum Kind6 {
        /// A TCP segment to destination port `dport` (a SYN from `src`: the
        /// filter reads only the header fields a SYN-ACK or RST has too).
        Tcp(u16),
        /// An ICMPv6 echo request (next header 58, like every ICMPv6 error).
        Icmp,
        /// A UDP datagram to `dport`.
        Udp(u16),
    }

    /// An IPv6 packet from `src` to us, as the packet socket hands it over.
    fn packet6(kind: Kind6, src: Ipv6Addr) -> Vec<u8> {
        let (s, d) = (IpAddr::V6(src), IpAddr::V6(US6));
        let mut buf = vec![0u8; 128];
        let n = match kind {
            Kind6::Tcp(dport) => SynTemplate::new(s, d, 64, 1024)
                .unwrap()
                .write(&mut buf, 80, dport, 7)
                .unwrap(),
            Kind6::Icmp => EchoTemplate::new(s, d, 64)
                .unwrap()
                .write(&mut buf, 1, 1)
                .unwrap(),
            Kind6::Udp(dport) => UdpTemplate::new(s, d, 64)
                .unwrap()
                .write(&mut buf, 53, dport, b"x")
                .unwrap(),
        };
        buf.truncate(n);
        buf
    }

    #[test]
    fn passes_only_our_traffic() {
        let watched = [Ipv4Addr::new(198, 18, 0, 7), Ipv4Addr::new(198, 18, 0, 9)];
        let p = program(61440, &v4(&watched));
        let snap = RECV_SNAP as u32;
        let other = [198, 18, 0, 2];
        assert_eq!(run(&p, &packet(6, other, 61440)), snap, "reply to our port");
        assert_eq!(run(&p, &packet(6, other, 65535)), snap);
        assert_eq!(run(&p, &packet(6, other, 22)), 0, "unrelated TCP");
        assert_eq!(run(&p, &packet(1, other, 0)), snap, "ICMP");
        assert_eq!(run(&p, &packet(17, other, 53)), 0, "unrelated UDP");
        assert_eq!(
            run(&p, &packet(17, other, 61441)),
            snap,
            "UDP reply to our port"
        );
        assert_eq!(
            run(&p, &packet(17, other, 61441)),
            snap,
            "UDP reply to our port"
        );
        assert_eq!(
            run(&p, &packet(17, [198, 18, 0, 9], 137)),
            snap,
            "watched UDP"
        );
        assert_eq!(
            run(&p, &packet(6, [198, 18, 0, 7], 113)),
            snap,
            "watched TCP"
        );
        assert_eq!(run(&p, &packet(6, [198, 18, 0, 8], 113)), 0);
        assert_eq!(run(&p, &[0x45, 0, 0]), 0, "truncated");
    }

    #[test]
    fn without_watched_addresses() {
        let p = program(61440, &[]);
        assert_eq!(run(&p, &packet(17, [1, 2, 3, 4], 9)), 0);
        assert_eq!(run(&p, &packet(6, [1, 2, 3, 4], 61500)), RECV_SNAP as u32);
        let target = Ipv6Addr::new(0xfd00, 0x198, 0x18, 0, 0, 0, 0, 2);
        assert_eq!(
            run(&p, &packet6(Kind6::Tcp(61500), target)),
            RECV_SNAP as u32
        );
        assert_eq!(run(&p, &packet6(Kind6::Icmp, target)), RECV_SNAP as u32);
        assert_eq!(run(&p, &packet6(Kind6::Tcp(22), target)), 0);
        assert_eq!(
            run(&p, &packet6(Kind6::Udp(61500), target)),
            RECV_SNAP as u32
        );
        assert_eq!(run(&p, &packet6(Kind6::Udp(61439), target)), 0);
    }

    /// Neither IPv4 nor IPv6 (an ARP frame on an ETH_P_ALL socket starts with
    /// hardware type 0x0001), or nothing at all: dropped.
    #[test]
    fn other_versions_are_dropped() {
        let p = program(61440, &v4(&[Ipv4Addr::new(0, 1, 8, 0)]));
        let arp = [0, 1, 8, 0, 6, 4, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(run(&p, &arp), 0);
        assert_eq!(run(&p, &[]), 0);
        let mut v5 = packet(1, [198, 18, 0, 2], 0);
        v5[0] = 0x55;
        assert_eq!(run(&p, &v5), 0);
    }

    /// `n` distinct addresses in 198.18.0.0/15.
    fn addresses(n: usize) -> Vec<Ipv4Addr> {
        (0..n)
            .map(|i| Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 10)) + i as u32))
            .collect()
    }

    /// `n` distinct addresses in fd00:198:18::/64 whose words differ in turn:
    /// the i-th differs from its neighbours in the last word, and every 7th
    /// also in the first three, so each comparison step gets exercised.
    fn addresses6(n: usize) -> Vec<Ipv6Addr> {
        (0..n).map(|i| addr6(i as u32)).collect()
    }

    fn addr6(i: u32) -> Ipv6Addr {
        let hi = i / 7;
        Ipv6Addr::new(
            0xfd00,
            0x198,
            0x18,
            hi as u16,
            (hi >> 3) as u16,
            0x10,
            (i >> 16) as u16,
            0x100 + i as u16,
        )
    }

    /// Every watched address passes for TCP and UDP, an unwatched one does not,
    /// ICMP from anyone and TCP to our ports always pass, truncated packets never.
    fn check_with(n: usize) {
        let watched = addresses(n);
        let p = program(61440, &v4(&watched));
        verify(&p);
        let snap = RECV_SNAP as u32;
        for a in &watched {
            let src = a.octets();
            assert_eq!(run(&p, &packet(6, src, 113)), snap, "{n}: TCP from {a}");
            assert_eq!(run(&p, &packet(17, src, 137)), snap, "{n}: UDP from {a}");
        }
        // Just outside the watched run, on both sides, and a router elsewhere.
        let below = [198, 18, 0, 9];
        let above = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 10)) + n as u32).octets();
        let router = [198, 19, 255, 254];
        for src in [below, above, router] {
            assert_eq!(
                run(&p, &packet(6, src, 113)),
                0,
                "{n}: unwatched TCP {src:?}"
            );
            assert_eq!(
                run(&p, &packet(17, src, 53)),
                0,
                "{n}: unwatched UDP {src:?}"
            );
            assert_eq!(run(&p, &packet(1, src, 0)), snap, "{n}: ICMP from {src:?}");
            assert_eq!(
                run(&p, &packet(6, src, 61440)),
                snap,
                "{n}: our lowest port"
            );
            assert_eq!(
                run(&p, &packet(6, src, 65535)),
                snap,
                "{n}: our highest port"
            );
            assert_eq!(
                run(&p, &packet(6, src, 61439)),
                0,
                "{n}: just below our ports"
            );
            assert_eq!(run(&p, &packet(17, src, 61440)), snap, "{n}: UDP to us");
            assert_eq!(run(&p, &packet(17, src, 61439)), 0, "{n}: UDP below");
        }
        let full = packet(6, below, 61440);
        for len in [0, 3, 9, 20, 21] {
            assert_eq!(run(&p, &full[..len]), 0, "{n}: TCP truncated to {len}");
        }
        let udp = packet(17, watched.first().map_or(below, |a| a.octets()), 53);
        for len in [9, 12, 15] {
            assert_eq!(run(&p, &udp[..len]), 0, "{n}: UDP truncated to {len}");
        }
    }

    /// The IPv6 half with `n6` watched IPv6 addresses, behind `n4` IPv4 ones:
    /// the same promises as [`check_with`], for packets built by the wire crate.
    fn check_with_v6(n4: usize, n6: usize) {
        let watched6 = addresses6(n6);
        let mut all = v4(&addresses(n4));
        all.extend(watched6.iter().copied().map(IpAddr::V6));
        let p = program(61440, &all);
        verify(&p);
        assert_eq!(p.len(), program_len(n4, n6));
        let snap = RECV_SNAP as u32;
        for a in &watched6 {
            let tcp = packet6(Kind6::Tcp(113), *a);
            assert_eq!(run(&p, &tcp), snap, "{n4}/{n6}: TCP from {a}");
            let udp = packet6(Kind6::Udp(137), *a);
            assert_eq!(run(&p, &udp), snap, "{n4}/{n6}: UDP from {a}");
        }
        // Unwatched: one past the run, and addresses equal to a watched one in
        // all but one word, for each word.
        let mut unwatched = vec![
            addr6(n6 as u32),
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
        ];
        if let Some(first) = watched6.first() {
            for w in 0..8 {
                let mut seg = first.segments();
                seg[w] ^= 0x8000;
                unwatched.push(Ipv6Addr::from(seg));
            }
        }
        for src in unwatched {
            if watched6.contains(&src) {
                continue;
            }
            assert_eq!(
                run(&p, &packet6(Kind6::Tcp(113), src)),
                0,
                "{n6}: TCP {src}"
            );
            assert_eq!(run(&p, &packet6(Kind6::Udp(53), src)), 0, "{n6}: UDP {src}");
            assert_eq!(
                run(&p, &packet6(Kind6::Icmp, src)),
                snap,
                "{n6}: ICMPv6 {src}"
            );
            for (port, pass) in [(61440, snap), (65535, snap), (61439, 0)] {
                assert_eq!(
                    run(&p, &packet6(Kind6::Tcp(port), src)),
                    pass,
                    "{n6}: TCP to {port} from {src}"
                );
                assert_eq!(
                    run(&p, &packet6(Kind6::Udp(port), src)),
                    pass,
                    "{n6}: UDP to {port} from {src}"
                );
            }
        }
        // Truncated: inside the fixed header, inside the source address, just
        // short of the TCP destination port.
        let tcp = packet6(Kind6::Tcp(61440), addr6(n6 as u32));
        for len in [0, 1, 6, 7, 12, 23, 40, 43] {
            assert_eq!(run(&p, &tcp[..len]), 0, "{n6}: TCP truncated to {len}");
        }
        assert_eq!(
            run(&p, &tcp[..44]),
            snap,
            "the port is all the filter reads"
        );
        if let Some(a) = watched6.last() {
            // The port check reads bytes 42–43 before the source check, so a
            // watched datagram needs them too.
            let udp = packet6(Kind6::Udp(53), *a);
            for len in [7, 8, 11, 12, 20, 23, 24, 43] {
                assert_eq!(run(&p, &udp[..len]), 0, "{n6}: UDP truncated to {len}");
            }
            assert_eq!(run(&p, &udp[..44]), snap);
        }
        // IPv4 watched sources are not IPv6 ones, and the other way round.
        if n4 > 0 {
            let a = addresses(n4)[n4 - 1].octets();
            assert_eq!(
                run(&p, &packet(17, a, 53)),
                snap,
                "{n4}: IPv4 still watched"
            );
        }
    }

    #[test]
    fn every_size_up_to_the_limit_is_correct() {
        for n in [0, 1, 2, 250, 254, 255, 256, 257, 300, 510, 511, MAX_WATCHED] {
            check_with(n);
        }
    }

    #[test]
    fn every_ipv6_size_up_to_the_limit_is_correct() {
        for n6 in [0, 1, 2, 31, 32, 33, 63, 64, 65, 200, MAX_WATCHED_V6] {
            check_with_v6(0, n6);
        }
        // The largest program: both halves full.
        check_with_v6(MAX_WATCHED, MAX_WATCHED_V6);
        check_with_v6(300, 33);
    }

    #[test]
    fn every_size_builds_a_valid_program() {
        for n in 0..=MAX_WATCHED {
            let p = program(61440, &v4(&addresses(n)));
            verify(&p);
            assert_eq!(p.len(), program_len(n, 0));
        }
        for n6 in 0..=MAX_WATCHED_V6 {
            for n4 in [0, 1, 255, 256, MAX_WATCHED] {
                let mut all = v4(&addresses(n4));
                all.extend(addresses6(n6).into_iter().map(IpAddr::V6));
                let p = program(61440, &all);
                verify(&p);
                assert_eq!(p.len(), program_len(n4, n6));
            }
        }
        let full = program_len(MAX_WATCHED, MAX_WATCHED_V6);
        assert!(full <= BPF_MAXINSNS, "{full}");
    }

    #[test]
    fn addresses_beyond_the_limit_are_ignored() {
        let watched = addresses(MAX_WATCHED + 5);
        let p = program(61440, &v4(&watched));
        verify(&p);
        let last = watched[MAX_WATCHED - 1].octets();
        let over = watched[MAX_WATCHED].octets();
        assert_eq!(run(&p, &packet(17, last, 53)), RECV_SNAP as u32);
        assert_eq!(run(&p, &packet(17, over, 53)), 0);

        let watched6 = addresses6(MAX_WATCHED_V6 + 3);
        let all: Vec<IpAddr> = watched6.iter().copied().map(IpAddr::V6).collect();
        let p = program(61440, &all);
        verify(&p);
        let last = watched6[MAX_WATCHED_V6 - 1];
        let over = watched6[MAX_WATCHED_V6];
        assert_eq!(run(&p, &packet6(Kind6::Udp(53), last)), RECV_SNAP as u32);
        assert_eq!(run(&p, &packet6(Kind6::Udp(53), over)), 0);
    }
}
