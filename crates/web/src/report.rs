//! The plain-text report: ports tested, counts per state, each state's ports
//! compressed into ranges, the watch and the verdict.

use std::fmt::Write as _;

use harbormaster_probe::{PortState, ProbeMode, Protocol, compress_ranges};

use crate::db::{Status, StoredScan};
use crate::scans::{Verdict, plural};

/// Year, month, day, hour, minute, second (UTC) of unix seconds (the civil
/// calendar from days since 1970, as in Howard Hinnant's `civil_from_days`).
pub fn civil(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

/// A human date and time in UTC: `3 Dec 2026, 11:57 UTC`.
pub fn utc(secs: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, m, d, hh, mm, _) = civil(secs);
    format!("{d} {} {y}, {hh:02}:{mm:02} UTC", MONTHS[(m - 1) as usize])
}

/// How the server probed, in words.
fn method(mode: ProbeMode) -> &'static str {
    match mode {
        ProbeMode::Syn => "TCP SYN probes (connection requests that are never completed)",
        ProbeMode::Connect => "full TCP connections (no raw sockets on this server)",
        ProbeMode::Scripted => "scripted",
    }
}

/// The report of a stored scan.
pub fn text(s: &StoredScan, v: &Verdict) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Harbormaster exposure report");
    let _ = writeln!(out, "Address:  {}", s.target);
    let _ = writeln!(
        out,
        "Test:     {}",
        crate::scans::test_size(s.test, s.results.len())
    );
    let _ = writeln!(out, "Ports:    {}", s.ports);
    let udp = s.test.protocol() == Protocol::Udp;
    let how = match s.mode {
        ProbeMode::Syn if udp => {
            "UDP requests from raw sockets (silence: filtered or a silent service)"
        }
        ProbeMode::Connect if udp => {
            "UDP requests from an ordinary socket (silence: filtered or a silent service)"
        }
        m => method(m),
    };
    let _ = writeln!(out, "Method:   {how}");
    let _ = writeln!(out, "Started:  {}", utc(s.created));
    let status = match (s.status, s.finished) {
        (Status::Done, Some(f)) => format!(
            "finished in {}",
            plural(f.saturating_sub(s.created) as usize, "second", "seconds")
        ),
        _ => format!("{:?}", s.status).to_lowercase(),
    };
    let _ = writeln!(out, "Status:   {status}");
    if let Some(e) = &s.error {
        let _ = writeln!(out, "Failed:   {e}");
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "Result:   {}", v.headline);
    for f in &v.failures {
        let _ = writeln!(out, "  - {f}");
    }
    for u in &v.untested {
        let _ = writeln!(out, "  ? not judged: {u}");
    }
    let _ = writeln!(
        out,
        "Stealth:  {}",
        if v.passed {
            "passed (no port answered, no ping reply, nothing unsolicited)"
        } else {
            "not passed"
        }
    );
    let _ = writeln!(out);
    for state in PortState::ALL {
        let ports: Vec<u16> = s
            .results
            .iter()
            .filter(|r| r.state == state)
            .map(|r| r.port)
            .collect();
        let list = if ports.is_empty() {
            "none".to_string()
        } else {
            compress_ranges(&ports)
        };
        let _ = writeln!(
            out,
            "{:<9} {:>5}  {}",
            if udp && state == PortState::Stealth {
                "no reply:".to_string()
            } else {
                format!("{state}:")
            },
            ports.len(),
            list
        );
    }
    if !s.exposure.is_empty() {
        let _ = writeln!(
            out,
            "UDP exposure (each answering port asked again; sizes are UDP payload bytes):"
        );
        for x in &s.exposure {
            let _ = writeln!(
                out,
                "  {}/udp {}: {}",
                x.port,
                x.protocol,
                crate::udp::amplification_line(x)
            );
            for (name, value) in [
                ("SERVER", &x.server),
                ("LOCATION", &x.location),
                ("USN", &x.usn),
            ] {
                if let Some(v) = value {
                    let _ = writeln!(out, "    {name}: {v}");
                }
            }
            for f in &x.findings {
                let _ = writeln!(out, "    {f}");
            }
        }
    }
    let _ = writeln!(out);
    match &s.watch {
        Some(w) => {
            let _ = writeln!(
                out,
                "Ping:     {} answered of {} sent",
                w.ping_replies,
                plural(w.pings_sent as usize, "echo request", "echo requests")
            );
            let _ = writeln!(out, "Unsolicited packets: {}", w.unsolicited);
            for e in &w.unsolicited_examples {
                let _ = writeln!(out, "  {e}");
            }
        }
        None => {
            let _ = writeln!(
                out,
                "Ping and unsolicited packets: not watched (this server cannot, without raw sockets)"
            );
        }
    }
    if let Some(note) = &s.rate_limit {
        let _ = writeln!(out, "Rate limit: {note}");
    }
    if !v.not_tested.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "Not tested:");
        for n in &v.not_tested {
            let _ = writeln!(out, "  - {n}");
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "The address is usually your router's: an open port there is a port-forward,"
    );
    let _ = writeln!(
        out,
        "a UPnP mapping or a DMZ setting in the router passing connections inside."
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use harbormaster_probe::{PortList, Reason};

    use crate::db::{StoredResult, StoredWatch};
    use crate::scans::{TestKind, verdict};

    fn result(port: u16, state: PortState) -> StoredResult {
        StoredResult {
            port,
            proto: Protocol::Tcp,
            state,
            reason: match state {
                PortState::Open => Reason::SynAck,
                PortState::Closed => Reason::Rst,
                PortState::Filtered => Reason::HostUnreachable,
                PortState::Stealth => Reason::NoResponse,
            },
            rtt_ms: None,
            tries: 1,
            ttl: None,
        }
    }

    fn scan(results: Vec<StoredResult>, watch: Option<StoredWatch>) -> StoredScan {
        StoredScan {
            id: "id".into(),
            target: "198.51.100.9".into(),
            test: TestKind::Common,
            ports: PortList::parse("21-25").unwrap(),
            mode: ProbeMode::Syn,
            status: Status::Done,
            created: 0,
            finished: Some(1),
            expires: 2,
            watch,
            results,
            error: None,
            rate_limit: None,
            exposure: Vec::new(),
        }
    }

    fn quiet() -> Option<StoredWatch> {
        Some(StoredWatch {
            pings_sent: 3,
            ..StoredWatch::default()
        })
    }

    #[test]
    fn all_stealth_and_quiet_passes() {
        let s = scan(
            (21..=25).map(|p| result(p, PortState::Stealth)).collect(),
            quiet(),
        );
        let v = verdict(&s);
        assert!(v.passed, "{v:?}");
        let t = text(&s, &v);
        assert!(t.contains("stealth:      5  21-25"), "{t}");
        assert!(t.contains("open:         0  none"));
        assert!(
            t.contains("Result:   Nothing answered — your address looks invisible to this test"),
            "{t}"
        );
        assert!(t.contains("Stealth:  passed"), "{t}");
        assert!(t.contains("Started:  1 Jan 1970, 00:00 UTC"), "{t}");
        assert!(!t.contains("unix time") && !t.contains("reply(ies)"), "{t}");
        assert!(t.contains("Test:     Common Ports (5 ports)"), "{t}");
    }

    #[test]
    fn each_criterion_can_fail() {
        let mut results: Vec<StoredResult> =
            (21..=25).map(|p| result(p, PortState::Stealth)).collect();
        results[1] = result(22, PortState::Open);
        let v = verdict(&scan(results, quiet()));
        assert!(!v.passed && v.failures[0].contains("1 open"), "{v:?}");

        let stealth: Vec<StoredResult> = (21..=25).map(|p| result(p, PortState::Stealth)).collect();
        let pinged = Some(StoredWatch {
            pings_sent: 3,
            ping_replies: 3,
            ..StoredWatch::default()
        });
        let v = verdict(&scan(stealth.clone(), pinged));
        assert!(!v.passed && v.failures[0].contains("ping"), "{v:?}");

        let chatty = Some(StoredWatch {
            pings_sent: 3,
            unsolicited: 2,
            ..StoredWatch::default()
        });
        let v = verdict(&scan(stealth.clone(), chatty));
        assert!(!v.passed && v.failures[0].contains("unsolicited"), "{v:?}");

        let v = verdict(&scan(stealth, None));
        assert!(
            !v.passed && v.failures.is_empty() && v.untested[0].contains("connect mode"),
            "{v:?}"
        );
    }

    /// Issue 9 §3: silence that the address's rate limit explains must not
    /// pass, and the page and report say why.
    #[test]
    fn rate_limited_silence_does_not_pass() {
        let mut results: Vec<StoredResult> =
            (21..=25).map(|p| result(p, PortState::Stealth)).collect();
        results[2].reason = Reason::NoResponseRateLimited;
        results[3].reason = Reason::NoResponseRateLimited;
        let mut s = scan(results, quiet());
        s.rate_limit = Some(
            "this host limits its ICMP errors to about 1/s: 2 silent ports may be rejecting rather than silent".into(),
        );
        let v = verdict(&s);
        assert!(!v.passed, "{v:?}");
        assert!(
            v.failures[0].starts_with("2 silent ports could not be verified as stealth: this host limits its ICMP errors to about 1/s"),
            "{v:?}"
        );
        assert_eq!(v.tone, crate::scans::Tone::Fair);
        assert!(
            v.headline.starts_with("2 ports only looked stealth"),
            "{v:?}"
        );
        let t = text(&s, &v);
        assert!(
            t.contains("Rate limit: this host limits its ICMP errors to about 1/s"),
            "{t}"
        );
        // Without the note (an older row), the reasons alone still fail it.
        s.rate_limit = None;
        assert!(!verdict(&s).passed);
        // A limit whose silent ports were all resolved leaves a pass a pass.
        let mut s = scan(
            (21..=25).map(|p| result(p, PortState::Stealth)).collect(),
            quiet(),
        );
        s.rate_limit = Some("this host limits its ICMP errors to about 1/s; re-probing the 5 silent ports at 5 probes/s resolved 0 in 3.1 s, and the rest stayed silent while the limit had room".into());
        assert!(verdict(&s).passed);
    }

    #[test]
    fn dates_are_human_and_utc() {
        assert_eq!(utc(0), "1 Jan 1970, 00:00 UTC");
        // 2026-12-03 11:57:31 UTC.
        assert_eq!(utc(1_796_299_051), "3 Dec 2026, 11:57 UTC");
        // A leap day.
        assert_eq!(civil(951_782_400), (2000, 2, 29, 0, 0, 0));
    }

    #[test]
    fn headlines_lead_with_the_risk() {
        let mut results: Vec<StoredResult> =
            (21..=25).map(|p| result(p, PortState::Closed)).collect();
        let v = verdict(&scan(results.clone(), quiet()));
        assert_eq!(
            v.headline,
            "No port accepts connections — good; invisible (stealth) would be better"
        );
        assert_eq!(v.wider, Some(TestKind::Service));
        assert!(
            v.not_tested[0].contains("Only 5 ports of the 65,536"),
            "{v:?}"
        );
        results[0] = result(21, PortState::Open);
        let v = verdict(&scan(results.clone(), quiet()));
        assert_eq!(v.headline, "1 port accepts connections from the internet");
        results[1] = result(22, PortState::Open);
        let v = verdict(&scan(results, quiet()));
        assert_eq!(v.headline, "2 ports accept connections from the internet");
        assert_eq!(v.tone, crate::scans::Tone::Risk);
    }
}
