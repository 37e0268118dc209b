//! A port page: one port, its neighbours, and an entry per transport. The CLI
//! prints it, the web service renders it, both serialise it the same way.

use serde::Serialize;

use crate::{ClosingRules, PortInfo, Proto, closing_rules, lookup, neighbours};

/// One port with both (or the chosen) transports.
#[derive(Debug, Clone, Serialize)]
pub struct PortPage {
    /// The port.
    pub port: u16,
    /// The port before it (65535 before 0).
    pub previous: u16,
    /// The port after it (0 after 65535).
    pub next: u16,
    /// One entry per transport asked for, TCP first.
    pub entries: Vec<PageEntry>,
}

/// One transport's section of a port page.
#[derive(Debug, Clone, Serialize)]
pub struct PageEntry {
    /// Everything known about the port on this transport.
    #[serde(flatten)]
    pub info: PortInfo,
    /// Best short name.
    pub name: &'static str,
    /// Best one-line summary.
    pub summary: &'static str,
    /// Firewall rules that close it.
    pub closing_rules: ClosingRules,
}

/// The page for `port`, limited to `protos`.
pub fn port_page(port: u16, protos: &[Proto]) -> PortPage {
    let (previous, next) = neighbours(port);
    PortPage {
        port,
        previous,
        next,
        entries: protos
            .iter()
            .map(|&p| {
                let info = lookup(port, p);
                PageEntry {
                    info,
                    name: info.name(),
                    summary: info.summary(),
                    closing_rules: closing_rules(port, p),
                }
            })
            .collect(),
    }
}

/// A port's name for navigation: the TCP name, else the UDP one when only UDP
/// has something registered or curated.
pub fn short_name(port: u16) -> &'static str {
    let tcp = lookup(port, Proto::Tcp);
    if tcp.registration == crate::Registration::Unassigned && tcp.curated.is_none() {
        lookup(port, Proto::Udp).name()
    } else {
        tcp.name()
    }
}
