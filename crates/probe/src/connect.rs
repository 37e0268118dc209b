//! Connect mode: probes with ordinary `connect()` calls, so it needs no
//! privilege and works for IPv6. The kernel does the handshake; we read the
//! outcome: connected → open, ECONNREFUSED → closed, host/net unreachable (an
//! ICMP error reached the kernel) → filtered, timeout on every try → stealth.
//!
//! Sockets close with SO_LINGER 0 (an immediate RST, no TIME_WAIT), and a local
//! shortage (EMFILE, EADDRNOTAVAIL, ENOBUFS…) is never reported as a port
//! state: the probe backs off and tries again without spending a try.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::cookie::CookieKey;
use crate::engine::{MIN_TRIES, ScanSummary, TRIES_PER_BLOCK};
use crate::permute::Permutation;
use crate::result::{PortResult, PortState, Reason, Transport as Proto};
use crate::spec::PortList;
use crate::timing::{RateBudget, RttEstimator, needed_tries};

/// How long a local shortage may last before the scan gives up.
const LOCAL_ERROR_PATIENCE: Duration = Duration::from_secs(30);

/// Settings of a connect scan.
#[derive(Debug, Clone)]
pub struct ConnectConfig {
    /// Fixed tries per silent port; `None` adapts to measured loss (at least 3).
    pub tries: Option<u8>,
    /// Connections in flight at once; `None` derives it from the open-file limit
    /// and the ephemeral port range.
    pub concurrency: Option<usize>,
    /// Timeout before any connect has completed.
    pub initial_timeout: Duration,
    /// Shortest timeout.
    pub min_timeout: Duration,
    /// Longest timeout.
    pub max_timeout: Duration,
    /// Cap on connection attempts per second of this scan.
    pub rate: Option<u32>,
    /// A cap shared with other scans (the service's `--max-rate`): every
    /// connection attempt of every scan holding a clone takes from it.
    pub budget: Option<RateBudget>,
}

impl Default for ConnectConfig {
    fn default() -> Self {
        ConnectConfig {
            tries: None,
            concurrency: None,
            initial_timeout: Duration::from_millis(500),
            min_timeout: Duration::from_millis(20),
            max_timeout: Duration::from_secs(3),
            rate: None,
            budget: None,
        }
    }
}

struct Shared {
    rtt: RttEstimator,
    /// This scan's own cap, then the shared one; an attempt waits for both.
    pacers: Vec<RateBudget>,
    answers: u64,
    lost_before: u64,
    decided: u64,
    total: u64,
    fixed_tries: Option<u8>,
}

impl Shared {
    fn tries_limit(&self) -> u8 {
        if let Some(t) = self.fixed_tries {
            return t;
        }
        let responsive = (self.answers * self.total / self.decided.max(1)).max(self.answers);
        needed_tries(
            self.answers,
            self.lost_before,
            responsive,
            MIN_TRIES,
            TRIES_PER_BLOCK as u8,
        )
    }
}

/// Scans `ports` of `target` with `connect()`, calling `on_result` for each port
/// as soon as its result is final. Returns the summary; a local failure that
/// outlasts the back-off ends the scan with `error` set.
pub async fn connect_scan(
    target: IpAddr,
    ports: &PortList,
    config: ConnectConfig,
    mut on_result: impl FnMut(PortResult),
) -> ScanSummary {
    let started = Instant::now();
    let concurrency = config
        .concurrency
        .unwrap_or_else(default_concurrency)
        .max(1);
    let shared = Arc::new(Mutex::new(Shared {
        rtt: RttEstimator::new(
            config.initial_timeout,
            config.min_timeout,
            config.max_timeout,
        ),
        pacers: config
            .rate
            .map(RateBudget::new)
            .into_iter()
            .chain(config.budget.clone())
            .collect(),
        answers: 0,
        lost_before: 0,
        decided: 0,
        total: ports.len() as u64,
        fixed_tries: config.tries.map(|t| t.clamp(1, TRIES_PER_BLOCK as u8)),
    }));
    let (tx, mut rx) = mpsc::unbounded_channel::<Result<PortResult, String>>();
    let permits = Arc::new(Semaphore::new(concurrency));
    let order = Permutation::new(ports.len() as u64, CookieKey::random());
    let mut summary = ScanSummary::empty(target);
    // Probes run as tasks of this set, so dropping the scan (a cancelled
    // visitor) aborts them: none is left waiting for a slot and sending later.
    let mut tasks = JoinSet::new();
    let mut record = |msg: Result<PortResult, String>, summary: &mut ScanSummary| match msg {
        Ok(r) => {
            summary.ports += 1;
            summary.counts[r.state as usize] += 1;
            summary.sent += u64::from(r.tries);
            on_result(r);
        }
        Err(e) => {
            summary.error.get_or_insert(e);
        }
    };
    for i in 0..order.len() {
        let port = ports.ports()[order.nth(i) as usize];
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        while let Ok(msg) = rx.try_recv() {
            record(msg, &mut summary);
        }
        while tasks.try_join_next().is_some() {}
        if summary.error.is_some() {
            break;
        }
        let tx = tx.clone();
        let shared = shared.clone();
        tasks.spawn(async move {
            let result = probe_port(target, port, &shared).await;
            let _ = tx.send(result);
            drop(permit);
        });
    }
    drop(tx);
    while let Some(msg) = rx.recv().await {
        record(msg, &mut summary);
    }
    let s = shared.lock().unwrap_or_else(|p| p.into_inner());
    summary.lost_before = s.lost_before;
    summary.tries_limit = s.tries_limit();
    summary.srtt = s.rtt.srtt();
    summary.elapsed = started.elapsed();
    summary
}

