//! Running scans: limits, live progress for the pages, storage when they end,
//! and the verdict.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harbormaster_probe::{PortList, PortResult, PortState, ProbeError, ScanEvent, ScanSummary};
use serde::Serialize;
use tokio::sync::{Notify, broadcast, mpsc};

use crate::config::Config;
use crate::db::{Db, DbError, Status, StoredResult, StoredScan, StoredWatch, unix_now};
use crate::limits::limit_key;
use crate::prober::{Cancel, ProbeMode, Prober};

/// The tests a visitor can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestKind {
    /// One port, from its page.
    Port(u16),
    /// The 26 common ports.
    Common,
    /// 0–1055.
    Service,
    /// A visitor's list of ports and ranges.
    Custom,
    /// 0–65535 (only when the operator enables it).
    Full,
}

impl TestKind {
    /// Short name stored with the scan.
    pub fn name(&self) -> &'static str {
        match self {
            TestKind::Port(_) => "port",
            TestKind::Common => "common",
            TestKind::Service => "service",
            TestKind::Custom => "custom",
            TestKind::Full => "full",
        }
    }
}

/// Human label of a stored test name.
pub fn test_label(name: &str) -> &'static str {
    match name {
        "port" => "Single port",
        "common" => "Common Ports",
        "service" => "Service Ports (0–1055)",
        "custom" => "Custom ports",
        "full" => "All ports (0–65535)",
        _ => "Scan",
    }
}

/// Why a scan did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A limit was reached; try again after the given time.
    #[error("{why}")]
    Limited {
        /// What limit.
        why: String,
        /// When to retry.
        retry_after: Duration,
        /// The visitor's running scan, if that is the limit.
        running: Option<String>,
    },
    /// The probe engine refused.
    #[error("the probe engine could not start: {0}")]
    Probe(#[from] ProbeError),
    /// Storage failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A scan in progress, as the pages see it.
#[derive(Debug)]
pub struct Live {
    /// Scan id.
    pub id: String,
    /// Probed address.
    pub target: IpAddr,
    /// The ports.
    pub ports: PortList,
    results: Mutex<Vec<PortResult>>,
    events: broadcast::Sender<LiveEvent>,
}

/// What a live page receives.
#[derive(Debug, Clone)]
pub enum LiveEvent {
    /// A port's result.
    Port(PortResult),
    /// The scan has ended and is stored.
    Done,
}

impl Live {
    /// Results so far and a receiver for what follows, taken together so that
    /// nothing falls between them.
    pub fn subscribe(&self) -> (Vec<PortResult>, broadcast::Receiver<LiveEvent>) {
        let results = self.results.lock().unwrap_or_else(|p| p.into_inner());
        (results.clone(), self.events.subscribe())
    }

    /// A receiver of what follows; with [`Live::results_range`] a stream reads
    /// the results themselves from the stored sequence, so it misses none.
    pub fn events_receiver(&self) -> broadcast::Receiver<LiveEvent> {
        self.events.subscribe()
    }

    /// At most `max` results from index `from` of the sequence on (empty
    /// past the end).
    pub fn results_range(&self, from: usize, max: usize) -> Vec<PortResult> {
        let results = self.results.lock().unwrap_or_else(|p| p.into_inner());
        let end = from.saturating_add(max).min(results.len());
        results
            .get(from..end)
            .map(<[PortResult]>::to_vec)
            .unwrap_or_default()
    }
}

#[derive(Default)]
struct Inner {
    live: HashMap<String, Arc<Live>>,
    running_by_ip: HashMap<IpAddr, String>,
    history: HashMap<IpAddr, VecDeque<Instant>>,
    cancels: HashMap<String, Cancel>,
    shutting_down: bool,
}

/// All scans of the service.
pub struct Scans {
    db: Db,
    prober: Arc<dyn Prober>,
    config: Config,
    inner: Mutex<Inner>,
    idle: Notify,
}

impl std::fmt::Debug for Scans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scans")
            .field("mode", &self.prober.mode())
            .finish()
    }
}

