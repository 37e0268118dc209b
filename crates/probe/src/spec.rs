//! The port-list grammar: `21`, `20-25`, `21,80,443`, `-` or `all` (0–65535), and
//! the presets `common` (ShieldsUP's 26 common ports) and `service` (0–1055).

use std::fmt;

/// The 26 ports of the "Common Ports" test.
pub const COMMON_PORTS: [u16; 26] = [
    0, 21, 22, 23, 25, 79, 80, 110, 113, 119, 135, 139, 143, 389, 443, 445, 1002, 1024, 1025, 1026,
    1027, 1028, 1029, 1030, 1720, 5000,
];

/// The UDP exposure list: the reflectors behind amplification attacks and the
/// discovery services that should never answer from the internet (echo,
/// QOTD, chargen, DNS, TFTP, portmapper, NTP, NetBIOS, SNMP, CLDAP, QUIC,
/// IKE, RIP, IPMI, OpenVPN, MS-SQL browser, SSDP, ARD, WS-Discovery, SIP,
/// mDNS, CoAP, Ubiquiti discovery, memcached).
pub const UDP_EXPOSURE_PORTS: [u16; 24] = [
    7, 17, 19, 53, 69, 111, 123, 137, 161, 389, 443, 500, 520, 623, 1194, 1434, 1900, 3283, 3702,
    5060, 5353, 5683, 10001, 11211,
];

/// The "service ports" preset: 0–1055, the 33 × 32 grid.
pub const SERVICE_PORTS: std::ops::RangeInclusive<u16> = 0..=1055;

/// A validated set of ports, kept sorted and without duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortList(Vec<u16>);

/// Why a port specification was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid port list {spec:?}: {why}; use e.g. 21, 20-25, 21,80,443, all, common or service")]
pub struct SpecError {
    /// The whole specification as given.
    pub spec: String,
    /// What was wrong with it.
    pub why: String,
}

/// Most characters a capped specification ([`PortList::parse_capped`]) may have.
pub const MAX_SPEC_CHARS: usize = 4096;

/// Most comma-separated items a capped specification may have.
pub const MAX_SPEC_ITEMS: usize = 512;

/// Why a port specification was rejected by [`PortList::parse_capped`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapError {
    /// The grammar was not followed.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The text itself is too long (checked before it is parsed).
    #[error(
        "that port list is {len} characters long; at most {max} are accepted (write runs of ports as ranges, e.g. 8000-8100)"
    )]
    TooLong {
        /// Characters given.
        len: usize,
        /// Characters allowed.
        max: usize,
    },
    /// Too many comma-separated items (checked before they are parsed).
    #[error(
        "that port list has {items} items; at most {max} are accepted (write runs of ports as ranges, e.g. 8000-8100)"
    )]
    TooManyItems {
        /// Items given.
        items: usize,
        /// Items allowed.
        max: usize,
    },
    /// Valid, but names more ports than the cap.
    #[error("that list has {count} ports; at most {cap} are allowed")]
    TooManyPorts {
        /// Distinct ports the list names.
        count: usize,
        /// The cap.
        cap: usize,
    },
}

impl PortList {
    /// Parses a specification. Items are separated by commas; each is a port, an
    /// inclusive range `A-B` (A ≤ B), `-`/`all`, `common` or `service`.
    ///
    /// Items are merged as ranges before any port is listed, so the result costs
    /// at most 65,536 ports however often the text repeats `all`.
    pub fn parse(spec: &str) -> Result<PortList, SpecError> {
        Ok(PortList::from_ranges(&ranges(spec)?))
    }

    /// How many distinct ports `spec` names, computed from its merged ranges
    /// without listing them. Equal to `PortList::parse(spec)?.len()`.
    pub fn count(spec: &str) -> Result<usize, SpecError> {
        Ok(count_ranges(&ranges(spec)?))
    }

    /// Parses untrusted input under limits: the text's length and item count
    /// are checked first, then the number of distinct ports is counted from
    /// merged ranges; only a list within `cap` is ever expanded.
    pub fn parse_capped(spec: &str, cap: usize) -> Result<PortList, CapError> {
        let len = spec.chars().count();
        if len > MAX_SPEC_CHARS {
            return Err(CapError::TooLong {
                len,
                max: MAX_SPEC_CHARS,
            });
        }
        let items = spec.split(',').count();
        if items > MAX_SPEC_ITEMS {
            return Err(CapError::TooManyItems {
                items,
                max: MAX_SPEC_ITEMS,
            });
        }
        let merged = ranges(spec)?;
        let count = count_ranges(&merged);
        if count > cap {
            return Err(CapError::TooManyPorts { count, cap });
        }
        Ok(PortList::from_ranges(&merged))
    }

