//! The scripted prober the web service's integration tests share: every port
//! answered from a rule, after a delay per port; starts are counted.

// Each test file uses its own subset of these.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use harbormaster_probe::{
    PortResult, PortState, ProbeError, Protocol, Reason, ScanEvent, ScanRequest, Sink, WatchReport,
};
use harbormaster_web::{Cancel, ProbeMode, Prober, cancelled_summary};

/// Answers every port from a rule, after `delay` per port; counts starts.
pub struct Scripted {
    delay: Duration,
    state: fn(u16) -> PortState,
    watch: WatchReport,
    /// Scans started so far.
    pub starts: AtomicUsize,
}

impl Scripted {
    /// Answers at once, each port by `state`.
    pub fn new(state: fn(u16) -> PortState) -> Arc<Scripted> {
        Arc::new(Scripted {
            delay: Duration::ZERO,
            state,
            watch: WatchReport {
                pings_sent: 3,
                ..WatchReport::default()
            },
            starts: AtomicUsize::new(0),
        })
    }
}

/// A prober that takes `delay` per port.
pub fn slow(delay: Duration, state: fn(u16) -> PortState) -> Arc<Scripted> {
    Arc::new(Scripted {
        delay,
        ..Arc::try_unwrap(Scripted::new(state)).ok().unwrap()
    })
}

impl Prober for Scripted {
    fn mode(&self) -> ProbeMode {
        ProbeMode::Scripted
    }

    fn start(&self, request: ScanRequest, mut events: Sink) -> Result<Cancel, ProbeError> {
        let ScanRequest { target, ports, .. } = request;
        self.starts.fetch_add(1, Ordering::SeqCst);
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (delay, rule, watch) = (self.delay, self.state, self.watch.clone());
        tokio::spawn(async move {
            let mut counts = [0; 4];
            for &port in ports.ports() {
                if !delay.is_zero() {
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = &mut stop_rx => {
                            events(ScanEvent::Done(cancelled_summary(target)));
                            return;
                        }
                    }
                }
                let state = rule(port);
                counts[state as usize] += 1;
                let reason = match state {
                    PortState::Open => Reason::SynAck,
                    PortState::Closed => Reason::Rst,
                    PortState::Filtered => Reason::Icmp {
                        v6: false,
                        icmp_type: 3,
                        code: 13,
                    },
                    PortState::Stealth => Reason::NoResponse,
                };
                events(ScanEvent::Port(PortResult {
                    target,
                    port,
                    proto: Protocol::Tcp,
                    state,
                    reason,
                    rtt: Some(Duration::from_micros(300)),
                    tries: 1,
                    ttl: Some(64),
                    window: None,
                    evidence: None,
                }));
            }
            let mut s = cancelled_summary(target);
            s.cancelled = false;
            s.ports = ports.len();
            s.counts = counts;
            s.watch = Some(watch);
            events(ScanEvent::Done(s));
        });
        let stop = std::sync::Mutex::new(Some(stop_tx));
        Ok(Cancel::new(move || {
            if let Some(tx) = stop.lock().unwrap().take() {
                let _ = tx.send(());
            }
        }))
    }
}
