//! One scanning interface for every mode: a [`Scanner`] takes a
//! [`ScanRequest`] and streams [`ScanEvent`]s to a [`Sink`], ending with
//! `Done`, whatever probes the ports. The CLI and the web service call it the
//! same way; only the construction differs.
//!
//! - [`RawScanner`]: SYN probes through a shared [`Engine`]; targets the engine
//!   cannot probe (IPv6, on a host without an IPv6 raw socket) go to its
//!   connect-mode fallback. Optionally runs the
//!   middlebox checks ([`crate::verify`]) before reporting open ports, so every
//!   caller gets verified results.
//! - [`ConnectScanner`]: `connect()` probes on a tokio runtime (the caller's,
//!   or one of its own when there is none).

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock, mpsc};

use serde::{Serialize, Serializer};
use tokio::sync::oneshot;

use crate::result::UnknownName;
use crate::verify::{CheckLimits, Verifier, VerifyConfig};
use crate::{
    ConnectConfig, Engine, PortResult, PortState, ProbeError, Protocol, RateBudget, ScanEvent,
    ScanRequest, ScanSummary, Sink, connect_scan,
};

/// How a scan probes, as shown to users and stored with a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeMode {
    /// Raw SYN probes (with ping and unsolicited-packet watch when asked).
    Syn,
    /// `connect()` probes; no ping or watch.
    Connect,
    /// Results from a script (tests): nothing is sent.
    Scripted,
}

impl ProbeMode {
    /// Every mode.
    pub const ALL: [ProbeMode; 3] = [ProbeMode::Syn, ProbeMode::Connect, ProbeMode::Scripted];

    /// Lower-case name, as stored and serialised.
    pub const fn as_str(self) -> &'static str {
        match self {
            ProbeMode::Syn => "syn",
            ProbeMode::Connect => "connect",
            ProbeMode::Scripted => "scripted",
        }
    }

    /// Whether ping and unsolicited packets are observed in this mode.
    pub const fn watches(self) -> bool {
        !matches!(self, ProbeMode::Connect)
    }
}

impl std::fmt::Display for ProbeMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for ProbeMode {
    type Err = UnknownName;

    /// Inverts [`ProbeMode`]'s `Display`.
    fn from_str(s: &str) -> Result<ProbeMode, UnknownName> {
        ProbeMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| UnknownName::new("probe mode", s, "syn, connect or scripted"))
    }
}

impl Serialize for ProbeMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Stops a running scan; it then reports `Done` with `cancelled` set.
pub struct Cancel(Box<dyn Fn() + Send + Sync>);

impl Cancel {
    /// A handle that runs `f` to cancel.
    pub fn new(f: impl Fn() + Send + Sync + 'static) -> Cancel {
        Cancel(Box::new(f))
    }

    /// Asks the scan to stop.
    pub fn cancel(&self) {
        (self.0)()
    }
}

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cancel")
    }
}

/// Something that probes targets and streams [`ScanEvent`]s.
pub trait Scanner: Send + Sync + 'static {
    /// The mode of most scans (what a server announces).
    fn mode(&self) -> ProbeMode;

    /// The mode a scan of `target` runs in (a raw scanner hands targets its
    /// engine cannot probe to connect mode).
    fn mode_for(&self, target: IpAddr) -> ProbeMode {
        let _ = target;
        self.mode()
    }

    /// Starts `request`; its events go to `sink`, one `Port` per port, then
    /// `Done`. `request.watch` is honoured where the mode can watch.
    fn start(&self, request: ScanRequest, sink: Sink) -> Result<Cancel, ProbeError>;
}

/// The summary of a scan stopped before it finished.
pub fn cancelled_summary(target: IpAddr) -> ScanSummary {
    ScanSummary {
        cancelled: true,
        ..ScanSummary::empty(target)
    }
}

/// SYN scans through one shared [`Engine`].
pub struct RawScanner {
    engine: Arc<Engine>,
    fallback: ConnectScanner,
    /// The checks' settings, and the sockets all its scans' checks share.
    verify: Option<(VerifyConfig, CheckLimits)>,
}

