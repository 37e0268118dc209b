//! UDP exposure: what each answering reflector says and how much it sends back.
//!
//! The UDP scan tells which ports answered; this step asks each such port
//! again, through an ordinary connected socket, with every request the
//! payload table has for it (NTP: a client request, a mode-6 READVAR, a
//! mode-7 query), and listens for a short window. Every datagram that parses
//! as an answer to the request (cookie included) is counted, so the
//! amplification figure is measured, not assumed: a device that answers one
//! 16-byte query with three full datagrams shows exactly that.
//!
//! A connected UDP socket receives only from the target's port, and the
//! kernel reassembles fragmented replies (the engine's packet socket does
//! not), so large answers count in full. Needs no privilege.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use harbormaster_wire::payload::{self, Amplification, Evidence, PayloadSpec};

use crate::cookie::CookieKey;

/// Most ports asked at once (one thread each).
const PARALLEL: usize = 16;
/// Most reply datagrams counted per request (a chargen flood stops here).
const MAX_REPLIES: u32 = 64;
/// Most evidence items kept per request.
const MAX_EVIDENCE: usize = 4;

/// How the exposure step asks.
#[derive(Debug, Clone)]
pub struct ExposureConfig {
    /// Requests per payload when nothing answers (loss on the way).
    pub tries: u8,
    /// How long to collect replies after the last request of a payload.
    pub listen: Duration,
}

impl Default for ExposureConfig {
    fn default() -> Self {
        ExposureConfig {
            tries: 2,
            listen: Duration::from_millis(600),
        }
    }
}

/// One request's outcome at one port.
#[derive(Debug, Clone, PartialEq)]
pub struct Reflection {
    /// The port asked.
    pub port: u16,
    /// The protocol of the request.
    pub protocol: payload::Protocol,
    /// What the first valid replies showed (at most a few).
    pub evidence: Vec<Evidence>,
    /// Requests and valid replies, counted.
    pub amplification: Amplification,
}

impl Reflection {
    /// Whether the port answered this request at all.
    pub fn answered(&self) -> bool {
        self.amplification.reply_packets > 0
    }
}

/// Whether the exposure step has a request for `port` (a silent port
/// without one is not worth asking again).
pub fn has_request(port: u16) -> bool {
    payload::payload_for(port).is_some()
}

