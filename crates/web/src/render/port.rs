//! Port pages: every transport's registration, curated notes and closing rules.

use harbormaster_knowledge::{
    Curated, PortPage, Proto, Registration, SearchHit, TAGS, lookup, port_page, short_name,
};
use maud::{Markup, html};

use super::paragraphs;

/// Most characters of a search query (longer ones get a friendly 400 page).
pub const MAX_QUERY: usize = 100;

/// Most hits listed on one search page.
const MAX_HITS: usize = 200;

/// A transport with nothing registered and nothing curated: one line, not a section.
fn is_noise(e: &harbormaster_knowledge::PageEntry) -> bool {
    e.info.curated.is_none() && e.info.registration != Registration::Assigned
}

/// Readable text for a reference link: `RFC 959` stays; a URL becomes its host
/// and last path part (`learn.microsoft.com › change-listening-port`).
pub fn link_text(r: &str) -> String {
    let rest = r
        .strip_prefix("https://")
        .or_else(|| r.strip_prefix("http://"))
        .unwrap_or(r);
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    let mut parts = rest.split('/').filter(|p| !p.is_empty());
    let host = parts.next().unwrap_or(rest);
    let last = parts.next_back();
    let host = host.strip_prefix("www.").unwrap_or(host);
    let text = match last {
        Some(last) => {
            let last = last
                .trim_end_matches(".html")
                .trim_end_matches(".htm")
                .trim_end_matches(".txt");
            format!("{host} › {last}")
        }
        None => host.to_string(),
    };
    if text.chars().count() > 60 {
        let mut t: String = text.chars().take(59).collect();
        t.push('…');
        t
    } else {
        text
    }
}

fn entry_section(page: &PortPage, i: usize) -> Markup {
    let e = &page.entries[i];
    let info = e.info;
    if is_noise(e) {
        let what = match info.registration {
            Registration::Reserved => "reserved by IANA",
            _ => "unassigned",
        };
        return html! {
            p.noise id=(info.proto.as_str()) {
                strong { (info.proto.as_str().to_uppercase()) " " (info.port) }
                ": " (what) ", and no known program uses it. If a test finds it open, treat it like any unknown port: find the program and close it. "
                a href=(format!("/api/ports/{}", info.port)) { "Details as JSON" }
            }
        };
    }
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
                li { @if let Some(n) = r.strip_prefix("RFC ") { a.ref href=(format!("https://www.rfc-editor.org/rfc/rfc{n}")) { (r) } } @else { a.ref href=(r) rel="noreferrer" title=(r) { (link_text(r)) } } }
            } }
        }
        p.small.reviewed { @match c.reviewed {
            Some(month) => { "Facts on this entry last checked: " (month) "." }
            None => { "This entry has not been fact-checked yet." }
        } }
    }
}

/// The knowledge page of one port, with navigation and a probe button.
/// Curated and registered transports come first; empty ones collapse to a line.
pub fn port(n: u16, token: Option<&str>) -> Markup {
    let page = port_page(n, &Proto::ALL);
    let mut order: Vec<usize> = (0..page.entries.len()).collect();
    order.sort_by_key(|&i| is_noise(&page.entries[i]));
    html! {
        nav.portnav aria-label="Port navigation" {
            a.prev rel="prev" href=(format!("/port/{}", page.previous)) { "← port " (page.previous) " " span.small { (short_name(page.previous)) } }
            a.next rel="next" href=(format!("/port/{}", page.next)) { "port " (page.next) " " span.small { (short_name(page.next)) } " →" }
            @if let Some(t) = token {
                form.probe method="post" action="/scan" {
                    input type="hidden" name="token" value=(t);
                    input type="hidden" name="kind" value="port";
                    input type="hidden" name="port" value=(n);
                    button { "Probe port " (n) }
                }
            } @else { span.probe { "Probe port " (n) " (not available for your address)" } }
            form.enter action="/port" method="get" {
                label for="nav-n" { "Enter port (0–65535)" }
                input #nav-n name="n" type="number" min="0" max="65535" required;
                button { "Go" }
            }
        }
        h1 { "Port " (n) }
        @for i in order { (entry_section(&page, i)) }
        p.small { a href=(format!("/api/ports/{n}")) { "This page as JSON" } }
    }
}

/// What the search page shows.
pub struct SearchView<'a> {
    /// The query as typed (possibly cut to [`MAX_QUERY`] for display).
    pub q: &'a str,
    /// The tag filter, if any.
    pub tag: Option<&'a str>,
    /// The hits, when a search ran.
    pub hits: Option<&'a [SearchHit]>,
    /// Why the search could not run, if so.
    pub problem: Option<&'a str>,
}

/// The search page: a form, then the hits linking to their port pages.
pub fn search(v: &SearchView<'_>) -> Markup {
    html! {
        h1 { "Search ports" }
        form.search role="search" aria-label="Search the port pages" action="/search" method="get" {
            div.field {
                label for="search-q" { "Words, a service or malware name, or a port number" }
                input #search-q name="q" type="search" value=(v.q) maxlength=(MAX_QUERY) placeholder="e.g. remote desktop, netbus, 3306";
            }
            div.field {
                label for="search-tag" { "Only ports tagged" }
                select #search-tag name="tag" {
                    option value="" selected[v.tag.is_none()] { "any tag" }
                    @for t in TAGS { option value=(t) selected[v.tag == Some(t)] { (t) } }
                }
            }
            button { "Search" }
        }
        @if let Some(p) = v.problem { p.problem role="alert" { (p) } }
        @if let Some(hits) = v.hits {
            @if hits.is_empty() {
                p { "Nothing matched. Try a shorter word, a service name (e.g. " code { "ssh" } ") or another tag." }
            } @else {
                p.small {
                    @if hits.len() > MAX_HITS { "The best " (MAX_HITS) " of " (hits.len()) " matches." }
                    @else { (hits.len()) @if hits.len() == 1 { " match." } @else { " matches." } }
                }
                ol.hits {
                    @for h in hits.iter().take(MAX_HITS) {
                        li {
                            a href=(format!("/port/{}#{}", h.info.port, h.info.proto.as_str())) { (h.info.port) "/" (h.info.proto.as_str()) " · " (h.info.name()) }
                            " — " (h.info.summary())
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_links_read_as_host_and_last_part() {
        assert_eq!(
            link_text(
                "https://learn.microsoft.com/en-us/windows-server/remote/clients/change-listening-port"
            ),
            "learn.microsoft.com › change-listening-port"
        );
        assert_eq!(link_text("https://www.example.org/"), "example.org");
        assert_eq!(
            link_text("https://a.example/x/page.html?q=1"),
            "a.example › page"
        );
        assert!(
            link_text(&format!("https://h.example/{}", "x".repeat(200)))
                .chars()
                .count()
                <= 60
        );
        assert_eq!(link_text(""), "");
    }
}
