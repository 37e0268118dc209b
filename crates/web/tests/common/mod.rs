//! The scripted prober the web service's integration tests share: every port
//! answered from a rule, after a delay per port; starts are counted.

// Each test file uses its own subset of these.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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
    /// What each start asked: transport, tries, rate and ports.
    pub asked: Mutex<Vec<Asked>>,
    /// The mode it reports (scripted unless set).
    pub mode: ProbeMode,
}

/// One start's request, as the scripted prober saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Asked {
    /// Transport.
    pub protocol: Protocol,
    /// Fixed tries.
    pub tries: Option<u8>,
    /// Rate cap.
    pub rate: Option<u32>,
    /// Ports.
    pub ports: Vec<u16>,
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
            asked: Mutex::new(Vec::new()),
            mode: ProbeMode::Scripted,
        })
    }

    /// The same, reporting `mode` (as a connect-mode server would).
    pub fn in_mode(mode: ProbeMode, state: fn(u16) -> PortState) -> Arc<Scripted> {
        Arc::new(Scripted {
            mode,
            ..Arc::try_unwrap(Scripted::new(state)).ok().unwrap()
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
        self.mode
    }

    fn start(&self, request: ScanRequest, mut events: Sink) -> Result<Cancel, ProbeError> {
        let ScanRequest {
            target,
            ports,
            protocol,
            tries,
            rate,
            ..
        } = request;
        self.starts.fetch_add(1, Ordering::SeqCst);
        self.asked.lock().unwrap().push(Asked {
            protocol,
            tries,
            rate,
            ports: ports.ports().to_vec(),
        });
        let udp = protocol == Protocol::Udp;
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
                    PortState::Open if udp => Reason::UdpReply,
                    PortState::Closed if udp => Reason::PortUnreach,
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
                    proto: protocol,
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

/// One exposure call: target, ports, tries and listening time.
pub type Call = (std::net::IpAddr, Vec<u16>, u8, Duration);

/// The exposure step, scripted: each port's reflection from a rule; every
/// call is recorded (nothing is sent anywhere).
pub struct ScriptedExposure {
    answer: fn(u16) -> Option<harbormaster_probe::exposure::Reflection>,
    /// Target, ports, tries and listening time of each call.
    pub calls: Mutex<Vec<Call>>,
}

impl ScriptedExposure {
    /// Answers each port by `answer`.
    pub fn new(
        answer: fn(u16) -> Option<harbormaster_probe::exposure::Reflection>,
    ) -> Arc<ScriptedExposure> {
        Arc::new(ScriptedExposure {
            answer,
            calls: Mutex::new(Vec::new()),
        })
    }
}

impl harbormaster_web::Exposure for ScriptedExposure {
    fn measure(
        &self,
        target: std::net::IpAddr,
        ports: &[u16],
        config: &harbormaster_probe::exposure::ExposureConfig,
    ) -> Vec<harbormaster_probe::exposure::Reflection> {
        self.calls
            .lock()
            .unwrap()
            .push((target, ports.to_vec(), config.tries, config.listen));
        ports.iter().filter_map(|&p| (self.answer)(p)).collect()
    }
}

/// An SSDP search response as miniupnpd sends one: 1 request of 48 bytes,
/// 1 reply of 468.
pub fn ssdp_reply(port: u16) -> harbormaster_probe::exposure::Reflection {
    use harbormaster_wire::payload::{Amplification, Evidence, Protocol, ssdp::SsdpEvidence};
    harbormaster_probe::exposure::Reflection {
        port,
        protocol: Protocol::Ssdp,
        evidence: vec![Evidence::Ssdp(SsdpEvidence {
            status: 200,
            server: Some("Debian/13 UPnP/1.1 MiniUPnPd/2.3".into()),
            location: Some("http://192.168.1.1:5000/rootDesc.xml".into()),
            usn: Some("uuid:00000000-0000-0000-0000-000000000001::upnp:rootdevice".into()),
            st: Some("upnp:rootdevice".into()),
        })],
        amplification: Amplification {
            request_packets: 1,
            request_bytes: 48,
            reply_packets: 1,
            reply_bytes: 468,
        },
    }
}
