//! Invariants of the compiled knowledge base. These fail when the data files drift:
//! unsorted or duplicate rows, curated text that is missing, thin or copied between
//! entries, related ports that lead nowhere.

use std::collections::{HashMap, HashSet};

use harbormaster_knowledge::{
    MatchField, PROMINENT_PORTS, PortRef, Proto, RangeClass, Registration, curated, entries,
    lookup, search,
};

/// The 26 ports of ShieldsUP's "Common Ports" test.
const COMMON_PORTS: [u16; 26] = [
    0, 21, 22, 23, 25, 79, 80, 110, 113, 119, 135, 139, 143, 389, 443, 445, 1002, 1024, 1025, 1026,
    1027, 1028, 1029, 1030, 1720, 5000,
];

#[test]
fn entries_are_sorted_and_unique() {
    let keys: Vec<(u16, Proto)> = entries().map(|e| (e.port, e.proto)).collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "entries out of order or duplicated"
    );
    let curated_keys: Vec<(u16, Proto)> = curated().map(|c| (c.port, c.proto)).collect();
    assert!(curated_keys.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn every_port_and_transport_resolves() {
    let listed: HashSet<(u16, Proto)> = entries().map(|e| (e.port, e.proto)).collect();
    let mut assigned = 0;
    for port in 0..=u16::MAX {
        for proto in Proto::ALL {
            let info = lookup(port, proto);
            assert_eq!((info.port, info.proto), (port, proto));
            assert_eq!(info.class, RangeClass::of(port));
            assert!(!info.name().is_empty() && !info.summary().is_empty());
            if !listed.contains(&(port, proto)) {
                assert_eq!(info.registration, Registration::Unassigned);
                assert!(info.curated.is_none() && info.iana_name.is_none());
            }
            if info.registration == Registration::Assigned {
                assigned += 1;
            }
        }
    }
    // The upstream data has 11,391 named TCP/UDP rows plus some nameless assignments.
    assert!(
        assigned > 11_000,
        "only {assigned} assigned port/transport pairs"
    );
}

#[test]
fn range_classes_follow_rfc_6335() {
    assert_eq!(RangeClass::of(0), RangeClass::System);
    assert_eq!(RangeClass::of(1023), RangeClass::System);
    assert_eq!(RangeClass::of(1024), RangeClass::User);
    assert_eq!(RangeClass::of(49151), RangeClass::User);
    assert_eq!(RangeClass::of(49152), RangeClass::Dynamic);
    assert_eq!(RangeClass::of(65535), RangeClass::Dynamic);
}

#[test]
fn iana_facts_come_through() {
    assert_eq!(lookup(22, Proto::Tcp).iana_name, Some("ssh"));
    assert_eq!(lookup(53, Proto::Udp).iana_name, Some("domain"));
    assert_eq!(lookup(0, Proto::Tcp).registration, Registration::Reserved);
    assert_eq!(lookup(4, Proto::Tcp).registration, Registration::Unassigned);
    assert_eq!(lookup(6379, Proto::Tcp).iana_name, Some("redis"));
}

#[test]
fn curated_fields_have_substance() {
    for c in curated() {
        let at = PortRef {
            port: c.port,
            proto: c.proto,
        };
        assert!(
            !c.title.is_empty() && !c.purpose.is_empty(),
            "{at}: empty title or purpose"
        );
        assert!(c.description.len() >= 200, "{at}: description too thin");
        assert!(c.security.len() >= 150, "{at}: security notes too thin");
        assert!(c.close.len() >= 100, "{at}: closing advice too thin");
        assert!(!c.protocols.is_empty(), "{at}: no protocols");
        // A curated entry goes without names only where IANA gives none either
        // (57, "any private terminal access"): no invented names.
        assert!(
            !c.names.is_empty() || lookup(c.port, c.proto).iana_name.is_none(),
            "{at}: no names although IANA has one"
        );
        for text in [c.description, c.security, c.close] {
            assert!(
                !text.to_lowercase().contains("lorem ipsum"),
                "{at}: filler text"
            );
            for word in text.split(|ch: char| !ch.is_alphanumeric()) {
                assert!(
                    !["TODO", "TBD", "FIXME", "XXX"].contains(&word),
                    "{at}: unfinished text ({word})"
                );
            }
        }
    }
}

#[test]
fn curated_texts_are_not_shared_between_entries() {
    let mut seen: HashMap<&str, PortRef> = HashMap::new();
    for c in curated() {
        let at = PortRef {
            port: c.port,
            proto: c.proto,
        };
        for text in [c.description, c.security, c.close] {
            if let Some(first) = seen.insert(text, at) {
                panic!("{at} repeats a text of {first}");
            }
        }
    }
}

#[test]
fn related_ports_lead_somewhere() {
    for c in curated() {
        for r in c.related {
            let target = lookup(r.port, r.proto);
            assert!(
                target.curated.is_some() || target.registration != Registration::Unassigned,
                "{}/{} lists {r}, which is neither registered nor curated",
                c.port,
                c.proto
            );
        }
    }
}

#[test]
fn common_ports_and_a_hundred_more_are_curated() {
    for port in COMMON_PORTS {
        assert!(
            lookup(port, Proto::Tcp).curated.is_some(),
            "common port {port}/tcp not curated"
        );
    }
    let ports: HashSet<u16> = curated().map(|c| c.port).collect();
    assert!(ports.len() >= 126, "only {} ports curated", ports.len());
}

fn top_ports(query: &str, n: usize) -> Vec<PortRef> {
    search(query)
        .unwrap()
        .iter()
        .take(n)
        .map(|h| h.info.port_ref())
        .collect()
}

#[test]
fn search_finds_what_people_ask_for() {
    let netbus = search("netbus").unwrap();
    assert_eq!(netbus[0].info.port_ref().to_string(), "12345/tcp");
    assert!(
        matches!(netbus[0].matched, MatchField::Malware | MatchField::Name),
        "{:?}",
        netbus[0].matched
    );
    assert!(netbus.iter().any(|h| h.matched == MatchField::Malware));
    assert!(top_ports("netbus", 5).iter().any(|r| r.port == 20034));

    assert_eq!(top_ports("remote desktop", 1)[0].to_string(), "3389/tcp");

    let sql = top_ports("sql", 15);
    for port in [1433, 3306, 5432] {
        assert!(
            sql.iter().any(|r| r.port == port),
            "sql search misses {port}: {sql:?}"
        );
    }
}

/// Issue 5: every port/transport IANA assigns in 0–1055 (the service-port grid)
/// has a curated entry.
#[test]
fn every_assigned_service_port_is_curated() {
    let missing: Vec<String> = entries()
        .filter(|e| e.port <= 1055 && e.registration == Registration::Assigned)
        .filter(|e| e.curated.is_none())
        .map(|e| e.port_ref().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "{} uncurated: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
}

#[test]
fn more_than_a_thousand_port_transport_pairs_are_curated() {
    let pairs = entries().filter(|e| e.curated.is_some()).count();
    assert!(pairs >= 1000, "only {pairs} curated port/transport pairs");
}

#[test]
fn shared_entries_describe_both_transports() {
    let mut shared = 0;
    for c in curated().filter(|c| c.both) {
        shared += 1;
        let tcp = lookup(c.port, Proto::Tcp).curated.unwrap();
        let udp = lookup(c.port, Proto::Udp).curated.unwrap();
        assert!(
            std::ptr::eq(tcp, udp) && std::ptr::eq(tcp, c),
            "{}: both transports share one entry",
            c.port
        );
    }
    assert!(shared > 0);
}

/// Where two ports that people meet every day name each other, the link goes
/// both ways (at the level of the port number).
#[test]
fn related_links_between_prominent_ports_are_reciprocal() {
    const PROMINENT: &[u16] = PROMINENT_PORTS;
    let mut one_way = Vec::new();
    for c in curated().filter(|c| PROMINENT.contains(&c.port)) {
        for r in c
            .related
            .iter()
            .filter(|r| PROMINENT.contains(&r.port) && r.port != c.port)
        {
            let back = Proto::ALL.iter().any(|&p| {
                lookup(r.port, p)
                    .curated
                    .is_some_and(|o| o.related.iter().any(|x| x.port == c.port))
            });
            if !back {
                one_way.push(format!("{}/{} -> {r}", c.port, c.proto));
            }
        }
    }
    assert!(one_way.is_empty(), "not reciprocal: {one_way:?}");
}
