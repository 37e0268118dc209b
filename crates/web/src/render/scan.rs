//! Scan pages, results first: a summary card with the verdict, then the
//! findings most serious first (open, then filtered ports, each with what it
//! means and the first step to close it), then every port tested — a grid
//! with port labels on both axes for the Service and All-ports tests, a table
//! for the small ones — and last the report and share links.
//!
//! States are told apart by shape as well as colour (the palette is
//! Okabe–Ito, safe under colour blindness), and every port carries its state
//! as text: ● open, ▲ filtered, − closed, ○ stealth, · not yet tested.
//! Class names are short (`so`, `sf`, `sc`, `ss`, `sp`) because a Service
//! grid has 1,056 cells; `live.js` uses the same names.

use harbormaster_knowledge::{Proto, closing_rules, lookup};
use harbormaster_probe::{PortState, Protocol, Reason};
use maud::{Markup, html};

use super::paragraphs;

use crate::db::{Status, StoredReflection, StoredResult, StoredScan};
use crate::report::utc;
use crate::scans::{TestKind, Tone, Verdict, plural, test_label, test_size};
use crate::udp;

/// Open ports listed in the findings (each with its advice); the rest are
/// counted.
const MAX_OPEN_FINDINGS: usize = 50;
/// Filtered ports listed in the findings.
const MAX_FILTERED_FINDINGS: usize = 20;
/// Columns of the grid (its row labels step by this).
const GRID_COLS: u16 = 32;

/// States in the order the counts show them.
const COUNT_ORDER: [PortState; 4] = [
    PortState::Open,
    PortState::Filtered,
    PortState::Closed,
    PortState::Stealth,
];

/// The glyph, class and word of a state, or of a port not tested yet.
fn look(state: Option<PortState>) -> (&'static str, &'static str, &'static str) {
    match state {
        Some(PortState::Open) => ("●", "so", "open"),
        Some(PortState::Closed) => ("−", "sc", "closed"),
        Some(PortState::Filtered) => ("▲", "sf", "filtered"),
        Some(PortState::Stealth) => ("○", "ss", "stealth"),
        None => ("·", "sp", "not tested yet"),
    }
}

/// The evidence behind a state, in words ("accepted (SYN-ACK)").
fn evidence(reason: Reason) -> String {
    match reason {
        Reason::SynAck => "accepted (SYN-ACK)".into(),
        Reason::Rst => "refused (RST)".into(),
        Reason::NoResponse => "no answer".into(),
        Reason::NoResponseRateLimited => {
            "no answer, unverified (the address limits its replies)".into()
        }
        Reason::Connected => "connection accepted".into(),
        Reason::ConnRefused => "connection refused".into(),
        Reason::HostUnreachable => "host unreachable".into(),
        Reason::NetUnreachable => "network unreachable".into(),
        Reason::SynAckOnly => {
            "SYN-ACK, but a real connection was cut at once (a proxy or firewall may answer)".into()
        }
        Reason::UdpReply => "answered (UDP reply)".into(),
        Reason::PortUnreach => "refused (ICMP port unreachable)".into(),
        Reason::SynAckWildcard => {
            "SYN-ACK, as for random ports (a proxy or firewall may answer)".into()
        }
        Reason::Icmp {
            v6,
            icmp_type,
            code,
        } => format!(
            "blocked (ICMP{} {icmp_type}-{code})",
            if v6 { "v6" } else { "" }
        ),
    }
}

/// The evidence of a result, in words: silence on UDP is not proof of
/// stealth (a service may simply not answer what it was sent).
fn result_evidence(r: &StoredResult) -> String {
    match (r.proto, r.reason) {
        (Protocol::Udp, Reason::NoResponse) => "no reply: filtered or a silent service".into(),
        _ => evidence(r.reason),
    }
}

/// The knowledge base's transport of a result.
fn kproto(p: Protocol) -> Proto {
    match p {
        Protocol::Udp => Proto::Udp,
        _ => Proto::Tcp,
    }
}

/// A port's page, at its UDP entry for a UDP result.
fn port_href(port: u16, p: Protocol) -> String {
    match p {
        Protocol::Udp => format!("/port/{port}#udp"),
        _ => format!("/port/{port}"),
    }
}

