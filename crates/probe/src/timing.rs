//! Timing: round-trip estimation, loss-aware congestion control, rate caps and
//! the number of tries a silent port needs before it may be called stealth.
//!
//! Replies name the try they answer (the try number is in the source port), so
//! every reply gives an unambiguous RTT sample, unlike TCP's retransmissions
//! (no Karn's rule needed).

use std::time::{Duration, Instant};

/// RFC 6298 smoothed RTT and retransmission timeout.
#[derive(Debug, Clone)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    initial: Duration,
    min: Duration,
    max: Duration,
}

impl RttEstimator {
    /// An estimator that waits `initial` before the first sample.
    pub fn new(initial: Duration, min: Duration, max: Duration) -> RttEstimator {
        RttEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            initial,
            min,
            max,
        }
    }

    /// Feeds one measured round trip.
    pub fn sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
    }

    /// Starts from `srtt`, an RTT known from elsewhere (another scan of the
    /// same host: its smoothed RTT, or one answer's), rather than from a
    /// first sample's RFC 6298
    /// variance of half the RTT, which would triple the RTO. The variance
    /// is an eighth of it, and at least 12.5 ms, so the RTO leaves at
    /// least 50 ms for a queue that has built since: a home router's.
    pub fn seed(&mut self, srtt: Duration) {
        self.srtt = Some(srtt);
        self.rttvar = (srtt / 8).max(Duration::from_micros(12_500));
    }

    /// The smoothed RTT, once there is a sample.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// How long to wait for an answer before retrying.
    pub fn rto(&self) -> Duration {
        match self.srtt {
            None => self.initial,
            Some(srtt) => (srtt + self.rttvar * 4).clamp(self.min, self.max),
        }
    }
}

/// Window-based congestion control that slows down for congestion, not for
/// random loss.
///
/// Halving the window on every lost probe (as TCP does) would crawl on a path
/// that drops a steady 2 % at random; that is what makes nmap take minutes there.
/// Instead losses are counted over windows of answers and the window is cut
/// only when a window's loss fraction is well above the background rate seen
/// so far, or when the kernel reports that our own receive queue overflowed.
#[derive(Debug, Clone)]
pub struct Congestion {
    cwnd: f64,
    ssthresh: f64,
    min: f64,
    max: f64,
    window_answers: u32,
    window_losses: u32,
    /// Exponentially smoothed background loss fraction.
    background: f64,
}

/// Answers per loss-accounting window.
const LOSS_WINDOW: u32 = 256;
/// A window whose loss fraction exceeds this (and the background) signals congestion.
const LOSS_CUT: f64 = 0.15;

impl Congestion {
    /// Starts with `initial` probes in flight, never below `min` nor above `max`.
    pub fn new(initial: usize, min: usize, max: usize) -> Congestion {
        Congestion {
            cwnd: initial as f64,
            ssthresh: f64::INFINITY,
            min: min as f64,
            max: max as f64,
            window_answers: 0,
            window_losses: 0,
            background: 0.0,
        }
    }

    /// Probes allowed in flight now.
    pub fn window(&self) -> usize {
        self.cwnd as usize
    }

    /// An answer arrived; `lost_before` says earlier tries of the same port went unanswered.
    pub fn on_answer(&mut self, lost_before: bool) {
        if self.cwnd < self.ssthresh {
            self.cwnd += 1.0;
        } else {
            self.cwnd += 1.0 / self.cwnd;
        }
        self.cwnd = self.cwnd.min(self.max);
        self.window_answers += 1;
        if lost_before {
            self.window_losses += 1;
        }
        if self.window_answers >= LOSS_WINDOW {
            let fraction = f64::from(self.window_losses) / f64::from(self.window_answers);
            if fraction > LOSS_CUT && fraction > 3.0 * self.background {
                self.cut();
            } else {
                self.background = 0.8 * self.background + 0.2 * fraction;
            }
            self.window_answers = 0;
            self.window_losses = 0;
        }
    }

    /// Definite congestion (e.g. the kernel dropped replies): halve the window.
    pub fn cut(&mut self) {
        self.cwnd = (self.cwnd / 2.0).max(self.min);
        self.ssthresh = self.cwnd;
    }
}

