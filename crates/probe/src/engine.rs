//! The SYN engine: one thread, one socket pair, many concurrent scans.
//!
//! A scan flows one way: plan (ports in keyed random order) → send (batched,
//! within the congestion window and the rate caps) → match (every reply checked
//! against its keyed cookie) → classify → stream each result as soon as it is
//! final. The loop interleaves the stages so sending never waits for replies:
//!
//! ```text
//! loop {
//!     take new scans / cancellations
//!     drain replies → match to a scan by source-port block → validate cookie → record
//!     expire probes older than the RTO → queue a retry, or call the port stealth
//!     fill one send batch, sharing it fairly between scans → send
//!     finished scans → summary
//!     idle? wait for a reply until the next deadline
//! }
//! ```
//!
//! Each scan owns a block of [`TRIES_PER_BLOCK`] source ports; the try number
//! is the offset in the block, so a reply says which try it answers and the RTT
//! sample is exact. The block also routes replies to their scan.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use harbormaster_wire::{
    EchoTemplate, IcmpError, IcmpKind, PROTO_TCP, Reply, SynTemplate, TcpFlags, TcpReply,
};

use crate::cookie::CookieKey;
use crate::error::ProbeError;
use crate::permute::Permutation;
use crate::result::{PortResult, PortState, Reason, Transport as Proto};
use crate::spec::PortList;
use crate::timing::{
    Congestion, PACE_INITIAL, PACE_MIN, PathPacer, RateBudget, RateLimiter, RttEstimator,
    needed_tries,
};
use crate::transport::{MAX_BATCH as BATCH, RecvBatch, SendBatch, Transport};

/// First source port the engine uses. The range above it lies outside Linux's
/// default ephemeral range (32768–60999), so it does not collide with the
/// system's own connections.
pub const SOURCE_PORT_BASE: u16 = 61440;
/// Source ports per scan: the most tries a port can get.
pub const TRIES_PER_BLOCK: u16 = 16;
/// Scans one engine can run at once.
pub const MAX_SCANS: usize = ((65536 - SOURCE_PORT_BASE as u32) / TRIES_PER_BLOCK as u32) as usize;

/// Receive batches drained per loop turn before sending again.
const RECV_ROUNDS: usize = 8;
/// Longest idle wait, so new scans and cancellations are picked up promptly.
const IDLE_WAIT: Duration = Duration::from_millis(5);

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
}

/// The extra observations of a ShieldsUP-style test: ICMP echo requests, and
/// any packet from the target that is neither a reply to our probes nor part of
/// a connection we expect (such as the visitor's own HTTP connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    /// Echo requests to send, spread over the first second of the scan.
    pub pings: u8,
    /// TCP ports whose traffic with the target is expected (e.g. the web
    /// server's own port) and never counts as unsolicited.
    pub expected_tcp_ports: Vec<u16>,
    /// How long to keep watching after the last probe result.
    pub tail: Duration,
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

/// Gap between echo requests.
const PING_INTERVAL: Duration = Duration::from_millis(250);
/// Unsolicited packets described in the report.
const MAX_EXAMPLES: usize = 8;

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
}

impl ScanSummary {
    /// The summary of a scan of `target` that has produced nothing yet.
    pub fn empty(target: IpAddr) -> ScanSummary {
        ScanSummary {
            target,
            ports: 0,
            counts: [0; 4],
            sent: 0,
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
        }
    }
}

/// Receives a scan's events, on the engine thread: keep it quick.
pub type Sink = Box<dyn FnMut(ScanEvent) + Send>;

enum Command {
    Submit(Box<Scan>),
    Cancel(u16),
    Shutdown,
}

/// A running SYN engine: a thread that owns the transport and all scans.
pub struct Engine {
    commands: mpsc::Sender<Command>,
    blocks: std::sync::Arc<std::sync::Mutex<Vec<bool>>>,
    thread: Option<JoinHandle<()>>,
    config: EngineConfig,
    source: std::sync::Mutex<Box<dyn FnMut(IpAddr) -> std::io::Result<IpAddr> + Send>>,
    ipv6: bool,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.config)
            .finish()
    }
}

/// Cancels a scan; the scan then reports `Done` with `cancelled`.
#[derive(Debug, Clone)]
pub struct ScanHandle {
    block: u16,
    commands: mpsc::Sender<Command>,
}

impl ScanHandle {
    /// Stops the scan. Results already reported stay valid.
    pub fn cancel(&self) {
        let _ = self.commands.send(Command::Cancel(self.block));
    }
}

