//! Middlebox awareness: is a SYN-ACK a service, or a proxy answering for it?
//!
//! SYN proxies, some firewalls and CDNs answer SYN-ACK on every port, so a
//! SYN scan alone calls every port open. Two checks complete the SYN pass:
//!
//! - **Verification** (when at most [`VerifyConfig::max_open`] ports are open):
//!   a real connection to each open port, watched briefly; without a rate
//!   cap each starts as its port is found ([`Verifier`]), after the scan
//!   under one. A banner or a
//!   connection that stays up means the handshake holds; a reset, an EOF or a
//!   refusal at once means only the SYN was answered ([`Reason::SynAckOnly`]).
//!   A zero receive window cannot be seen from userspace, so it is not used.
//! - **Wildcard check**: a few random high ports outside the scan's list, on
//!   the same target, through the same engine. If most answer SYN-ACK with the
//!   same (TTL, window) signature as the open ports, the host answers for every
//!   port; open ports that were not verified become [`Reason::SynAckWildcard`].
//!
//! Both are bounded in count and time and paced by the scan's rate.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use serde::{Serialize, Serializer};
use socket2::{Domain, Socket, Type};

use crate::engine::{Engine, ScanEvent, ScanHandle, ScanRequest, ScanSummary};
use crate::result::{PortResult, PortState, Reason};
use crate::spec::PortList;

/// Open ports verified at most, by default: above this the host is either a
/// wildcard (which the sample tells) or genuinely busy, and a connection per
/// port would cost more than the scan.
pub const DEFAULT_MAX_OPEN: usize = 256;
/// Random ports probed by the wildcard check, by default.
pub const DEFAULT_WILDCARD_SAMPLE: u16 = 8;
/// Bytes of a banner kept as evidence.
pub const BANNER_CAP: usize = 64;
/// Lowest port the wildcard sample draws from: above the well-known and most
/// registered service ports, so a real service is unlikely there.
const SAMPLE_LOW: u16 = 20_000;
/// The smallest sample the wildcard check judges.
const MIN_SAMPLE: usize = 4;
/// Packets one verification costs on the wire from our side (SYN, ACK, RST;
/// a fresh attempt after a lost SYN adds one, rarely, and is not counted).
const PACKETS_PER_CHECK: u32 = 3;
/// The longest a connection is watched.
pub const MAX_WATCH: Duration = Duration::from_secs(1);
/// The longest the verification may take at the scan's rate before it is skipped.
const MAX_PACED: Duration = Duration::from_secs(5);

/// Settings of both checks.
#[derive(Debug, Clone)]
pub struct VerifyConfig {
    /// Verify only when at most this many ports are open.
    pub max_open: usize,
    /// Random ports for the wildcard check (0 turns it off).
    pub wildcard_sample: u16,
    /// Timeout of each connect().
    pub connect_timeout: Duration,
    /// How long a connection is watched for a banner, a reset or an EOF
    /// beyond the round trip: a proxy's reset comes a round trip after the
    /// handshake plus the time the proxy takes to hear from its backend,
    /// and this is that time. The watch is the port's RTT plus this, up to
    /// [`MAX_WATCH`].
    pub watch: Duration,
    /// Connections at once.
    pub concurrency: usize,
    /// The scan's probe-rate cap: connections are paced to it, and a check
    /// that would take too long at it is skipped.
    pub rate: Option<u32>,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig {
            max_open: DEFAULT_MAX_OPEN,
            wildcard_sample: DEFAULT_WILDCARD_SAMPLE,
            connect_timeout: Duration::from_secs(1),
            // A synproxy's backend answers within a millisecond, a CDN's
            // from tens of milliseconds away; 100 ms also leaves room for a
            // busy machine.
            watch: Duration::from_millis(100),
            // All at once: a silent listener costs the whole watch, and 256
            // sockets are far below any descriptor limit.
            concurrency: DEFAULT_MAX_OPEN,
            rate: None,
        }
    }
}

/// What one real connection to an open port showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The server sent data first: the handshake holds.
    Banner,
    /// Connected and stayed up silently through the watch: the handshake holds.
    Silent,
    /// Connected, then reset at once.
    Reset,
    /// Connected, then closed at once without data.
    Eof,
    /// The connect itself was refused, although the SYN got a SYN-ACK.
    Refused,
    /// The connect did not complete in time: inconclusive.
    Timeout,
    /// A local error (e.g. out of sockets): inconclusive.
    Error,
}

impl Outcome {
    /// True when a service really accepted the connection.
    pub const fn holds(self) -> bool {
        matches!(self, Outcome::Banner | Outcome::Silent)
    }

    /// True when the outcome says something about the port (not a timeout or local error).
    pub const fn conclusive(self) -> bool {
        !matches!(self, Outcome::Timeout | Outcome::Error)
    }
}

/// One verified port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortCheck {
    /// The port.
    pub port: u16,
    /// What the connection showed.
    pub outcome: Outcome,
    /// The first bytes the server sent, at most [`BANNER_CAP`].
    pub banner: Vec<u8>,
}

/// Why a check did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Skipped {
    /// More open ports than [`VerifyConfig::max_open`].
    TooManyOpen,
    /// The scan's rate cap would make the check too slow.
    RateBudget,
    /// Too few high ports, in the list or out of it, to sample.
    NoFreePorts,
    /// Turned off in the configuration.
    Disabled,
}

