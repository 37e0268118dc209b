//! The engine's public types: what to scan, what comes back.

use std::net::IpAddr;
use std::time::Duration;

use crate::result::{PortResult, Transport as Protocol};
use crate::spec::PortList;
use crate::timing::RateBudget;

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Cap on probes per second across all scans (shared fairly).
    pub max_rate: Option<u32>,
    /// Wait before the first RTT sample of a scan.
    pub initial_rto: Duration,
    /// Shortest retransmission timeout.
    pub min_rto: Duration,
    /// Longest retransmission timeout.
    pub max_rto: Duration,
    /// Probes in flight per scan at the start.
    pub initial_window: usize,
    /// Most probes in flight per scan.
    pub max_window: usize,
    /// TTL / hop limit of probes.
    pub ttl: u8,
    /// A rate budget shared with senders outside the engine (the web
    /// service's connect-mode probes), so that together they keep one cap.
    pub shared_budget: Option<RateBudget>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_rate: None,
            initial_rto: Duration::from_millis(500),
            min_rto: Duration::from_millis(10),
            max_rto: Duration::from_secs(3),
            initial_window: 1024,
            max_window: 8192,
            ttl: 64,
            shared_budget: None,
        }
    }
}

/// What to scan.
#[derive(Debug, Clone)]
pub struct ScanRequest {
    /// The one address to probe.
    pub target: IpAddr,
    /// The ports.
    pub ports: PortList,
    /// Fixed tries per silent port; `None` adapts to measured loss (at least 3).
    pub tries: Option<u8>,
    /// Cap on this scan's probes per second.
    pub rate: Option<u32>,
    /// Also ping the target and watch for packets it sends unprompted.
    pub watch: Option<Watch>,
    /// The transport to probe: TCP (SYN) or UDP (payload datagrams).
    pub protocol: Protocol,
    /// Time allowed for re-probing silent ports at the pace of a rate limit
    /// the target turns out to have ([`crate::ratelimit`]); `None` is
    /// [`DEFAULT_BUDGET`], zero only detects and reports the limit.
    pub budget: Option<Duration>,
    /// The target's round trip, if known from another scan of it (its
    /// smoothed RTT, or one answer's): the scan starts its retransmission
    /// timer from it (see `RttEstimator::seed`) instead of
    /// the cautious initial one, which a host that answers nothing never
    /// replaces.
    pub rtt_hint: Option<Duration>,
}

impl ScanRequest {
    /// A TCP scan of `ports` on `target` with adaptive tries, no rate cap
    /// and no watch.
    pub fn tcp(target: IpAddr, ports: PortList) -> ScanRequest {
        ScanRequest {
            target,
            ports,
            tries: None,
            rate: None,
            watch: None,
            protocol: Protocol::Tcp,
            budget: None,
            rtt_hint: None,
        }
    }

    /// The same, for UDP.
    pub fn udp(target: IpAddr, ports: PortList) -> ScanRequest {
        ScanRequest {
            protocol: Protocol::Udp,
            ..ScanRequest::tcp(target, ports)
        }
    }
}

/// Re-probing time a scan gets by default when the target rate-limits: at
/// Linux's one ICMP error per second, enough for the service test (0–1055)
/// on a host with a few dozen rejected ports.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(30);

/// The extra observations of a ShieldsUP-style test: ICMP echo requests, and
/// any packet from the target that is neither a reply to our probes nor part of
/// a connection we expect (such as the visitor's own HTTP connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    /// Echo requests to send: 250 ms apart while ports are probed, the rest
    /// 50 ms apart once every port has its result.
    pub pings: u8,
    /// TCP ports whose traffic with the target is expected (e.g. the web
    /// server's own port) and never counts as unsolicited.
    pub expected_tcp_ports: Vec<u16>,
    /// How long to keep watching after the last probe result and ping.
    pub tail: WatchTail,
}

