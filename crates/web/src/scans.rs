//! Running scans: limits, live progress for the pages, storage when they end,
//! and the verdict.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harbormaster_probe::exposure::ExposureConfig;
use harbormaster_probe::{
    PortList, PortResult, PortState, ProbeError, Protocol, Reason, ScanEvent, ScanSummary,
    UDP_EXPOSURE_PORTS,
};
use serde::{Serialize, Serializer};
use tokio::sync::{Notify, broadcast, mpsc};

use crate::config::Config;
use crate::db::{
    Db, DbError, Status, StoredReflection, StoredResult, StoredScan, StoredWatch, unix_now,
};
use crate::limits::limit_key;
use crate::prober::{Cancel, ProbeMode, Prober, request};
use crate::udp::{self, Exposure};

/// How often a running scan's new results are committed: a crash loses at most
/// this much of a scan.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);

/// Most finished scans kept in memory because their outcome could not be
/// stored (a full disk); the oldest goes first.
const MAX_KEPT: usize = 1024;

/// Most results those scans hold together (about 100 bytes each), so a full
/// disk cannot make the service's memory grow without bound; see [`weight`].
const MAX_KEPT_RESULTS: usize = 256 * 1024;

/// What a kept scan costs against [`MAX_KEPT_RESULTS`]: its results, and its
/// port list (2 bytes a port, so 16 ports weigh about one result).
fn weight(scan: &StoredScan) -> usize {
    scan.results.len() + scan.ports.len().div_ceil(16)
}

/// The tests a visitor can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// UPnP exposure: SSDP discovery on UDP 1900.
    Upnp,
    /// UDP exposure: the reflector list ([`UDP_EXPOSURE_PORTS`]).
    UdpExposure,
}

impl TestKind {
    /// Every name, in words, for error messages.
    pub const NAMES: &'static str = "port, common, service, custom, full, upnp or udp";

    /// Short name: stored with the scan, sent by the start form, in `/?test=`.
    pub fn name(&self) -> &'static str {
        match self {
            TestKind::Port(_) => "port",
            TestKind::Common => "common",
            TestKind::Service => "service",
            TestKind::Custom => "custom",
            TestKind::Full => "full",
            TestKind::Upnp => "upnp",
            TestKind::UdpExposure => "udp",
        }
    }

    /// The test called `name` (inverting [`TestKind::name`]); a single-port
    /// test's port comes from `port`, asked only for that test. `None` when
    /// no test has the name.
    pub fn from_name<E>(
        name: &str,
        port: impl FnOnce() -> Result<u16, E>,
    ) -> Result<Option<TestKind>, E> {
        Ok(Some(match name {
            "port" => TestKind::Port(port()?),
            "common" => TestKind::Common,
            "service" => TestKind::Service,
            "custom" => TestKind::Custom,
            "full" => TestKind::Full,
            "upnp" => TestKind::Upnp,
            "udp" => TestKind::UdpExposure,
            _ => return Ok(None),
        }))
    }

    /// Human label.
    pub fn label(self) -> &'static str {
        match self {
            TestKind::Port(_) => "Single port",
            TestKind::Common => "Common Ports",
            TestKind::Service => "Service Ports (0–1055)",
            TestKind::Custom => "Custom ports",
            TestKind::Full => "All ports (0–65535)",
            TestKind::Upnp => "UPnP exposure (UDP 1900)",
            TestKind::UdpExposure => "UDP exposure",
        }
    }

    /// The transport it probes.
    pub fn protocol(self) -> Protocol {
        match self {
            TestKind::Upnp | TestKind::UdpExposure => Protocol::Udp,
            _ => Protocol::Tcp,
        }
    }

    /// The ports of a test whose ports are fixed by its kind (the UDP tests).
    pub fn udp_ports(self) -> Option<PortList> {
        match self {
            TestKind::Upnp => Some(PortList::from_ports(vec![udp::SSDP_PORT])),
            TestKind::UdpExposure => Some(PortList::from_ports(UDP_EXPOSURE_PORTS.to_vec())),
            _ => None,
        }
    }

    /// Whether its ports run contiguously from 0 (a grid shows them).
    pub fn contiguous(self) -> bool {
        matches!(self, TestKind::Service | TestKind::Full)
    }
}