/// A banner kept as evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Banner {
    /// The port that sent it.
    pub port: u16,
    /// Its first bytes, printable ASCII as is and everything else escaped.
    pub text: String,
}

/// The result of the verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// Open ports connected to.
    pub checked: usize,
    /// Of them, where the handshake held (banner or silent and up).
    pub held: usize,
    /// Of them, answered SYN only (reset, EOF or refused at once).
    pub syn_ack_only: usize,
    /// Of them, neither (timeout or local error): left as they were.
    pub inconclusive: usize,
    /// Set when the verification did not run, and why.
    pub skipped: Option<Skipped>,
    /// Banners seen, in port order.
    pub banners: Vec<Banner>,
    /// Wall time from the first connection's start (during the scan, when
    /// it starts early) to the last one's end.
    #[serde(rename = "elapsed_ms", serialize_with = "millis")]
    pub elapsed: Duration,
}

impl Verification {
    fn skipped(why: Skipped) -> Verification {
        Verification {
            checked: 0,
            held: 0,
            syn_ack_only: 0,
            inconclusive: 0,
            skipped: Some(why),
            banners: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }
}

/// What a SYN-ACK looked like: the same middlebox gives the same one everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Signature {
    /// TTL or hop limit as received.
    pub ttl: u8,
    /// TCP window.
    pub window: u16,
}

/// The result of the wildcard check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WildcardReport {
    /// The random ports probed.
    pub sampled: Vec<u16>,
    /// Of them, answered SYN-ACK.
    pub syn_ack: usize,
    /// Of those, with the open ports' most common signature.
    pub matching: usize,
    /// The open ports' most common SYN-ACK signature.
    pub signature: Option<Signature>,
    /// Most of the sample answered like the open ports: the host (or something
    /// in front of it) answers SYN-ACK for every port.
    pub answers_every_port: bool,
    /// Set when the check did not run, and why.
    pub skipped: Option<Skipped>,
}

impl WildcardReport {
    fn skipped(why: Skipped) -> WildcardReport {
        WildcardReport {
            sampled: Vec::new(),
            syn_ack: 0,
            matching: 0,
            signature: None,
            answers_every_port: false,
            skipped: Some(why),
        }
    }
}

fn millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3)
}

/// The middlebox checks of one SYN scan: fed each open port as the scan
/// finds it ([`Verifier::found`]), finished with the scan's results
/// ([`Verifier::finish`]).
///
/// Without a rate cap the work starts early: each open port's connection
/// as the port is found, and the wildcard sample's scan with the first of
/// them, from that port's round trip. On a fast path the scan's tail is
/// spent on its silent ports' retries, and the checks fit in it instead of
/// following it; on a stealth host the sample's silent tries ran a second
/// after the scan. Under a rate cap the checks are paced after the scan,
/// one after the other, so that all of it stays within the cap.
pub struct Verifier {
    engine: Arc<Engine>,
    target: IpAddr,
    config: VerifyConfig,
    limits: CheckLimits,
    plan: Sample,
    /// The sample's scan, once started.
    sample: Option<Sampling>,
    runtime: Option<tokio::runtime::Runtime>,
    tasks: Vec<(u16, tokio::task::JoinHandle<PortCheck>)>,
    /// When the first check started.
    started: Option<Instant>,
    /// More open ports than [`VerifyConfig::max_open`] came: none is checked.
    too_many: bool,
}

impl Verifier {
    /// The checks of a scan of `scanned` on `target` through `engine`, under
    /// `config`, within `limits`.
    pub fn new(
        engine: Arc<Engine>,
        scanned: &PortList,
        target: IpAddr,
        config: &VerifyConfig,
        limits: CheckLimits,
    ) -> Verifier {
        let seed = std::collections::hash_map::RandomState::new().build_hasher();
        Verifier {
            engine,
            target,
            config: config.clone(),
            limits,
            plan: plan_sample(scanned, config, seed),
            sample: None,
            runtime: None,
            tasks: Vec::new(),
            started: None,
            too_many: false,
        }
    }

    /// The scan found `r`: if it is an open SYN-ACK port, its check starts
    /// now, watched by the port's own round trip (and the first one starts
    /// the wildcard sample's scan).
    pub fn found(&mut self, r: &PortResult) {
        if self.config.rate.is_some()
            || self.too_many
            || r.state != PortState::Open
            || r.reason != Reason::SynAck
        {
            return;
        }
        self.start_sample(r.rtt);
        if self.tasks.len() >= self.config.max_open {
            // The verification will be skipped: stop the ones running.
            self.too_many = true;
            for (_, t) in self.tasks.drain(..) {
                t.abort();
            }
            return;
        }
        if self.runtime.is_none() {
            // One worker, so the checks progress while the caller blocks
            // on the scan's events; without one they wait for the end.
            self.runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("harbormaster-check")
                .enable_all()
                .build()
                .ok();
        }
        let Some(rt) = &self.runtime else { return };
        self.started.get_or_insert_with(Instant::now);
        let addr = SocketAddr::new(self.target, r.port);
        let (timeout, watch, resend) = (
            self.config.connect_timeout,
            watch_for(self.config.watch, r.rtt),
            resend_after(r.rtt),
        );
        let sockets = self.limits.sockets.clone();
        let task = rt.spawn(async move {
            let Ok(_socket) = sockets.clone().acquire_owned().await else {
                return PortCheck {
                    port: addr.port(),
                    outcome: Outcome::Error,
                    banner: Vec::new(),
                };
            };
            check_port(addr, timeout, watch, resend, Some(&sockets)).await
        });
        self.tasks.push((r.port, task));
    }