    /// A list from sorted, disjoint ranges (what [`ranges`] returns).
    fn from_ranges(merged: &[(u16, u16)]) -> PortList {
        let mut ports = Vec::with_capacity(count_ranges(merged));
        for &(lo, hi) in merged {
            ports.extend(lo..=hi);
        }
        PortList(ports)
    }

    /// A list from arbitrary ports (sorted and deduplicated here).
    pub fn from_ports(mut ports: Vec<u16>) -> PortList {
        ports.sort_unstable();
        ports.dedup();
        PortList(ports)
    }

    /// The ports, ascending.
    pub fn ports(&self) -> &[u16] {
        &self.0
    }

    /// How many ports.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no ports (never the case for a parsed list).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for PortList {
    /// Compressed into ranges: `0-1055` or `21-23,80`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&compress_ranges(&self.0))
    }
}

/// Writes sorted ports as comma-separated runs, e.g. `21-23,80,443`.
pub fn compress_ranges(sorted: &[u16]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end.wrapping_add(1) && end != u16::MAX {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}-{end}"));
        }
        i += 1;
    }
    out
}

/// The specification as sorted, disjoint, non-adjacent inclusive ranges.
/// Allocates one entry per item at most (bounded by the text's length).
fn ranges(spec: &str) -> Result<Vec<(u16, u16)>, SpecError> {
    let fail = |why: String| SpecError {
        spec: spec.to_string(),
        why,
    };
    let trimmed = spec.trim();
    if trimmed.is_empty() {
        return Err(fail("it is empty".into()));
    }
    let mut items: Vec<(u16, u16)> = Vec::new();
    for item in trimmed.split(',') {
        let item = item.trim();
        if item.eq_ignore_ascii_case("-") || item.eq_ignore_ascii_case("all") {
            items.push((0, u16::MAX));
        } else if item.eq_ignore_ascii_case("common") {
            items.extend(COMMON_PORTS.iter().map(|&p| (p, p)));
        } else if item.eq_ignore_ascii_case("service") {
            items.push((*SERVICE_PORTS.start(), *SERVICE_PORTS.end()));
        } else if item.is_empty() {
            return Err(fail("it has an empty item".into()));
        } else {
            let (lo, hi) = match item.split_once('-') {
                Some((a, b)) => (port(a).map_err(&fail)?, port(b).map_err(&fail)?),
                None => {
                    let p = port(item).map_err(&fail)?;
                    (p, p)
                }
            };
            if lo > hi {
                return Err(fail(format!("range {lo}-{hi} runs backwards")));
            }
            items.push((lo, hi));
        }
    }
    items.sort_unstable();
    let mut merged: Vec<(u16, u16)> = Vec::with_capacity(items.len());
    for (lo, hi) in items {
        match merged.last_mut() {
            // Overlapping or adjacent (computed in u32: `hi + 1` may be 65536).
            Some(last) if u32::from(lo) <= u32::from(last.1) + 1 => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    Ok(merged)
}

fn count_ranges(merged: &[(u16, u16)]) -> usize {
    merged
        .iter()
        .map(|&(lo, hi)| usize::from(hi - lo) + 1)
        .sum()
}

fn port(s: &str) -> Result<u16, String> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?} is not a port number"));
    }
    s.parse()
        .map_err(|_| format!("port {s} is out of range 0-65535"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        assert_eq!(PortList::parse("21").unwrap().ports(), [21]);
        assert_eq!(
            PortList::parse("20-25").unwrap().ports(),
            [20, 21, 22, 23, 24, 25]
        );
        assert_eq!(
            PortList::parse("443, 80,21,80").unwrap().ports(),
            [21, 80, 443]
        );
        assert_eq!(PortList::parse("-").unwrap().len(), 65536);
        assert_eq!(PortList::parse("ALL").unwrap().len(), 65536);
        assert_eq!(PortList::parse("common").unwrap().len(), 26);
        let service = PortList::parse("service").unwrap();
        assert_eq!(service.len(), 1056);
        assert_eq!(service.to_string(), "0-1055");
        assert_eq!(
            PortList::parse("common,0-3").unwrap().ports()[..5],
            [0, 1, 2, 3, 21]
        );
        assert_eq!(PortList::parse("65535").unwrap().ports(), [65535]);
        assert_eq!(PortList::parse("0").unwrap().ports(), [0]);
    }

    #[test]
    fn rejects_bad_specs() {
        for bad in [
            "", " ", "65536", "-1", "1-", "-5", "5-1", "a", "21,,22", "1-2-3", "80x", "1.5",
        ] {
            let e = PortList::parse(bad).unwrap_err();
            assert!(e.to_string().contains("use e.g."), "{bad}: {e}");
        }
        assert!(
            PortList::parse("5-1")
                .unwrap_err()
                .why
                .contains("backwards")
        );
        assert!(
            PortList::parse("70000")
                .unwrap_err()
                .why
                .contains("out of range")
        );
    }

    /// What the fuzz target checks, over a deterministic corpus run by `cargo test`.
    #[test]
    fn arbitrary_text_never_panics_and_round_trips() {
        let alphabet = b"0123456789,- allcomnsrvice\t65535";
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let len = (x % 24) as usize;
            let text: String = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    alphabet[(x % alphabet.len() as u64) as usize] as char
                })
                .collect();
            let parsed = PortList::parse(&text);
            // Counting from merged ranges agrees with listing the ports.
            assert_eq!(
                PortList::count(&text).ok(),
                parsed.as_ref().ok().map(PortList::len),
                "{text:?}"
            );
            if let Ok(list) = parsed {
                assert!(list.ports().windows(2).all(|w| w[0] < w[1]), "{text:?}");
                assert_eq!(
                    PortList::parse(&list.to_string()).unwrap(),
                    list,
                    "{text:?}"
                );
                let cap = (x % 70_000) as usize;
                match PortList::parse_capped(&text, cap) {
                    Ok(capped) => {
                        assert!(list.len() <= cap, "{text:?}");
                        assert_eq!(capped, list, "{text:?}");
                    }
                    Err(CapError::TooManyPorts { count, .. }) => {
                        assert!(count > cap && count == list.len(), "{text:?}")
                    }
                    Err(e) => panic!("{text:?}: {e}"),
                }
            }
        }
    }

    #[test]
    fn capped_parsing_rejects_before_expanding() {
        // 40 KB of `all`: counted from one merged range.
        let huge = vec!["all"; 10_000].join(",");
        assert_eq!(PortList::count(&huge), Ok(65_536));
        assert_eq!(PortList::parse(&huge).unwrap().len(), 65_536);
        let e = PortList::parse_capped(&huge, 1024).unwrap_err();
        assert!(
            matches!(
                e,
                CapError::TooLong {
                    len: 39_999,
                    max: MAX_SPEC_CHARS
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("at most 4096"), "{e}");

        let many = vec!["1"; MAX_SPEC_ITEMS + 1].join(",");
        let e = PortList::parse_capped(&many, 1024).unwrap_err();
        assert!(matches!(e, CapError::TooManyItems { .. }), "{e}");
        assert!(e.to_string().contains("at most 512 are accepted"), "{e}");

        let e = PortList::parse_capped("1-2000,all", 1024).unwrap_err();
        assert_eq!(
            e,
            CapError::TooManyPorts {
                count: 65_536,
                cap: 1024
            }
        );
        assert_eq!(
            e.to_string(),
            "that list has 65536 ports; at most 1024 are allowed"
        );

        // Overlaps and adjacency count once.
        assert_eq!(PortList::count("1-10,5-20,21,common,service"), Ok(1056 + 2)); // 0-1055, 1720, 5000
        assert_eq!(PortList::count("65535,65534,0-65535"), Ok(65_536));
        let ok = PortList::parse_capped("80,443,8000-8009,80", 12).unwrap();
        assert_eq!(ok.len(), 12);
        assert!(matches!(
            PortList::parse_capped("80,x", 12),
            Err(CapError::Spec(SpecError { .. }))
        ));
        // Truncated input: every prefix of a valid spec parses or fails cleanly.
        let spec = "20-25,80,443,common,service,65535";
        for end in 0..=spec.len() {
            let _ = PortList::parse_capped(&spec[..end], 2000);
        }
    }

    #[test]
    fn ranges_compress() {
        assert_eq!(compress_ranges(&[]), "");
        assert_eq!(compress_ranges(&[1, 2, 3, 5, 7, 8]), "1-3,5,7-8");
        assert_eq!(compress_ranges(&[65534, 65535]), "65534-65535");
    }
}