/// "1900/udp" for UDP, the bare number for TCP.
fn port_name(port: u16, p: Protocol) -> String {
    match p {
        Protocol::Udp => format!("{port}/udp"),
        _ => port.to_string(),
    }
}

/// The word of a result's state ("no reply" for silent UDP).
fn state_word(r: &StoredResult) -> &'static str {
    match (r.proto, r.state) {
        (Protocol::Udp, PortState::Stealth) => "no reply",
        (_, s) => look(Some(s)).2,
    }
}

/// "12.3 ms", or nothing.
fn rtt(r: &StoredResult) -> String {
    r.rtt_ms.map(|ms| format!("{ms:.1} ms")).unwrap_or_default()
}

/// The one-line description of a port's result, for a grid cell's label.
fn cell_label(port: u16, r: Option<&StoredResult>) -> String {
    match r {
        None => format!("{port}: not tested yet"),
        Some(r) => {
            let word = state_word(r);
            let mut s = format!("{port}: {word}, {}", result_evidence(r));
            if let Some(ms) = r.rtt_ms {
                s.push_str(&format!(", {ms:.1} ms"));
            }
            if let Some(t) = r.ttl {
                s.push_str(&format!(", TTL {t}"));
            }
            s
        }
    }
}

/// Whether the test gets a grid (contiguous from 0) rather than a table.
fn gridded(s: &StoredScan) -> bool {
    s.test.contiguous()
}

/// A scan's page: the summary and verdict, the findings, every port, the report.
pub fn scan(s: &StoredScan, ports: &[u16], verdict: Option<&Verdict>) -> Markup {
    html! {
        // Outside the sections live.js swaps at the end, so what it says is heard.
        p #live .sr aria-live="polite" {}
        (summary(s, ports, verdict))
        @match verdict {
            Some(_) => (findings(s)),
            None => div #findings {},
        }
        (results(s, ports))
        @match verdict {
            Some(v) => (share(s, v)),
            None => p #share .small { "The report and the share link appear here when the test has finished." },
        }
    }
}

fn summary(s: &StoredScan, ports: &[u16], verdict: Option<&Verdict>) -> Markup {
    let running = s.status == Status::Running;
    let done = s.results.len();
    let total = ports.len().max(done);
    let status = match s.status {
        Status::Running => "running".to_string(),
        Status::Done => match s.finished {
            Some(f) => format!(
                "finished in {}",
                plural(f.saturating_sub(s.created) as usize, "second", "seconds")
            ),
            None => "finished".to_string(),
        },
        _ => format!("{:?}", s.status).to_lowercase(),
    };
    html! {
        section #sum .card aria-labelledby="sum-h" {
            h1 #sum-h { "Results for " (s.target) }
            p .facts {
                span { (test_size(s.test, total)) }
                " · " span { "started " time datetime=(utc_iso(s.created)) { (utc(s.created)) } }
                " · " span #status { (status) }
            }
            @if let Some(e) = &s.error {
                p.error #failure { "The test failed: " (e) }
            }
            @if running {
                div #run {
                    p #count { (done) " of " (total) " ports tested so far." }
                    progress #prog max=(total) value=(done) aria-labelledby="count" { (done) " of " (total) }
                    noscript { p.small { "This page reloads every few seconds until the test is done." } }
                }
            }
            (counts(s))
            @if let Some(v) = verdict { (verdict_block(s, v)) }
        }
    }
}

fn counts(s: &StoredScan) -> Markup {
    let n = |state: PortState| s.results.iter().filter(|r| r.state == state).count();
    let udp = s.test.protocol() == Protocol::Udp;
    html! {
        ul #counts .counts {
            @for state in COUNT_ORDER {
                @let (g, class, word) = look(Some(state));
                @let word = if udp && state == PortState::Stealth { "no reply" } else { word };
                li { span class=(class) aria-hidden="true" { (g) } " " strong { (n(state)) } " " (word) }
            }
        }
    }
}

fn tone_class(v: &Verdict) -> &'static str {
    match (v.passed, v.tone) {
        (true, _) => "verdict pass t-good",
        (false, Tone::Risk) => "verdict fail t-risk",
        (false, Tone::Fair) => "verdict fail t-fair",
        (false, Tone::Good) => "verdict fail t-good",
        (false, Tone::Unknown) => "verdict fail t-unknown",
    }
}

