//! One scan's state machine: which port to probe next, which try is in
//! flight, when a probe times out, and what an answer means for the port, the
//! round-trip time, the loss estimate and the pacing. Protocol-free: the
//! scan's [`ProbeModule`] writes probes and classifies replies.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::api::{
    EngineConfig, MIN_TRIES, ScanEvent, ScanRequest, ScanSummary, Sink, Watch, WatchReport,
};
use super::{SOURCE_PORT_BASE, TRIES_PER_BLOCK};
use crate::cookie::CookieKey;
use crate::module::{Answer, Classified, IcmpEcho, ProbeModule};
use crate::permute::Permutation;
use crate::result::{PortResult, PortState, Reason};
use crate::timing::{
    Congestion, PACE_INITIAL, PACE_MIN, PathPacer, RateLimiter, RttEstimator, needed_tries,
};
use crate::transport::SendBatch;

/// Gap between echo requests.
const PING_INTERVAL: Duration = Duration::from_millis(250);
/// Unsolicited packets described in the report.
const MAX_EXAMPLES: usize = 8;

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

/// One running scan (see the module documentation).
pub(super) struct Scan {
    /// The scan's source-port block (and its slot in the engine).
    pub(super) block: u16,
    pub(super) target: IpAddr,
    /// Writes this scan's probes and classifies its replies.
    module: Box<dyn ProbeModule>,
    sport_base: u16,
    pub(super) ports: Vec<u16>,
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
    pub(super) cc: Congestion,
    /// Paces sends to what the path has shown it carries (see [`PathPacer`]):
    /// the window alone lets a stealth host's path be overrun.
    pub(super) pacer: PathPacer,
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
            echo: request.watch.as_ref().and_then(|_| {
                IcmpEcho::new(source, request.target, config.ttl, ping_ident(block)).ok()
            }),
            watch: request.watch,
            report: WatchReport::default(),
            last_ping: None,
            sink,
        }
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
        if self.last_ping.is_some_and(|t| now < t + PING_INTERVAL) {
            return;
        }
        let seq = u16::from(self.report.pings_sent);
        if batch.push(self.target, |buf| echo.write(buf, seq)).is_ok() {
            self.report.pings_sent += 1;
            self.last_ping = Some(now);
            self.started.get_or_insert(now);
        }
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

    /// When watching ends: the tail after the last port result and the last ping.
    fn watch_until(&self) -> Option<Instant> {
        let w = self.watch.as_ref()?;
        let last = self.last_result.max(self.last_ping)?;
        Some(last + w.tail)
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
    pub(super) fn fill(&mut self, now: Instant, quota: usize, batch: &mut SendBatch) -> usize {
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
    pub(super) fn expire(&mut self, now: Instant) {
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
    pub(super) fn next_deadline(&self) -> Option<Instant> {
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
        let Ok(idx) = self.ports.binary_search(&a.dport) else {
            return;
        };
        let Some(try_no) = self.try_of(a.sport, idx) else {
            return;
        };
        self.answer(idx, try_no, a, now);
    }

    fn answer(&mut self, idx: usize, try_no: u8, a: Answer, now: Instant) {
        let counts_for_loss = a.counts_for_loss;
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
        self.finish_port(idx, a.reason, rtt, Some(&a), now);
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

/// Ident of a scan's echo requests: its block number, tagged.
fn ping_ident(block: u16) -> u16 {
    0x4800 | block
}
