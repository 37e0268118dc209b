//! The port-list grammar: `21`, `20-25`, `21,80,443`, `-` or `all` (0–65535), and
//! the presets `common` (ShieldsUP's 26 common ports) and `service` (0–1055).

use std::fmt;

/// The 26 ports of the "Common Ports" test.
pub const COMMON_PORTS: [u16; 26] = [
    0, 21, 22, 23, 25, 79, 80, 110, 113, 119, 135, 139, 143, 389, 443, 445, 1002, 1024, 1025, 1026,
    1027, 1028, 1029, 1030, 1720, 5000,
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

impl PortList {
    /// Parses a specification. Items are separated by commas; each is a port, an
    /// inclusive range `A-B` (A ≤ B), `-`/`all`, `common` or `service`.
    pub fn parse(spec: &str) -> Result<PortList, SpecError> {
        let fail = |why: String| SpecError {
            spec: spec.to_string(),
            why,
        };
        let trimmed = spec.trim();
        if trimmed.is_empty() {
            return Err(fail("it is empty".into()));
        }
        let mut ports = Vec::new();
        for item in trimmed.split(',') {
            let item = item.trim();
            match item.to_ascii_lowercase().as_str() {
                "" => return Err(fail("it has an empty item".into())),
                "-" | "all" => ports.extend(0..=u16::MAX),
                "common" => ports.extend(COMMON_PORTS),
                "service" => ports.extend(SERVICE_PORTS),
                _ => {
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
                    ports.extend(lo..=hi);
                }
            }
        }
        Ok(PortList::from_ports(ports))
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
            if let Ok(list) = PortList::parse(&text) {
                assert_eq!(
                    PortList::parse(&list.to_string()).unwrap(),
                    list,
                    "{text:?}"
                );
            }
        }
    }

    #[test]
    fn ranges_compress() {
        assert_eq!(compress_ranges(&[]), "");
        assert_eq!(compress_ranges(&[1, 2, 3, 5, 7, 8]), "1-3,5,7-8");
        assert_eq!(compress_ranges(&[65534, 65535]), "65534-65535");
    }
}
