//! Target-side rate limits on the answers a scan relies on.
//!
//! Hosts limit the errors they send: Linux answers one destination with
//! about one ICMP error per second after a burst of 6 (`icmp_ratelimit` 1000
//! ms, a token bucket per peer); FreeBSD and macOS cap ICMP errors and the
//! RSTs of closed ports at 200–250 per second; firewalls cap RSTs too. A
//! probe that meets an empty allowance gets no answer, so without care a
//! rejected port looks stealth and a closed one too.
//!
//! This module is the pure part: [`Detector`] is fed the arrival times of
//! ICMP errors and RSTs (and the count of probes sent) and tells a burst that
//! then falls to a steady low rate ([`Shape::Burst`], Linux) from a steady cap
//! ([`Shape::Cap`], 200/s), estimates the rate, and gives the pace at which to
//! re-probe ([`pace`]). The scan state machine (`engine/scan.rs`) decides when
//! to ask, and [`RateLimitReport`] is what a scan says about it.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Which answers the host limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitKind {
    /// ICMP errors (filtered ports).
    Icmp,
    /// RSTs (closed ports).
    Rst,
}

impl LimitKind {
    /// What the host limits, in words.
    pub const fn noun(self) -> &'static str {
        match self {
            LimitKind::Icmp => "ICMP errors",
            LimitKind::Rst => "RSTs",
        }
    }
}

/// How the limit shows in the arrival times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "shape")]
pub enum Shape {
    /// A quick burst of `burst` answers, then a steady low rate (a token
    /// bucket that refills slowly, like Linux's per-peer ICMP limit).
    Burst {
        /// Answers in the opening burst.
        burst: u32,
    },
    /// A steady cap with no burst to speak of (FreeBSD's `icmplim`, a
    /// firewall's `limit rate`).
    Cap,
}

/// A measured limit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    /// Its shape.
    #[serde(flatten)]
    pub shape: Shape,
    /// Answers per second once the burst is spent.
    pub per_second: f64,
}

/// What a scan found out about a host's rate limit and what re-probing at
/// the measured pace resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateLimitReport {
    /// Which answers are limited.
    pub kind: LimitKind,
    /// Shape and rate.
    #[serde(flatten)]
    pub estimate: Estimate,
    /// Ports silent when the limit was detected: each may be a rejection the
    /// limit swallowed.
    pub silent: usize,
    /// Of those, ports that answered when re-probed at the measured pace.
    pub resolved: usize,
    /// Ports still silent when the time budget ran out, reported with
    /// [`crate::Reason::NoResponseRateLimited`]: not verified stealth.
    pub unresolved: usize,
    /// Probes per second used to re-probe.
    pub pace: f64,
    /// The time budget for re-probing.
    #[serde(rename = "budget_s", serialize_with = "secs")]
    pub budget: Duration,
    /// Time spent re-probing.
    #[serde(rename = "spent_s", serialize_with = "secs")]
    pub spent: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e3).round() / 1e3)
}

impl RateLimitReport {
    /// The rate, rounded for people: "1" for 0.97, "200" for 203.4.
    pub fn rate_text(&self) -> String {
        let r = self.estimate.per_second;
        if r >= 20.0 {
            format!("{}", ((r / 10.0).round() * 10.0) as u64)
        } else if r >= 1.5 {
            format!("{}", r.round() as u64)
        } else {
            format!("{:.1}", r).trim_end_matches(".0").to_string()
        }
    }

    /// Whether silence in this scan may be the limit's doing (the verdict
    /// must not count such ports as stealth).
    pub fn explains_silence(&self) -> bool {
        self.unresolved > 0
    }
}

