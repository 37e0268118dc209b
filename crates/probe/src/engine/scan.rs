//! One scan's state machine: which port to probe next, which try is in
//! flight, when a probe times out, and what an answer means for the port, the
//! round-trip time, the loss estimate and the pacing. Protocol-free: the
//! scan's [`ProbeModule`] writes probes and classifies replies.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::api::{
    DEFAULT_BUDGET, EngineConfig, MIN_TRIES, ScanEvent, ScanRequest, ScanSummary, Sink, Watch,
    WatchReport, WatchTail,
};
use super::timing_probes::TimingProbes;
use super::{SOURCE_PORT_BASE, TRIES_PER_BLOCK};
use crate::cookie::CookieKey;
use crate::module::{Answer, Classified, IcmpEcho, ProbeModule};
use crate::permute::PortOrder;
use crate::ratelimit::{
    Detector, Estimate, HostMemory, LimitKind, RateLimitReport, SLOW_LIMIT, Shape, pace,
};
use crate::result::{PortResult, PortState, Reason};
use crate::timing::{
    Congestion, PACE_INITIAL, PACE_MIN, PathPacer, RateLimiter, RttEstimator, needed_tries,
};
use crate::transport::SendBatch;

/// Gap between echo requests while ports are probed: spread out, a short
/// loss burst or a per-second echo limit does not take all of them.
const PING_INTERVAL: Duration = Duration::from_millis(250);
/// Gap between the echo requests left once every port has its result: on a
/// fast path the scan is over in milliseconds, and the test would otherwise
/// wait half a second for its pings alone.
const PING_INTERVAL_DONE: Duration = Duration::from_millis(50);
/// Unsolicited packets described in the report.
const MAX_EXAMPLES: usize = 8;
/// The source-port offset of the resolve phase's probes: the last one, so
/// that their answers count as answers to a late try.
const RESOLVE_OFFSET: u16 = TRIES_PER_BLOCK - 1;
/// Canary probes sent to ports that answered with an ICMP error. More than
/// twice Linux's burst of 6, so a full bucket still shows as a limit.
const CANARIES: u32 = 16;
/// RSTs after which silent ports are held back for the rate-limit phases: a
/// host that has answered this many closed ports may be capping RSTs (a home
/// router with a handful of closed ports streams its stealth results).
const RST_HOLD: u64 = 8;
/// Ports that answered with an ICMP error (or RST), kept as canary targets.
const CANARY_PORTS: usize = 16;
/// RST canaries, one per [`RST_CANARY_GAP`]: at 1,000/s, five times
/// FreeBSD's 200 RSTs/s, a cap answers a burst and then about one in five,
/// and the arrivals measure it. A fast sweep of a capped host can finish
/// before the cap has shown in its own answers (a LAN service test takes
/// 0.1 s, 25 RSTs at 200/s).
const RST_CANARIES: u32 = 64;
const RST_CANARY_GAP: Duration = Duration::from_millis(1);

/// Where a scan stands with respect to the target's rate limits.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// The ordinary pass: every port probed until it answers or runs out
    /// of tries. Ports that run out are held back (`Slot::silent`), not yet
    /// reported.
    Pass,
    /// The pass left silent ports on a host that sent ICMP errors: probes
    /// to ports that did answer so tell whether the host limits them.
    Canary {
        /// Which answers the canaries ask for: ICMP errors or RSTs.
        kind: LimitKind,
        /// Canary probes still to send.
        to_send: u32,
        /// When the last one left.
        last_sent: Option<Instant>,
        /// Answers to them so far.
        answers: u32,
    },
    /// Re-probing the silent ports at the limit's pace, within the budget.
    Resolve {
        started: Instant,
        /// Sweeps over the silent ports completed since the last answer.
        quiet_sweeps: u32,
        /// When a silent port last answered (or the phase started).
        last_answer: Instant,
    },
    /// Nothing left to probe.
    Settled,
}

impl Phase {
    /// The start of a canary check for limits of `kind`.
    fn canary(kind: LimitKind) -> Phase {
        Phase::Canary {
            kind,
            to_send: canaries(kind),
            last_sent: None,
            answers: 0,
        }
    }
}

