//! Scan pages: the grid (filled so far), then the verdict and what open ports expose.

use harbormaster_knowledge::{Proto, lookup};
use maud::{Markup, html};

use super::paragraphs;

use crate::db::{Status, StoredScan};
use crate::scans::{Verdict, test_label};

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
