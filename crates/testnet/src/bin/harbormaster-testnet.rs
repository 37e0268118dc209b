//! `harbormaster-testnet`: holds a benchmark test host up for scripts.
//!
//! ```text
//! harbormaster-testnet [--loss PERCENT] [--silent] [--spec benchmark|visitor|router|icmp-limited]
//!                      [--visitors N] [--truth FILE]
//!                      [--delay MS] [--jitter MS] [--path-loss PERCENT]
//!                      [--rate MBIT] [--queue MS] [--ipv6] [--daemons]
//!                      [--kernel-icmp-limits] [--rst-limit PER_SECOND]
//! ```
//! Creates the namespaces, writes the expected state of every port to FILE
//! (`port state` per line), prints `SCANNER_NS TARGET_NS` on stdout, then
//! waits until stdin closes and removes everything.
//!
//! `--spec visitor` is the web benchmark's host (bench/web.sh): a small mix of
//! open, dropped and rejected ports inside 0–1055, every other port closed.
//! `--visitors N` gives the target namespace N addresses, 198.18.0.2 to
//! 198.18.0.(N+1), each with the same ports (listeners on every address).
//! `--spec router` is a stealth-heavy home router (13 open, 5 closed, the rest
//! and pings dropped).
//!
//! Any of `--delay` (one-way, ms), `--jitter` (± ms), `--path-loss` (% each
//! way), `--rate` (bottleneck Mbit/s each way) or `--queue` (bottleneck buffer,
//! ms of the rate; default 50) puts an emulated path between the namespaces
//! (see `harbormaster_testnet::path`); without them the veth is direct.
//!
//! `--ipv6` also gives the scanner fd00:198:18::1 and the target
//! fd00:198:18::2 (`TargetSpec::ipv6`), with the same ports.
//!
//! `--kernel-icmp-limits` keeps Linux's default ICMP error limit on the target
//! (about 1/s after a burst of 6) instead of turning it off; `--spec
//! icmp-limited` is the 0–1055 host of issue 9 §3 with it on. `--rst-limit N`
//! drops the target's RSTs above N per second.

use std::io::{BufRead, Write};

use std::time::Duration;

use harbormaster_testnet::{Direction, PathSpec, QueueLimit, TargetSpec, TestNet};

