//! What a probe observed: the four port states and the evidence behind each.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use serde::{Serialize, Serializer};

/// The transport a result is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Transport {
    /// Lower-case name, as in `80/tcp`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Transport {
    type Err = UnknownName;

    /// Inverts [`Transport`]'s `Display`.
    fn from_str(s: &str) -> Result<Transport, UnknownName> {
        match s {
            "tcp" => Ok(Transport::Tcp),
            "udp" => Ok(Transport::Udp),
            _ => Err(UnknownName::new("protocol", s, "tcp or udp")),
        }
    }
}

/// A name that none of an enum's values has, met while reading one back from
/// text (a database column, a form field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}; expected {expected}")]
pub struct UnknownName {
    /// What was being read ("port state", "reason", …).
    pub what: &'static str,
    /// The text, cut to 64 characters so a hostile value cannot flood a log.
    pub value: String,
    /// The valid names, in words.
    pub expected: &'static str,
}

impl UnknownName {
    /// The error for `value`, which is not a valid `what`.
    pub fn new(what: &'static str, value: &str, expected: &'static str) -> UnknownName {
        UnknownName {
            what,
            value: value.chars().take(64).collect(),
            expected,
        }
    }
}

/// An observation of what came back, not a judgement of the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PortState {
    /// A SYN-ACK (or a completed connect): something accepts connections.
    Open,
    /// A RST (connection refused): the host answers, nothing listens.
    Closed,
    /// An ICMP unreachable: something on the path answered that it blocks the port.
    Filtered,
    /// Nothing came back, after every retry.
    Stealth,
}

impl PortState {
    /// All states, in report order.
    pub const ALL: [PortState; 4] = [
        PortState::Open,
        PortState::Closed,
        PortState::Filtered,
        PortState::Stealth,
    ];

    /// Lower-case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            PortState::Open => "open",
            PortState::Closed => "closed",
            PortState::Filtered => "filtered",
            PortState::Stealth => "stealth",
        }
    }
}

impl fmt::Display for PortState {
    /// Honours width, fill and alignment (`{:<10}`), so text tables line up.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for PortState {
    type Err = UnknownName;

    /// Inverts [`PortState`]'s `Display`.
    fn from_str(s: &str) -> Result<PortState, UnknownName> {
        PortState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownName::new("port state", s, "open, closed, filtered or stealth"))
    }
}

/// The evidence behind a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A SYN-ACK answered the SYN.
    SynAck,
    /// A RST answered the SYN.
    Rst,
    /// An ICMP (v4) or ICMPv6 error quoting our probe.
    Icmp {
        /// ICMPv6 rather than ICMPv4.
        v6: bool,
        /// ICMP type.
        icmp_type: u8,
        /// ICMP code.
        code: u8,
    },
    /// Nothing came back.
    NoResponse,
    /// connect() completed.
    Connected,
    /// connect() was refused (ECONNREFUSED, i.e. a RST).
    ConnRefused,
    /// connect() reported the host unreachable (an ICMP error reached the kernel).
    HostUnreachable,
    /// connect() reported the network unreachable.
    NetUnreachable,
    /// A SYN-ACK answered the SYN, but a real connection did not hold (reset
    /// or closed at once, or refused): a proxy or firewall may be answering
    /// for this port. The state stays open, since something did answer.
    SynAckOnly,
    /// A SYN-ACK answered the SYN, on a host that answers SYN-ACK for random
    /// ports too, and the port was not verified: likely a proxy or firewall.
    SynAckWildcard,
    /// A UDP datagram answered the UDP probe (its payload passed the
    /// protocol's checks where it has an ID field).
    UdpReply,
    /// An ICMP port unreachable (type 3 code 3) or ICMPv6 port unreachable
    /// (type 1 code 4) answered a UDP probe: the host is there, nothing listens.
    PortUnreach,
    /// Nothing came back, from a host that rate-limits its ICMP errors or
    /// RSTs, and re-probing at the measured pace ran out of time: the port
    /// may be rejecting (or closed) with its answers swallowed by the limit.
    /// The state stays stealth, but unverified.
    NoResponseRateLimited,
}