async fn probe_port(
    target: IpAddr,
    port: u16,
    shared: &Mutex<Shared>,
) -> Result<PortResult, String> {
    let addr = SocketAddr::new(target, port);
    let mut tries: u8 = 0;
    let mut shortage_since: Option<Instant> = None;
    loop {
        let pacers = shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pacers
            .clone();
        // Every attempt (a first try, a retry, a retry after a local shortage)
        // is one SYN on the wire, so every one takes a slot.
        let now = Instant::now();
        if let Some(at) = pacers.iter().map(|p| p.reserve(now)).max()
            && at > now
        {
            tokio::time::sleep_until(at.into()).await;
        }
        let timeout = shared.lock().unwrap_or_else(|p| p.into_inner()).rtt.rto();
        let sent = Instant::now();
        let outcome = attempt(addr, timeout).await;
        let reason = match outcome {
            Attempt::Answer(reason) => reason,
            Attempt::Timeout => {
                tries += 1;
                let limit = shared
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .tries_limit();
                if tries >= limit {
                    let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
                    s.decided += 1;
                    return Ok(result(target, port, Reason::NoResponse, None, tries));
                }
                continue;
            }
            Attempt::LocalShortage(e) => {
                let since = *shortage_since.get_or_insert_with(Instant::now);
                if since.elapsed() > LOCAL_ERROR_PATIENCE {
                    return Err(format!(
                        "local resources exhausted for {}s while probing port {port}: {e}",
                        LOCAL_ERROR_PATIENCE.as_secs()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            Attempt::Fatal(e) => return Err(format!("probing port {port}: {e}")),
        };
        let rtt = sent.elapsed();
        let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
        s.rtt.sample(rtt);
        s.decided += 1;
        if reason.state() != PortState::Filtered {
            s.answers += 1;
            if tries > 0 {
                s.lost_before += 1;
            }
        }
        return Ok(result(target, port, reason, Some(rtt), tries + 1));
    }
}

fn result(
    target: IpAddr,
    port: u16,
    reason: Reason,
    rtt: Option<Duration>,
    tries: u8,
) -> PortResult {
    PortResult {
        target,
        port,
        proto: Proto::Tcp,
        state: reason.state(),
        reason,
        rtt,
        tries,
        ttl: None,
        window: None,
        evidence: None,
    }
}

enum Attempt {
    Answer(Reason),
    Timeout,
    LocalShortage(io::Error),
    Fatal(io::Error),
}

async fn attempt(addr: SocketAddr, timeout: Duration) -> Attempt {
    let socket = match new_socket(addr) {
        Ok(s) => s,
        Err(e) => return classify_error(e),
    };
    match tokio::time::timeout(timeout, socket.connect(addr)).await {
        Err(_) => Attempt::Timeout,
        Ok(Ok(_stream)) => Attempt::Answer(Reason::Connected),
        Ok(Err(e)) => classify_error(e),
    }
}

fn new_socket(addr: SocketAddr) -> io::Result<tokio::net::TcpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // Close with a RST: no TIME_WAIT, so ephemeral ports are reusable at once.
    s.set_linger(Some(Duration::ZERO))?;
    s.set_nonblocking(true)?;
    s.set_cloexec(true)?;
    Ok(tokio::net::TcpSocket::from_std_stream(s.into()))
}

fn classify_error(e: io::Error) -> Attempt {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => Attempt::Answer(Reason::ConnRefused),
        Some(libc::EHOSTUNREACH) | Some(libc::EACCES) | Some(libc::EPERM) => {
            Attempt::Answer(Reason::HostUnreachable)
        }
        Some(libc::ENETUNREACH) => Attempt::Answer(Reason::NetUnreachable),
        Some(libc::ETIMEDOUT) => Attempt::Timeout,
        Some(libc::EMFILE)
        | Some(libc::ENFILE)
        | Some(libc::EADDRNOTAVAIL)
        | Some(libc::ENOBUFS)
        | Some(libc::ENOMEM)
        | Some(libc::EADDRINUSE)
        | Some(libc::EAGAIN)
        | Some(libc::EINTR) => Attempt::LocalShortage(e),
        _ => Attempt::Fatal(e),
    }
}

/// Connections in flight: bounded by the open-file limit (minus a reserve for
/// the rest of the program) and half the ephemeral port range, at most 8192.
fn default_concurrency() -> usize {
    let files = crate::sys::open_file_limit().unwrap_or(1024);
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|v| v.parse::<usize>().ok());
            Some(it.next()??..=it.next()??)
        })
        .map(|r| r.count())
        .unwrap_or(28_232);
    (files.saturating_sub(64)).min(ephemeral / 2).clamp(1, 8192)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_errors_are_not_port_states() {
        for errno in [libc::EMFILE, libc::EADDRNOTAVAIL, libc::ENOBUFS] {
            assert!(matches!(
                classify_error(io::Error::from_raw_os_error(errno)),
                Attempt::LocalShortage(_)
            ));
        }
        assert!(matches!(
            classify_error(io::Error::from_raw_os_error(libc::ECONNREFUSED)),
            Attempt::Answer(Reason::ConnRefused)
        ));
        assert!(matches!(
            classify_error(io::Error::from_raw_os_error(libc::EHOSTUNREACH)),
            Attempt::Answer(Reason::HostUnreachable)
        ));
    }

    #[test]
    fn concurrency_is_bounded() {
        let c = default_concurrency();
        assert!((1..=8192).contains(&c), "{c}");
    }

    /// Loopback only: two scans sharing a budget of 200 attempts per second
    /// take, together, as long as 200 per second allows, and both progress.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scans_sharing_a_budget_keep_to_it_together() {
        let budget = RateBudget::new(200);
        let config = ConnectConfig {
            tries: Some(1),
            concurrency: Some(64),
            budget: Some(budget),
            ..ConnectConfig::default()
        };
        let started = Instant::now();
        let scan = |range: std::ops::RangeInclusive<u16>| {
            let config = config.clone();
            async move {
                let ports = PortList::from_ports(range.collect());
                let s = connect_scan("127.0.0.1".parse().unwrap(), &ports, config, |_| {}).await;
                (s, started.elapsed())
            }
        };
        let ((a, a_end), (b, b_end)) = tokio::join!(scan(1..=150), scan(151..=300));
        let total = a.sent + b.sent;
        assert_eq!((a.ports, b.ports), (150, 150));
        assert!(total >= 300, "{total}");
        let elapsed = a_end.max(b_end);
        // 300 attempts at 200/s: at least ~1.5 s (minus the 2-attempt burst).
        let rate = total as f64 / elapsed.as_secs_f64();
        assert!(
            rate <= 200.0 * 1.05,
            "{total} attempts in {elapsed:?} = {rate:.0}/s"
        );
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
        // Neither scan waited for the other to finish.
        let first = a_end.min(b_end);
        assert!(
            first.as_secs_f64() > 0.8 * elapsed.as_secs_f64(),
            "{a_end:?} {b_end:?}"
        );
    }

    /// Loopback only: a scan's own rate caps it too.
    #[tokio::test]
    async fn a_scans_own_rate_caps_it() {
        let ports = PortList::from_ports((1..=100).collect());
        let started = Instant::now();
        let s = connect_scan(
            "127.0.0.1".parse().unwrap(),
            &ports,
            ConnectConfig {
                tries: Some(1),
                rate: Some(250),
                ..ConnectConfig::default()
            },
            |_| {},
        )
        .await;
        let elapsed = started.elapsed();
        assert_eq!(s.ports, 100);
        assert!(elapsed >= Duration::from_millis(380), "{elapsed:?}");
    }

    /// Dropping a scan stops its probes: nothing waits for a slot and sends later.
    #[tokio::test]
    async fn a_dropped_scan_sends_nothing_more() {
        let budget = RateBudget::new(50);
        let ports = PortList::from_ports((1..=100).collect());
        let config = ConnectConfig {
            tries: Some(1),
            budget: Some(budget.clone()),
            ..ConnectConfig::default()
        };
        let scan = connect_scan("127.0.0.1".parse().unwrap(), &ports, config, |_| {});
        let _ = tokio::time::timeout(Duration::from_millis(200), scan).await;
        // The aborted probes' reservations are spent, but none of them is
        // still running: a new reservation is not pushed behind 100 sleepers.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(budget.holders(), 1, "every probe task is gone");
    }

    /// Loopback only: a listener is open, a just-closed port is closed.
    #[tokio::test]
    async fn loopback_open_and_closed() {
        let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open_port = open.local_addr().unwrap().port();
        let closed_port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let ports = PortList::from_ports(vec![open_port, closed_port]);
        let mut results = Vec::new();
        let summary = connect_scan(
            "127.0.0.1".parse().unwrap(),
            &ports,
            ConnectConfig::default(),
            |r| results.push(r),
        )
        .await;
        results.sort_by_key(|r| r.port);
        let state_of = |p| results.iter().find(|r| r.port == p).unwrap().state;
        assert_eq!(state_of(open_port), PortState::Open);
        assert_eq!(state_of(closed_port), PortState::Closed);
        assert_eq!(summary.ports, 2);
        assert!(summary.error.is_none());
    }
}
