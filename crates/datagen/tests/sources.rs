//! The committed table against the committed sources.

use harbormaster_datagen::{IANA_CSV, OUTPUT_TSV, UPSTREAM_JSON, generate};

fn read(rel: &str) -> String {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../");
    std::fs::read_to_string(format!("{root}{rel}")).unwrap()
}

fn generated() -> harbormaster_datagen::Generated {
    generate(&read(IANA_CSV), &read(UPSTREAM_JSON)).unwrap()
}

/// The committed table must be exactly what the committed sources produce.
#[test]
fn committed_table_is_up_to_date() {
    assert!(
        generated().tsv == read(OUTPUT_TSV),
        "{OUTPUT_TSV} is stale: run `cargo run -p harbormaster-datagen`"
    );
}

/// Every pair where npm 8.0.35 (September 2026) says something none of the June
/// 2024 CSV rows says, reviewed one by one. All are plausible registry changes
/// between the two dates: new registrations (tacacss, ollama, roughtime, …),
/// de-assignments back to "Reserved" (compressnet 2–3, NETCONF over BEEP/SOAP
/// 831–833), renamed registrations
/// (pearldoc-xact → panquest-xact, fox-skytale → skytale, avi-nms → vision-mon,
/// pmcdproxy → pmproxy, qftest-licserve → qftest-lic-mcp), the two malformed 2024
/// service names with spaces fixed (3283, 3679), and description updates (rift
/// lost its TEMPORARY note, epp/udp is now EPP over QUIC). npm's row is used for
/// each. A new difference after a source update fails here until reviewed.
const REVIEWED_NPM_DIFFERENCES: &[&str] = &[
    "2/tcp: compressnet => (reserved)",
    "2/udp: compressnet => (reserved)",
    "3/tcp: compressnet => (reserved)",
    "3/udp: compressnet => (reserved)",
    "300/tcp: (unassigned) => tacacss",
    "300/udp: (unassigned) => (reserved)",
    "700/udp: epp => epp (description)",
    "831/tcp: netconf-beep => (reserved)",
    "831/udp: netconf-beep => (reserved)",
    "832/tcp: netconfsoaphttp => (reserved)",
    "832/udp: netconfsoaphttp => (reserved)",
    "833/tcp: netconfsoapbeep => (reserved)",
    "833/udp: netconfsoapbeep => (reserved)",
    "914/udp: rift-lies => rift-lies (description)",
    "915/udp: rift-ties => rift-ties (description)",
    "1325/tcp: dx-instrument => dx-instrument (description)",
    "1325/udp: dx-instrument => dx-instrument (description)",
    "1815/tcp: mmpft => mmpft (description)",
    "1815/udp: mmpft => mmpft (description)",
    "1980/tcp: pearldoc-xact => panquest-xact",
    "1980/udp: pearldoc-xact => panquest-xact",
    "2794/tcp: (unassigned) => urp",
    "2794/udp: (unassigned) => urp",
    "3283/tcp: Apple Remote Desktop (Net Assistant) => net-assistant",
    "3283/udp: Apple Remote Desktop (Net Assistant) => net-assistant",
    "3679/tcp: Escale (Newton Dock) => newton-dock",
    "3679/udp: Escale (Newton Dock) => newton-dock",
    "4319/tcp: fox-skytale => skytale",
    "4319/udp: fox-skytale => skytale",
    "4413/tcp: avi-nms => vision-mon",
    "4413/udp: avi-nms-disc => vision-mon-disc",
    "4480/tcp: (unassigned) => agtp",
    "4480/udp: (unassigned) => agtp-quic",
    "4503/tcp: (unassigned) => (reserved)",
    "4503/udp: (unassigned) => m-bus-oms",
    "4793/tcp: (unassigned) => (reserved)",
    "4793/udp: (unassigned) => uet",
    "4794/tcp: (unassigned) => (reserved)",
    "4794/udp: (unassigned) => veroce",
    "5319/tcp: (unassigned) => roughtime",
    "5319/udp: (unassigned) => roughtime",
    "5543/tcp: qftest-licserve => qftest-lic-mcp",
    "5914/tcp: (unassigned) => ipsdtls",
    "5914/udp: (unassigned) => ipsdtls",
    "6318/tcp: (unassigned) => iona-data",
    "6318/udp: (unassigned) => (reserved)",
    "6610/tcp: (unassigned) => bencher",
    "6610/udp: (unassigned) => bencher",
    "7123/tcp: snif => snif (description)",
    "7123/udp: (reserved) => snif",
    "7575/tcp: (unassigned) => wtmi-panel",
    "7575/udp: (unassigned) => (reserved)",
    "7668/tcp: (unassigned) => authoritygate",
    "7668/udp: (unassigned) => (reserved)",
    "9183/tcp: (unassigned) => sirius-agent",
    "9183/udp: (unassigned) => sirius-agent",
    "9986/tcp: (unassigned) => kaostransport",
    "9986/udp: (unassigned) => (reserved)",
    "11434/tcp: (unassigned) => ollama",
    "11434/udp: (unassigned) => (reserved)",
    "21337/tcp: (unassigned) => xahaud",
    "21337/udp: (unassigned) => (reserved)",
    "24601/tcp: (unassigned) => (reserved)",
    "24601/udp: (unassigned) => udpstp",
    "27016/tcp: (unassigned) => chlenix",
    "27016/udp: (unassigned) => (reserved)",
    "30939/tcp: (unassigned) => dilithium3",
    "30939/udp: (unassigned) => dilithium3",
    "34965/tcp: (unassigned) => profinet-cm-sec",
    "34965/udp: (unassigned) => profinet-cm-sec",
    "34966/tcp: (unassigned) => (reserved)",
    "34966/udp: (unassigned) => profinet-rt-sec",
    "44322/tcp: pmcdproxy => pmproxy",
    "44322/udp: pmcdproxy => pmproxy",
    "45185/tcp: (unassigned) => witsnet",
    "45185/udp: (unassigned) => witsnet",
];

