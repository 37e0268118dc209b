//! The IANA layer: ranges resolve, current names win over historic aliases, and
//! aliases, second registrations, references and unauthorized-use notes come through.

use harbormaster_knowledge::{Proto, Registration, entries, lookup};

fn both(port: u16) -> [harbormaster_knowledge::PortInfo; 2] {
    [lookup(port, Proto::Tcp), lookup(port, Proto::Udp)]
}

#[test]
fn range_registrations_are_assigned() {
    for port in 6000..=6063 {
        for info in both(port) {
            assert_eq!(info.registration, Registration::Assigned, "{port}");
            assert_eq!(info.iana_name, Some("x11"), "{port}");
        }
    }
    for port in 6665..=6669 {
        let info = lookup(port, Proto::Tcp);
        assert_eq!(
            (info.registration, info.iana_name),
            (Registration::Assigned, Some("ircu"))
        );
        assert_eq!(
            lookup(port, Proto::Udp).registration,
            Registration::Reserved
        );
    }
    for port in 27000..=27009 {
        assert!(both(port).iter().all(|i| i.iana_name == Some("flex-lm")));
    }
    assert_eq!(lookup(7300, Proto::Tcp).iana_name, Some("swx"));
    assert_eq!(lookup(4299, Proto::Udp).iana_name, Some("vrml-multi-use"));
    assert_eq!(lookup(6400, Proto::Udp).iana_name, Some("boe-cms"));
}

#[test]
fn current_names_first_historic_aliases_kept() {
    for (port, current, alias) in [
        (66, "sql-net", "sql*net"),
        (210, "z39-50", "z39.50"),
        (429, "ocs-amu", "ocs_amu"),
        (2222, "EtherNet-IP-1", "EtherNet/IP-1"),
        (44818, "EtherNet-IP-2", "EtherNet/IP-2"),
        (3050, "gds-db", "gds_db"),
        (6444, "sge-qmaster", "sge_qmaster"),
        (6445, "sge-execd", "sge_execd"),
    ] {
        for info in both(port) {
            assert_eq!(info.iana_name, Some(current), "{port}");
            assert_eq!(info.iana_aliases, [alias], "{port}");
            assert_eq!(info.name(), current, "{port}: page name");
            assert!(info.is_iana_name(alias));
        }
    }
    // The description no longer carries IANA's "replacement for" phrase.
    assert_eq!(
        lookup(66, Proto::Tcp).iana_description,
        Some("Oracle SQL*NET")
    );
    // `www` is a duplicate IANA says not to use for discovery.
    let http = lookup(80, Proto::Udp);
    assert_eq!(http.iana_name, Some("http"));
    assert_eq!(http.iana_aliases, ["www", "www-http"]);
    // No pair anywhere is named by a row IANA marks as a historic alias.
    for e in entries() {
        assert!(
            !e.iana_aliases.iter().any(|a| Some(*a) == e.iana_name),
            "{}",
            e.port_ref()
        );
    }
}

#[test]
fn second_registrations_are_listed() {
    for (port, proto, current, other) in [
        (2049, Proto::Tcp, "nfs", "shilp"),
        (3000, Proto::Tcp, "hbci", "remoteware-cl"),
        (9100, Proto::Tcp, "pdl-datastream", "hp-pdl-datastr"),
        (888, Proto::Tcp, "accessbuilder", "cddbp"),
        (1701, Proto::Udp, "l2tp", "l2f"),
        (42, Proto::Tcp, "nameserver", "name"),
    ] {
        let info = lookup(port, proto);
        assert_eq!(info.iana_name, Some(current), "{port}");
        assert!(info.iana_other_names.contains(&other), "{port}: {info:?}");
    }
}

#[test]
fn references_and_unauthorized_use_come_through() {
    assert_eq!(lookup(21, Proto::Tcp).iana_reference, Some("[RFC959]"));
    assert_eq!(
        lookup(6003, Proto::Tcp).iana_unauthorized_use,
        Some("Known Unauthorized Use on port 6003")
    );
    // The x11 range note names 6003 only; its neighbours do not get it.
    assert_eq!(lookup(6002, Proto::Tcp).iana_unauthorized_use, None);
    assert!(
        lookup(79, Proto::Tcp)
            .iana_unauthorized_use
            .is_some_and(|u| u.contains("RFC4146"))
    );
    // An unassigned port with a note is listed, still unassigned.
    let p100 = lookup(100, Proto::Tcp);
    assert_eq!(p100.registration, Registration::Unassigned);
    assert_eq!(
        p100.iana_unauthorized_use,
        Some("Known Unauthorized Use on 100")
    );
    let notes = entries()
        .filter(|e| e.iana_unauthorized_use.is_some())
        .count();
    assert!(
        notes > 300,
        "only {notes} pairs carry an unauthorized-use note"
    );
}

/// Rows IANA marks de-registered or removed are not assignments.
#[test]
fn deregistered_rows_are_unassigned() {
    assert_eq!(
        lookup(2905, Proto::Udp).registration,
        Registration::Unassigned
    );
    assert_eq!(lookup(2905, Proto::Tcp).iana_name, Some("m3ua"));
    assert_eq!(
        lookup(1895, Proto::Tcp).registration,
        Registration::Unassigned
    );
}

/// A curated entry's first name is what pages and search show as its service
/// name: it must be one of IANA's current names for the pair whenever IANA has
/// one (the primary or a second registration such as 999's `garcon`), never a
/// historic alias (`sql*net` for `sql-net`) or a label of ours.
#[test]
fn curated_names_start_with_a_current_iana_name() {
    let mut wrong = Vec::new();
    for info in entries() {
        let (Some(curated), Some(current)) = (info.curated, info.iana_name) else {
            continue;
        };
        let first = curated.names.first().copied();
        let ok = first.is_some_and(|f| f == current || info.iana_other_names.contains(&f));
        if !ok {
            wrong.push(format!(
                "{}/{}: names start with {first:?}; IANA's current names are {current:?} {:?}",
                info.port, info.proto, info.iana_other_names
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} entries:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn several_current_names_keep_the_assignment_first() {
    for (port, name) in [(4444, "krb524"), (3478, "stun"), (5349, "stuns")] {
        for info in both(port) {
            assert_eq!(info.iana_name, Some(name), "{port}/{}", info.proto);
        }
    }
    assert_eq!(lookup(631, Proto::Tcp).iana_name, Some("ipp"));
    assert!(lookup(631, Proto::Tcp).iana_other_names.contains(&"ipps"));
}
