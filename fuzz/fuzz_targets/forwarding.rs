//! The forwarding-header parser reads bytes a client controls (a proxy passes
//! the left part of the chain through untouched). Whatever they are it must
//! never panic, never name a trusted proxy (the peer itself included) as the
//! client, and never read anything but ASCII.
//!
//! The parser is included as a file (`#[path]`), not through the web crate:
//! it depends on `std` only, and building axum, SQLite and the rest with
//! sanitizers for this one target would cost minutes per build.
#![no_main]

#[path = "../../crates/web/src/forwarding.rs"]
#[allow(dead_code)]
mod forwarding;

use std::net::IpAddr;

use forwarding::{ChainError, ProxyHeader, client};
use libfuzzer_sys::fuzz_target;

/// Our proxies: 198.18.0.2 (the peer), 10.0.0.0/8 and fd00::/8.
fn trusted(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[0] == 10 || v4.octets() == [198, 18, 0, 2],
        IpAddr::V6(v6) => v6.octets()[0] == 0xfd,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let header = match selector % 3 {
        0 => ProxyHeader::XForwardedFor,
        1 => ProxyHeader::Forwarded,
        _ => ProxyHeader::XRealIp,
    };
    // Newlines separate header lines (a real value cannot hold one).
    let lines: Vec<&[u8]> = rest.split(|&b| b == b'\n').collect();
    let outcome = client(header, &lines, trusted);
    if let Ok(ip) = outcome {
        assert!(!trusted(ip), "{header:?} {lines:?} named the proxy {ip}");
        if let IpAddr::V6(v6) = ip {
            assert!(v6.to_ipv4_mapped().is_none(), "not canonical: {ip}");
        }
        assert!(
            rest.iter().all(|&b| b == b'\t' || b == b'\n' || (0x20..0x7f).contains(&b)),
            "accepted a non-ASCII value"
        );
    }
    // When every address is trusted, no input can yield one.
    assert!(client(header, &lines, |_| true).is_err());
    if rest.iter().any(|&b| b >= 0x80) {
        assert_eq!(outcome, Err(ChainError::NotAscii));
    }
});
