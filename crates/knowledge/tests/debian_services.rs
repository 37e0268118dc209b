//! Debian's `/etc/services` (package netbase) against the knowledge base.
//!
//! The file is read from the system at test time rather than committed: netbase
//! is GPL-2 and this project is MIT/Apache-2.0, so a copy would have to carry
//! another licence. `scripts/deps.sh` installs netbase where it is missing; the
//! test fails (never skips) without the file. It was reviewed against netbase 6.4
//! (Debian 12); a newer netbase that changes an entry makes it fail until the
//! list below is reviewed again.
//!
//! An entry agrees when its name or one of its aliases is among the names the
//! knowledge base has for that port and transport: IANA's current name, its
//! historic aliases and other registrations, and the curated names.

use harbormaster_knowledge::{Proto, lookup};

const SERVICES: &str = "/etc/services";

/// Debian lists a program's customary port that IANA never assigned.
const UNASSIGNED_USE: &str = "Debian lists a customary port of a program (often a Debian package) that IANA left unassigned; the knowledge base reports IANA's status";
/// Debian lists a use of a port IANA keeps reserved.
const RESERVED_USE: &str = "Debian lists HylaFAX's fax port, which IANA keeps reserved";
/// Debian keeps a local convention on a port IANA assigned to someone else.
const LOCAL_USE: &str = "Debian keeps a use its packages rely on (Quagga/FRR daemons 2600-2608, Kerberos iprop, Zope, rplay, Canna, SKK, …) on a port IANA assigned to a different registrant; the knowledge base shows IANA's assignment";
/// Debian uses an older name for the same registration.
const OLD_NAME: &str = "Debian keeps an older name for the same registration (datametrics/old-radius before IANA's sightline on 1645; sip-tls before IANA's sips on 5061/udp)";
/// Debian names each X display; IANA names the range.
const X_DISPLAY: &str =
    "Debian numbers the X displays (x11-N for display :N); IANA's name for all of 6000-6063 is x11";

/// Every reviewed difference: "PORT/proto debian-name" and why it stays.
const ACCEPTED: &[(&str, &str)] = &[
    ("15/tcp netstat", UNASSIGNED_USE),
    ("1645/tcp datametrics", OLD_NAME),
    ("1645/udp datametrics", OLD_NAME),
    ("5061/udp sip-tls", OLD_NAME),
    ("6001/tcp x11-1", X_DISPLAY),
    ("6002/tcp x11-2", X_DISPLAY),
    ("6003/tcp x11-3", X_DISPLAY),
    ("6004/tcp x11-4", X_DISPLAY),
    ("6005/tcp x11-5", X_DISPLAY),
    ("6006/tcp x11-6", X_DISPLAY),
    ("6007/tcp x11-7", X_DISPLAY),
    ("7000/tcp bbs", LOCAL_USE),
    ("2121/tcp iprop", LOCAL_USE),
    ("871/tcp supfilesrv", UNASSIGNED_USE),
    ("1127/tcp supfiledbg", LOCAL_USE),
    ("779/udp moira-ureg", UNASSIGNED_USE),
    ("783/tcp spamd", UNASSIGNED_USE),
    ("1178/tcp skkserv", LOCAL_USE),
    ("1210/udp predict", LOCAL_USE),
    ("1236/tcp rmtcfg", LOCAL_USE),
    ("1313/tcp xtel", LOCAL_USE),
    ("1314/tcp xtelw", LOCAL_USE),
    ("2600/tcp zebrasrv", LOCAL_USE),
    ("2601/tcp zebra", LOCAL_USE),
    ("2602/tcp ripd", LOCAL_USE),
    ("2603/tcp ripngd", LOCAL_USE),
    ("2604/tcp ospfd", LOCAL_USE),
    ("2605/tcp bgpd", LOCAL_USE),
    ("2606/tcp ospf6d", LOCAL_USE),
    ("2607/tcp ospfapi", LOCAL_USE),
    ("2608/tcp isisd", LOCAL_USE),
    ("4557/tcp fax", RESERVED_USE),
    ("5555/udp rplay", LOCAL_USE),
    ("5667/tcp nsca", UNASSIGNED_USE),
    ("5680/tcp canna", LOCAL_USE),
    ("8021/tcp zope-ftp", LOCAL_USE),
    ("8081/tcp tproxy", LOCAL_USE),
    ("8088/tcp omniorb", LOCAL_USE),
    ("8990/tcp clc-build-daemon", LOCAL_USE),
    ("9098/tcp xinetd", UNASSIGNED_USE),
    ("9673/tcp zope", UNASSIGNED_USE),
    ("10081/tcp kamanda", LOCAL_USE),
    ("10082/tcp amandaidx", UNASSIGNED_USE),
    ("10083/tcp amidxtape", UNASSIGNED_USE),
    ("17001/udp sgi-cmsd", UNASSIGNED_USE),
    ("17002/udp sgi-crsd", UNASSIGNED_USE),
    ("17003/udp sgi-gcd", UNASSIGNED_USE),
    ("17004/tcp sgi-cad", UNASSIGNED_USE),
    ("27374/tcp asp", UNASSIGNED_USE),
    ("27374/udp asp", UNASSIGNED_USE),
    ("30865/tcp csync2", UNASSIGNED_USE),
    ("57000/tcp dircproxy", UNASSIGNED_USE),
    ("60177/tcp tfido", UNASSIGNED_USE),
    ("60179/tcp fido", UNASSIGNED_USE),
];

