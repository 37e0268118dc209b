//! The SYN engine against a simulated network (no privileges, virtual time):
//! four-state accuracy with and without loss, the silent host, many scans at
//! once, forged replies, cancellation.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::mpsc;
use std::time::Duration;

use harbormaster_probe::sim::{SimHost, SimNetwork};
use harbormaster_probe::{
    Engine, EngineConfig, PortList, PortResult, PortState, ScanEvent, ScanRequest, ScanSummary,
};

const SCANNER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

/// A host like the benchmark target: ~200 open, ~2,000 dropped and
/// ~100 rejected ports spread over the whole range, everything else closed.
fn benchmark_host(salt: u32) -> SimHost {
    let pick = |n: u32, mul: u32| -> HashSet<u16> {
        (0..n)
            .map(|i| ((i.wrapping_mul(mul).wrapping_add(salt * 7919)) % 65536) as u16)
            .collect()
    };
    let open = pick(200, 40_503);
    let filtered: HashSet<u16> = pick(100, 12_007).difference(&open).copied().collect();
    let dropped: HashSet<u16> = pick(2000, 31_337)
        .difference(&open)
        .copied()
        .filter(|p| !filtered.contains(p))
        .collect();
    SimHost {
        open,
        filtered,
        dropped,
        ..SimHost::default()
    }
}

fn truth(host: &SimHost, port: u16) -> PortState {
    if host.silent || host.dropped.contains(&port) {
        PortState::Stealth
    } else if host.open.contains(&port) {
        PortState::Open
    } else if host.filtered.contains(&port) {
        PortState::Filtered
    } else {
        PortState::Closed
    }
}

fn engine(net: SimNetwork) -> Engine {
    let source = net.source();
    Engine::start(net, EngineConfig::default(), move |_| Ok(source))
}

/// An engine on a network, 1 ms away, where `target` drops every probe.
fn silent_host_engine(target: Ipv4Addr) -> Engine {
    let host = SimHost {
        silent: true,
        ..SimHost::default()
    };
    engine(SimNetwork::new(SCANNER, Duration::from_millis(1), 0.0, 0.0, 3).host(target, host))
}