fn verdict_block(s: &StoredScan, v: &Verdict) -> Markup {
    let open = s
        .results
        .iter()
        .filter(|r| r.state == PortState::Open)
        .count();
    html! {
        div #verdict class=(tone_class(v)) {
            h2 { (v.headline) }
            @if open > 0 && s.test.protocol() == Protocol::Udp {
                p { "Anyone on the internet can send "
                    (if open == 1 { "this port" } else { "these ports" })
                    " a small request and get an answer. The findings below say what answered and how to stop it." }
            } @else if open > 0 {
                p { "Anyone on the internet can try to connect to "
                    (if open == 1 { "it" } else { "them" })
                    ". The list below says what each one usually is and the first step to close it." }
            } @else if v.tone == Tone::Fair {
                p { "Nothing let a connection in. But your address answered, which tells a scanner that a device is there; a firewall that drops instead of refusing would make it invisible." }
            }
            @if !v.failures.is_empty() || !v.untested.is_empty() {
                p .small .rh { (if v.failures.is_empty() { "What could not be judged:" } else { "Why your address is not invisible:" }) }
                ul .reasons {
                    @for f in &v.failures { li { (capital(f)) "." } }
                    @for u in &v.untested { li { "Not judged: " (u) "." } }
                }
            }
            (watch_line(s))
            @if let Some(note) = &s.rate_limit {
                p #ratelimit .small { strong { "Rate limit: " } (capital(note)) "." }
            }
            details .nat open[open > 0] {
                summary { "Is this my computer or my router?" }
                p { "The address tested, " (s.target) ", is the one your connection comes from. At home that is usually your router: it answers for every device behind it. An open port there means the router passes connections on to a device inside, because of:" }
                ul {
                    li { strong { "a port-forward" } " (\"virtual server\") someone set up in the router's settings;" }
                    li { strong { "a UPnP mapping" } " that a device or app (a games console, camera, file-sharing program) opened by itself;" }
                    li { strong { "a DMZ" } " (\"exposed host\") setting that sends everything to one device." }
                }
                p { "To check: open your router's admin page, remove forwards you do not need, turn UPnP off unless something relies on it, turn the DMZ off, then run the test again." }
            }
            @if !v.not_tested.is_empty() {
                p .nt { strong { "Not tested: " } @for (i, n) in v.not_tested.iter().enumerate() { @if i > 0 { " " } (n) } }
            }
            @if let Some(w) = v.wider {
                p { a .btn href=(format!("/?test={}#tests", w.name())) { "Run the wider " (test_label(w)) " test" } }
            }
        }
    }
}

