//! Storage faults of `harbormaster serve`, with the real binary in network
//! namespaces: a second server on the same data directory, SIGKILL in the middle
//! of a test, and a disk that fills up during one. Needs root; skipped (with
//! the reason) otherwise.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{SERVER, Server, body, tempdir, testnet_or_skip, visit};
use harbormaster_testnet::{TargetSpec, TestNet};
use serde_json::Value;

/// A visitor that answers nothing keeps a service test running for seconds.
/// (At the slower rate of [`SLOW`] its 1,056 ports take about 4 s.)
fn silent() -> TargetSpec {
    TargetSpec {
        drop_all: true,
        ..TargetSpec::default()
    }
}

/// Loads the start page, consents to the service test, returns the scan id.
fn start_service_test(net: &TestNet) -> String {
    visit(net, move |a| {
        let page = body(a.get(SERVER).call().unwrap());
        let at = page.find("name=\"token\" value=\"").expect("consent form") + 20;
        let token = page[at..at + 64].to_string();
        let resp = a
            .post(&format!("{SERVER}/scan"))
            .send_form([("token", token.as_str()), ("kind", "service")])
            .unwrap();
        assert_eq!(resp.status().as_u16(), 303, "{}", body(resp));
        let loc = resp.headers()["location"].to_str().unwrap().to_string();
        loc.trim_start_matches("/scan/").to_string()
    })
}

fn api(net: &TestNet, id: &str) -> Value {
    let url = format!("{SERVER}/api/scans/{id}");
    visit(net, move |a| {
        serde_json::from_str(&body(a.get(&url).call().unwrap())).unwrap()
    })
}

/// Sends the first try of every service port in about a second, so results
/// (stealth after the third try) arrive over a few seconds.
const SLOW: &[&str] = &["--max-rate", "1000"];

fn results(v: &Value) -> &Vec<Value> {
    v["scan"]["results"].as_array().unwrap()
}

