//! `harbormaster serve` behind a real nginx (Debian's, installed by
//! scripts/deps.sh), tried as an attacker would (issue 8). Five hosts on one
//! bridge: the server, the proxy, an attacker, a victim and an honest visitor.
//! nftables counters in the victim and the proxy count every packet that
//! arrives from the server (apart from the replies on nginx's own upstream
//! connections); every spoofing variant must leave both at zero and end in a
//! refusal or in a probe of the attacker itself. Needs root; skipped (with the
//! reason) otherwise, and a failure as root under HARBORMASTER_REQUIRE_NETNS=1.
//!
//! Against the server as it was before issue 8 was fixed, the first case
//! (`Forwarded: for=<victim>`) probed the victim (1 SYN and 3 pings), the
//! non-ASCII and passthrough cases probed nginx (4 packets each, 28 in all),
//! and the address added after start-up was not refused.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Server, body, tempdir, visit_from};
use harbormaster_testnet::{Lan, Nginx};
use serde_json::Value;

const HOSTS: [&str; 5] = ["server", "proxy", "attacker", "victim", "visitor"];
const SERVER_PORT: u16 = 8080;

/// nginx as the README's deployment section configures it: X-Forwarded-For
/// appended to (`$proxy_add_x_forwarded_for`), every other client header
/// passed through untouched, as nginx does by default.
fn nginx_standard(proxy: &str, server: &str) -> String {
    format!(
        "  server {{
    listen {proxy}:80;
    location / {{
      proxy_pass http://{server}:{SERVER_PORT};
      proxy_http_version 1.1;
      proxy_buffering off;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}
"
    )
}

/// A careless nginx on port 81 that passes the client's own X-Forwarded-For
/// on unchanged: the header is entirely the client's, so this is where
/// `for=<proxy>`, `unknown`, garbage and a missing header reach the server.
fn nginx_passthrough(proxy: &str, server: &str) -> String {
    format!(
        "  server {{
    listen {proxy}:81;
    location / {{
      proxy_pass http://{server}:{SERVER_PORT};
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $http_x_forwarded_for;
    }}
  }}
"
    )
}

