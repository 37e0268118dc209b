//! The UDP probe module on real packets: UDP responders and nftables rules in
//! a target namespace; every state a UDP port can be in. Needs root; without
//! it each test prints why it was skipped.

use std::net::{IpAddr, SocketAddr};

use harbormaster_probe::{PortList, PortState, Reason, ScanRequest};
use harbormaster_testnet::{TARGET_IP, TargetSpec, testnet_or_skip};

mod common;
use common::engine;

#[test]
fn udp_states_are_told_apart() {
    let net = testnet_or_skip!(&TargetSpec::default());
    let at = |port| SocketAddr::new(IpAddr::V4(TARGET_IP), port);
    net.udp_responder(at(7), None);
    net.udp_responder(at(9999), Some(b"pong from the test responder"));
    net.add_target_rule("udp dport 6000 drop");
    net.add_target_rule("udp dport 6001 reject with icmp type admin-prohibited");
    let engine = engine(&net);
    let request = ScanRequest::udp(
        IpAddr::V4(TARGET_IP),
        PortList::parse("7,6000,6001,9999,40000-40010").unwrap(),
    );
    let (results, summary) = engine.scan(request).unwrap();
    eprintln!("UDP scan: {summary:?}");
    assert_eq!(results.len(), 15);
    for r in &results {
        assert_eq!(r.proto, harbormaster_probe::Protocol::Udp, "{r:?}");
        let (state, reason) = match r.port {
            7 | 9999 => (PortState::Open, Reason::UdpReply),
            6000 => (PortState::Stealth, Reason::NoResponse),
            6001 => (
                PortState::Filtered,
                Reason::Icmp {
                    v6: false,
                    icmp_type: 3,
                    code: 13,
                },
            ),
            _ => (PortState::Closed, Reason::PortUnreach),
        };
        assert_eq!(
            (r.state, r.reason),
            (state, reason),
            "port {}: {r:?}",
            r.port
        );
    }
    let pong = results.iter().find(|r| r.port == 9999).unwrap();
    let evidence = pong.evidence.expect("a reply keeps its evidence");
    assert_eq!(evidence.head(), b"pong from the test responder");
    assert_eq!(evidence.len(), 28);
    // The echo service returned our echo request (the payload table's, with
    // the cookie in it, which is how the reply was accepted).
    let echo = results.iter().find(|r| r.port == 7).unwrap();
    let request = harbormaster_wire::payload::payload_for(7)
        .unwrap()
        .request(0);
    assert_eq!(echo.evidence.map(|e| e.len()), Some(request.len()));
    assert_eq!(summary.rejected, 0);
}

/// A Linux host with its default ICMP limits (about 1 error per second after
/// a burst of 6) answers only a few closed UDP ports at full speed: the limit
/// is found and the silent ports are re-probed at its pace, so every closed
/// port is reported closed, not "no reply".
#[test]
fn closed_ports_behind_the_kernel_icmp_limit_are_resolved() {
    let spec = TargetSpec {
        kernel_icmp_limits: true,
        ..TargetSpec::default()
    };
    let net = testnet_or_skip!(&spec);
    let engine = engine(&net);
    let started = std::time::Instant::now();
    let request = ScanRequest::udp(
        IpAddr::V4(TARGET_IP),
        PortList::parse("40000-40015").unwrap(),
    );
    let (results, summary) = engine.scan(request).unwrap();
    eprintln!(
        "UDP scan behind the ICMP limit in {:?}: {summary:?}",
        started.elapsed()
    );
    let limit = summary.rate_limit.as_ref().expect("the limit is reported");
    assert!(limit.unresolved == 0, "{limit:?}");
    let wrong: Vec<_> = results
        .iter()
        .filter(|r| r.state != PortState::Closed)
        .map(|r| (r.port, r.reason))
        .collect();
    assert!(wrong.is_empty(), "not closed: {wrong:?}");
}
