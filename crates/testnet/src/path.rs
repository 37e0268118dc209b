//! A userspace delay line between the scanner and the target: the kernel here
//! has no netem, so an emulated internet path (delay, jitter, loss, a
//! bottleneck and its queue) is a pair of threads per direction in the test
//! process.
//!
//! Layout when a [`PathSpec`] is given: scanner `veth0` ⇄ `pa` in a third
//! "path" namespace, `pb` ⇄ target `veth1`. The path namespace has no
//! addresses and IPv6 off, so its kernel neither answers nor sends anything;
//! the forwarder reads each inner end with an `AF_PACKET` socket bound to it
//! and writes the frame, later, to the other inner end. Only frames whose
//! source and destination are both test addresses (198.18.0.0/15, ARP about
//! two of them, or the IPv6 documentation and ULA ranges) are forwarded;
//! everything else is dropped and counted.
//!
//! Each direction models one bottleneck link: random loss on arrival, then a
//! drop-tail queue in front of a link of `rate_bps` (serialization delay
//! `frame bits / rate`), then the one-way propagation delay plus a uniform
//! jitter in ±`jitter`. The release time of a frame is never earlier than that
//! of the frame before it, so the path keeps packet order (as a real
//! single-queue path does; jitter therefore only stretches gaps).
//!
//! Per direction, a receiving thread computes each frame's release time and
//! appends it to a FIFO (release times are monotonic, so no heap is needed);
//! a releasing thread sleeps until shortly before the head's release time and
//! spins the rest (timer slack set to 1 µs), then sends it. How late each
//! frame left is measured and reported in [`DirectionStats`].

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::socket::{
    AddressFamily, LinkAddr, MsgFlags, SockFlag, SockProtocol, SockType, bind, recvfrom, send,
    setsockopt, socket, sockopt,
};
use nix::sys::time::{TimeVal, TimeValLike};

/// Frames held in flight per direction are capped at this many bytes whatever
/// the spec (a path without a rate cap has no queue of its own), so a test that
/// floods the path cannot grow the process without bound.
pub const MAX_IN_FLIGHT_BYTES: usize = 32 << 20;

/// The largest frame the forwarder handles (Ethernet header + 1500-byte MTU);
/// bigger ones (offloaded super-frames) are dropped and counted.
const MAX_FRAME: usize = 1514;

/// How much of a direction's bottleneck buffer may be queued before tail drop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum QueueLimit {
    /// The queue holds this much time of the bottleneck rate (a "50 ms buffer").
    Millis(u32),
    /// The queue holds this many bytes of frames.
    Bytes(usize),
}

/// One direction of the emulated path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Direction {
    /// One-way propagation delay.
    pub delay: Duration,
    /// Each frame's delay varies uniformly within ±`jitter` (order is kept).
    pub jitter: Duration,
    /// Random loss, in percent (0–100), applied as frames arrive.
    pub loss_percent: f64,
    /// Bottleneck rate in bits per second (Ethernet frame bytes × 8); `None`
    /// is no cap (and no queue).
    pub rate_bps: Option<u64>,
    /// The bottleneck queue; only meaningful with a rate.
    pub queue: QueueLimit,
}

impl Default for Direction {
    fn default() -> Direction {
        Direction {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss_percent: 0.0,
            rate_bps: None,
            queue: QueueLimit::Millis(50),
        }
    }
}

/// The emulated path between scanner and target, each direction on its own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PathSpec {
    /// Scanner → target (probes; the visitor's uplink seen from the server).
    pub to_target: Direction,
    /// Target → scanner (answers).
    pub to_scanner: Direction,
    /// Seed of the loss and jitter draws, so a run can be repeated.
    pub seed: u64,
}

impl PathSpec {
    /// The same link in both directions.
    pub fn symmetric(d: Direction) -> PathSpec {
        PathSpec {
            to_target: d,
            to_scanner: d,
            seed: 0x4842_4d50_4154_4831,
        }
    }

    /// The home path: `one_way_ms` ± `jitter_ms`, `loss` % each way,
    /// a `mbit` Mbit/s bottleneck with a `queue_ms` buffer, both directions.
    pub fn home(one_way_ms: u64, jitter_ms: u64, loss: f64, mbit: f64, queue_ms: u32) -> Self {
        PathSpec::symmetric(Direction {
            delay: Duration::from_millis(one_way_ms),
            jitter: Duration::from_millis(jitter_ms),
            loss_percent: loss,
            rate_bps: Some((mbit * 1e6) as u64),
            queue: QueueLimit::Millis(queue_ms),
        })
    }
}

