//! The SYN engine over IPv6 on real packets: test hosts with ULA addresses
//! (fd00:198:18::/64, see `TargetSpec::ipv6`) in network namespaces, raw
//! IPv6 SYNs and ICMPv6 echo requests out, replies through the packet socket's
//! IPv6 filter in. Needs root; without it each test prints why it was skipped.
//!
//! A raw IPv6 send socket that did not send our header as built (the kernel
//! adding a header of its own in front) would get no answer at all: every
//! SYN-ACK, RST and ICMPv6 error counted here proves the header arrived intact.

use std::net::IpAddr;
use std::sync::mpsc;
use std::time::Duration;

use harbormaster_probe::{
    Engine, EngineConfig, PortList, PortResult, PortState, RawTransport, Reason, ScanEvent,
    ScanRequest, ScanSummary, Transport, Watch, WatchTail, source_address,
};
use harbormaster_testnet::{
    PathSpec, SCANNER_IP6, TARGET_IP, TARGET_IP6, TargetSpec, TestNet, testnet_or_skip,
};

mod common;
use common::check;

fn engine(net: &TestNet) -> Engine {
    let transport = net.in_scanner(|| RawTransport::open().expect("raw sockets"));
    assert!(
        transport.supports_ipv6(),
        "the scanner namespace has IPv6: the IPv6 raw socket must open"
    );
    let scanner_ns = net.scanner_ns.clone();
    Engine::start(transport, EngineConfig::default(), move |dst| {
        harbormaster_testnet::in_namespace(&scanner_ns, || source_address(dst))
    })
}

fn request(target: IpAddr, ports: &str, watch: Option<Watch>) -> ScanRequest {
    ScanRequest {
        target,
        ports: PortList::parse(ports).unwrap(),
        tries: None,
        rate: None,
        watch,
        protocol: harbormaster_probe::Protocol::Tcp,
        budget: None,
        rtt_hint: None,
    }
}

/// The benchmark host, reachable over IPv6 too.
fn benchmark6() -> TargetSpec {
    TargetSpec {
        ipv6: true,
        ..TargetSpec::benchmark(0)
    }
}

#[test]
fn ipv6_syn_full_sweep_is_exact() {
    let spec = benchmark6();
    let net = testnet_or_skip!(&spec);
    let engine = engine(&net);
    assert!(engine.supports(IpAddr::V6(TARGET_IP6)));
    let started = std::time::Instant::now();
    let (results, summary) = engine
        .scan(request(IpAddr::V6(TARGET_IP6), "all", None))
        .unwrap();
    let took = started.elapsed();
    assert!(summary.error.is_none(), "{summary:?}");
    check(&spec, &results, 65536);
    // Each state has its IPv6 evidence: filtered ports from ICMPv6 1/1
    // (admin-prohibited, the nftables reject), never a guess.
    for r in &results {
        let expected = match r.state {
            PortState::Open => Reason::SynAck,
            PortState::Closed => Reason::Rst,
            PortState::Filtered => Reason::Icmp {
                v6: true,
                icmp_type: 1,
                code: 1,
            },
            PortState::Stealth => Reason::NoResponse,
        };
        assert_eq!(r.reason, expected, "port {}", r.port);
        assert_eq!(r.target, IpAddr::V6(TARGET_IP6));
    }
    assert_eq!(
        results
            .iter()
            .filter(|r| r.state == PortState::Filtered)
            .count(),
        spec.filtered.len()
    );
    eprintln!("IPv6 SYN 0-65535, no loss, {took:?}: {summary:?}");
}

#[test]
fn ipv6_syn_full_sweep_with_two_percent_loss_is_exact() {
    let spec = TargetSpec {
        ipv6: true,
        ..TargetSpec::benchmark(2)
    };
    let net = testnet_or_skip!(&spec);
    let engine = engine(&net);
    let (results, summary) = engine
        .scan(request(IpAddr::V6(TARGET_IP6), "all", None))
        .unwrap();
    check(&spec, &results, 65536);
    assert!(summary.lost_before > 0, "loss must be seen: {summary:?}");
}