/// Pacing for paths whose capacity is unknown: the send rate starts low and
/// grows like TCP's slow start, and falls back when the path shows it is full.
///
/// A window of probes in flight protects nothing against a stealth host: it
/// answers so few probes that the window never learns the path's capacity, and
/// a burst of a thousand SYNs overflows a home router's 2 Mbit/s queue (issue 9
/// measured 73 % of probes tail-dropped, and open ports reported stealth).
/// So the engine also paces: probes leave at `rate` per second, with bursts of
/// about a millisecond's worth, and the rate is steered by the evidence the
/// few answers carry:
///
/// - **queueing delay**: an answer whose RTT exceeds the smallest RTT seen by
///   more than a threshold says a queue is building at the bottleneck; that is
///   seen before the queue overflows, so the rate is halved before drops cost
///   answers (delay-based, as in TCP Vegas or HyStart);
/// - **drop evidence**: an answer that arrives only to a later try (the try is
///   in the source port) proves the earlier tries were lost; when a round's
///   share of such answers is well above the background loss seen so far, the
///   rate is halved too.
///
/// Only evidence from probes sent after the last cut counts, so one episode of
/// congestion cuts once (as TCP's recovery does). Without congestion the rate
/// grows once per round trip, and only after an answer has proven the current
/// rate; each step is bounded so that one round of overshoot builds at most a
/// few tens of milliseconds of queue (see [`PathPacer::end_round`]). Rounds
/// without any answer creep on, since they carry no evidence. ICMP errors are
/// never fed in: routers rate-limit them (RFC 1812).
#[derive(Debug, Clone)]
pub struct PathPacer {
    rate: f64,
    min_rate: f64,
    max_rate: f64,
    tokens: f64,
    last: Option<Instant>,
    slow_start: bool,
    min_rtt: Option<Duration>,
    round_end: Option<Instant>,
    round_answers: u32,
    round_losses: u32,
    /// The current round's losses whenever their probes left.
    round_dropped: u32,
    /// When the probes lost this round left, as clusters (see
    /// [`PathPacer::record_episode`]), at most [`ROUND_CLUSTERS`].
    round_drops: Vec<(Instant, Instant)>,
    /// Send-time spans of the probes lost in congested rounds (bounded),
    /// one per cluster of losses (see [`PathPacer::record_episode`]):
    /// tries sent then may have been tail-dropped.
    episodes: Vec<(Instant, Instant)>,
    /// Smoothed fraction of answers that needed a retry, outside congestion.
    background: f64,
    last_cut: Option<Instant>,
    /// When the rate last grew.
    last_growth: Option<Instant>,
    /// An answer to a probe sent at the current rate came back without
    /// queueing delay: the current rate is proven, the next step may be taken.
    validated: bool,
    cuts: u32,
    drop_cuts: u32,
    /// The latest round-trip samples, with their arrival times.
    recent: std::collections::VecDeque<(Instant, Duration)>,
    /// Round-trip samples in the current round, and whether the last round
    /// had enough of them to call the evidence dense.
    round_samples: u32,
    dense: bool,
    /// The current round's length.
    round: Duration,
    /// Delay evidence counts only from probes sent after this: the queue
    /// that the last delay cut found takes that long to drain.
    drained: Option<Instant>,
    /// Send slots granted this round, since when, and whether the last
    /// round used less than half the rate (see [`PathPacer::end_round`]).
    round_granted: u64,
    round_start: Option<Instant>,
    app_limited: bool,
    /// Slow start may double up to this rate on sparse evidence (one answer
    /// sent at the current rate that came back without delay): twice the
    /// starting rate, which is still below the slowest downlink the project
    /// targets. A stealth host's first round trip carries only a few
    /// answers, and the timing probes that make the evidence dense cannot
    /// start before the first of them; waiting for them costs a round trip
    /// at the starting rate, which at 150 ms is most of a service test.
    blind_ceiling: f64,
}

/// How far an episode of drops may reach beyond the first and last lost
/// probe seen in it: the losses sample it, at least once per 50 ms (the
/// slowest timing probes, see `engine::timing_probes`).
const EPISODE_MARGIN: Duration = Duration::from_millis(50);
/// How long after a loss, beyond two rounds, its evidence still counts for
/// an episode: a timing probe's timeout or a retry's answer comes within it
/// on the paths the engine targets (see [`PathPacer::note_drop`]).
const DROP_HORIZON: Duration = Duration::from_millis(500);
/// Clusters of lost probes' send times a round keeps for its episodes.
const ROUND_CLUSTERS: usize = 64;
/// Episodes a scan keeps.
const EPISODES: usize = 256;
/// Round-trip samples kept for the delay level (see [`PathPacer::on_answer`]).
const RECENT: usize = 8;
/// Samples per round above which slow start may double per round trip: the
/// evidence of a queue then comes back within one round trip.
const DENSE: u32 = 8;

/// Rate a scan starts at: about 1 Mbit/s of SYNs, half of the slowest home
/// downlink the project targets (2 Mbit/s), so even the first round trip
/// cannot overflow it.
pub const PACE_INITIAL: f64 = 2_000.0;
/// The slowest pace: about 0.15 Mbit/s of SYNs.
pub const PACE_MIN: f64 = 300.0;
/// A round's share of retried answers above which it signals congestion
/// (and at least three times the background).
const PACE_LOSS_CUT: f64 = 0.15;

impl PathPacer {
    /// A pacer starting at `initial` probes per second, never below `min`.
    pub fn new(initial: f64, min: f64) -> PathPacer {
        PathPacer {
            rate: initial.max(min),
            blind_ceiling: 2.0 * initial.max(min),
            min_rate: min,
            max_rate: 50_000_000.0,
            tokens: 1.0,
            last: None,
            slow_start: true,
            min_rtt: None,
            round_end: None,
            round_answers: 0,
            round_losses: 0,
            round_dropped: 0,
            round_drops: Vec::new(),
            episodes: Vec::new(),
            background: 0.0,
            last_cut: None,
            last_growth: None,
            validated: false,
            cuts: 0,
            drop_cuts: 0,
            recent: std::collections::VecDeque::with_capacity(RECENT),
            round_samples: 0,
            dense: false,
            round: Duration::from_millis(50),
            drained: None,
            round_granted: 0,
            round_start: None,
            app_limited: false,
        }
    }

    /// Probes per second now.
    pub fn current_rate(&self) -> f64 {
        self.rate
    }

    /// How often the rate was cut, and how many of those cuts were for drops
    /// (as opposed to queueing delay alone).
    #[cfg(test)]
    pub(crate) fn cuts(&self) -> (u32, u32) {
        (self.cuts, self.drop_cuts)
    }

