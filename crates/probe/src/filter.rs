//! The kernel packet filter (classic BPF) for the receive socket.
//!
//! It passes ICMP, TCP segments and UDP datagrams to our source-port range, and — for scans that
//! watch for unsolicited traffic — every IPv4 packet from a watched address.
//! Everything else never leaves the kernel, and what passes is truncated to
//! [`RECV_SNAP`] bytes. Building the program is pure code, tested here with a
//! small interpreter; installing it is in `sys`.
//!
//! Classic BPF conditional jumps reach at most 255 instructions ahead (`jt`
//! and `jf` are bytes), so the program never jumps far conditionally: the
//! ICMP and our-port checks jump to an accept placed right after them, and the
//! watched addresses are compared in chunks of at most [`CHUNK`], each
//! followed by its own accept; an unconditional `ja` (32-bit offset) skips
//! from one chunk to the next.

use std::net::Ipv4Addr;

use crate::transport::RECV_SNAP;

/// One classic BPF instruction (the `struct sock_filter` layout).
pub type Insn = libc::sock_filter;

const LD_W_ABS: u16 = 0x20;
const LD_B_ABS: u16 = 0x30;
const LDX_B_MSH: u16 = 0xb1;
const LD_H_IND: u16 = 0x48;
const JA: u16 = 0x05;
const JEQ_K: u16 = 0x15;
const JGE_K: u16 = 0x35;
const RET_K: u16 = 0x06;

/// The kernel's limit on a classic BPF program's length (`BPF_MAXINSNS`).
pub const BPF_MAXINSNS: usize = 4096;

/// Watched addresses compared before the next accept: the farthest conditional
/// jump (from a chunk's first comparison to its accept) is `CHUNK` instructions.
const CHUNK: usize = 255;

/// Instructions before the first address comparison (see [`program`]).
const PROLOGUE: usize = 9;

const fn insn(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
    Insn { code, jt, jf, k }
}

/// Most watched addresses one program holds. The engine runs at most 256
/// scans, so this is never reached in practice; it keeps the program (about
/// 8 KB) well inside both `BPF_MAXINSNS` and the kernel's default socket
/// option memory limit (`optmem_max`, 20 KB on older kernels).
pub const MAX_WATCHED: usize = 1024;

/// Length of the program for `n` watched addresses.
const fn program_len(n: usize) -> usize {
    // Each chunk: its comparisons, then `ja` (or the final `ret 0`), then its accept.
    PROLOGUE + n + 2 * n.div_ceil(CHUNK) + if n == 0 { 1 } else { 0 }
}

const _: () = assert!(program_len(MAX_WATCHED) <= BPF_MAXINSNS);

/// The offset of a conditional jump from the instruction at `from` to `to`.
///
/// The layout keeps every target within reach; a failure here is a bug in
/// [`program`], caught by the tests for every size up to [`MAX_WATCHED`].
fn short(from: usize, to: usize) -> u8 {
    let off = to.checked_sub(from + 1).expect("BPF jumps go forward only");
    u8::try_from(off).expect("BPF conditional jump beyond 255 instructions")
}

/// The program for packets that start at the IPv4 header. At most
/// [`MAX_WATCHED`] addresses are watched; any beyond are ignored.
pub fn program(min_port: u16, watched: &[Ipv4Addr]) -> Vec<Insn> {
    let watched = &watched[..watched.len().min(MAX_WATCHED)];
    // 0 ld proto, 1 jeq icmp, 2 jeq tcp, 3 jeq udp, 4 ldx hlen, 5 ld dport
    // (the same offset in TCP and UDP), 6 jge min, 7 ret accept, 8 ld src,
    // then the address chunks (or `ret 0` for none).
    const ACCEPT: usize = 7;
    const SRC: usize = 8;
    let snap = u32::try_from(RECV_SNAP).expect("snap length fits in 32 bits");
    let mut p = vec![
        insn(LD_B_ABS, 0, 0, 9),
        insn(JEQ_K, short(1, ACCEPT), 0, 1),
        insn(JEQ_K, short(2, 4), 0, 6),
        insn(JEQ_K, 0, short(3, SRC), 17),
        insn(LDX_B_MSH, 0, 0, 0),
        insn(LD_H_IND, 0, 0, 2),
        insn(JGE_K, short(6, ACCEPT), short(6, SRC), u32::from(min_port)),
        insn(RET_K, 0, 0, snap),
        insn(LD_W_ABS, 0, 0, 12),
    ];
    debug_assert_eq!(p.len(), PROLOGUE);
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
    debug_assert_eq!(p.len(), program_len(watched.len()));
    debug_assert!(p.len() <= BPF_MAXINSNS);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the subset of classic BPF that `program` uses.
    fn run(p: &[Insn], pkt: &[u8]) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let byte = |i: usize| pkt.get(i).copied();
        loop {
            let i = *p.get(pc).expect("the program ran past its end");
            pc += 1;
            match i.code {
                LD_B_ABS => match byte(i.k as usize) {
                    Some(b) => a = u32::from(b),
                    None => return 0,
                },
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

    #[test]
    fn passes_only_our_traffic() {
        let watched = [Ipv4Addr::new(198, 18, 0, 7), Ipv4Addr::new(198, 18, 0, 9)];
        let p = program(61440, &watched);
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
    }

    /// `n` distinct addresses in 198.18.0.0/15.
    fn addresses(n: usize) -> Vec<Ipv4Addr> {
        (0..n)
            .map(|i| Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 10)) + i as u32))
            .collect()
    }

    /// Every watched address passes for TCP and UDP, an unwatched one does not,
    /// ICMP from anyone and TCP to our ports always pass, truncated packets never.
    fn check_with(n: usize) {
        let watched = addresses(n);
        let p = program(61440, &watched);
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

    #[test]
    fn every_size_up_to_the_limit_is_correct() {
        for n in [0, 1, 2, 250, 254, 255, 256, 257, 300, 510, 511, MAX_WATCHED] {
            check_with(n);
        }
    }

    #[test]
    fn every_size_builds_a_valid_program() {
        for n in 0..=MAX_WATCHED {
            let p = program(61440, &addresses(n));
            verify(&p);
            assert_eq!(p.len(), program_len(n));
        }
    }

    #[test]
    fn addresses_beyond_the_limit_are_ignored() {
        let watched = addresses(MAX_WATCHED + 5);
        let p = program(61440, &watched);
        verify(&p);
        let last = watched[MAX_WATCHED - 1].octets();
        let over = watched[MAX_WATCHED].octets();
        assert_eq!(run(&p, &packet(17, last, 53)), RECV_SNAP as u32);
        assert_eq!(run(&p, &packet(17, over, 53)), 0);
    }
}
