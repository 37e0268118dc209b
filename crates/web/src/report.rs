//! The plain-text report: ports tested, counts per state, each state's ports
//! compressed into ranges, the watch and the verdict.

use std::fmt::Write as _;

use harbormaster_probe::compress_ranges;

use crate::db::StoredScan;
use crate::scans::{Verdict, test_label};

/// The report of a stored scan.
pub fn text(s: &StoredScan, v: &Verdict) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Harbormaster exposure report");
    let _ = writeln!(out, "Address:  {}", s.target);
    let _ = writeln!(
        out,
        "Test:     {} ({} ports: {})",
        test_label(&s.test),
        s.results.len(),
        s.ports
    );
    let _ = writeln!(out, "Mode:     {}", s.mode);
    let _ = writeln!(out, "Started:  {} (unix time)", s.created);
    let _ = writeln!(
        out,
        "Status:   {}",
        format!("{:?}", s.status).to_lowercase()
    );
    if let Some(e) = &s.error {
        let _ = writeln!(out, "Failed:   {e}");
    }
    let _ = writeln!(out);
    for state in ["open", "closed", "filtered", "stealth"] {
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
            format!("{state}:"),
            ports.len(),
            list
        );
    }
    let _ = writeln!(out);
    match &s.watch {
        Some(w) => {
            let _ = writeln!(
                out,
                "Ping:     {} echo request(s), {} reply(ies)",
                w.pings_sent, w.ping_replies
            );
            let _ = writeln!(out, "Unsolicited packets: {}", w.unsolicited);
            for e in &w.unsolicited_examples {
                let _ = writeln!(out, "  {e}");
            }
        }
        None => {
            let _ = writeln!(
                out,
                "Ping and unsolicited packets: not observed (connect mode)"
            );
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Verdict:  {}",
        if v.passed {
            "STEALTH — passed"
        } else {
            "not stealth"
        }
    );
    for f in &v.failures {
        let _ = writeln!(out, "  - {f}");
    }
    for u in &v.untested {
        let _ = writeln!(out, "  ? {u}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Status, StoredResult, StoredWatch};
    use crate::scans::verdict;

    fn result(port: u16, state: &str) -> StoredResult {
        StoredResult {
            port,
            state: state.into(),
            reason: "x".into(),
            rtt_ms: None,
            tries: 1,
            ttl: None,
        }
    }

    fn scan(results: Vec<StoredResult>, watch: Option<StoredWatch>) -> StoredScan {
        StoredScan {
            id: "id".into(),
            target: "198.51.100.9".into(),
            test: "common".into(),
            ports: "21-25".into(),
            mode: "syn".into(),
            status: Status::Done,
            created: 0,
            finished: Some(1),
            expires: 2,
            watch,
            results,
            error: None,
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
        let s = scan((21..=25).map(|p| result(p, "stealth")).collect(), quiet());
        let v = verdict(&s);
        assert!(v.passed, "{v:?}");
        let t = text(&s, &v);
        assert!(t.contains("stealth:      5  21-25"), "{t}");
        assert!(t.contains("open:         0  none"));
        assert!(t.contains("STEALTH — passed"));
    }

    #[test]
    fn each_criterion_can_fail() {
        let mut results: Vec<StoredResult> = (21..=25).map(|p| result(p, "stealth")).collect();
        results[1] = result(22, "open");
        let v = verdict(&scan(results, quiet()));
        assert!(!v.passed && v.failures[0].contains("1 open"), "{v:?}");

        let stealth: Vec<StoredResult> = (21..=25).map(|p| result(p, "stealth")).collect();
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
}