/// "ports answered…" → "Ports answered…".
fn capital(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn watch_line(s: &StoredScan) -> Markup {
    match &s.watch {
        None => html! {},
        Some(w) => {
            let ping = if w.ping_replies == 0 {
                format!(
                    "your address did not answer ({} sent)",
                    plural(w.pings_sent as usize, "echo request", "echo requests")
                )
            } else {
                format!(
                    "your address answered {} of {}",
                    w.ping_replies,
                    plural(w.pings_sent as usize, "echo request", "echo requests")
                )
            };
            let unsolicited = if w.unsolicited == 0 {
                "none".to_string()
            } else {
                let mut u = plural(w.unsolicited as usize, "packet", "packets");
                if !w.unsolicited_examples.is_empty() {
                    u.push_str(&format!(" ({})", w.unsolicited_examples.join("; ")));
                }
                u
            };
            html! { p .small { "Ping: " (ping) ". Packets your address sent us unasked: " (unsolicited) "." } }
        }
    }
}

/// The first paragraph of a port's closing advice, or the router advice.
fn first_step(port: u16) -> String {
    first_step_for(port, Proto::Tcp)
}

/// [`first_step`] for either transport.
fn first_step_for(port: u16, proto: Proto) -> String {
    match lookup(port, proto).curated {
        Some(c) if !c.close.trim().is_empty() => c
            .close
            .split("\n\n")
            .next()
            .unwrap_or(c.close)
            .trim()
            .to_string(),
        _ => closing_rules(port, proto).router,
    }
}

fn findings(s: &StoredScan) -> Markup {
    if s.test.protocol() == Protocol::Udp {
        return udp_findings(s);
    }
    let with = |state: PortState| -> Vec<&StoredResult> {
        s.results.iter().filter(|r| r.state == state).collect()
    };
    let (open, filtered) = (with(PortState::Open), with(PortState::Filtered));
    html! {
        section #findings aria-labelledby="findings-h" {
            h2 #findings-h { "Findings, most serious first" }
            @if open.is_empty() && filtered.is_empty() {
                p { "No port was open or filtered: there is nothing to close." }
            }
            @if !open.is_empty() {
                ol .findings {
                    @for r in open.iter().take(MAX_OPEN_FINDINGS) {
                        @let info = lookup(r.port, Proto::Tcp);
                        li .so-f {
                            h3 { span .so aria-hidden="true" { "●" } " " a href=(format!("/port/{}", r.port)) { "Port " (r.port) " · " (info.name()) } " — open" }
                            p { (info.summary()) }
                            p { strong { "What it means: " } "this port accepts connections from anyone on the internet; whatever answers there can be attacked directly." }
                            p { strong { "First step: " } (first_step(r.port)) }
                            @if let Some(c) = info.curated {
                                details { summary { "Why it matters" } (paragraphs(c.security)) }
                            }
                        }
                    }
                }
                @if open.len() > MAX_OPEN_FINDINGS {
                    p { "…and " (plural(open.len() - MAX_OPEN_FINDINGS, "more open port", "more open ports")) ": see every port below." }
                }
            }
            @if !filtered.is_empty() {
                h3 { span .sf aria-hidden="true" { "▲" } " " (plural(filtered.len(), "filtered port", "filtered ports")) }
                p { "Something on the way (usually your router or a firewall) answered that these ports are blocked. They are not a way in, but the answer shows a device is there; a firewall set to drop rather than reject would make them invisible." }
                ul .inline {
                    @for r in filtered.iter().take(MAX_FILTERED_FINDINGS) {
                        li { a href=(format!("/port/{}", r.port)) { (r.port) " · " (lookup(r.port, Proto::Tcp).name()) } }
                    }
                    @if filtered.len() > MAX_FILTERED_FINDINGS {
                        li { "…and " (filtered.len() - MAX_FILTERED_FINDINGS) " more" }
                    }
                }
            }
        }
    }
}

/// The findings of a UDP test: for UPnP the verdict and the reply's headers
/// explained; for every answering reflector what it said and how much.
fn udp_findings(s: &StoredScan) -> Markup {
    let open: Vec<&StoredResult> = s
        .results
        .iter()
        .filter(|r| r.state == PortState::Open)
        .collect();
    let ssdp: Vec<&StoredReflection> = s
        .exposure
        .iter()
        .filter(|x| x.port == udp::SSDP_PORT)
        .collect();
    let upnp_open = open.iter().any(|r| r.port == udp::SSDP_PORT);
    html! {
        section #findings aria-labelledby="findings-h" {
            h2 #findings-h { "Findings, most serious first" }
            @if s.test == TestKind::Upnp {
                @if upnp_open {
                    div #upnp .upnp {
                        h3 { span .so aria-hidden="true" { "●" } " Your device answered UPnP discovery from the internet" }
                        p { (udp::UPNP_RISK) }
                        @for x in &ssdp {
                            dl .headers {
                                dt { "SERVER" } dd { code { (x.server.as_deref().unwrap_or("(not sent)")) } p.small { (udp::SERVER_MEANS) } }
                                dt { "LOCATION" } dd { code { (x.location.as_deref().unwrap_or("(not sent)")) } p.small { (udp::LOCATION_MEANS) } }
                                dt { "USN" } dd { code { (x.usn.as_deref().unwrap_or("(not sent)")) } p.small { (udp::USN_MEANS) } }
                            }
                            p { strong { "Size: " } (udp::amplification_line(x)) }
                        }
                        @if ssdp.is_empty() {
                            p.small { "The port answered the scan, but not when it was asked again, so its headers could not be recorded." }
                        }
                        p { strong { "How to close it: " } (udp::UPNP_CLOSE) }
                        p { a href=(port_href(udp::SSDP_PORT, Protocol::Udp)) { "More about UDP port 1900 (SSDP)" } }
                    }
                } @else {
                    p #upnp { "No UPnP reply in " (udp::UPNP_TRIES) " tries: nothing at your address answered UPnP discovery from the internet, which is how it should be." }
                }
            } @else if open.is_empty() {
                p { "No UDP port answered: nothing here reflects traffic. Silence on UDP means the port is filtered or its service stays quiet; it is not proof that nothing listens." }
            } @else {
                ol .findings {
                    @for r in &open {
                        @let info = lookup(r.port, Proto::Udp);
                        @let found: Vec<&StoredReflection> = s.exposure.iter().filter(|x| x.port == r.port).collect();
                        li .so-f {
                            h3 { span .so aria-hidden="true" { "●" } " " a href=(port_href(r.port, Protocol::Udp)) { "Port " (r.port) "/udp · " (info.name()) } " — answers" }
                            p { (info.summary()) }
                            @for x in &found {
                                p { strong { (x.protocol) ": " } (udp::amplification_line(x)) }
                                @if !x.findings.is_empty() {
                                    ul { @for f in &x.findings { li { (f) } } }
                                }
                            }
                            @if found.is_empty() {
                                p.small { "It answered the scan but not when asked again, so no size was measured." }
                            }
                            p { strong { "What it means: " } "anyone can send this port a small request with a forged sender address, and the answer goes to that address: a way to flood others from your connection, worse the larger the answer." }
                            p { strong { "First step: " } (first_step_for(r.port, Proto::Udp)) }
                        }
                    }
                }
            }
        }
    }
}

