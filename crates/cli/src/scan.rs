//! `harbormaster scan`: validate everything first, pick the mode, probe, and
//! stream results to the chosen format.

use std::io::{self, Write};
use std::net::IpAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use harbormaster_knowledge::{Proto, lookup};
use harbormaster_probe::{
    ConnectScanner, Engine, EngineConfig, PortList, PortResult, PortState, ProbeMode, Protocol,
    RateBudget, RawScanner, RawTransport, Reason, ScanEvent, ScanRequest, ScanSummary, Scanner,
    UDP_EXPOSURE_PORTS, compress_ranges, exposure, raw_ipv6_available, raw_sockets_allowed,
    resolve, source_address, verify::VerifyConfig,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::Failure;
use crate::args::{OutputFormat, ProtoArg, ScanArgs, ScanMode};

/// A validated scan: everything that can be wrong with the input has been checked.
struct Plan {
    targets: Vec<IpAddr>,
    /// The TCP ports, when TCP is probed.
    ports: PortList,
    /// The transports to probe, TCP first.
    protocols: Vec<Protocol>,
    /// The UDP ports, when UDP is probed.
    udp_ports: PortList,
    /// The mode that runs: SYN or connect.
    mode: ProbeMode,
    tries: Option<u8>,
    rate: Option<u32>,
    /// Verify open ports and check for a wildcard host after the SYN pass.
    verify: bool,
    /// Re-probing time when the target rate-limits (`None`: the engine's default).
    budget: Option<Duration>,
}

fn plan(args: &ScanArgs) -> Result<Plan, Failure> {
    let mut protocols: Vec<Protocol> = if args.udp {
        vec![Protocol::Udp]
    } else {
        args.proto
            .iter()
            .map(|p| match p {
                ProtoArg::Tcp => Protocol::Tcp,
                ProtoArg::Udp => Protocol::Udp,
            })
            .collect()
    };
    protocols.sort_by_key(|p| *p == Protocol::Udp);
    protocols.dedup();
    let parse = |spec: &str| PortList::parse(spec).map_err(|e| Failure::Usage(e.to_string()));
    let ports = parse(args.ports.as_deref().unwrap_or("service"))?;
    let udp_ports = match &args.ports {
        Some(spec) => parse(spec)?,
        None => PortList::from_ports(UDP_EXPOSURE_PORTS.to_vec()),
    };
    if protocols.contains(&Protocol::Udp) && args.mode == ScanMode::Connect {
        return Err(Failure::Usage(
            "UDP is probed with raw datagrams, not connect(): drop --mode connect for --udp".into(),
        ));
    }
    if protocols.contains(&Protocol::Udp) && !raw_sockets_allowed() {
        return Err(Failure::Usage(
            "UDP probing needs raw sockets: run as root or grant CAP_NET_RAW (setcap cap_net_raw+ep)".into(),
        ));
    }
    let targets = resolve(&args.target).map_err(|e| Failure::Usage(e.to_string()))?;
    let all_v4 = targets.iter().all(IpAddr::is_ipv4);
    let mode = match args.mode {
        ScanMode::Connect => ProbeMode::Connect,
        ScanMode::Syn => {
            if !raw_sockets_allowed() {
                return Err(Failure::Usage(
                    "SYN mode needs raw sockets: run as root or grant CAP_NET_RAW (setcap cap_net_raw+ep), or use --mode connect".into(),
                ));
            }
            if !all_v4 && !raw_ipv6_available() {
                return Err(Failure::Usage(
                    "SYN mode cannot probe IPv6 targets here: this host has no IPv6 raw socket (IPv6 disabled?); use --mode connect".into(),
                ));
            }
            ProbeMode::Syn
        }
        ScanMode::Auto => {
            if raw_sockets_allowed() && (all_v4 || raw_ipv6_available()) {
                ProbeMode::Syn
            } else {
                ProbeMode::Connect
            }
        }
    };
    Ok(Plan {
        targets,
        ports,
        protocols,
        udp_ports,
        mode,
        tries: args.tries,
        rate: args.rate,
        verify: !args.no_verify,
        budget: args.budget.map(|s| Duration::from_secs(u64::from(s))),
    })
}

impl Plan {
    /// The ports to probe over `protocol`.
    fn ports_for(&self, protocol: Protocol) -> &PortList {
        match protocol {
            Protocol::Tcp => &self.ports,
            Protocol::Udp => &self.udp_ports,
        }
    }
}

/// One target's outcome for one transport.
#[derive(Serialize)]
struct TargetReport {
    target: IpAddr,
    proto: Protocol,
    #[serde(serialize_with = "summary_json")]
    summary: ScanSummary,
    results: Vec<PortResult>,
    /// What each answering UDP reflector said and sent back (UDP only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    exposure: Vec<ReflectionJson>,
}

/// A reflector's answer to one request, as reports show it.
#[derive(Serialize)]
struct ReflectionJson {
    port: u16,
    protocol: String,
    findings: Vec<String>,
    request_packets: u32,
    request_bytes: u64,
    reply_packets: u32,
    reply_bytes: u64,
    /// Reply bytes per request byte (UDP payloads).
    factor: f64,
    /// The same, in words: `1 request of 48 bytes → 1 reply of 48 bytes (1.0×)`.
    amplification: String,
}

impl From<&exposure::Reflection> for ReflectionJson {
    fn from(r: &exposure::Reflection) -> Self {
        let a = &r.amplification;
        ReflectionJson {
            port: r.port,
            protocol: r.protocol.to_string(),
            findings: r.evidence.iter().map(exposure::describe).collect(),
            request_packets: a.request_packets,
            request_bytes: a.request_bytes,
            reply_packets: a.reply_packets,
            reply_bytes: a.reply_bytes,
            factor: (a.factor() * 100.0).round() / 100.0,
            amplification: a.to_string(),
        }
    }
}

/// Asks each open UDP port of each UDP report again for the exposure report,
/// and each silent one that has a protocol request: a service that answers
/// late (miniupnpd waits up to its MX of 1 s) or from another port (TFTP)
/// looks silent to the scan. A silent port that answers here is open.
fn measure_exposure(reports: &mut [TargetReport]) {
    for r in reports.iter_mut().filter(|r| r.proto == Protocol::Udp) {
        let asked: Vec<u16> = r
            .results
            .iter()
            .filter(|p| {
                p.state == PortState::Open
                    || (p.state == PortState::Stealth && exposure::has_request(p.port))
            })
            .map(|p| p.port)
            .collect();
        if asked.is_empty() {
            continue;
        }
        let found: Vec<exposure::Reflection> =
            exposure::measure(r.target, &asked, &exposure::ExposureConfig::default())
                .into_iter()
                .filter(|x| x.answered())
                .collect();
        for x in &found {
            if let Some(p) = r
                .results
                .iter_mut()
                .find(|p| p.port == x.port && p.state == PortState::Stealth)
            {
                r.summary.counts[PortState::Stealth as usize] -= 1;
                r.summary.counts[PortState::Open as usize] += 1;
                p.state = PortState::Open;
                p.reason = Reason::UdpReply;
            }
        }
        r.exposure = found.iter().map(ReflectionJson::from).collect();
    }
}

/// Runs the scan described by `args`, writing to `out`.
pub fn run(args: &ScanArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let plan = plan(args)?;
    let started = SystemTime::now();
    let clock = Instant::now();
    let per_target: usize = plan
        .protocols
        .iter()
        .map(|p| plan.ports_for(*p).len())
        .sum();
    let total = plan.targets.len() as u64 * per_target as u64;
    let progress =
        ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr());
    progress.set_style(
        ProgressStyle::with_template("{spinner} {pos}/{len} ports  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if !progress.is_hidden() {
        let what: Vec<String> = plan
            .protocols
            .iter()
            .map(|p| format!("{} {p} port(s)", plan.ports_for(*p).len()))
            .collect();
        eprintln!(
            "harbormaster: {} mode, {} on {} target(s)",
            mode_label(plan.mode),
            what.join(" and "),
            plan.targets.len()
        );
    }
    let ndjson = args.format == OutputFormat::Ndjson;
    let mut stream_error: Option<io::Error> = None;
    let mut on_result = |r: &PortResult| {
        progress.inc(1);
        if ndjson && stream_error.is_none() {
            let line = serde_json::to_string(r)
                .map_err(io::Error::from)
                .and_then(|s| writeln!(out, "{s}"));
            if let Err(e) = line {
                stream_error = Some(e);
            }
        }
    };
    let scanner = scanner(&plan)?;
    let mut reports = run_scans(scanner.as_ref(), &plan, &mut on_result)?;
    measure_exposure(&mut reports);
    progress.finish_and_clear();
    if ndjson && stream_error.is_none() {
        stream_error = write_middlebox_lines(out, &reports)
            .and_then(|()| write_exposure_lines(out, &reports))
            .err();
    }
    if let Some(e) = stream_error {
        return Err(Failure::Runtime(e.into()));
    }
    if let Some(err) = reports.iter().find_map(|r| r.summary.error.clone()) {
        return Err(Failure::Runtime(anyhow::anyhow!(err)));
    }
    let elapsed = clock.elapsed();
    match args.format {
        OutputFormat::Ndjson => {}
        OutputFormat::Text => write_text(out, &plan, &reports, elapsed)?,
        OutputFormat::Json => {
            let doc = JsonReport {
                scanner: "harbormaster",
                version: env!("CARGO_PKG_VERSION"),
                mode: plan.mode,
                ports: plan.ports.to_string(),
                started_unix: unix(started),
                elapsed_s: elapsed.as_secs_f64(),
                targets: &reports,
            };
            serde_json::to_writer_pretty(&mut *out, &doc).map_err(io::Error::from)?;
            writeln!(out)?;
        }
        OutputFormat::Xml => write_xml(out, &plan, &reports, started, elapsed)?,
    }
    Ok(())
}

/// "SYN" or "connect", for the text output.
fn mode_label(mode: ProbeMode) -> &'static str {
    match mode {
        ProbeMode::Syn => "SYN",
        other => other.as_str(),
    }
}

