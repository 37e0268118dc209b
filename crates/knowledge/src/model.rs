//! The types a lookup returns.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use crate::tables::CURATED;

/// A transport protocol the knowledge base covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// Transmission Control Protocol.
    Tcp,
    /// User Datagram Protocol.
    Udp,
}

impl Proto {
    /// Both transports, TCP first (the order pages and exports use).
    pub const ALL: [Proto; 2] = [Proto::Tcp, Proto::Udp];

    /// Lower-case name, as in `21/tcp`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was neither `tcp` nor `udp`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown transport {0:?}: expected tcp or udp")]
pub struct ProtoParseError(pub String);

impl FromStr for Proto {
    type Err = ProtoParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            _ => Err(ProtoParseError(s.to_string())),
        }
    }
}

/// A port on a transport, written `21/tcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRef {
    /// Port number.
    pub port: u16,
    /// Transport.
    pub proto: Proto,
}

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.proto)
    }
}

impl Serialize for PortRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The RFC 6335 range a port number falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RangeClass {
    /// 0–1023, assigned by IANA through IETF review; binding needs privilege on most systems.
    System,
    /// 1024–49151, registered by IANA on request.
    User,
    /// 49152–65535, never assigned; operating systems pick ephemeral ports here.
    Dynamic,
}

impl RangeClass {
    /// The class of `port`.
    pub const fn of(port: u16) -> RangeClass {
        match port {
            0..=1023 => RangeClass::System,
            1024..=49151 => RangeClass::User,
            _ => RangeClass::Dynamic,
        }
    }

    /// A short phrase for reports, e.g. "system port (0–1023)".
    pub const fn describe(self) -> &'static str {
        match self {
            RangeClass::System => "system port (0–1023, RFC 6335)",
            RangeClass::User => "user (registered) port (1024–49151, RFC 6335)",
            RangeClass::Dynamic => "dynamic/private port (49152–65535, RFC 6335)",
        }
    }
}

/// What the IANA registry says about a port/transport pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    /// Assigned to a service.
    Assigned,
    /// Reserved by IANA and not to be used.
    Reserved,
    /// Not assigned to anything.
    Unassigned,
}

/// A curated entry: what runs on a port and why its exposure matters, written
/// for this project (see `data/ports/README.md`).
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct Curated {
    /// Port number (not serialised: the enclosing [`PortInfo`] carries it).
    #[serde(skip)]
    pub port: u16,
    /// Transport (not serialised, as for `port`); TCP when `both`.
    #[serde(skip)]
    pub proto: Proto,
    /// The entry describes TCP and UDP alike (one text for both transports).
    #[serde(skip)]
    pub both: bool,
    /// Human-readable name of the service.
    pub title: &'static str,
    /// Service names and aliases, the IANA keyword first when there is one.
    pub names: &'static [&'static str],
    /// Application protocols spoken on the port.
    pub protocols: &'static [&'static str],
    /// One line: what the port is for.
    pub purpose: &'static str,
    /// What listens there and how the protocol uses the port.
    pub description: &'static str,
    /// Why exposure to the internet matters; typical attacks.
    pub security: &'static str,
    /// Service-specific advice on closing or restricting the port.
    pub close: &'static str,
    /// Related ports.
    pub related: &'static [PortRef],
    /// RFCs and official documentation.
    pub references: &'static [&'static str],
    /// Malware historically recorded using the port.
    pub malware: &'static [&'static str],
}

/// Everything known about one port/transport pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PortInfo {
    /// Port number.
    pub port: u16,
    /// Transport.
    pub proto: Proto,
    /// RFC 6335 range class.
    pub class: RangeClass,
    /// IANA registration status.
    pub registration: Registration,
    /// IANA service keyword, when the registry gives one.
    pub iana_name: Option<&'static str>,
    /// IANA description, when the registry gives one.
    pub iana_description: Option<&'static str>,
    /// The curated entry, when there is one.
    pub curated: Option<&'static Curated>,
}

impl PortInfo {
    pub(crate) const fn unassigned(port: u16, proto: Proto) -> PortInfo {
        PortInfo {
            port,
            proto,
            class: RangeClass::of(port),
            registration: Registration::Unassigned,
            iana_name: None,
            iana_description: None,
            curated: None,
        }
    }

    /// The best short name: the first curated name, else the IANA keyword, else
    /// "reserved" or "unassigned".
    pub fn name(&self) -> &'static str {
        if let Some(n) = self.curated.and_then(|c| c.names.first()) {
            return n;
        }
        match (self.iana_name, self.registration) {
            (Some(n), _) => n,
            (None, Registration::Reserved) => "reserved",
            (None, Registration::Unassigned) => "unassigned",
            (None, Registration::Assigned) => "assigned",
        }
    }

    /// The best one-line summary: the curated purpose, else the IANA
    /// description, else a plain statement that nothing is assigned.
    pub fn summary(&self) -> &'static str {
        if let Some(c) = self.curated {
            return c.purpose;
        }
        match (self.iana_description, self.registration) {
            (Some(d), _) => d,
            (None, Registration::Reserved) => "Reserved by IANA.",
            _ => "Unassigned: IANA has not given this port to any service.",
        }
    }

    /// This port as `PORT/proto`.
    pub const fn port_ref(&self) -> PortRef {
        PortRef {
            port: self.port,
            proto: self.proto,
        }
    }
}

/// One row of the compiled table (internal; [`PortInfo`] is the public view).
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) port: u16,
    pub(crate) proto: Proto,
    pub(crate) registration: Registration,
    pub(crate) iana_name: &'static str,
    pub(crate) iana_description: &'static str,
    pub(crate) curated: Option<u16>,
}

impl Entry {
    pub(crate) fn info(&self) -> PortInfo {
        let non_empty = |s: &'static str| (!s.is_empty()).then_some(s);
        PortInfo {
            port: self.port,
            proto: self.proto,
            class: RangeClass::of(self.port),
            registration: self.registration,
            iana_name: non_empty(self.iana_name),
            iana_description: non_empty(self.iana_description),
            curated: self.curated.map(|i| &CURATED[usize::from(i)]),
        }
    }
}