    /// Whether a probe sent at `sent` may have been dropped to congestion:
    /// it left during a span in which a congested share of probes was lost
    /// (a drop cut, or a round whose losses showed only after the rate had
    /// been cut for delay), or within [`EPISODE_MARGIN`] of one. Only such a
    /// port's silence is owed extra tries; a scan whose rate overshot for
    /// one round trip does not retry all 65,536 ports for it.
    pub fn dropped_near(&self, sent: Instant) -> bool {
        self.episodes
            .iter()
            .any(|&(a, b)| sent + EPISODE_MARGIN >= a && sent <= b + EPISODE_MARGIN)
    }

    /// Whether the rate was cut (for a queue or for drops) since a round
    /// before `sent`: the path was congested around when a probe left at
    /// `sent`, and whether that probe was dropped shows only once the drop
    /// evidence of that time is in (see [`PathPacer::dropped_near`]), a
    /// round trip and a timeout later, after the probe's own RTO.
    pub fn cut_near(&self, sent: Instant) -> bool {
        let since = sent.checked_sub(self.round).unwrap_or(sent);
        self.last_cut.is_some_and(|c| c >= since)
    }

    /// Notes a probe sent at `sent` as lost this round, learnt of at `now`.
    /// A loss learnt of long after the probe left (an answer to a retry
    /// sent after a large scan's first pass dates its first try) says
    /// nothing of the path now, and a congested round would make it an
    /// episode of its own (the first pass's random losses would then owe
    /// thousands of ports a try each): only recent ones count.
    fn note_drop(&mut self, sent: Instant, now: Instant) {
        if now.saturating_duration_since(sent) > self.round * 2 + DROP_HORIZON {
            return;
        }
        self.round_dropped += 1;
        merge_span(&mut self.round_drops, ROUND_CLUSTERS, (sent, sent));
    }

    /// Records this round's losses as episodes of congestion: one span per
    /// cluster of losses sent within twice [`EPISODE_MARGIN`] of each other.
    /// Not one span from the first to the last: the losses a round learns of
    /// may have left far apart (an answer to a retry dates the loss of the
    /// port's first try, which in a large scan left in its first pass), and
    /// a span between two random losses would owe thousands of ports a try.
    fn record_episode(&mut self) {
        for span in std::mem::take(&mut self.round_drops) {
            merge_span(&mut self.episodes, EPISODES, span);
        }
    }

    /// Queueing delay above the smallest RTT that signals a building queue:
    /// a quarter of the RTT (a jittery long path varies by more than a fixed
    /// few milliseconds), at least 5 ms (the scanner's own scheduling on a
    /// busy machine) and at most 25 ms (half of a typical 50 ms router queue).
    fn delay_threshold(min_rtt: Duration) -> Duration {
        (min_rtt / 4).clamp(Duration::from_millis(5), Duration::from_millis(25))
    }

