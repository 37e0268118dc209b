//! Per-probe cost of the SYN builder (called ~130k times a second by the
//! engine) and of parsing a reply. Run: `cargo bench -p harbormaster-wire`.

// criterion_group! expands to an undocumented `pub fn`.
#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented pub fn"
)]

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{Criterion, criterion_group, criterion_main};
use harbormaster_wire::{SynTemplate, parse_reply};

fn syn_write(c: &mut Criterion) {
    for (name, src, dst) in [
        ("syn_write_v4", "192.0.2.10", "198.51.100.20"),
        ("syn_write_v6", "2001:db8::10", "2001:db8:1::20"),
    ] {
        let (src, dst): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
        let t = SynTemplate::new(src, dst, 64, 1024).unwrap();
        let mut buf = [0u8; 64];
        let mut seq = 0u32;
        c.bench_function(name, |b| {
            b.iter(|| {
                seq = seq.wrapping_add(0x9e37_79b9);
                t.write(black_box(&mut buf), black_box(40000), black_box(443), seq)
                    .unwrap()
            })
        });
    }
}

fn parse(c: &mut Criterion) {
    // A SYN-ACK as the engine receives it.
    let src: IpAddr = "198.51.100.20".parse().unwrap();
    let dst: IpAddr = "192.0.2.10".parse().unwrap();
    let mut pkt = [0u8; 64];
    let n = SynTemplate::new(src, dst, 52, 64240)
        .unwrap()
        .write(&mut pkt, 443, 40000, 1)
        .unwrap();
    pkt[33] = 0x12; // SYN|ACK
    c.bench_function("parse_reply_tcp_v4", |b| {
        b.iter(|| parse_reply(black_box(&pkt[..n])).unwrap())
    });
}

criterion_group!(benches, syn_write, parse);
criterion_main!(benches);