fn new_id() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("operating system random source unavailable");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Scans {
    /// Scans backed by `db`, probing with `prober`.
    pub fn new(db: Db, prober: Arc<dyn Prober>, config: Config) -> Scans {
        Scans {
            db,
            prober,
            config,
            inner: Mutex::default(),
            idle: Notify::new(),
        }
    }

    /// The probing mode.
    pub fn mode(&self) -> ProbeMode {
        self.prober.mode()
    }

    /// The mode a test of `target` would run in.
    pub fn mode_for(&self, target: IpAddr) -> ProbeMode {
        self.prober.mode_for(target)
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A scan in progress.
    pub fn live(&self, id: &str) -> Option<Arc<Live>> {
        self.inner().live.get(id).cloned()
    }

    /// Starts `test` against `target` (already checked by the policy), subject to limits.
    pub fn start(
        self: &Arc<Self>,
        target: IpAddr,
        test: TestKind,
        ports: PortList,
    ) -> Result<Arc<Live>, StartError> {
        let mut inner = self.inner();
        if inner.shutting_down {
            return Err(StartError::Limited {
                why: "the server is shutting down".into(),
                retry_after: Duration::from_secs(60),
                running: None,
            });
        }
        // One visitor for the limits: IPv6 counted per prefix.
        let key = limit_key(target, self.config.ipv6_prefix);
        if let Some(id) = inner.running_by_ip.get(&key) {
            return Err(StartError::Limited {
                why: "a test of your address is already running; one at a time".into(),
                retry_after: Duration::from_secs(10),
                running: Some(id.clone()),
            });
        }
        let now = Instant::now();
        let hour = Duration::from_secs(3600);
        let history = inner.history.entry(key).or_default();
        while history
            .front()
            .is_some_and(|t| now.duration_since(*t) >= hour)
        {
            history.pop_front();
        }
        if history.len() >= self.config.scans_per_hour {
            let oldest = history.front().copied().unwrap_or(now);
            return Err(StartError::Limited {
                why: format!(
                    "your address has run {} tests in the last hour, the most this server allows",
                    history.len()
                ),
                retry_after: (oldest + hour)
                    .saturating_duration_since(now)
                    .max(Duration::from_secs(1)),
                running: None,
            });
        }
        if inner.running_by_ip.len() >= self.config.max_concurrent {
            return Err(StartError::Limited {
                why: "the server is running as many tests as it allows; please try again shortly"
                    .into(),
                retry_after: Duration::from_secs(15),
                running: None,
            });
        }
        let id = new_id();
        let created = unix_now();
        self.db.insert_running(&StoredScan {
            id: id.clone(),
            target: target.to_string(),
            test: test.name().into(),
            ports: ports.to_string(),
            mode: self.prober.mode_for(target).as_str().into(),
            status: Status::Running,
            created,
            finished: None,
            expires: created + self.config.retention.as_secs(),
            watch: None,
            results: Vec::new(),
        })?;
        let (tx, rx) = mpsc::unbounded_channel();
        let cancel = match self.prober.start(target, ports.clone(), tx) {
            Ok(c) => c,
            Err(e) => {
                let _ = self.db.finish(&id, Status::Failed, None, &[]);
                return Err(e.into());
            }
        };
        let live = Arc::new(Live {
            id: id.clone(),
            target,
            ports,
            results: Mutex::new(Vec::new()),
            events: broadcast::channel(4096).0,
        });
        inner.history.entry(key).or_default().push_back(now);
        inner.running_by_ip.insert(key, id.clone());
        inner.cancels.insert(id.clone(), cancel);
        inner.live.insert(id, live.clone());
        drop(inner);
        tokio::spawn(self.clone().drive(live.clone(), rx));
        Ok(live)
    }

    /// Follows one scan to its end and stores it.
    async fn drive(self: Arc<Self>, live: Arc<Live>, mut rx: mpsc::UnboundedReceiver<ScanEvent>) {
        let mut summary: Option<ScanSummary> = None;
        while let Some(event) = rx.recv().await {
            match event {
                ScanEvent::Port(r) => {
                    live.results
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(r);
                    let _ = live.events.send(LiveEvent::Port(r));
                }
                ScanEvent::Done(s) => {
                    summary = Some(s);
                    break;
                }
            }
        }
        let mut results: Vec<StoredResult> = live
            .results
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|r| StoredResult {
                port: r.port,
                state: r.state.to_string(),
                reason: r.reason.to_string(),
                rtt_ms: r.rtt.map(|d| (d.as_secs_f64() * 1e6).round() / 1e3),
                tries: r.tries,
                ttl: r.ttl,
            })
            .collect();
        results.sort_by_key(|r| r.port);
        let status = match &summary {
            None => Status::Failed,
            Some(s) if s.error.is_some() => Status::Failed,
            Some(s) if s.cancelled => Status::Cancelled,
            Some(_) => Status::Done,
        };
        let watch = summary
            .as_ref()
            .and_then(|s| s.watch.as_ref())
            .map(|w| StoredWatch {
                pings_sent: u32::from(w.pings_sent),
                ping_replies: w.ping_replies,
                unsolicited: w.unsolicited,
                unsolicited_examples: w.unsolicited_examples.clone(),
            });
        let db = self.db.clone();
        let id = live.id.clone();
        let stored =
            tokio::task::spawn_blocking(move || db.finish(&id, status, watch.as_ref(), &results))
                .await;
        match stored {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(scan = %live.id, "storing the scan failed: {e}"),
            Err(e) => tracing::error!(scan = %live.id, "storing the scan panicked: {e}"),
        }
        {
            let mut inner = self.inner();
            inner.live.remove(&live.id);
            inner.cancels.remove(&live.id);
            let key = limit_key(live.target, self.config.ipv6_prefix);
            if inner.running_by_ip.get(&key) == Some(&live.id) {
                inner.running_by_ip.remove(&key);
            }
        }
        let _ = live.events.send(LiveEvent::Done);
        self.idle.notify_waiters();
    }

    /// Cancels every running scan and waits (up to `grace`) until each is stored.
    pub async fn shutdown(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        {
            let mut inner = self.inner();
            inner.shutting_down = true;
            for c in inner.cancels.values() {
                c.cancel();
            }
        }
        loop {
            let idle = self.idle.notified();
            if self.inner().live.is_empty() {
                return;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                tracing::warn!("shutdown: scans still running after the grace period");
                return;
            }
        }
    }

    /// Deletes expired scans.
    pub fn purge(&self) -> Result<usize, DbError> {
        self.db.purge_expired(unix_now())
    }
}