/// Asks every port in `ports` that has a payload, and returns one
/// [`Reflection`] per request sent, in port order. Ports without a payload
/// are skipped; socket errors count as no answer.
pub fn measure(target: IpAddr, ports: &[u16], config: &ExposureConfig) -> Vec<Reflection> {
    let key = CookieKey::random();
    let jobs: Vec<(u16, &'static PayloadSpec)> = ports
        .iter()
        .flat_map(|&p| payload::payloads_for(p).iter().map(move |s| (p, s)))
        .collect();
    let mut out = Vec::with_capacity(jobs.len());
    for chunk in jobs.chunks(PARALLEL) {
        std::thread::scope(|scope| {
            let handles: Vec<_> = chunk
                .iter()
                .enumerate()
                .map(|(i, &(port, spec))| {
                    // A distinct cookie per request (the key's hash of the job).
                    let cookie = key.hash(0x6578_706f, (u64::from(port) << 8) | i as u64) as u32;
                    scope.spawn(move || ask(target, port, spec, cookie, config))
                })
                .collect();
            for h in handles {
                if let Ok(r) = h.join() {
                    out.push(r);
                }
            }
        });
    }
    out.sort_by_key(|r| r.port);
    out
}

fn ask(
    target: IpAddr,
    port: u16,
    spec: &PayloadSpec,
    cookie: u32,
    config: &ExposureConfig,
) -> Reflection {
    let mut r = Reflection {
        port,
        protocol: spec.protocol,
        evidence: Vec::new(),
        amplification: Amplification::default(),
    };
    let bind: SocketAddr = match target {
        IpAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        IpAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    };
    let Ok(sock) = UdpSocket::bind(bind) else {
        return r;
    };
    // A TFTP server answers from a port of its own (RFC 1350's new transfer
    // ID), which a connected socket would never deliver: such requests go
    // unconnected and accept datagrams from any port of the target.
    let to = SocketAddr::new(target, port);
    let other_port = spec.reply_from_other_port;
    if !other_port && sock.connect(to).is_err() {
        return r;
    }
    let request = spec.request(cookie);
    let mut buf = vec![0u8; 65_536];
    for _ in 0..config.tries.max(1) {
        let sent = if other_port {
            sock.send_to(&request, to)
        } else {
            sock.send(&request)
        };
        if sent.is_err() {
            return r;
        }
        r.amplification.sent(request.len());
        let until = Instant::now() + config.listen;
        while r.amplification.reply_packets < MAX_REPLIES {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || sock.set_read_timeout(Some(left)).is_err() {
                break;
            }
            let got = if other_port {
                match sock.recv_from(&mut buf) {
                    Ok((n, from)) if from.ip() == target => Ok(n),
                    // Another host's datagram: not an answer, keep listening.
                    Ok(_) => continue,
                    Err(e) => Err(e),
                }
            } else {
                sock.recv(&mut buf)
            };
            match got {
                Ok(n) => {
                    if let Ok(e) = spec.parse(&buf[..n], cookie) {
                        r.amplification.received(n);
                        if r.evidence.len() < MAX_EVIDENCE {
                            r.evidence.push(e);
                        }
                    }
                }
                // A timeout ends the window; ECONNREFUSED (ICMP port
                // unreachable) means nothing listens any more.
                Err(_) => break,
            }
        }
        if r.answered() {
            break;
        }
    }
    r
}

/// One line on what a reply showed, for reports.
pub fn describe(e: &Evidence) -> String {
    match e {
        Evidence::Echo => "echoes what it is sent".into(),
        Evidence::Text { len, sample } => format!("sent {len} bytes of text: {sample:?}"),
        Evidence::Dns(d) => {
            use harbormaster_wire::payload::dns::DnsVerdict;
            let verdict = match d.verdict {
                DnsVerdict::Recursed => "recursed for us: an open resolver",
                DnsVerdict::Refused => "refused to resolve for us",
                DnsVerdict::Authoritative => "answered from its own zone (authoritative)",
                _ => "answered",
            };
            format!("DNS: {verdict} (rcode {}, {} answers)", d.rcode, d.answers)
        }
        Evidence::Mdns(m) => format!(
            "mDNS: {} answers, services {}",
            m.answers,
            m.services.join(", ")
        ),
        Evidence::Ntp(n) => format!("NTP server, stratum {}, version {}", n.stratum, n.version),
        Evidence::NtpQuery(q) => format!(
            "NTP mode {} queries answer ({} bytes{})",
            q.mode,
            q.data_len,
            if q.error { ", error flagged" } else { "" }
        ),
        Evidence::Snmp(s) => format!(
            "SNMP v{} community {:?}: {}",
            if s.version == 0 { "1" } else { "2c" },
            s.community,
            s.sys_descr.as_deref().unwrap_or("(no sysDescr)")
        ),
        Evidence::Ssdp(s) => format!(
            "UPnP (SSDP): SERVER {} · LOCATION {} · USN {}",
            s.server.as_deref().unwrap_or("-"),
            s.location.as_deref().unwrap_or("-"),
            s.usn.as_deref().unwrap_or("-")
        ),
        Evidence::Memcached(m) => format!(
            "memcached{} ({} datagrams)",
            m.version
                .as_deref()
                .map(|v| format!(" {v}"))
                .unwrap_or_default(),
            m.total
        ),
        Evidence::Coap(c) => format!(
            "CoAP {}.{:02}: {}",
            c.code_class, c.code_detail, c.payload_sample
        ),
        Evidence::Rpc(_) => "portmapper (ONC RPC) answered a dump request".into(),
        Evidence::Tftp(_) => "TFTP server answered a read request".into(),
        Evidence::OpenVpn(_) => "OpenVPN server answered a hard reset".into(),
        _ => "answered".into(),
    }
}