impl std::fmt::Display for TestKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for TestKind {
    /// As its name (the JSON API's `"test": "common"`).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Human label of a test.
pub fn test_label(test: TestKind) -> &'static str {
    test.label()
}

/// A test and its size: "Common Ports (26 ports)", "Service Ports (0–1055), 1056 ports".
pub fn test_size(test: TestKind, n: usize) -> String {
    let label = test_label(test);
    let ports = plural(n, "port", "ports");
    if label.ends_with(')') {
        format!("{label}, {ports}")
    } else {
        format!("{label} ({ports})")
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
    /// The test.
    pub test: TestKind,
    /// How it probes.
    pub mode: ProbeMode,
    /// A connect-mode UPnP test's findings, measured instead of a scan.
    measured: Arc<Mutex<Option<Vec<StoredReflection>>>>,
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

/// Finished scans whose outcome the database would not take, served from
/// memory instead (until they expire or [`MAX_KEPT`] newer ones push them out).
#[derive(Default)]
struct Kept {
    scans: HashMap<String, StoredScan>,
    order: VecDeque<String>,
    results: usize,
}

/// All scans of the service.
pub struct Scans {
    db: Db,
    prober: Arc<dyn Prober>,
    exposure: Arc<dyn Exposure>,
    config: Config,
    inner: Mutex<Inner>,
    idle: Notify,
    kept: Mutex<Kept>,
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
        Scans::with_exposure(db, prober, Arc::new(udp::Measured), config)
    }

    /// The same, asking answering UDP ports again through `exposure`.
    pub fn with_exposure(
        db: Db,
        prober: Arc<dyn Prober>,
        exposure: Arc<dyn Exposure>,
        config: Config,
    ) -> Scans {
        Scans {
            db,
            prober,
            exposure,
            config,
            inner: Mutex::default(),
            idle: Notify::new(),
            kept: Mutex::default(),
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

    /// A finished scan that could not be stored, as it ended (it overrides
    /// the database's row, which still says "running").
    pub fn kept(&self, id: &str) -> Option<StoredScan> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.scans.get(id).cloned()
    }

    fn keep(&self, scan: StoredScan) {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let Kept {
            scans,
            order,
            results,
        } = &mut *kept;
        while order.len() >= MAX_KEPT || *results + weight(&scan) > MAX_KEPT_RESULTS {
            let Some(old) = order.pop_front() else { break };
            if let Some(old) = scans.remove(&old) {
                *results -= weight(&old);
            }
        }
        *results += weight(&scan);
        order.push_back(scan.id.clone());
        scans.insert(scan.id.clone(), scan);
    }

    /// Runs `write` on the blocking pool; a failure comes back as the reason
    /// shown to the visitor (the detail goes to the log).
    async fn store(
        &self,
        id: &str,
        write: impl FnOnce(&Db) -> Result<(), DbError> + Send + 'static,
    ) -> Result<(), String> {
        let db = self.db.clone();
        match tokio::task::spawn_blocking(move || write(&db)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::error!(scan = %id, "storing the scan failed: {e}");
                Err(if e.is_disk_full() {
                    "the server's disk is full, so the results could not be saved".into()
                } else {
                    "the server could not save the results (storage error)".into()
                })
            }
            Err(e) => {
                tracing::error!(scan = %id, "storing the scan panicked: {e}");
                Err("the server could not save the results (internal error)".into())
            }
        }
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
        // Only a started test creates an entry (below): refused requests must
        // not grow the map.
        let mut no_history = VecDeque::new();
        let history = inner.history.get_mut(&key).unwrap_or(&mut no_history);
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
        let mode = self.prober.mode_for(target);
        self.db.insert_running(&StoredScan {
            id: id.clone(),
            target: target.to_string(),
            test,
            ports: ports.clone(),
            mode,
            status: Status::Running,
            created,
            finished: None,
            expires: created + self.config.retention.as_secs(),
            watch: None,
            results: Vec::new(),
            error: None,
            rate_limit: None,
            exposure: Vec::new(),
        })?;
        let (tx, rx) = mpsc::unbounded_channel();
        let sink = Box::new(move |e| {
            let _ = tx.send(e);
        });
        let mut request = request(target, ports.clone(), &self.config.http_ports);
        request.protocol = test.protocol();
        if test == TestKind::Upnp {
            // As ShieldsUP! asks: up to ten M-SEARCHes, half a second apart.
            request.tries = Some(udp::UPNP_TRIES);
            request.rate = Some(udp::UPNP_RATE);
        }
        // Without raw sockets, UDP tests are the exposure step alone.
        let alone = test.protocol() == Protocol::Udp && mode == ProbeMode::Connect;
        let measured = Arc::new(Mutex::new(None));
        let started = if alone {
            Ok(self.measure_alone(target, test, &ports, measured.clone(), sink))
        } else {
            self.prober.start(request, sink)
        };
        let cancel = match started {
            Ok(c) => c,
            Err(e) => {
                let why = "the probe engine could not start";
                let _ = self.db.finish(&id, Status::Failed, Some(why), None, &[]);
                return Err(e.into());
            }
        };
        let live = Arc::new(Live {
            id: id.clone(),
            target,
            ports,
            results: Mutex::new(Vec::new()),
            events: broadcast::channel(4096).0,
            test,
            mode,
            measured,
        });
        inner.history.entry(key).or_default().push_back(now);
        inner.running_by_ip.insert(key, id.clone());
        inner.cancels.insert(id.clone(), cancel);
        inner.live.insert(id, live.clone());
        drop(inner);
        tokio::spawn(self.clone().drive(live.clone(), rx));
        Ok(live)
    }

    /// A UDP test without raw sockets: every port asked through a connected
    /// socket (the exposure step alone); a port that answered is open, any
    /// other "no reply". The findings go to `measured` before `Done`.
    fn measure_alone(
        &self,
        target: IpAddr,
        test: TestKind,
        ports: &PortList,
        measured: Arc<Mutex<Option<Vec<StoredReflection>>>>,
        mut sink: harbormaster_probe::Sink,
    ) -> Cancel {
        let exposure = self.exposure.clone();
        let list = ports.ports().to_vec();
        let config = if test == TestKind::Upnp {
            udp::upnp_alone()
        } else {
            ExposureConfig::default()
        };
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        tokio::spawn(async move {
            let tries = config.tries;
            let asked = list.clone();
            let found =
                tokio::task::spawn_blocking(move || exposure.measure(target, &asked, &config))
                    .await
                    .unwrap_or_default();
            if stopped.load(Ordering::SeqCst) {
                sink(ScanEvent::Done(harbormaster_probe::cancelled_summary(
                    target,
                )));
                return;
            }
            let answered: std::collections::HashSet<u16> = found
                .iter()
                .filter(|r| r.answered())
                .map(|r| r.port)
                .collect();
            for &port in &list {
                let open = answered.contains(&port);
                sink(ScanEvent::Port(PortResult {
                    target,
                    port,
                    proto: Protocol::Udp,
                    state: if open {
                        PortState::Open
                    } else {
                        PortState::Stealth
                    },
                    reason: if open {
                        Reason::UdpReply
                    } else {
                        Reason::NoResponse
                    },
                    rtt: None,
                    tries,
                    ttl: None,
                    window: None,
                    evidence: None,
                }));
            }
            *measured.lock().unwrap_or_else(|p| p.into_inner()) = Some(udp::stored(&found));
            let mut summary = ScanSummary::empty(target);
            summary.ports = list.len();
            sink(ScanEvent::Done(summary));
        });
        Cancel::new(move || stop.store(true, Ordering::SeqCst))
    }

    /// A finished UDP test's findings: measured already (without raw
    /// sockets), or asked again now. The ports that answered the scan are
    /// asked, and so are the silent ones: a service may answer late (SSDP
    /// waits up to its MX delay of a second), after the scan's last try.
    /// Returns the findings and the silent ports that did answer.
    async fn exposure_of(
        &self,
        live: &Live,
        results: &[StoredResult],
    ) -> (Vec<StoredReflection>, Vec<u16>) {
        if let Some(found) = live
            .measured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            return (found, Vec::new());
        }
        let ask: Vec<u16> = results
            .iter()
            .filter(|r| matches!(r.state, PortState::Open | PortState::Stealth))
            .map(|r| r.port)
            .collect();
        if ask.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let (exposure, target) = (self.exposure.clone(), live.target);
        let found = tokio::task::spawn_blocking(move || {
            udp::stored(&exposure.measure(target, &ask, &ExposureConfig::default()))
        })
        .await
        .unwrap_or_default();
        let mut late: Vec<u16> = results
            .iter()
            .filter(|r| r.state == PortState::Stealth && found.iter().any(|x| x.port == r.port))
            .map(|r| r.port)
            .collect();
        late.dedup();
        (found, late)
    }

    /// Follows one scan to its end: its results are committed in batches every
    /// [`FLUSH_EVERY`] while it runs, the rest with its outcome at the end. A
    /// failed write stops the scan, which ends failed with the reason; if even
    /// that cannot be stored, the outcome is kept in memory (see [`Scans::kept`]).
    async fn drive(self: Arc<Self>, live: Arc<Live>, mut rx: mpsc::UnboundedReceiver<ScanEvent>) {
        let started = std::time::Instant::now();
        let mut summary: Option<ScanSummary> = None;
        let mut pending: Vec<StoredResult> = Vec::new();
        let mut storage_error: Option<String> = None;
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = rx.recv() => match event {
                    Some(ScanEvent::Port(r)) => {
                        live.results
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(r);
                        let _ = live.events.send(LiveEvent::Port(r));
                        pending.push(StoredResult::from(&r));
                    }
                    Some(ScanEvent::Done(s)) => {
                        summary = Some(s);
                        break;
                    }
                    None => break,
                },
                _ = flush.tick(), if !pending.is_empty() && storage_error.is_none() => {
                    let batch = std::mem::take(&mut pending);
                    let id = live.id.clone();
                    let stored = self.store(&live.id, move |db| db.insert_results(&id, &batch));
                    if let Err(why) = stored.await {
                        storage_error = Some(why);
                        if let Some(c) = self.inner().cancels.get(&live.id) {
                            c.cancel();
                        }
                    }
                }
            }
        }
        let mut results: Vec<StoredResult> = live
            .results
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(StoredResult::from)
            .collect();
        results.sort_by_key(|r| r.port);
        let (status, error) = match &summary {
            _ if storage_error.is_some() => (Status::Failed, storage_error.clone()),
            None => (
                Status::Failed,
                Some("the probe engine stopped before the test finished".to_string()),
            ),
            Some(s) if s.error.is_some() => (
                Status::Failed,
                s.error
                    .as_ref()
                    .map(|e| format!("the probe engine failed: {e}")),
            ),
            Some(s) if s.cancelled => (Status::Cancelled, None),
            Some(_) => (Status::Done, None),
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
        // After a failed batch, nothing since is known to be stored.
        let mut rest = if storage_error.is_some() {
            results.clone()
        } else {
            pending
        };
        rest.sort_by_key(|r| r.port);
        let exposure = if status == Status::Done && live.test.protocol() == Protocol::Udp {
            let (found, late) = self.exposure_of(&live, &results).await;
            // A late answer makes a silent port open: stored again (the
            // row replaces the one stored while the scan ran).
            for r in results.iter_mut().filter(|r| late.contains(&r.port)) {
                r.state = PortState::Open;
                r.reason = Reason::UdpReply;
                rest.retain(|x| x.port != r.port);
                rest.push(r.clone());
            }
            found
        } else {
            Vec::new()
        };
        let (id, why, w, x) = (
            live.id.clone(),
            error.clone(),
            watch.clone(),
            exposure.clone(),
        );
        let limit = summary
            .as_ref()
            .and_then(|s| s.rate_limit.as_ref())
            .map(|r| r.to_string());
        let stored = self
            .store(&live.id, move |db| {
                if let Some(note) = &limit {
                    db.set_rate_limit(&id, note)?;
                }
                db.finish_with(&id, status, why.as_deref(), w.as_ref(), &rest, &x)
            })
            .await;
        if let Err(why) = stored {
            let mut scan = self
                .outcome(&live, error.or(Some(why)), watch, results)
                .await;
            scan.exposure = exposure;
            self.keep(scan);
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
        // One line per test, so an operator sees how long tests take (the
        // scan itself and the whole test, stored at the end) without the
        // visitor's address: the id leads to it in the store.
        tracing::info!(
            "test {} ({}, {} port(s)) {}: scan {} ms, whole test {} ms, {} probe(s)",
            live.id,
            live.test.name(),
            live.ports.len(),
            status.as_str(),
            summary.as_ref().map_or(0, |s| s.elapsed.as_millis()),
            started.elapsed().as_millis(),
            summary.as_ref().map_or(0, |s| s.sent),
        );
        let _ = live.events.send(LiveEvent::Done);
        self.idle.notify_waiters();
    }

    /// A failed scan as it would have been stored: the row written at its
    /// start (when the database can still be read) with the outcome.
    async fn outcome(
        &self,
        live: &Live,
        error: Option<String>,
        watch: Option<StoredWatch>,
        results: Vec<StoredResult>,
    ) -> StoredScan {
        let db = self.db.clone();
        let id = live.id.clone();
        let row = tokio::task::spawn_blocking(move || db.load(&id))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
        let now = unix_now();
        let mut scan = row.unwrap_or_else(|| StoredScan {
            id: live.id.clone(),
            target: live.target.to_string(),
            test: live.test,
            ports: live.ports.clone(),
            mode: live.mode,
            status: Status::Failed,
            created: now,
            finished: None,
            expires: now + self.config.retention.as_secs(),
            watch: None,
            results: Vec::new(),
            error: None,
            rate_limit: None,
            exposure: Vec::new(),
        });
        scan.status = Status::Failed;
        scan.finished = Some(now);
        scan.watch = watch;
        scan.results = results;
        scan.error = error;
        scan
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

    /// Forgets hourly budgets whose last test is an hour older than `now`, so
    /// the map holds only visitors of the last hour.
    fn forget_spent_budgets(&self, now: Instant) {
        let hour = Duration::from_secs(3600);
        self.inner()
            .history
            .retain(|_, h| h.back().is_some_and(|t| now.duration_since(*t) < hour));
    }

    /// Deletes expired scans (stored and kept in memory).
    pub fn purge(&self) -> Result<usize, DbError> {
        let now = unix_now();
        self.forget_spent_budgets(Instant::now());
        {
            let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
            let Kept {
                scans,
                order,
                results,
            } = &mut *kept;
            scans.retain(|_, s| s.expires >= now);
            order.retain(|id| scans.contains_key(id));
            *results = scans.values().map(weight).sum();
        }
        self.db.purge_expired(now)
    }
}

impl From<&PortResult> for StoredResult {
    fn from(r: &PortResult) -> StoredResult {
        StoredResult {
            port: r.port,
            proto: r.proto,
            state: r.state,
            reason: r.reason,
            rtt_ms: r.rtt.map(|d| (d.as_secs_f64() * 1e6).round() / 1e3),
            tries: r.tries,
            ttl: r.ttl,
        }
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
    /// One line for the top of the page, leading with the risk: "3 ports
    /// accept connections from the internet", "No port accepts connections —
    /// good; invisible (stealth) would be better", …
    pub headline: String,
    /// How the headline should be shown.
    pub tone: Tone,
    /// What this test did not cover, in plain words (UDP, the ports outside
    /// a small test), so a quiet result is not read as "nothing anywhere".
    pub not_tested: Vec<String>,
    /// The wider test worth running next (`service`, `full`), when there is one.
    pub wider: Option<TestKind>,
}

/// How a verdict's headline reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tone {
    /// Something accepts connections: act on it.
    Risk,
    /// Nothing accepts connections, but the address answers (closed or
    /// filtered ports, ping, unsolicited packets).
    Fair,
    /// Nothing answered at all.
    Good,
    /// The test did not finish or tested nothing: no judgement.
    Unknown,
}

/// "1 port", "3 ports".
pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// What a test of `scan.test` leaves out, and the wider test to offer.
fn coverage(scan: &StoredScan) -> (Vec<String>, Option<TestKind>) {
    let n = scan.results.len();
    let ports = plural(n, "port", "ports");
    match scan.test {
        TestKind::Upnp => {
            return (
                vec![
                    "Only UDP port 1900 (UPnP discovery) was tested: the UDP exposure test asks the other common reflector ports.".into(),
                    "TCP was not tested: the Common or Service Ports test shows what accepts connections.".into(),
                ],
                Some(TestKind::UdpExposure),
            );
        }
        TestKind::UdpExposure => {
            return (
                vec![
                    format!("Only {ports} of the 65,536 UDP ports were tested: those devices most often answer on, and that attackers use to reflect floods."),
                    "TCP was not tested: the Common or Service Ports test shows what accepts connections.".into(),
                ],
                None,
            );
        }
        _ => {}
    }
    let mut not = match scan.test {
        TestKind::Full => Vec::new(),
        TestKind::Service => vec![
            "Ports 1056–65535: a service moved to a high port (a game server, a camera on 8080, a remote desktop on 3389) would not show here.".to_string(),
        ],
        _ => vec![format!(
            "Only {ports} of the 65,536 TCP ports were tested; something listening on any other port would not show here."
        )],
    };
    not.push(
        "UDP (a different kind of traffic, used e.g. by DNS, VPNs and games) was not tested: the UPnP and UDP exposure tests cover it."
            .into(),
    );
    let wider = match scan.test {
        TestKind::Service | TestKind::Full | TestKind::Upnp | TestKind::UdpExposure => None,
        TestKind::Port(_) | TestKind::Common | TestKind::Custom => Some(TestKind::Service),
    };
    (not, wider)
}

/// Judges a stored scan.
pub fn verdict(scan: &StoredScan) -> Verdict {
    let mut failures = Vec::new();
    let mut untested = Vec::new();
    let count = |state: PortState| scan.results.iter().filter(|r| r.state == state).count();
    let (open, closed, filtered) = (
        count(PortState::Open),
        count(PortState::Closed),
        count(PortState::Filtered),
    );
    // Silence that the address's rate limit explains is not stealth: the
    // port may be rejecting with its answer swallowed by the limit.
    let unverified = scan
        .results
        .iter()
        .filter(|r| r.reason == harbormaster_probe::Reason::NoResponseRateLimited)
        .count();
    let answered: Vec<String> = [
        (open, PortState::Open),
        (closed, PortState::Closed),
        (filtered, PortState::Filtered),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, s)| format!("{n} {s}"))
    .collect();
    if !answered.is_empty() {
        failures.push(format!(
            "ports answered our probes ({}); a stealth port answers nothing",
            answered.join(", ")
        ));
    }
    if unverified > 0 {
        failures.push(match &scan.rate_limit {
            Some(note) => format!(
                "{} could not be verified as stealth: {note}",
                plural(unverified, "silent port", "silent ports")
            ),
            None => format!(
                "{} could not be verified as stealth: your address limits how fast it answers, so they may be rejecting rather than silent",
                plural(unverified, "silent port", "silent ports")
            ),
        });
    }
    let mut pinged = false;
    let mut chatty = false;
    match &scan.watch {
        Some(w) => {
            if w.ping_replies > 0 {
                pinged = true;
                failures.push(format!(
                    "your address answered ping: {} of {} got a reply",
                    w.ping_replies,
                    plural(w.pings_sent as usize, "echo request", "echo requests")
                ));
            }
            if w.unsolicited > 0 {
                chatty = true;
                failures.push(format!(
                    "{} arrived from your address during the test without being asked for",
                    plural(w.unsolicited as usize, "unsolicited packet", "unsolicited packets")
                ));
            }
        }
        None => untested.push(
            "ping and unsolicited packets: this server probes in connect mode (no raw sockets), so it cannot watch for them".to_string(),
        ),
    }
    let finished = scan.status == Status::Done;
    if !finished {
        let mut why = format!("the test did not finish (it was {:?})", scan.status).to_lowercase();
        if let Some(e) = &scan.error {
            why = format!("{why}: {e}");
        }
        untested.push(why);
    }
    if scan.results.is_empty() {
        untested.push("no port was tested".into());
    }
    let udp = scan.test.protocol() == Protocol::Udp;
    let (headline, tone) = if scan.results.is_empty() {
        ("No port was tested".to_string(), Tone::Unknown)
    } else if udp && open > 0 {
        let head = if scan.test == TestKind::Upnp {
            "Your device answered UPnP discovery from the internet".to_string()
        } else if open == 1 {
            "1 UDP port answers requests from the internet".to_string()
        } else {
            format!("{open} UDP ports answer requests from the internet")
        };
        (head, Tone::Risk)
    } else if scan.test == TestKind::Upnp && finished && closed + filtered > 0 {
        (
            "No UPnP reply: your address refused UDP port 1900".to_string(),
            Tone::Fair,
        )
    } else if udp && finished && closed + filtered == 0 {
        let head = if scan.test == TestKind::Upnp {
            format!("No UPnP reply in {} tries", udp::UPNP_TRIES)
        } else {
            "No UDP reply: the ports are filtered, or their services stay silent".to_string()
        };
        (
            head,
            if pinged || chatty {
                Tone::Fair
            } else {
                Tone::Good
            },
        )
    } else if open > 0 {
        let head = if open == 1 {
            "1 port accepts connections from the internet".to_string()
        } else {
            format!("{open} ports accept connections from the internet")
        };
        let head = if finished {
            head
        } else {
            format!("{head} (the test did not finish)")
        };
        (head, Tone::Risk)
    } else if !finished {
        (
            "The test did not finish: the results below are incomplete".to_string(),
            Tone::Unknown,
        )
    } else if closed + filtered > 0 {
        (
            "No port accepts connections — good; invisible (stealth) would be better".to_string(),
            Tone::Fair,
        )
    } else if unverified > 0 {
        (
            format!(
                "{} only looked stealth: your address limits its error replies, so they may be rejecting",
                plural(unverified, "port", "ports")
            ),
            Tone::Fair,
        )
    } else if pinged || chatty {
        (
            "No port answered, but your address is not silent".to_string(),
            Tone::Fair,
        )
    } else {
        (
            "Nothing answered — your address looks invisible to this test".to_string(),
            Tone::Good,
        )
    };
    let (not_tested, wider) = coverage(scan);
    Verdict {
        passed: failures.is_empty() && untested.is_empty(),
        failures,
        untested,
        headline,
        tone,
        not_tested,
        wider,
    }
}