    /// Completes both checks on the finished scan: awaits what started
    /// early, runs the rest, rewrites the reasons in `results` and fills
    /// `summary.verification` and `summary.wildcard`. Blocks the calling
    /// thread (at most about `connect_timeout + watch` per `concurrency`
    /// ports, plus the sample's own scan); does nothing when no port is open.
    pub fn finish(mut self, results: &mut [PortResult], summary: &mut ScanSummary) {
        // The wildcard is judged on the scan's own SYN-ACKs (the only
        // results it reads), before the checks rewrite their reasons.
        let syn_acks: Vec<PortResult> = results
            .iter()
            .filter(|r| r.state == PortState::Open && r.reason == Reason::SynAck)
            .cloned()
            .collect();
        if syn_acks.is_empty() || summary.cancelled || summary.error.is_some() {
            return;
        }
        let open: Vec<u16> = syn_acks.iter().map(|r| r.port).collect();
        let rate = self.config.rate;
        let paced = self.limits.paced.clone();
        let _one = rate
            .is_some()
            .then(|| paced.lock().unwrap_or_else(|p| p.into_inner()));
        // The sample's scan: started early, or now beside the connections;
        // under a rate cap, after them.
        if rate.is_none() {
            self.start_sample(summary.srtt);
        }
        let (verification, held_ports) = self.check_open(&open, results, summary);
        self.start_sample(summary.srtt);
        let answers = self.sample.take().map_or_else(Vec::new, Sampling::collect);
        let wildcard = match &self.plan {
            Sample::Skip(why) => WildcardReport::skipped(*why),
            Sample::Probe(sample) => judge_wildcard(&syn_acks, sample, &answers),
            Sample::Own(own) => judge_wildcard(&syn_acks, own, &syn_acks),
        };
        if wildcard.answers_every_port {
            // A port whose handshake held keeps plain syn-ack; an unverified
            // or inconclusive one is suspect on a host that answers for
            // every port.
            for r in results.iter_mut() {
                if r.state == PortState::Open
                    && r.reason == Reason::SynAck
                    && !held_ports.contains(&r.port)
                {
                    r.reason = Reason::SynAckWildcard;
                }
            }
        }
        summary.verification = Some(Box::new(verification));
        summary.wildcard = Some(Box::new(wildcard));
    }

    /// Starts the wildcard sample's scan, at the rate cap, from the round
    /// trip `rtt` if known, unless it has started or needs none.
    fn start_sample(&mut self, rtt: Option<Duration>) {
        if self.sample.is_none()
            && let Sample::Probe(ports) = &self.plan
        {
            self.sample = Sampling::start(&self.engine, self.target, ports, self.config.rate, rtt);
        }
    }

    /// Connects to the open ports (unless too many, or the rate cap
    /// forbids), rewrites their reasons in `results`; returns the
    /// verification and the ports whose handshake held.
    fn check_open(
        &mut self,
        open: &[u16],
        results: &mut [PortResult],
        summary: &ScanSummary,
    ) -> (Verification, Vec<u16>) {
        let config = &self.config;
        if open.len() > config.max_open {
            return (Verification::skipped(Skipped::TooManyOpen), Vec::new());
        }
        let paced = |r: u32| {
            Duration::from_secs_f64(
                f64::from(PACKETS_PER_CHECK) * open.len() as f64 / f64::from(r.max(1)),
            )
        };
        if config.rate.is_some_and(|r| paced(r) > MAX_PACED) {
            return (Verification::skipped(Skipped::RateBudget), Vec::new());
        }
        let started = self.started.unwrap_or_else(Instant::now);
        let config = VerifyConfig {
            watch: watch_for(config.watch, summary.srtt),
            ..config.clone()
        };
        let checks = self.connect_all(open, &config, resend_after(summary.srtt));
        let held = checks
            .iter()
            .filter(|c| c.outcome.holds())
            .map(|c| c.port)
            .collect();
        (apply_checks(results, &checks, started.elapsed()), held)
    }

    /// The checks of `open`: those started early, awaited, and the others
    /// made now under `config`, paced by its rate, resending after `resend`.
    fn connect_all(
        &mut self,
        open: &[u16],
        config: &VerifyConfig,
        resend: Duration,
    ) -> Vec<PortCheck> {
        let runtime = match self.runtime.take() {
            Some(rt) => Ok(rt),
            None => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
        };
        let Ok(rt) = runtime else {
            return open
                .iter()
                .map(|&port| PortCheck {
                    port,
                    outcome: Outcome::Error,
                    banner: Vec::new(),
                })
                .collect();
        };
        let mut started = std::mem::take(&mut self.tasks);
        started.retain(|(port, _)| open.contains(port));
        let rest: Vec<u16> = open
            .iter()
            .copied()
            .filter(|p| !started.iter().any(|(q, _)| q == p))
            .collect();
        let (target, sockets) = (self.target, self.limits.sockets.clone());
        rt.block_on(async move {
            let mut out = check_ports(target, &rest, config, &sockets, resend).await;
            for (port, task) in started {
                out.push(task.await.unwrap_or(PortCheck {
                    port,
                    outcome: Outcome::Error,
                    banner: Vec::new(),
                }));
            }
            out.sort_by_key(|c| c.port);
            out
        })
    }
}