impl RawScanner {
    /// Scans through `engine`; targets it cannot probe go to `fallback`.
    pub fn new(engine: Engine, fallback: ConnectScanner) -> RawScanner {
        RawScanner {
            engine: Arc::new(engine),
            fallback,
            verify: None,
        }
    }

    /// Runs the middlebox checks on each scan with `config` (its `rate` is
    /// replaced by the request's when the request has one; see
    /// [`Verifier`] for when they run): open ports are reported after them,
    /// with their verified reasons, and the summary carries `verification`
    /// and `wildcard`.
    pub fn verify(mut self, config: VerifyConfig) -> RawScanner {
        let limits = CheckLimits::new(&config);
        self.verify = Some((config, limits));
        self
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

impl Scanner for RawScanner {
    fn mode(&self) -> ProbeMode {
        ProbeMode::Syn
    }

    fn mode_for(&self, target: IpAddr) -> ProbeMode {
        if self.engine.supports(target) {
            ProbeMode::Syn
        } else {
            ProbeMode::Connect
        }
    }

    fn start(&self, request: ScanRequest, sink: Sink) -> Result<Cancel, ProbeError> {
        if !self.engine.supports(request.target) {
            return self.fallback.start(request, sink);
        }
        let Some((config, limits)) = self.verify.clone() else {
            let handle = self.engine.submit(request, sink)?;
            return Ok(Cancel::new(move || handle.cancel()));
        };
        let config = VerifyConfig {
            rate: request.rate.or(config.rate),
            ..config
        };
        // The engine calls sinks on its own thread, and the checks use the
        // engine: they run on a thread of their own, which gets the open
        // ports and the summary. Every other result goes to the caller
        // from the engine's thread: a hop per result through the channel
        // cost a full sweep tens of milliseconds of a core.
        let (tx, rx) = mpsc::channel();
        let verifier = Verifier::new(
            self.engine.clone(),
            &request.ports,
            request.target,
            &config,
            limits,
        );
        let sink = Arc::new(Mutex::new(sink));
        let direct = sink.clone();
        let handle = self.engine.submit(
            request,
            Box::new(move |e| match e {
                ScanEvent::Port(r) if r.state != PortState::Open => {
                    (direct.lock().unwrap_or_else(|p| p.into_inner()))(ScanEvent::Port(r));
                }
                e => {
                    let _ = tx.send(e);
                }
            }),
        )?;
        let spawned = std::thread::Builder::new()
            .name("harbormaster-verify".into())
            .spawn(move || verify_then_report(rx, sink, verifier));
        if let Err(source) = spawned {
            // Nothing would pass the open ports and `Done` on.
            handle.cancel();
            return Err(ProbeError::Io {
                what: "starting the verification thread",
                source,
            });
        }
        Ok(Cancel::new(move || handle.cancel()))
    }
}

/// Gets the open ports as they are found (each one's check starts then) and
/// holds them back, since the checks may change their reason; then passes
/// them on, and `Done`. The scan's other results reach `sink` directly.
fn verify_then_report(
    rx: mpsc::Receiver<ScanEvent>,
    sink: Arc<Mutex<Sink>>,
    mut verifier: Verifier,
) {
    let mut open: Vec<PortResult> = Vec::new();
    let mut done = None;
    for event in rx {
        match event {
            ScanEvent::Port(r) => {
                verifier.found(&r);
                open.push(r);
            }
            ScanEvent::Done(mut summary) => {
                open.sort_by_key(|r| r.port);
                verifier.finish(&mut open, &mut summary);
                done = Some(summary);
                break;
            }
        }
    }
    // Without a summary the engine stopped: what it found is passed on, and
    // dropping the sink then tells the caller the scan did not finish.
    let mut sink = sink.lock().unwrap_or_else(|p| p.into_inner());
    for r in open {
        sink(ScanEvent::Port(r));
    }
    if let Some(summary) = done {
        sink(ScanEvent::Done(summary));
    }
}

/// `connect()` scans; every scan of one scanner takes its attempts from one
/// shared budget, when it has one.
pub struct ConnectScanner {
    budget: Option<RateBudget>,
    concurrency: Option<usize>,
    /// The runtime of the caller that made the scanner, if it had one.
    handle: Option<tokio::runtime::Handle>,
    /// Otherwise one of our own, made at the first scan.
    own: OnceLock<tokio::runtime::Runtime>,
}

impl ConnectScanner {
    /// A scanner running on the current tokio runtime, or on its own when
    /// made outside one.
    pub fn new() -> ConnectScanner {
        ConnectScanner {
            budget: None,
            concurrency: None,
            handle: tokio::runtime::Handle::try_current().ok(),
            own: OnceLock::new(),
        }
    }

    /// Keeps all scans together under `budget`.
    pub fn budget(mut self, budget: RateBudget) -> ConnectScanner {
        self.budget = Some(budget);
        self
    }

    /// Connections in flight per scan (default: from the open-file limit).
    pub fn concurrency(mut self, n: usize) -> ConnectScanner {
        self.concurrency = Some(n);
        self
    }

    fn runtime(&self) -> Result<tokio::runtime::Handle, ProbeError> {
        if let Some(h) = &self.handle {
            return Ok(h.clone());
        }
        if let Some(rt) = self.own.get() {
            return Ok(rt.handle().clone());
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("harbormaster-connect")
            .enable_all()
            .build()
            .map_err(|source| ProbeError::Io {
                what: "starting the connect-mode runtime",
                source,
            })?;
        // A race lost to another first scan drops the spare runtime here,
        // outside any runtime, which is allowed.
        let _ = self.own.set(rt);
        Ok(self
            .own
            .get()
            .map(|rt| rt.handle().clone())
            .expect("just set"))
    }
}

impl Default for ConnectScanner {
    fn default() -> Self {
        ConnectScanner::new()
    }
}

impl Drop for ConnectScanner {
    fn drop(&mut self) {
        // Dropping a runtime inside another blocks, which tokio forbids.
        if let Some(rt) = self.own.take() {
            rt.shutdown_background();
        }
    }
}

impl Scanner for ConnectScanner {
    fn mode(&self) -> ProbeMode {
        ProbeMode::Connect
    }

    fn start(&self, request: ScanRequest, mut sink: Sink) -> Result<Cancel, ProbeError> {
        if request.protocol != Protocol::Tcp {
            return Err(ProbeError::Unsupported(
                "connect mode probes TCP only; UDP needs raw sockets (SYN mode)",
            ));
        }
        let runtime = self.runtime()?;
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let stop = Mutex::new(Some(stop_tx));
        let config = ConnectConfig {
            tries: request.tries,
            concurrency: self.concurrency,
            rate: request.rate,
            budget: self.budget.clone(),
            ..ConnectConfig::default()
        };
        runtime.spawn(async move {
            let target = request.target;
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let scan = connect_scan(target, &request.ports, config, move |r| {
                let _ = tx.send(r);
            });
            tokio::pin!(scan);
            let mut stop_rx = stop_rx;
            // A dropped handle closes the channel without a cancel: the scan
            // then simply runs to its end.
            let mut may_stop = true;
            let summary = loop {
                tokio::select! {
                    s = &mut scan => break s,
                    Some(r) = rx.recv() => sink(ScanEvent::Port(r)),
                    stop = &mut stop_rx, if may_stop => match stop {
                        Ok(()) => break cancelled_summary(target),
                        Err(_) => may_stop = false,
                    },
                }
            };
            // Results reported before the end are delivered before `Done`.
            while let Ok(r) = rx.try_recv() {
                sink(ScanEvent::Port(r));
            }
            sink(ScanEvent::Done(summary));
        });
        Ok(Cancel::new(move || {
            if let Some(tx) = stop.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = tx.send(());
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PortList;
    use std::time::Duration;

    #[test]
    fn modes_parse_back_from_their_display() {
        for m in ProbeMode::ALL {
            assert_eq!(m.to_string().parse::<ProbeMode>(), Ok(m));
        }
        assert_eq!(ProbeMode::Syn.to_string(), "syn");
        assert_eq!(ProbeMode::Connect.to_string(), "connect");
        let e = "raw".parse::<ProbeMode>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown probe mode \"raw\"; expected syn, connect or scripted"
        );
        assert!(!ProbeMode::Connect.watches() && ProbeMode::Syn.watches());
    }

    fn request(target: IpAddr, ports: &str) -> ScanRequest {
        ScanRequest {
            target,
            ports: PortList::parse(ports).unwrap(),
            tries: Some(1),
            rate: None,
            watch: None,
            protocol: crate::Protocol::Tcp,
            budget: None,
            rtt_hint: None,
        }
    }

    /// Made outside any runtime (as the CLI does), a connect scanner runs on
    /// its own and reports every port, then `Done`, through the sink.
    #[test]
    fn connect_scanner_without_a_runtime_reports_every_port_then_done() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap().port();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let scanner = ConnectScanner::new();
        assert_eq!(scanner.mode_for("::1".parse().unwrap()), ProbeMode::Connect);
        let (tx, rx) = mpsc::channel();
        let _cancel = scanner
            .start(
                request("127.0.0.1".parse().unwrap(), &format!("{open},{closed}")),
                Box::new(move |e| {
                    let _ = tx.send(e);
                }),
            )
            .unwrap();
        let mut states = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(10)).unwrap() {
                ScanEvent::Port(r) => states.push((r.port, r.state)),
                ScanEvent::Done(s) => {
                    assert!(!s.cancelled);
                    assert_eq!(s.ports, 2);
                    break;
                }
            }
        }
        states.sort();
        let mut want = vec![(open, PortState::Open), (closed, PortState::Closed)];
        want.sort();
        assert_eq!(states, want);
        drop(listener);
    }

    /// Connect mode cannot probe UDP: such a request is refused, not run as TCP.
    #[test]
    fn connect_scanner_refuses_udp() {
        let scanner = ConnectScanner::new();
        let udp = ScanRequest {
            protocol: crate::Protocol::Udp,
            ..request("127.0.0.1".parse().unwrap(), "53")
        };
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = sent.clone();
        let got = scanner.start(
            udp,
            Box::new(move |_| seen.store(true, std::sync::atomic::Ordering::SeqCst)),
        );
        assert!(matches!(got, Err(ProbeError::Unsupported(_))), "{got:?}");
        assert!(!sent.load(std::sync::atomic::Ordering::SeqCst));
    }

    /// Dropping the handle is not cancelling: the scan runs to its end.
    #[test]
    fn a_dropped_handle_does_not_cancel_the_scan() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap().port();
        let scanner = ConnectScanner::new();
        for _ in 0..20 {
            let (tx, rx) = mpsc::channel();
            drop(
                scanner
                    .start(
                        request("127.0.0.1".parse().unwrap(), &open.to_string()),
                        Box::new(move |e| {
                            let _ = tx.send(e);
                        }),
                    )
                    .unwrap(),
            );
            let mut ports = 0;
            loop {
                match rx.recv_timeout(Duration::from_secs(10)).unwrap() {
                    ScanEvent::Port(r) => {
                        assert_eq!(r.state, PortState::Open);
                        ports += 1;
                    }
                    ScanEvent::Done(s) => {
                        assert!(!s.cancelled);
                        break;
                    }
                }
            }
            assert_eq!(ports, 1);
        }
    }

    /// Drains `rx` to `Done`: the states by port, and the summary.
    fn collect(rx: &mpsc::Receiver<ScanEvent>) -> (Vec<(u16, PortState)>, ScanSummary) {
        let mut states = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(20)).unwrap() {
                ScanEvent::Port(r) => states.push((r.port, r.state)),
                ScanEvent::Done(s) => {
                    states.sort();
                    return (states, s);
                }
            }
        }
    }

