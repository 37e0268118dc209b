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