impl fmt::Display for RateLimitReport {
    /// One line for reports: the limit, and either how many silent ports may
    /// be rejections or that re-probing resolved them all.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            LimitKind::Icmp => "rejecting",
            LimitKind::Rst => "closed",
        };
        write!(
            f,
            "this host limits its {} to about {}/s",
            self.kind.noun(),
            self.rate_text()
        )?;
        if self.unresolved > 0 {
            let ports = if self.unresolved == 1 {
                "silent port may be"
            } else {
                "silent ports may be"
            };
            write!(f, ": {} {ports} {what} rather than silent", self.unresolved)?;
            if self.budget.is_zero() {
                write!(f, " (re-probing was off: a budget of 0 s)")
            } else {
                write!(
                    f,
                    " (re-probing at {:.0} probes/s for the whole {:.0} s budget resolved {})",
                    self.pace,
                    self.budget.as_secs_f64(),
                    self.resolved
                )
            }
        } else if self.silent == 0 {
            write!(f, "; the scan kept below it, and every port answered")
        } else {
            write!(
                f,
                "; re-probing the {} silent ports at {:.0} probes/s resolved {} in {:.1} s, and the rest stayed silent while the limit had room",
                self.silent,
                self.pace,
                self.resolved,
                self.spent.as_secs_f64()
            )
        }
    }
}

/// Arrivals kept per series: the first ones (the burst) and a window of the
/// latest, so memory stays bounded on a 65,536-port sweep.
const HEAD: usize = 64;
const TAIL: usize = 1024;

/// Arrival times of one kind of answer, relative to the scan's start.
#[derive(Debug, Clone, Default)]
struct Series {
    head: Vec<Duration>,
    tail: VecDeque<Duration>,
    total: u64,
    /// Answers to a retry (try > 0): the first try went unanswered.
    retried: u64,
}

impl Series {
    fn push(&mut self, at: Duration, retry: bool) {
        self.total += 1;
        self.retried += u64::from(retry);
        if self.head.len() < HEAD {
            self.head.push(at);
        } else {
            if self.tail.len() == TAIL {
                self.tail.pop_front();
            }
            self.tail.push_back(at);
        }
    }

    fn times(&self) -> Vec<Duration> {
        let mut t: Vec<Duration> = self.head.iter().chain(&self.tail).copied().collect();
        t.sort();
        t
    }

    fn retry_share(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.retried as f64 / self.total as f64
        }
    }
}

/// Fewest answers before a steady cap can be called.
pub const CAP_MIN_ANSWERS: u64 = 30;
/// Share of answers that must come on a retry before a cap is suspected:
/// far above what path loss does (2 % each way gives about 4 %).
pub const CAP_RETRY_SHARE: f64 = 0.5;

/// Collects what a scan sees and judges it (see the module documentation).
#[derive(Debug, Clone, Default)]
pub struct Detector {
    icmp: Series,
    rst: Series,
    syn_ack: Series,
    probes: u64,
}

impl Detector {
    /// An empty detector.
    pub fn new() -> Detector {
        Detector::default()
    }

    /// A probe left (for the send rate a cap is compared with).
    pub fn on_probe(&mut self) {
        self.probes += 1;
    }

    /// An ICMP error answered a probe, `at` after the scan started.
    pub fn on_icmp(&mut self, at: Duration, retry: bool) {
        self.icmp.push(at, retry);
    }

    /// A RST answered a probe.
    pub fn on_rst(&mut self, at: Duration, retry: bool) {
        self.rst.push(at, retry);
    }

    /// A SYN-ACK answered a probe: the control for path loss.
    pub fn on_syn_ack(&mut self, at: Duration, retry: bool) {
        self.syn_ack.push(at, retry);
    }

    /// ICMP errors seen so far.
    pub fn icmp_answers(&self) -> u64 {
        self.icmp.total
    }

    /// Answers of `kind` seen so far.
    pub fn answers(&self, kind: LimitKind) -> u64 {
        self.series(kind).total
    }

    fn series(&self, kind: LimitKind) -> &Series {
        match kind {
            LimitKind::Icmp => &self.icmp,
            LimitKind::Rst => &self.rst,
        }
    }

    /// The rate and shape of `kind`'s arrivals, assuming the limit binds
    /// (see [`estimate`]).
    pub fn estimate(&self, kind: LimitKind) -> Option<Estimate> {
        estimate(&self.series(kind).times())
    }