/// One `/etc/services` line: name, port, transport, aliases.
fn parse(line: &str) -> Option<(&str, u16, Proto, Vec<&str>)> {
    let line = line.split('#').next()?;
    let mut words = line.split_whitespace();
    let name = words.next()?;
    let (port, proto) = words.next()?.split_once('/')?;
    let proto = proto.parse().ok()?;
    Some((name, port.parse().ok()?, proto, words.collect()))
}

#[test]
fn every_difference_from_debian_is_explained() {
    let text = std::fs::read_to_string(SERVICES).unwrap_or_else(|e| {
        panic!("cannot read {SERVICES} ({e}): install netbase with scripts/deps.sh")
    });
    let mut entries = 0;
    let mut differences = Vec::new();
    for line in text.lines() {
        // sctp and ddp lines do not parse as tcp/udp and are outside the knowledge base.
        let Some((name, port, proto, aliases)) = parse(line) else {
            continue;
        };
        entries += 1;
        let info = lookup(port, proto);
        let ours: Vec<&str> = info
            .iana_names()
            .chain(info.curated.iter().flat_map(|c| c.names.iter().copied()))
            .collect();
        let agrees = std::iter::once(name)
            .chain(aliases.iter().copied())
            .any(|n| ours.iter().any(|o| o.eq_ignore_ascii_case(n)));
        if !agrees {
            differences.push(format!("{port}/{proto} {name}"));
        }
    }
    assert!(
        entries > 250,
        "only {entries} tcp/udp entries in {SERVICES}"
    );
    for d in &differences {
        let why = ACCEPTED.iter().find(|(k, _)| k == d).map(|(_, w)| *w);
        println!("{d}: {}", why.unwrap_or("NOT REVIEWED"));
    }
    let unexplained: Vec<&String> = differences
        .iter()
        .filter(|d| !ACCEPTED.iter().any(|(k, _)| k == d))
        .collect();
    let stale: Vec<&str> = ACCEPTED
        .iter()
        .map(|(k, _)| *k)
        .filter(|k| !differences.iter().any(|d| d == k))
        .collect();
    assert!(
        unexplained.is_empty() && stale.is_empty(),
        "differences from {SERVICES} not explained: {unexplained:?}\naccepted differences that no longer occur: {stale:?}"
    );
    println!(
        "{} of {entries} tcp/udp entries in {SERVICES} differ, all explained",
        differences.len()
    );
}

/// The spellings the issue named: Debian and the knowledge base now agree.
#[test]
fn debian_spellings_that_used_to_differ_agree() {
    let text = std::fs::read_to_string(SERVICES).expect("netbase installed");
    for (port, proto, name) in [
        (3050, Proto::Tcp, "gds-db"),
        (6444, Proto::Tcp, "sge-qmaster"),
        (6445, Proto::Tcp, "sge-execd"),
        (6000, Proto::Tcp, "x11"),
        (21, Proto::Udp, "fsp"),
        (775, Proto::Tcp, "moira-db"),
        (777, Proto::Tcp, "moira-update"),
    ] {
        assert!(
            text.lines()
                .filter_map(parse)
                .any(|(n, p, t, _)| (n, p, t) == (name, port, proto)),
            "{name} {port}/{proto} not in {SERVICES}"
        );
        let info = lookup(port, proto);
        let known =
            info.is_iana_name(name) || info.curated.is_some_and(|c| c.names.contains(&name));
        assert!(
            known,
            "{port}/{proto}: {name} unknown to the knowledge base"
        );
    }
}
