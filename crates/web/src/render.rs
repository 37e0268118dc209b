//! Server-rendered HTML. Pages work without JavaScript; `live.js` only makes the
//! grid fill in place. maud escapes every interpolated value.

use harbormaster_knowledge::{
    Curated, PortPage, Proto, Registration, lookup, port_page, short_name,
};
use harbormaster_probe::{COMMON_PORTS, compress_ranges};
use maud::{DOCTYPE, Markup, html};

use crate::db::{Status, StoredScan};
use crate::prober::ProbeMode;
use crate::scans::{Verdict, test_label};

/// Everything the page frame needs.
pub struct Frame<'a> {
    /// Page title.
    pub title: &'a str,
    /// Reload every N seconds (progress without JavaScript).
    pub refresh: Option<u32>,
}

/// Wraps a page body.
pub fn page(frame: Frame<'_>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (frame.title) " · Harbormaster" }
                link rel="stylesheet" href="/static/style.css";
                @if let Some(s) = frame.refresh {
                    noscript { meta http-equiv="refresh" content=(s); }
                }
                script src="/static/live.js" defer {}
            }
            body {
                header {
                    a.brand href="/" { "Harbormaster" }
                    form.jump action="/port" method="get" {
                        label for="jump-n" { "Port" }
                        input #jump-n name="n" type="number" min="0" max="65535" required placeholder="0–65535";
                        button { "Look up" }
                    }
                }
                main { (body) }
                footer { "Harbormaster probes only the address a request comes from, and only after you ask. " a href="/api/ports/0" { "JSON API" } }
            }
        }
    }
}

/// An error page body.
pub fn error_body(heading: &str, message: &str, extra: Option<Markup>) -> Markup {
    html! {
        section.error {
            h1 { (heading) }
            p { (message) }
            @if let Some(x) = extra { (x) }
            p { a href="/" { "Back to the start page" } }
        }
    }
}

/// What the landing page knows about the visitor.
pub struct Visitor<'a> {
    /// The address that would be probed.
    pub ip: String,
    /// Its reverse-DNS name, when found.
    pub rdns: Option<String>,
    /// A CSRF token for the consent form.
    pub token: &'a str,
    /// Why this address cannot be probed, if so.
    pub refusal: Option<String>,
}

/// Limits shown on the landing page.
pub struct Offer {
    /// Probing mode.
    pub mode: ProbeMode,
    /// Most ports in a custom test.
    pub custom_cap: usize,
    /// Whether the full sweep is offered.
    pub allow_full: bool,
}

fn mode_note(mode: ProbeMode) -> Markup {
    html! {
        p.mode {
            @match mode {
                ProbeMode::Syn => { "This server probes with raw SYN packets, also pings your address and watches for packets your side sends on its own." }
                ProbeMode::Connect => { "Your test runs in connect mode (this server has no raw-socket probing for your address): it tells open, closed, filtered and stealth ports apart, but cannot ping you or watch for unsolicited packets." }
                ProbeMode::Scripted => { "This server runs with a scripted prober (test mode)." }
            }
        }
    }
}

