//! Port pages and search results, as text for people and JSON for programs.

use std::io::{self, Write};

use harbormaster_knowledge::{
    MatchField, PortInfo, Proto, Registration, SearchHit, closing_rules, lookup, neighbours,
    short_name,
};

const WIDTH: usize = 78;
/// Continuation indent of a search result line (under the summary column).
const HIT_INDENT: usize = 31;

/// Writes the text page for `port`: navigation, then one section per transport.
pub fn write_port_page(out: &mut impl Write, port: u16, protos: &[Proto]) -> io::Result<()> {
    let (prev, next) = neighbours(port);
    writeln!(out, "Port {port}")?;
    writeln!(
        out,
        "← port {prev} ({})  ·  probe: harbormaster scan HOST -p {port}  ·  port {next} ({}) →",
        short_name(prev),
        short_name(next)
    )?;
    for &proto in protos {
        writeln!(out)?;
        write_section(out, lookup(port, proto))?;
    }
    Ok(())
}

fn write_section(out: &mut impl Write, info: PortInfo) -> io::Result<()> {
    // An assignment IANA gives no name is headed by its title alone: no label of
    // ours is dressed up as IANA's.
    let name = info.name();
    let heading = match (info.curated, info.registration, name) {
        (Some(c), Registration::Assigned, "unnamed") => {
            format!("{} · {}", info.port_ref(), c.title)
        }
        (Some(c), _, _) => format!("{} · {name} · {}", info.port_ref(), c.title),
        (None, _, _) => format!("{} · {name}", info.port_ref()),
    };
    writeln!(out, "{heading}")?;
    writeln!(out, "{}", "─".repeat(heading.chars().count().min(WIDTH)))?;
    field(out, "Range", info.class.describe())?;
    let iana = match (info.registration, info.iana_name, info.iana_description) {
        (Registration::Unassigned, _, Some(d)) => format!("unassigned ({d})"),
        (Registration::Unassigned, _, None) => "unassigned".to_string(),
        (Registration::Reserved, _, _) => "reserved".to_string(),
        (Registration::Assigned, Some(n), Some(d)) => format!("{n}: {d}"),
        (Registration::Assigned, Some(n), None) => n.to_string(),
        (Registration::Assigned, None, Some(d)) => format!("no service name: {d}"),
        (Registration::Assigned, None, None) => "assigned, no service name".to_string(),
    };
    field(out, "IANA", &iana)?;
    if !info.iana_aliases.is_empty() {
        let n = info.iana_name.unwrap_or_default();
        field(
            out,
            "IANA aliases",
            &format!(
                "{} (historic or duplicate names of {n}; IANA says not to use them for service discovery)",
                info.iana_aliases.join(", ")
            ),
        )?;
    }
    if !info.iana_other_names.is_empty() {
        field(out, "IANA also", &info.iana_other_names.join(", "))?;
    }
    if let Some(r) = info.iana_reference {
        field(out, "IANA ref", r)?;
    }
    if let Some(u) = info.iana_unauthorized_use {
        field(
            out,
            "Unauthorized",
            &format!("IANA records unauthorized use: {u}"),
        )?;
    }
    let Some(c) = info.curated else {
        field(out, "Summary", info.summary())?;
        writeln!(out)?;
        paragraphs(
            out,
            "",
            "Harbormaster has no curated notes for this port yet. If a probe finds it open, \
             find out which program listens (`ss -ltnup` on Linux, `Get-NetTCPConnection \
             -State Listen` on Windows) and close it if you do not need it.",
        )?;
        return write_rules(out, &info);
    };
    field(out, "Purpose", c.purpose)?;
    field(out, "Protocols", &c.protocols.join(", "))?;
    // Curated names IANA does not list are what people call the service; they
    // are labelled as such so they are never read as IANA's.
    let ours: Vec<&str> = c
        .names
        .iter()
        .copied()
        .filter(|n| *n != name && !info.is_iana_name(n))
        .collect();
    if !ours.is_empty() {
        field(
            out,
            "Also called",
            &format!("{} (not IANA names)", ours.join(", ")),
        )?;
    }
    if !c.tags.is_empty() {
        field(out, "Tags", &c.tags.join(", "))?;
    }
    field(
        out,
        "Reviewed",
        c.reviewed
            .unwrap_or("no review date yet (entry predates review dates)"),
    )?;
    writeln!(out)?;
    paragraphs(out, "What runs here", c.description)?;
    paragraphs(out, "Why exposure matters", c.security)?;
    paragraphs(out, "How to close it", c.close)?;
    write_rules(out, &info)?;
    if !c.related.is_empty() {
        let related: Vec<String> = c
            .related
            .iter()
            .map(|r| format!("{r} ({})", lookup(r.port, r.proto).name()))
            .collect();
        field(out, "Related", &related.join(", "))?;
    }
    if !c.malware.is_empty() {
        field(out, "Malware seen", &c.malware.join(", "))?;
    }
    if !c.references.is_empty() {
        field(out, "References", &c.references.join(", "))?;
    }
    Ok(())
}