impl Reason {
    /// The state this evidence implies.
    pub const fn state(self) -> PortState {
        match self {
            Reason::SynAck | Reason::Connected | Reason::SynAckOnly | Reason::SynAckWildcard => {
                PortState::Open
            }
            Reason::UdpReply => PortState::Open,
            Reason::Rst | Reason::ConnRefused | Reason::PortUnreach => PortState::Closed,
            Reason::Icmp { .. } | Reason::HostUnreachable | Reason::NetUnreachable => {
                PortState::Filtered
            }
            Reason::NoResponse | Reason::NoResponseRateLimited => PortState::Stealth,
        }
    }
}

impl fmt::Display for Reason {
    /// Honours width, fill and alignment, like [`PortState`]'s.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let icmp;
        f.pad(match self {
            Reason::SynAck => "syn-ack",
            Reason::Rst => "rst",
            Reason::Icmp {
                v6,
                icmp_type,
                code,
            } => {
                let v = if *v6 { "v6" } else { "" };
                icmp = format!("icmp{v}-{icmp_type}-{code}");
                &icmp
            }
            Reason::NoResponse => "no-response",
            Reason::Connected => "connected",
            Reason::ConnRefused => "conn-refused",
            Reason::HostUnreachable => "host-unreach",
            Reason::NetUnreachable => "net-unreach",
            Reason::SynAckOnly => "syn-ack-only",
            Reason::SynAckWildcard => "syn-ack-wildcard",
            Reason::UdpReply => "udp-reply",
            Reason::PortUnreach => "port-unreach",
            Reason::NoResponseRateLimited => "no-response-ratelimited",
        })
    }
}

impl FromStr for Reason {
    type Err = UnknownName;

    /// Inverts [`Reason`]'s `Display` exactly: `icmp-3-13`, `icmpv6-1-4`
    /// (decimal type and code, no sign, no leading zeros), and the fixed names.
    fn from_str(s: &str) -> Result<Reason, UnknownName> {
        const EXPECTED: &str = "syn-ack, rst, icmp-T-C, icmpv6-T-C, no-response, connected, \
             conn-refused, host-unreach, net-unreach, syn-ack-only, syn-ack-wildcard, \
             udp-reply, port-unreach or no-response-ratelimited";
        let bad = || UnknownName::new("reason", s, EXPECTED);
        Ok(match s {
            "syn-ack" => Reason::SynAck,
            "rst" => Reason::Rst,
            "no-response" => Reason::NoResponse,
            "connected" => Reason::Connected,
            "conn-refused" => Reason::ConnRefused,
            "host-unreach" => Reason::HostUnreachable,
            "net-unreach" => Reason::NetUnreachable,
            "syn-ack-only" => Reason::SynAckOnly,
            "syn-ack-wildcard" => Reason::SynAckWildcard,
            "udp-reply" => Reason::UdpReply,
            "port-unreach" => Reason::PortUnreach,
            "no-response-ratelimited" => Reason::NoResponseRateLimited,
            _ => {
                let (v6, rest) = if let Some(rest) = s.strip_prefix("icmpv6-") {
                    (true, rest)
                } else if let Some(rest) = s.strip_prefix("icmp-") {
                    (false, rest)
                } else {
                    return Err(bad());
                };
                let (t, c) = rest.split_once('-').ok_or_else(bad)?;
                Reason::Icmp {
                    v6,
                    icmp_type: canonical_u8(t).ok_or_else(bad)?,
                    code: canonical_u8(c).ok_or_else(bad)?,
                }
            }
        })
    }
}