    /// Whether `kind`'s answers show a steady cap during the scan: many of
    /// them came only to a retry, far more often than SYN-ACKs did (path
    /// loss hits both alike), and probes left at least twice as fast as the
    /// answers came back. `elapsed` is the scan's age.
    pub fn cap(&self, kind: LimitKind, elapsed: Duration) -> Option<Estimate> {
        let s = self.series(kind);
        if s.total < CAP_MIN_ANSWERS || s.retry_share() < CAP_RETRY_SHARE {
            return None;
        }
        if self.syn_ack.total >= 5 && self.syn_ack.retry_share() * 2.0 > s.retry_share() {
            return None;
        }
        let e = self.estimate(kind)?;
        let send_rate = self.probes as f64 / elapsed.as_secs_f64().max(1e-3);
        (send_rate >= 2.0 * e.per_second).then_some(e)
    }
}

/// Estimates a limit from sorted arrival times of answers that the limit
/// cut (callers only ask when something shows that it binds).
///
/// The burst is the opening run of gaps shorter than a quarter of the mean
/// gap; the steady rate is the densest span of 2–50 gaps after it, so
/// pauses in sending (waiting for timeouts) do not drag the estimate down.
/// Needs three arrivals after the burst.
pub fn estimate(times: &[Duration]) -> Option<Estimate> {
    if times.len() < 3 {
        return None;
    }
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let mean = (times[times.len() - 1] - times[0]) / gaps.len() as u32;
    let leading = gaps.iter().take_while(|g| **g * 4 < mean).count();
    let burst = leading + 1;
    let steady = &times[leading..];
    if steady.len() < 3 {
        return None;
    }
    // Spans of half the arrivals (2 to 50 gaps): short enough to fit
    // between pauses, long enough to average out batching.
    let k = ((steady.len() - 1) / 2).clamp(2, 50).min(steady.len() - 1);
    let mut best = 0.0f64;
    for w in steady.windows(k + 1) {
        let span = (w[k] - w[0]).as_secs_f64();
        if span > 0.0 {
            best = best.max(k as f64 / span);
        }
    }
    if best <= 0.0 {
        return None;
    }
    // A burst of one or two is noise; a real token bucket shows a run.
    let shape = if burst >= 3 {
        Shape::Burst {
            burst: burst as u32,
        }
    } else {
        Shape::Cap
    };
    Some(Estimate {
        shape,
        per_second: best,
    })
}

/// Limits below this many answers per second are swept (see [`pace`]).
pub const SLOW_LIMIT: f64 = 20.0;

/// Probes per second at which to re-probe `silent` ports under `limit`.
///
/// Under a slow limit (a bucket refilling at a few tokens per second, like
/// Linux's) most silent ports are really silent and cost the host nothing,
/// so every silent port is swept once per token (at least once a second):
/// whichever rejected port comes first after a token returns gets its
/// answer, and the limit, not the sweep, sets the pace of answers. Under a
/// fast cap every silent port may answer, so the pace stays at 80 % of it.
pub fn pace(limit: &Estimate, silent: usize) -> f64 {
    let n = silent.max(1) as f64;
    if limit.per_second < SLOW_LIMIT {
        n * limit.per_second.max(1.0)
    } else {
        (limit.per_second * 0.8).max(1.0)
    }
}

/// Hosts one engine remembers.
pub const MEMORY_HOSTS: usize = 4096;
/// How long a host's ICMP errors are remembered.
pub const MEMORY_TTL: Duration = Duration::from_secs(600);

/// What one host's recent scans showed about its ICMP errors.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    /// When a scan last saw it.
    pub at: Instant,
    /// Ports that answered with an ICMP error (at most 16): canary targets.
    pub icmp_ports: Vec<u16>,
}

/// An engine's memory of the hosts that sent ICMP errors, across scans.
///
/// Back-to-back tests of one host share its allowance: a Service test
/// right after a Common test may find the bucket empty and see no ICMP
/// error at all, and nothing in that scan alone would tell its silence from
/// stealth. The earlier scan's rejecting ports let it check.
#[derive(Debug, Clone, Default)]
pub struct HostMemory {
    hosts: HashMap<IpAddr, Seen>,
}

impl HostMemory {
    /// An empty memory.
    pub fn new() -> HostMemory {
        HostMemory::default()
    }

