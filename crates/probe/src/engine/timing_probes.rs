//! Timing probes: deliberate probes to TCP ports that have already answered,
//! so that a scan of a host that answers almost nothing still gets round-trip
//! and drop evidence every few milliseconds.
//!
//! A home router drops all but a dozen of 65,536 ports. Its scan's own
//! answers come seconds apart, so the pacer ([`crate::timing::PathPacer`])
//! would learn nothing about the path: it could neither grow fast on a fast
//! path nor notice that it has crept past a slow one's capacity (issue 9
//! measured 25 % of probes tail-dropped behind 2 Mbit/s, and open ports
//! reported stealth). Timing probes go, among the scan's own probes and
//! within the same pace and rate caps, to ports known to answer; each answer
//! is an RTT sample that queues in the same bottleneck, and each probe left
//! unanswered is drop evidence.
//!
//! Only TCP answers (SYN-ACK, RST) qualify: they are the kernel's own
//! replies, cost the target nothing, and are not rate-limited like ICMP
//! errors. UDP scans send none (a service's answer may be many times the
//! request). Each probe uses a (source port, port) pair that no try of that
//! port used, so its answer cannot be mistaken for a late answer to a try,
//! and a pair is reused only after [`REUSE`]: a target that still holds the
//! half-open connection of the last use (our kernel's RST did not reach it)
//! answers a repeated SYN at most every 500 ms (Linux's
//! `tcp_invalid_ratelimit`), and a pair asked sooner would look lost.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::TRIES_PER_BLOCK;

/// Ports kept as timing targets. RST ports first: an open port whose
/// SYN-ACK is not answered by our kernel's RST (lost on the way, under
/// congestion most of all) retransmits it a second or more later, and that
/// copy would be taken for the answer to the pair's next use. A closed port
/// sends one RST per SYN and nothing later.
const TARGETS: usize = 16;
/// How long a (source port, port) pair rests between uses.
const REUSE: Duration = Duration::from_millis(600);
/// A timing probe waits for this many of the scan's own probes: whatever
/// holds the scan back (a `--rate` of 20/s in the web service, its window),
/// timing probes stay a sixteenth of what it sends, and never crowd out its
/// ports.
const SHARE: u64 = 16;
/// Timing probes per second: a sixteenth of the pace, within these bounds.
/// The ceiling stays below the 200 RSTs per second that FreeBSD and macOS
/// allow, and still gives a 40 ms round eight samples.
const MIN_PER_SEC: f64 = 20.0;
const MAX_PER_SEC: f64 = 200.0;
/// The source-port offsets of the block timing probes may use: every try
/// offset but the resolve phase's (the last one).
const OFFSETS: u16 = TRIES_PER_BLOCK - 1;

/// A timing target: a port that answered, and when each source-port offset
/// was last used for it.
#[derive(Debug, Clone)]
struct Target {
    port: u16,
    /// Whether it answered SYN-ACK (open) rather than RST (closed).
    open: bool,
    /// Offsets below this were used by the port's own tries.
    first_free: u16,
    last_use: [Option<Instant>; OFFSETS as usize],
}

/// A timing probe in flight.
#[derive(Debug, Clone, Copy)]
struct Outstanding {
    offset: u16,
    port: u16,
    sent: Instant,
}

/// The timing probes of one scan (see the module documentation).
#[derive(Debug, Default)]
pub(super) struct TimingProbes {
    targets: Vec<Target>,
    outstanding: VecDeque<Outstanding>,
    last_sent: Option<Instant>,
    /// When the scan's own answers last gave the pacer a sample.
    last_own_sample: Option<Instant>,
    /// The scan's own probes since the last timing probe.
    own_probes: u64,
    /// Probes sent, answered and given up on.
    pub(super) sent: u64,
    pub(super) answered: u64,
    pub(super) lost: u64,
}

