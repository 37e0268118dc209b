//! Port pages: every transport's registration, curated notes and closing rules.

use harbormaster_knowledge::{
    Curated, PortPage, Proto, Registration, lookup, port_page, short_name,
};
use maud::{Markup, html};

use super::paragraphs;

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
