//! The probe engine on real packets: test hosts in network namespaces (see
//! `harbormaster-testnet`), SYN and connect mode, with and without loss.
//! Needs root; without it each test prints why it was skipped.

use std::net::IpAddr;

use harbormaster_probe::{ConnectConfig, PortList, connect_scan};
use harbormaster_testnet::{TARGET_IP, TargetSpec, testnet_or_skip};

mod common;
use common::{check, syn_scan};

/// The benchmark host: ~200 open, ~2,000 dropped, ~100 rejected ports.
fn spec(loss_percent: u8) -> TargetSpec {
    TargetSpec::benchmark(loss_percent)
}

#[test]
fn syn_full_sweep_is_exact() {
    let spec = spec(0);
    let net = testnet_or_skip!(&spec);
    let (results, summary) = syn_scan(&net, "all");
    check(&spec, &results, 65536);
    eprintln!("SYN 0-65535, no loss: {summary:?}");
}

#[test]
fn syn_full_sweep_with_two_percent_loss_is_exact() {
    let spec = spec(2);
    let net = testnet_or_skip!(&spec);
    let (results, summary) = syn_scan(&net, "all");
    check(&spec, &results, 65536);
    assert!(
        summary.lost_before > 0,
        "loss must have been seen: {summary:?}"
    );
    eprintln!("SYN 0-65535, 2% loss: {summary:?}");
}

#[test]
fn syn_silent_host_is_all_stealth_with_three_tries() {
    let spec = TargetSpec {
        drop_all: true,
        ..TargetSpec::default()
    };
    let net = testnet_or_skip!(&spec);
    let (results, _) = syn_scan(&net, "service");
    check(&spec, &results, 1056);
    assert!(results.iter().all(|r| r.tries >= 3));
}

#[test]
fn connect_mode_is_exact() {
    let spec = spec(0);
    let net = testnet_or_skip!(&spec);
    let ports = PortList::parse("0-8191").unwrap();
    let results = net.in_scanner(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut results = Vec::new();
            let summary = connect_scan(
                IpAddr::V4(TARGET_IP),
                &ports,
                ConnectConfig::default(),
                |r| results.push(r),
            )
            .await;
            assert!(summary.error.is_none(), "{summary:?}");
            results
        })
    });
    check(&spec, &results, 8192);
}