    /// Takes up to `want` send slots at `now`; returns how many were granted.
    /// Bursts are capped at about a millisecond's worth (at least one probe).
    pub fn take(&mut self, now: Instant, srtt: Option<Duration>, want: usize) -> usize {
        self.end_round(now, srtt);
        let burst = (self.rate / 1000.0).max(1.0);
        if let Some(last) = self.last {
            let earned = now.saturating_duration_since(last).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + earned).min(burst);
        }
        self.last = Some(now);
        let granted = (self.tokens.floor() as usize).min(want);
        self.tokens -= granted as f64;
        self.round_granted += granted as u64;
        granted
    }

    /// Gives back `n` slots taken but not used (another limit refused them).
    pub fn refund(&mut self, n: usize) {
        self.tokens += n as f64;
        self.round_granted = self.round_granted.saturating_sub(n as u64);
    }

    /// How long until the next send slot.
    pub fn wait(&self) -> Duration {
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }

    /// An answer from the target (SYN-ACK or RST, never ICMP). `sent` is when
    /// the answered try left, if known (then `rtt` is its round trip);
    /// `lost_sent` is when the first unanswered earlier try left, if the
    /// answer came to a later try.
    ///
    /// The delay signals compare the *level* of the latest samples (the
    /// smallest of those that arrived within half a round) with the smallest
    /// RTT seen: path jitter raises single samples, a queue raises them all.
    /// With dense evidence (timing probes, see `engine::timing_probes`) slow
    /// start doubles the rate as soon as a sample sent at the current rate
    /// comes back without delay, as TCP's slow start does per round trip: a
    /// queue that the doubling builds shows within one round trip, and costs
    /// at most one round of drops, which the retries recover.
    pub fn on_answer(
        &mut self,
        now: Instant,
        sent: Option<Instant>,
        rtt: Option<Duration>,
        lost_sent: Option<Instant>,
    ) {
        let after_cut = |t: Instant| self.last_cut.is_none_or(|c| t >= c);
        let mut congested = false;
        let mut grow = false;
        if let (Some(sent), Some(rtt)) = (sent, rtt) {
            let min = self.min_rtt.map_or(rtt, |m| m.min(rtt));
            self.min_rtt = Some(min);
            self.round_samples += 1;
            if self.recent.len() == RECENT {
                self.recent.pop_front();
            }
            self.recent.push_back((now, rtt));
            let horizon = now.checked_sub((self.round / 2).max(Duration::from_millis(5)));
            let level = self
                .recent
                .iter()
                .filter(|(at, _)| horizon.is_none_or(|h| *at >= h))
                .map(|&(_, r)| r)
                .min()
                .unwrap_or(rtt);
            let threshold = Self::delay_threshold(min);
            let drained = self.drained.is_none_or(|d| sent >= d);
            if after_cut(sent) && drained && level > min + threshold {
                congested = true;
                // Cut to 70 % (see `cut`), which lets the queue drain at 30 %
                // of the capacity: it held `level - min` a round trip ago,
                // and grew for that round trip, so draining takes about
                // three times that plus a round. Probes sent before then
                // still see it, and a second cut for the same queue would
                // leave the path half used.
                self.drained = Some(now + (level - min) * 3 + self.round);
            } else if level > min + threshold / 2 {
                // A queue has started to form: stop doubling before it is full
                // (HyStart's delay exit), growing gently from here.
                self.slow_start = false;
            } else if self.slow_start && !self.app_limited && self.rate < self.blind_ceiling {
                // Below the blind ceiling any undelayed answer will do (the
                // rounds that crept on without answers proved nothing either).
                grow = true;
            } else if self.last_growth.is_none_or(|g| sent >= g) {
                self.validated = true;
                // Doubling waits for a sample sent three quarters of a
                // round after the last growth: one sent sooner met too
                // little of the queue the new rate builds, and proves too
                // little (after half a round, the step from 128,000 to
                // 256,000/s was taken on a 107,000/s path in about 4 of 10
                // full sweeps, and 30,000-55,000 probes tail-dropped).
                grow = self.slow_start
                    && self.dense
                    && !self.app_limited
                    && self
                        .last_growth
                        .is_none_or(|g| sent >= g + self.round * 3 / 4);
            }
        }
        let lost = lost_sent.is_some_and(after_cut);
        self.round_answers += 1;
        if lost {
            self.round_losses += 1;
        }
        if let Some(sent) = lost_sent {
            self.note_drop(sent, now);
        }
        if congested {
            self.cut(now, false);
        } else if grow {
            if self.rate < self.blind_ceiling {
                self.grow(now, 1.0);
                self.rate = self.blind_ceiling;
            } else {
                self.grow(now, 2.0);
            }
        }
    }

    /// A deliberate timing probe sent at `sent` went unanswered (found at
    /// `now`): drop evidence, weighed like an answer that needed a retry.
    pub fn on_loss(&mut self, sent: Instant, now: Instant) {
        self.round_answers += 1;
        self.note_drop(sent, now);
        if self.last_cut.is_none_or(|c| sent >= c) {
            self.round_losses += 1;
        }
    }

    fn grow(&mut self, now: Instant, factor: f64) {
        self.rate = (self.rate * factor).min(self.max_rate);
        self.validated = false;
        self.last_growth = Some(now);
    }

    /// Closes the current round when its time is up and adjusts the rate.
    fn end_round(&mut self, now: Instant, srtt: Option<Duration>) {
        // A round lasts a round trip, and long enough to send the probes
        // whose answers make its evidence dense: on a LAN a round trip at
        // the starting pace holds less than one probe, and slow start
        // would wait for evidence that cannot come.
        let round = srtt
            .unwrap_or(Duration::from_millis(50))
            .max(Duration::from_millis(1))
            .max(Duration::from_secs_f64(f64::from(DENSE) / self.rate));
        let Some(end) = self.round_end else {
            self.round_end = Some(now + round);
            self.round_start = Some(now);
            return;
        };
        if now < end {
            // The first round began before any RTT was known: end it as
            // soon as a round trip has passed, not 50 ms later.
            if srtt.is_some() && end > now + round {
                self.round_end = Some(now + round);
            }
            return;
        }
        self.round_end = Some(now + round);
        self.round = round;
        // A rate the scan does not use (its window, its own rate cap or its
        // lack of ports hold it back) has proven nothing, and growing it
        // would only let a later burst overrun the path (TCP's congestion
        // window validation, RFC 7661). Nor would the window that follows
        // the pace (see `engine::scan`) mean anything.
        let length = self
            .round_start
            .map_or(round, |s| now.saturating_duration_since(s));
        self.app_limited = (self.round_granted as f64) < 0.5 * self.rate * length.as_secs_f64();
        self.round_granted = 0;
        self.round_start = Some(now);
        let (answers, losses, dropped) =
            (self.round_answers, self.round_losses, self.round_dropped);
        self.round_answers = 0;
        self.round_losses = 0;
        self.round_dropped = 0;
        self.dense = self.round_samples >= DENSE;
        self.round_samples = 0;
        if answers > 0 {
            let fraction = f64::from(losses) / f64::from(answers);
            // One retried answer proves nothing on a path with background loss
            // (a stealth host gives a round only a few answers, so one loss is
            // a large share): it takes two in a round.
            let background = self.background;
            let congested = |n: u32| {
                let share = f64::from(n) / f64::from(answers);
                n >= 2 && share > PACE_LOSS_CUT && share > 3.0 * background
            };
            if congested(dropped) {
                self.record_episode();
            }
            self.round_drops.clear();
            if congested(losses) {
                self.cut(now, true);
                return;
            }
            let weight = (f64::from(answers) / 256.0).min(0.2);
            self.background = (1.0 - weight) * self.background + weight * fraction;
        }
        // Growth per round is bounded in time, not only in ratio: sending at
        // `factor` times the capacity for one round (plus the round it takes the
        // evidence to come back) builds `(factor - 1) · 2 · round` of queue, and
        // that must stay well inside a home router's ~50 ms queue. So a 40 ms
        // path grows by ~38 % per round, a 150 ms one by 10 %, and a LAN still
        // doubles per millisecond.
        let secs = round.as_secs_f64();
        let step = if self.slow_start {
            (0.015 / secs).min(1.0)
        } else {
            (0.004 / secs).min(0.125)
        };
        // Grow only once the current rate is proven (an answer to a probe sent
        // at it came back without delay); otherwise the evidence lags a round
        // behind and slow start overshoots by the square of the step. Rounds
        // without any answer carry no evidence either way: they creep on (a
        // host that answers nothing has nothing to be got wrong), at a quarter
        // of the step.
        // Dense evidence in slow start: growth happens per validated sample
        // instead (see `on_answer`).
        if self.slow_start && self.dense || self.app_limited {
            return;
        }
        let factor = if self.validated {
            1.0 + step
        } else if answers == 0 {
            1.0 + step / 4.0
        } else {
            return;
        };
        self.grow(now, factor);
    }

    /// Cuts the rate and leaves slow start.
    fn cut(&mut self, now: Instant, for_drops: bool) {
        // Drops halve the rate, and so does a queue seen through sparse
        // answers (it may have grown a lot since); a queue that dense
        // evidence caught early takes TCP CUBIC's gentler decrease.
        let factor = if for_drops || !self.dense { 0.5 } else { 0.7 };
        self.rate = (self.rate * factor).max(self.min_rate);
        self.slow_start = false;
        self.last_cut = Some(now);
        self.cuts += 1;
        if for_drops {
            self.drop_cuts += 1;
            self.record_episode();
        }
        self.round_answers = 0;
        self.round_losses = 0;
        self.round_dropped = 0;
        self.round_drops.clear();
    }
}