/// A `u8` written as `Display` writes one: decimal digits only, no sign, no
/// leading zero, so parsing inverts printing and nothing else parses.
fn canonical_u8(s: &str) -> Option<u8> {
    let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let canonical = s == "0" || !s.starts_with('0');
    if digits && canonical {
        s.parse().ok()
    } else {
        None
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The result for one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PortResult {
    /// The address probed.
    pub target: IpAddr,
    /// The port probed.
    pub port: u16,
    /// Transport.
    pub proto: Transport,
    /// What came back.
    pub state: PortState,
    /// The evidence.
    pub reason: Reason,
    /// Round-trip time of the answered probe, when one was answered and its send time is known.
    #[serde(rename = "rtt_ms", serialize_with = "millis")]
    pub rtt: Option<Duration>,
    /// Probes sent to this port.
    pub tries: u8,
    /// TTL (IPv4) or hop limit (IPv6) of the reply, when one came and it is known.
    pub ttl: Option<u8>,
    /// TCP window of a SYN-ACK or RST answer (SYN mode): with the TTL, the
    /// signature that tells a proxy answering for every port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<u16>,
    /// The start of a UDP reply, kept as evidence of what answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
}

/// The first bytes of a reply's payload and its full length: enough to show
/// what answered (a DNS header, an SSDP status line) without holding the whole
/// datagram for every port.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Evidence {
    len: u32,
    kept: u8,
    head: [u8; Evidence::KEEP],
}

impl Evidence {
    /// Payload bytes kept.
    pub const KEEP: usize = 48;

    /// Evidence of a payload of `len` bytes whose first bytes are `data`
    /// (which may be shorter than `len` when the packet was truncated).
    pub fn new(data: &[u8], len: usize) -> Evidence {
        let kept = data.len().min(Self::KEEP);
        let mut head = [0u8; Self::KEEP];
        head[..kept].copy_from_slice(&data[..kept]);
        Evidence {
            len: u32::try_from(len).unwrap_or(u32::MAX),
            kept: kept as u8,
            head,
        }
    }

    /// The payload's full length in bytes.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True for an empty payload.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The kept first bytes.
    pub fn head(&self) -> &[u8] {
        &self.head[..usize::from(self.kept)]
    }
}

impl fmt::Debug for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Evidence({} bytes: {})", self.len, hex(self.head()))
    }
}

/// Lower-case hexadecimal.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Serialize for Evidence {
    /// `{"bytes": N, "head_hex": "…"}`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Evidence", 2)?;
        st.serialize_field("bytes", &self.len)?;
        st.serialize_field("head_hex", &hex(self.head()))?;
        st.end()
    }
}