#[test]
fn npm_differences_are_reviewed() {
    let found: Vec<String> = generated()
        .differences
        .iter()
        .map(ToString::to_string)
        .collect();
    let unexpected: Vec<&String> = found
        .iter()
        .filter(|d| !REVIEWED_NPM_DIFFERENCES.contains(&d.as_str()))
        .collect();
    let gone: Vec<&&str> = REVIEWED_NPM_DIFFERENCES
        .iter()
        .filter(|d| !found.iter().any(|f| f == **d))
        .collect();
    assert!(
        unexpected.is_empty() && gone.is_empty(),
        "unreviewed differences: {unexpected:#?}\nreviewed differences no longer found: {gone:#?}"
    );
    assert_eq!(found.len(), 76);
}

/// Ranges and transport-less rows, which npm drops, are all in the table.
#[test]
fn ranges_and_transportless_rows_resolve() {
    let tsv = generated().tsv;
    let has = |port: u16, proto: &str, name: &str| {
        tsv.lines().any(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            f.len() == 9 && f[0] == port.to_string() && f[1] == proto && f[3] == name
        })
    };
    for port in 6000..=6063 {
        assert!(has(port, "tcp", "x11") && has(port, "udp", "x11"), "{port}");
    }
    for port in 6665..=6669 {
        assert!(has(port, "tcp", "ircu"), "{port}");
    }
    for port in 27000..=27009 {
        assert!(has(port, "tcp", "flex-lm") && has(port, "udp", "flex-lm"));
    }
    assert!(has(7300, "tcp", "swx") && has(7359, "udp", "swx"));
    assert!(has(4200, "tcp", "vrml-multi-use") && has(4299, "udp", "vrml-multi-use"));
    assert!(has(3322, "tcp", "active-net") && has(3371, "udp", "satvid-datalnk"));
    assert!(has(6400, "tcp", "boe-cms") && has(6410, "udp", "boe-resssvr4"));
}

/// Pairs the npm data alone left "unassigned" that IANA's CSV assigns: 491 from
/// range registrations (x11, ircu, flex-lm, swx, vrml-multi-use, …, the figure
/// the issue reported) plus 22 from Business Objects' single-port rows 6400–6410,
/// which IANA writes without a transport and npm drops too.
#[test]
fn newly_assigned_pairs_are_counted() {
    let npm: serde_json::Value = serde_json::from_str(&read(UPSTREAM_JSON)).unwrap();
    let npm_assigned: std::collections::HashSet<(u16, String)> = npm
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| {
            let (n, d) = (v[0].as_str().unwrap(), v[1].as_str().unwrap());
            !n.is_empty() || !(d.starts_with("Unassigned") || d == "Reserved")
        })
        .filter_map(|(k, _)| {
            let (p, t) = k.split_once('/')?;
            Some((p.parse().ok()?, t.to_string()))
        })
        .collect();
    let newly: Vec<(u16, String)> = generated()
        .tsv
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .filter(|f| f[2] == "assigned")
        .map(|f| (f[0].parse().unwrap(), f[1].to_string()))
        .filter(|k| !npm_assigned.contains(k))
        .collect();
    let from_ranges = newly
        .iter()
        .filter(|(p, _)| !(6400..=6410).contains(p))
        .count();
    println!(
        "{} pairs newly assigned: {from_ranges} from ranges, {} from transport-less rows",
        newly.len(),
        newly.len() - from_ranges
    );
    assert_eq!((newly.len(), from_ranges), (513, 491));
}
