//! The emulated path on real sockets: RTT, loss, bottleneck throughput and
//! queue overflow, measured from the scanner namespace against the target.
//! Needs root; without it each test prints why it was skipped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use harbormaster_testnet::{
    Direction, PathSpec, QueueLimit, SCANNER_IP, TARGET_IP, TargetSpec, TestNet, testnet_or_skip,
};

fn spec_with(path: PathSpec) -> TargetSpec {
    TargetSpec {
        open: vec![80],
        path: Some(path),
        ..TargetSpec::default()
    }
}

/// Times `n` TCP handshakes from the scanner to the target's port 80.
fn connect_times(net: &TestNet, n: usize) -> Vec<Duration> {
    net.in_scanner(|| {
        (0..n)
            .map(|_| {
                let t = Instant::now();
                let s = TcpStream::connect_timeout(
                    &SocketAddr::from((TARGET_IP, 80)),
                    Duration::from_secs(2),
                )
                .expect("connect through the path");
                let rtt = t.elapsed();
                drop(s);
                rtt
            })
            .collect()
    })
}

#[test]
fn path_rtt_is_twice_the_one_way_delay() {
    let net = testnet_or_skip!(&spec_with(PathSpec::symmetric(Direction {
        delay: Duration::from_millis(25),
        ..Direction::default()
    })));
    let mut rtts = connect_times(&net, 20);
    rtts.sort();
    let (min, median, max) = (rtts[0], rtts[10], rtts[19]);
    let (to_t, to_s) = net.path_stats().unwrap();
    eprintln!(
        "RTT at 2×25 ms: min {min:?} median {median:?} max {max:?}; release lateness: mean {} µs max {} µs (to target), mean {} µs max {} µs (to scanner)",
        to_t.total_late_us / to_t.forwarded.max(1),
        to_t.max_late_us,
        to_s.total_late_us / to_s.forwarded.max(1),
        to_s.max_late_us
    );
    assert!(min >= Duration::from_millis(50), "{rtts:?}");
    assert!(median <= Duration::from_millis(54), "{rtts:?}");
    assert!(
        to_t.forwarded >= 40 && to_s.forwarded >= 20,
        "{to_t:?} {to_s:?}"
    );
}

#[test]
fn path_jitter_spreads_rtt_within_bounds() {
    let net = testnet_or_skip!(&spec_with(PathSpec::symmetric(Direction {
        delay: Duration::from_millis(30),
        jitter: Duration::from_millis(5),
        ..Direction::default()
    })));
    let mut rtts = connect_times(&net, 30);
    rtts.sort();
    eprintln!("RTT at 2×(30±5) ms: {rtts:?}");
    // Each handshake is one crossing each way: 60 ms ± 10 ms, plus scheduling.
    assert!(rtts[0] >= Duration::from_millis(50), "{rtts:?}");
    assert!(rtts[29] <= Duration::from_millis(74), "{rtts:?}");
    assert!(
        rtts[29] - rtts[0] >= Duration::from_millis(3),
        "no jitter: {rtts:?}"
    );
}

/// Sends `n` UDP datagrams of `size` bytes from `from_ns` to `to`, `gap` apart,
/// and counts how many a socket in `to_ns` receives.
fn udp_count(net: &TestNet, to_scanner: bool, n: usize, size: usize, gap: Duration) -> usize {
    let (from_ns, to_ns, from_ip, to_ip) = if to_scanner {
        (&net.target_ns, &net.scanner_ns, TARGET_IP, SCANNER_IP)
    } else {
        (&net.scanner_ns, &net.target_ns, SCANNER_IP, TARGET_IP)
    };
    let receiver = harbormaster_testnet::in_namespace(to_ns, || {
        let s = UdpSocket::bind((to_ip, 9000)).expect("bind receiver");
        s.set_read_timeout(Some(Duration::from_millis(600)))
            .unwrap();
        s
    });
    let counter = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut got = 0;
        while receiver.recv(&mut buf).is_ok() {
            got += 1;
        }
        got
    });
    harbormaster_testnet::in_namespace(from_ns, || {
        let s = UdpSocket::bind((from_ip, 0)).expect("bind sender");
        let payload = vec![0x5au8; size];
        for _ in 0..n {
            s.send_to(&payload, (to_ip, 9000)).expect("send");
            if !gap.is_zero() {
                std::thread::sleep(gap);
            }
        }
    });
    counter.join().unwrap()
}

#[test]
fn path_loss_rate_is_within_statistical_tolerance() {
    let net = testnet_or_skip!(&spec_with(PathSpec {
        to_target: Direction {
            loss_percent: 10.0,
            ..Direction::default()
        },
        to_scanner: Direction {
            loss_percent: 4.0,
            ..Direction::default()
        },
        seed: 11,
    }));
    let n = 3000;
    // Paced (≈ 3,000 packets/s) so only the random loss can drop anything.
    let to_target = udp_count(&net, false, n, 100, Duration::from_micros(300));
    let to_scanner = udp_count(&net, true, n, 100, Duration::from_micros(300));
    let (st, ss) = net.path_stats().unwrap();
    eprintln!(
        "3000 datagrams: {to_target} arrived at 10 % loss, {to_scanner} at 4 %; {st:?} {ss:?}"
    );
    // Binomial: 10 % of 3000 is 300 ± 16.4 (σ), 4 % is 120 ± 10.7; allow 4 σ.
    assert!((2700 - 66..=2700 + 66).contains(&to_target), "{to_target}");
    assert!(
        (2880 - 43..=2880 + 43).contains(&to_scanner),
        "{to_scanner}"
    );
    assert_eq!(st.queue_dropped + st.overflow_dropped + st.send_errors, 0);
    assert_eq!(to_target as u64, st.forwarded);
}