/// The scanner for the plan's mode: rates and the middlebox checks are set
/// here, so every scan is then started the same way.
fn scanner(plan: &Plan) -> Result<Box<dyn Scanner>, Failure> {
    let mut connect = ConnectScanner::new();
    if let Some(rate) = plan.rate {
        // Targets are scanned one at a time in connect mode, so one budget
        // is the per-scan cap.
        connect = connect.budget(RateBudget::new(rate));
    }
    if plan.mode != ProbeMode::Syn {
        return Ok(Box::new(connect));
    }
    let transport = RawTransport::open().map_err(|e| Failure::Runtime(e.into()))?;
    let engine = Engine::start(
        transport,
        EngineConfig {
            max_rate: plan.rate,
            ..EngineConfig::default()
        },
        source_address,
    );
    let mut raw = RawScanner::new(engine, connect);
    if plan.verify {
        raw = raw.verify(VerifyConfig {
            rate: plan.rate,
            ..VerifyConfig::default()
        });
    }
    Ok(Box::new(raw))
}

/// Scans every target through `scanner`, a bounded number at a time, and
/// passes each final result to `on_result` as it arrives.
fn run_scans(
    scanner: &dyn Scanner,
    plan: &Plan,
    on_result: &mut dyn FnMut(&PortResult),
) -> Result<Vec<TargetReport>, Failure> {
    // The SYN engine shares its budget fairly between scans; connect scans
    // size their concurrency from the open-file limit, so one at a time.
    let in_flight = match scanner.mode() {
        ProbeMode::Syn => 64,
        _ => 1,
    };
    // One job per target and transport; each job's events carry its index,
    // since a summary names its target but not its transport.
    let jobs: Vec<(IpAddr, Protocol)> = plan
        .targets
        .iter()
        .flat_map(|t| plan.protocols.iter().map(move |p| (*t, *p)))
        .collect();
    let (tx, rx) = mpsc::channel();
    let mut pending = jobs.iter().copied().enumerate();
    let mut running = 0;
    let mut reports = Vec::new();
    let mut results: std::collections::HashMap<usize, Vec<PortResult>> = Default::default();
    let mut submit = |running: &mut usize| -> Result<(), Failure> {
        let Some((job, (target, protocol))) = pending.next() else {
            return Ok(());
        };
        let tx = tx.clone();
        scanner
            .start(
                ScanRequest {
                    target,
                    ports: plan.ports_for(protocol).clone(),
                    tries: plan.tries,
                    rate: None,
                    watch: None,
                    protocol,
                    budget: plan.budget,
                    rtt_hint: None,
                },
                Box::new(move |ev| {
                    let _ = tx.send((job, ev));
                }),
            )
            .map_err(|e| Failure::Runtime(e.into()))?;
        *running += 1;
        Ok(())
    };
    for _ in 0..in_flight.min(jobs.len()) {
        submit(&mut running)?;
    }
    while running > 0 {
        match rx.recv() {
            Ok((job, ScanEvent::Port(r))) => {
                on_result(&r);
                results.entry(job).or_default().push(r);
            }
            Ok((job, ScanEvent::Done(summary))) => {
                running -= 1;
                let mut rs = results.remove(&job).unwrap_or_default();
                rs.sort_by_key(|r| r.port);
                reports.push(TargetReport {
                    target: summary.target,
                    proto: jobs[job].1,
                    summary,
                    results: rs,
                    exposure: Vec::new(),
                });
                submit(&mut running)?;
            }
            Err(_) => break,
        }
    }
    reports.sort_by_key(|r| (r.target, r.proto == Protocol::Udp));
    Ok(reports)
}