/// Adds `span` (of send times) to `spans`: into one it comes within twice
/// [`EPISODE_MARGIN`] of, else as a span of its own, or, with `cap` spans
/// already, into the nearest (which then covers more probes than it needs
/// to: more tries, never fewer).
fn merge_span(spans: &mut Vec<(Instant, Instant)>, cap: usize, (a, b): (Instant, Instant)) {
    let gap = 2 * EPISODE_MARGIN;
    let distance = |e: &(Instant, Instant)| {
        if b < e.0 {
            e.0 - b
        } else {
            a.saturating_duration_since(e.1)
        }
    };
    let near = if spans.len() < cap {
        spans.iter_mut().find(|e| distance(e) <= gap)
    } else {
        spans.iter_mut().min_by_key(|e| distance(e))
    };
    match near {
        Some(e) => *e = (e.0.min(a), e.1.max(b)),
        None => spans.push((a, b)),
    }
}

/// A token bucket: at most `rate` packets per second, bursts of `burst`.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl RateLimiter {
    /// `rate` packets per second.
    pub fn new(rate: u32) -> RateLimiter {
        let rate = f64::from(rate.max(1));
        let burst = (rate / 100.0).clamp(1.0, 256.0);
        RateLimiter {
            rate,
            burst,
            tokens: burst,
            last: None,
        }
    }

    /// Takes up to `want` tokens at `now`; returns how many were granted.
    pub fn take(&mut self, now: Instant, want: usize) -> usize {
        if let Some(last) = self.last {
            let earned = now.saturating_duration_since(last).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + earned).min(self.burst);
        }
        self.last = Some(now);
        let granted = (self.tokens.floor() as usize).min(want);
        self.tokens -= granted as f64;
        granted
    }

    /// How long until at least one token is available.
    pub fn wait(&self) -> Duration {
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }
}

/// A rate cap shared by any number of scans (clone it into each): at most
/// `rate` sends per second in total, with bursts of about 1 % of a second's
/// worth (at least 1, at most 256).
///
/// Each sender reserves its own send time ([`RateBudget::reserve`]) and sleeps
/// until then, so waiting senders do not poll, and slots go out in the order
/// they were asked for: scans that keep equally many sends waiting get equal
/// shares. This is the generic cell-rate algorithm: a "theoretical arrival
/// time" advances by `1/rate` per send and may run at most the burst ahead of
/// the clock.
#[derive(Debug, Clone)]
pub struct RateBudget(std::sync::Arc<std::sync::Mutex<Pacer>>);

#[derive(Debug)]
struct Pacer {
    rate: u32,
    interval: Duration,
    tolerance: Duration,
    tat: Option<Instant>,
}

impl RateBudget {
    /// A budget of `rate` sends per second (0 counts as 1).
    pub fn new(rate: u32) -> RateBudget {
        let rate = rate.max(1);
        let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
        let burst = (rate / 100).clamp(1, 256);
        RateBudget(std::sync::Arc::new(std::sync::Mutex::new(Pacer {
            rate,
            interval,
            tolerance: interval * (burst - 1),
            tat: None,
        })))
    }

    /// Sends per second.
    pub fn rate(&self) -> u32 {
        self.pacer().rate
    }

    fn pacer(&self) -> std::sync::MutexGuard<'_, Pacer> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves one send at `now`; returns when it may happen (`now` or later).
    pub fn reserve(&self, now: Instant) -> Instant {
        let mut p = self.pacer();
        let tat = p.tat.unwrap_or(now).max(now);
        let at = tat.checked_sub(p.tolerance).unwrap_or(now).max(now);
        p.tat = Some(tat + p.interval);
        at
    }

    /// Takes up to `want` sends that may happen at `now`, without waiting:
    /// for a sender that cannot sleep per send (the SYN engine's loop) sharing
    /// the budget with senders that do ([`RateBudget::acquire`]). Slots others
    /// have reserved ahead come first, so the sum of all senders stays within
    /// the rate.
    pub fn try_take(&self, now: Instant, want: usize) -> usize {
        let mut p = self.pacer();
        let tat = p.tat.unwrap_or(now).max(now);
        let horizon = now + p.tolerance;
        if want == 0 || tat > horizon {
            return 0;
        }
        let free = (horizon - tat).as_nanos() / p.interval.as_nanos().max(1) + 1;
        let granted = want.min(usize::try_from(free).unwrap_or(usize::MAX));
        p.tat = Some(tat + p.interval * u32::try_from(granted).unwrap_or(u32::MAX));
        granted
    }