impl TimingProbes {
    /// A port answered `open` (SYN-ACK) or closed (RST) to a try whose
    /// source-port offset was below `tries`: keep it as a target.
    pub(super) fn add_target(&mut self, port: u16, open: bool, tries: u8) {
        if self.targets.iter().any(|t| t.port == port) {
            return;
        }
        let target = Target {
            port,
            open,
            first_free: u16::from(tries),
            last_use: [None; OFFSETS as usize],
        };
        if self.targets.len() < TARGETS {
            self.targets.push(target);
        } else if !open && let Some(o) = self.targets.iter_mut().find(|t| t.open) {
            *o = target;
        }
    }

    /// The scan sent `n` probes of its own.
    pub(super) fn own_probes(&mut self, n: usize) {
        self.own_probes += n as u64;
    }

    /// The scan's own answer gave the pacer an RTT sample at `now`.
    pub(super) fn own_sample(&mut self, now: Instant) {
        self.last_own_sample = Some(now);
    }

    /// The gap between timing probes at pace `rate`.
    fn interval(rate: f64) -> Duration {
        Duration::from_secs_f64(1.0 / (rate / 16.0).clamp(MIN_PER_SEC, MAX_PER_SEC))
    }

    /// The next timing probe due at `now` at pace `rate`, as (source-port
    /// offset, port), marked sent; `None` when none is due, no pair is
    /// rested, or the scan's own answers give samples often enough.
    pub(super) fn next(&mut self, now: Instant, rate: f64) -> Option<(u16, u16)> {
        if self.targets.is_empty() {
            return None;
        }
        let interval = Self::interval(rate);
        if self.own_probes < SHARE - 1
            || self.last_sent.is_some_and(|t| now < t + interval)
            || self.last_own_sample.is_some_and(|t| now < t + interval)
        {
            return None;
        }
        // Closed ports first (see `TARGETS`), the longest-rested pair of
        // the first kind that has one.
        // (`None`, never used, sorts before any time.)
        let mut best: Option<(bool, Option<Instant>, usize, u16)> = None;
        for (i, target) in self.targets.iter().enumerate() {
            for offset in target.first_free..OFFSETS {
                let last = target.last_use[usize::from(offset)];
                if last.is_some_and(|l| now < l + REUSE) {
                    continue;
                }
                if best.is_none_or(|b| (target.open, last) < (b.0, b.1)) {
                    best = Some((target.open, last, i, offset));
                }
            }
        }
        let (_, _, i, offset) = best?;
        let target = &mut self.targets[i];
        target.last_use[usize::from(offset)] = Some(now);
        let port = target.port;
        self.outstanding.push_back(Outstanding {
            offset,
            port,
            sent: now,
        });
        self.last_sent = Some(now);
        self.own_probes = 0;
        self.sent += 1;
        Some((offset, port))
    }

    /// An answer from `port` to source-port offset `offset`: when its
    /// timing probe left, if it answers one still in flight.
    pub(super) fn answer(&mut self, offset: u16, port: u16) -> Option<Instant> {
        let i = self
            .outstanding
            .iter()
            .position(|o| o.offset == offset && o.port == port)?;
        let o = self.outstanding.remove(i)?;
        self.answered += 1;
        Some(o.sent)
    }

    /// Gives up on timing probes sent more than `timeout` before `now`;
    /// calls `lost` with each one's send time.
    pub(super) fn expire(
        &mut self,
        now: Instant,
        timeout: Duration,
        mut lost: impl FnMut(Instant),
    ) {
        while let Some(o) = self.outstanding.front().copied() {
            if now < o.sent + timeout {
                break;
            }
            self.outstanding.pop_front();
            self.lost += 1;
            lost(o.sent);
        }
    }

