//! The UDP probe module on real packets: UDP responders and nftables rules in
//! a target namespace; every state a UDP port can be in. Needs root; without
//! it each test prints why it was skipped.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use harbormaster_probe::{
    Engine, EngineConfig, PortList, PortState, RawTransport, Reason, ScanRequest, source_address,
};
use harbormaster_testnet::{TARGET_IP, TargetSpec, TestNet, testnet_or_skip};

/// Answers every datagram on `port` with `reply` (or echoes it when `None`),
/// until `stop` is set.
fn responder(net: &TestNet, port: u16, reply: Option<&'static [u8]>, stop: Arc<AtomicBool>) {
    let (ready_tx, ready) = std::sync::mpsc::channel();
    TestNet::spawn_in(&net.target_ns, move || {
        let sock = UdpSocket::bind(SocketAddr::new(IpAddr::V4(TARGET_IP), port)).expect("bind");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(reply.unwrap_or(&buf[..n]), from);
            }
        }
    });
    ready.recv().expect("responder started");
}

fn nft(net: &TestNet, rule: &str) {
    let args = [
        "netns",
        "exec",
        &net.target_ns,
        "nft",
        "add",
        "rule",
        "inet",
        "hm",
        "input",
    ];
    let status = Command::new("ip")
        .args(args)
        .args(rule.split(' '))
        .status()
        .unwrap();
    assert!(status.success(), "nft add rule {rule}");
}

#[test]
fn udp_states_are_told_apart() {
    let net = testnet_or_skip!(&TargetSpec::default());
    let stop = Arc::new(AtomicBool::new(false));
    responder(&net, 7, None, stop.clone());
    responder(
        &net,
        9999,
        Some(b"pong from the test responder"),
        stop.clone(),
    );
    nft(&net, "udp dport 6000 drop");
    nft(
        &net,
        "udp dport 6001 reject with icmp type admin-prohibited",
    );

    let transport = net.in_scanner(|| RawTransport::open().expect("raw sockets"));
    let scanner_ns = net.scanner_ns.clone();
    let engine = Engine::start(transport, EngineConfig::default(), move |dst| {
        harbormaster_testnet::in_namespace(&scanner_ns, || source_address(dst))
    });
    let request = ScanRequest::udp(
        IpAddr::V4(TARGET_IP),
        PortList::parse("7,6000,6001,9999,40000-40010").unwrap(),
    );
    let (results, summary) = engine.scan(request).unwrap();
    stop.store(true, Ordering::Relaxed);
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
    let transport = net.in_scanner(|| RawTransport::open().expect("raw sockets"));
    let scanner_ns = net.scanner_ns.clone();
    let engine = Engine::start(transport, EngineConfig::default(), move |dst| {
        harbormaster_testnet::in_namespace(&scanner_ns, || source_address(dst))
    });
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