/// Polls the API until the scan has `n` results or more (while running).
fn wait_for_results(net: &TestNet, id: &str, n: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = api(net, id);
        assert_eq!(v["scan"]["status"], "running", "{v}");
        if results(&v).len() >= n {
            return v;
        }
        assert!(Instant::now() < deadline, "no results arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_ended(net: &TestNet, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = api(net, id);
        if v["scan"]["status"] != "running" {
            return v;
        }
        assert!(Instant::now() < deadline, "scan did not end: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_second_server_on_the_same_data_dir_exits_2_and_leaves_the_first_alone() {
    let net = testnet_or_skip!(&silent());
    let dir = tempdir("storage-lock");
    let first = Server::start(&net, &dir);
    let id = start_service_test(&net);
    let mut out = net
        .scanner_command(assert_cmd::cargo::cargo_bin("harbormaster"))
        .args([
            "serve",
            "--listen",
            "198.18.0.1:8081",
            "--allow-private",
            "--no-reverse-dns",
            "--mode",
            "syn",
        ])
        .arg("--data-dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run a second server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while out.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = out.kill();
            let _ = out.wait();
            panic!("the second server kept running on the same data directory");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = out.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains(&dir.display().to_string()) && stderr.contains("--data-dir"),
        "{stderr}"
    );
    eprintln!("second server: {}", stderr.trim());
    // The first server's test was not marked interrupted; it runs to the end.
    let v = api(&net, &id);
    assert_eq!(v["scan"]["status"], "running", "{v}");
    let v = wait_ended(&net, &id);
    assert_eq!(v["scan"]["status"], "done", "{v}");
    assert_eq!(results(&v).len(), 1056);
    let (status, stderr) = first.terminate();
    assert!(status.success(), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sigkill_keeps_the_committed_results_and_the_scan_stays_syn_and_interrupted() {
    let spec = silent();
    let net = testnet_or_skip!(&spec);
    let dir = tempdir("storage-kill");
    let server = Server::start_with(&net, &dir, SLOW);
    let id = start_service_test(&net);
    std::thread::sleep(Duration::from_secs(1));
    let seen = results(&wait_for_results(&net, &id, 1)).len();
    // More than two flush periods: everything seen above must be committed.
    std::thread::sleep(Duration::from_millis(600));
    let at_kill = results(&api(&net, &id)).len();
    drop(server); // SIGKILL
    let server = Server::start(&net, &dir);
    let v = api(&net, &id);
    assert_eq!(v["scan"]["status"], "interrupted", "{v}");
    assert_eq!(v["scan"]["mode"], "syn", "{v}");
    let stored = results(&v);
    eprintln!(
        "SIGKILL: {seen} results seen 600 ms before the kill, {at_kill} at the kill, {} committed",
        stored.len()
    );
    assert!(!stored.is_empty());
    assert!(stored.len() >= seen, "{} < {seen}", stored.len());
    assert!(stored.len() < 1056, "the test was still running");
    for r in stored {
        assert_eq!(
            r["state"],
            spec.truth(r["port"].as_u64().unwrap() as u16),
            "{r}"
        );
    }
    assert_eq!(
        v["verdict"]["passed"], false,
        "an interrupted test never passes"
    );
    let (status, _) = server.terminate();
    assert!(status.success());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A small tmpfs mounted on a fresh directory; unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(name: &str, size: &str) -> Option<Tmpfs> {
        let dir = tempdir(name);
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let why = format!("cannot mount a tmpfs on {}", dir.display());
            if std::env::var("HARBORMASTER_REQUIRE_NETNS").is_ok_and(|v| v == "1") {
                panic!("HARBORMASTER_REQUIRE_NETNS=1 but {why}");
            }
            eprintln!("skipped: {why}");
            return None;
        }
        Some(Tmpfs(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// Writes zeros into a file until the file system is full; returns the bytes.
    fn fill(&self) -> usize {
        let mut f = std::fs::File::create(self.0.join("filler")).unwrap();
        let chunk = vec![0u8; 16 * 1024];
        let mut written = 0;
        // Bounded: the tmpfs is a few MB.
        for _ in 0..100_000 {
            match f.write(&chunk) {
                Ok(0) | Err(_) => return written,
                Ok(n) => written += n,
            }
        }
        panic!("the tmpfs never filled up");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_full_disk_ends_the_scan_failed_with_the_reason_and_the_server_keeps_serving() {
    let spec = silent();
    let net = testnet_or_skip!(&spec);
    let Some(disk) = Tmpfs::mount("storage-full", "4m") else {
        return;
    };
    let server = Server::start_with(&net, disk.path(), SLOW);
    let id = start_service_test(&net);
    wait_for_results(&net, &id, 1);
    let filled = disk.fill();
    eprintln!("filled the data dir's tmpfs with {filled} bytes");
    let v = wait_ended(&net, &id);
    assert_eq!(v["scan"]["status"], "failed", "{v}");
    let why = v["scan"]["error"].as_str().unwrap_or_default();
    assert!(why.contains("disk is full"), "{v}");
    let kept = results(&v);
    assert!(!kept.is_empty() && kept.len() < 1056, "{}", kept.len());
    assert!(kept.iter().all(|r| r["state"] == "stealth"));
    // The page shows the reason and does not reload; the service still answers.
    let page_url = format!("{SERVER}/scan/{id}");
    let (page, home) = visit(&net, move |a| {
        let page = body(a.get(&page_url).call().unwrap());
        let home = a.get(SERVER).call().unwrap().status().as_u16();
        (page, home)
    });
    assert!(page.contains("The test failed: the server"), "{page}");
    assert!(page.contains("disk is full"), "{page}");
    assert!(
        !page.contains("http-equiv=\"refresh\""),
        "no endless reload"
    );
    assert_eq!(home, 200);
    let report_url = format!("{SERVER}/scan/{id}/report.txt");
    let report = visit(&net, move |a| body(a.get(&report_url).call().unwrap()));
    assert!(
        report.contains("Failed:   the server's disk is full"),
        "{report}"
    );
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
}