    /// How long from `now` until [`RateBudget::try_take`] grants a send.
    pub fn wait(&self, now: Instant) -> Duration {
        let p = self.pacer();
        match p.tat {
            Some(tat) => tat
                .checked_sub(p.tolerance)
                .map_or(Duration::ZERO, |at| at.saturating_duration_since(now)),
            None => Duration::ZERO,
        }
    }

    /// How many clones of this budget exist (tests: who still holds it).
    #[cfg(test)]
    pub(crate) fn holders(&self) -> usize {
        std::sync::Arc::strong_count(&self.0)
    }

    /// Waits for one send slot.
    pub async fn acquire(&self) {
        let at = self.reserve(Instant::now());
        if at > Instant::now() {
            tokio::time::sleep_until(at.into()).await;
        }
    }
}

/// How many tries a port must stay silent before it is called stealth.
///
/// With a round-trip loss probability `p` per try, a port that does answer stays
/// silent through `k` tries with probability `p^k`. The smallest `k` with
/// `p^k · responsive ≤ 0.001` keeps the expected number of answering ports
/// wrongly called stealth below one in a thousand scans. `p` is estimated from
/// answers that needed a retry; with fewer than 32 answers there is no estimate
/// and `min` applies.
pub fn needed_tries(answers: u64, lost_before: u64, responsive: u64, min: u8, max: u8) -> u8 {
    if answers < 32 || responsive == 0 {
        return min;
    }
    // One extra pseudo-loss keeps a lucky loss-free start from claiming p = 0.
    let p = ((lost_before + 1) as f64 / (answers + 1) as f64).min(0.9);
    let k = ((0.001 / responsive as f64).ln() / p.ln()).ceil();
    (k.max(f64::from(min)) as u8).clamp(min, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn try_take_and_reservations_share_one_rate() {
        // 1,000/s with a burst of 10: over one simulated second a sender that
        // reserves ahead and one that takes what is free get 1,000 (+ burst) together.
        let budget = RateBudget::new(1000);
        let start = Instant::now();
        let (mut reserved, mut taken) = (0usize, 0usize);
        // The reserving side (connect probes) keeps 4 reservations pending and
        // sends each when its time comes, as `acquire` would.
        let mut pending: Vec<Instant> = Vec::new();
        for ms in 0..1000u64 {
            let now = start + Duration::from_millis(ms);
            let before = pending.len();
            pending.retain(|at| *at > now);
            reserved += before - pending.len();
            while pending.len() < 4 {
                pending.push(budget.reserve(now));
            }
            taken += budget.try_take(now, 64);
        }
        let total = reserved + taken;
        assert!(
            (990..=1012).contains(&total),
            "{reserved} reserved + {taken} taken"
        );
        assert!(taken > 0, "the non-waiting sender is not starved entirely");
        // Alone, try_take grants the burst at once and then the rate.
        let alone = RateBudget::new(1000);
        assert_eq!(alone.try_take(start, 1000), 10);
        assert_eq!(alone.try_take(start, 1000), 0);
        assert!(alone.wait(start) > Duration::ZERO);
        assert_eq!(alone.try_take(start + Duration::from_millis(5), 1000), 5);
    }

    #[test]
    fn rto_follows_rfc_6298() {
        let mut e = RttEstimator::new(
            Duration::from_millis(500),
            Duration::from_millis(10),
            Duration::from_secs(3),
        );
        assert_eq!(e.rto(), Duration::from_millis(500));
        e.sample(Duration::from_millis(100));
        // srtt 100, rttvar 50 -> 300
        assert_eq!(e.rto(), Duration::from_millis(300));
        e.sample(Duration::from_millis(100));
        // rttvar = (3*50 + 0)/4 = 37.5 -> 100 + 150
        assert_eq!(e.rto(), Duration::from_millis(250));
        for _ in 0..100 {
            e.sample(Duration::from_micros(50));
        }
        assert_eq!(e.rto(), Duration::from_millis(10), "clamped to the minimum");
    }

    #[test]
    fn a_seeded_estimator_leaves_a_queue_of_room_not_twice_the_rtt() {
        let ms = Duration::from_millis;
        let mut e = RttEstimator::new(ms(500), ms(10), Duration::from_secs(3));
        e.seed(ms(150));
        assert_eq!(e.rto(), ms(225));
        e.seed(ms(1));
        assert_eq!(e.rto(), ms(51));
        // A first sample instead: the RFC 6298 variance of half the RTT.
        let mut first = RttEstimator::new(ms(500), ms(10), Duration::from_secs(3));
        first.sample(ms(150));
        assert_eq!(first.rto(), ms(450));
    }

    #[test]
    fn random_loss_does_not_collapse_the_window() {
        let mut c = Congestion::new(100, 16, 100_000);
        // 4 % of answers needed a retry, spread evenly: a lossy but uncongested path.
        for i in 0..20_000 {
            c.on_answer(i % 25 == 0);
        }
        assert!(c.window() > 5_000, "window {}", c.window());
    }

    #[test]
    fn bursts_of_loss_cut_the_window() {
        let mut c = Congestion::new(100, 16, 100_000);
        for _ in 0..2_000 {
            c.on_answer(false);
        }
        let before = c.window();
        for i in 0..512 {
            c.on_answer(i % 2 == 0);
        }
        assert!(c.window() < before, "{} !< {before}", c.window());
    }

    /// Drives a pacer against a simulated home path: a bottleneck of `mbit`
    /// of `frame`-byte probes with a 50 ms drop-tail queue and a base RTT of
    /// `rtt_ms`, where one probe in `answer_every` gets an answer (a stealth
    /// host); returns (capacity in probes/s, probes sent, probes
    /// tail-dropped) over `secs` seconds.
    fn drive(mbit: f64, frame: f64, rtt_ms: u64, answer_every: u64, secs: f64) -> (f64, u64, u64) {
        let capacity = mbit * 1e6 / (frame * 8.0);
        let queue = capacity * 0.05;
        let rtt = Duration::from_millis(rtt_ms);
        let mut p = PathPacer::new(PACE_INITIAL, PACE_MIN);
        let t0 = Instant::now();
        let step = Duration::from_micros(100);
        let mut backlog = 0.0f64;
        let (mut sent, mut dropped) = (0u64, 0u64);
        // Answers due: (arrival, sent, rtt).
        let mut due: std::collections::VecDeque<(Instant, Instant, Duration)> = Default::default();
        let mut now = t0;
        while now < t0 + Duration::from_secs_f64(secs) {
            backlog = (backlog - capacity * step.as_secs_f64()).max(0.0);
            while due.front().is_some_and(|d| d.0 <= now) {
                let (_, at, r) = due.pop_front().unwrap();
                p.on_answer(now, Some(at), Some(r), None);
            }
            let n = p.take(now, Some(rtt), 1000);
            for _ in 0..n {
                sent += 1;
                if backlog + 1.0 > queue {
                    dropped += 1;
                    continue;
                }
                backlog += 1.0;
                if sent % answer_every == 0 {
                    let r = rtt + Duration::from_secs_f64(backlog / capacity);
                    due.push_back((now + r, now, r));
                }
            }
            now += step;
        }
        (capacity, sent, dropped)
    }

    #[test]
    fn pacing_finds_a_2_mbit_bottleneck_from_a_stealth_hosts_few_answers() {
        // 2 Mbit/s of 54-byte frames, 40 ms RTT, 1.5 % answered.
        let (capacity, sent, dropped) = drive(2.0, 54.0, 40, 66, 5.0);
        assert!(dropped == 0, "{dropped} of {sent} tail-dropped");
        // It uses the path: at least half its capacity on average.
        assert!(sent as f64 > capacity * 5.0 * 0.5, "only {sent} sent");
    }

    #[test]
    fn dense_evidence_doubles_the_pace_per_round_trip_on_a_long_fast_path() {
        // 50 Mbit/s of 58-byte frames, 150 ms RTT; one probe in 16
        // answered, as timing probes give a stealth host's scan.
        let (capacity, sent, dropped) = drive(50.0, 58.0, 150, 16, 3.0);
        // Growing 10 % per round trip, as sparse evidence allows, would send
        // about 60,000 in 3 s; doubling reaches the capacity in about 1.5 s.
        assert!(sent as f64 > capacity * 3.0 * 0.5, "only {sent} sent");
        // The one overshoot costs a round trip of drops at most.
        assert!(
            (dropped as f64) < 0.1 * sent as f64,
            "{dropped} of {sent} tail-dropped"
        );
    }

    #[test]
    fn dense_evidence_holds_a_2_mbit_path_near_capacity() {
        let (capacity, sent, dropped) = drive(2.0, 54.0, 40, 16, 10.0);
        assert!(
            (dropped as f64) < 0.01 * sent as f64,
            "{dropped} of {sent} tail-dropped"
        );
        assert!(sent as f64 > capacity * 10.0 * 0.6, "only {sent} sent");
    }

    #[test]
    fn pacing_reaches_a_fast_paths_rate_quickly() {
        // A cooperative host on a fast path (veth), every probe answered.
        let mut p = PathPacer::new(PACE_INITIAL, PACE_MIN);
        let t0 = Instant::now();
        let mut now = t0;
        while now < t0 + Duration::from_millis(30) {
            p.take(now, Some(Duration::from_micros(200)), 1_000_000);
            p.on_answer(now, Some(now), Some(Duration::from_micros(200)), None);
            now += Duration::from_micros(100);
        }
        assert!(
            p.current_rate() > 200_000.0,
            "rate {} after 30 ms",
            p.current_rate()
        );
    }

    #[test]
    fn retried_answers_cut_the_pace_but_background_loss_does_not_stop_growth() {
        let mut p = PathPacer::new(10_000.0, PACE_MIN);
        let t0 = Instant::now();
        let rtt = Some(Duration::from_millis(10));
        p.take(t0, rtt, 0);
        // Half the answers of one round came to a retry of a probe sent after start.
        for i in 0..20 {
            let lost = (i % 2 == 0).then_some(t0);
            p.on_answer(t0, None, None, lost);
        }
        p.take(t0 + Duration::from_millis(11), rtt, 0);
        assert_eq!(p.cuts(), (1, 1));
        assert_eq!(p.current_rate(), 5_000.0);
        // Then 2 % background loss, spread over rounds: no further cuts.
        let mut now = t0 + Duration::from_millis(11);
        for round in 0..50 {
            for i in 0..50 {
                let lost = (i == 0 && round % 2 == 0).then_some(now);
                p.on_answer(now, Some(now), rtt, lost);
            }
            // The sender uses the pace it is given (one that does not
            // proves nothing, see `an_unused_pace_does_not_grow`).
            for _ in 0..11 {
                now += Duration::from_millis(1);
                p.take(now, rtt, 1_000);
            }
        }
        assert_eq!(p.cuts(), (1, 1));
        assert!(p.current_rate() > 5_000.0);
    }

    #[test]
    fn one_sparse_answer_doubles_the_start_but_no_more() {
        // A stealth host 150 ms away: its first answer, on time, proves the
        // starting pace, and the pace doubles to the blind ceiling; the
        // answers after it are as sparse, and slow start waits for dense
        // evidence (the timing probes) to double again.
        let rtt = Duration::from_millis(150);
        let mut p = PathPacer::new(PACE_INITIAL, PACE_MIN);
        let t0 = Instant::now();
        let mut now = t0;
        let mut answer_at = t0 + rtt;
        while now < t0 + Duration::from_millis(600) {
            p.take(now, Some(rtt), 1_000);
            if now >= answer_at {
                p.on_answer(now, Some(now - rtt), Some(rtt), None);
                if answer_at == t0 + rtt {
                    assert_eq!(p.current_rate(), 2.0 * PACE_INITIAL);
                }
                answer_at += Duration::from_millis(50);
            }
            now += Duration::from_millis(1);
        }
        let rate = p.current_rate();
        assert!(
            (2.0 * PACE_INITIAL..2.5 * PACE_INITIAL).contains(&rate),
            "rate {rate}"
        );
    }

    #[test]
    fn drop_episodes_are_clusters_of_losses_not_the_span_between() {
        // A round learns of a burst of losses and of one sent 300 ms later:
        // probes sent between them were not in any episode.
        let mut p = PathPacer::new(PACE_INITIAL, PACE_MIN);
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        for t in [0, 10, 20, 320] {
            p.note_drop(t0 + ms(t), t0 + ms(500));
        }
        p.record_episode();
        assert!(p.dropped_near(t0 + ms(15)));
        assert!(p.dropped_near(t0 + ms(60)), "within the margin");
        assert!(p.dropped_near(t0 + ms(320)));
        assert!(!p.dropped_near(t0 + ms(180)));
        // A later round learns, from an answer to a retry, that a probe
        // sent 2 s before was lost: old news, no episode.
        p.note_drop(t0 + ms(1_000), t0 + ms(3_000));
        p.record_episode();
        assert!(!p.dropped_near(t0 + ms(1_000)));
    }

    #[test]
    fn an_unused_pace_does_not_grow() {
        // Every answer on time, but the sender takes a tenth of its slots
        // (its window or a rate cap holds it back): the pace stays put.
        let rtt = Some(Duration::from_millis(10));
        let mut p = PathPacer::new(10_000.0, PACE_MIN);
        let mut now = Instant::now();
        for _ in 0..2_000 {
            now += Duration::from_millis(1);
            p.take(now, rtt, 1);
            p.on_answer(now, Some(now), rtt, None);
        }
        assert!(p.current_rate() <= 20_000.0, "rate {}", p.current_rate());
        // The same sender using every slot grows.
        let mut q = PathPacer::new(10_000.0, PACE_MIN);
        for _ in 0..200 {
            now += Duration::from_millis(1);
            q.take(now, rtt, 1_000);
            q.on_answer(now, Some(now), rtt, None);
        }
        assert!(q.current_rate() > 100_000.0, "rate {}", q.current_rate());
    }

    #[test]
    fn rate_limiter_grants_at_the_rate() {
        let mut r = RateLimiter::new(1000);
        let t0 = Instant::now();
        let mut granted = r.take(t0, 1000);
        for ms in 1..=1000 {
            granted += r.take(t0 + Duration::from_millis(ms), 1000);
        }
        assert!((990..=1011).contains(&granted), "{granted}");
    }

    #[test]
    fn a_shared_budget_paces_all_its_users() {
        let budget = RateBudget::new(200);
        let other = budget.clone();
        let t0 = Instant::now();
        // 1,000 reservations at once from two users: spaced 5 ms apart after a
        // burst of 2, in the order asked, whoever asks.
        let slots: Vec<Instant> = (0..1000)
            .map(|i| {
                if i % 2 == 0 {
                    budget.reserve(t0)
                } else {
                    other.reserve(t0)
                }
            })
            .collect();
        assert!(slots.windows(2).all(|w| w[0] <= w[1]));
        let in_first_second = slots
            .iter()
            .filter(|s| **s < t0 + Duration::from_secs(1))
            .count();
        assert!((200..=202).contains(&in_first_second), "{in_first_second}");
        let last = *slots.last().unwrap() - t0;
        assert!(
            last >= Duration::from_millis(4980) && last <= Duration::from_secs(5),
            "{last:?}"
        );
        // After a pause the budget does not hoard: only the burst is free.
        let later = t0 + Duration::from_secs(60);
        let burst: Vec<Instant> = (0..4).map(|_| budget.reserve(later)).collect();
        assert_eq!(burst[0], later);
        assert_eq!(burst[1], later);
        assert!(burst[2] > later);
        assert_eq!(RateBudget::new(0).rate(), 1);
    }

    #[test]
    fn tries_grow_with_loss() {
        assert_eq!(needed_tries(0, 0, 0, 3, 10), 3);
        assert_eq!(needed_tries(65_000, 0, 65_000, 3, 10), 3);
        // 4 % round-trip loss over 65k answering ports needs 6 tries.
        assert_eq!(needed_tries(65_000, 2_600, 65_000, 3, 10), 6);
        assert_eq!(needed_tries(1_000, 900, 1_000, 3, 10), 10);
    }
}