/// What one direction of the path did, for assertions and benchmark notes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectionStats {
    /// Test frames that arrived at the path.
    pub received: u64,
    /// Frames sent on to the other side.
    pub forwarded: u64,
    /// Frames dropped by the random loss.
    pub lost: u64,
    /// Frames tail-dropped at the bottleneck queue.
    pub queue_dropped: u64,
    /// Frames dropped because the in-flight cap ([`MAX_IN_FLIGHT_BYTES`]) was reached.
    pub overflow_dropped: u64,
    /// Frames not forwarded because they are not test traffic (or too big).
    pub ignored: u64,
    /// Frames whose send on the far interface failed (e.g. ENOBUFS).
    pub send_errors: u64,
    /// Largest lateness of a release against its scheduled time, in µs.
    pub max_late_us: u64,
    /// Sum of the lateness of all releases, in µs (divide by `forwarded`).
    pub total_late_us: u64,
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    forwarded: AtomicU64,
    lost: AtomicU64,
    queue_dropped: AtomicU64,
    overflow_dropped: AtomicU64,
    ignored: AtomicU64,
    send_errors: AtomicU64,
    max_late_us: AtomicU64,
    total_late_us: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> DirectionStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DirectionStats {
            received: g(&self.received),
            forwarded: g(&self.forwarded),
            lost: g(&self.lost),
            queue_dropped: g(&self.queue_dropped),
            overflow_dropped: g(&self.overflow_dropped),
            ignored: g(&self.ignored),
            send_errors: g(&self.send_errors),
            max_late_us: g(&self.max_late_us),
            total_late_us: g(&self.total_late_us),
        }
    }
}

/// Small, fast, seedable generator for loss and jitter draws (splitmix64);
/// statistical quality is ample for this.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The bottleneck and delay model of one direction, apart from I/O so it can be
/// unit-tested with made-up arrival times.
struct Model {
    spec: Direction,
    rng: Rng,
    /// When the bottleneck link finishes sending what it has accepted.
    link_free_at: Option<Instant>,
    /// Release time of the previous frame (order is kept).
    last_release: Option<Instant>,
}

#[derive(Debug, PartialEq)]
enum Verdict {
    Lost,
    QueueFull,
    Release(Instant),
}

impl Model {
    fn new(spec: Direction, seed: u64) -> Model {
        Model {
            spec,
            rng: Rng(seed),
            link_free_at: None,
            last_release: None,
        }
    }

    fn arrive(&mut self, now: Instant, len: usize) -> Verdict {
        if self.spec.loss_percent > 0.0 && self.rng.unit() * 100.0 < self.spec.loss_percent {
            return Verdict::Lost;
        }
        let mut depart = now;
        if let Some(rate) = self.spec.rate_bps.filter(|r| *r > 0) {
            let start = self.link_free_at.filter(|t| *t > now).unwrap_or(now);
            let backlog = start - now;
            let limit = match self.spec.queue {
                QueueLimit::Millis(ms) => Duration::from_millis(u64::from(ms)),
                QueueLimit::Bytes(b) => Duration::from_secs_f64(b as f64 * 8.0 / rate as f64),
            };
            if backlog > limit {
                return Verdict::QueueFull;
            }
            let serialize = Duration::from_secs_f64(len as f64 * 8.0 / rate as f64);
            depart = start + serialize;
            self.link_free_at = Some(depart);
        }
        let mut release = depart + self.spec.delay;
        if !self.spec.jitter.is_zero() {
            let j = self.spec.jitter.as_secs_f64() * (2.0 * self.rng.unit() - 1.0);
            release = if j >= 0.0 {
                release + Duration::from_secs_f64(j)
            } else {
                release
                    .checked_sub(Duration::from_secs_f64(-j))
                    .unwrap_or(release)
                    .max(depart)
            };
        }
        if let Some(last) = self.last_release {
            release = release.max(last);
        }
        self.last_release = Some(release);
        Verdict::Release(release)
    }
}