/// How the wildcard check will get its sample from a scan of `scanned`.
fn plan_sample(scanned: &PortList, config: &VerifyConfig, seed: impl Hasher + Clone) -> Sample {
    if config.wildcard_sample == 0 {
        return Sample::Skip(Skipped::Disabled);
    }
    if config
        .rate
        .is_some_and(|r| r < u32::from(config.wildcard_sample) * 4)
    {
        return Sample::Skip(Skipped::RateBudget);
    }
    let sample = sample_ports(scanned, config.wildcard_sample, seed.clone(), false);
    if sample.len() >= MIN_SAMPLE {
        return Sample::Probe(sample);
    }
    // The list covers (nearly) every high port: the scan's own answers
    // there are the sample, at no cost.
    let own = sample_ports(scanned, config.wildcard_sample, seed, true);
    if own.len() >= MIN_SAMPLE {
        Sample::Own(own)
    } else {
        Sample::Skip(Skipped::NoFreePorts)
    }
}

/// How the wildcard check gets its sample.
enum Sample {
    Skip(Skipped),
    /// Random ports outside the list, probed through the engine.
    Probe(Vec<u16>),
    /// The scan's own answers on these high ports of its list.
    Own(Vec<u16>),
}

/// Rewrites the reasons of `results` from `checks` and sums them up.
fn apply_checks(
    results: &mut [PortResult],
    checks: &[PortCheck],
    elapsed: Duration,
) -> Verification {
    let mut v = Verification {
        checked: checks.len(),
        held: 0,
        syn_ack_only: 0,
        inconclusive: 0,
        skipped: None,
        banners: Vec::new(),
        elapsed,
    };
    let by_port: HashMap<u16, &PortCheck> = checks.iter().map(|c| (c.port, c)).collect();
    for r in results.iter_mut() {
        let Some(c) = by_port.get(&r.port) else {
            continue;
        };
        if c.outcome.holds() {
            v.held += 1;
        } else if c.outcome.conclusive() {
            v.syn_ack_only += 1;
            r.reason = Reason::SynAckOnly;
        } else {
            v.inconclusive += 1;
        }
        if !c.banner.is_empty() {
            v.banners.push(Banner {
                port: c.port,
                text: printable(&c.banner),
            });
        }
    }
    v.banners.sort_by_key(|b| b.port);
    v
}

/// Banner bytes as text: printable ASCII as is, everything else escaped, so
/// untrusted bytes never reach a terminal or a document raw.
pub fn printable(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes.iter().take(BANNER_CAP) {
        match b {
            b'\\' => s.push_str("\\\\"),
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            0x20..=0x7e => s.push(char::from(b)),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}

/// Up to `n` distinct random ports in `SAMPLE_LOW..=65535` that are in
/// `scanned` (`inside`) or not, drawn from `rng` (bounded draws, so a list
/// that leaves few candidates ends it).
fn sample_ports(scanned: &PortList, n: u16, mut rng: impl Hasher, inside: bool) -> Vec<u16> {
    let mut out: Vec<u16> = Vec::new();
    for i in 0..u32::from(n) * 64 {
        if out.len() >= usize::from(n) {
            break;
        }
        rng.write_u32(i);
        let span = u64::from(u16::MAX - SAMPLE_LOW) + 1;
        let port = SAMPLE_LOW + (rng.finish() % span) as u16;
        if scanned.ports().binary_search(&port).is_ok() == inside && !out.contains(&port) {
            out.push(port);
        }
    }
    out.sort_unstable();
    out
}

/// The wildcard sample's scan, running on the engine: cancelled when
/// dropped, so a scan that was cancelled or ended without its checks
/// leaves nothing probing.
struct Sampling {
    handle: ScanHandle,
    rx: mpsc::Receiver<ScanEvent>,
}

impl Sampling {
    /// Starts SYN-probing `sample` on `target` through `engine`, at most at
    /// `rate`, from the round trip `rtt_hint` if known.
    fn start(
        engine: &Engine,
        target: IpAddr,
        sample: &[u16],
        rate: Option<u32>,
        rtt_hint: Option<Duration>,
    ) -> Option<Sampling> {
        let (tx, rx) = mpsc::channel();
        let request = ScanRequest {
            target,
            ports: PortList::from_ports(sample.to_vec()),
            // Two tries: a lost probe must not hide a wildcard, and silence is cheap here.
            tries: Some(2),
            rate,
            watch: None,
            protocol: crate::Protocol::Tcp,
            // Only SYN-ACKs matter here: never wait out a host's ICMP limit.
            budget: Some(Duration::ZERO),
            rtt_hint,
        };
        let handle = engine
            .submit(
                request,
                Box::new(move |ev| {
                    let _ = tx.send(ev);
                }),
            )
            .ok()?;
        Some(Sampling { handle, rx })
    }

    /// The results that came back, once the scan is done (at most 10 s).
    fn collect(self) -> Vec<PortResult> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(ScanEvent::Port(r)) => out.push(r),
                Ok(ScanEvent::Done(_)) | Err(_) => break,
            }
        }
        out
    }
}

impl Drop for Sampling {
    fn drop(&mut self) {
        // A finished scan ignores it.
        self.handle.cancel();
    }
}