#[cfg(test)]
mod tests {
    use harbormaster_probe::{ScanRequest, Sink};

    use super::*;

    /// Reports one stealth port every `every`, until cancelled.
    struct Slow {
        every: Duration,
    }

    impl Prober for Slow {
        fn mode(&self) -> ProbeMode {
            ProbeMode::Scripted
        }

        fn start(&self, request: ScanRequest, mut sink: Sink) -> Result<Cancel, ProbeError> {
            let ScanRequest { target, ports, .. } = request;
            let stop = Arc::new(AtomicBool::new(false));
            let stopped = stop.clone();
            let every = self.every;
            tokio::spawn(async move {
                let mut summary = ScanSummary::empty(target);
                for &port in ports.ports() {
                    tokio::time::sleep(every).await;
                    if stopped.load(Ordering::SeqCst) {
                        summary.cancelled = true;
                        break;
                    }
                    sink(ScanEvent::Port(PortResult {
                        target,
                        port,
                        proto: Protocol::Tcp,
                        state: PortState::Stealth,
                        reason: Reason::NoResponse,
                        rtt: None,
                        tries: 3,
                        ttl: None,
                        window: None,
                        evidence: None,
                    }));
                }
                sink(ScanEvent::Done(summary));
            });
            Ok(Cancel::new(move || stop.store(true, Ordering::SeqCst)))
        }
    }