fn main() {
    let mut loss = 0u8;
    let mut silent = false;
    let mut truth = None;
    let mut visitor_spec = false;
    let mut visitors = 1u8;
    let mut router_spec = false;
    let mut daemons = false;
    let mut path = None::<Direction>;
    let mut ipv6 = false;
    let mut icmp_limited_spec = false;
    let mut kernel_icmp_limits = false;
    let mut rst_limit = None::<u32>;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--loss" => {
                loss = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|v| *v <= 100)
                    .unwrap_or_else(|| usage("--loss takes a percentage 0-100"))
            }
            "--silent" => silent = true,
            "--daemons" => daemons = true,
            "--ipv6" => ipv6 = true,
            "--truth" => truth = Some(args.next().unwrap_or_else(|| usage("--truth takes a file"))),
            "--spec" => match args.next().as_deref() {
                Some("benchmark") => visitor_spec = false,
                Some("visitor") => visitor_spec = true,
                Some("router") => router_spec = true,
                Some("icmp-limited") => icmp_limited_spec = true,
                _ => usage("--spec takes benchmark, visitor, router or icmp-limited"),
            },
            "--visitors" => {
                visitors = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|v| (1..=200).contains(v))
                    .unwrap_or_else(|| usage("--visitors takes a count 1-200"))
            }
            "--delay" | "--jitter" | "--path-loss" | "--rate" | "--queue" => {
                let v: f64 = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|v: &f64| v.is_finite() && *v >= 0.0)
                    .unwrap_or_else(|| usage(&format!("{a} takes a non-negative number")));
                let d = path.get_or_insert_with(Direction::default);
                let ms = || Duration::from_secs_f64(v / 1000.0);
                match a.as_str() {
                    "--delay" if v <= 10_000.0 => d.delay = ms(),
                    "--jitter" if v <= 10_000.0 => d.jitter = ms(),
                    "--path-loss" if v <= 100.0 => d.loss_percent = v,
                    "--rate" if v > 0.0 && v <= 100_000.0 => d.rate_bps = Some((v * 1e6) as u64),
                    "--queue" if (1.0..=10_000.0).contains(&v) => {
                        d.queue = QueueLimit::Millis(v as u32)
                    }
                    _ => usage(&format!(
                        "{a} {v} is out of range (delay/jitter/queue 0-10000 ms, path-loss 0-100 %, queue at least 1 ms, rate above 0 up to 100000 Mbit/s)"
                    )),
                }
            }
            "--kernel-icmp-limits" => kernel_icmp_limits = true,
            "--rst-limit" => {
                rst_limit = Some(
                    args.next()
                        .and_then(|v| v.parse().ok())
                        .filter(|v| (1..=1_000_000).contains(v))
                        .unwrap_or_else(|| usage("--rst-limit takes RSTs per second, 1-1000000")),
                )
            }
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    let mut spec = if silent {
        TargetSpec {
            drop_all: true,
            loss_percent: loss,
            ..TargetSpec::default()
        }
    } else if icmp_limited_spec {
        TargetSpec {
            loss_percent: loss,
            ..TargetSpec::icmp_limited()
        }
    } else if router_spec {
        TargetSpec {
            loss_percent: loss,
            ..TargetSpec::home_router()
        }
    } else if visitor_spec {
        visitor(loss)
    } else {
        TargetSpec::benchmark(loss)
    };
    spec.extra_addresses = visitors - 1;
    spec.kernel_icmp_limits |= kernel_icmp_limits;
    spec.rst_limit_per_sec = rst_limit;
    spec.path = path.map(PathSpec::symmetric);
    spec.ipv6 = ipv6;
    let net = match TestNet::create(&spec) {
        Ok(n) => n,
        Err(skip) => {
            eprintln!("harbormaster-testnet: {skip}");
            std::process::exit(1);
        }
    };
    if let Some(path) = truth {
        let mut text = String::with_capacity(65536 * 10);
        for port in 0..=u16::MAX {
            text.push_str(&format!("{port} {}\n", spec.truth(port)));
        }
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("harbormaster-testnet: cannot write {path}: {e}");
            std::process::exit(1);
        }
    }
    // `--daemons`: Debian's UDP services in the target, as the UDP benchmark
    // (bench/udp.sh) probes them: an open resolver (forwarding to an
    // authority in the same namespace), NTP, SNMP, memcached and UPnP.
    let _daemons = if daemons {
        match start_daemons(&net) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("harbormaster-testnet: --daemons: {e}");
                std::process::exit(1);
            }
        }
    } else {
        Vec::new()
    };
    println!("{} {}", net.scanner_ns, net.target_ns);
    let _ = std::io::stdout().flush();
    // Hold the namespaces (and the listeners) until the caller closes our stdin.
    for _ in std::io::stdin().lock().lines() {}
    // What the path did, for the benchmark's notes (tail drops, release lateness).
    if let Some((up, down)) = net.path_stats() {
        for (name, d) in [("to target", up), ("to scanner", down)] {
            eprintln!(
                "harbormaster-testnet: path {name}: {} frames, {} lost, {} tail-dropped, {} forwarded, release late by {} µs mean / {} µs max",
                d.received,
                d.lost,
                d.queue_dropped,
                d.forwarded,
                d.total_late_us / d.forwarded.max(1),
                d.max_late_us
            );
        }
    }
    drop(net);
}

/// Starts the `--daemons` set in the target namespace.
fn start_daemons(net: &TestNet) -> Result<Vec<harbormaster_testnet::Daemon>, String> {
    let ip = harbormaster_testnet::TARGET_IP;
    Ok(vec![
        net.start_dnsmasq(ip, 5300, "auth-server=ns1.hm.test,veth1\nauth-zone=.\n")?,
        net.start_dnsmasq(ip, 53, "server=198.18.0.2#5300\n")?,
        net.start_chronyd(ip)?,
        net.start_snmpd(ip)?,
        net.start_memcached(ip)?,
        net.start_miniupnpd("3f0e5c2a-6b1d-4c8e-9a47-0d2b7e1f5a10")?,
    ])
}

/// The web benchmark's host: within the service test's 0–1055, 14 open ports
/// (well-known services and both ends of the range's last block), 23 dropped
/// (stealth; 0–2 so port 0 is exercised) and 10 rejected (filtered); every
/// other port closed.
fn visitor(loss_percent: u8) -> TargetSpec {
    let open: Vec<u16> = vec![
        21, 22, 25, 53, 80, 110, 139, 143, 443, 445, 993, 995, 1024, 1055,
    ];
    let filtered: Vec<u16> = (0..10u16)
        .map(|i| 7 + i * 101)
        .filter(|p| !open.contains(p))
        .collect();
    let mut dropped: Vec<u16> = vec![0, 1, 2];
    dropped.extend(
        (0..20u16)
            .map(|i| 30 + i * 51)
            .filter(|p| !open.contains(p) && !filtered.contains(p)),
    );
    TargetSpec {
        open,
        dropped,
        filtered,
        loss_percent,
        ..TargetSpec::default()
    }
}

fn usage(msg: &str) -> ! {
    eprintln!(
        "harbormaster-testnet: {msg}; usage: harbormaster-testnet [--loss PERCENT] [--silent] [--spec benchmark|visitor|router|icmp-limited] [--visitors N] [--truth FILE] [--delay MS] [--jitter MS] [--path-loss PERCENT] [--rate MBIT] [--queue MS] [--ipv6] [--daemons] [--kernel-icmp-limits] [--rst-limit PER_SECOND]"
    );
    std::process::exit(2);
}