/// Compares the sample's answers with the open ports' SYN-ACK signature.
fn judge_wildcard(open: &[PortResult], sample: &[u16], answers: &[PortResult]) -> WildcardReport {
    let signature_of = |r: &PortResult| {
        Some(Signature {
            ttl: r.ttl?,
            window: r.window?,
        })
    };
    let mut seen: HashMap<Signature, usize> = HashMap::new();
    for r in open
        .iter()
        .filter(|r| r.state == PortState::Open && r.reason == Reason::SynAck)
    {
        if let Some(s) = signature_of(r) {
            *seen.entry(s).or_default() += 1;
        }
    }
    let signature = seen
        .into_iter()
        .max_by_key(|(s, n)| (*n, s.window, s.ttl))
        .map(|(s, _)| s);
    let syn_acks: Vec<&PortResult> = answers
        .iter()
        .filter(|r| sample.contains(&r.port) && r.reason == Reason::SynAck)
        .collect();
    let matching = syn_acks
        .iter()
        .filter(|r| signature.is_some() && signature_of(r) == signature)
        .count();
    WildcardReport {
        sampled: sample.to_vec(),
        syn_ack: syn_acks.len(),
        matching,
        signature,
        // "Most": at least three quarters of a sample of at least four.
        answers_every_port: sample.len() >= MIN_SAMPLE && matching * 4 >= sample.len() * 3,
        skipped: None,
    }
}

/// How long a connection is watched: `rtt` + `backend` (see
/// [`VerifyConfig::watch`]), at most [`MAX_WATCH`].
fn watch_for(backend: Duration, rtt: Option<Duration>) -> Duration {
    (rtt.unwrap_or_default() + backend).min(MAX_WATCH)
}

/// What the checks of all scans of one scanner share.
#[derive(Debug, Clone)]
pub struct CheckLimits {
    /// Sockets they may hold at once, [`VerifyConfig::concurrency`]: each
    /// connection attempt holds one while it lives, and attempts beyond the
    /// descriptor limit would turn checks inconclusive.
    sockets: Arc<tokio::sync::Semaphore>,
    /// Checks under a rate cap run one scan at a time: each is paced to the
    /// cap alone (the web service verifies every test under its cap).
    paced: Arc<std::sync::Mutex<()>>,
}

impl CheckLimits {
    /// Limits for the checks under `config`.
    pub fn new(config: &VerifyConfig) -> CheckLimits {
        CheckLimits {
            sockets: Arc::new(tokio::sync::Semaphore::new(config.concurrency.max(1))),
            paced: Arc::default(),
        }
    }
}

/// Connects to every port in `ports`, as `sockets` allow, paced by the
/// rate, resending after `resend` (see [`check_port`]).
pub async fn check_ports(
    target: IpAddr,
    ports: &[u16],
    config: &VerifyConfig,
    sockets: &Arc<tokio::sync::Semaphore>,
    resend: Duration,
) -> Vec<PortCheck> {
    let gap = config
        .rate
        .map(|r| Duration::from_secs_f64(f64::from(PACKETS_PER_CHECK) / f64::from(r.max(1))));
    let mut tasks = tokio::task::JoinSet::new();
    for &port in ports {
        let Ok(permit) = sockets.clone().acquire_owned().await else {
            break;
        };
        let (timeout, watch) = (config.connect_timeout, config.watch);
        let pool = sockets.clone();
        tasks.spawn(async move {
            let addr = SocketAddr::new(target, port);
            let check = check_port(addr, timeout, watch, resend, Some(&pool)).await;
            drop(permit);
            check
        });
        if let Some(gap) = gap {
            tokio::time::sleep(gap).await;
        }
    }
    let mut out = Vec::with_capacity(ports.len());
    while let Some(done) = tasks.join_next().await {
        if let Ok(check) = done {
            out.push(check);
        }
    }
    out.sort_by_key(|c| c.port);
    out
}

/// When a connection attempt that has not completed gets a fresh one
/// beside it: 1.5 round trips and 20 ms, or 250 ms without an RTT. The
/// kernel resends a lost SYN only after a second (RFC 6298's initial RTO),
/// and on a path with 2 % loss each way about 8 of 200 checks lost their SYN
/// or SYN-ACK and held the verification a second longer.
pub fn resend_after(rtt: Option<Duration>) -> Duration {
    rtt.map_or(Duration::from_millis(250), |rtt| {
        rtt + rtt / 2 + Duration::from_millis(20)
    })
}

/// Connection attempts per check at most (see [`resend_after`]).
const ATTEMPTS: usize = 3;

/// One real connection to `addr`, watched for `watch` after it completes;
/// a fresh attempt goes out every `resend` until one completes (at most
/// three, each beyond the first taking a socket from `sockets` if given,
/// and not made when none is free), the first to complete counts.
pub async fn check_port(
    addr: SocketAddr,
    timeout: Duration,
    watch: Duration,
    resend: Duration,
    sockets: Option<&Arc<tokio::sync::Semaphore>>,
) -> PortCheck {
    let (outcome, banner) = match connect_and_watch(addr, timeout, watch, resend, sockets).await {
        Ok(seen) => seen,
        Err(e) => (classify_error(&e), Vec::new()),
    };
    PortCheck {
        port: addr.port(),
        outcome,
        banner,
    }
}