/// The landing page.
pub fn home(v: &Visitor<'_>, offer: &Offer) -> Markup {
    let common = compress_ranges(&COMMON_PORTS);
    html! {
        section.you {
            h1 { "Your connection, seen from outside" }
            p.ip { "Your address: " strong #visitor-ip { (v.ip) } }
            @match &v.rdns {
                Some(name) => p { "Its reverse-DNS name: " code { (name) } ". Names like this often reveal your provider, your town or the kind of line you have; every server you visit can see it." },
                None => p { "No reverse-DNS name was found for it (or the lookup is turned off on this server)." },
            }
        }
        section {
            h2 { "What the test does" }
            p { "Harbormaster sends connection attempts (TCP SYN packets) from this server to the ports you choose on your own address — never to any other — and reports what came back for each: " strong { "open" } " (something accepted), " strong { "closed" } " (a refusal came back), " strong { "filtered" } " (a router or firewall answered that it blocks the port) or " strong { "stealth" } " (nothing came back at all, even after retries)." }
            p { "A closed port is not a vulnerability: it only shows that a device answers. Stealth ports give an attacker nothing to work with; open ports are worth understanding, and each result links to what runs there and how to close it." }
            (mode_note(offer.mode))
        }
        @if let Some(why) = &v.refusal {
            section.error { h2 { "This address cannot be tested" } p { (why) } }
        } @else {
            section.consent {
                h2 { "Choose a test" }
                form method="post" action="/scan" {
                    input type="hidden" name="token" value=(v.token);
                    fieldset {
                        legend { "Test" }
                        label { input type="radio" name="kind" value="common" checked; " Common Ports — " (COMMON_PORTS.len()) " ports most often attacked (" (common) ")" }
                        label { input type="radio" name="kind" value="service"; " Service Ports — 0 to 1055, shown as a 32 × 33 grid" }
                        label { input type="radio" name="kind" value="custom"; " Custom — up to " (offer.custom_cap) " ports: " input name="ports" placeholder="e.g. 22,80,443,8000-8100" aria-label="Custom ports and ranges"; }
                        @if offer.allow_full {
                            label { input type="radio" name="kind" value="full"; " All ports — 0 to 65535" }
                        }
                    }
                    p.consent-text { "By pressing the button you ask this server to probe " strong { (v.ip) } " now." }
                    button.go type="submit" { "Probe my connection" }
                }
            }
        }
    }
}

fn entry_section(page: &PortPage, i: usize) -> Markup {
    let e = &page.entries[i];
    let info = e.info;
    let reg = match (info.registration, info.iana_name, info.iana_description) {
        (Registration::Unassigned, _, _) => "unassigned".to_string(),
        (Registration::Reserved, _, _) => "reserved".to_string(),
        (_, Some(n), Some(d)) => format!("{n}: {d}"),
        (_, Some(n), None) => n.to_string(),
        (_, None, d) => d.unwrap_or("assigned").to_string(),
    };
    html! {
        section.entry id=(info.proto.as_str()) {
            h2 { (info.proto.as_str().to_uppercase()) " " (info.port) " · " (e.name) }
            dl {
                dt { "Range" } dd { (info.class.describe()) }
                dt { "IANA" } dd { (reg) }
                @if !info.iana_other_names.is_empty() {
                    dt { "Also registered" } dd { (info.iana_other_names.join(", ")) }
                }
                @if !info.iana_aliases.is_empty() {
                    dt { "Historic aliases" } dd { (info.iana_aliases.join(", ")) }
                }
                @if let Some(r) = info.iana_reference {
                    dt { "IANA reference" } dd { (r) }
                }
                @if let Some(u) = info.iana_unauthorized_use {
                    dt { "Unauthorized use reported to IANA" } dd { (u) }
                }
                dt { "Purpose" } dd { (e.summary) }
            }
            @if let Some(c) = info.curated { (curated(c)) }
            @else {
                p { "No curated notes for this port yet. If a probe finds it open, find out which program listens (" code { "ss -ltnup" } " on Linux, " code { "Get-NetTCPConnection -State Listen" } " on Windows) and close it if you do not need it." }
            }
            details {
                summary { "Firewall rules that drop " (info.port) "/" (info.proto.as_str()) }
                dl.rules {
                    dt { "Windows" } dd { code { (e.closing_rules.windows) } }
                    dt { "nftables" } dd { code { (e.closing_rules.nftables) } }
                    dt { "ufw" } dd { code { (e.closing_rules.ufw) } }
                    dt { "Router" } dd { (e.closing_rules.router) }
                }
            }
        }
    }
}

fn paragraphs(text: &str) -> Markup {
    html! { @for p in text.split("\n\n") { p { (p) } } }
}

fn curated(c: &Curated) -> Markup {
    html! {
        h3 { (c.title) }
        @if !c.protocols.is_empty() { p.small { "Protocols: " (c.protocols.join(", ")) } }
        @if !c.tags.is_empty() { p.small.tags { "Tags: " (c.tags.join(", ")) } }
        h4 { "What runs here" } (paragraphs(c.description))
        h4 { "Why exposure matters" } (paragraphs(c.security))
        h4 { "How to close it" } (paragraphs(c.close))
        @if !c.related.is_empty() {
            h4 { "Related ports" }
            ul.inline { @for r in c.related { li { a href=(format!("/port/{}#{}", r.port, r.proto)) { (r.to_string()) } " " (lookup(r.port, r.proto).name()) } } }
        }
        @if !c.malware.is_empty() {
            h4 { "Malware seen on this port" }
            p { (c.malware.join(", ")) }
        }
        @if !c.references.is_empty() {
            h4 { "References" }
            ul.inline { @for r in c.references {
                li { @if let Some(n) = r.strip_prefix("RFC ") { a href=(format!("https://www.rfc-editor.org/rfc/rfc{n}")) { (r) } } @else { a href=(r) rel="noreferrer" { (r) } } }
            } }
        }
        p.small.reviewed { @match c.reviewed {
            Some(month) => { "Facts on this entry last checked: " (month) "." }
            None => { "This entry has not been fact-checked yet." }
        } }
    }
}

/// The knowledge page of one port, with navigation and a probe button.
pub fn port(n: u16, token: Option<&str>) -> Markup {
    let page = port_page(n, &Proto::ALL);
    html! {
        nav.portnav aria-label="Port navigation" {
            a rel="prev" href=(format!("/port/{}", page.previous)) { "← port " (page.previous) " " span.small { (short_name(page.previous)) } }
            " · "
            @if let Some(t) = token {
                form.inline method="post" action="/scan" {
                    input type="hidden" name="token" value=(t);
                    input type="hidden" name="kind" value="port";
                    input type="hidden" name="port" value=(n);
                    button { "Probe port " (n) }
                }
            } @else { span { "Probe port " (n) " (not available for your address)" } }
            " · "
            form.inline action="/port" method="get" {
                label for="nav-n" { "Enter port (0–65535)" }
                input #nav-n name="n" type="number" min="0" max="65535" required;
            }
            " · "
            a rel="next" href=(format!("/port/{}", page.next)) { "port " (page.next) " " span.small { (short_name(page.next)) } " →" }
        }
        h1 { "Port " (n) }
        @for i in 0..page.entries.len() { (entry_section(&page, i)) }
        p.small { a href=(format!("/api/ports/{n}")) { "This page as JSON" } }
    }
}

fn letter(state: &str) -> (&'static str, &'static str) {
    match state {
        "open" => ("O", "open"),
        "closed" => ("C", "closed"),
        "filtered" => ("F", "filtered"),
        "stealth" => ("S", "stealth"),
        _ => ("·", "pending"),
    }
}

/// A scan's page: the grid (filled so far), then the verdict and report when done.
pub fn scan(s: &StoredScan, ports: &[u16], verdict: Option<&Verdict>) -> Markup {
    let running = s.status == Status::Running;
    let by_port: std::collections::HashMap<u16, &str> = s
        .results
        .iter()
        .map(|r| (r.port, r.state.as_str()))
        .collect();
    let grid_cols = if s.test == "service" { 32 } else { 16 };
    html! {
        h1 { (test_label(&s.test)) " of " (s.target) }
        p.small { (ports.len()) " port(s): " (s.ports) " · mode: " (s.mode) " · status: " span #status { (format!("{:?}", s.status).to_lowercase()) } }
        @if let Some(e) = &s.error {
            p.error #failure { "The test failed: " (e) }
        }
        @if running {
            p #progress { "Probing… results appear as they arrive. " noscript { "(This page reloads every 2 seconds.)" } }
        }
        div.legend aria-hidden="true" {
            span.cell.s-open { "O" } " open " span.cell.s-closed { "C" } " closed " span.cell.s-filtered { "F" } " filtered " span.cell.s-stealth { "S" } " stealth " span.cell.s-pending { "·" } " pending"
        }
        div #grid class=(format!("grid cols-{grid_cols}")) data-scan=(s.id) data-running=(running) data-from=(s.results.len()) role="list" {
            @for p in ports {
                @let (l, class) = letter(by_port.get(p).copied().unwrap_or("pending"));
                a class=(format!("cell s-{class}")) id=(format!("p{p}")) href=(format!("/port/{p}")) role="listitem" title=(format!("port {p}: {class}")) aria-label=(format!("port {p} {class}")) { (l) }
            }
        }
        @if let Some(v) = verdict { (verdict_block(s, v)) }
    }
}

fn verdict_block(s: &StoredScan, v: &Verdict) -> Markup {
    let open: Vec<&crate::db::StoredResult> =
        s.results.iter().filter(|r| r.state == "open").collect();
    html! {
        section #verdict class=(if v.passed { "verdict pass" } else { "verdict fail" }) {
            @if v.passed {
                h2 { "Stealth: passed" }
                p { "Every tested port stayed silent, your address did not answer ping, and nothing arrived from it unprompted. To this test your connection looks like nothing is there." }
            } @else {
                h2 { "Stealth: not passed" }
                @if !v.failures.is_empty() { ul { @for f in &v.failures { li { (f) } } } }
                @if !v.untested.is_empty() { p { "Not judged:" } ul { @for u in &v.untested { li { (u) } } } }
                p.small { "Answering is not the same as being vulnerable: a closed port reveals that a device is there, nothing more. Open ports deserve a look." }
            }
            @if let Some(w) = &s.watch {
                p { "Ping: " (w.pings_sent) " echo request(s) sent, " (w.ping_replies) " repl" (if w.ping_replies == 1 { "y" } else { "ies" }) ". Unsolicited packets: " (w.unsolicited)
                    @if !w.unsolicited_examples.is_empty() { " (" (w.unsolicited_examples.join("; ")) ")" } "." }
            }
        }
        @if !open.is_empty() {
            section.open {
                h2 { "What your open ports expose" }
                @for r in &open {
                    @let info = lookup(r.port, Proto::Tcp);
                    article {
                        h3 { a href=(format!("/port/{}", r.port)) { (r.port) "/tcp · " (info.name()) } }
                        p { (info.summary()) }
                        @if let Some(c) = info.curated {
                            details { summary { "Why it matters and how to close it" } (paragraphs(c.security)) (paragraphs(c.close)) }
                        }
                    }
                }
            }
        }
        section.share {
            h2 { "Keep or share" }
            p { "Share link: " a href=(format!("/scan/{}", s.id)) { "/scan/" (s.id) } " · " a href=(format!("/scan/{}/report.txt", s.id)) { "plain-text report" } " · " a href=(format!("/api/scans/{}", s.id)) { "JSON" } }
            details open { summary { "Report (copy and paste)" } pre #report { (crate::report::text(s, v)) } }
        }
    }
}