    /// Records that `host` answered with ICMP errors on `ports`; the oldest
    /// host is forgotten when the memory is full.
    pub fn remember(&mut self, host: IpAddr, at: Instant, ports: &[u16]) {
        if ports.is_empty() {
            return;
        }
        if !self.hosts.contains_key(&host) && self.hosts.len() >= MEMORY_HOSTS {
            self.hosts
                .retain(|_, s| at.saturating_duration_since(s.at) < MEMORY_TTL);
            if self.hosts.len() >= MEMORY_HOSTS
                && let Some(oldest) = self.hosts.iter().min_by_key(|(_, s)| s.at).map(|(h, _)| *h)
            {
                self.hosts.remove(&oldest);
            }
        }
        let mut kept: Vec<u16> = ports.iter().copied().take(16).collect();
        kept.dedup();
        self.hosts.insert(
            host,
            Seen {
                at,
                icmp_ports: kept,
            },
        );
    }

    /// What a scan of `host` within the last [`MEMORY_TTL`] saw.
    pub fn recall(&self, host: IpAddr, now: Instant) -> Option<&Seen> {
        self.hosts
            .get(&host)
            .filter(|s| now.saturating_duration_since(s.at) < MEMORY_TTL)
    }

    /// Hosts remembered.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Whether no host is remembered.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_recalls_recent_hosts_and_stays_bounded() {
        let t0 = Instant::now();
        let mut m = HostMemory::new();
        let a: IpAddr = "198.18.0.2".parse().unwrap();
        m.remember(a, t0, &[]);
        assert!(m.is_empty(), "nothing to remember");
        m.remember(a, t0, &[135, 139]);
        assert_eq!(
            m.recall(a, t0 + Duration::from_secs(5)).unwrap().icmp_ports,
            [135, 139]
        );
        assert_eq!(m.recall(a, t0 + MEMORY_TTL), None);
        for i in 0..(MEMORY_HOSTS as u32 + 100) {
            let host = IpAddr::from((0xC612_0000u32 + i).to_be_bytes());
            m.remember(host, t0 + Duration::from_millis(u64::from(i)), &[1]);
        }
        assert_eq!(m.len(), MEMORY_HOSTS);
        // The oldest went first.
        assert_eq!(m.recall(a, t0), None);
    }

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|m| Duration::from_millis(*m)).collect()
    }

    /// Linux's per-peer bucket as a scan sees it: six answers within a few
    /// milliseconds, then one per second.
    #[test]
    fn tells_a_burst_then_one_per_second() {
        let t = ms(&[3, 3, 4, 4, 5, 6, 1003, 2004, 3003, 4005, 5004]);
        let e = estimate(&t).unwrap();
        assert_eq!(e.shape, Shape::Burst { burst: 6 });
        assert!((e.per_second - 1.0).abs() < 0.05, "{e:?}");
    }

    #[test]
    fn tells_a_steady_cap() {
        // 200/s, one answer every 5 ms with a little jitter.
        let t: Vec<Duration> = (0..300u64)
            .map(|i| Duration::from_micros(i * 5000 + (i * 7919) % 900))
            .collect();
        let e = estimate(&t).unwrap();
        assert_eq!(e.shape, Shape::Cap);
        assert!((180.0..230.0).contains(&e.per_second), "{e:?}");
    }

    #[test]
    fn a_pause_in_sending_does_not_lower_the_rate() {
        // Burst, then 1/s, a 10 s pause (nothing probed), then 1/s again.
        let t = ms(&[1, 1, 2, 2, 3, 3, 1001, 2001, 3001, 13001, 14001, 15001]);
        let e = estimate(&t).unwrap();
        assert!((e.per_second - 1.0).abs() < 0.05, "{e:?}");
    }

    #[test]
    fn too_few_arrivals_estimate_nothing() {
        assert_eq!(estimate(&[]), None);
        assert_eq!(estimate(&ms(&[1, 2])), None);
        // A burst with nothing after it says nothing about the steady rate.
        assert_eq!(estimate(&ms(&[1, 1, 1, 1, 1, 1, 900])), None);
    }

    #[test]
    fn a_capped_rst_stream_is_called_a_cap_and_lossy_paths_are_not() {
        // 200 RSTs/s while probes left at 5,000/s: most answers came to a retry.
        let mut d = Detector::new();
        for _ in 0..5000 {
            d.on_probe();
        }
        for i in 0..200u64 {
            d.on_rst(Duration::from_millis(i * 5), i % 4 != 0);
        }
        for i in 0..10u64 {
            d.on_syn_ack(Duration::from_millis(i * 3), false);
        }
        let cap = d.cap(LimitKind::Rst, Duration::from_secs(1)).unwrap();
        assert!((180.0..230.0).contains(&cap.per_second), "{cap:?}");
        assert_eq!(d.cap(LimitKind::Icmp, Duration::from_secs(1)), None);

        // 30 % loss each way: RSTs and SYN-ACKs both come to retries as often.
        let mut lossy = Detector::new();
        for _ in 0..5000 {
            lossy.on_probe();
        }
        for i in 0..400u64 {
            lossy.on_rst(Duration::from_micros(i * 2500), i % 2 == 0);
            lossy.on_syn_ack(Duration::from_micros(i * 2500 + 7), i % 2 == 1);
        }
        assert_eq!(lossy.cap(LimitKind::Rst, Duration::from_secs(1)), None);

        // Answers as fast as probes leave: nothing capped them.
        let mut quick = Detector::new();
        for _ in 0..200 {
            quick.on_probe();
        }
        for i in 0..200u64 {
            quick.on_rst(Duration::from_millis(i * 5), true);
        }
        assert_eq!(quick.cap(LimitKind::Rst, Duration::from_secs(1)), None);
    }

    #[test]
    fn the_series_stays_bounded() {
        let mut s = Series::default();
        for i in 0..100_000u64 {
            s.push(Duration::from_micros(i * 10), false);
        }
        assert_eq!(s.total, 100_000);
        assert_eq!(s.times().len(), HEAD + TAIL);
        let e = estimate(&s.times()).unwrap();
        assert!((90_000.0..110_000.0).contains(&e.per_second), "{e:?}");
    }

    #[test]
    fn paces_sweeps_to_the_refill_and_caps_below_the_cap() {
        let linux = Estimate {
            shape: Shape::Burst { burst: 6 },
            per_second: 1.0,
        };
        assert_eq!(pace(&linux, 218), 218.0);
        let bsd = Estimate {
            shape: Shape::Cap,
            per_second: 200.0,
        };
        assert_eq!(pace(&bsd, 981), 160.0);
        assert_eq!(pace(&bsd, 0), 160.0);
        // A slow limit is swept whatever its shape.
        let slow_cap = Estimate {
            shape: Shape::Cap,
            per_second: 0.5,
        };
        assert_eq!(pace(&slow_cap, 10), 10.0);
    }

    #[test]
    fn the_report_reads_as_the_issue_asks() {
        let mut r = RateLimitReport {
            kind: LimitKind::Icmp,
            estimate: Estimate {
                shape: Shape::Burst { burst: 6 },
                per_second: 0.98,
            },
            silent: 218,
            resolved: 3,
            unresolved: 215,
            pace: 218.0,
            budget: Duration::from_secs(5),
            spent: Duration::from_secs(5),
        };
        let text = r.to_string();
        assert!(
            text.starts_with(
                "this host limits its ICMP errors to about 1/s: 215 silent ports may be rejecting rather than silent"
            ),
            "{text}"
        );
        assert!(r.explains_silence());
        r.unresolved = 1;
        assert!(
            r.to_string()
                .contains(": 1 silent port may be rejecting rather than silent"),
            "{r}"
        );
        r.unresolved = 0;
        r.resolved = 18;
        assert!(!r.explains_silence());
        assert!(r.to_string().contains("resolved 18"), "{r}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["kind"], "icmp");
        assert_eq!(json["shape"], "burst");
        assert_eq!(json["burst"], 6);
        assert_eq!(json["budget_s"], 5.0);
        r.estimate.per_second = 203.4;
        assert_eq!(r.rate_text(), "200");
        r.estimate.per_second = 0.5;
        assert_eq!(r.rate_text(), "0.5");
    }
}
