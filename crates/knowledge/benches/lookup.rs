//! Lookup and search speed. Run: `cargo bench -p harbormaster-knowledge`.
//! Figures are recorded in BENCHMARKS.md.

// criterion_group! generates undocumented items.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use harbormaster_knowledge::{Proto, lookup, search};

fn bench(c: &mut Criterion) {
    c.bench_function("lookup 3389/tcp (curated)", |b| {
        b.iter(|| lookup(black_box(3389), black_box(Proto::Tcp)))
    });
    c.bench_function("lookup 65000/udp (unassigned)", |b| {
        b.iter(|| lookup(black_box(65000), black_box(Proto::Udp)))
    });
    let mut port = 0u16;
    c.bench_function("lookup sweeping all ports", |b| {
        b.iter(|| {
            port = port.wrapping_add(7919);
            lookup(black_box(port), Proto::Tcp)
        })
    });
    for query in ["netbus", "remote desktop", "sql"] {
        c.bench_function(&format!("search {query:?}"), |b| {
            b.iter(|| search(black_box(query)).unwrap())
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