/// IPv4 and IPv6 scans at once on one engine: their probes share send
/// batches, so each run of one family must reach its own raw socket.
#[test]
fn ipv4_and_ipv6_scans_share_one_engine() {
    let spec = benchmark6();
    let net = testnet_or_skip!(&spec);
    let engine = engine(&net);
    let (tx, rx) = mpsc::channel();
    for target in [IpAddr::V4(TARGET_IP), IpAddr::V6(TARGET_IP6)] {
        let tx = tx.clone();
        engine
            .submit(
                request(target, "0-8191", None),
                Box::new(move |e| {
                    let _ = tx.send(e);
                }),
            )
            .unwrap();
    }
    drop(tx);
    let mut by_target: std::collections::HashMap<IpAddr, Vec<PortResult>> = Default::default();
    let mut done = 0;
    for e in rx {
        match e {
            ScanEvent::Port(r) => by_target.entry(r.target).or_default().push(r),
            ScanEvent::Done(s) => {
                assert!(s.error.is_none(), "{s:?}");
                done += 1;
            }
        }
    }
    assert_eq!(done, 2);
    for target in [IpAddr::V4(TARGET_IP), IpAddr::V6(TARGET_IP6)] {
        let mut rs = by_target.remove(&target).unwrap_or_default();
        rs.sort_by_key(|r| r.port);
        check(&spec, &rs, 8192);
    }
}

/// The stealth-heavy home router over IPv6 behind an emulated internet path
/// (150 ms RTT, 2 % loss each way, 50 Mbit/s): the path forwards the ULA
/// frames (neighbours are static, so no neighbour discovery has to cross it),
/// and the service scan is exact despite the loss.
#[test]
fn ipv6_service_scan_of_a_stealth_router_behind_a_lossy_path_is_exact() {
    let spec = TargetSpec {
        ipv6: true,
        path: Some(PathSpec::home(75, 0, 2.0, 50.0, 50)),
        ..TargetSpec::home_router()
    };
    let net = testnet_or_skip!(&spec);
    let engine = engine(&net);
    let (results, summary) = engine
        .scan(request(IpAddr::V6(TARGET_IP6), "service", None))
        .unwrap();
    let (up, down) = net.path_stats().unwrap();
    eprintln!(
        "IPv6 service scan at 150 ms / 2 %: {summary:?}\nto target {up:?}\nto scanner {down:?}"
    );
    check(&spec, &results, 1056);
    assert!(up.lost > 0, "the path must have lost probes: {up:?}");
}

/// Runs a watched scan of the target's IPv6 address; `during` runs in the
/// target namespace while the scan watches.
fn watched_scan(
    net: &TestNet,
    ports: &str,
    during: impl FnOnce() + Send,
) -> (Vec<PortResult>, ScanSummary) {
    let engine = engine(net);
    let watch = Watch {
        pings: 3,
        expected_tcp_ports: Vec::new(),
        tail: WatchTail::Fixed(Duration::from_millis(1500)),
    };
    std::thread::scope(|s| {
        let scan = s.spawn(|| {
            engine
                .scan(request(IpAddr::V6(TARGET_IP6), ports, Some(watch)))
                .unwrap()
        });
        // The scan of a few ports is over in milliseconds; the watch's tail
        // keeps it open for 1.5 s after that.
        std::thread::sleep(Duration::from_millis(300));
        net.in_target(during);
        scan.join().unwrap()
    })
}