impl Engine {
    /// Starts the engine thread on `transport`. `route` tells which local address
    /// reaches a target (see [`crate::raw::source_address`]).
    pub fn start<T: Transport>(
        transport: T,
        config: EngineConfig,
        route: impl FnMut(IpAddr) -> std::io::Result<IpAddr> + Send + 'static,
    ) -> Engine {
        let ipv6 = transport.supports_ipv6();
        let (tx, rx) = mpsc::channel();
        let blocks = std::sync::Arc::new(std::sync::Mutex::new(vec![false; MAX_SCANS]));
        let loop_blocks = blocks.clone();
        let loop_config = config.clone();
        let thread = std::thread::Builder::new()
            .name("harbormaster-engine".into())
            .spawn(move || run(transport, loop_config, rx, loop_blocks))
            .expect("spawning the engine thread");
        Engine {
            commands: tx,
            blocks,
            thread: Some(thread),
            config,
            source: std::sync::Mutex::new(Box::new(route)),
            ipv6,
        }
    }

    /// Whether this engine can probe `target` (raw IPv6 is not wired up yet).
    pub fn supports(&self, target: IpAddr) -> bool {
        target.is_ipv4() || self.ipv6
    }

    /// Starts a scan; its events go to `sink` as they happen.
    pub fn submit(&self, request: ScanRequest, sink: Sink) -> Result<ScanHandle, ProbeError> {
        if !self.supports(request.target) {
            return Err(ProbeError::Unsupported(
                "SYN mode probes IPv4 targets only for now; use connect mode for IPv6",
            ));
        }
        let source = {
            let mut route = self.source.lock().unwrap_or_else(|p| p.into_inner());
            route(request.target).map_err(|source| ProbeError::NoRoute {
                target: request.target,
                source,
            })?
        };
        let template = SynTemplate::new(source, request.target, self.config.ttl, 1024)
            .map_err(|_| ProbeError::Unsupported("source and target address families differ"))?;
        let block = {
            let mut blocks = self.blocks.lock().unwrap_or_else(|p| p.into_inner());
            let free = blocks
                .iter()
                .position(|used| !used)
                .ok_or(ProbeError::Busy(MAX_SCANS))?;
            blocks[free] = true;
            free as u16
        };
        let scan = Scan::new(
            block,
            source,
            template,
            CookieKey::random(),
            request,
            &self.config,
            sink,
        );
        self.commands
            .send(Command::Submit(Box::new(scan)))
            .map_err(|_| ProbeError::Stopped)?;
        Ok(ScanHandle {
            block,
            commands: self.commands.clone(),
        })
    }