/// The test hosts, nginx and the server, torn down in reverse order on drop.
struct Deployment {
    _server: Server,
    nginx: Nginx,
    lan: Lan,
    dir: std::path::PathBuf,
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Deployment {
    /// Hosts, counters, nginx with `http` and the server with `--proxy-header
    /// <header>`; `None` (after printing why) when the tests cannot run here.
    fn start(name: &str, header: &str, http: impl Fn(&str, &str) -> String) -> Option<Deployment> {
        let lan = match Lan::create(&HOSTS) {
            Ok(lan) => lan,
            Err(skip) => {
                eprintln!("{skip}");
                return None;
            }
        };
        let (server, proxy) = (lan.host("server").clone(), lan.host("proxy").clone());
        lan.count_from("victim", &server, SERVER_PORT).unwrap();
        lan.count_from("proxy", &server, SERVER_PORT).unwrap();
        let conf = http(&proxy.ip.to_string(), &server.ip.to_string());
        let nginx = match Nginx::start(&lan, "proxy", &conf, SocketAddr::from((proxy.ip, 80))) {
            Ok(n) => n,
            Err(why) => {
                eprintln!("skipped: {why}");
                return None;
            }
        };
        let dir = tempdir(&format!("proxy-{name}"));
        let trusted = format!("{}/32", proxy.ip);
        let trusted6 = format!("{}/128", proxy.ip6);
        let server = Server::start_in_lan(
            &lan,
            "server",
            SocketAddr::from((server.ip, SERVER_PORT)),
            &dir,
            &[
                "--mode",
                "syn",
                "--allow-private",
                "--scans-per-hour",
                "1000",
                "--trusted-proxy",
                &trusted,
                "--trusted-proxy",
                &trusted6,
                "--proxy-header",
                header,
            ],
        );
        Some(Deployment {
            _server: server,
            nginx,
            lan,
            dir,
        })
    }

    fn ip(&self, host: &str) -> String {
        self.lan.host(host).ip.to_string()
    }

    fn url(&self, port: u16) -> String {
        format!("http://{}:{port}", self.ip("proxy"))
    }

    /// Both counters still at zero (after the last probes could have arrived).
    fn assert_nothing_reached_victim_or_proxy(&self, what: &str) {
        std::thread::sleep(Duration::from_millis(300));
        let (victim, proxy) = (self.lan.counted("victim"), self.lan.counted("proxy"));
        assert_eq!(
            (victim, proxy),
            (0, 0),
            "{what}: packets from the server reached (victim, proxy)\nnginx: {}",
            self.nginx.error_log()
        );
    }
}

/// What came of one attempt.
#[derive(Debug)]
enum Outcome {
    /// The start page offered no test, and the consent POST was refused.
    Refused(String),
    /// A test ran, against this address.
    Probed(String, Value),
}

type Headers = Vec<(&'static str, Vec<u8>)>;

/// From host `from`: the start page at `base` with `headers`, then the consent
/// POST (`form`) with the same headers, then the finished test.
fn attempt(d: &Deployment, from: &str, base: &str, headers: &Headers, form: &str) -> Outcome {
    let ns = d.lan.host(from).ns.clone();
    let (base, headers, form) = (base.to_string(), headers.clone(), form.to_string());
    visit_from(&ns, move |a| {
        let mut req = a.get(&format!("{base}/"));
        for (k, v) in &headers {
            req = req.header(*k, v.as_slice());
        }
        let resp = req.call().unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let page = body(resp);
        let token = page
            .find("name=\"token\" value=\"")
            .and_then(|at| page[at + 20..].split('"').next().map(str::to_string));
        let form = format!("token={}&{form}", token.as_deref().unwrap_or("0"));
        let mut req = a
            .post(&format!("{base}/scan"))
            .header("content-type", "application/x-www-form-urlencoded");
        for (k, v) in &headers {
            req = req.header(*k, v.as_slice());
        }
        let resp = req.send(form.as_bytes()).unwrap();
        let status = resp.status().as_u16();
        if token.is_none() {
            let refusal = body(resp);
            assert_eq!(
                status, 403,
                "no form, but the POST was not refused: {refusal}"
            );
            assert!(
                page.contains("This address cannot be tested"),
                "no form and no refusal: {page}"
            );
            return Outcome::Refused(page);
        }
        assert_eq!(status, 303, "{}", body(resp));
        let loc = resp.headers()["location"].to_str().unwrap().to_string();
        let id = loc.trim_start_matches("/scan/").to_string();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v: Value = serde_json::from_str(&body(
                a.get(&format!("{base}/api/scans/{id}")).call().unwrap(),
            ))
            .unwrap();
            if v["scan"]["status"] != "running" {
                let target = v["scan"]["target"].as_str().unwrap().to_string();
                return Outcome::Probed(target, v);
            }
            assert!(Instant::now() < deadline, "scan did not finish");
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

fn h(name: &'static str, value: &str) -> (&'static str, Vec<u8>) {
    (name, value.as_bytes().to_vec())
}

/// The attempt ended in a probe of the attacker, or in a refusal (`refused`).
fn expect(d: &Deployment, what: &str, outcome: Outcome, refused: bool) {
    expect_target(d, what, outcome, refused, &d.ip("attacker"))
}

/// The attempt ended in a probe of `attacker`, or in a refusal (`refused`).
fn expect_target(d: &Deployment, what: &str, outcome: Outcome, refused: bool, attacker: &str) {
    match (outcome, refused) {
        (Outcome::Probed(target, _), false) => {
            assert_eq!(target, attacker, "{what}: probed someone else")
        }
        (Outcome::Refused(_), true) => {}
        (o, _) => panic!(
            "{what}: expected {}, got {o:?}",
            if refused {
                "a refusal"
            } else {
                "a probe of the attacker"
            }
        ),
    }
    d.assert_nothing_reached_victim_or_proxy(what);
}

#[test]
fn spoofed_headers_through_nginx_never_reach_the_victim_or_the_proxy() {
    let Some(d) = Deployment::start("xff", "x-forwarded-for", |p, s| {
        nginx_standard(p, s) + &nginx_passthrough(p, s)
    }) else {
        return;
    };
    let (victim, proxy) = (d.ip("victim"), d.ip("proxy"));
    let form = "kind=port&port=22";
    let std = d.url(80);

    // Issue 8, item 1 (critical): the client's own Forwarded header beat the
    // X-Forwarded-For that nginx wrote.
    let o = attempt(
        &d,
        "attacker",
        &std,
        &vec![h("forwarded", &format!("for={victim}"))],
        form,
    );
    expect(&d, "Forwarded: for=<victim>", o, false);
    let o = attempt(&d, "attacker", &std, &vec![h("x-real-ip", &victim)], form);
    expect(&d, "X-Real-IP: <victim>", o, false);
    // A multi-hop chain with the victim at the left: nginx appends the attacker.
    let chain = format!("{victim}, 198.18.20.77, {victim}");
    let o = attempt(
        &d,
        "attacker",
        &std,
        &vec![h("x-forwarded-for", &chain)],
        form,
    );
    expect(&d, "X-Forwarded-For: <victim>, …", o, false);
    for spoof in [
        proxy.clone(),
        "unknown".into(),
        "garbage".into(),
        format!("for={proxy}"),
    ] {
        let o = attempt(
            &d,
            "attacker",
            &std,
            &vec![h("x-forwarded-for", &spoof)],
            form,
        );
        expect(
            &d,
            &format!("X-Forwarded-For: {spoof} (appended)"),
            o,
            false,
        );
    }
    // Two X-Forwarded-For lines of the client's, then nginx's entry.
    let two = vec![h("x-forwarded-for", &victim), h("x-forwarded-for", &victim)];
    let o = attempt(&d, "attacker", &std, &two, form);
    expect(&d, "two X-Forwarded-For lines", o, false);
    // Every forwarding header at once.
    let all = vec![
        h("forwarded", &format!("for={victim};proto=https")),
        h("x-real-ip", &victim),
        h("x-forwarded-for", &victim),
        h("x-client-ip", &victim),
        h("true-client-ip", &victim),
    ];
    let o = attempt(&d, "attacker", &std, &all, form);
    expect(&d, "all forwarding headers at once", o, false);
    // Issue 8, item 2: a byte outside ASCII made the chain unreadable, and the
    // server fell back to probing nginx.
    let mut bad = victim.clone().into_bytes();
    bad.push(0xe9);
    let o = attempt(
        &d,
        "attacker",
        &std,
        &vec![("x-forwarded-for", bad.clone())],
        form,
    );
    expect(&d, "non-ASCII X-Forwarded-For (appended)", o, true);

    // Through the careless passthrough: the header is wholly the client's.
    let raw = d.url(81);
    for spoof in [
        proxy.clone(),
        format!("{proxy}, {proxy}"),
        "unknown".into(),
        "garbage".into(),
        format!("{victim}, garbage"),
        ", ,".into(),
    ] {
        let o = attempt(
            &d,
            "attacker",
            &raw,
            &vec![h("x-forwarded-for", &spoof)],
            form,
        );
        expect(
            &d,
            &format!("passthrough X-Forwarded-For: {spoof}"),
            o,
            true,
        );
    }
    let o = attempt(&d, "attacker", &raw, &vec![("x-forwarded-for", bad)], form);
    expect(&d, "passthrough non-ASCII", o, true);
    // No X-Forwarded-For at all (nginx drops an empty one): never the proxy.
    let o = attempt(
        &d,
        "attacker",
        &raw,
        &vec![h("forwarded", &format!("for={victim}"))],
        form,
    );
    expect(&d, "passthrough, no X-Forwarded-For", o, true);

    // Straight to the server, past the proxy: the headers are ignored.
    let direct = format!("http://{}:{SERVER_PORT}", d.ip("server"));
    let o = attempt(&d, "attacker", &direct, &all, form);
    expect(&d, "direct with every header", o, false);

    // Item 3: an address the server gains after start-up is its own at once.
    d.lan.add_address("server", "198.18.20.50/24").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let o = attempt(
        &d,
        "attacker",
        &raw,
        &vec![h("x-forwarded-for", "198.18.20.50")],
        form,
    );
    match o {
        Outcome::Refused(page) => assert!(page.contains("own address"), "{page}"),
        o => panic!("the server's new address was not refused: {o:?}"),
    }
    d.assert_nothing_reached_victim_or_proxy("new own address");
}

#[test]
fn an_honest_visitor_through_nginx_gets_the_truth() {
    let Some(d) = Deployment::start("honest", "x-forwarded-for", nginx_standard) else {
        return;
    };
    let visitor = d.lan.host("visitor").clone();
    // Port 22 open, 23 dropped (stealth), everything else closed.
    let _listener = harbormaster_testnet::in_namespace(&visitor.ns, || {
        std::net::TcpListener::bind((visitor.ip, 22)).unwrap()
    });
    d.lan
        .nft(
            "visitor",
            "table inet hmvisitor {
  chain input { type filter hook input priority 0; policy accept; tcp dport 23 drop; }
}
",
        )
        .unwrap();
    let o = attempt(
        &d,
        "visitor",
        &d.url(80),
        &vec![],
        "kind=custom&ports=22-23%2C80",
    );
    let Outcome::Probed(target, v) = o else {
        panic!("the honest visitor was refused: {o:?}");
    };
    assert_eq!(target, visitor.ip.to_string());
    assert_eq!(v["scan"]["mode"], "syn");
    let states: Vec<(u64, String)> = v["scan"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["port"].as_u64().unwrap(),
                r["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![
            (22, "open".to_string()),
            (23, "stealth".to_string()),
            (80, "closed".to_string())
        ],
        "{v}"
    );
    assert!(
        v["scan"]["watch"]["ping_replies"].as_u64().unwrap() >= 1,
        "{v}"
    );
    d.assert_nothing_reached_victim_or_proxy("honest visitor");
    assert!(d.nginx.access_log().contains(&visitor.ip.to_string()));
}

#[test]
fn x_real_ip_mode_reads_only_x_real_ip() {
    let Some(d) = Deployment::start("real-ip", "x-real-ip", |proxy, server| {
        format!(
            "  server {{
    listen {proxy}:80;
    location / {{
      proxy_pass http://{server}:{SERVER_PORT};
      proxy_set_header Host $host;
      proxy_set_header X-Real-IP $remote_addr;
    }}
  }}
"
        )
    }) else {
        return;
    };
    let victim = d.ip("victim");
    let spoof = vec![
        h("x-real-ip", &victim),
        h("x-forwarded-for", &victim),
        h("forwarded", &format!("for={victim}")),
    ];
    let o = attempt(&d, "attacker", &d.url(80), &spoof, "kind=port&port=22");
    expect(&d, "X-Real-IP mode, every header spoofed", o, false);
}

#[test]
fn forwarded_mode_with_an_appending_nginx() {
    // nginx has no built-in Forwarded; the usual recipe appends with a map.
    let Some(d) = Deployment::start("forwarded", "forwarded", |proxy, server| {
        format!(
            "  map $http_forwarded $proxy_add_forwarded {{
    \"\" \"for=$remote_addr\";
    default \"$http_forwarded, for=$remote_addr\";
  }}
  server {{
    listen {proxy}:80;
    location / {{
      proxy_pass http://{server}:{SERVER_PORT};
      proxy_set_header Host $host;
      proxy_set_header Forwarded $proxy_add_forwarded;
    }}
  }}
"
        )
    }) else {
        return;
    };
    let (victim, proxy) = (d.ip("victim"), d.ip("proxy"));
    for spoof in [
        format!("for={victim}"),
        format!("for={proxy}"),
        "for=unknown".into(),
        "for=_hidden".into(),
        "garbage\"".into(),
    ] {
        let headers = vec![h("forwarded", &spoof), h("x-forwarded-for", &victim)];
        let o = attempt(&d, "attacker", &d.url(80), &headers, "kind=port&port=22");
        expect(&d, &format!("Forwarded: {spoof} (appended)"), o, false);
    }
}