#[derive(Serialize)]
struct JsonReport<'a> {
    scanner: &'static str,
    version: &'static str,
    mode: ProbeMode,
    ports: String,
    started_unix: u64,
    elapsed_s: f64,
    targets: &'a [TargetReport],
}

fn summary_json<S: serde::Serializer>(s: &ScanSummary, ser: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = ser.serialize_map(None)?;
    m.serialize_entry("ports", &s.ports)?;
    for state in PortState::ALL {
        m.serialize_entry(state.as_str(), &s.counts[state as usize])?;
    }
    m.serialize_entry("probes_sent", &s.sent)?;
    m.serialize_entry("timing_probes", &s.timing_probes)?;
    m.serialize_entry("answers_after_retry", &s.lost_before)?;
    m.serialize_entry("tries_limit", &s.tries_limit)?;
    m.serialize_entry("srtt_ms", &s.srtt.map(|d| d.as_secs_f64() * 1e3))?;
    m.serialize_entry("elapsed_s", &s.elapsed.as_secs_f64())?;
    m.serialize_entry("verification", &s.verification)?;
    m.serialize_entry("wildcard", &s.wildcard)?;
    m.serialize_entry("rate_limit", &s.rate_limit)?;
    m.end()
}

/// NDJSON: one line per target whose rate limit was measured (`"type":
/// "rate_limit"`) and one where the middlebox checks found something,
/// after the port lines, told apart from them by `"type"`.
fn write_middlebox_lines(out: &mut dyn Write, reports: &[TargetReport]) -> io::Result<()> {
    #[derive(Serialize)]
    struct Line<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        target: IpAddr,
        verification: &'a Option<Box<harbormaster_probe::verify::Verification>>,
        wildcard: &'a Option<Box<harbormaster_probe::verify::WildcardReport>>,
    }
    #[derive(Serialize)]
    struct LimitLine<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        target: IpAddr,
        rate_limit: &'a harbormaster_probe::RateLimitReport,
        note: String,
    }
    for r in reports {
        if let Some(limit) = &r.summary.rate_limit {
            let line = LimitLine {
                kind: "rate_limit",
                target: r.target,
                rate_limit: limit,
                note: limit.to_string(),
            };
            writeln!(out, "{}", serde_json::to_string(&line)?)?;
        }
        if middlebox_notes(&r.summary).is_empty() {
            continue;
        }
        let line = Line {
            kind: "middlebox",
            target: r.target,
            verification: &r.summary.verification,
            wildcard: &r.summary.wildcard,
        };
        writeln!(out, "{}", serde_json::to_string(&line)?)?;
    }
    Ok(())
}