    fn scans(db: Db, every: Duration) -> Arc<Scans> {
        let config = Config {
            allow_private: true,
            ..Config::default()
        };
        Arc::new(Scans::new(db, Arc::new(Slow { every }), config))
    }

    async fn wait_until_ended(scans: &Scans, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while scans.live(id).is_some() {
            assert!(Instant::now() < deadline, "the scan never ended");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn results_are_committed_while_the_scan_runs() {
        let db = Db::in_memory().unwrap();
        let scans = scans(db.clone(), Duration::from_millis(5));
        let target: IpAddr = "198.18.0.2".parse().unwrap();
        let ports = PortList::parse("1-400").unwrap();
        let live = scans.start(target, TestKind::Custom, ports).unwrap();
        tokio::time::sleep(Duration::from_millis(800)).await;
        let seen = live.subscribe().0.len();
        // What the page saw one flush period (and a margin) ago is committed.
        tokio::time::sleep(FLUSH_EVERY * 2).await;
        let stored = db.load(&live.id).unwrap().unwrap();
        assert_eq!(stored.status, Status::Running);
        assert!(
            seen > 0 && stored.results.len() >= seen,
            "{seen} seen, {} stored",
            stored.results.len()
        );
        assert!(stored.results.len() < 400, "the scan is still running");
        wait_until_ended(&scans, &live.id).await;
        let stored = db.load(&live.id).unwrap().unwrap();
        assert_eq!(stored.status, Status::Done);
        assert_eq!(stored.results.len(), 400);
        assert!(scans.kept(&live.id).is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_disk_ends_the_scan_failed_and_keeps_it_in_memory() {
        let db = Db::in_memory().unwrap();
        let scans = scans(db.clone(), Duration::from_millis(2));
        let target: IpAddr = "198.18.0.2".parse().unwrap();
        let live = scans
            .start(
                target,
                TestKind::Service,
                PortList::parse("0-5000").unwrap(),
            )
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        db.cap_growth(0);
        wait_until_ended(&scans, &live.id).await;
        let kept = scans.kept(&live.id).expect("the outcome is kept in memory");
        assert_eq!(kept.status, Status::Failed);
        assert_eq!(
            kept.error.as_deref(),
            Some("the server's disk is full, so the results could not be saved")
        );
        assert!(
            !kept.results.is_empty() && kept.results.len() < 5001,
            "{}",
            kept.results.len()
        );
        assert_eq!(
            (kept.test, kept.mode),
            (TestKind::Service, ProbeMode::Scripted)
        );
        assert!(
            verdict(&kept)
                .untested
                .iter()
                .any(|u| u.contains("disk is full"))
        );
        // The limit is released: the visitor may start another test.
        assert!(scans.inner().running_by_ip.is_empty());
    }

    #[tokio::test]
    async fn scans_kept_in_memory_are_bounded() {
        let scans = scans(Db::in_memory().unwrap(), Duration::ZERO);
        let scan = |id: usize, n: usize| StoredScan {
            id: format!("{id:032x}"),
            target: "198.18.0.2".into(),
            test: TestKind::Full,
            ports: PortList::from_ports((0..n).map(|p| p as u16).collect()),
            mode: ProbeMode::Syn,
            status: Status::Failed,
            created: 1,
            finished: Some(2),
            expires: u64::MAX,
            watch: None,
            results: (0..n)
                .map(|p| StoredResult {
                    port: p as u16,
                    proto: Protocol::Tcp,
                    state: PortState::Stealth,
                    reason: Reason::NoResponse,
                    rtt_ms: None,
                    tries: 3,
                    ttl: None,
                })
                .collect(),
            error: Some("full".into()),
            rate_limit: None,
            exposure: Vec::new(),
        };
        for i in 0..MAX_KEPT + 10 {
            scans.keep(scan(i, 1));
        }
        assert!(
            scans.kept(&format!("{:032x}", 9)).is_none(),
            "the oldest went"
        );
        assert!(scans.kept(&format!("{:032x}", 10)).is_some());
        // Full scans: only as many as fit the results budget stay.
        for i in 0..10 {
            scans.keep(scan(10_000 + i, 65_536));
        }
        let kept = scans.kept.lock().unwrap();
        assert!(kept.results <= MAX_KEPT_RESULTS, "{}", kept.results);
        assert_eq!(kept.results, kept.scans.values().map(weight).sum::<usize>());
        assert!(kept.scans.contains_key(&format!("{:032x}", 10_009)));
    }
}

#[cfg(test)]
mod history_tests {
    use super::*;

    /// Never answers; the scan runs until cancelled.
    struct Forever;

    impl Prober for Forever {
        fn mode(&self) -> ProbeMode {
            ProbeMode::Scripted
        }

        fn start(
            &self,
            _request: harbormaster_probe::ScanRequest,
            _sink: harbormaster_probe::Sink,
        ) -> Result<Cancel, ProbeError> {
            Ok(Cancel::new(|| {}))
        }
    }

    #[tokio::test]
    async fn refused_starts_leave_no_history_and_purge_forgets_spent_budgets() {
        let config = Config {
            max_concurrent: 1,
            ..Config::default()
        };
        let scans = Arc::new(Scans::new(
            Db::in_memory().unwrap(),
            Arc::new(Forever),
            config,
        ));
        let ports = || PortList::parse("80").unwrap();
        scans
            .start("198.18.0.2".parse().unwrap(), TestKind::Custom, ports())
            .unwrap();
        for i in 0..100u8 {
            let ip = IpAddr::from([198, 18, 1, i]);
            assert!(scans.start(ip, TestKind::Custom, ports()).is_err());
        }
        assert_eq!(scans.inner().history.len(), 1, "only the started test");
        scans.purge().unwrap();
        assert_eq!(scans.inner().history.len(), 1, "a budget in use is kept");
        scans.forget_spent_budgets(Instant::now() + Duration::from_secs(3601));
        assert!(scans.inner().history.is_empty(), "a spent budget is gone");
    }
}
