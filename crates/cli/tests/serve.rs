//! `harbormaster serve` end to end on test hosts: the real server binary in one
//! network namespace, a visitor with known open, closed, stealth and filtered
//! ports in another. The visitor loads the pages, consents, and the results and
//! verdict must match the truth. Needs root; skipped (with the reason) otherwise.

mod common;

use std::time::{Duration, Instant};

use common::{SERVER, SERVER6, Server, body, tempdir, testnet_or_skip, visit};
use harbormaster_testnet::{TargetSpec, TestNet};
use serde_json::Value;

/// Loads the start page, consents to `form`, returns the scan id.
fn consent(net: &TestNet, form: Vec<(&'static str, String)>) -> Result<String, (u16, String)> {
    consent_at(net, SERVER, "198.18.0.2", form)
}

/// [`consent`] on the server at `server`, for the visitor address `visitor`.
fn consent_at(
    net: &TestNet,
    server: &'static str,
    visitor: &'static str,
    form: Vec<(&'static str, String)>,
) -> Result<String, (u16, String)> {
    visit(net, move |a| {
        let page = body(a.get(server).call().unwrap());
        assert!(
            page.contains(visitor),
            "the page shows the visitor's address"
        );
        let at = page.find("name=\"token\" value=\"").expect("consent form") + 20;
        let token = page[at..].split('"').next().unwrap().to_string();
        let mut fields: Vec<(&str, String)> = vec![("token", token)];
        fields.extend(form);
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let resp = a.post(&format!("{server}/scan")).send_form(pairs).unwrap();
        let status = resp.status().as_u16();
        if status != 303 {
            return Err((status, body(resp)));
        }
        let loc = resp.headers()["location"].to_str().unwrap().to_string();
        Ok(loc.trim_start_matches("/scan/").to_string())
    })
}

fn wait_done(net: &TestNet, id: &str) -> Value {
    wait_done_at(net, SERVER, id)
}

fn wait_done_at(net: &TestNet, server: &'static str, id: &str) -> Value {
    let id = id.to_string();
    visit(net, move |a| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v: Value = serde_json::from_str(&body(
                a.get(&format!("{server}/api/scans/{id}")).call().unwrap(),
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
    // Results first: the risk-led verdict, the open ports as findings with
    // their first step, every port of the custom list as text.
    assert!(
        page.contains("<h2>3 ports accept connections from the internet</h2>"),
        "{page}"
    );
    assert!(page.contains("Custom ports (43 ports)"), "{page}");
    assert!(
        page.contains("<a href=\"/port/22\">Port 22 · ssh</a>") && page.contains("First step: ")
    );
    for p in (20..=30).chain(440..=450).chain(4990..=5010) {
        assert!(
            page.contains(&format!("<a href=\"/port/{p}\">{p}</a>")),
            "port {p}"
        );
    }
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
    assert!(
        report.contains("Result:   Nothing answered — your address looks invisible to this test"),
        "{report}"
    );
    assert!(report.contains("Stealth:  passed"), "{report}");
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

/// Knocks on `port` of the server from the visitor a few times (each a SYN the
/// server's watch sees; nothing listens there, so the kernel answers RST).
fn knock(net: &TestNet, port: u16) {
    visit(net, move |_| {
        for _ in 0..3 {
            let _ = std::net::TcpStream::connect_timeout(
                &std::net::SocketAddr::from(([198, 18, 0, 1], port)),
                Duration::from_millis(300),
            );
        }
    });
}

#[test]
fn a_public_port_of_a_same_host_proxy_is_not_unsolicited() {
    // A reverse proxy on the server's host (nginx on 443) is how visitors reach
    // the service: their packets to it are their page load. `--public-port`
    // says so; another port they touch still counts as unsolicited.
    let spec = TargetSpec {
        drop_all: true,
        ..TargetSpec::default()
    };
    let net = testnet_or_skip!(&spec);
    let dir = tempdir("serve-public-port");
    let server = Server::start_with(&net, &dir, &["--public-port", "9443", "--max-rate", "500"]);
    for (port, expect_unsolicited) in [(9443, false), (9444, true)] {
        let id = consent(&net, vec![("kind", "common".into())]).unwrap();
        knock(&net, port);
        let v = wait_done(&net, &id);
        let unsolicited = v["scan"]["watch"]["unsolicited"].as_u64().unwrap();
        assert_eq!(unsolicited > 0, expect_unsolicited, "port {port}: {v}");
        assert_eq!(
            v["verdict"]["passed"], !expect_unsolicited,
            "port {port}: {v}"
        );
    }
    drop(server);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An IPv6 visitor of a SYN-mode server gets a SYN-mode test, not connect
/// mode: raw IPv6 probes (filtered from ICMPv6 admin-prohibited), ICMPv6
/// pings answered, its own page loads not unsolicited, a knock on another
/// port of the server over IPv6 counted by the watch.
#[test]
fn an_ipv6_visitor_gets_a_syn_mode_test_with_ping_and_watch() {
    let spec = TargetSpec {
        ipv6: true,
        ..visitor()
    };
    let net = testnet_or_skip!(&spec);
    let dir = tempdir("serve-ipv6");
    let server = Server::start_at(&net, &dir, "[::]:8080", SERVER6, &[]);
    let visitor6 = "fd00:198:18::2";

    let id = consent_at(&net, SERVER6, visitor6, vec![("kind", "common".into())]).unwrap();
    let v = wait_done_at(&net, SERVER6, &id);
    assert_eq!(v["scan"]["target"], visitor6, "{v}");
    assert_eq!(v["scan"]["mode"], "syn", "{v}");
    assert_eq!(v["scan"]["status"], "done", "{v}");
    assert_eq!(v["scan"]["results"].as_array().unwrap().len(), 26);
    check_results(&spec, &v);
    for r in v["scan"]["results"].as_array().unwrap() {
        if r["state"] == "filtered" {
            assert_eq!(r["reason"], "icmpv6-1-1", "{r}");
        }
    }
    assert_eq!(v["counts"]["open"], 4);
    assert_eq!(v["counts"]["filtered"], 4);
    assert_eq!(v["scan"]["watch"]["pings_sent"], 3, "{v}");
    assert_eq!(v["scan"]["watch"]["ping_replies"], 3, "{v}");
    assert_eq!(v["scan"]["watch"]["unsolicited"], 0, "{v}");

    // Knocks on a closed port of the server, every 50 ms until the next test
    // ends, so some knocks surely fall while it watches however loaded the
    // machine is.
    let id = consent_at(&net, SERVER6, visitor6, vec![("kind", "common".into())]).unwrap();
    let knock_id = id.clone();
    let knocks = visit(&net, move |a| {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut knocks = 0;
        loop {
            let _ = std::net::TcpStream::connect_timeout(
                &"[fd00:198:18::1]:9444".parse().unwrap(),
                Duration::from_millis(300),
            );
            knocks += 1;
            let v: Value = serde_json::from_str(&body(
                a.get(&format!("{SERVER6}/api/scans/{knock_id}"))
                    .call()
                    .unwrap(),
            ))
            .unwrap();
            if v["scan"]["status"] != "running" || Instant::now() > deadline {
                return knocks;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let v = wait_done_at(&net, SERVER6, &id);
    assert_eq!(v["scan"]["mode"], "syn");
    let unsolicited = v["scan"]["watch"]["unsolicited"].as_u64().unwrap();
    assert!(
        unsolicited >= 1 && unsolicited <= knocks,
        "{knocks} knocks: {v}"
    );
    assert_eq!(v["verdict"]["passed"], false, "{v}");
    let (status, _) = server.terminate();
    assert!(status.success());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// With `--verify-open` the web service runs the same middlebox check as
/// `harbormaster scan`, through the same scanner: behind an nftables
/// synproxy every port answers SYN-ACK, and only the ports with a listener
/// hold a real connection. Without the flag nothing is verified (and the
/// start page promises no completed connection).
#[test]
fn verify_open_tells_a_synproxy_from_a_real_service() {
    let spec = TargetSpec {
        open: vec![21, 22, 80],
        banners: vec![(21, "220 hm-test ftp ready\r\n".into())],
        synproxy: true,
        ..TargetSpec::default()
    };
    let net = testnet_or_skip!(&spec);
    for verify in [false, true] {
        let dir = tempdir(&format!("serve-verify-{verify}"));
        let extra: &[&str] = if verify { &["--verify-open"] } else { &[] };
        let server = Server::start_with(&net, &dir, extra);
        let home = visit(&net, |a| body(a.get(SERVER).call().unwrap()));
        assert_eq!(
            home.contains("gets one ordinary connection"),
            verify,
            "the start page says whether open ports get a connection"
        );
        let id = consent(
            &net,
            vec![("kind", "custom".into()), ("ports", "1-100".into())],
        )
        .unwrap();
        let v = wait_done(&net, &id);
        let results = v["scan"]["results"].as_array().unwrap();
        assert_eq!(results.len(), 100, "{v}");
        for r in results {
            let port = r["port"].as_u64().unwrap() as u16;
            let want = if !verify || spec.open.contains(&port) {
                "syn-ack"
            } else {
                "syn-ack-only"
            };
            assert_eq!(
                (r["state"].as_str(), r["reason"].as_str()),
                (Some("open"), Some(want)),
                "verify {verify}, port {port}: {r}"
            );
        }
        if verify {
            let page = visit(&net, move |a| {
                body(a.get(&format!("{SERVER}/scan/{id}")).call().unwrap())
            });
            assert!(
                page.contains("a real connection was cut at once"),
                "the page says which ports only answered the SYN"
            );
        }
        let (status, _) = server.terminate();
        assert!(status.success());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Issue 9 §3: a visitor whose router rejects four common ports and drops
/// everything else, with Linux's default ICMP error limit. A Service test
/// right after a Common test shares the router's allowance; before, 2 to 4
/// of the rejected ports came out stealth, and with all four stealth the
/// verdict would have passed. Now the server finds the limit, re-probes at
/// its pace, and the test, its page and its report say what the router is.
#[test]
fn a_test_right_after_another_sees_through_the_routers_icmp_limit() {
    let rejected = [135u16, 139, 445, 1025];
    let spec = TargetSpec {
        filtered: rejected.to_vec(),
        dropped: (0..=1055u16).filter(|p| !rejected.contains(p)).collect(),
        kernel_icmp_limits: true,
        ..TargetSpec::default()
    };
    let net = testnet_or_skip!(&spec);
    // No ping answers either, so only the ports decide the verdict.
    net.add_target_rule("icmp type echo-request drop");
    let dir = tempdir("serve-ratelimit");
    let _server = Server::start(&net, &dir);
    let id = consent(&net, vec![("kind", "common".into())]).unwrap();
    let v = wait_done(&net, &id);
    assert_eq!(v["counts"]["filtered"], 4, "{v}");
    let started = Instant::now();
    let id = consent(&net, vec![("kind", "service".into())]).unwrap();
    let v = wait_done(&net, &id);
    eprintln!(
        "service test after the common test: {:.1} s, {}",
        started.elapsed().as_secs_f64(),
        v["scan"]["rate_limit"]
    );
    check_results(&spec, &v);
    assert_eq!(v["counts"]["filtered"], 4, "{v}");
    assert!(
        v["scan"]["rate_limit"]
            .as_str()
            .is_some_and(|n| n.starts_with("this host limits its ICMP errors to about 1/s")),
        "{v}"
    );
    assert_eq!(v["verdict"]["passed"], false, "{v}");
    let page = visit(&net, move |a| {
        body(a.get(&format!("{SERVER}/scan/{id}")).call().unwrap())
    });
    assert!(
        page.contains("Rate limit: </strong>This host limits its ICMP errors to about 1/s"),
        "{page}"
    );
    drop(_server);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The scan page of `id`, as the visitor loads it.
fn page_of(net: &TestNet, id: &str) -> String {
    let id = id.to_string();
    visit(net, move |a| {
        body(a.get(&format!("{SERVER}/scan/{id}")).call().unwrap())
    })
}

#[test]
fn a_visitor_running_miniupnpd_and_memcached_fails_the_upnp_and_udp_tests() {
    let net = testnet_or_skip!(&TargetSpec::default());
    let uuid = "7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f";
    let _miniupnpd = net.start_miniupnpd(uuid).expect("miniupnpd");
    let _memcached = net
        .start_memcached(harbormaster_testnet::TARGET_IP)
        .expect("memcached");
    let dir = tempdir("serve-udp");
    let server = Server::start(&net, &dir);

    // UPnP: the SSDP answer is stored with its headers and explained.
    let id = consent(&net, vec![("kind", "upnp".into())]).unwrap();
    let v = wait_done(&net, &id);
    assert_eq!(v["scan"]["status"], "done", "{v}");
    assert_eq!(v["scan"]["test"], "upnp");
    assert_eq!(v["scan"]["mode"], "syn");
    let r = &v["scan"]["results"][0];
    assert_eq!(
        (&r["port"], &r["proto"], &r["state"]),
        (&1900.into(), &"udp".into(), &"open".into()),
        "{v}"
    );
    let ssdp: Vec<&Value> = v["scan"]["exposure"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["protocol"] == "ssdp")
        .collect();
    assert!(!ssdp.is_empty(), "{v}");
    assert_eq!(
        ssdp[0]["location"], "http://198.18.0.2:5000/rootDesc.xml",
        "{v}"
    );
    assert!(
        ssdp[0]["server"].as_str().unwrap().contains("MiniUPnPd/"),
        "{v}"
    );
    // miniupnpd numbers its devices in the uuid's last digit.
    assert!(
        ssdp[0]["usn"]
            .as_str()
            .unwrap()
            .starts_with(&format!("uuid:{}", &uuid[..35])),
        "{v}"
    );
    assert!(ssdp[0]["reply_bytes"].as_u64().unwrap() > ssdp[0]["request_bytes"].as_u64().unwrap());
    assert_eq!(
        v["verdict"]["headline"],
        "Your device answered UPnP discovery from the internet"
    );
    assert_eq!(v["verdict"]["passed"], false);
    // miniupnpd's multicast NOTIFYs and IGMP reports go to groups, not to
    // the server: they are not unsolicited packets.
    assert_eq!(v["scan"]["watch"]["unsolicited"], 0, "{v}");
    let page = page_of(&net, &id);
    assert!(
        page.contains("<dt>LOCATION</dt>") && page.contains("http://198.18.0.2:5000/rootDesc.xml"),
        "{page}"
    );
    assert!(page.contains(">1900/udp</a>"), "{page}");

    // UDP exposure: memcached's stats answer, many times the request.
    let id = consent(&net, vec![("kind", "udp".into())]).unwrap();
    let v = wait_done(&net, &id);
    assert_eq!(v["scan"]["status"], "done", "{v}");
    let results = v["scan"]["results"].as_array().unwrap();
    assert_eq!(results.len(), harbormaster_probe::UDP_EXPOSURE_PORTS.len());
    let state = |port: u64| {
        results
            .iter()
            .find(|r| r["port"] == port)
            .map(|r| r["state"].as_str().unwrap().to_string())
    };
    assert_eq!(state(11211).as_deref(), Some("open"), "{v}");
    assert_eq!(state(1900).as_deref(), Some("open"), "{v}");
    // Ports nothing listens on refuse (the test host answers port unreachable).
    assert_eq!(state(161).as_deref(), Some("closed"), "{v}");
    let mc = v["scan"]["exposure"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["protocol"] == "memcached")
        .unwrap_or_else(|| panic!("no memcached finding: {v}"));
    let factor = mc["reply_bytes"].as_f64().unwrap() / mc["request_bytes"].as_f64().unwrap();
    assert!(factor > 10.0, "memcached amplification {factor}: {mc}");
    assert_eq!(
        v["verdict"]["headline"],
        "2 UDP ports answer requests from the internet"
    );
    let page = page_of(&net, &id);
    assert!(page.contains("href=\"/port/11211#udp\""), "{page}");
    assert!(page.contains("×)"), "{page}");
    let report = visit(&net, move |a| {
        body(
            a.get(&format!("{SERVER}/scan/{id}/report.txt"))
                .call()
                .unwrap(),
        )
    });
    assert!(report.contains("11211/udp memcached: "), "{report}");
    let (status, _) = server.terminate();
    assert!(status.success());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_visitor_without_upnp_gets_no_reply() {
    let spec = TargetSpec {
        drop_all: true,
        ..TargetSpec::default()
    };
    let net = testnet_or_skip!(&spec);
    let dir = tempdir("serve-no-upnp");
    let _server = Server::start(&net, &dir);
    let started = Instant::now();
    let id = consent(&net, vec![("kind", "upnp".into())]).unwrap();
    let v = wait_done(&net, &id);
    // Ten M-SEARCHes half a second apart: at least 4.5 s of asking.
    assert!(
        started.elapsed() >= Duration::from_millis(4500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(v["scan"]["status"], "done", "{v}");
    assert_eq!(v["scan"]["results"][0]["state"], "stealth", "{v}");
    assert_eq!(v["scan"]["results"][0]["tries"], 10, "{v}");
    assert_eq!(v["verdict"]["headline"], "No UPnP reply in 10 tries");
    assert_eq!(v["scan"]["exposure"], serde_json::json!([]));
    let page = page_of(&net, &id);
    assert!(
        page.contains("no reply: filtered or a silent service"),
        "{page}"
    );
    drop(_server);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_connect_mode_server_runs_the_udp_tests_as_the_exposure_step_alone() {
    let net = testnet_or_skip!(&TargetSpec::default());
    let uuid = "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e";
    let _miniupnpd = net.start_miniupnpd(uuid).expect("miniupnpd");
    let _memcached = net
        .start_memcached(harbormaster_testnet::TARGET_IP)
        .expect("memcached");
    let dir = tempdir("serve-udp-connect");
    let _server = Server::start_in_mode(&net, &dir, "connect", &[]);

    let id = consent(&net, vec![("kind", "upnp".into())]).unwrap();
    let v = wait_done(&net, &id);
    assert_eq!(v["scan"]["mode"], "connect", "{v}");
    assert_eq!(v["scan"]["status"], "done", "{v}");
    assert_eq!(v["scan"]["results"][0]["state"], "open", "{v}");
    assert_eq!(
        v["scan"]["exposure"][0]["location"], "http://198.18.0.2:5000/rootDesc.xml",
        "{v}"
    );
    assert_eq!(
        v["verdict"]["headline"],
        "Your device answered UPnP discovery from the internet"
    );

    // The reflector list: memcached answers; refusing ports read "no reply"
    // (an ordinary socket does not see ICMP, so nothing is called closed).
    let id = consent(&net, vec![("kind", "udp".into())]).unwrap();
    let v = wait_done(&net, &id);
    assert_eq!(v["scan"]["status"], "done", "{v}");
    let results = v["scan"]["results"].as_array().unwrap();
    let state = |port: u64| {
        results
            .iter()
            .find(|r| r["port"] == port)
            .map(|r| r["state"].as_str().unwrap().to_string())
    };
    assert_eq!(state(11211).as_deref(), Some("open"), "{v}");
    assert_eq!(state(161).as_deref(), Some("stealth"), "{v}");
    assert!(
        v["scan"]["exposure"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["protocol"] == "memcached" && x["reply_bytes"].as_u64() > Some(150)),
        "{v}"
    );
    drop(_server);
    std::fs::remove_dir_all(&dir).unwrap();
}
