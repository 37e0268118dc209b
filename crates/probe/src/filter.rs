//! The kernel packet filter (classic BPF) for the receive socket.
//!
//! It passes ICMP, TCP segments to our source-port range, and — for scans that
//! watch for unsolicited traffic — every IPv4 packet from a watched address.
//! Everything else never leaves the kernel, and what passes is truncated to
//! [`RECV_SNAP`] bytes. Building the program is pure code, tested here with a
//! small interpreter; installing it is in `sys`.

use std::net::Ipv4Addr;

use crate::transport::RECV_SNAP;

/// One classic BPF instruction (the `struct sock_filter` layout).
pub type Insn = libc::sock_filter;

const LD_W_ABS: u16 = 0x20;
const LD_B_ABS: u16 = 0x30;
const LDX_B_MSH: u16 = 0xb1;
const LD_H_IND: u16 = 0x48;
const JEQ_K: u16 = 0x15;
const JGE_K: u16 = 0x35;
const RET_K: u16 = 0x06;

const fn insn(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
    Insn { code, jt, jf, k }
}

/// Most watched addresses one program holds (each costs one instruction; the
/// kernel allows 4096).
pub const MAX_WATCHED: usize = 1024;

/// The program for packets that start at the IPv4 header.
pub fn program(min_port: u16, watched: &[Ipv4Addr]) -> Vec<Insn> {
    let watched = &watched[..watched.len().min(MAX_WATCHED)];
    let n = watched.len();
    // Layout: 0 ld proto, 1 jeq icmp, 2 jeq tcp, 3 ldx hlen, 4 ld dport, 5 jge min,
    // 6 ld src, 7..7+n jeq addr, 7+n ret drop, 8+n ret accept.
    let accept = 8 + n;
    let src = 6;
    let jump = |from: usize, to: usize| (to - from - 1) as u8;
    let mut p = vec![
        insn(LD_B_ABS, 0, 0, 9),
        insn(JEQ_K, jump(1, accept), 0, 1),
        insn(JEQ_K, 0, jump(2, src), 6),
        insn(LDX_B_MSH, 0, 0, 0),
        insn(LD_H_IND, 0, 0, 2),
        insn(JGE_K, jump(5, accept), 0, u32::from(min_port)),
        insn(LD_W_ABS, 0, 0, 12),
    ];
    for (i, a) in watched.iter().enumerate() {
        let at = 7 + i;
        p.push(insn(JEQ_K, jump(at, accept), 0, u32::from(*a)));
    }
    p.push(insn(RET_K, 0, 0, 0));
    p.push(insn(RET_K, 0, 0, RECV_SNAP as u32));
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
            let i = p[pc];
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
                JEQ_K => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
                JGE_K => pc += usize::from(if a >= i.k { i.jt } else { i.jf }),
                RET_K => return i.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
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
}
