//! Limits of the real server in connect mode, in namespaces. `--max-rate`
//! holds for two visitors' tests at once: two visitor addresses (198.18.0.2
//! and .3) start a service test each under `--max-rate 200`, and an nftables
//! counter in the visitor's namespace counts every SYN that arrives. Live
//! event streams are capped per test, and a client that hangs up frees its
//! slot. Needs root; skipped otherwise.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::testnet_or_skip;
use harbormaster_testnet::{TargetSpec, TestNet};

const LISTEN: &str = "198.18.0.1:8080";

/// The server in connect mode; killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `harbormaster serve --mode connect --max-rate RATE` in the scanner
/// namespace, answering once this returns.
fn serve(net: &TestNet, dir: &std::path::Path, rate: &str) -> Server {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let server = Server(
        net.scanner_command(assert_cmd::cargo::cargo_bin("harbormaster"))
            .args([
                "serve",
                "--listen",
                LISTEN,
                "--allow-private",
                "--no-reverse-dns",
                "--mode",
                "connect",
                "--max-rate",
                rate,
            ])
            .arg("--data-dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start harbormaster serve"),
    );
    let up = Instant::now() + Duration::from_secs(20);
    while get(net, Ipv4Addr::new(198, 18, 0, 2), "/").is_err() {
        assert!(Instant::now() < up, "server did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

/// Opens `GET path` from `src` and reads the response head; the connection
/// stays open (a live event stream) until the stream is dropped.
fn open(net: &TestNet, src: Ipv4Addr, path: &str) -> (String, std::net::TcpStream) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 198.18.0.1:8080\r\n\r\n");
    TestNet::spawn_in(&net.target_ns, move || {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&SocketAddr::from((src, 0)).into()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.connect(&LISTEN.parse::<SocketAddr>().unwrap().into())
            .unwrap();
        let mut stream: std::net::TcpStream = s.into();
        stream.write_all(request.as_bytes()).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
            if stream.read(&mut byte).unwrap() == 0 {
                break;
            }
            head.push(byte[0]);
        }
        (String::from_utf8_lossy(&head).into_owned(), stream)
    })
    .join()
    .unwrap()
}

/// One HTTP/1.1 request from `src` (an address of the visitor's namespace).
fn http(net: &TestNet, src: Ipv4Addr, request: String) -> std::io::Result<String> {
    TestNet::spawn_in(&net.target_ns, move || {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        s.bind(&SocketAddr::from((src, 0)).into())?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.connect(&LISTEN.parse::<SocketAddr>().unwrap().into())?;
        let mut stream: std::net::TcpStream = s.into();
        stream.write_all(request.as_bytes())?;
        let mut out = String::new();
        stream.read_to_string(&mut out)?;
        Ok(out)
    })
    .join()
    .unwrap()
}

fn get(net: &TestNet, src: Ipv4Addr, path: &str) -> std::io::Result<String> {
    http(
        net,
        src,
        format!("GET {path} HTTP/1.1\r\nHost: 198.18.0.1:8080\r\nConnection: close\r\n\r\n"),
    )
}

/// Consents to a service test from `src`; returns the scan id.
fn start_service_test(net: &TestNet, src: Ipv4Addr) -> String {
    let page = get(net, src, "/").unwrap();
    let at = page.find("name=\"token\" value=\"").expect("consent form") + 20;
    let token = page[at..].split('"').next().unwrap();
    let form = format!("token={token}&kind=service");
    let resp = http(
        net,
        src,
        format!(
            "POST /scan HTTP/1.1\r\nHost: 198.18.0.1:8080\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        ),
    )
    .unwrap();
    assert!(resp.starts_with("HTTP/1.1 303"), "{resp}");
    let loc = resp
        .lines()
        .find_map(|l| l.strip_prefix("location: /scan/"))
        .expect("a redirect to the scan");
    loc.trim().to_string()
}

/// SYNs counted so far in the visitor's namespace.
fn syns(net: &TestNet) -> u64 {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.target_ns,
            "nft",
            "list",
            "counter",
            "inet",
            "hmrate",
            "syns",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let at = text.find("packets ").expect("counter output") + 8;
    text[at..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn results_so_far(net: &TestNet, src: Ipv4Addr, id: &str) -> usize {
    let resp = get(net, src, &format!("/api/scans/{id}")).unwrap();
    resp.matches("\"port\":").count()
}

#[test]
fn max_rate_holds_for_two_connect_mode_tests_together() {
    // Every port closed: each SYN is answered at once by a RST, so without the
    // cap the two tests would send thousands of SYNs per second.
    let spec = TargetSpec {
        extra_addresses: 1,
        ..TargetSpec::default()
    };
    let net = testnet_or_skip!(&spec);
    let rules = "table inet hmrate {
  counter syns { }
  chain input {
    type filter hook input priority -10; policy accept;
    ip saddr 198.18.0.1 tcp flags & (syn | ack) == syn counter name syns
  }
}
";
    let mut nft = Command::new("ip")
        .args(["netns", "exec", &net.target_ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    nft.stdin
        .take()
        .unwrap()
        .write_all(rules.as_bytes())
        .unwrap();
    assert!(nft.wait().unwrap().success(), "nft counter rules");

    let dir = std::env::temp_dir().join(format!("hm-serve-rate-{}", std::process::id()));
    let _server = serve(&net, &dir, "200");
    let a = Ipv4Addr::new(198, 18, 0, 2);
    let b = Ipv4Addr::new(198, 18, 0, 3);
    let (n0, t0) = (syns(&net), Instant::now());
    let id_a = start_service_test(&net, a);
    let id_b = start_service_test(&net, b);
    // From just before the first test to 3 seconds later, start-up included.
    std::thread::sleep(Duration::from_secs(3).saturating_sub(t0.elapsed()));
    let (n1, t1) = (syns(&net), Instant::now());
    let rate = (n1 - n0) as f64 / (t1 - t0).as_secs_f64();
    eprintln!(
        "two connect-mode tests under --max-rate 200: {} SYNs in {:?} = {rate:.0}/s",
        n1 - n0,
        t1 - t0
    );
    // 10 % for timing jitter plus the pacer's burst of 2.
    let allowed = 200.0 * 1.1 * (t1 - t0).as_secs_f64() + 2.0;
    assert!(
        (n1 - n0) as f64 <= allowed,
        "{} SYNs in {:?} ({rate:.0}/s) exceed --max-rate 200",
        n1 - n0,
        t1 - t0
    );
    assert!(
        rate >= 150.0,
        "{rate:.0} SYN/s: the budget is not being used"
    );
    // Both visitors progressed: the budget is shared, not taken by one.
    let (ra, rb) = (
        results_so_far(&net, a, &id_a),
        results_so_far(&net, b, &id_b),
    );
    assert!(ra >= 150 && rb >= 150, "results so far: {ra} and {rb}");
    assert!(
        ra < 1056 && rb < 1056,
        "both tests still running at 200/s: {ra} {rb}"
    );
    drop(_server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn live_streams_are_capped_and_a_client_that_hangs_up_frees_its_slot() {
    let net = testnet_or_skip!(&TargetSpec::default());
    let dir = std::env::temp_dir().join(format!("hm-serve-streams-{}", std::process::id()));
    // 20 attempts/s: the service test runs for about 50 s, longer than this test.
    let _server = serve(&net, &dir, "20");
    let a = Ipv4Addr::new(198, 18, 0, 2);
    let id = start_service_test(&net, a);
    let path = format!("/scan/{id}/events");
    let mut held: Vec<_> = (0..4)
        .map(|_| {
            let (head, s) = open(&net, a, &path);
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            assert!(head.contains("text/event-stream"), "{head}");
            s
        })
        .collect();
    let (head, _) = open(&net, a, &path);
    assert!(head.starts_with("HTTP/1.1 429"), "the fifth stream: {head}");
    assert!(head.to_ascii_lowercase().contains("retry-after:"), "{head}");
    // Hang up one stream: the server notices at its next write and frees the slot.
    let hung_up = Instant::now();
    drop(held.remove(0));
    loop {
        let (head, s) = open(&net, a, &path);
        if head.starts_with("HTTP/1.1 200") {
            held.push(s);
            break;
        }
        assert!(head.starts_with("HTTP/1.1 429"), "{head}");
        assert!(
            hung_up.elapsed() < Duration::from_secs(5),
            "the slot was not freed within 5 s of the hang-up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "a hung-up stream's slot was free again after {:?}",
        hung_up.elapsed()
    );
    drop(held);
    drop(_server);
    let _ = std::fs::remove_dir_all(&dir);
}