    /// When the oldest timing probe in flight times out.
    pub(super) fn deadline(&self, timeout: Duration) -> Option<Instant> {
        self.outstanding.front().map(|o| o.sent + timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_fresh_rested_and_never_a_tries_own() {
        let mut t = TimingProbes::default();
        let t0 = Instant::now();
        assert_eq!(t.next(t0, 100_000.0), None, "no target yet");
        // Port 80 answered its second try: offsets 0 and 1 are its tries'.
        t.add_target(80, true, 2);
        let mut used = Vec::new();
        let mut now = t0;
        for _ in 0..400 {
            t.own_probes(100);
            if let Some(pair) = t.next(now, 100_000.0) {
                used.push((pair, now));
            }
            now += Duration::from_millis(5);
        }
        assert!(
            used.iter()
                .all(|((off, port), _)| *port == 80 && *off >= 2 && *off < OFFSETS)
        );
        // 13 usable offsets, each rested 600 ms: 13 in the first 600 ms.
        assert_eq!(used.iter().filter(|(_, at)| *at < t0 + REUSE).count(), 13);
        for (i, (pair, at)) in used.iter().enumerate() {
            if let Some((_, next)) = used[i + 1..].iter().find(|(p, _)| p == pair) {
                assert!(
                    *next >= *at + REUSE,
                    "{pair:?} reused after {:?}",
                    *next - *at
                );
            }
        }
    }

    #[test]
    fn answers_match_probes_in_flight_and_silence_is_loss() {
        let mut t = TimingProbes::default();
        let t0 = Instant::now();
        t.add_target(443, true, 1);
        t.add_target(25, false, 1);
        t.own_probes(15);
        let a = t.next(t0, 16_000.0).unwrap();
        t.own_probes(15);
        let b = t.next(t0 + Duration::from_millis(5), 16_000.0).unwrap();
        assert_ne!(a, b);
        assert_eq!(t.answer(a.0, a.1), Some(t0));
        assert_eq!(t.answer(a.0, a.1), None, "answered once");
        assert_eq!(t.answer(a.0, 9), None, "not a timing probe");
        let mut lost = Vec::new();
        t.expire(
            t0 + Duration::from_millis(50),
            Duration::from_millis(100),
            |s| lost.push(s),
        );
        assert!(lost.is_empty());
        t.expire(
            t0 + Duration::from_millis(200),
            Duration::from_millis(100),
            |s| lost.push(s),
        );
        assert_eq!(lost, vec![t0 + Duration::from_millis(5)]);
        assert_eq!((t.sent, t.answered, t.lost), (2, 1, 1));
    }

    #[test]
    fn own_samples_and_the_pace_space_them_out() {
        let mut t = TimingProbes::default();
        let t0 = Instant::now();
        t.add_target(22, true, 1);
        t.own_probes(1_000);
        t.own_sample(t0);
        let none = t.next(t0, 1_600.0);
        assert_eq!(none, None, "the scan's own answer is evidence enough");
        // 1,600/s pace: 100 timing probes/s, 10 ms apart.
        assert!(t.next(t0 + Duration::from_millis(10), 1_600.0).is_some());
        t.own_probes(1_000);
        assert_eq!(t.next(t0 + Duration::from_millis(15), 1_600.0), None);
        assert!(t.next(t0 + Duration::from_millis(20), 1_600.0).is_some());
        // A scan held back to a few probes a second (a rate cap) gets one
        // timing probe per 16 of its own, however long it waits.
        let later = t0 + Duration::from_secs(10);
        t.own_probes(14);
        assert_eq!(t.next(later, 1_600.0), None, "14 own probes since the last");
        t.own_probes(1);
        assert!(t.next(later, 1_600.0).is_some());
        assert_eq!(TimingProbes::interval(1e9), Duration::from_millis(5));
        assert_eq!(TimingProbes::interval(1.0), Duration::from_millis(50));
    }

    #[test]
    fn closed_ports_replace_open_ones_when_full() {
        let mut t = TimingProbes::default();
        for p in 0..TARGETS as u16 {
            t.add_target(1000 + p, true, 1);
        }
        t.add_target(25, false, 1);
        assert_eq!(t.targets.len(), TARGETS);
        assert!(t.targets.iter().any(|x| x.port == 25));
        t.add_target(81, true, 1);
        assert!(!t.targets.iter().any(|x| x.port == 81));
        // The closed port's 14 pairs go first, then open ones.
        let t0 = Instant::now();
        let ports: Vec<u16> = (0..15u32)
            .filter_map(|i| {
                t.own_probes(16);
                t.next(t0 + Duration::from_millis(5 * u64::from(i)), 1e9)
            })
            .map(|(_, p)| p)
            .collect();
        assert_eq!(ports.len(), 15);
        assert!(ports[..14].iter().all(|&p| p == 25), "{ports:?}");
        assert_ne!(ports[14], 25);
    }
}