    /// The simulated network as a transport without IPv6, as raw sockets
    /// are on a host without IPv6.
    struct V4Only(crate::sim::SimNetwork);

    impl crate::Transport for V4Only {
        fn now(&self) -> std::time::Instant {
            self.0.now()
        }
        fn source_for(&mut self, dst: IpAddr) -> std::io::Result<IpAddr> {
            self.0.source_for(dst)
        }
        fn send(&mut self, batch: &crate::SendBatch) -> std::io::Result<usize> {
            self.0.send(batch)
        }
        fn recv(
            &mut self,
            batch: &mut crate::RecvBatch,
            timeout: Duration,
        ) -> std::io::Result<usize> {
            self.0.recv(batch, timeout)
        }
        fn supports_ipv6(&self) -> bool {
            false
        }
        fn watch(&mut self, addrs: &[IpAddr]) -> std::io::Result<()> {
            self.0.watch(addrs)
        }
        fn take_drops(&mut self) -> u64 {
            self.0.take_drops()
        }
    }

    /// A raw scanner runs IPv4 targets on its engine (here a simulated
    /// network, so nothing leaves the machine) and hands IPv6 ones to its
    /// connect scanner (here loopback), through the same call.
    #[test]
    fn raw_scanner_probes_on_its_engine_and_falls_back_to_connect_for_ipv6() {
        use crate::sim::{SimHost, SimNetwork};
        use crate::{Engine, EngineConfig};
        let target = SimNetwork::LAN_TARGET;
        let net = SimNetwork::lan(SimHost {
            open: [22].into(),
            dropped: [23].into(),
            ..SimHost::default()
        });
        let source = net.source();
        let engine = Engine::start(V4Only(net), EngineConfig::default(), move |_| Ok(source));
        let scanner = RawScanner::new(engine, ConnectScanner::new());
        assert_eq!(scanner.mode(), ProbeMode::Syn);
        assert_eq!(scanner.mode_for(target.into()), ProbeMode::Syn);
        assert_eq!(scanner.mode_for("::1".parse().unwrap()), ProbeMode::Connect);
        let (tx, rx) = mpsc::channel();
        let sink = move |tx: mpsc::Sender<ScanEvent>| -> Sink {
            Box::new(move |e| {
                let _ = tx.send(e);
            })
        };
        let _c = scanner
            .start(request(target.into(), "21-23"), sink(tx.clone()))
            .unwrap();
        let (states, summary) = collect(&rx);
        assert_eq!(
            states,
            [
                (21, PortState::Closed),
                (22, PortState::Open),
                (23, PortState::Stealth)
            ]
        );
        assert!(summary.sent >= 3, "the engine probed: {summary:?}");

        let listener = std::net::TcpListener::bind("[::1]:0").unwrap();
        let open = listener.local_addr().unwrap().port();
        let _c = scanner
            .start(request("::1".parse().unwrap(), &open.to_string()), sink(tx))
            .unwrap();
        let (states, _) = collect(&rx);
        assert_eq!(states, [(open, PortState::Open)]);
    }

    /// Inside a runtime, the scanner uses it; cancelling ends the scan with
    /// `Done` marked cancelled, and the scanner can be dropped there.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connect_scanner_on_the_callers_runtime_can_be_cancelled() {
        let scanner = ConnectScanner::new().concurrency(1);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        // Loopback ports with nothing listening: each answers at once, so
        // the scan runs long enough only because there are many.
        let cancel = scanner
            .start(
                request("127.0.0.1".parse().unwrap(), "1-65535"),
                Box::new(move |e| {
                    let _ = tx.send(e);
                }),
            )
            .unwrap();
        cancel.cancel();
        let done = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(ScanEvent::Done(s)) = rx.recv().await {
                    break s;
                }
            }
        })
        .await
        .unwrap();
        assert!(done.cancelled);
        drop(scanner);
    }
}