/// NDJSON: one line per answering UDP reflector, `"type": "udp-exposure"`.
fn write_exposure_lines(out: &mut dyn Write, reports: &[TargetReport]) -> io::Result<()> {
    #[derive(Serialize)]
    struct Line<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        target: IpAddr,
        #[serde(flatten)]
        reflection: &'a ReflectionJson,
    }
    for r in reports {
        for x in &r.exposure {
            let line = Line {
                kind: "udp-exposure",
                target: r.target,
                reflection: x,
            };
            writeln!(out, "{}", serde_json::to_string(&line)?)?;
        }
    }
    Ok(())
}

/// What the middlebox checks found, in words; empty when nothing.
fn middlebox_notes(s: &ScanSummary) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(w) = s.wildcard.as_ref().filter(|w| w.answers_every_port) {
        notes.push(format!(
            "this host answers for every port: {} of {} random high ports outside the list answered SYN-ACK like the open ports (same TTL and window); a proxy or firewall may be answering",
            w.matching,
            w.sampled.len()
        ));
    }
    if let Some(v) = s.verification.as_ref().filter(|v| v.syn_ack_only > 0) {
        notes.push(format!(
            "{} open port(s) answered SYN only: a real connection was reset or closed at once, so a proxy or firewall may be answering for these ports ({} held)",
            v.syn_ack_only, v.held
        ));
    }
    notes
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Text: counts first, then every port not in the most common state, with what
/// the knowledge base says it is.
fn write_text(
    out: &mut dyn Write,
    plan: &Plan,
    reports: &[TargetReport],
    elapsed: Duration,
) -> io::Result<()> {
    for r in reports {
        let s = &r.summary;
        writeln!(
            out,
            "{}: {} {} ports in {:.2} s ({} mode)",
            r.target,
            s.ports,
            r.proto,
            elapsed.as_secs_f64(),
            mode_label(plan.mode)
        )?;
        let counts: Vec<String> = PortState::ALL
            .iter()
            .map(|st| format!("{} {}", s.counts[*st as usize], state_word(r.proto, *st)))
            .collect();
        writeln!(out, "  {}", counts.join(", "))?;
        if r.proto == Protocol::Udp && s.counts[PortState::Stealth as usize] > 0 {
            writeln!(
                out,
                "  note: a UDP port that sends nothing back is filtered, or a service that ignores a datagram it does not understand; \"no reply\" cannot tell which"
            )?;
        }
        for note in middlebox_notes(s) {
            writeln!(out, "  note: {note}")?;
        }
        if let Some(limit) = &s.rate_limit {
            writeln!(out, "  note: {limit}")?;
            let unverified: Vec<u16> = r
                .results
                .iter()
                .filter(|p| p.reason == Reason::NoResponseRateLimited)
                .map(|p| p.port)
                .collect();
            if unverified.len() > 64 {
                writeln!(
                    out,
                    "  stealth but unverified (no-response-ratelimited): {} ports (--format json lists them)",
                    unverified.len()
                )?;
            } else if !unverified.is_empty() {
                writeln!(
                    out,
                    "  stealth but unverified (no-response-ratelimited, {}): {}",
                    unverified.len(),
                    compress_ranges(&unverified)
                )?;
            }
        }
        if let Some(v) = s.verification.as_ref().filter(|v| v.syn_ack_only > 0) {
            // The open list may be hidden as the most common state: name the real ones.
            let held: Vec<u16> = r
                .results
                .iter()
                .filter(|p| p.reason == Reason::SynAck)
                .map(|p| p.port)
                .collect();
            if v.held > 0 {
                writeln!(
                    out,
                    "  handshake held (really open): {}",
                    compress_ranges(&held)
                )?;
            }
        }
        if let Some(v) = &s.verification {
            for b in &v.banners {
                writeln!(out, "  banner {}/tcp: {}", b.port, b.text)?;
            }
        }
        let default = PortState::ALL
            .iter()
            .copied()
            .max_by_key(|st| s.counts[*st as usize])
            .unwrap_or(PortState::Closed);
        writeln!(
            out,
            "  not shown: {} {} ports",
            s.counts[default as usize],
            state_word(r.proto, default)
        )?;
        for state in PortState::ALL {
            if state == default || s.counts[state as usize] == 0 {
                continue;
            }
            let ports: Vec<&PortResult> = r.results.iter().filter(|p| p.state == state).collect();
            writeln!(out)?;
            if ports.len() > 64 && state != PortState::Open {
                let list: Vec<u16> = ports.iter().map(|p| p.port).collect();
                writeln!(
                    out,
                    "  {} ({}): {}",
                    state_word(r.proto, state),
                    ports.len(),
                    compress_ranges(&list)
                )?;
                continue;
            }
            writeln!(
                out,
                "  {:<10}{:<10}{:<14}{:<18}purpose",
                "PORT", "STATE", "REASON", "SERVICE"
            )?;
            let kb_proto = match r.proto {
                Protocol::Tcp => Proto::Tcp,
                Protocol::Udp => Proto::Udp,
            };
            for p in ports {
                let info = lookup(p.port, kb_proto);
                let mut summary = info.summary().to_string();
                if summary.chars().count() > 60 {
                    summary = summary.chars().take(59).collect::<String>() + "…";
                }
                writeln!(
                    out,
                    "  {:<10}{:<10}{:<14}{:<18}{}",
                    format!("{}/{}", p.port, p.proto),
                    state_word(p.proto, p.state),
                    p.reason.to_string(),
                    info.name(),
                    summary
                )?;
                if let Some(e) = p.evidence.filter(|e| !e.is_empty()) {
                    writeln!(
                        out,
                        "            reply: {} bytes, starting {}",
                        e.len(),
                        printable(e.head())
                    )?;
                }
            }
        }
        if !r.exposure.is_empty() {
            writeln!(out)?;
            writeln!(
                out,
                "  UDP exposure (each answering port asked again; amplification is UDP payload bytes returned per byte sent; the risk and how to close each port: harbormaster port N):"
            )?;
            for x in &r.exposure {
                writeln!(
                    out,
                    "  {:<10}{:<12}{}",
                    format!("{}/udp", x.port),
                    x.protocol,
                    x.amplification
                )?;
                for f in &x.findings {
                    writeln!(out, "  {:<22}{f}", "")?;
                }
            }
        }
        writeln!(out)?;
    }
    Ok(())
}