/// Is this Ethernet frame test traffic: IPv4 between two 198.18.0.0/15
/// addresses, ARP about two such addresses (nmap ARP-pings a host on its own
/// link even with `-Pn`), or IPv6 between two fd00::/8 or 2001:db8::/32
/// addresses? Length-checked: a truncated frame is not test traffic.
pub fn is_test_frame(frame: &[u8]) -> bool {
    if frame.len() < 14 {
        return false;
    }
    let ip = &frame[14..];
    let bench_v4 = |a: &[u8]| a[0] == 198 && a[1] & 0xfe == 18;
    match u16::from_be_bytes([frame[12], frame[13]]) {
        // Ethernet/IPv4 ARP: sender address at 14, target address at 24.
        0x0806 => {
            ip.len() >= 28
                && ip[..6] == [0, 1, 8, 0, 6, 4]
                && bench_v4(&ip[14..18])
                && bench_v4(&ip[24..28])
        }
        0x0800 => {
            ip.len() >= 20 && ip[0] >> 4 == 4 && bench_v4(&ip[12..16]) && bench_v4(&ip[16..20])
        }
        0x86dd => {
            ip.len() >= 40
                && ip[0] >> 4 == 6
                && [&ip[8..24], &ip[24..40]]
                    .iter()
                    .all(|a| a[0] == 0xfd || a[..4] == [0x20, 0x01, 0x0d, 0xb8])
        }
        _ => false,
    }
}

struct Flight {
    queue: VecDeque<(Instant, Vec<u8>)>,
    bytes: usize,
}

struct Shared {
    flight: Mutex<Flight>,
    wake: Condvar,
    counters: Counters,
}

/// The running forwarder; stops its threads when dropped.
pub struct Forwarder {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    to_target: Arc<Shared>,
    to_scanner: Arc<Shared>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("to_target", &self.to_target.counters.snapshot())
            .field("to_scanner", &self.to_scanner.counters.snapshot())
            .finish()
    }
}

/// Opens a packet socket bound to interface `name` in the calling thread's
/// namespace. The interface's link address comes from `getifaddrs`, which is
/// the one safe source of a `sockaddr_ll` (nix has no constructor for one).
fn packet_socket(name: &str) -> Result<OwnedFd, String> {
    let fd = socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::EthAll,
    )
    .map_err(|e| format!("packet socket: {e}"))?;
    let addr: LinkAddr = nix::ifaddrs::getifaddrs()
        .map_err(|e| format!("getifaddrs: {e}"))?
        .find_map(|a| {
            (a.interface_name == name)
                .then(|| a.address.and_then(|s| s.as_link_addr().copied()))
                .flatten()
        })
        .ok_or(format!("no link address for {name}"))?;
    bind(fd.as_raw_fd(), &addr).map_err(|e| format!("bind packet socket to {name}: {e}"))?;
    // Wake up regularly to notice a stop request.
    setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::milliseconds(50))
        .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
    // Bursts from a scanner at full speed must not overflow the socket before the model sees them.
    let _ = setsockopt(&fd, sockopt::RcvBufForce, &(8 << 20));
    Ok(fd)
}