fn legend() -> Markup {
    html! {
        ul .legend {
            li { span .so aria-hidden="true" { "●" } " open: accepts connections" }
            li { span .sf aria-hidden="true" { "▲" } " filtered: blocked, with an answer" }
            li { span .sc aria-hidden="true" { "−" } " closed: refused, nothing listening" }
            li { span .ss aria-hidden="true" { "○" } " stealth: no answer at all" }
            li { span .sp aria-hidden="true" { "·" } " not tested yet" }
        }
    }
}

fn udp_legend() -> Markup {
    html! {
        ul .legend {
            li { span .so aria-hidden="true" { "●" } " open: answered our UDP request" }
            li { span .sf aria-hidden="true" { "▲" } " filtered: blocked, with an answer" }
            li { span .sc aria-hidden="true" { "−" } " closed: refused (ICMP port unreachable)" }
            li { span .ss aria-hidden="true" { "○" } " no reply: filtered, or a service that stays silent" }
            li { span .sp aria-hidden="true" { "·" } " not tested yet" }
        }
    }
}

fn results(s: &StoredScan, ports: &[u16]) -> Markup {
    let running = s.status == Status::Running;
    let by_port: std::collections::HashMap<u16, &StoredResult> =
        s.results.iter().map(|r| (r.port, r)).collect();
    let total = ports.len();
    let proto = s.test.protocol();
    html! {
        section #results aria-labelledby="results-h" {
            h2 #results-h { "Every port tested" }
            @if proto == Protocol::Udp { (udp_legend()) } @else { (legend()) }
            @if gridded(s) {
                a .skip href="#share" { "Skip the grid of " (total) " ports" }
                p .small #grid-help { "Rows start at the port on the left; add the column's number. Each square links to its port's page." }
                div .gw {
                    div #grid .grid data-scan=(s.id) data-running=(running) data-from=(s.results.len()) data-total=(total) {
                        span .gl aria-hidden="true" {}
                        @for c in 0..GRID_COLS { span .gl aria-hidden="true" { "+" (c) } }
                        @for (i, p) in ports.iter().enumerate() {
                            @if i % usize::from(GRID_COLS) == 0 { span .gl .rl aria-hidden="true" { (p) } }
                            @let r = by_port.get(p).copied();
                            @let (g, class, _) = look(r.map(|r| r.state));
                            @let label = cell_label(*p, r);
                            a class=(class) id=(format!("p{p}")) href=(format!("/port/{p}")) aria-label=(label) { (g) }
                        }
                    }
                }
            } @else {
                div .tw {
                    table #grid .ports data-scan=(s.id) data-running=(running) data-from=(s.results.len()) data-total=(total) data-proto=(proto.as_str()) {
                        thead { tr { th scope="col" { "Port" } th scope="col" { "Service" } th scope="col" { "State" } th scope="col" { "Evidence" } th scope="col" { "Round trip" } th scope="col" { "TTL" } } }
                        tbody {
                            @for p in ports {
                                @let r = by_port.get(p).copied();
                                @let (g, class, word) = look(r.map(|r| r.state));
                                @let word = r.map_or(word, state_word);
                                tr class=(class) id=(format!("p{p}")) {
                                    th scope="row" { a href=(port_href(*p, proto)) { (port_name(*p, proto)) } }
                                    td { (lookup(*p, kproto(proto)).name()) }
                                    td { span .g aria-hidden="true" { (g) } " " (word) }
                                    td { (r.map(result_evidence).unwrap_or_default()) }
                                    td { (r.map(rtt).unwrap_or_default()) }
                                    td { (r.and_then(|r| r.ttl).map(|t| t.to_string()).unwrap_or_default()) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn share(s: &StoredScan, v: &Verdict) -> Markup {
    html! {
        section #share .share aria-labelledby="share-h" {
            h2 #share-h { "Keep or share" }
            p { "Anyone with this link can see these results until " (utc(s.expires)) ": "
                a href=(format!("/scan/{}", s.id)) { "share link" } " · "
                a href=(format!("/scan/{}/report.txt", s.id)) { "plain-text report" } " · "
                a href=(format!("/api/scans/{}", s.id)) { "JSON" } }
            details { summary { "Report (copy and paste)" } pre #report { (crate::report::text(s, v)) } }
        }
    }
}

/// `2026-12-03T11:57:00Z`, for `<time datetime>`.
fn utc_iso(secs: u64) -> String {
    let (y, m, d, hh, mm, ss) = crate::report::civil(secs);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_reads_as_words() {
        let icmp = |v6, icmp_type, code| Reason::Icmp {
            v6,
            icmp_type,
            code,
        };
        assert_eq!(evidence(Reason::SynAck), "accepted (SYN-ACK)");
        assert_eq!(evidence(icmp(false, 3, 13)), "blocked (ICMP 3-13)");
        assert_eq!(evidence(icmp(true, 1, 4)), "blocked (ICMPv6 1-4)");
        assert!(evidence(Reason::SynAckOnly).contains("proxy"));
        assert_eq!(
            evidence(Reason::NoResponseRateLimited),
            "no answer, unverified (the address limits its replies)"
        );
    }

    #[test]
    fn the_page_says_when_the_address_rate_limits() {
        let result = |port: u16, reason: Reason| StoredResult {
            port,
            proto: harbormaster_probe::Protocol::Tcp,
            state: harbormaster_probe::PortState::Stealth,
            reason,
            rtt_ms: None,
            tries: 16,
            ttl: None,
        };
        let s = StoredScan {
            id: "id".into(),
            target: "198.51.100.9".into(),
            test: crate::scans::TestKind::Custom,
            ports: harbormaster_probe::PortList::parse("21-22").unwrap(),
            mode: harbormaster_probe::ProbeMode::Syn,
            status: Status::Done,
            created: 0,
            finished: Some(31),
            expires: 99,
            watch: Some(crate::db::StoredWatch {
                pings_sent: 3,
                ..Default::default()
            }),
            results: vec![
                result(21, Reason::NoResponse),
                result(22, Reason::NoResponseRateLimited),
            ],
            error: None,
            rate_limit: Some("this host limits its ICMP errors to about 1/s: 1 silent port may be rejecting rather than silent".into()),
            exposure: Vec::new(),
        };
        let v = crate::scans::verdict(&s);
        assert!(!v.passed);
        let page = scan(&s, &[21, 22], Some(&v)).into_string();
        assert!(
            page.contains("Rate limit: </strong>This host limits its ICMP errors to about 1/s: 1 silent port may be rejecting rather than silent."),
            "{page}"
        );
        assert!(page.contains("could not be verified as stealth"), "{page}");
        assert!(
            page.contains("unverified (the address limits its replies)"),
            "{page}"
        );
    }

    #[test]
    fn glyphs_are_distinct_and_not_letters() {
        let glyphs: Vec<&str> = PortState::ALL
            .into_iter()
            .map(Some)
            .chain([None])
            .map(|s| look(s).0)
            .collect();
        let mut unique = glyphs.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), glyphs.len());
        assert!(
            glyphs
                .iter()
                .all(|g| !g.chars().any(|c| c.is_alphanumeric()))
        );
    }
}