#[test]
fn ipv6_ping_is_answered_and_unsolicited_packets_are_counted() {
    let spec = TargetSpec {
        open: vec![22, 80],
        dropped: vec![23],
        filtered: vec![25],
        ipv6: true,
        ..TargetSpec::default()
    };
    let net = testnet_or_skip!(&spec);
    let (results, summary) = watched_scan(&net, "20-30,80", || {
        // Three datagrams the target sends on its own, to the scanner.
        let sock = std::net::UdpSocket::bind((TARGET_IP6, 0)).unwrap();
        for _ in 0..3 {
            sock.send_to(b"hello", (SCANNER_IP6, 9137)).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    check(&spec, &results, 12);
    let w = summary.watch.expect("a watched scan reports its watch");
    assert_eq!(w.pings_sent, 3);
    assert_eq!(w.ping_replies, 3, "ICMPv6 echo replies: {w:?}");
    assert_eq!(w.unsolicited, 3, "{w:?}");
    assert!(
        w.unsolicited_examples.iter().all(|e| e.starts_with("udp ")),
        "{w:?}"
    );
}

#[test]
fn ipv6_quiet_host_sends_nothing_unsolicited() {
    let spec = TargetSpec {
        open: vec![22],
        ipv6: true,
        ..TargetSpec::default()
    };
    let net = testnet_or_skip!(&spec);
    let (results, summary) = watched_scan(&net, "20-30", || {});
    check(&spec, &results, 11);
    let w = summary.watch.unwrap();
    assert_eq!(w.ping_replies, 3, "{w:?}");
    assert_eq!(w.unsolicited, 0, "{w:?}");
}

#[test]
fn ipv6_stealthed_host_answers_no_ping() {
    let spec = TargetSpec {
        drop_all: true,
        ipv6: true,
        ..TargetSpec::default()
    };
    let net = testnet_or_skip!(&spec);
    let (results, summary) = watched_scan(&net, "20-30", || {});
    check(&spec, &results, 11);
    assert!(results.iter().all(|r| r.tries >= 3));
    let w = summary.watch.unwrap();
    assert_eq!(w.pings_sent, 3);
    assert_eq!(w.ping_replies, 0, "{w:?}");
    assert_eq!(w.unsolicited, 0, "{w:?}");
}

/// An echo request the target sends on its own is unsolicited, like any
/// other packet of a protocol other than TCP or UDP; a neighbour
/// solicitation from the same address is the link working and is not.
#[test]
fn ipv6_unsolicited_ping_counts_and_neighbour_discovery_does_not() {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let spec = TargetSpec {
        open: vec![22],
        ipv6: true,
        ..TargetSpec::default()
    };
    let net = testnet_or_skip!(&spec);
    let (_, summary) = watched_scan(&net, "20-30", || {
        let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6)).unwrap();
        let to = SockAddr::from(std::net::SocketAddrV6::new(SCANNER_IP6, 0, 0, 0));
        // The kernel fills in the ICMPv6 checksum of a raw ICMPv6 socket.
        for seq in 0..2u8 {
            // Echo request, ident 0x1234.
            let ping = [128, 0, 0, 0, 0x12, 0x34, 0, seq, b'h', b'm'];
            s.send_to(&ping, &to).unwrap();
            // Neighbour solicitation (type 135) for the scanner's address.
            let mut ns = vec![135, 0, 0, 0, 0, 0, 0, 0];
            ns.extend_from_slice(&SCANNER_IP6.octets());
            s.send_to(&ns, &to).unwrap();
        }
    });
    let w = summary.watch.unwrap();
    assert_eq!(w.unsolicited, 2, "{w:?}");
    assert!(
        w.unsolicited_examples.iter().all(|e| e == "ip protocol 58"),
        "{w:?}"
    );
}

/// UDP over raw IPv6: a responder's reply is open, ICMPv6 1/4 (port
/// unreachable) closed, 1/1 (admin-prohibited) filtered, silence stealth.
#[test]
fn ipv6_udp_states_are_told_apart() {
    let spec = TargetSpec {
        ipv6: true,
        ..TargetSpec::default()
    };
    let net = testnet_or_skip!(&spec);
    // An echo service (port 7): the reply must carry our request's cookie.
    net.udp_responder(std::net::SocketAddr::new(TARGET_IP6.into(), 7), None);
    net.add_target_rule("udp dport 6000 drop");
    net.add_target_rule(
        "meta nfproto ipv6 udp dport 6001 reject with icmpv6 type admin-prohibited",
    );
    let engine = engine(&net);
    let request = ScanRequest::udp(
        IpAddr::V6(TARGET_IP6),
        PortList::parse("7,6000,6001,40000-40010").unwrap(),
    );
    let (results, summary) = engine.scan(request).unwrap();
    assert!(summary.error.is_none(), "{summary:?}");
    assert_eq!(results.len(), 14);
    for r in &results {
        let (state, reason) = match r.port {
            7 => (PortState::Open, Reason::UdpReply),
            6000 => (PortState::Stealth, Reason::NoResponse),
            6001 => (
                PortState::Filtered,
                Reason::Icmp {
                    v6: true,
                    icmp_type: 1,
                    code: 1,
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
    let echo = results.iter().find(|r| r.port == 7).unwrap();
    assert!(
        echo.evidence
            .expect("reply evidence")
            .head()
            .starts_with(b"harbormaster echo "),
        "{echo:?}"
    );
}

/// The largest filter (1,024 IPv4 and 256 IPv6 watched addresses) is accepted
/// by the kernel, and with 256 watched IPv6 scans running — the most the
/// engine holds — replies and ICMPv6 errors of the last one still pass.
#[test]
fn ipv6_replies_pass_with_256_watched_ipv6_scans() {
    use std::net::{Ipv4Addr, Ipv6Addr};
    let spec = TargetSpec {
        open: vec![22, 80],
        filtered: vec![25, 110, 113, 1720],
        dropped: vec![23],
        ipv6: true,
        ..TargetSpec::default()
    };
    let net = testnet_or_skip!(&spec);
    let mut transport = net.in_scanner(|| RawTransport::open().expect("raw sockets"));
    let mut most: Vec<IpAddr> = (0..1024u32)
        .map(|i| IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 4, 0)) + i)))
        .collect();
    most.extend((0..256u16).map(|i| IpAddr::V6(Ipv6Addr::new(0xfd00, 0x198, 0x18, 0, 0, 0, 1, i))));
    transport
        .watch(&most)
        .expect("the kernel takes the largest program");
    let scanner_ns = net.scanner_ns.clone();
    let engine = Engine::start(transport, EngineConfig::default(), move |dst| {
        harbormaster_testnet::in_namespace(&scanner_ns, || source_address(dst))
    });
    // 255 watched scans of on-link addresses nobody holds (the scanner's
    // neighbour solicitations for them go unanswered; nothing leaves the
    // namespaces), kept alive by a long tail while the main scan runs.
    let watch = |tail| Watch {
        pings: 0,
        expected_tcp_ports: Vec::new(),
        tail: WatchTail::Fixed(tail),
    };
    let (bg_tx, bg_rx) = mpsc::channel();
    let mut handles = Vec::new();
    for i in 0..255u16 {
        let tx = bg_tx.clone();
        let target = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x198, 0x18, 0, 0, 0, 2, i));
        let mut r = request(target, "9", Some(watch(Duration::from_secs(60))));
        r.tries = Some(1);
        handles.push(
            engine
                .submit(
                    r,
                    Box::new(move |e| {
                        let _ = tx.send(e);
                    }),
                )
                .expect("background scan"),
        );
    }
    drop(bg_tx);
    let ports = "20-30,100-120,1700-1730";
    let (results, summary) = engine
        .scan(request(
            IpAddr::V6(TARGET_IP6),
            ports,
            Some(watch(Duration::from_millis(200))),
        ))
        .unwrap();
    let ended_early = bg_rx
        .try_iter()
        .filter(|e| matches!(e, ScanEvent::Done(_)))
        .count();
    for h in &handles {
        h.cancel();
    }
    assert_eq!(ended_early, 0, "background scans ended early");
    assert!(summary.error.is_none(), "{summary:?}");
    check(&spec, &results, PortList::parse(ports).unwrap().len());
    let filtered = results
        .iter()
        .filter(|r| r.state == PortState::Filtered)
        .count();
    assert_eq!(filtered, 4, "ICMPv6 admin-prohibited must arrive");
}