fn millis<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&((d.as_secs_f64() * 1e6).round() / 1e3)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_classify_and_print() {
        let cases = [
            (Reason::SynAck, PortState::Open, "syn-ack"),
            (Reason::Rst, PortState::Closed, "rst"),
            (
                Reason::Icmp {
                    v6: false,
                    icmp_type: 3,
                    code: 13,
                },
                PortState::Filtered,
                "icmp-3-13",
            ),
            (
                Reason::Icmp {
                    v6: true,
                    icmp_type: 1,
                    code: 1,
                },
                PortState::Filtered,
                "icmpv6-1-1",
            ),
            (Reason::NoResponse, PortState::Stealth, "no-response"),
            (Reason::Connected, PortState::Open, "connected"),
            (Reason::ConnRefused, PortState::Closed, "conn-refused"),
            (Reason::HostUnreachable, PortState::Filtered, "host-unreach"),
            (Reason::NetUnreachable, PortState::Filtered, "net-unreach"),
            (Reason::SynAckOnly, PortState::Open, "syn-ack-only"),
            (Reason::SynAckWildcard, PortState::Open, "syn-ack-wildcard"),
            (Reason::UdpReply, PortState::Open, "udp-reply"),
            (Reason::PortUnreach, PortState::Closed, "port-unreach"),
            (
                Reason::NoResponseRateLimited,
                PortState::Stealth,
                "no-response-ratelimited",
            ),
        ];
        for (reason, state, text) in cases {
            assert_eq!(reason.state(), state);
            assert_eq!(reason.to_string(), text);
        }
    }

    /// Every reason there is: each fixed one, and ICMP over both families
    /// and the extremes of type and code.
    fn every_reason() -> Vec<Reason> {
        let mut all = vec![
            Reason::SynAck,
            Reason::Rst,
            Reason::NoResponse,
            Reason::Connected,
            Reason::ConnRefused,
            Reason::HostUnreachable,
            Reason::NetUnreachable,
            Reason::SynAckOnly,
            Reason::SynAckWildcard,
            Reason::UdpReply,
            Reason::PortUnreach,
            Reason::NoResponseRateLimited,
        ];
        // A new variant must be added here too: this match stops compiling.
        for r in &all {
            match r {
                Reason::SynAck
                | Reason::Rst
                | Reason::Icmp { .. }
                | Reason::NoResponse
                | Reason::Connected
                | Reason::ConnRefused
                | Reason::HostUnreachable
                | Reason::NetUnreachable
                | Reason::SynAckOnly
                | Reason::SynAckWildcard
                | Reason::UdpReply
                | Reason::PortUnreach
                | Reason::NoResponseRateLimited => {}
            }
        }
        for v6 in [false, true] {
            for (icmp_type, code) in [(0, 0), (3, 13), (1, 4), (3, 10), (255, 255), (9, 100)] {
                all.push(Reason::Icmp {
                    v6,
                    icmp_type,
                    code,
                });
            }
        }
        all
    }

    #[test]
    fn reasons_parse_back_from_their_display() {
        for r in every_reason() {
            let text = r.to_string();
            assert_eq!(text.parse::<Reason>(), Ok(r), "{text}");
        }
        // Every ICMP type and code of both families, not only a sample.
        for v6 in [false, true] {
            for icmp_type in 0..=u8::MAX {
                for code in 0..=u8::MAX {
                    let r = Reason::Icmp {
                        v6,
                        icmp_type,
                        code,
                    };
                    assert_eq!(r.to_string().parse::<Reason>(), Ok(r));
                }
            }
        }
    }

    #[test]
    fn text_that_no_reason_prints_is_refused() {
        for bad in [
            "",
            "SYN-ACK",
            "syn-ack ",
            "synack",
            "icmp",
            "icmp-",
            "icmp-3",
            "icmp-3-",
            "icmp--3",
            "icmp-3-13-1",
            "icmp-256-0",
            "icmp-3-256",
            "icmp-03-1",
            "icmp-+3-1",
            "icmp--1-1",
            "icmpv4-3-1",
            "icmpv6-1",
            "icmp-3-1x",
            "open",
        ] {
            let e = bad.parse::<Reason>().unwrap_err();
            assert_eq!((e.what, e.value.as_str()), ("reason", bad));
        }
        let long = "x".repeat(10_000);
        assert_eq!(long.parse::<Reason>().unwrap_err().value.len(), 64);
    }

    #[test]
    fn states_and_protocols_parse_back_from_their_display() {
        for st in PortState::ALL {
            assert_eq!(st.to_string().parse::<PortState>(), Ok(st));
        }
        for t in [Transport::Tcp, Transport::Udp] {
            assert_eq!(t.to_string().parse::<Transport>(), Ok(t));
        }
        assert_eq!(Transport::Tcp.to_string(), "tcp");
        for bad in ["", "Open", "opened", "unknown"] {
            let e = bad.parse::<PortState>().unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("unknown port state {bad:?}; expected open, closed, filtered or stealth")
            );
        }
        assert!("sctp".parse::<Transport>().is_err());
    }

    #[test]
    fn states_and_reasons_honour_width_in_tables() {
        assert_eq!(format!("{:<10}|", PortState::Open), "open      |");
        assert_eq!(format!("{:>8}|", PortState::Stealth), " stealth|");
        assert_eq!(format!("{:<14}|", Reason::SynAck), "syn-ack       |");
        let icmp = Reason::Icmp {
            v6: true,
            icmp_type: 1,
            code: 4,
        };
        assert_eq!(format!("{icmp:<12}|"), "icmpv6-1-4  |");
    }

    #[test]
    fn results_serialise_with_millisecond_rtt() {
        let r = PortResult {
            target: "198.18.0.2".parse().unwrap(),
            port: 22,
            proto: Transport::Tcp,
            state: PortState::Open,
            reason: Reason::SynAck,
            rtt: Some(Duration::from_micros(1234)),
            tries: 1,
            ttl: Some(64),
            window: None,
            evidence: None,
        };
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"rtt_ms\":1.234"), "{json}");
        assert!(json.contains("\"state\":\"open\""), "{json}");
        assert!(json.contains("\"reason\":\"syn-ack\""), "{json}");
        assert!(json.contains("\"proto\":\"tcp\""), "{json}");
        assert!(!json.contains("evidence"), "{json}");
    }

    #[test]
    fn evidence_keeps_the_head_and_the_full_length() {
        let data: Vec<u8> = (0..100u8).collect();
        let e = Evidence::new(&data, 1400);
        assert_eq!(e.len(), 1400);
        assert_eq!(e.head(), &data[..Evidence::KEEP]);
        let short = Evidence::new(b"\x12\x34", 2);
        assert_eq!(short.head(), b"\x12\x34");
        let json = serde_json::to_string(&short).unwrap();
        assert_eq!(json, r#"{"bytes":2,"head_hex":"1234"}"#);
    }
}
