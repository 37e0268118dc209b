//! How the service probes: the SYN engine (shared by every visitor, one fair
//! packet budget), connect mode when raw sockets are not allowed, or a scripted
//! prober in tests.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use harbormaster_probe::{
    ConnectConfig, Engine, PortList, ProbeError, RateBudget, ScanEvent, ScanRequest, ScanSummary,
    Watch, connect_scan,
};
use tokio::sync::{mpsc, oneshot};

/// Stops a running probe; it then reports `Done` with `cancelled` set.
pub struct Cancel(Box<dyn Fn() + Send + Sync>);

impl Cancel {
    /// A handle that runs `f` to cancel.
    pub fn new(f: impl Fn() + Send + Sync + 'static) -> Cancel {
        Cancel(Box::new(f))
    }

    /// Asks the probe to stop.
    pub fn cancel(&self) {
        (self.0)()
    }
}

/// The mode a prober runs in, shown on every page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeMode {
    /// Raw SYN probes with ping and unsolicited-packet watch.
    Syn,
    /// connect() probes; no ping or watch.
    Connect,
    /// Scripted results (tests).
    Scripted,
}

impl ProbeMode {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeMode::Syn => "syn",
            ProbeMode::Connect => "connect",
            ProbeMode::Scripted => "scripted",
        }
    }

    /// Whether ping and unsolicited packets are observed in this mode.
    pub fn watches(self) -> bool {
        !matches!(self, ProbeMode::Connect)
    }
}

/// Something that probes a visitor and streams [`ScanEvent`]s.
pub trait Prober: Send + Sync + 'static {
    /// The mode.
    fn mode(&self) -> ProbeMode;
    /// The mode a scan of `target` runs in (a SYN prober hands visitors its
    /// engine cannot probe — IPv6 ones, on a host without an IPv6 raw socket —
    /// to connect mode).
    fn mode_for(&self, target: IpAddr) -> ProbeMode {
        let _ = target;
        self.mode()
    }
    /// Starts probing `ports` of `target`; events go to `events`, ending with `Done`.
    fn start(
        &self,
        target: IpAddr,
        ports: PortList,
        events: mpsc::UnboundedSender<ScanEvent>,
    ) -> Result<Cancel, ProbeError>;
}

/// The SYN engine, shared by all visitors.
pub struct SynProber {
    engine: Arc<Engine>,
    http_ports: Vec<u16>,
    /// For visitors the engine cannot probe (IPv6, when the host has no IPv6
    /// raw socket).
    connect: ConnectProber,
}

impl SynProber {
    /// Wraps a started engine; `http_ports` are the service's own listening ports.
    pub fn new(engine: Engine, http_ports: Vec<u16>) -> SynProber {
        SynProber {
            engine: Arc::new(engine),
            http_ports,
            connect: ConnectProber::new(None),
        }
    }

    /// Paces the connect-mode fallback (see `connect`) from `budget`; when the
    /// engine was started with the same budget (`EngineConfig::shared_budget`)
    /// SYN and connect probes together keep one `--max-rate`.
    pub fn connect_budget(mut self, budget: RateBudget) -> SynProber {
        self.connect = ConnectProber {
            budget: Some(budget),
        };
        self
    }
}

impl Prober for SynProber {
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

    fn start(
        &self,
        target: IpAddr,
        ports: PortList,
        events: mpsc::UnboundedSender<ScanEvent>,
    ) -> Result<Cancel, ProbeError> {
        if !self.engine.supports(target) {
            return self.connect.start(target, ports, events);
        }
        let handle = self.engine.submit(
            ScanRequest {
                target,
                ports,
                tries: None,
                rate: None,
                watch: Some(Watch {
                    pings: 3,
                    expected_tcp_ports: self.http_ports.clone(),
                    tail: Duration::from_secs(1),
                }),
                protocol: harbormaster_probe::Protocol::Tcp,
            },
            Box::new(move |e| {
                let _ = events.send(e);
            }),
        )?;
        Ok(Cancel(Box::new(move || handle.cancel())))
    }
}

/// connect() probing on the tokio runtime; every visitor's scan takes its
/// connection attempts from one shared budget.
pub struct ConnectProber {
    budget: Option<RateBudget>,
}

impl ConnectProber {
    /// A prober keeping all scans together under `max_rate` attempts per
    /// second (`None`: no cap).
    pub fn new(max_rate: Option<u32>) -> ConnectProber {
        ConnectProber {
            budget: max_rate.map(RateBudget::new),
        }
    }
}

impl Prober for ConnectProber {
    fn mode(&self) -> ProbeMode {
        ProbeMode::Connect
    }

    fn start(
        &self,
        target: IpAddr,
        ports: PortList,
        events: mpsc::UnboundedSender<ScanEvent>,
    ) -> Result<Cancel, ProbeError> {
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let stop = std::sync::Mutex::new(Some(stop_tx));
        let budget = self.budget.clone();
        tokio::spawn(async move {
            let forward = events.clone();
            let scan = connect_scan(
                target,
                &ports,
                ConnectConfig {
                    concurrency: Some(256),
                    budget,
                    ..ConnectConfig::default()
                },
                move |r| {
                    let _ = forward.send(ScanEvent::Port(r));
                },
            );
            let summary = tokio::select! {
                s = scan => s,
                _ = stop_rx => cancelled_summary(target),
            };
            let _ = events.send(ScanEvent::Done(summary));
        });
        Ok(Cancel(Box::new(move || {
            if let Some(tx) = stop.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = tx.send(());
            }
        })))
    }
}

/// The summary of a scan stopped before it finished.
pub fn cancelled_summary(target: IpAddr) -> ScanSummary {
    ScanSummary {
        cancelled: true,
        ..ScanSummary::empty(target)
    }
}