/// Downloads from the target for `secs` and returns the goodput in bit/s.
fn bulk_goodput(net: &TestNet, port: u16, secs: f64) -> f64 {
    let listener = net.in_target(|| TcpListener::bind((TARGET_IP, port)).expect("bind bulk"));
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let chunk = vec![0xa5u8; 64 * 1024];
        while s.write_all(&chunk).is_ok() {}
    });
    let bits = net.in_scanner(|| {
        let mut s = TcpStream::connect((TARGET_IP, port)).expect("connect bulk");
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        // Measure after the first half second so slow start does not count.
        let start = Instant::now();
        let mut counted = 0u64;
        let mut t0 = None;
        while start.elapsed().as_secs_f64() < secs + 0.5 {
            let n = s.read(&mut buf).expect("read bulk");
            if t0.is_some() {
                counted += n as u64;
            } else if start.elapsed() >= Duration::from_millis(500) {
                t0 = Some(Instant::now());
            }
        }
        let elapsed = t0.map_or(0.0, |t| t.elapsed().as_secs_f64());
        counted as f64 * 8.0 / elapsed
    });
    server.join().unwrap();
    bits
}

#[test]
fn path_caps_tcp_throughput_at_the_bottleneck_rate() {
    for (mbit, port) in [(2.0, 5001), (10.0, 5002)] {
        let net = testnet_or_skip!(&spec_with(PathSpec::home(10, 0, 0.0, mbit, 50)));
        let bps = bulk_goodput(&net, port, 2.5);
        let (_, down) = net.path_stats().unwrap();
        let rate = mbit * 1e6;
        eprintln!(
            "{mbit} Mbit/s bottleneck: TCP goodput {:.3} Mbit/s ({:.1} %), {down:?}",
            bps / 1e6,
            bps / rate * 100.0
        );
        // Goodput carries 1448 of every 1514 frame bytes (95.6 %); the cap is on frames.
        assert!(bps <= rate * 0.97, "{bps} above the {rate} cap");
        assert!(bps >= rate * 0.80, "{bps} far below the {rate} cap");
    }
}

#[test]
fn path_queue_overflow_tail_drops_a_sender_that_overruns() {
    let net = testnet_or_skip!(&spec_with(PathSpec {
        to_target: Direction {
            rate_bps: Some(2_000_000),
            queue: QueueLimit::Millis(50),
            ..Direction::default()
        },
        to_scanner: Direction::default(),
        seed: 5,
    }));
    // 500 frames of 1042 bytes (4.17 ms each at 2 Mbit/s) sent as fast as possible:
    // the 50 ms queue holds about 12 behind the one on the wire.
    let started = Instant::now();
    let got = udp_count(&net, false, 500, 1000, Duration::ZERO);
    let (st, _) = net.path_stats().unwrap();
    eprintln!("500 datagrams at line rate into 2 Mbit/s / 50 ms: {got} arrived; {st:?}");
    let send_ms = started.elapsed().as_millis();
    assert!(got >= 12, "{got} {st:?}");
    assert!(
        got <= 40,
        "{got} arrived in {send_ms} ms: the queue did not overflow"
    );
    assert_eq!(st.queue_dropped + got as u64, 500, "{st:?}");
}

#[test]
fn direct_veth_has_no_path() {
    let net = testnet_or_skip!(&TargetSpec {
        open: vec![80],
        ..TargetSpec::default()
    });
    assert!(net.path_ns.is_none() && net.path_stats().is_none());
    let rtts = connect_times(&net, 5);
    assert!(
        rtts.iter().all(|r| *r < Duration::from_millis(20)),
        "{rtts:?}"
    );
}

#[test]
fn path_namespaces_and_forwarder_are_removed_on_drop() {
    let net = testnet_or_skip!(&spec_with(PathSpec::symmetric(Direction {
        delay: Duration::from_millis(5),
        ..Direction::default()
    })));
    let names = [
        net.scanner_ns.clone(),
        net.target_ns.clone(),
        net.path_ns.clone().expect("a path namespace"),
    ];
    let threads = || {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|c| c.starts_with("path-"))
            .count()
    };
    assert!(threads() >= 4, "forwarder threads not running");
    assert!(connect_times(&net, 1)[0] >= Duration::from_millis(10));
    drop(net);
    let list = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    for n in &names {
        assert!(!list.split_whitespace().any(|w| w == n), "{n} left behind");
    }
    // Other tests may run their own forwarders in parallel; ours are joined, so
    // at most theirs remain. Run alone, this is 0.
    eprintln!("path threads after drop: {}", threads());
}
