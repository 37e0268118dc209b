//! Runs the real `harbormaster` binary: text and JSON pages, search, export, and
//! the errors and exit codes a user sees.

use assert_cmd::Command;
use serde_json::Value;

fn hm() -> Command {
    Command::cargo_bin("harbormaster").unwrap()
}

fn stdout_of(args: &[&str]) -> String {
    let out = hm().args(args).output().unwrap();
    assert!(out.status.success(), "{args:?} failed: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `args`, expects a usage error, returns the single stderr line.
fn usage_error(args: &[&str]) -> String {
    let out = hm().args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{args:?}: not one line: {err:?}");
    assert!(err.starts_with("harbormaster: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn port_page_shows_both_transports_and_neighbours() {
    let page = stdout_of(&["port", "21"]);
    assert!(page.contains("← port 20 (ftp-data)"), "{page}");
    assert!(page.contains("port 22 (ssh) →"), "{page}");
    assert!(page.contains("21/tcp · ftp"));
    assert!(page.contains("21/udp · ftp"));
    assert!(page.contains("What runs here"));
    assert!(page.contains("nft add rule inet filter input tcp dport 21 drop"));
    assert!(page.contains("system port"));
}

#[test]
fn port_page_narrows_to_one_transport() {
    let tcp = stdout_of(&["port", "3389", "--tcp"]);
    assert!(tcp.contains("3389/tcp") && !tcp.contains("3389/udp ·"));
    let udp = stdout_of(&["port", "53", "--udp"]);
    assert!(udp.contains("53/udp") && !udp.contains("53/tcp ·"));
}

#[test]
fn neighbours_wrap_at_both_ends() {
    let zero = stdout_of(&["port", "0"]);
    assert!(zero.contains("← port 65535"), "{zero}");
    assert!(zero.contains("port 1 (tcpmux) →"), "{zero}");
    let top = stdout_of(&["port", "65535"]);
    assert!(top.contains("port 0 (reserved) →"), "{top}");
    assert!(top.contains("dynamic/private port"));
    assert!(top.contains("65535/tcp · unassigned"));
}

#[test]
fn port_json_is_structured() {
    let v: Value = serde_json::from_str(&stdout_of(&["port", "22", "--json"])).unwrap();
    assert_eq!(v["port"], 22);
    assert_eq!(v["previous"], 21);
    assert_eq!(v["next"], 23);
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["proto"], "tcp");
    assert_eq!(entries[0]["iana_name"], "ssh");
    assert_eq!(entries[0]["class"], "system");
    assert!(entries[0]["curated"]["security"].as_str().unwrap().len() > 100);
    assert_eq!(entries[1]["proto"], "udp");
    let one: Value = serde_json::from_str(&stdout_of(&["port", "22", "--json", "--udp"])).unwrap();
    assert_eq!(one["entries"].as_array().unwrap().len(), 1);
    assert_eq!(
        one["entries"][0]["closing_rules"]["ufw"],
        "ufw deny in 22/udp"
    );
}

#[test]
fn search_ranks_and_emits_json() {
    let text = stdout_of(&["search", "netbus"]);
    assert!(
        text.lines().next().unwrap().starts_with("12345/tcp"),
        "{text}"
    );
    let v: Value =
        serde_json::from_str(&stdout_of(&["search", "remote", "desktop", "--json"])).unwrap();
    assert_eq!(v[0]["info"]["port"], 3389);
    let limited: Value =
        serde_json::from_str(&stdout_of(&["search", "http", "--json", "-n", "3"])).unwrap();
    assert_eq!(limited.as_array().unwrap().len(), 3);
    let none = stdout_of(&["search", "zzzznotaservice"]);
    assert!(none.contains("No port matches"));
}

#[test]
fn export_json_covers_the_whole_base() {
    let out = hm().args(["db", "export"]).output().unwrap();
    let note = String::from_utf8(out.stderr).unwrap();
    assert!(note.contains("of them curated"), "{note}");
    let v: Value = serde_json::from_str(&stdout_of(&["db", "export"])).unwrap();
    let curated_note: usize = note
        .split_whitespace()
        .rev()
        .nth(3)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        v["counts"]["curated"].as_u64().unwrap() as usize,
        curated_note
    );
    assert_eq!(v["schema"], "harbormaster-kb/1");
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(
        v["counts"]["entries"].as_u64().unwrap() as usize,
        entries.len()
    );
    assert!(entries.len() > 12_000);
    let curated = entries.iter().filter(|e| !e["curated"].is_null()).count();
    assert_eq!(v["counts"]["curated"].as_u64().unwrap() as usize, curated);
    assert!(curated >= 1000);
    let ssh = entries
        .iter()
        .find(|e| e["port"] == 22 && e["proto"] == "tcp")
        .unwrap();
    for key in [
        "title",
        "names",
        "protocols",
        "purpose",
        "description",
        "security",
        "close",
        "related",
        "references",
        "malware",
    ] {
        assert!(!ssh["curated"][key].is_null(), "missing {key}");
    }
}

#[test]
fn export_csv_has_header_and_one_row_per_entry() {
    let csv = stdout_of(&["db", "export", "--format", "csv"]);
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header[..4], ["port", "proto", "class", "registration"]);
    assert_eq!(header.len(), 23);
    assert_eq!(
        header[17..],
        [
            "iana_aliases",
            "iana_other_names",
            "iana_reference",
            "iana_unauthorized_use",
            "tags",
            "reviewed"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert!(rows.len() > 12_000);
    let ftp = rows
        .iter()
        .find(|r| &r[0] == "21" && &r[1] == "tcp")
        .unwrap();
    assert_eq!(&ftp[6], "true");
    assert!(
        ftp[8].split("; ").any(|n| n == "ftp"),
        "names column: {:?}",
        &ftp[8]
    );
    assert!(ftp[11].len() >= 200, "description column too short");
    let unassigned_curated = rows
        .iter()
        .filter(|r| &r[6] == "false" && !r[7].is_empty())
        .count();
    assert_eq!(
        unassigned_curated, 0,
        "curated columns filled for an uncurated row"
    );
    let sql_net = rows
        .iter()
        .find(|r| &r[0] == "66" && &r[1] == "tcp")
        .unwrap();
    assert_eq!((&sql_net[4], &sql_net[17]), ("sql-net", "sql*net"));
    let x11 = rows
        .iter()
        .find(|r| &r[0] == "6003" && &r[1] == "udp")
        .unwrap();
    assert_eq!(&x11[20], "Known Unauthorized Use on port 6003");
}

/// Issue 11: range registrations resolve, the current IANA name heads the
/// page, and aliases, references and unauthorized-use notes are shown.
#[test]
fn port_page_shows_the_full_iana_registration() {
    let x11 = stdout_of(&["port", "6000"]);
    assert!(x11.contains("6000/tcp · x11"), "{x11}");
    assert!(x11.contains("6000/udp · x11"), "{x11}");
    assert!(!x11.contains("unassigned"), "{x11}");
    let irc = stdout_of(&["port", "6666", "--tcp"]);
    assert!(irc.contains("IANA          ircu: IRCU"), "{irc}");
    let x3 = stdout_of(&["port", "6003", "--tcp"]);
    assert!(
        x3.contains("Unauthorized  IANA records unauthorized use: Known Unauthorized Use on port"),
        "{x3}"
    );
    let sql = stdout_of(&["port", "66", "--tcp"]);
    assert!(sql.contains("66/tcp · sql-net"), "{sql}");
    assert!(sql.contains("IANA aliases  sql*net (historic"), "{sql}");
    let ftp = stdout_of(&["port", "21", "--tcp"]);
    assert!(ftp.contains("IANA ref      [RFC959]"), "{ftp}");
    assert!(ftp.contains("Reviewed      "), "{ftp}");
    let nfs = stdout_of(&["port", "2049", "--tcp"]);
    assert!(nfs.contains("IANA also     shilp"), "{nfs}");
    let v: Value = serde_json::from_str(&stdout_of(&["port", "66", "--json"])).unwrap();
    assert_eq!(v["entries"][0]["iana_name"], "sql-net");
    assert_eq!(v["entries"][0]["iana_aliases"][0], "sql*net");
    let v: Value = serde_json::from_str(&stdout_of(&["port", "6003", "--json", "--tcp"])).unwrap();
    assert_eq!(
        v["entries"][0]["iana_unauthorized_use"],
        "Known Unauthorized Use on port 6003"
    );
    assert!(v["entries"][0]["iana_reference"].is_null());
}

/// Ports IANA assigns without a service name are not given one of ours.
#[test]
fn nameless_assignments_print_no_invented_name() {
    for port in ["24", "35", "57", "59", "75", "77", "87"] {
        let page = stdout_of(&["port", port, "--tcp"]);
        let heading = page.lines().nth(3).unwrap();
        assert!(!heading.contains("private-"), "{port}: {heading}");
        assert!(
            page.contains("IANA          no service name: any private"),
            "{port}: {page}"
        );
    }
}

#[test]
fn search_by_tag() {
    let all = stdout_of(&["search", "--tag", "printing"]);
    assert!(all.lines().any(|l| l.starts_with("9100/tcp")), "{all}");
    // A tag listing is not cut at the default 20 results.
    let legacy = stdout_of(&["search", "--tag", "legacy", "--json"]);
    let legacy: Value = serde_json::from_str(&legacy).unwrap();
    let tagged = harbormaster_knowledge::entries()
        .filter(|e| e.curated.is_some_and(|c| c.tags.contains(&"legacy")))
        .count();
    assert!(
        tagged > 20,
        "only {tagged} legacy entries: the check needs more than 20"
    );
    assert_eq!(legacy.as_array().unwrap().len(), tagged);
    let v: Value = serde_json::from_str(&stdout_of(&[
        "search",
        "--tag",
        "file-sharing",
        "--json",
        "-n",
        "0",
    ]))
    .unwrap();
    let hits = v.as_array().unwrap();
    assert!(hits.iter().all(|h| h["matched"] == "tag"));
    for port in [21, 2049] {
        assert!(hits.iter().any(|h| h["info"]["port"] == port), "{port}");
        assert!(hits.iter().all(|h| {
            h["info"]["curated"]["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t == "file-sharing")
        }));
    }
    let ftp = stdout_of(&["search", "ftp", "--tag", "file-sharing"]);
    assert!(ftp.lines().next().unwrap().starts_with("21/tcp"), "{ftp}");
    let none = stdout_of(&["search", "ssh", "--tag", "printing"]);
    assert!(
        none.contains("No port matches \"ssh\" with tag \"printing\""),
        "{none}"
    );
    let err = usage_error(&["search", "--tag", "scada"]);
    assert!(
        err.contains("unknown tag \"scada\"") && err.contains("ics"),
        "{err}"
    );
}

#[test]
fn bad_input_is_a_one_line_usage_error() {
    assert!(usage_error(&["port", "65536"]).contains("0–65535"));
    assert!(usage_error(&["port", "-1"]).contains("0–65535"));
    assert!(usage_error(&["port", "abc"]).contains("0 to 65535"));
    assert!(usage_error(&["port"]).contains("<PORT>"));
    assert!(usage_error(&["port", "21", "--tcp", "--udp"]).contains("cannot be used with"));
    assert!(usage_error(&["search", ""]).contains("empty search"));
    assert!(usage_error(&["search", "   "]).contains("empty search"));
    assert!(usage_error(&["db", "export", "--format", "xml"]).contains("json, csv"));
    assert!(usage_error(&["frobnicate"]).contains("frobnicate"));
    for bad in ["31", "129", "x"] {
        let e = usage_error(&["serve", "--ipv6-prefix", bad]);
        assert!(
            e.contains("--ipv6-prefix") && e.contains("32 to 128"),
            "{e}"
        );
    }
}

#[test]
fn help_and_version_succeed() {
    assert!(stdout_of(&["--help"]).contains("port"));
    assert!(stdout_of(&["--version"]).starts_with("harbormaster "));
}

#[test]
fn serve_names_the_valid_proxy_headers() {
    let err = usage_error(&["serve", "--proxy-header", "x-client-ip"]);
    assert!(
        err.contains("x-client-ip") && err.contains("x-forwarded-for, forwarded, x-real-ip"),
        "{err}"
    );
}