    /// Runs one scan to completion and returns its results (sorted by port) and summary.
    pub fn scan(&self, request: ScanRequest) -> Result<(Vec<PortResult>, ScanSummary), ProbeError> {
        let (tx, rx) = mpsc::channel();
        self.submit(
            request,
            Box::new(move |e| {
                let _ = tx.send(e);
            }),
        )?;
        let mut results = Vec::new();
        for event in rx {
            match event {
                ScanEvent::Port(r) => results.push(r),
                ScanEvent::Done(summary) => {
                    results.sort_by_key(|r| r.port);
                    return Ok((results, summary));
                }
            }
        }
        Err(ProbeError::Stopped)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    tries: u8,
    done: bool,
    /// The latest try is in flight (sent, not answered, not timed out).
    waiting: bool,
    /// The latest try has been unanswered so long that it no longer counts
    /// against the congestion window (see [`Scan::age`]).
    aged: bool,
    first_sent: Option<Instant>,
    last_sent: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Flight {
    sent: Instant,
    slot: u32,
    try_no: u8,
}

struct Scan {
    block: u16,
    target: IpAddr,
    source: IpAddr,
    template: SynTemplate,
    key: CookieKey,
    sport_base: u16,
    ports: Vec<u16>,
    slots: Vec<Slot>,
    order: Permutation,
    next_new: u64,
    retry: VecDeque<u32>,
    inflight: VecDeque<Flight>,
    /// Probes sent within the last flight time, for aging (same order as `inflight`).
    young: VecDeque<Flight>,
    /// Probes in flight and young: what the congestion window limits.
    outstanding: usize,
    rtt: RttEstimator,
    cc: Congestion,
    /// Paces sends to what the path has shown it carries (see [`PathPacer`]):
    /// the window alone lets a stealth host's path be overrun.
    pacer: PathPacer,
    rate: Option<RateLimiter>,
    fixed_tries: Option<u8>,
    answers: u64,
    lost_before: u64,
    duplicates: u64,
    rejected: u64,
    done: usize,
    counts: [usize; 4],
    sent: u64,
    started: Option<Instant>,
    last_result: Option<Instant>,
    watch: Option<Watch>,
    report: WatchReport,
    echo: Option<EchoTemplate>,
    last_ping: Option<Instant>,
    sink: Sink,
    /// The TCP window of the reply being recorded (see `on_tcp`).
    reply_window: Option<u16>,
}

impl Scan {
    fn new(
        block: u16,
        source: IpAddr,
        template: SynTemplate,
        key: CookieKey,
        request: ScanRequest,
        config: &EngineConfig,
        sink: Sink,
    ) -> Scan {
        let ports = request.ports.ports().to_vec();
        let n = ports.len();
        Scan {
            block,
            target: request.target,
            source,
            template,
            key,
            sport_base: SOURCE_PORT_BASE + block * TRIES_PER_BLOCK,
            slots: vec![
                Slot {
                    tries: 0,
                    done: false,
                    waiting: false,
                    aged: false,
                    first_sent: None,
                    last_sent: None,
                };
                n
            ],
            order: Permutation::new(n as u64, key),
            ports,
            next_new: 0,
            retry: VecDeque::new(),
            inflight: VecDeque::new(),
            young: VecDeque::new(),
            outstanding: 0,
            rtt: RttEstimator::new(config.initial_rto, config.min_rto, config.max_rto),
            cc: Congestion::new(config.initial_window, 16, config.max_window),
            pacer: PathPacer::new(PACE_INITIAL, PACE_MIN),
            rate: request.rate.map(RateLimiter::new),
            fixed_tries: request.tries.map(|t| t.clamp(1, TRIES_PER_BLOCK as u8)),
            answers: 0,
            lost_before: 0,
            duplicates: 0,
            rejected: 0,
            done: 0,
            counts: [0; 4],
            sent: 0,
            started: None,
            last_result: None,
            echo: request
                .watch
                .as_ref()
                .and_then(|_| EchoTemplate::new(source, request.target, config.ttl).ok()),
            watch: request.watch,
            report: WatchReport::default(),
            last_ping: None,
            sink,
            reply_window: None,
        }
    }

    /// Ident of this scan's echo requests: the block number, tagged.
    fn ping_ident(&self) -> u16 {
        0x4800 | self.block
    }

    /// Queues the next echo request if one is due.
    fn fill_ping(&mut self, now: Instant, batch: &mut SendBatch) {
        let (Some(w), Some(echo)) = (&self.watch, &self.echo) else {
            return;
        };
        if self.report.pings_sent >= w.pings || batch.room() == 0 {
            return;
        }
        if self.last_ping.is_some_and(|t| now < t + PING_INTERVAL) {
            return;
        }
        let (ident, seq) = (self.ping_ident(), u16::from(self.report.pings_sent));
        if batch
            .push(self.target, |buf| echo.write(buf, ident, seq))
            .is_ok()
        {
            self.report.pings_sent += 1;
            self.last_ping = Some(now);
            self.started.get_or_insert(now);
        }
    }

    /// Records a packet from the target that answered nothing we sent.
    fn unsolicited(&mut self, what: impl FnOnce() -> String) {
        if self.watch.is_none() {
            return;
        }
        self.report.unsolicited += 1;
        if self.report.unsolicited_examples.len() < MAX_EXAMPLES {
            self.report.unsolicited_examples.push(what());
        }
    }

    /// When watching ends: the tail after the last port result and the last ping.
    fn watch_until(&self) -> Option<Instant> {
        let w = self.watch.as_ref()?;
        let last = self.last_result.max(self.last_ping)?;
        Some(last + w.tail)
    }

    fn finished(&self, now: Instant) -> bool {
        if self.done < self.ports.len() {
            return false;
        }
        match &self.watch {
            None => true,
            Some(w) => {
                self.report.pings_sent >= w.pings
                    && self.watch_until().is_none_or(|until| now >= until)
            }
        }
    }

    fn has_work(&self) -> bool {
        !self.retry.is_empty() || self.next_new < self.ports.len() as u64
    }

    /// The tries a silent port gets, given what this scan has seen so far.
    fn tries_limit(&self) -> u8 {
        if let Some(t) = self.fixed_tries {
            return t;
        }
        // The path dropped answers to congestion at least once: every silent port may
        // have lost a try to it, so each gets two more (at the slower pace by then)
        // before it is called stealth.
        let min = if self.pacer.cuts().1 > 0 {
            MIN_TRIES + 2
        } else {
            MIN_TRIES
        };
        // Project the responsive ports over the whole scan from the share answered so far.
        let decided = self.done.max(1) as u64;
        let responsive = (self.answers * self.ports.len() as u64 / decided).max(self.answers);
        needed_tries(
            self.answers,
            self.lost_before,
            responsive,
            min,
            TRIES_PER_BLOCK as u8,
        )
    }

    /// Appends up to `quota` probes to `batch`; returns how many.
    fn fill(&mut self, now: Instant, quota: usize, batch: &mut SendBatch) -> usize {
        let window_room = self.cc.window().saturating_sub(self.outstanding);
        let mut allowed = quota.min(window_room).min(batch.room());
        allowed = self.pacer.take(now, self.rtt.srtt(), allowed);
        if let Some(rate) = &mut self.rate {
            let paced = allowed;
            allowed = rate.take(now, allowed);
            // Slots the rate cap refused go back to the pacer, or the two
            // would take turns wasting each other's slots.
            self.pacer.refund(paced - allowed);
        }
        self.started.get_or_insert(now);
        let mut n = 0;
        while n < allowed {
            let slot_idx = if let Some(s) = self.retry.pop_front() {
                s
            } else if self.next_new < self.ports.len() as u64 {
                let s = self.order.nth(self.next_new) as u32;
                self.next_new += 1;
                s
            } else {
                break;
            };
            let slot = &mut self.slots[slot_idx as usize];
            if slot.done {
                continue;
            }
            let try_no = slot.tries;
            let sport = self.sport_base + u16::from(try_no);
            let dport = self.ports[slot_idx as usize];
            let seq = self.key.cookie(self.source, self.target, sport, dport);
            let template = &self.template;
            if batch
                .push(self.target, |buf| template.write(buf, sport, dport, seq))
                .is_err()
            {
                // Cannot happen with MAX_PROBE-sized slots; never report it as a port state.
                self.retry.push_front(slot_idx);
                break;
            }
            slot.tries += 1;
            slot.waiting = true;
            slot.aged = false;
            slot.last_sent = Some(now);
            slot.first_sent.get_or_insert(now);
            let flight = Flight {
                sent: now,
                slot: slot_idx,
                try_no,
            };
            self.inflight.push_back(flight);
            self.young.push_back(flight);
            self.outstanding += 1;
            self.sent += 1;
            n += 1;
        }
        n
    }

    /// How long an unanswered probe counts as occupying the path.
    ///
    /// A probe that has had twice the round-trip time to come back and has not
    /// is lost or dropped by a firewall: it no longer sits in any queue, so it
    /// stops counting against the congestion window (it is still retried at the
    /// RTO). Without this, a silent host would hold the window shut for a whole
    /// RTO per window of ports.
    fn flight_time(&self) -> Duration {
        match self.rtt.srtt() {
            Some(srtt) => (srtt * 2).max(Duration::from_millis(1)),
            None => Duration::from_millis(50),
        }
    }

    /// Releases the window share of probes older than the flight time.
    fn age(&mut self, now: Instant) {
        let horizon = self.flight_time();
        while let Some(f) = self.young.front().copied() {
            if now < f.sent + horizon {
                break;
            }
            self.young.pop_front();
            let slot = &mut self.slots[f.slot as usize];
            if !slot.done && slot.waiting && !slot.aged && f.try_no + 1 == slot.tries {
                slot.aged = true;
                self.outstanding -= 1;
            }
        }
    }

    /// Times out probes older than the RTO: retry them, or call the port stealth.
    fn expire(&mut self, now: Instant) {
        self.age(now);
        let rto = self.rtt.rto();
        while let Some(f) = self.inflight.front().copied() {
            let slot = self.slots[f.slot as usize];
            if slot.done || !slot.waiting || f.try_no + 1 != slot.tries {
                self.inflight.pop_front();
                continue;
            }
            if now < f.sent + rto {
                break;
            }
            self.inflight.pop_front();
            self.slots[f.slot as usize].waiting = false;
            if !slot.aged {
                self.outstanding -= 1;
            }
            if slot.tries < self.tries_limit() {
                self.retry.push_back(f.slot);
            } else {
                self.finish_port(f.slot as usize, Reason::NoResponse, None, None, now);
            }
        }
    }

    /// The earliest time a probe of this scan can time out.
    fn next_deadline(&self) -> Option<Instant> {
        let rto = self.rtt.rto();
        let expiry = self.inflight.front().map(|f| f.sent + rto);
        let aging = self.young.front().map(|f| f.sent + self.flight_time());
        let ping = self
            .watch
            .as_ref()
            .filter(|w| self.report.pings_sent < w.pings)
            .and(self.last_ping)
            .map(|t| t + PING_INTERVAL);
        let tail = if self.done == self.ports.len() {
            self.watch_until()
        } else {
            None
        };
        expiry
            .into_iter()
            .chain(aging)
            .chain(ping)
            .chain(tail)
            .min()
    }

    /// Which try a reply to our source port `sport` answers, if it is one of ours.
    fn try_of(&self, sport: u16, slot: usize) -> Option<u8> {
        let t = sport.checked_sub(self.sport_base)?;
        (t < TRIES_PER_BLOCK && (t as u8) < self.slots[slot].tries).then_some(t as u8)
    }

    fn on_tcp(&mut self, r: &TcpReply, now: Instant) {
        if r.src != self.target || r.dst != self.source {
            return;
        }
        let Ok(idx) = self.ports.binary_search(&r.src_port) else {
            return;
        };
        let Some(try_no) = self.try_of(r.dst_port, idx) else {
            return;
        };
        let cookie = self
            .key
            .cookie(self.source, self.target, r.dst_port, r.src_port);
        if r.ack != cookie.wrapping_add(1) {
            self.rejected += 1;
            return;
        }
        let reason = if r.flags.contains(TcpFlags::SYN) && r.flags.contains(TcpFlags::ACK) {
            Reason::SynAck
        } else if r.flags.contains(TcpFlags::RST) {
            Reason::Rst
        } else {
            return;
        };
        // Carried to the result beside `answer`'s arguments; cleared when the
        // answer was a duplicate, so it never sticks to another port.
        self.reply_window = Some(r.window);
        self.answer(idx, try_no, reason, Some(r.ttl), now, true);
        self.reply_window = None;
    }

    fn on_icmp(&mut self, e: &IcmpError, now: Instant) {
        let q = &e.quote;
        if q.src != self.source || q.dst != self.target || q.protocol != PROTO_TCP {
            return;
        }
        let Ok(idx) = self.ports.binary_search(&q.dst_port) else {
            return;
        };
        let Some(try_no) = self.try_of(q.src_port, idx) else {
            return;
        };
        let cookie = self
            .key
            .cookie(self.source, self.target, q.src_port, q.dst_port);
        if q.seq != Some(cookie) {
            self.rejected += 1;
            return;
        }
        let reason = match e.kind {
            IcmpKind::V4 { icmp_type, code } => Reason::Icmp {
                v6: false,
                icmp_type,
                code,
            },
            IcmpKind::V6 { icmp_type, code } => Reason::Icmp {
                v6: true,
                icmp_type,
                code,
            },
        };
        // Routers rate-limit ICMP errors (RFC 1812): a missing one says nothing about
        // congestion, so ICMP answers do not feed the loss estimate.
        self.answer(idx, try_no, reason, Some(e.ttl), now, false);
    }

    fn answer(
        &mut self,
        idx: usize,
        try_no: u8,
        reason: Reason,
        ttl: Option<u8>,
        now: Instant,
        counts_for_loss: bool,
    ) {
        let slot = self.slots[idx];
        if slot.done {
            self.duplicates += 1;
            return;
        }
        let sent_at = if try_no + 1 == slot.tries {
            slot.last_sent
        } else if try_no == 0 {
            slot.first_sent
        } else {
            None
        };
        let rtt = sent_at.map(|t| now.saturating_duration_since(t));
        if let Some(rtt) = rtt {
            self.rtt.sample(rtt);
        }
        let lost_before = try_no > 0;
        self.cc.on_answer(lost_before && counts_for_loss);
        if counts_for_loss {
            // An answer to try k > 0 proves the first try was lost (or very late):
            // drop evidence for the pacer, dated by when that try left.
            let lost_sent = if lost_before { slot.first_sent } else { None };
            self.pacer.on_answer(now, sent_at, rtt, lost_sent);
        }
        if counts_for_loss {
            self.answers += 1;
            if lost_before {
                self.lost_before += 1;
            }
        }
        if slot.waiting {
            self.slots[idx].waiting = false;
            if !slot.aged {
                self.outstanding -= 1;
            }
        }
        let tries = slot.tries;
        self.finish_port_with(idx, reason, rtt, ttl, tries, now);
    }

    fn finish_port(
        &mut self,
        idx: usize,
        reason: Reason,
        rtt: Option<Duration>,
        ttl: Option<u8>,
        now: Instant,
    ) {
        let tries = self.slots[idx].tries;
        self.finish_port_with(idx, reason, rtt, ttl, tries, now);
    }

    fn finish_port_with(
        &mut self,
        idx: usize,
        reason: Reason,
        rtt: Option<Duration>,
        ttl: Option<u8>,
        tries: u8,
        now: Instant,
    ) {
        self.slots[idx].done = true;
        self.done += 1;
        let state = reason.state();
        self.counts[state as usize] += 1;
        self.last_result = Some(now);
        (self.sink)(ScanEvent::Port(PortResult {
            target: self.target,
            port: self.ports[idx],
            proto: Proto::Tcp,
            state,
            reason,
            rtt,
            tries,
            ttl,
            window: self.reply_window.take(),
        }));
    }

    fn summary(&self, cancelled: bool, error: Option<String>) -> ScanSummary {
        ScanSummary {
            target: self.target,
            ports: self.done,
            counts: self.counts,
            sent: self.sent,
            duplicates: self.duplicates,
            rejected: self.rejected,
            lost_before: self.lost_before,
            tries_limit: self.tries_limit(),
            srtt: self.rtt.srtt(),
            elapsed: match (self.started, self.last_result) {
                (Some(a), Some(b)) => b.saturating_duration_since(a),
                _ => Duration::ZERO,
            },
            cancelled,
            error,
            watch: self.watch.as_ref().map(|_| self.report.clone()),
            verification: None,
            wildcard: None,
        }
    }
}

// PortState is used as an index into `counts`.
const _: () = assert!(PortState::Open as usize == 0 && PortState::Stealth as usize == 3);

struct Loop<T> {
    transport: T,
    scans: Vec<Option<Box<Scan>>>,
    rate: Option<RateLimiter>,
    shared: Option<RateBudget>,
    blocks: std::sync::Arc<std::sync::Mutex<Vec<bool>>>,
    next_turn: usize,
    /// Addresses the transport currently passes for watching.
    watched: Vec<IpAddr>,
}

fn run<T: Transport>(
    transport: T,
    config: EngineConfig,
    commands: mpsc::Receiver<Command>,
    blocks: std::sync::Arc<std::sync::Mutex<Vec<bool>>>,
) {
    let mut l = Loop {
        transport,
        scans: (0..MAX_SCANS).map(|_| None).collect(),
        rate: config.max_rate.map(RateLimiter::new),
        shared: config.shared_budget.clone(),
        blocks,
        next_turn: 0,
        watched: Vec::new(),
    };
    let mut tx = SendBatch::new(BATCH);
    let mut rx = RecvBatch::new(BATCH);
    loop {
        // 1. Commands. Block only when there is nothing else to do.
        loop {
            let idle = l.scans.iter().all(Option::is_none);
            let cmd = if idle {
                match commands.recv() {
                    Ok(c) => c,
                    Err(_) => return,
                }
            } else {
                match commands.try_recv() {
                    Ok(c) => c,
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => Command::Shutdown,
                }
            };
            match cmd {
                Command::Submit(scan) => {
                    let b = usize::from(scan.block);
                    if scan.ports.is_empty() {
                        l.end(b, Some(scan), false, None);
                    } else {
                        l.scans[b] = Some(scan);
                    }
                }
                Command::Cancel(b) => {
                    let b = usize::from(b);
                    let scan = l.scans[b].take();
                    l.end(b, scan, true, None);
                }
                Command::Shutdown => {
                    for b in 0..MAX_SCANS {
                        if let Some(scan) = l.scans[b].take() {
                            l.end(b, Some(scan), true, None);
                        }
                    }
                    return;
                }
            }
        }

        // 2. Replies.
        let mut received = 0;
        for _ in 0..RECV_ROUNDS {
            match l.transport.recv(&mut rx, Duration::ZERO) {
                Ok(n) => {
                    l.handle(&rx);
                    received += n;
                    if n < rx.capacity() {
                        break;
                    }
                }
                Err(e) => return l.fail(e),
            }
        }
        if l.transport.take_drops() > 0 {
            for scan in l.scans.iter_mut().flatten() {
                scan.cc.cut();
            }
        }

        // 3. Timeouts.
        let now = l.transport.now();
        for scan in l.scans.iter_mut().flatten() {
            scan.expire(now);
        }

        // 4. Send: share one batch fairly between the scans that have work.
        if tx.is_empty() {
            l.fill(now, &mut tx);
        }
        let mut sent = 0;
        if !tx.is_empty() {
            match l.transport.send(&tx) {
                Ok(n) => {
                    tx.consume(n);
                    sent = n;
                }
                Err(e) if is_target_error(&e) => {
                    // The first unsent probe's target cannot be reached from here (no
                    // route, or our own firewall refuses): end the scans of that target
                    // with the error, rather than calling its ports stealth.
                    let (dst, _) = tx.get(0);
                    tx.consume(1);
                    let msg = format!("cannot send to {dst}: {e}");
                    for b in 0..MAX_SCANS {
                        if l.scans[b].as_ref().is_some_and(|s| s.target == dst) {
                            let scan = l.scans[b].take();
                            l.end(b, scan, true, Some(msg.clone()));
                        }
                    }
                }
                Err(e) => return l.fail(e),
            }
        }

        // 5. Finished scans.
        for b in 0..MAX_SCANS {
            if l.scans[b].as_ref().is_some_and(|s| s.finished(now)) {
                let scan = l.scans[b].take();
                l.end(b, scan, false, None);
            }
        }

        if let Err(e) = l.update_watch() {
            return l.fail(e);
        }

        // 6. Idle: wait for a reply, but not past the next timeout.
        if sent == 0 && received == 0 {
            let now = l.transport.now();
            let mut wait = IDLE_WAIT;
            for scan in l.scans.iter().flatten() {
                if let Some(d) = scan.next_deadline() {
                    wait = wait.min(d.saturating_duration_since(now));
                }
                if scan.has_work() {
                    // A scan sends when both its pacer and its rate cap allow.
                    let cap = scan.rate.as_ref().map_or(Duration::ZERO, RateLimiter::wait);
                    let pace = scan.pacer.wait().max(Duration::from_micros(50));
                    wait = wait.min(cap.max(pace));
                }
            }
            if let Some(r) = &l.rate {
                wait = wait.min(r.wait().max(Duration::from_micros(50)));
            }
            if let Some(b) = &l.shared {
                wait = wait.min(b.wait(now).max(Duration::from_micros(50)));
            }
            match l.transport.recv(&mut rx, wait) {
                Ok(_) => l.handle(&rx),
                Err(e) => return l.fail(e),
            }
        }
    }
}

impl<T: Transport> Loop<T> {
    fn handle(&mut self, rx: &RecvBatch) {
        let now = self.transport.now();
        for i in 0..rx.len() {
            let packet = rx.packet(i);
            match harbormaster_wire::parse_reply(packet) {
                Ok(Reply::Tcp(r)) => {
                    // Anything addressed to our source ports is probe traffic (valid,
                    // late, duplicated or forged); the scan sorts it out.
                    if let Some(scan) = self.scan_for(r.dst_port) {
                        scan.on_tcp(&r, now);
                        continue;
                    }
                    self.unsolicited(r.src, Some((r.src_port, r.dst_port)), || {
                        format!("tcp {}->{} [{}]", r.src_port, r.dst_port, r.flags)
                    });
                }
                Ok(Reply::IcmpError(e)) => {
                    if e.quote.protocol == PROTO_TCP
                        && let Some(scan) = self.scan_for(e.quote.src_port)
                    {
                        scan.on_icmp(&e, now);
                        continue;
                    }
                    self.unsolicited(e.from, None, || format!("icmp {}", e.kind.label()));
                }
                Ok(Reply::EchoReply(e)) => {
                    let mut ours = false;
                    for scan in self.scans.iter_mut().flatten() {
                        if scan.watch.is_some()
                            && scan.target == e.from
                            && e.ident == scan.ping_ident()
                        {
                            scan.report.ping_replies += 1;
                            ours = true;
                        }
                    }
                    if !ours {
                        self.unsolicited(e.from, None, || "icmp echo reply".to_string());
                    }
                }
                Ok(Reply::Udp(u)) => {
                    self.unsolicited(u.src, None, || {
                        format!("udp {}->{}", u.src_port, u.dst_port)
                    });
                }
                Ok(Reply::Other { protocol }) => {
                    if let Some(src) = ipv4_source(packet) {
                        self.unsolicited(src, None, || format!("ip protocol {protocol}"));
                    }
                }
                Err(_) => {}
            }
        }
    }

    /// Counts a packet from `src` against every scan watching `src`, unless it
    /// belongs to a TCP connection the scan expects (`ports` = source, destination).
    fn unsolicited(&mut self, src: IpAddr, ports: Option<(u16, u16)>, what: impl Fn() -> String) {
        for scan in self.scans.iter_mut().flatten() {
            let Some(w) = &scan.watch else { continue };
            if scan.target != src {
                continue;
            }
            if let Some((sport, dport)) = ports
                && (w.expected_tcp_ports.contains(&sport) || w.expected_tcp_ports.contains(&dport))
            {
                continue;
            }
            scan.unsolicited(&what);
        }
    }

    /// Tells the transport which addresses to pass through its filter.
    fn update_watch(&mut self) -> std::io::Result<()> {
        let mut addrs: Vec<IpAddr> = self
            .scans
            .iter()
            .flatten()
            .filter(|s| s.watch.is_some())
            .map(|s| s.target)
            .collect();
        addrs.sort();
        addrs.dedup();
        if addrs != self.watched {
            self.transport.watch(&addrs)?;
            self.watched = addrs;
        }
        Ok(())
    }

    fn scan_for(&mut self, our_port: u16) -> Option<&mut Scan> {
        let offset = our_port.checked_sub(SOURCE_PORT_BASE)?;
        let block = usize::from(offset / TRIES_PER_BLOCK);
        self.scans.get_mut(block)?.as_deref_mut()
    }

    fn fill(&mut self, now: Instant, tx: &mut SendBatch) {
        for scan in self.scans.iter_mut().flatten() {
            scan.fill_ping(now, tx);
        }
        let busy: Vec<usize> = (0..MAX_SCANS)
            .filter(|&b| self.scans[b].as_ref().is_some_and(|s| s.has_work()))
            .collect();
        if busy.is_empty() {
            return;
        }
        let mut budget = tx.room();
        if let Some(rate) = &mut self.rate {
            budget = rate.take(now, budget);
        }
        if let Some(shared) = &self.shared {
            budget = shared.try_take(now, budget);
        }
        // Round-robin from a rotating start so no scan is always first.
        let share = budget.div_ceil(busy.len()).max(1);
        let start = self.next_turn % busy.len();
        self.next_turn = self.next_turn.wrapping_add(1);
        for k in 0..busy.len() {
            if budget == 0 {
                break;
            }
            let b = busy[(start + k) % busy.len()];
            if let Some(scan) = self.scans[b].as_mut() {
                budget -= scan.fill(now, share.min(budget), tx);
            }
        }
    }

    fn end(
        &mut self,
        block: usize,
        scan: Option<Box<Scan>>,
        cancelled: bool,
        error: Option<String>,
    ) {
        if let Some(mut scan) = scan {
            let summary = scan.summary(cancelled, error);
            (scan.sink)(ScanEvent::Done(summary));
        }
        let mut blocks = self.blocks.lock().unwrap_or_else(|p| p.into_inner());
        blocks[block] = false;
    }

    fn fail(mut self, e: std::io::Error) {
        let msg = format!("packet I/O failed: {e}");
        for b in 0..MAX_SCANS {
            if let Some(scan) = self.scans[b].take() {
                self.end(b, Some(scan), true, Some(msg.clone()));
            }
        }
    }
}

/// Send errors that concern one destination, not the engine.
fn is_target_error(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ENETUNREACH
                | libc::EHOSTUNREACH
                | libc::EACCES
                | libc::EPERM
                | libc::EADDRNOTAVAIL
        )
    )
}

/// The source address of an IPv4 packet, read without parsing the rest.
fn ipv4_source(packet: &[u8]) -> Option<IpAddr> {
    let bytes: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
    (packet.first()? >> 4 == 4).then(|| IpAddr::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_fit_the_source_port_space() {
        assert_eq!(MAX_SCANS, 256);
        let last = SOURCE_PORT_BASE as u32 + (MAX_SCANS as u32) * TRIES_PER_BLOCK as u32 - 1;
        assert_eq!(last, 65535);
    }
}