fn write_rules(out: &mut impl Write, info: &PortInfo) -> io::Result<()> {
    let r = closing_rules(info.port, info.proto);
    writeln!(out, "  Firewall rules that drop {}:", info.port_ref())?;
    for (label, text) in [
        ("Windows", r.windows.as_str()),
        ("nftables", &r.nftables),
        ("ufw", &r.ufw),
        ("Router", &r.router),
    ] {
        writeln!(out, "{}", wrap(text, &format!("    {label:<9} "), 14))?;
    }
    writeln!(out)
}

/// Fills `text` to the page width after `lead`, continuing lines at column `indent`.
/// Words are never split at hyphens: command names and CVE numbers stay whole.
fn wrap(text: &str, lead: &str, indent: usize) -> String {
    let rest = " ".repeat(indent);
    let opts = textwrap::Options::new(WIDTH)
        .initial_indent(lead)
        .subsequent_indent(&rest)
        .word_separator(textwrap::WordSeparator::AsciiSpace)
        .word_splitter(textwrap::WordSplitter::NoHyphenation)
        .break_words(false);
    textwrap::fill(text, opts)
}

/// A label/value line, the value wrapped under itself.
fn field(out: &mut impl Write, label: &str, value: &str) -> io::Result<()> {
    writeln!(out, "{}", wrap(value, &format!("  {label:<13} "), 16))
}

/// A titled block of wrapped paragraphs.
fn paragraphs(out: &mut impl Write, title: &str, text: &str) -> io::Result<()> {
    if !title.is_empty() {
        writeln!(out, "  {title}")?;
    }
    for p in text.split("\n\n") {
        writeln!(out, "{}", wrap(p, "    ", 4))?;
        writeln!(out)?;
    }
    Ok(())
}

/// Writes search results, one port per line, best first.
pub fn write_search_results(
    out: &mut impl Write,
    query: &str,
    hits: &[SearchHit],
) -> io::Result<()> {
    if hits.is_empty() {
        return writeln!(out, "No port matches {query}.");
    }
    for h in hits {
        let port = h.info.port_ref().to_string();
        let lead = format!("{port:<11} {:<18} ", h.info.name());
        writeln!(out, "{}", wrap(h.info.summary(), &lead, HIT_INDENT))?;
        // When a malware name is what matched, say which.
        let malware = h.info.curated.filter(|c| !c.malware.is_empty());
        if let (Some(c), MatchField::Malware) = (malware, h.matched) {
            let lead = format!("{:HIT_INDENT$}malware: ", "");
            writeln!(
                out,
                "{}",
                wrap(&c.malware.join(", "), &lead, HIT_INDENT + 9)
            )?;
        }
    }
    Ok(())
}
