//! The kernel filter with as many watched visitors as the engine can run (256
//! scans, each watching its target): replies and ICMP errors must still reach
//! the engine. Before the filter kept its conditional jumps short, 250 or more
//! watched addresses overflowed the jump offsets and the kernel dropped them.
//! Needs root; without it the test prints why it was skipped.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::mpsc;
use std::time::Duration;

use harbormaster_probe::{
    Engine, EngineConfig, PortList, PortState, RawTransport, ScanEvent, ScanRequest, Watch,
    WatchTail, source_address,
};
use harbormaster_testnet::{TARGET_IP, TargetSpec, testnet_or_skip};

/// 198.18.0.3 to 198.18.0.255 exist on the target host; two more watched
/// addresses inside 198.18.0.0/16 (no host answers for them) make 255 others.
fn other_targets() -> Vec<Ipv4Addr> {
    let mut v: Vec<Ipv4Addr> = (3..=255).map(|d| Ipv4Addr::new(198, 18, 0, d)).collect();
    v.extend([Ipv4Addr::new(198, 18, 7, 1), Ipv4Addr::new(198, 18, 7, 2)]);
    v
}

fn watch() -> Option<Watch> {
    Some(Watch {
        pings: 0,
        expected_tcp_ports: Vec::new(),
        // Keeps each background scan (and its watched address) alive while the
        // main scan runs; they are cancelled at the end.
        tail: WatchTail::Fixed(Duration::from_secs(60)),
    })
}

#[test]
fn replies_and_icmp_errors_pass_with_256_watched_scans() {
    let spec = TargetSpec {
        open: vec![22, 80],
        filtered: vec![25, 110, 113, 1720],
        dropped: vec![23],
        extra_addresses: 253,
        ..TargetSpec::default()
    };
    let net = testnet_or_skip!(&spec);
    let transport = net.in_scanner(|| RawTransport::open().expect("raw sockets"));
    let scanner_ns = net.scanner_ns.clone();
    let engine = Engine::start(transport, EngineConfig::default(), move |dst| {
        harbormaster_testnet::in_namespace(&scanner_ns, || source_address(dst))
    });
    let others = other_targets();
    assert_eq!(others.len(), 255);
    let mut handles = Vec::new();
    let (bg_tx, bg_rx) = mpsc::channel();
    for a in &others {
        let tx = bg_tx.clone();
        let h = engine
            .submit(
                ScanRequest {
                    target: IpAddr::V4(*a),
                    ports: PortList::parse("9").unwrap(),
                    tries: Some(1),
                    rate: None,
                    watch: watch(),
                    protocol: harbormaster_probe::Protocol::Tcp,
                    budget: None,
                    rtt_hint: None,
                },
                Box::new(move |e| {
                    let _ = tx.send(e);
                }),
            )
            .expect("background scan");
        handles.push(h);
    }
    drop(bg_tx);
    // The main scan is the 256th watched address; its filtered ports answer
    // with ICMP admin-prohibited, its open ports with SYN-ACK.
    let ports = "20-30,100-120,1700-1730";
    let (results, summary) = engine
        .scan(ScanRequest {
            target: IpAddr::V4(TARGET_IP),
            ports: PortList::parse(ports).unwrap(),
            tries: None,
            rate: None,
            watch: watch().map(|w| Watch {
                tail: WatchTail::Fixed(Duration::from_millis(200)),
                ..w
            }),
            protocol: harbormaster_probe::Protocol::Tcp,
            budget: None,
            rtt_hint: None,
        })
        .unwrap();
    // Every background scan was still running (watching) when the main one ended.
    let mut finished = 0;
    while let Ok(e) = bg_rx.try_recv() {
        if matches!(e, ScanEvent::Done(_)) {
            finished += 1;
        }
    }
    assert_eq!(finished, 0, "background scans ended early");
    for h in &handles {
        h.cancel();
    }
    assert!(summary.error.is_none(), "{summary:?}");
    assert_eq!(results.len(), PortList::parse(ports).unwrap().len());
    let wrong: Vec<String> = results
        .iter()
        .filter(|r| {
            let truth = match spec.truth(r.port) {
                "open" => PortState::Open,
                "closed" => PortState::Closed,
                "filtered" => PortState::Filtered,
                _ => PortState::Stealth,
            };
            r.state != truth
        })
        .map(|r| format!("{} {} ({})", r.port, r.state, r.reason))
        .collect();
    assert!(wrong.is_empty(), "wrong with 256 watched: {wrong:?}");
    let filtered = results
        .iter()
        .filter(|r| r.state == PortState::Filtered)
        .count();
    assert_eq!(filtered, 4, "ICMP admin-prohibited must arrive");
}