#[test]
fn ipv6_spoofs_through_nginx_never_reach_the_victim_or_the_proxy() {
    let Some(d) = Deployment::start("ipv6", "x-forwarded-for", |proxy, server| {
        nginx_standard(proxy, server).replace(
            &format!("listen {proxy}:80;"),
            &format!("listen {proxy}:80;\n    listen [fd00:20::2]:80;"),
        )
    }) else {
        return;
    };
    let (victim6, proxy6) = (d.lan.host("victim").ip6, d.lan.host("proxy").ip6);
    let attacker6 = d.lan.host("attacker").ip6.to_string();
    assert_eq!(
        proxy6.to_string(),
        "fd00:20::2",
        "the address nginx listens on"
    );
    let base = format!("http://[{proxy6}]:80");
    let form = "kind=port&port=22";
    for (what, headers) in [
        (
            "Forwarded: for=\"[victim]\"",
            vec![h("forwarded", &format!("for=\"[{victim6}]\""))],
        ),
        (
            "X-Real-IP: victim",
            vec![h("x-real-ip", &victim6.to_string())],
        ),
        (
            "X-Forwarded-For: victim, proxy",
            vec![h("x-forwarded-for", &format!("{victim6}, {proxy6}"))],
        ),
        (
            "X-Forwarded-For: mapped IPv4 victim",
            vec![h("x-forwarded-for", &format!("::ffff:{}", d.ip("victim")))],
        ),
    ] {
        let o = attempt(&d, "attacker", &base, &headers, form);
        expect_target(&d, what, o, false, &attacker6);
    }
}