/// A state as the text output names it: for UDP, silence is "no-reply",
/// not "stealth" (a silent service looks the same as a dropped port).
fn state_word(proto: Protocol, state: PortState) -> &'static str {
    match (proto, state) {
        (Protocol::Udp, PortState::Stealth) => "no-reply",
        (_, s) => s.as_str(),
    }
}

/// Reply bytes for a terminal: printable ASCII kept, the rest as `.`.
fn printable(bytes: &[u8]) -> String {
    let text: String = bytes
        .iter()
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '.'
            }
        })
        .collect();
    format!("{text:?}")
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// nmap's name for a reason, so nmap tooling reads our XML.
fn nmap_reason(r: Reason) -> String {
    match r {
        Reason::SynAck | Reason::Connected => "syn-ack".into(),
        Reason::SynAckOnly => "syn-ack-only".into(),
        Reason::SynAckWildcard => "syn-ack-wildcard".into(),
        Reason::Rst => "reset".into(),
        Reason::ConnRefused => "conn-refused".into(),
        Reason::NoResponse | Reason::NoResponseRateLimited => "no-response".into(),
        Reason::HostUnreachable => "host-unreach".into(),
        Reason::NetUnreachable => "net-unreach".into(),
        Reason::UdpReply => "udp-response".into(),
        Reason::PortUnreach => "port-unreach".into(),
        Reason::Icmp {
            v6: false,
            icmp_type: 3,
            code,
        } => match code {
            0 => "net-unreach",
            1 => "host-unreach",
            2 => "proto-unreach",
            3 => "port-unreach",
            9 => "net-prohibited",
            10 => "host-prohibited",
            13 => "admin-prohibited",
            _ => "unknown-response",
        }
        .into(),
        Reason::Icmp {
            v6: true,
            icmp_type: 1,
            code,
        } => match code {
            1 => "admin-prohibited",
            3 => "host-unreach",
            4 => "port-unreach",
            _ => "unknown-response",
        }
        .into(),
        Reason::Icmp { .. } => "unknown-response".into(),
    }
}