/// One connection attempt.
async fn attempt(addr: SocketAddr) -> io::Result<tokio::net::TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // Close with a RST: no TIME_WAIT, nothing left on the server.
    socket.set_linger(Some(Duration::ZERO))?;
    socket.set_nonblocking(true)?;
    socket.set_cloexec(true)?;
    let socket = tokio::net::TcpSocket::from_std_stream(socket.into());
    socket.connect(addr).await
}

/// Connects to `addr` within `timeout`, starting a fresh attempt every
/// `resend` while none has completed (see [`check_port`]); `None` when none
/// did. The first answer from the network decides, a refusal too: the port
/// answered it. A local error (out of sockets) decides only when no other
/// attempt is left.
async fn connect_soon(
    addr: SocketAddr,
    timeout: Duration,
    resend: Duration,
    sockets: Option<&Arc<tokio::sync::Semaphore>>,
) -> io::Result<Option<tokio::net::TcpStream>> {
    let deadline = tokio::time::Instant::now() + timeout;
    // Dropping the set aborts the attempts still pending, and closes them.
    let mut attempts = tokio::task::JoinSet::new();
    let mut made = 0;
    let mut local_error = None;
    loop {
        if made < ATTEMPTS {
            // The first attempt uses the caller's socket; the others take
            // one of their own for as long as they live.
            let permit = match sockets {
                Some(pool) if made > 0 => pool.clone().try_acquire_owned().ok(),
                _ => None,
            };
            if made == 0 || sockets.is_none() || permit.is_some() {
                attempts.spawn(async move {
                    let r = attempt(addr).await;
                    drop(permit);
                    r
                });
            }
            made += 1;
        }
        let next = if made < ATTEMPTS {
            (tokio::time::Instant::now() + resend).min(deadline)
        } else {
            deadline
        };
        match tokio::time::timeout_at(next, attempts.join_next()).await {
            Ok(Some(Ok(Ok(stream)))) => return Ok(Some(stream)),
            Ok(Some(Ok(Err(e)))) if classify_error(&e) != Outcome::Error => return Err(e),
            Ok(Some(Ok(Err(e)))) => local_error = Some(e),
            Ok(Some(Err(e))) => local_error = Some(io::Error::other(e)),
            Ok(None) | Err(_) => {}
        }
        let now = tokio::time::Instant::now();
        if attempts.is_empty() && made >= ATTEMPTS || now >= deadline {
            return match local_error {
                Some(e) if attempts.is_empty() => Err(e),
                _ => Ok(None),
            };
        }
        if attempts.is_empty() && next > now {
            // Nothing in flight: wait for the next attempt's turn.
            tokio::time::sleep_until(next).await;
        }
    }
}