/// Canary probes a check for limits of `kind` sends.
fn canaries(kind: LimitKind) -> u32 {
    match kind {
        LimitKind::Icmp => CANARIES,
        LimitKind::Rst => RST_CANARIES,
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
    /// When the try before the latest left, and the latest.
    prev_sent: Option<Instant>,
    last_sent: Option<Instant>,
    /// One of its tries left while the path was dropping probes to
    /// congestion (see [`Scan::tries_for`]).
    suspect: bool,
    /// Out of tries with no answer: held back until the rate-limit phases
    /// have had their say, then reported.
    silent: bool,
}

#[derive(Debug, Clone, Copy)]
struct Flight {
    sent: Instant,
    slot: u32,
    try_no: u8,
}

/// One running scan (see the module documentation).
pub(super) struct Scan {
    /// The scan's source-port block (and its slot in the engine).
    pub(super) block: u16,
    /// The engine's id of the scan, unique among its scans.
    pub(super) id: u64,
    pub(super) target: IpAddr,
    /// Writes this scan's probes and classifies its replies.
    module: Box<dyn ProbeModule>,
    sport_base: u16,
    pub(super) ports: Vec<u16>,
    slots: Vec<Slot>,
    order: PortOrder,
    next_new: u64,
    retry: VecDeque<u32>,
    inflight: VecDeque<Flight>,
    /// Probes sent within the last flight time, for aging (same order as `inflight`).
    young: VecDeque<Flight>,
    /// Probes in flight and young: what the congestion window limits.
    outstanding: usize,
    rtt: RttEstimator,
    pub(super) cc: Congestion,
    /// Paces sends to what the path has shown it carries (see [`PathPacer`]):
    /// the window alone lets a stealth host's path be overrun.
    pub(super) pacer: PathPacer,
    /// Probes to ports that answered, for the pacer's evidence.
    timing: TimingProbes,
    /// The smallest RTT of the scan's own answers.
    own_min_rtt: Option<Duration>,
    pub(super) rate: Option<RateLimiter>,
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
    pub(super) watch: Option<Watch>,
    pub(super) report: WatchReport,
    echo: Option<IcmpEcho>,
    last_ping: Option<Instant>,
    pub(super) sink: Sink,
    /// Arrival times of ICMP errors and RSTs, for the rate-limit checks.
    detector: Detector,
    /// Ports held back silent (see [`Slot::silent`]).
    silent: usize,
    /// Ports that answered with an ICMP error: canary targets.
    icmp_ports: Vec<u16>,
    /// Ports that answered RST: canary targets for an RST cap.
    rst_ports: Vec<u16>,
    phase: Phase,
    /// Re-probing time allowed (see [`ScanRequest::budget`]).
    budget: Duration,
    /// The limit found, once found.
    limit: Option<(LimitKind, Estimate)>,
    /// Paces the probes of the resolve phase.
    resolve_rate: Option<RateLimiter>,
    /// Silent ports in the current sweep's order, and the position in it.
    sweep: Vec<u32>,
    sweep_pos: usize,
    /// Silent ports when the resolve phase started, and how many answered since.
    resolve_silent: usize,
    resolved: usize,
    /// When the limited kind's answers arrived during the resolve phase
    /// (bounded): the phase sends steadily, so they measure the limit best.
    resolve_arrivals: Vec<Duration>,
    /// The pace in force in the resolve phase.
    resolve_pace: f64,
    /// When the resolve phase last sent a probe.
    last_resolve_probe: Option<Instant>,
    rate_limit: Option<RateLimitReport>,
    /// The request's own rate cap, which a cap for the target never exceeds.
    user_rate: Option<u32>,
    /// The engine's memory of hosts that sent ICMP errors.
    memory: Option<std::sync::Arc<std::sync::Mutex<HostMemory>>>,
    /// Whether that memory knows this target (looked up once, when a port
    /// first runs out of tries).
    remembered: Option<bool>,
}

impl Scan {
    /// A scan of `request` from `source`, probing with `module`; `key`
    /// orders the ports (the module holds its own copy for cookies).
    pub(super) fn new(
        block: u16,
        source: IpAddr,
        module: Box<dyn ProbeModule>,
        key: CookieKey,
        request: ScanRequest,
        config: &EngineConfig,
        sink: Sink,
    ) -> Scan {
        let ports = request.ports.ports().to_vec();
        let n = ports.len();
        Scan {
            block,
            id: 0,
            target: request.target,
            module,
            sport_base: SOURCE_PORT_BASE + block * TRIES_PER_BLOCK,
            slots: vec![
                Slot {
                    tries: 0,
                    done: false,
                    waiting: false,
                    aged: false,
                    first_sent: None,
                    prev_sent: None,
                    last_sent: None,
                    suspect: false,
                    silent: false,
                };
                n
            ],
            order: PortOrder::new(&ports, key),
            ports,
            next_new: 0,
            retry: VecDeque::new(),
            inflight: VecDeque::new(),
            young: VecDeque::new(),
            outstanding: 0,
            rtt: {
                let mut rtt = RttEstimator::new(config.initial_rto, config.min_rto, config.max_rto);
                if let Some(hint) = request.rtt_hint {
                    rtt.seed(hint);
                }
                rtt
            },
            cc: Congestion::new(config.initial_window, 16, config.max_window),
            pacer: PathPacer::new(PACE_INITIAL, PACE_MIN),
            timing: TimingProbes::default(),
            own_min_rtt: None,
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
            echo: request.watch.as_ref().and_then(|_| {
                IcmpEcho::new(source, request.target, config.ttl, ping_ident(block)).ok()
            }),
            watch: request.watch,
            report: WatchReport::default(),
            last_ping: None,
            sink,
            detector: Detector::new(),
            silent: 0,
            icmp_ports: Vec::new(),
            rst_ports: Vec::new(),
            phase: Phase::Pass,
            budget: request.budget.unwrap_or(DEFAULT_BUDGET),
            limit: None,
            resolve_rate: None,
            sweep: Vec::new(),
            sweep_pos: 0,
            resolve_silent: 0,
            resolved: 0,
            resolve_arrivals: Vec::new(),
            resolve_pace: 0.0,
            last_resolve_probe: None,
            rate_limit: None,
            user_rate: request.rate,
            memory: None,
            remembered: None,
        }
    }

    /// Shares the engine's memory of hosts that sent ICMP errors: a scan
    /// that sees none itself checks the ports an earlier scan saw reject.
    pub(super) fn remembering(
        mut self,
        memory: std::sync::Arc<std::sync::Mutex<HostMemory>>,
    ) -> Scan {
        self.memory = Some(memory);
        self
    }

    /// The scan's echo probe, when it watches.
    pub(super) fn echo(&self) -> Option<&IcmpEcho> {
        self.echo.as_ref()
    }

    /// Queues the next echo request if one is due.
    pub(super) fn fill_ping(&mut self, now: Instant, batch: &mut SendBatch) {
        let (Some(w), Some(echo)) = (&self.watch, &self.echo) else {
            return;
        };
        if self.report.pings_sent >= w.pings || batch.room() == 0 {
            return;
        }
        if self.next_ping().is_some_and(|due| now < due) {
            return;
        }
        let seq = u16::from(self.report.pings_sent);
        if batch.push(self.target, |buf| echo.write(buf, seq)).is_ok() {
            self.report.pings_sent += 1;
            self.last_ping = Some(now);
            self.started.get_or_insert(now);
        }
    }

    /// When the next echo request is due, if one is left and one has gone.
    fn next_ping(&self) -> Option<Instant> {
        let w = self.watch.as_ref()?;
        if self.report.pings_sent >= w.pings {
            return None;
        }
        let gap = if self.done == self.ports.len() {
            PING_INTERVAL_DONE
        } else {
            PING_INTERVAL
        };
        Some(self.last_ping? + gap)
    }

    /// Records a packet from the target that answered nothing we sent.
    pub(super) fn unsolicited(&mut self, what: impl FnOnce() -> String) {
        if self.watch.is_none() {
            return;
        }
        self.report.unsolicited += 1;
        if self.report.unsolicited_examples.len() < MAX_EXAMPLES {
            self.report.unsolicited_examples.push(what());
        }
    }

    /// When watching ends: the tail after the last port result and the last ping
    /// (see [`WatchTail`]).
    fn watch_until(&self) -> Option<Instant> {
        let w = self.watch.as_ref()?;
        match w.tail {
            WatchTail::Fixed(tail) => Some(self.last_result.max(self.last_ping)? + tail),
            WatchTail::Rto { min, max } => {
                let rto = self.rtt.rto().clamp(min, max.max(min));
                let answered = self.last_ping.map(|t| t + rto);
                answered.max(self.last_result.map(|t| t + min))
            }
        }
    }

    pub(super) fn finished(&self, now: Instant) -> bool {
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

    pub(super) fn has_work(&self) -> bool {
        match self.phase {
            Phase::Canary { to_send, .. } => to_send > 0,
            Phase::Resolve { .. } => self.silent > 0 && !self.resolve_draining(),
            _ => !self.retry.is_empty() || self.next_new < self.ports.len() as u64,
        }
    }

    /// How long until this scan's own caps let it send again (the event
    /// loop sleeps no longer than that while the scan has work).
    pub(super) fn send_wait(&self) -> Duration {
        if let Phase::Canary {
            kind: LimitKind::Rst,
            ..
        } = self.phase
        {
            return RST_CANARY_GAP;
        }
        if let Phase::Resolve { .. } = self.phase {
            return self
                .resolve_rate
                .as_ref()
                .map_or(Duration::ZERO, RateLimiter::wait)
                .max(Duration::from_micros(50));
        }
        let cap = self.rate.as_ref().map_or(Duration::ZERO, RateLimiter::wait);
        let pace = self.pacer.wait().max(Duration::from_micros(50));
        cap.max(pace)
    }

    /// The tries a silent port gets, given what this scan has seen so far.
    fn tries_limit(&self) -> u8 {
        if let Some(t) = self.fixed_tries {
            return t;
        }
        // Project the responsive ports over the whole scan from the share answered so far.
        let decided = self.done.max(1) as u64;
        let responsive = (self.answers * self.ports.len() as u64 / decided).max(self.answers);
        needed_tries(
            self.answers,
            self.lost_before,
            responsive,
            MIN_TRIES,
            TRIES_PER_BLOCK as u8,
        )
    }

    /// The tries `slot` gets: [`Scan::tries_limit`], and one more (at the
    /// slower pace by then) if one of its tries left while the path was
    /// dropping probes to congestion, so may have been lost to it. One: the
    /// episode is a round trip or two of overshoot, so it takes at most
    /// one or two of a port's tries, which are an RTO apart; the tries
    /// outside it face only the background loss the limit was made for.
    fn tries_for(&self, slot: &Slot) -> u8 {
        let base = self.tries_limit();
        if self.fixed_tries.is_some() || !slot.suspect {
            return base;
        }
        (base + 1).min(TRIES_PER_BLOCK as u8)
    }

    /// Whether a try that left at `sent` may have been dropped to
    /// congestion. Each try is judged at its own timeout and again at the
    /// next one's (the first try at every timeout): drop evidence comes back
    /// a round trip or more after the drop, so the episode that took a try
    /// is often known only by then. The last try's own episode is often
    /// still unknown at its timeout: a rate cut around when it left counts
    /// instead ([`PathPacer::cut_near`]).
    /// Only the tries' own times count, not the span between them: the
    /// retries of a large scan come after its first pass, and the episodes
    /// of that pass took none of them.
    fn was_suspect(&self, slot: &Slot, sent: Instant) -> bool {
        let near = |t: Option<Instant>| t.is_some_and(|t| self.pacer.dropped_near(t));
        slot.suspect
            || self.pacer.dropped_near(sent)
            || self.pacer.cut_near(sent)
            || near(slot.prev_sent)
            || near(slot.first_sent)
    }

    /// Appends up to `quota` probes to `batch`; returns how many.
    pub(super) fn fill(&mut self, now: Instant, quota: usize, batch: &mut SendBatch) -> usize {
        match self.phase {
            Phase::Canary { .. } => return self.fill_canaries(now, quota, batch),
            Phase::Resolve { .. } => return self.fill_resolve(now, quota, batch),
            Phase::Settled => return 0,
            Phase::Pass => {}
        }
        let window_room = self.window().saturating_sub(self.outstanding);
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
        if allowed > 0 && self.module.protocol() == crate::result::Transport::Tcp {
            n += self.fill_timing(now, batch);
        }
        let timing = n;
        while n < allowed {
            // First tries before retries: a stealth port's tries are an RTO
            // apart, so the scan cannot end before its last first try plus
            // three RTOs; retries that took the pace first pushed that try
            // back (at 150 ms, the service test's last first try left at
            // 0.52 s instead of 0.35 s). A retry only has to come after its
            // RTO, not at it, and later retries face losses less correlated
            // with the first try's.
            let slot_idx = if self.next_new < self.ports.len() as u64 {
                let s = self.order.nth(self.next_new) as u32;
                self.next_new += 1;
                s
            } else if let Some(s) = self.retry.pop_front() {
                s
            } else {
                break;
            };
            let slot = &mut self.slots[slot_idx as usize];
            if slot.done || slot.silent {
                continue;
            }
            let try_no = slot.tries;
            let sport = self.sport_base + u16::from(try_no);
            let dport = self.ports[slot_idx as usize];
            let module = &self.module;
            if batch
                .push(self.target, |buf| module.write(buf, sport, dport))
                .is_err()
            {
                // Cannot happen with MAX_PROBE-sized slots; never report it as a port state.
                self.retry.push_front(slot_idx);
                break;
            }
            slot.tries += 1;
            slot.waiting = true;
            slot.aged = false;
            slot.prev_sent = slot.last_sent;
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
            self.detector.on_probe();
            n += 1;
        }
        self.timing.own_probes(n - timing);
        n
    }

    /// Probes in flight the scan may have: the congestion window, or what
    /// the pace keeps in flight over twice the flight time if that is more.
    /// The window grows only with answers, and a stealth host answers too few
    /// to open it: on a 150 ms path 1,024 probes in flight would cap the scan
    /// at 3,400 probes/s whatever the path carries. The pacer governs the
    /// path; the window still bounds a host that answers (and our own
    /// receive queue, see [`Congestion::cut`]).
    fn window(&self) -> usize {
        const MAX_PACED: f64 = 262_144.0;
        let flight = self.flight_time().as_secs_f64();
        let paced = (self.pacer.current_rate() * flight * 2.0).min(MAX_PACED) as usize;
        self.cc.window().max(paced)
    }

    /// How long a timing probe may go unanswered before it counts as lost.
    /// Longer than the RTO: an answer that a queue delays is delay evidence,
    /// and must not be counted as a drop too (a drop cut halves the rate, a
    /// delay cut takes it to 70 %); 50 ms covers a home router's queue.
    fn timing_timeout(&self) -> Duration {
        let srtt = self.rtt.srtt().unwrap_or(self.rtt.rto());
        self.rtt
            .rto()
            .max(srtt * 2)
            .max(srtt + Duration::from_millis(50))
    }

    /// Sends the timing probe due, if any; returns how many (0 or 1).
    fn fill_timing(&mut self, now: Instant, batch: &mut SendBatch) -> usize {
        let Some((offset, dport)) = self.timing.next(now, self.pacer.current_rate()) else {
            return 0;
        };
        let sport = self.sport_base + offset;
        let module = &self.module;
        if batch
            .push(self.target, |buf| module.write(buf, sport, dport))
            .is_err()
        {
            return 0;
        }
        self.sent += 1;
        1
    }

    /// Sends canary probes: to ports that answered with an ICMP error (or
    /// RST) before, from their first try's source port. Every port has
    /// settled by now, so such an answer to a port already done is a
    /// canary's. ICMP canaries go at once; RST canaries one per
    /// [`RST_CANARY_GAP`], so their arrivals measure a cap.
    fn fill_canaries(&mut self, now: Instant, quota: usize, batch: &mut SendBatch) -> usize {
        let Phase::Canary {
            kind,
            to_send,
            last_sent,
            answers,
        } = self.phase
        else {
            return 0;
        };
        let (ports, most) = match kind {
            LimitKind::Icmp => (&self.icmp_ports, u32::MAX),
            LimitKind::Rst => {
                if last_sent.is_some_and(|t| now < t + RST_CANARY_GAP) {
                    return 0;
                }
                (&self.rst_ports, 1)
            }
        };
        let total = canaries(kind);
        let mut n = 0u32;
        let sport = self.sport_base;
        while n < to_send.min(most) && (n as usize) < quota.min(batch.room()) {
            let k = (total - to_send + n) as usize;
            let dport = ports[k % ports.len()];
            let module = &self.module;
            if batch
                .push(self.target, |buf| module.write(buf, sport, dport))
                .is_err()
            {
                break;
            }
            n += 1;
        }
        self.sent += u64::from(n);
        self.phase = Phase::Canary {
            kind,
            to_send: to_send - n,
            last_sent: if n > 0 { Some(now) } else { last_sent },
            answers,
        };
        n as usize
    }

    /// Sends the next probes of the resolve phase's sweep over the silent
    /// ports, at the limit's pace.
    fn fill_resolve(&mut self, now: Instant, quota: usize, batch: &mut SendBatch) -> usize {
        if self.resolve_draining() {
            return 0;
        }
        let Some(rate) = &mut self.resolve_rate else {
            return 0;
        };
        let allowed = rate.take(now, quota.min(batch.room()));
        let mut n = 0;
        while n < allowed && self.silent > 0 && !self.resolve_draining() {
            if self.sweep_pos >= self.sweep.len() {
                self.new_sweep();
                continue;
            }
            let slot_idx = self.sweep[self.sweep_pos];
            if self.slots[slot_idx as usize].silent {
                let sport = self.sport_base + RESOLVE_OFFSET;
                let dport = self.ports[slot_idx as usize];
                let module = &self.module;
                if batch
                    .push(self.target, |buf| module.write(buf, sport, dport))
                    .is_err()
                {
                    break;
                }
                let slot = &mut self.slots[slot_idx as usize];
                slot.tries = slot.tries.saturating_add(1).max(TRIES_PER_BLOCK as u8);
                slot.last_sent = Some(now);
                self.last_resolve_probe = Some(now);
                self.sent += 1;
                n += 1;
            }
            self.sweep_pos += 1;
            if self.sweep_pos == self.sweep.len() {
                self.sweep_done();
            }
        }
        n
    }

    /// A sweep has sent its last probe: one more sweep since the last answer.
    fn sweep_done(&mut self) {
        if let Phase::Resolve {
            started,
            quiet_sweeps,
            last_answer,
        } = self.phase
        {
            self.phase = Phase::Resolve {
                started,
                quiet_sweeps: quiet_sweeps + 1,
                last_answer,
            };
        }
    }

    /// Under a fast cap one quiet sweep is enough (see [`Scan::advance`]):
    /// then the phase stops sending and waits for the sweep's last answers.
    fn resolve_draining(&self) -> bool {
        matches!(
            (self.phase, self.limit),
            (Phase::Resolve { quiet_sweeps, .. }, Some((_, e)))
                if e.per_second >= SLOW_LIMIT && quiet_sweeps >= 1
        ) && self.sweep_pos >= self.sweep.len()
    }

    /// Starts the next sweep over the ports still silent.
    fn new_sweep(&mut self) {
        self.sweep = (0..self.slots.len() as u32)
            .filter(|&i| self.slots[i as usize].silent)
            .collect();
        self.sweep_pos = 0;
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
    pub(super) fn expire(&mut self, now: Instant) {
        self.age(now);
        let rto = self.rtt.rto();
        let timeout = self.timing_timeout();
        let pacer = &mut self.pacer;
        self.timing
            .expire(now, timeout, |sent| pacer.on_loss(sent, now));
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
            let suspect = self.was_suspect(&slot, f.sent);
            let slot = &mut self.slots[f.slot as usize];
            slot.waiting = false;
            slot.suspect = suspect;
            let slot = *slot;
            if !slot.aged {
                self.outstanding -= 1;
            }
            if slot.tries < self.tries_for(&slot) {
                self.retry.push_back(f.slot);
            } else if self.may_be_limited(now) {
                self.slots[f.slot as usize].silent = true;
                self.silent += 1;
            } else {
                // Nothing suggests a limit could be hiding an answer: report
                // it now, so a stealth host's results stream as they settle.
                self.finish_port(f.slot as usize, Reason::NoResponse, None, None, now);
            }
        }
        self.advance(now);
    }

    /// Whether a silent port may be an answer the target's rate limit
    /// swallowed, so that it is held back for the rate-limit phases: the host
    /// sent ICMP errors (in this scan or, remembered, an earlier one), a cap
    /// was found, or it sent enough RSTs for a cap on them to matter. A
    /// stealth host (a home router that drops everything) shows none of these.
    fn may_be_limited(&mut self, now: Instant) -> bool {
        if !self.icmp_ports.is_empty()
            || self.limit.is_some()
            || self.detector.answers(LimitKind::Rst) >= RST_HOLD
        {
            return true;
        }
        if self.remembered.is_none() {
            let known = self.memory.as_ref().is_some_and(|m| {
                let m = m.lock().unwrap_or_else(|p| p.into_inner());
                m.recall(self.target, now).is_some()
            });
            self.remembered = Some(known);
        }
        self.remembered == Some(true)
    }

    /// Moves between the rate-limit phases (see [`Phase`]).
    fn advance(&mut self, now: Instant) {
        match self.phase {
            Phase::Pass => {
                if self.done + self.silent < self.ports.len() {
                    return;
                }
                if self.silent == 0 {
                    // Reports a cap the pass kept below, if one was found.
                    self.settle(now, Reason::NoResponse);
                } else if self.limit.is_some() {
                    self.start_resolve(now);
                } else if self.rst_cap_unjudged() {
                    self.phase = Phase::canary(LimitKind::Rst);
                } else {
                    self.icmp_canaries_or_settle(now);
                }
            }
            Phase::Canary {
                kind,
                to_send,
                last_sent,
                answers,
            } => {
                let Some(last) = last_sent else { return };
                let wait = self
                    .rtt
                    .rto()
                    .max(self.rtt.srtt().unwrap_or_default() * 3)
                    .max(Duration::from_millis(50));
                if to_send > 0 || now < last + wait {
                    return;
                }
                // Without a limit nearly every canary is answered; path loss
                // (measured on TCP answers) takes its share both ways.
                let p = if self.answers >= 32 {
                    (self.lost_before as f64 / self.answers as f64).min(0.9)
                } else {
                    0.0
                };
                let expected = f64::from(canaries(kind)) * (1.0 - p) * (1.0 - p);
                if kind == LimitKind::Rst {
                    let at = now.saturating_duration_since(self.start_time(now));
                    let cap = self.detector.cap(LimitKind::Rst, at).or_else(|| {
                        (f64::from(answers) < expected * 0.8)
                            .then(|| self.detector.estimate(LimitKind::Rst))
                            .flatten()
                    });
                    match cap {
                        Some(e) => {
                            self.limit = Some((LimitKind::Rst, e));
                            self.start_resolve(now);
                        }
                        None => self.icmp_canaries_or_settle(now),
                    }
                } else if f64::from(answers) < expected * 0.5 {
                    // A handful of arrivals in a short pass measure nothing
                    // yet: start at Linux's default, one per second, until
                    // the resolve phase's own arrivals measure it.
                    let estimate = Estimate {
                        shape: Shape::Burst {
                            burst: self.detector.icmp_answers() as u32,
                        },
                        per_second: 1.0,
                    };
                    self.limit = Some((LimitKind::Icmp, estimate));
                    self.start_resolve(now);
                } else {
                    self.settle(now, Reason::NoResponse);
                }
            }
            Phase::Resolve {
                started,
                quiet_sweeps,
                last_answer,
            } => {
                let Some((_, estimate)) = self.limit else {
                    return;
                };
                if self.silent == 0 {
                    self.settle(now, Reason::NoResponse);
                    return;
                }
                if now >= started + self.budget {
                    self.settle(now, Reason::NoResponseRateLimited);
                    return;
                }
                // A slow limit: two whole sweeps and three refills with no
                // answer, so the limit had room, and the ports left are silent
                // indeed. A fast cap, which the sweep keeps below: one whole
                // sweep with no answer (every port left then had two probes
                // at that pace, the quiet sweep's and the one before), and
                // time for its last answers to arrive.
                let (sweeps, quiet) = if estimate.per_second < SLOW_LIMIT {
                    let refill = Duration::from_secs_f64(3.0 / estimate.per_second.max(0.01));
                    (2, refill.max(Duration::from_secs(3)))
                } else {
                    (1, (self.rtt.rto() * 2).max(Duration::from_millis(50)))
                };
                // A slow limit's sweeps go on while it waits (any rejection
                // left would answer); a fast cap's have stopped (draining).
                let last_probe = if sweeps == 1 {
                    self.last_resolve_probe.unwrap_or(last_answer)
                } else {
                    last_answer
                };
                if quiet_sweeps >= sweeps && now >= last_answer + quiet && now >= last_probe + quiet
                {
                    self.settle(now, Reason::NoResponse);
                }
            }
            Phase::Settled => {}
        }
    }

    /// Whether the pass held silent ports back for a possible RST cap but
    /// saw too few RSTs to judge one (see [`RST_CANARIES`]).
    fn rst_cap_unjudged(&self) -> bool {
        let rsts = self.detector.answers(LimitKind::Rst);
        !self.rst_ports.is_empty() && (RST_HOLD..crate::ratelimit::CAP_MIN_ANSWERS).contains(&rsts)
    }

    /// Checks the ports that answered with ICMP errors (this scan's or an
    /// earlier one's) for a limit, or reports the silent ports as they are.
    fn icmp_canaries_or_settle(&mut self, now: Instant) {
        if !self.icmp_ports.is_empty() || self.recall_icmp_ports(now) {
            self.phase = Phase::canary(LimitKind::Icmp);
        } else {
            self.settle(now, Reason::NoResponse);
        }
    }

    /// Takes the ports an earlier scan saw this host reject, when this one
    /// saw none itself; whether there were any.
    fn recall_icmp_ports(&mut self, now: Instant) -> bool {
        let Some(memory) = &self.memory else {
            return false;
        };
        let memory = memory.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(seen) = memory.recall(self.target, now) {
            self.icmp_ports = seen.icmp_ports.clone();
        }
        !self.icmp_ports.is_empty()
    }

    /// Starts re-probing the silent ports at the pace of the limit found.
    fn start_resolve(&mut self, now: Instant) {
        let Some((_, estimate)) = self.limit else {
            return;
        };
        self.resolve_silent = self.silent;
        self.resolve_pace = pace(&estimate, self.silent);
        self.resolve_rate = Some(RateLimiter::new(self.resolve_pace.ceil() as u32));
        self.phase = Phase::Resolve {
            started: now,
            quiet_sweeps: 0,
            last_answer: now,
        };
        self.sweep.clear();
        self.sweep_pos = 0;
        if self.budget.is_zero() {
            self.settle(now, Reason::NoResponseRateLimited);
        }
    }

    /// Measures the limit again from the resolve phase's steady probing
    /// and moves the pace to it (the pass's few arrivals only started it).
    ///
    /// Only a slowly refilling bucket is measured here: its answers come at
    /// its own rate however fast the sweep goes. Under a steady cap the
    /// phase stays below the cap, so its answers would measure our pace.
    fn remeasure(&mut self, now: Instant) {
        const KEEP: usize = 512;
        let slow = matches!(self.limit, Some((_, e)) if e.per_second < SLOW_LIMIT);
        if !slow {
            return;
        }
        let at = now.saturating_duration_since(self.start_time(now));
        if self.resolve_arrivals.len() == KEEP {
            self.resolve_arrivals.remove(0);
        }
        self.resolve_arrivals.push(at);
        if !self.resolve_arrivals.len().is_multiple_of(4) {
            return;
        }
        if let (Some(e), Some((kind, before))) = (
            crate::ratelimit::estimate(&self.resolve_arrivals),
            self.limit,
        ) {
            // The pass saw the burst; the phase sees the steady rate.
            let e = Estimate {
                shape: before.shape,
                per_second: e.per_second,
            };
            self.limit = Some((kind, e));
            let p = pace(&e, self.silent.max(1));
            // Only re-pace on a real change: a new limiter starts empty.
            if (p - self.resolve_pace).abs() > 0.25 * self.resolve_pace {
                self.resolve_pace = p;
                self.resolve_rate = Some(RateLimiter::new(p.ceil() as u32));
            }
        }
    }

    /// Reports every port still silent with `reason`, and the limit found.
    fn settle(&mut self, now: Instant, reason: Reason) {
        if let Some(memory) = &self.memory {
            let mut memory = memory.lock().unwrap_or_else(|p| p.into_inner());
            memory.remember(self.target, now, &self.icmp_ports);
        }
        let spent = match self.phase {
            Phase::Resolve { started, .. } => now.saturating_duration_since(started),
            _ => Duration::ZERO,
        };
        let unresolved = if reason == Reason::NoResponseRateLimited {
            self.silent
        } else {
            0
        };
        for i in 0..self.slots.len() {
            if self.slots[i].silent {
                self.slots[i].silent = false;
                self.silent -= 1;
                self.finish_port(i, reason, None, None, now);
            }
        }
        if let Some((kind, provisional)) = self.limit {
            // The latest measurement: the resolve phase's for a slow limit
            // (see `remeasure`), the pass's for a cap.
            let estimate = provisional;
            self.rate_limit = Some(RateLimitReport {
                kind,
                estimate,
                silent: self.resolve_silent,
                resolved: self.resolved,
                unresolved,
                pace: self.resolve_pace,
                budget: self.budget,
                spent,
            });
        }
        self.phase = Phase::Settled;
    }

    /// The earliest time a probe of this scan can time out.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let rto = self.rtt.rto();
        let expiry = self.inflight.front().map(|f| f.sent + rto);
        let aging = self.young.front().map(|f| f.sent + self.flight_time());
        let timing = self.timing.deadline(self.timing_timeout());
        let ping = self.next_ping();
        // The tail counts once the pings are out too: before that it is
        // not the end (see `finished`), and a tail shorter than the pings'
        // interval, due first, would have the loop spin until the next ping.
        let tail = if self.done == self.ports.len() && ping.is_none() {
            self.watch_until()
        } else {
            None
        };
        let phase = match self.phase {
            Phase::Canary {
                last_sent: Some(t), ..
            } => Some(t + self.rtt.rto().max(Duration::from_millis(50))),
            Phase::Resolve { started, .. } => Some(started + self.budget),
            _ => None,
        };
        expiry
            .into_iter()
            .chain(aging)
            .chain(timing)
            .chain(ping)
            .chain(tail)
            .chain(phase)
            .min()
    }

    /// Which try a reply to our source port `sport` answers, if it is one of ours.
    fn try_of(&self, sport: u16, slot: usize) -> Option<u8> {
        let t = sport.checked_sub(self.sport_base)?;
        (t < TRIES_PER_BLOCK && (t as u8) < self.slots[slot].tries).then_some(t as u8)
    }

    /// Takes a packet the event loop routed to this scan's source-port block.
    pub(super) fn on_reply(
        &mut self,
        reply: &harbormaster_wire::Reply,
        packet: &[u8],
        now: Instant,
    ) {
        match self.module.classify(reply, packet) {
            Classified::Ignore => {}
            Classified::Forged => self.rejected += 1,
            Classified::Answer(a) => self.on_answer(a, now),
        }
    }

    fn on_answer(&mut self, a: Answer, now: Instant) {
        if let Some(offset) = a.sport.checked_sub(self.sport_base)
            && let Some(sent) = self.timing.answer(offset, a.dport)
        {
            let rtt = now.saturating_duration_since(sent);
            // Well under the smallest RTT of the scan's own answers (exact:
            // each try has its own source port) is not this probe's answer
            // but a SYN-ACK that an open port retransmitted for an earlier
            // use of the pair.
            let floor = self.own_min_rtt.or(self.rtt.srtt().map(|s| s / 2));
            if floor.is_none_or(|f| rtt >= f.mul_f64(0.9)) {
                self.rtt.sample(rtt);
                self.pacer.on_answer(now, Some(sent), Some(rtt), None);
            }
            return;
        }
        let idx = self.ports.binary_search(&a.dport).ok();
        // Canaries go to ports that have settled, or (remembered from an
        // earlier scan) are not in this scan's list at all.
        if let Phase::Canary {
            kind,
            to_send,
            last_sent,
            answers,
        } = self.phase
            && idx.is_none_or(|i| self.slots[i].done)
            && a.sport == self.sport_base
            && match kind {
                LimitKind::Icmp => matches!(a.reason, Reason::Icmp { .. } | Reason::PortUnreach),
                LimitKind::Rst => a.reason == Reason::Rst,
            }
        {
            let at = now.saturating_duration_since(self.start_time(now));
            match kind {
                LimitKind::Icmp => self.detector.on_icmp(at, true),
                LimitKind::Rst => self.detector.on_rst(at, true),
            }
            self.phase = Phase::Canary {
                kind,
                to_send,
                last_sent,
                answers: answers + 1,
            };
            return;
        }
        let Some(idx) = idx else {
            return;
        };
        let Some(try_no) = self.try_of(a.sport, idx) else {
            return;
        };
        self.answer(idx, try_no, a, now);
    }

    fn answer(&mut self, idx: usize, try_no: u8, a: Answer, now: Instant) {
        let slot = self.slots[idx];
        if slot.done {
            self.duplicates += 1;
            return;
        }
        self.observe(&a, try_no, now);
        if slot.silent {
            // A held-back port answered after all: late, or re-probed.
            self.slots[idx].silent = false;
            self.silent -= 1;
            if let Phase::Resolve { started, .. } = self.phase {
                self.resolved += 1;
                self.remeasure(now);
                self.phase = Phase::Resolve {
                    started,
                    quiet_sweeps: 0,
                    last_answer: now,
                };
            }
            self.finish_port(idx, a.reason, None, Some(&a), now);
            return;
        }
        let counts_for_loss = a.counts_for_loss;
        let sent_at = if try_no + 1 == slot.tries {
            slot.last_sent
        } else if try_no + 2 == slot.tries {
            slot.prev_sent
        } else if try_no == 0 {
            slot.first_sent
        } else {
            None
        };
        let rtt = sent_at.map(|t| now.saturating_duration_since(t));
        if let Some(rtt) = rtt {
            self.rtt.sample(rtt);
            if counts_for_loss {
                self.own_min_rtt = Some(self.own_min_rtt.map_or(rtt, |m| m.min(rtt)));
            }
        }
        let lost_before = try_no > 0;
        self.cc.on_answer(lost_before && counts_for_loss);
        if counts_for_loss {
            // An answer to try k > 0 proves the first try was lost (or very late):
            // drop evidence for the pacer, dated by when that try left.
            let lost_sent = if lost_before { slot.first_sent } else { None };
            self.pacer.on_answer(now, sent_at, rtt, lost_sent);
            if rtt.is_some() {
                self.timing.own_sample(now);
            }
            if matches!(a.reason, Reason::SynAck | Reason::Rst) {
                self.timing
                    .add_target(a.dport, a.reason == Reason::SynAck, slot.tries);
            }
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
        self.finish_port(idx, a.reason, rtt, Some(&a), now);
    }

    /// When the scan started (its first probe), or `now` before that.
    fn start_time(&self, now: Instant) -> Instant {
        self.started.unwrap_or(now)
    }

    /// Feeds the rate-limit detector, and paces the pass when a steady cap
    /// on RSTs or ICMP errors shows.
    fn observe(&mut self, a: &Answer, try_no: u8, now: Instant) {
        let at = now.saturating_duration_since(self.start_time(now));
        let retry = try_no > 0;
        // UDP's closed ports answer with ICMP port unreachable, which hosts
        // limit like every ICMP error; a UDP reply is a service's own answer,
        // as a SYN-ACK is.
        let kind = match a.reason {
            Reason::Icmp { .. } | Reason::PortUnreach => {
                if self.icmp_ports.len() < CANARY_PORTS && !self.icmp_ports.contains(&a.dport) {
                    self.icmp_ports.push(a.dport);
                }
                self.detector.on_icmp(at, retry);
                LimitKind::Icmp
            }
            Reason::Rst => {
                if self.rst_ports.len() < CANARY_PORTS && !self.rst_ports.contains(&a.dport) {
                    self.rst_ports.push(a.dport);
                }
                self.detector.on_rst(at, retry);
                LimitKind::Rst
            }
            Reason::SynAck | Reason::UdpReply => {
                self.detector.on_syn_ack(at, retry);
                return;
            }
            _ => return,
        };
        // Judged every 32 answers of the kind: the estimate sorts its window.
        if self.limit.is_some()
            || !matches!(self.phase, Phase::Pass)
            || !retry
            || !self.detector.answers(kind).is_multiple_of(32)
        {
            return;
        }
        if let Some(e) = self.detector.cap(kind, at) {
            self.limit = Some((kind, e));
            // Stay below the cap for the rest of the pass, so the ports still
            // to probe are not lost to it too.
            let cap = (e.per_second * 0.8).max(1.0) as u32;
            let cap = self.user_rate.map_or(cap, |r| r.min(cap));
            self.rate = Some(RateLimiter::new(cap));
            self.resolve_pace = f64::from(cap);
        }
    }

    /// Reports the port's final result: `answer`'s, or `reason` (no answer).
    fn finish_port(
        &mut self,
        idx: usize,
        reason: Reason,
        rtt: Option<Duration>,
        answer: Option<&Answer>,
        now: Instant,
    ) {
        let reason = answer.map_or(reason, |a| a.reason);
        let tries = self.slots[idx].tries;
        self.slots[idx].done = true;
        self.done += 1;
        let state = reason.state();
        self.counts[state as usize] += 1;
        self.last_result = Some(now);
        (self.sink)(ScanEvent::Port(PortResult {
            target: self.target,
            port: self.ports[idx],
            proto: self.module.protocol(),
            state,
            reason,
            rtt,
            tries,
            ttl: answer.map(|a| a.ttl),
            window: answer.and_then(|a| a.window),
            evidence: answer.and_then(|a| a.evidence),
        }));
    }

    pub(super) fn summary(&self, cancelled: bool, error: Option<String>) -> ScanSummary {
        ScanSummary {
            target: self.target,
            ports: self.done,
            counts: self.counts,
            sent: self.sent,
            timing_probes: self.timing.sent,
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
            rate_limit: self.rate_limit.clone().map(Box::new),
        }
    }
}

// PortState is used as an index into `counts`.
const _: () = assert!(PortState::Open as usize == 0 && PortState::Stealth as usize == 3);

/// Ident of a scan's echo requests: its block number, tagged.
fn ping_ident(block: u16) -> u16 {
    0x4800 | block
}