/// A state as nmap names it. Ordered by name, so the most common one is
/// chosen among equals as it was when these were strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum NmapState {
    Closed,
    Filtered,
    Open,
    /// UDP silence: nmap's name for "open or filtered, cannot tell".
    OpenFiltered,
}

impl std::fmt::Display for NmapState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NmapState::Closed => "closed",
            NmapState::Filtered => "filtered",
            NmapState::Open => "open",
            NmapState::OpenFiltered => "open|filtered",
        })
    }
}

/// nmap has no "stealth": a TCP port that answered nothing is "filtered"
/// there, a UDP one "open|filtered".
fn nmap_state(proto: Protocol, s: PortState) -> NmapState {
    match (proto, s) {
        (_, PortState::Open) => NmapState::Open,
        (_, PortState::Closed) => NmapState::Closed,
        (Protocol::Udp, PortState::Stealth) => NmapState::OpenFiltered,
        (_, PortState::Filtered | PortState::Stealth) => NmapState::Filtered,
    }
}

/// nmap-compatible XML (nmap.dtd, xmloutputversion 1.05): ndiff and importers read it.
fn write_xml(
    out: &mut dyn Write,
    plan: &Plan,
    reports: &[TargetReport],
    started: SystemTime,
    elapsed: Duration,
) -> io::Result<()> {
    let start = unix(started);
    let end = start + elapsed.as_secs();
    let args: Vec<String> = std::env::args().collect();
    let scan_type = plan.mode.as_str();
    writeln!(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>")?;
    writeln!(out, "<!DOCTYPE nmaprun>")?;
    writeln!(
        out,
        "<nmaprun scanner=\"harbormaster\" args=\"{}\" start=\"{start}\" version=\"{}\" xmloutputversion=\"1.05\">",
        xml_escape(&args.join(" ")),
        env!("CARGO_PKG_VERSION")
    )?;
    for proto in &plan.protocols {
        let scan_type = match proto {
            Protocol::Tcp => scan_type,
            Protocol::Udp => "udp",
        };
        let ports = plan.ports_for(*proto);
        writeln!(
            out,
            "<scaninfo type=\"{scan_type}\" protocol=\"{proto}\" numservices=\"{}\" services=\"{}\"/>",
            ports.len(),
            ports
        )?;
    }
    writeln!(out, "<verbose level=\"0\"/>\n<debugging level=\"0\"/>")?;
    let hosts = reports.chunk_by(|a, b| a.target == b.target).count();
    // One <host> per address, holding the ports of every transport (as nmap writes it).
    for group in reports.chunk_by(|a, b| a.target == b.target) {
        let r = &group[0];
        writeln!(out, "<host starttime=\"{start}\" endtime=\"{end}\">")?;
        writeln!(
            out,
            "<status state=\"up\" reason=\"user-set\" reason_ttl=\"0\"/>"
        )?;
        let family = if r.target.is_ipv4() { "ipv4" } else { "ipv6" };
        writeln!(
            out,
            "<address addr=\"{}\" addrtype=\"{family}\"/>",
            r.target
        )?;
        writeln!(out, "<hostnames>\n</hostnames>")?;
        for note in group.iter().flat_map(|r| middlebox_notes(&r.summary)) {
            // A comment keeps the document valid for nmap tooling; "--" may not appear in one.
            writeln!(out, "<!-- harbormaster: {} -->", note.replace("--", "- -"))?;
        }
        writeln!(out, "<ports>")?;
        for r in group {
            let proto = r.proto;
            // The most common nmap state is summarised as extraports, as nmap does.
            let mut per_state: std::collections::BTreeMap<NmapState, usize> = Default::default();
            for p in &r.results {
                *per_state.entry(nmap_state(p.proto, p.state)).or_default() += 1;
            }
            let extra = per_state
                .iter()
                .max_by_key(|(_, n)| **n)
                .filter(|(_, n)| **n > 20)
                .map(|(s, _)| *s);
            if let Some(extra) = extra {
                let mut reasons: std::collections::BTreeMap<String, Vec<u16>> = Default::default();
                for p in r
                    .results
                    .iter()
                    .filter(|p| nmap_state(p.proto, p.state) == extra)
                {
                    reasons
                        .entry(nmap_reason(p.reason))
                        .or_default()
                        .push(p.port);
                }
                writeln!(
                    out,
                    "<extraports state=\"{extra}\" count=\"{}\">",
                    per_state[&extra]
                )?;
                for (reason, ports) in reasons {
                    writeln!(
                        out,
                        "<extrareasons reason=\"{reason}\" count=\"{}\" proto=\"{proto}\" ports=\"{}\"/>",
                        ports.len(),
                        compress_ranges(&ports)
                    )?;
                }
                writeln!(out, "</extraports>")?;
            }
            for p in r
                .results
                .iter()
                .filter(|p| Some(nmap_state(p.proto, p.state)) != extra)
            {
                let kb_proto = match proto {
                    Protocol::Tcp => Proto::Tcp,
                    Protocol::Udp => Proto::Udp,
                };
                let info = lookup(p.port, kb_proto);
                // UDP evidence and the exposure step's findings ride in
                // <script> elements, where nmap puts what its scripts learn.
                let mut scripts = String::new();
                if let Some(e) = p.evidence.filter(|e| !e.is_empty()) {
                    scripts.push_str(&format!(
                        "<script id=\"udp-reply\" output=\"{}\"/>",
                        xml_escape(&format!(
                            "{} bytes, starting {}",
                            e.len(),
                            printable(e.head())
                        ))
                    ));
                }
                for x in r.exposure.iter().filter(|x| x.port == p.port) {
                    let mut text = format!("{}: {}", x.protocol, x.amplification);
                    for f in &x.findings {
                        text.push_str("; ");
                        text.push_str(f);
                    }
                    scripts.push_str(&format!(
                        "<script id=\"udp-exposure\" output=\"{}\"/>",
                        xml_escape(&text)
                    ));
                }
                writeln!(
                    out,
                    "<port protocol=\"{proto}\" portid=\"{}\"><state state=\"{}\" reason=\"{}\" reason_ttl=\"{}\"/><service name=\"{}\" method=\"table\" conf=\"3\"/>{scripts}</port>",
                    p.port,
                    nmap_state(p.proto, p.state),
                    nmap_reason(p.reason),
                    p.ttl.unwrap_or(0),
                    xml_escape(info.name()),
                )?;
            }
        }
        writeln!(out, "</ports>")?;
        if let Some(srtt) = group.iter().find_map(|r| r.summary.srtt) {
            let us = srtt.as_micros();
            writeln!(
                out,
                "<times srtt=\"{us}\" rttvar=\"{us}\" to=\"{}\"/>",
                us * 4 + 100_000
            )?;
        }
        writeln!(out, "</host>")?;
    }
    writeln!(
        out,
        "<runstats><finished time=\"{end}\" elapsed=\"{:.2}\" summary=\"Harbormaster scanned {} host(s) in {:.2} seconds\" exit=\"success\"/><hosts up=\"{}\" down=\"0\" total=\"{}\"/>\n</runstats>\n</nmaprun>",
        elapsed.as_secs_f64(),
        hosts,
        elapsed.as_secs_f64(),
        hosts,
        hosts
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nmap_vocabulary() {
        assert_eq!(
            nmap_state(Protocol::Tcp, PortState::Stealth),
            NmapState::Filtered
        );
        assert_eq!(
            nmap_state(Protocol::Tcp, PortState::Stealth).to_string(),
            "filtered"
        );
        assert_eq!(
            nmap_state(Protocol::Udp, PortState::Stealth).to_string(),
            "open|filtered"
        );
        assert_eq!(
            nmap_state(Protocol::Udp, PortState::Closed),
            NmapState::Closed
        );
        assert_eq!(state_word(Protocol::Udp, PortState::Stealth), "no-reply");
        assert_eq!(state_word(Protocol::Tcp, PortState::Stealth), "stealth");
        assert_eq!(nmap_reason(Reason::Rst), "reset");
        assert_eq!(
            nmap_reason(Reason::Icmp {
                v6: false,
                icmp_type: 3,
                code: 13
            }),
            "admin-prohibited"
        );
        assert_eq!(xml_escape("a<b&\"c\""), "a&lt;b&amp;&quot;c&quot;");
    }
}
