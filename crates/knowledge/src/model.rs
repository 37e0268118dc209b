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
    /// Service names and aliases, the IANA keyword first when there is one. May
    /// be empty: where IANA gives no name the project does not invent one. Names
    /// here that IANA does not list are the project's labels (see
    /// [`PortInfo::iana_names`] for IANA's own).
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
    /// Filter tags from [`crate::TAGS`], e.g. `ics`, `remote-access`.
    pub tags: &'static [&'static str],
    /// The month the entry was last fact-checked, `YYYY-MM`; `None` for an entry
    /// not yet re-checked since review dates were introduced.
    pub reviewed: Option<&'static str>,
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
    /// Historic aliases IANA lists for the same registration (`sql*net` beside
    /// `sql-net`), or duplicates it says not to use for discovery (`www` beside
    /// `http`).
    pub iana_aliases: &'static [&'static str],
    /// Other service names IANA registers on the same port and transport: a
    /// second assignment (`shilp` beside `nfs` on 2049) or a use IANA records
    /// without assigning it (`cddbp` on 888).
    pub iana_other_names: &'static [&'static str],
    /// IANA's reference for the registration, as IANA writes it (`[RFC959]`).
    pub iana_reference: Option<&'static str>,
    /// IANA's "Unauthorized Use Reported" note for the port, when it records one
    /// (`Known Unauthorized Use on port 6003`); several notes are joined by ` / `.
    pub iana_unauthorized_use: Option<&'static str>,
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
            iana_aliases: &[],
            iana_other_names: &[],
            iana_reference: None,
            iana_unauthorized_use: None,
        }
    }

    /// Whether IANA lists `name` for this port and transport (current name,
    /// historic alias or other registration). Case-insensitive, as service names are.
    pub fn is_iana_name(&self, name: &str) -> bool {
        self.iana_names().any(|n| n.eq_ignore_ascii_case(name))
    }

    /// Every service name IANA lists here: the current name, then historic
    /// aliases, then other registrations.
    pub fn iana_names(&self) -> impl Iterator<Item = &'static str> + use<> {
        self.iana_name
            .into_iter()
            .chain(self.iana_aliases.iter().copied())
            .chain(self.iana_other_names.iter().copied())
    }

    /// The best short name. Where IANA names the port: the first curated name if
    /// IANA lists it as a current name here (631 `ipp` rather than `ipps`), else
    /// IANA's current name (never a historic alias such as `sql*net`). Where IANA
    /// gives none: the first curated name (what people call an unregistered
    /// service), else "reserved", "unassigned" or, for an assignment without a
    /// name (57, "any private terminal access"), "unnamed".
    pub fn name(&self) -> &'static str {
        let first = self.curated.and_then(|c| c.names.first()).copied();
        if let Some(n) = self.iana_name {
            return match first {
                Some(f)
                    if f.eq_ignore_ascii_case(n)
                        || self
                            .iana_other_names
                            .iter()
                            .any(|o| o.eq_ignore_ascii_case(f)) =>
                {
                    f
                }
                _ => n,
            };
        }
        if let Some(n) = first {
            return n;
        }
        match self.registration {
            Registration::Reserved => "reserved",
            Registration::Unassigned => "unassigned",
            Registration::Assigned => "unnamed",
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
    pub(crate) iana_aliases: &'static [&'static str],
    pub(crate) iana_other_names: &'static [&'static str],
    pub(crate) iana_reference: &'static str,
    pub(crate) iana_unauthorized_use: &'static str,
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
            iana_aliases: self.iana_aliases,
            iana_other_names: self.iana_other_names,
            iana_reference: non_empty(self.iana_reference),
            iana_unauthorized_use: non_empty(self.iana_unauthorized_use),
        }
    }
}