/// How long a watch goes on after the last probe result and the last ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchTail {
    /// Exactly this long.
    Fixed(Duration),
    /// Until the last ping has had the scan's retransmission timeout
    /// (within `min..=max`) to be answered, and `min` after the last result.
    ///
    /// What our probes set off is in by the last result: a port is called
    /// stealth only a timeout after its last try. What is left is the
    /// answer to the last ping, which gets the same timeout as a port, and
    /// stragglers the path held back, which `min` is for. A fixed second
    /// made a visitor on a 150 ms path wait 1 s after the last port.
    Rto {
        /// After the last result, and the least a ping is given.
        min: Duration,
        /// The most a ping is given.
        max: Duration,
    },
}

/// What the watch saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchReport {
    /// Echo requests sent.
    pub pings_sent: u8,
    /// Echo replies received.
    pub ping_replies: u32,
    /// Packets from the target that answered nothing we sent.
    pub unsolicited: u32,
    /// The first few of them, described (e.g. `udp 137->137`).
    pub unsolicited_examples: Vec<String>,
}

/// The fewest tries a silent port gets before it is called stealth.
pub const MIN_TRIES: u8 = 3;

/// What a scan reports, in order: one `Port` per port, then `Done`.
#[derive(Debug, Clone)]
pub enum ScanEvent {
    /// A port's final result.
    Port(PortResult),
    /// The scan ended.
    Done(ScanSummary),
}

/// Statistics of a finished scan.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanSummary {
    /// The address probed.
    pub target: IpAddr,
    /// Ports with a result.
    pub ports: usize,
    /// Ports per state, in [`PortState::ALL`] order.
    pub counts: [usize; 4],
    /// Probes sent.
    pub sent: u64,
    /// Of `sent`, the timing probes: repeated probes to ports that had
    /// answered, for round-trip and drop evidence on a host that answers
    /// little.
    pub timing_probes: u64,
    /// Replies that matched a probe but repeated a known result.
    pub duplicates: u64,
    /// Replies that failed cookie validation.
    pub rejected: u64,
    /// Answers to a retry: probes lost (or late) on the way.
    pub lost_before: u64,
    /// The tries limit in force at the end.
    pub tries_limit: u8,
    /// Smoothed round-trip time.
    pub srtt: Option<Duration>,
    /// Wall time from start to the last result.
    pub elapsed: Duration,
    /// True when the scan was cancelled before finishing.
    pub cancelled: bool,
    /// Set when the engine failed and the scan could not finish.
    pub error: Option<String>,
    /// Ping and unsolicited-packet observations, when the scan watched.
    pub watch: Option<WatchReport>,
    /// The check of open ports with real connections, when it ran
    /// ([`crate::verify`]; the engine itself leaves it `None`). Boxed, as is
    /// `wildcard`, so a summary event stays small.
    pub verification: Option<Box<crate::verify::Verification>>,
    /// Whether random ports outside the list answer like the open ones, when
    /// it was checked ([`crate::verify`]; the engine leaves it `None`).
    pub wildcard: Option<Box<crate::verify::WildcardReport>>,
    /// The target's rate limit on ICMP errors or RSTs, when one was
    /// detected, and what re-probing at its pace resolved. Boxed like the rest.
    pub rate_limit: Option<Box<crate::ratelimit::RateLimitReport>>,
}

impl ScanSummary {
    /// The summary of a scan of `target` that has produced nothing yet.
    pub fn empty(target: IpAddr) -> ScanSummary {
        ScanSummary {
            target,
            ports: 0,
            counts: [0; 4],
            sent: 0,
            timing_probes: 0,
            duplicates: 0,
            rejected: 0,
            lost_before: 0,
            tries_limit: MIN_TRIES,
            srtt: None,
            elapsed: Duration::ZERO,
            cancelled: false,
            error: None,
            watch: None,
            verification: None,
            wildcard: None,
            rate_limit: None,
        }
    }
}

/// Receives a scan's events, on the engine thread: keep it quick.
pub type Sink = Box<dyn FnMut(ScanEvent) + Send>;
