//! What the namespace tests of the probe engine share: an engine on the
//! scanner namespace's raw sockets, and the comparison with a test host's
//! truth. Each test binary uses a part of it.
#![allow(dead_code)]

use harbormaster_probe::{
    Engine, EngineConfig, PortList, PortResult, PortState, RawTransport, ScanRequest, ScanSummary,
    source_address,
};
use harbormaster_testnet::{TARGET_IP, TargetSpec, TestNet};

/// An engine on raw sockets opened in the scanner namespace, routing from it.
pub fn engine(net: &TestNet) -> Engine {
    let transport = net.in_scanner(|| RawTransport::open().expect("raw sockets"));
    let scanner_ns = net.scanner_ns.clone();
    Engine::start(transport, EngineConfig::default(), move |dst| {
        harbormaster_testnet::in_namespace(&scanner_ns, || source_address(dst))
    })
}

/// A TCP SYN scan of `ports` on the target, on a fresh engine.
pub fn syn_scan(net: &TestNet, ports: &str) -> (Vec<PortResult>, ScanSummary) {
    let request = ScanRequest::tcp(TARGET_IP.into(), PortList::parse(ports).unwrap());
    engine(net).scan(request).unwrap()
}

/// The state a correct scan reports for `port` of `spec`'s host.
pub fn truth(spec: &TargetSpec, port: u16) -> PortState {
    match spec.truth(port) {
        "open" => PortState::Open,
        "closed" => PortState::Closed,
        "filtered" => PortState::Filtered,
        _ => PortState::Stealth,
    }
}

/// The ports whose state is wrong, described.
pub fn wrong(spec: &TargetSpec, results: &[PortResult]) -> Vec<String> {
    results
        .iter()
        .filter(|r| r.state != truth(spec, r.port))
        .map(|r| format!("{} {} ({}, {} tries)", r.port, r.state, r.reason, r.tries))
        .collect()
}

/// Every one of `expected_len` ports has its true state.
pub fn check(spec: &TargetSpec, results: &[PortResult], expected_len: usize) {
    assert_eq!(results.len(), expected_len);
    let wrong = wrong(spec, results);
    assert!(
        wrong.is_empty(),
        "{} wrong: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(20)]
    );
}