/// The ShieldsUP-style verdict of a stored scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Every tested port stealth, no ping reply, nothing unsolicited, and the
    /// test complete.
    pub passed: bool,
    /// Which criteria failed, in plain words.
    pub failures: Vec<String>,
    /// What could not be judged.
    pub untested: Vec<String>,
}

/// Judges a stored scan.
pub fn verdict(scan: &StoredScan) -> Verdict {
    let mut failures = Vec::new();
    let mut untested = Vec::new();
    let count = |state: PortState| {
        scan.results
            .iter()
            .filter(|r| r.state == state.as_str())
            .count()
    };
    let answered: Vec<String> = [PortState::Open, PortState::Closed, PortState::Filtered]
        .into_iter()
        .filter(|s| count(*s) > 0)
        .map(|s| format!("{} {s}", count(s)))
        .collect();
    if !answered.is_empty() {
        failures.push(format!(
            "ports answered our probes ({}); a stealth port answers nothing",
            answered.join(", ")
        ));
    }
    match &scan.watch {
        Some(w) => {
            if w.ping_replies > 0 {
                failures.push(format!(
                    "your address answered ping: {} of {} echo requests got a reply",
                    w.ping_replies, w.pings_sent
                ));
            }
            if w.unsolicited > 0 {
                failures.push(format!(
                    "{} unsolicited packet(s) arrived from your address during the test",
                    w.unsolicited
                ));
            }
        }
        None => untested.push(
            "ping and unsolicited packets: this server probes in connect mode (no raw sockets), so it cannot watch for them".to_string(),
        ),
    }
    if scan.status != Status::Done {
        untested.push(format!("the test did not finish (it was {:?})", scan.status).to_lowercase());
    }
    if scan.results.is_empty() {
        untested.push("no port was tested".into());
    }
    Verdict {
        passed: failures.is_empty() && untested.is_empty(),
        failures,
        untested,
    }
}