impl Forwarder {
    /// Starts forwarding between `scanner_side` and `target_side`, two
    /// interfaces of namespace `path_ns` (which must exist).
    pub fn start(
        path_ns: &str,
        scanner_side: &str,
        target_side: &str,
        spec: &PathSpec,
    ) -> Result<Forwarder, String> {
        let (a, b) = crate::in_namespace(path_ns, || {
            Ok::<_, String>((
                Arc::new(packet_socket(scanner_side)?),
                Arc::new(packet_socket(target_side)?),
            ))
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let new_shared = || {
            Arc::new(Shared {
                flight: Mutex::new(Flight {
                    queue: VecDeque::new(),
                    bytes: 0,
                }),
                wake: Condvar::new(),
                counters: Counters::default(),
            })
        };
        let (to_target, to_scanner) = (new_shared(), new_shared());
        let mut threads = Vec::new();
        for (rx, tx, shared, d, seed) in [
            (&a, &b, &to_target, spec.to_target, spec.seed),
            (&b, &a, &to_scanner, spec.to_scanner, spec.seed ^ 0x5555),
        ] {
            let (rx, sh, st) = (rx.clone(), shared.clone(), stop.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("path-rx".into())
                    .spawn(move || receive_loop(&rx, &sh, Model::new(d, seed), &st))
                    .map_err(|e| e.to_string())?,
            );
            let (tx, sh, st) = (tx.clone(), shared.clone(), stop.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("path-tx".into())
                    .spawn(move || release_loop(&tx, &sh, &st))
                    .map_err(|e| e.to_string())?,
            );
        }
        Ok(Forwarder {
            stop,
            threads,
            to_target,
            to_scanner,
        })
    }

    /// Counters of the scanner → target direction.
    pub fn to_target(&self) -> DirectionStats {
        self.to_target.counters.snapshot()
    }

    /// Counters of the target → scanner direction.
    pub fn to_scanner(&self) -> DirectionStats {
        self.to_scanner.counters.snapshot()
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for s in [&self.to_target, &self.to_scanner] {
            s.wake.notify_all();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Linux `PACKET_OUTGOING`: a frame this host sent, looped back to packet sockets.
const PACKET_OUTGOING: u8 = 4;

fn receive_loop(fd: &OwnedFd, shared: &Shared, mut model: Model, stop: &AtomicBool) {
    let mut buf = vec![0u8; 65536];
    let c = &shared.counters;
    while !stop.load(Ordering::Relaxed) {
        let (n, from) = match recvfrom::<LinkAddr>(fd.as_raw_fd(), &mut buf) {
            Ok(r) => r,
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        };
        let now = Instant::now();
        // Our own transmissions on this interface (the other direction) come back
        // as outgoing copies; they are not arrivals.
        if from.is_some_and(|f| f.pkttype() == PACKET_OUTGOING) {
            continue;
        }
        let frame = &buf[..n];
        if n > MAX_FRAME || !is_test_frame(frame) {
            c.ignored.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        c.received.fetch_add(1, Ordering::Relaxed);
        match model.arrive(now, n) {
            Verdict::Lost => {
                c.lost.fetch_add(1, Ordering::Relaxed);
            }
            Verdict::QueueFull => {
                c.queue_dropped.fetch_add(1, Ordering::Relaxed);
            }
            Verdict::Release(at) => {
                let mut f = shared.flight.lock().expect("path lock");
                if f.bytes + n > MAX_IN_FLIGHT_BYTES {
                    c.overflow_dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                f.bytes += n;
                f.queue.push_back((at, frame.to_vec()));
                drop(f);
                shared.wake.notify_one();
            }
        }
    }
}

/// Sleep until this close to a release, then spin: sleeping alone is late by
/// the scheduler's wake-up latency.
const SPIN: Duration = Duration::from_micros(200);

fn release_loop(fd: &OwnedFd, shared: &Shared, stop: &AtomicBool) {
    let _ = nix::sys::prctl::set_timerslack(1_000);
    let c = &shared.counters;
    let mut f = shared.flight.lock().expect("path lock");
    while !stop.load(Ordering::Relaxed) {
        let Some(&(at, _)) = f.queue.front() else {
            f = shared
                .wake
                .wait_timeout(f, Duration::from_millis(50))
                .expect("path lock")
                .0;
            continue;
        };
        let now = Instant::now();
        if at > now + SPIN {
            f = shared
                .wake
                .wait_timeout(f, at - now - SPIN)
                .expect("path lock")
                .0;
            continue;
        }
        if at > now {
            drop(f);
            while Instant::now() < at {
                std::hint::spin_loop();
            }
            f = shared.flight.lock().expect("path lock");
            continue;
        }
        let (at, frame) = f.queue.pop_front().expect("front exists");
        f.bytes -= frame.len();
        drop(f);
        let late = Instant::now().saturating_duration_since(at).as_micros() as u64;
        if send(fd.as_raw_fd(), &frame, MsgFlags::empty()).is_ok() {
            c.forwarded.fetch_add(1, Ordering::Relaxed);
            c.total_late_us.fetch_add(late, Ordering::Relaxed);
            c.max_late_us.fetch_max(late, Ordering::Relaxed);
        } else {
            c.send_errors.fetch_add(1, Ordering::Relaxed);
        }
        f = shared.flight.lock().expect("path lock");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_v4(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[26..30].copy_from_slice(&src);
        f[30..34].copy_from_slice(&dst);
        f
    }

    #[test]
    fn only_test_addresses_are_forwarded() {
        assert!(is_test_frame(&frame_v4([198, 18, 0, 1], [198, 19, 3, 2])));
        assert!(!is_test_frame(&frame_v4([198, 18, 0, 1], [8, 8, 8, 8])));
        assert!(!is_test_frame(&frame_v4([10, 0, 0, 1], [198, 18, 0, 2])));
        assert!(!is_test_frame(&frame_v4([198, 20, 0, 1], [198, 18, 0, 2])));
        let mut arp = vec![0u8; 14 + 28];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        arp[14..20].copy_from_slice(&[0, 1, 8, 0, 6, 4]);
        arp[28..32].copy_from_slice(&[198, 18, 0, 1]);
        arp[38..42].copy_from_slice(&[198, 18, 0, 2]);
        assert!(is_test_frame(&arp));
        for n in 0..arp.len() {
            assert!(!is_test_frame(&arp[..n]), "truncated ARP, length {n}");
        }
        arp[38..42].copy_from_slice(&[192, 168, 0, 1]);
        assert!(!is_test_frame(&arp));
        let mut other = frame_v4([198, 18, 0, 1], [198, 18, 0, 2]);
        other[12..14].copy_from_slice(&[0x88, 0xcc]);
        assert!(!is_test_frame(&other));
        let mut v6 = vec![0u8; 14 + 40];
        v6[12..14].copy_from_slice(&[0x86, 0xdd]);
        v6[14] = 0x60;
        v6[22] = 0xfd;
        v6[38..42].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        assert!(is_test_frame(&v6));
        v6[38] = 0x26;
        assert!(!is_test_frame(&v6));
    }

    #[test]
    fn truncated_frames_are_not_test_traffic() {
        let f = frame_v4([198, 18, 0, 1], [198, 18, 0, 2]);
        for n in 0..f.len() {
            assert!(!is_test_frame(&f[..n]), "length {n}");
        }
        assert!(is_test_frame(&f));
    }

    #[test]
    fn serialization_and_queue_limit() {
        // 1 Mbit/s: a 1250-byte frame takes 10 ms; a 50 ms queue holds 5 more behind the one on the wire.
        let d = Direction {
            delay: Duration::from_millis(20),
            rate_bps: Some(1_000_000),
            queue: QueueLimit::Millis(50),
            ..Direction::default()
        };
        let mut m = Model::new(d, 1);
        let t0 = Instant::now();
        let mut released = Vec::new();
        let mut dropped = 0;
        for _ in 0..20 {
            match m.arrive(t0, 1250) {
                Verdict::Release(at) => released.push(at - t0),
                Verdict::QueueFull => dropped += 1,
                Verdict::Lost => unreachable!(),
            }
        }
        assert_eq!(released.len(), 6, "{released:?}");
        assert_eq!(dropped, 14);
        for (i, r) in released.iter().enumerate() {
            let want = Duration::from_millis(20 + 10 * (i as u64 + 1));
            assert!(r.abs_diff(want) < Duration::from_micros(1), "{i}: {r:?}");
        }
        // After the queue drains, frames are accepted again.
        assert!(matches!(
            m.arrive(t0 + Duration::from_millis(100), 1250),
            Verdict::Release(_)
        ));
    }

    #[test]
    fn byte_queue_limit_matches_time_limit() {
        let d = Direction {
            rate_bps: Some(8_000_000),
            queue: QueueLimit::Bytes(10_000),
            ..Direction::default()
        };
        let mut m = Model::new(d, 1);
        let t0 = Instant::now();
        let ok = (0..100)
            .filter(|_| matches!(m.arrive(t0, 1000), Verdict::Release(_)))
            .count();
        // 10,000 bytes of backlog allowed plus the frame being serialized.
        assert_eq!(ok, 11);
    }

    #[test]
    fn jitter_is_bounded_and_keeps_order() {
        let d = Direction {
            delay: Duration::from_millis(30),
            jitter: Duration::from_millis(5),
            ..Direction::default()
        };
        let mut m = Model::new(d, 7);
        let t0 = Instant::now();
        let mut last = t0;
        let mut spread = (Duration::MAX, Duration::ZERO);
        for i in 0..10_000u64 {
            // Arrivals 1 ms apart: wider than nothing, narrower than the jitter.
            let now = t0 + Duration::from_millis(i);
            let Verdict::Release(at) = m.arrive(now, 100) else {
                panic!()
            };
            assert!(at >= last, "reordered at {i}");
            let d = at - now;
            spread = (spread.0.min(d), spread.1.max(d));
            last = at;
        }
        assert!(spread.0 >= Duration::from_millis(25), "{spread:?}");
        assert!(spread.1 <= Duration::from_millis(35), "{spread:?}");
        assert!(spread.1 - spread.0 > Duration::from_millis(8), "{spread:?}");
    }

    #[test]
    fn loss_rate_is_the_configured_one() {
        let d = Direction {
            loss_percent: 2.0,
            ..Direction::default()
        };
        let mut m = Model::new(d, 3);
        let t0 = Instant::now();
        let lost = (0..100_000)
            .filter(|_| m.arrive(t0, 100) == Verdict::Lost)
            .count();
        // 2,000 expected, σ ≈ 44.
        assert!((1800..2200).contains(&lost), "{lost}");
    }
}