fn assert_exact(host: &SimHost, results: &[PortResult], ports: &PortList) {
    assert_eq!(results.len(), ports.len(), "one result per port");
    let wrong: Vec<String> = results
        .iter()
        .filter(|r| r.state != truth(host, r.port))
        .map(|r| {
            format!(
                "{}: {} ({}) should be {}",
                r.port,
                r.state,
                r.reason,
                truth(host, r.port)
            )
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{} misclassified: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
}

fn full_sweep(loss: f64, seed: u64) -> (SimHost, Vec<PortResult>, ScanSummary) {
    let target = Ipv4Addr::new(198, 18, 0, 2);
    let host = benchmark_host(seed as u32);
    let net = SimNetwork::new(SCANNER, Duration::from_micros(200), loss, loss, seed)
        .host(target, host.clone());
    let e = engine(net);
    let (results, summary) = e
        .scan(ScanRequest {
            target: IpAddr::V4(target),
            ports: PortList::parse("all").unwrap(),
            tries: None,
            rate: None,
            watch: None,
            protocol: harbormaster_probe::Protocol::Tcp,
            budget: None,
            rtt_hint: None,
        })
        .unwrap();
    (host, results, summary)
}

#[test]
fn full_sweep_without_loss_is_exact() {
    let (host, results, summary) = full_sweep(0.0, 1);
    assert_exact(&host, &results, &PortList::parse("all").unwrap());
    assert_eq!(summary.lost_before, 0);
    assert_eq!(summary.counts[0], host.open.len());
    assert!(summary.tries_limit == 3);
    // Open and closed ports answer on the first try; only the silent ones were retried.
    let retried = results.iter().filter(|r| r.tries > 1).count();
    assert_eq!(retried, host.dropped.len());
    // RTT is measured, TTL is read from the reply.
    let open = results.iter().find(|r| r.state == PortState::Open).unwrap();
    assert!(open.rtt.is_some() && open.ttl == Some(64));
}

#[test]
fn full_sweep_with_two_percent_loss_each_way_is_exact() {
    for seed in [2, 3, 4] {
        let (host, results, summary) = full_sweep(0.02, seed);
        assert_exact(&host, &results, &PortList::parse("all").unwrap());
        assert!(summary.lost_before > 1000, "loss was seen: {summary:?}");
        assert!(
            summary.tries_limit >= 5,
            "more tries under loss: {summary:?}"
        );
    }
}

#[test]
fn silent_host_gets_at_least_three_tries_per_port_in_under_two_seconds() {
    let target = Ipv4Addr::new(198, 18, 0, 9);
    let host = SimHost {
        silent: true,
        ..SimHost::default()
    };
    let net = SimNetwork::new(SCANNER, Duration::from_millis(1), 0.0, 0.0, 5).host(target, host);
    let stats = net.stats();
    let e = engine(net);
    let ports = PortList::parse("service").unwrap();
    let (results, summary) = e
        .scan(ScanRequest {
            target: IpAddr::V4(target),
            ports: ports.clone(),
            tries: None,
            rate: None,
            watch: None,
            protocol: harbormaster_probe::Protocol::Tcp,
            budget: None,
            rtt_hint: None,
        })
        .unwrap();
    assert_eq!(results.len(), 1056);
    assert!(
        results
            .iter()
            .all(|r| r.state == PortState::Stealth && r.tries >= 3)
    );
    assert!(
        summary.elapsed <= Duration::from_secs(2),
        "virtual time {:?}",
        summary.elapsed
    );
    assert_eq!(stats.lock().unwrap().probes, 3 * 1056);
}

#[test]
fn many_concurrent_scans_share_one_engine_and_all_are_exact() {
    let mut net = SimNetwork::new(SCANNER, Duration::from_micros(300), 0.01, 0.01, 11);
    let mut hosts = HashMap::new();
    for i in 0..40u8 {
        let addr = Ipv4Addr::new(198, 18, 1, i + 1);
        let host = benchmark_host(u32::from(i) + 100);
        hosts.insert(IpAddr::V4(addr), host.clone());
        net = net.host(addr, host);
    }
    let e = engine(net);
    let (tx, rx) = mpsc::channel();
    let ports = PortList::parse("service").unwrap();
    for addr in hosts.keys() {
        let tx = tx.clone();
        e.submit(
            ScanRequest {
                target: *addr,
                ports: ports.clone(),
                tries: None,
                rate: None,
                watch: None,
                protocol: harbormaster_probe::Protocol::Tcp,
                budget: None,
                rtt_hint: None,
            },
            Box::new(move |ev| {
                let _ = tx.send(ev);
            }),
        )
        .unwrap();
    }
    drop(tx);
    let mut results: HashMap<IpAddr, Vec<PortResult>> = HashMap::new();
    let mut done = 0;
    for ev in rx {
        match ev {
            ScanEvent::Port(r) => results.entry(r.target).or_default().push(r),
            ScanEvent::Done(s) => {
                assert!(!s.cancelled && s.error.is_none());
                done += 1;
            }
        }
    }
    assert_eq!(done, 40);
    for (addr, host) in &hosts {
        assert_exact(host, &results[addr], &ports);
    }
}

#[test]
fn replies_without_a_valid_cookie_are_rejected() {
    let target = Ipv4Addr::new(198, 18, 0, 2);
    let host = SimHost {
        wrong_ack: true,
        ..benchmark_host(9)
    };
    let net = SimNetwork::new(SCANNER, Duration::from_micros(200), 0.0, 0.0, 9).host(target, host);
    let e = engine(net);
    let ports = PortList::parse("1-100").unwrap();
    let (results, summary) = e
        .scan(ScanRequest {
            target: IpAddr::V4(target),
            ports: ports.clone(),
            tries: Some(2),
            rate: None,
            watch: None,
            protocol: harbormaster_probe::Protocol::Tcp,
            budget: None,
            rtt_hint: None,
        })
        .unwrap();
    // Every TCP answer carried a wrong acknowledgement: nothing may count as open or closed.
    assert!(
        results
            .iter()
            .all(|r| matches!(r.state, PortState::Stealth | PortState::Filtered))
    );
    assert!(summary.rejected >= 150, "{summary:?}");
}

#[test]
fn cancelled_scans_report_done_promptly() {
    let target = Ipv4Addr::new(198, 18, 0, 2);
    let e = silent_host_engine(target);
    let (tx, rx) = mpsc::channel();
    let handle = e
        .submit(
            ScanRequest {
                target: IpAddr::V4(target),
                ports: PortList::parse("all").unwrap(),
                tries: Some(10),
                rate: Some(1000),
                watch: None,
                protocol: harbormaster_probe::Protocol::Tcp,
                budget: None,
                rtt_hint: None,
            },
            Box::new(move |ev| {
                let _ = tx.send(ev);
            }),
        )
        .unwrap();
    handle.cancel();
    let summary = rx
        .iter()
        .find_map(|ev| match ev {
            ScanEvent::Done(s) => Some(s),
            ScanEvent::Port(_) => None,
        })
        .unwrap();
    assert!(summary.cancelled);
    assert!(summary.ports < 65536);
}

#[test]
fn a_rate_cap_is_respected() {
    let target = Ipv4Addr::new(198, 18, 0, 2);
    let host = benchmark_host(4);
    let net = SimNetwork::new(SCANNER, Duration::from_micros(200), 0.0, 0.0, 4)
        .host(target, host.clone());
    let stats = net.stats();
    let e = engine(net);
    let ports = PortList::parse("1-2000").unwrap();
    let (results, summary) = e
        .scan(ScanRequest {
            target: IpAddr::V4(target),
            ports: ports.clone(),
            tries: None,
            rate: Some(10_000),
            watch: None,
            protocol: harbormaster_probe::Protocol::Tcp,
            budget: None,
            rtt_hint: None,
        })
        .unwrap();
    assert_exact(&host, &results, &ports);
    let probes = stats.lock().unwrap().probes as f64;
    let rate = probes / summary.elapsed.as_secs_f64();
    assert!(rate <= 11_000.0, "{probes} probes in {:?}", summary.elapsed);
}

fn watched_scan(host: SimHost) -> (Vec<PortResult>, ScanSummary) {
    let (results, summary, _) = watched_scan_with(
        host,
        harbormaster_probe::WatchTail::Fixed(Duration::from_millis(500)),
    );
    (results, summary)
}

/// A watched scan of the common ports of `host` (three pings, the web's
/// port 8080 expected) whose watch ends after `tail`; also returns how long
/// the watch went on after the last result (virtual time from the first
/// probe to the engine's last wait, less the scan's time).
fn watched_scan_with(
    host: SimHost,
    tail: harbormaster_probe::WatchTail,
) -> (Vec<PortResult>, ScanSummary, Duration) {
    let target = Ipv4Addr::new(198, 18, 0, 5);
    let net = SimNetwork::new(SCANNER, Duration::from_micros(500), 0.0, 0.0, 21).host(target, host);
    let stats = net.stats();
    let e = engine(net);
    let (results, summary) = e
        .scan(ScanRequest {
            target: IpAddr::V4(target),
            ports: PortList::parse("common").unwrap(),
            tries: None,
            rate: None,
            watch: Some(harbormaster_probe::Watch {
                pings: 3,
                expected_tcp_ports: vec![8080],
                tail,
            }),
            protocol: harbormaster_probe::Protocol::Tcp,
            budget: None,
            rtt_hint: None,
        })
        .unwrap();
    let s = stats.lock().unwrap();
    let watched = s.last_wait - s.first_probe.unwrap();
    let after = watched.saturating_sub(summary.elapsed);
    (results, summary, after)
}

#[test]
fn a_silent_host_passes_the_watch() {
    let (results, summary) = watched_scan(SimHost {
        silent: true,
        ..SimHost::default()
    });
    assert!(results.iter().all(|r| r.state == PortState::Stealth));
    let w = summary.watch.unwrap();
    assert_eq!(w.pings_sent, 3);
    assert_eq!(w.ping_replies, 0);
    assert_eq!(w.unsolicited, 0);
}

#[test]
fn ping_replies_and_counter_probes_are_seen() {
    let (_, summary) = watched_scan(SimHost {
        answers_ping: true,
        counter_probe: true,
        ..benchmark_host(3)
    });
    let w = summary.watch.unwrap();
    assert_eq!(w.pings_sent, 3);
    assert_eq!(w.ping_replies, 3);
    assert_eq!(w.unsolicited, 1, "{w:?}");
    assert_eq!(w.unsolicited_examples, ["udp 137->137"]);
}

/// A watched scan of `host` whose tail is the path's timeout (at least
/// 100 ms, at most 10 s); returns the scan's summary and how long the watch
/// went on after the last result.
fn path_tail_scan(host: SimHost) -> (ScanSummary, Duration) {
    let tail = harbormaster_probe::WatchTail::Rto {
        min: Duration::from_millis(100),
        max: Duration::from_secs(10),
    };
    let (_, summary, after) = watched_scan_with(host, tail);
    (summary, after)
}

fn assert_tail_within(tail: Duration, from_ms: u64, to_ms: u64) {
    assert!(
        tail >= Duration::from_millis(from_ms) && tail < Duration::from_millis(to_ms),
        "the watch went on {tail:?} after the last result"
    );
}

/// On a fast path the scan is over before its pings: the two left go 50 ms
/// apart from the last result, and the watch ends a timeout (here the
/// 100 ms floor) after the last of them, 150 ms after the last result; not
/// half a second in, nor at the 10 s the tail may reach.
#[test]
fn a_path_tail_ends_a_timeout_after_the_last_ping() {
    let (summary, tail) = path_tail_scan(SimHost {
        answers_ping: true,
        ..benchmark_host(3)
    });
    assert_eq!(summary.watch.as_ref().unwrap().ping_replies, 3);
    assert!(summary.elapsed < Duration::from_millis(250), "{summary:?}");
    assert_tail_within(tail, 150, 200);
}

/// A silent host's scan outlasts its pings (three tries at the 500 ms
/// initial timeout): the watch ends 100 ms after its last result, not a
/// timeout after it.
#[test]
fn a_path_tail_after_a_long_scan_is_its_floor() {
    let (summary, tail) = path_tail_scan(SimHost {
        silent: true,
        ..SimHost::default()
    });
    assert!(summary.elapsed > Duration::from_secs(1), "{summary:?}");
    assert_tail_within(tail, 100, 200);
}

/// A tail shorter than the pings' gap: the watch still sends every ping
/// and ends the tail after the last (the second ping at the last result,
/// the third 50 ms on, then 20 ms).
/// Before, the tail fell due before the next ping and the event loop spun
/// on it; in virtual time that spin never ends, so the scan runs on a
/// thread and must be done within 10 s.
#[test]
fn a_tail_shorter_than_the_pings_gap_waits_for_the_pings() {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let host = SimHost {
            answers_ping: true,
            ..benchmark_host(3)
        };
        let tail = harbormaster_probe::WatchTail::Fixed(Duration::from_millis(20));
        let _ = done_tx.send(watched_scan_with(host, tail));
    });
    let (_, summary, after) = done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the watched scan did not end: the loop spun on its tail");
    assert_eq!(summary.watch.as_ref().unwrap().ping_replies, 3);
    assert_tail_within(after, 70, 100);
}

