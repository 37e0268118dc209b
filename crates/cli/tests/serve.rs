//! `harbormaster serve` end to end on test hosts: the real server binary in one
//! network namespace, a visitor with known open, closed, stealth and filtered
//! ports in another. The visitor loads the pages, consents, and the results and
//! verdict must match the truth. Needs root; skipped (with the reason) otherwise.

use std::io::Read;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use harbormaster_testnet::{TargetSpec, TestNet};
use serde_json::Value;

const SERVER: &str = "http://198.18.0.1:8080";

macro_rules! testnet_or_skip {
    ($spec:expr) => {
        match TestNet::create($spec) {
            Ok(net) => net,
            Err(skip) => {
                eprintln!("{skip}");
                return;
            }
        }
    };
}

struct Server {
    child: Child,
}

impl Server {
    fn start(net: &TestNet, data_dir: &std::path::Path) -> Server {
        let child = net
            .scanner_command(assert_cmd::cargo::cargo_bin("harbormaster"))
            .args([
                "serve",
                "--listen",
                "198.18.0.1:8080",
                "--allow-private",
                "--no-reverse-dns",
                "--mode",
                "syn",
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start harbormaster serve");
        let server = Server { child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if visit(net, |a| a.get(SERVER).call().is_ok()) {
                return server;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("server did not come up");
    }

    /// SIGTERM, then the exit status.
    fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = nix_pid(self.child.id());
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        let status = self.child.wait().unwrap();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        (status, err)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nix_pid(id: u32) -> String {
    // `ip netns exec` execs the server in place, so the child's pid is the server's.
    id.to_string()
}

/// Runs `f` with an HTTP client living in the visitor's namespace.
fn visit<R: Send + 'static>(
    net: &TestNet,
    f: impl FnOnce(&ureq::Agent) -> R + Send + 'static,
) -> R {
    harbormaster_testnet::TestNet::spawn_in(&net.target_ns, move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        f(&agent)
    })
    .join()
    .unwrap()
}

fn body(resp: ureq::http::Response<ureq::Body>) -> String {
    let mut resp = resp;
    resp.body_mut().read_to_string().unwrap()
}

/// Loads the start page, consents to `form`, returns the scan id.
fn consent(net: &TestNet, form: Vec<(&'static str, String)>) -> Result<String, (u16, String)> {
    visit(net, move |a| {
        let page = body(a.get(SERVER).call().unwrap());
        assert!(
            page.contains("198.18.0.2"),
            "the page shows the visitor's address"
        );
        let at = page.find("name=\"token\" value=\"").expect("consent form") + 20;
        let token = page[at..at + 48].to_string();
        let mut fields: Vec<(&str, String)> = vec![("token", token)];
        fields.extend(form);
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let resp = a.post(&format!("{SERVER}/scan")).send_form(pairs).unwrap();
        let status = resp.status().as_u16();
        if status != 303 {
            return Err((status, body(resp)));
        }
        let loc = resp.headers()["location"].to_str().unwrap().to_string();
        Ok(loc.trim_start_matches("/scan/").to_string())
    })
}

fn wait_done(net: &TestNet, id: &str) -> Value {
    let id = id.to_string();
    visit(net, move |a| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v: Value = serde_json::from_str(&body(
                a.get(&format!("{SERVER}/api/scans/{id}")).call().unwrap(),
            ))
            .unwrap();
            if v["scan"]["status"] != "running" {
                return v;
            }
            assert!(Instant::now() < deadline, "scan did not finish");
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

fn visitor() -> TargetSpec {
    TargetSpec {
        open: vec![22, 80, 443, 5000],
        dropped: vec![0, 23, 135, 139, 445, 1024, 1025, 21],
        filtered: vec![25, 110, 113, 1720],
        ..TargetSpec::default()
    }
}

fn check_results(spec: &TargetSpec, v: &Value) {
    for r in v["scan"]["results"].as_array().unwrap() {
        let port = r["port"].as_u64().unwrap() as u16;
        assert_eq!(r["state"], spec.truth(port), "port {port}: {r}");
    }
}

#[test]
fn a_visitor_runs_common_and_custom_tests_and_gets_the_truth() {
    let spec = visitor();
    let net = testnet_or_skip!(&spec);
    let dir = tempdir("serve-truth");
    let server = Server::start(&net, &dir);

    let id = consent(&net, vec![("kind", "common".into())]).unwrap();
    let v = wait_done(&net, &id);
    assert_eq!(v["scan"]["target"], "198.18.0.2");
    assert_eq!(v["scan"]["mode"], "syn");
    assert_eq!(v["scan"]["results"].as_array().unwrap().len(), 26);
    check_results(&spec, &v);
    assert_eq!(v["counts"]["open"], 4);
    assert_eq!(v["counts"]["filtered"], 4);
    assert_eq!(v["verdict"]["passed"], false);
    // The visitor's host answers ping; its own HTTP connection is not "unsolicited".
    assert_eq!(v["scan"]["watch"]["pings_sent"], 3);
    assert!(
        v["scan"]["watch"]["ping_replies"].as_u64().unwrap() >= 1,
        "{v}"
    );
    assert_eq!(v["scan"]["watch"]["unsolicited"], 0, "{v}");

    let id = consent(
        &net,
        vec![
            ("kind", "custom".into()),
            ("ports", "20-30,440-450,4990-5010".into()),
        ],
    )
    .unwrap();
    let v = wait_done(&net, &id);
    assert_eq!(v["scan"]["results"].as_array().unwrap().len(), 11 + 11 + 21);
    check_results(&spec, &v);

    // The pages render the finished test.
    let page = visit(&net, move |a| {
        body(a.get(&format!("{SERVER}/scan/{id}")).call().unwrap())
    });
    assert!(page.contains("Stealth: not passed") && page.contains("What your open ports expose"));
    let (status, _) = server.terminate();
    assert!(status.success());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_visitor_that_answers_nothing_passes() {
    let spec = TargetSpec {
        drop_all: true,
        ..TargetSpec::default()
    };
    let net = testnet_or_skip!(&spec);
    let dir = tempdir("serve-stealth");
    let _server = Server::start(&net, &dir);
    let id = consent(&net, vec![("kind", "common".into())]).unwrap();
    let v = wait_done(&net, &id);
    assert_eq!(v["counts"]["stealth"], 26, "{v}");
    assert_eq!(v["scan"]["watch"]["ping_replies"], 0);
    assert_eq!(v["scan"]["watch"]["unsolicited"], 0);
    assert_eq!(v["verdict"]["passed"], true, "{v}");
    let report = visit(&net, move |a| {
        body(
            a.get(&format!("{SERVER}/scan/{id}/report.txt"))
                .call()
                .unwrap(),
        )
    });
    assert!(report.contains("STEALTH — passed"), "{report}");
    drop(_server);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sigterm_cancels_running_tests_and_keeps_the_database_consistent() {
    let spec = TargetSpec {
        drop_all: true,
        ..TargetSpec::default()
    };
    let net = testnet_or_skip!(&spec);
    let dir = tempdir("serve-sigterm");
    let server = Server::start(&net, &dir);
    // A silent host keeps the service test running for over a second.
    let id = consent(&net, vec![("kind", "service".into())]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(15));
    // Restart on the same data: the test is stored as cancelled, its results intact.
    let server = Server::start(&net, &dir);
    let v = wait_done(&net, &id);
    assert_eq!(v["scan"]["status"], "cancelled", "{v}");
    let results = v["scan"]["results"].as_array().unwrap();
    assert!(results.len() < 1056);
    assert!(results.iter().all(|r| r["state"] == "stealth"));
    assert_eq!(
        v["verdict"]["passed"], false,
        "a cancelled test is never a pass"
    );
    drop(server);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_per_address_limit_answers_429_on_the_wire() {
    let spec = TargetSpec {
        drop_all: true,
        ..TargetSpec::default()
    };
    let net = testnet_or_skip!(&spec);
    let dir = tempdir("serve-429");
    let _server = Server::start(&net, &dir);
    let first = consent(&net, vec![("kind", "service".into())]).unwrap();
    let second = consent(&net, vec![("kind", "common".into())]).unwrap_err();
    assert_eq!(second.0, 429);
    assert!(second.1.contains(&first));
    drop(_server);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("hm-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