async fn connect_and_watch(
    addr: SocketAddr,
    timeout: Duration,
    watch: Duration,
    resend: Duration,
    sockets: Option<&Arc<tokio::sync::Semaphore>>,
) -> io::Result<(Outcome, Vec<u8>)> {
    let Some(stream) = connect_soon(addr, timeout, resend, sockets).await? else {
        return Ok((Outcome::Timeout, Vec::new()));
    };
    let deadline = tokio::time::Instant::now() + watch;
    let mut buf = [0u8; BANNER_CAP];
    loop {
        match tokio::time::timeout_at(deadline, stream.readable()).await {
            Err(_) => return Ok((Outcome::Silent, Vec::new())),
            Ok(r) => r?,
        }
        match stream.try_read(&mut buf) {
            Ok(0) => return Ok((Outcome::Eof, Vec::new())),
            // The first bytes are enough: a greeting proves a service.
            Ok(n) => return Ok((Outcome::Banner, buf[..n].to_vec())),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

fn classify_error(e: &io::Error) -> Outcome {
    match e.raw_os_error() {
        Some(libc::ECONNRESET) | Some(libc::EPIPE) => Outcome::Reset,
        Some(libc::ECONNREFUSED) => Outcome::Refused,
        Some(libc::ETIMEDOUT) => Outcome::Timeout,
        _ => Outcome::Error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::Transport;

    fn result(port: u16, reason: Reason, ttl: u8, window: u16) -> PortResult {
        PortResult {
            target: "198.18.0.2".parse().unwrap(),
            port,
            proto: Transport::Tcp,
            state: reason.state(),
            reason,
            rtt: None,
            tries: 1,
            ttl: Some(ttl),
            window: Some(window),
            evidence: None,
        }
    }

    #[test]
    fn banners_are_escaped_and_capped() {
        assert_eq!(printable(b"220 ok\r\n"), "220 ok\\r\\n");
        assert_eq!(printable(b"\x1b[2J\\"), "\\x1b[2J\\\\");
        assert_eq!(printable(&[b'a'; 200]).len(), BANNER_CAP);
        assert_eq!(printable(b""), "");
    }

    #[test]
    fn the_sample_avoids_the_scanned_ports_and_is_bounded() {
        let scanned = PortList::parse("0-40000").unwrap();
        let s = sample_ports(&scanned, 8, std::hash::DefaultHasher::new(), false);
        assert_eq!(s.len(), 8);
        assert!(s.iter().all(|&p| p > 40000), "{s:?}");
        let mut d = s.clone();
        d.dedup();
        assert_eq!(d, s);
        // Every port taken: nothing to sample outside, and the draw still ends;
        // inside the list there is plenty.
        let all = PortList::parse("0-65535").unwrap();
        assert!(sample_ports(&all, 8, std::hash::DefaultHasher::new(), false).is_empty());
        let own = sample_ports(&all, 8, std::hash::DefaultHasher::new(), true);
        assert_eq!(own.len(), 8);
        assert!(own.iter().all(|&p| p >= SAMPLE_LOW), "{own:?}");
        let low = PortList::parse("0-1000").unwrap();
        assert!(sample_ports(&low, 8, std::hash::DefaultHasher::new(), true).is_empty());
    }

    #[test]
    fn wildcard_needs_most_of_the_sample_with_the_open_signature() {
        let open = [
            result(22, Reason::SynAck, 64, 0),
            result(80, Reason::SynAck, 64, 0),
            result(81, Reason::Rst, 64, 0),
        ];
        let sample: Vec<u16> = (30000..30008).collect();
        let like = |n: usize, window: u16| -> Vec<PortResult> {
            sample
                .iter()
                .enumerate()
                .map(|(i, &p)| {
                    if i < n {
                        result(p, Reason::SynAck, 64, window)
                    } else {
                        result(p, Reason::Rst, 64, 0)
                    }
                })
                .collect()
        };
        let w = judge_wildcard(&open, &sample, &like(8, 0));
        assert!(w.answers_every_port);
        assert_eq!((w.syn_ack, w.matching), (8, 8));
        assert_eq!(w.signature, Some(Signature { ttl: 64, window: 0 }));
        assert!(judge_wildcard(&open, &sample, &like(6, 0)).answers_every_port);
        assert!(!judge_wildcard(&open, &sample, &like(5, 0)).answers_every_port);
        // SYN-ACKs, but not like the open ports: a busy host, not one middlebox.
        let other = judge_wildcard(&open, &sample, &like(8, 64240));
        assert!(!other.answers_every_port);
        assert_eq!((other.syn_ack, other.matching), (8, 0));
        // No answers at all (a truncated or empty sample result).
        assert!(!judge_wildcard(&open, &sample, &[]).answers_every_port);
        assert!(!judge_wildcard(&open, &sample[..3], &like(3, 0)).answers_every_port);
    }

    #[test]
    fn checks_rewrite_only_the_ports_that_did_not_hold() {
        let mut rs = vec![
            result(21, Reason::SynAck, 64, 0),
            result(22, Reason::SynAck, 64, 0),
            result(23, Reason::SynAck, 64, 0),
            result(24, Reason::SynAck, 64, 0),
            result(25, Reason::Rst, 64, 0),
        ];
        let check = |port, outcome, banner: &[u8]| PortCheck {
            port,
            outcome,
            banner: banner.to_vec(),
        };
        let checks = [
            check(21, Outcome::Banner, b"220 hi\r\n"),
            check(22, Outcome::Silent, b""),
            check(23, Outcome::Reset, b""),
            check(24, Outcome::Timeout, b""),
        ];
        let v = apply_checks(&mut rs, &checks, Duration::ZERO);
        assert_eq!(
            (v.checked, v.held, v.syn_ack_only, v.inconclusive),
            (4, 2, 1, 1)
        );
        let reasons: Vec<Reason> = rs.iter().map(|r| r.reason).collect();
        assert_eq!(
            reasons,
            [
                Reason::SynAck,
                Reason::SynAck,
                Reason::SynAckOnly,
                Reason::SynAck,
                Reason::Rst
            ]
        );
        assert_eq!(
            v.banners,
            [Banner {
                port: 21,
                text: "220 hi\\r\\n".into()
            }]
        );
    }

    /// Real connections on loopback: a greeting, a silent listener, a server
    /// that closes at once and one that resets at once.
    #[tokio::test]
    async fn real_connections_are_told_apart() {
        use tokio::io::AsyncWriteExt;
        let bind = || std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (greet, silent, closer, resetter) = (bind(), bind(), bind(), bind());
        let addr = |l: &std::net::TcpListener| l.local_addr().unwrap();
        let (a_greet, a_silent, a_close, a_reset) =
            (addr(&greet), addr(&silent), addr(&closer), addr(&resetter));
        let serve = |l: std::net::TcpListener, mode: u8| {
            l.set_nonblocking(true).unwrap();
            let l = tokio::net::TcpListener::from_std(l).unwrap();
            tokio::spawn(async move {
                while let Ok((mut s, _)) = l.accept().await {
                    match mode {
                        0 => {
                            let _ = s.write_all(b"SSH-2.0-test\r\n").await;
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                        1 => drop(s),
                        _ => {
                            let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                            drop(s);
                        }
                    }
                }
            });
        };
        serve(greet, 0);
        serve(closer, 1);
        serve(resetter, 2);
        let t = Duration::from_secs(1);
        let w = Duration::from_millis(300);
        let r = Duration::from_millis(20);
        let g = check_port(a_greet, t, w, r, None).await;
        assert_eq!(
            (g.outcome, g.banner.as_slice()),
            (Outcome::Banner, &b"SSH-2.0-test\r\n"[..])
        );
        assert_eq!(
            check_port(a_silent, t, w, r, None).await.outcome,
            Outcome::Silent
        );
        assert_eq!(
            check_port(a_close, t, w, r, None).await.outcome,
            Outcome::Eof
        );
        assert_eq!(
            check_port(a_reset, t, w, r, None).await.outcome,
            Outcome::Reset
        );
        drop(silent);
        // Nothing listens any more: refused.
        assert_eq!(
            check_port(a_silent, t, w, r, None).await.outcome,
            Outcome::Refused
        );
    }

    /// An engine over a simulated network in which 198.18.0.2 drops
    /// every probe (a stealth host).
    fn stealth_engine() -> Arc<Engine> {
        use crate::sim::{SimHost, SimNetwork};
        let net = SimNetwork::lan(SimHost {
            silent: true,
            ..SimHost::default()
        });
        let source = net.source();
        Arc::new(Engine::start(
            net,
            crate::EngineConfig::default(),
            move |_| Ok(source),
        ))
    }

    fn verifier(target: &str, config: &VerifyConfig) -> Verifier {
        let list = PortList::parse("0-1055").unwrap();
        Verifier::new(
            stealth_engine(),
            &list,
            target.parse().unwrap(),
            config,
            CheckLimits::new(config),
        )
    }

    #[test]
    fn connections_start_as_open_ports_are_found() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let config = VerifyConfig {
            watch: Duration::from_millis(50),
            wildcard_sample: 0,
            ..VerifyConfig::default()
        };
        let mut v = verifier("127.0.0.1", &config);
        // A closed port starts nothing; the open one connects at once,
        // long before the scan would end and `finish` be called.
        let mut open = result(port, Reason::SynAck, 64, 65535);
        open.target = "127.0.0.1".parse().unwrap();
        v.found(&result(port.wrapping_add(1), Reason::Rst, 64, 0));
        v.found(&open);
        listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        let accepted = loop {
            match listener.accept() {
                Ok(c) => break Some(c),
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Err(_) => break None,
            }
        };
        assert!(
            accepted.is_some(),
            "the check did not connect before finish"
        );
        let mut summary = ScanSummary::empty(open.target);
        v.finish(std::slice::from_mut(&mut open), &mut summary);
        let verification = summary.verification.unwrap();
        assert_eq!((verification.checked, verification.held), (1, 1));
        assert_eq!(open.reason, Reason::SynAck);
    }

    #[test]
    fn the_sample_starts_with_the_first_open_port_but_not_under_a_rate_cap() {
        let mut v = verifier("198.18.0.2", &VerifyConfig::default());
        let mut open = result(22, Reason::SynAck, 64, 65535);
        open.rtt = Some(Duration::from_millis(1));
        v.found(&open);
        assert!(v.sample.is_some(), "the sample's scan did not start");
        let mut summary = ScanSummary::empty(open.target);
        v.finish(std::slice::from_mut(&mut open), &mut summary);
        // The stealth host answered none of it: no wildcard.
        let wildcard = summary.wildcard.unwrap();
        assert_eq!((wildcard.sampled.len(), wildcard.syn_ack), (8, 0));
        assert!(!wildcard.answers_every_port);
        let capped = VerifyConfig {
            rate: Some(1_000),
            ..VerifyConfig::default()
        };
        let mut v = verifier("198.18.0.2", &capped);
        v.found(&open);
        assert!(v.sample.is_none() && v.tasks.is_empty() && v.started.is_none());
    }

    #[test]
    fn no_connection_is_kept_beyond_max_open() {
        let config = VerifyConfig {
            max_open: 2,
            wildcard_sample: 0,
            ..VerifyConfig::default()
        };
        let mut v = verifier("198.18.0.2", &config);
        for port in [9, 10, 11] {
            v.found(&result(port, Reason::SynAck, 64, 65535));
        }
        assert!(v.too_many && v.tasks.is_empty());
    }

    /// A listener whose accept queue is full, so that it drops SYNs (Linux)
    /// as a lossy path would, and makes room after 60 ms; with the thread
    /// that makes it (it returns what it accepted) and the connection that
    /// fills the queue.
    fn full_listener() -> (
        SocketAddr,
        std::thread::JoinHandle<io::Result<Socket>>,
        std::net::TcpStream,
    ) {
        let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        l.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        l.listen(0).unwrap();
        let addr = l.local_addr().unwrap().as_socket().unwrap();
        let filler = std::net::TcpStream::connect(addr).unwrap();
        let drain = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(60));
            let first = l.accept().map(|(s, _)| s);
            // Kept open until the check is judged.
            std::thread::sleep(Duration::from_millis(600));
            first
        });
        (addr, drain, filler)
    }

    #[tokio::test]
    async fn a_lost_syn_gets_a_fresh_attempt_before_the_kernel_resends() {
        // The kernel resends the first SYN only after a second, past the
        // connect timeout, so only a fresh attempt can get through in time.
        let (addr, drain, _filler) = full_listener();
        let ms = Duration::from_millis;
        let check = check_port(addr, ms(600), ms(50), ms(40), None).await;
        assert!(drain.join().unwrap().is_ok());
        assert_eq!(check.outcome, Outcome::Silent);
    }

    #[tokio::test]
    async fn fresh_attempts_take_sockets_from_the_pool_or_are_not_made() {
        // A pool with no socket to spare: only the first attempt is made,
        // and it cannot get through in time.
        let (addr, drain, _filler) = full_listener();
        let empty = Arc::new(tokio::sync::Semaphore::new(0));
        let ms = Duration::from_millis;
        let check = check_port(addr, ms(600), ms(50), ms(40), Some(&empty)).await;
        let _ = drain.join().unwrap();
        assert_eq!(check.outcome, Outcome::Timeout);
    }
}