#[test]
fn a_budget_shared_with_other_senders_holds_for_all_of_them() {
    // The web service's connect-mode probes reserve from the same budget as
    // the engine: 5,000 sends reserved elsewhere at 10,000/s occupy the first
    // half second, so the engine's 2,000 ports (at least 2,000 probes) cannot
    // finish before 0.7 s of the budget's time.
    let target = Ipv4Addr::new(198, 18, 0, 2);
    let host = benchmark_host(4);
    let net = SimNetwork::new(SCANNER, Duration::from_micros(200), 0.0, 0.0, 4)
        .host(target, host.clone());
    let stats = net.stats();
    let source = net.source();
    let budget = harbormaster_probe::RateBudget::new(10_000);
    let now = std::time::Instant::now();
    for _ in 0..5_000 {
        budget.reserve(now);
    }
    let e = Engine::start(
        net,
        EngineConfig {
            shared_budget: Some(budget),
            ..EngineConfig::default()
        },
        move |_| Ok(source),
    );
    let ports = PortList::parse("1-2000").unwrap();
    let (results, summary) = e
        .scan(ScanRequest {
            target: IpAddr::V4(target),
            ports: ports.clone(),
            tries: None,
            rate: None,
            watch: None,
            protocol: harbormaster_probe::Protocol::Tcp,
            budget: None,
            rtt_hint: None,
        })
        .unwrap();
    assert_exact(&host, &results, &ports);
    let (probes, first) = {
        let s = stats.lock().unwrap();
        (s.probes as f64, s.first_probe.unwrap())
    };
    // The 5,000 reserved sends take the budget's first 0.5 s (less its burst).
    assert!(
        first >= Duration::from_millis(480),
        "the engine sent its first probe at {first:?}, inside the reserved half second"
    );
    let total = (probes + 5_000.0) / (first + summary.elapsed).as_secs_f64();
    assert!(total <= 11_000.0, "{total:.0}/s together");
}

/// A handle of a finished scan must not cancel the next scan that got its
/// block (the engine reuses a block once its scan ends).
#[test]
fn a_late_cancel_leaves_the_next_scan_in_its_block_alone() {
    let target = Ipv4Addr::new(198, 18, 0, 5);
    let e = silent_host_engine(target);
    let submit = |ports: &str| {
        let (tx, rx) = mpsc::channel();
        let request = ScanRequest::tcp(IpAddr::V4(target), PortList::parse(ports).unwrap());
        let handle = e
            .submit(
                request,
                Box::new(move |ev| {
                    let _ = tx.send(ev);
                }),
            )
            .unwrap();
        (handle, rx)
    };
    let done = |rx: &mpsc::Receiver<ScanEvent>| loop {
        match rx.recv_timeout(Duration::from_secs(30)).unwrap() {
            ScanEvent::Done(summary) => break summary,
            ScanEvent::Port(_) => {}
        }
    };
    let (first, rx) = submit("80");
    assert!(!done(&rx).cancelled);
    let (_second, rx) = submit("0-1055");
    first.cancel();
    let summary = done(&rx);
    assert!(!summary.cancelled, "the late cancel stopped the next scan");
    assert_eq!(summary.ports, 1056);
}
