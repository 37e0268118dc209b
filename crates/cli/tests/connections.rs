//! Connection limits of `harbormaster serve`, end to end with the real binary.
//!
//! On loopback (no root needed): idle connections over the per-address and
//! global caps do not stop another visitor, and SIGTERM with slow clients
//! connected exits within `--shutdown-grace`. Loopback visitors are the
//! server's own address, so they are refused tests, but the pages still serve,
//! which is all connection handling needs.
//!
//! In namespaces (root): a visitor with a valid consent token posts hostile
//! custom lists; each is refused at once and the server's resident memory
//! stays flat.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{SERVER, Server, body, tempdir, testnet_or_skip, visit};
use harbormaster_testnet::TargetSpec;

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `harbormaster serve` on 127.0.0.1 with `extra` flags; killed on drop.
struct Loopback {
    child: Child,
    addr: SocketAddr,
    dir: std::path::PathBuf,
}

impl Loopback {
    fn start(name: &str, extra: &[&str]) -> Loopback {
        Loopback::start_with_nofile(name, extra, None)
    }

    /// With the soft open-file limit set to `nofile` first (as systemd's
    /// default 1,024 would be); `exec` keeps the server's pid the child's.
    fn start_with_nofile(name: &str, extra: &[&str], nofile: Option<u32>) -> Loopback {
        let dir = tempdir(name);
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut cmd = match nofile {
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -Sn {n} && exec \"$0\" \"$@\""))
                    .arg(assert_cmd::cargo::cargo_bin("harbormaster"));
                c
            }
            None => Command::new(assert_cmd::cargo::cargo_bin("harbormaster")),
        };
        let child = cmd
            .args(["serve", "--listen", &addr.to_string()])
            .args(["--mode", "connect", "--no-reverse-dns", "--allow-private"])
            .arg("--data-dir")
            .arg(&dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start harbormaster serve");
        let server = Loopback { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if get_from(1, addr, "/").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
                return server;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("server did not come up on {addr}");
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A connection from 127.0.0.`host`.
fn connect_from(host: u8, to: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)), 0).into())
        .unwrap();
    s.connect_timeout(&to.into(), Duration::from_secs(2))
        .unwrap();
    s.into()
}

/// `GET path` from 127.0.0.`host`; the response, or `None` on a connection error.
fn get_from(host: u8, to: SocketAddr, path: &str) -> Option<String> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    s.bind(&SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)), 0).into())
        .ok()?;
    s.connect_timeout(&to.into(), Duration::from_secs(2)).ok()?;
    let mut s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = Vec::new();
    if let Err(e) = s.read_to_end(&mut out) {
        eprintln!(
            "GET {path} from 127.0.0.{host}: {e} after {} bytes",
            out.len()
        );
        return None;
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn idle_connections_over_the_caps_do_not_stop_another_visitor() {
    let server = Loopback::start(
        "limits-caps",
        &[
            "--max-connections",
            "16",
            "--max-connections-per-address",
            "4",
        ],
    );
    // 10 addresses × 8 idle connections: twice the per-address cap each, five
    // times the global cap in all.
    let mut idle = Vec::new();
    for host in 2..12 {
        for _ in 0..8 {
            idle.push(connect_from(host, server.addr));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let resp = get_from(50, server.addr, "/port/443").expect("a response");
    let took = t.elapsed();
    println!(
        "visitor served in {took:?} beside {} idle connections",
        idle.len()
    );
    assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp:.300}");
    assert!(resp.contains("Port 443"));
    assert!(took < Duration::from_secs(2), "{took:?}");
    // Over its cap, an address is answered 503 without being read.
    let mut refused = 0;
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut b = [0u8; 256];
        if let Ok(n) = s.read(&mut b)
            && String::from_utf8_lossy(&b[..n]).starts_with("HTTP/1.1 503")
        {
            refused += 1;
        }
    }
    assert!(refused >= 40, "only {refused} of 80 were refused with 503");
}

#[test]
fn sigterm_with_slow_clients_connected_exits_within_the_grace() {
    let mut server = Loopback::start(
        "limits-sigterm",
        &["--shutdown-grace", "2", "--header-timeout", "60"],
    );
    // 20 slowloris clients: one header byte every 500 ms, for up to 30 s.
    let mut writers = Vec::new();
    for i in 0..20u8 {
        let mut s = connect_from(2 + i, server.addr);
        writers.push(std::thread::spawn(move || {
            let started = Instant::now();
            for b in b"GET / HTTP/1.1\r\nHost: slow\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
                if s.write_all(&[*b]).is_err() || started.elapsed() > Duration::from_secs(30) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(1200));
    let t = Instant::now();
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = t.elapsed();
    println!("exited {status} {took:?} after SIGTERM with 20 slow clients");
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(4), "{took:?} (grace 2 s)");
    for w in writers {
        w.join().unwrap();
    }
}

/// Resident memory of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn hostile_custom_lists_are_refused_at_once_with_flat_memory() {
    let net = testnet_or_skip!(&TargetSpec::default());
    let dir = tempdir("limits-lists");
    let server = Server::start(&net, &dir);
    let before = rss_kib(server.pid());
    let results = visit(&net, |a| {
        let page = body(a.get(SERVER).call().unwrap());
        let at = page.find("name=\"token\" value=\"").expect("consent form") + 20;
        let token = page[at..at + 64].to_string();
        let mut out = Vec::new();
        let forty_kb = vec!["all"; 10_000].join(",");
        let full_ranges = vec!["0-65535"; 600].join(",");
        let all_500 = vec!["all"; 500].join(",");
        for (what, ports) in [
            ("40 KB of `all`", forty_kb),
            ("600 × 0-65535", full_ranges),
            ("500 × all", all_500),
        ] {
            for _ in 0..5 {
                let t = Instant::now();
                let status = match a.post(&format!("{SERVER}/scan")).send_form([
                    ("token", token.as_str()),
                    ("kind", "custom"),
                    ("ports", ports.as_str()),
                ]) {
                    Ok(r) => {
                        let code = r.status().as_u16();
                        (code, body(r))
                    }
                    // The server may close before it has read a body it refused.
                    Err(e) => (0, e.to_string()),
                };
                out.push((what, status, t.elapsed()));
            }
        }
        out
    });
    let after = rss_kib(server.pid());
    for (what, (code, text), took) in &results {
        println!("{what}: {code} in {took:?}");
        match *what {
            "40 KB of `all`" => assert!(
                *code == 413 && text.contains("8192 bytes") || *code == 0,
                "{what}: {code} {text:.300}"
            ),
            _ => assert!(
                *code == 400 && text.contains("at most"),
                "{what}: {code} {text:.300}"
            ),
        }
        assert!(*took < Duration::from_millis(500), "{what}: {took:?}");
    }
    assert!(
        results.iter().any(|(_, (code, _), _)| *code == 413),
        "no 413 page reached the client"
    );
    println!("server RSS {before} KiB before, {after} KiB after 15 hostile lists");
    assert!(after < before + 16 * 1024, "RSS {before} -> {after} KiB");
    // Still serving.
    let alive = visit(&net, |a| a.get(SERVER).call().map(|r| r.status().as_u16()));
    assert_eq!(alive.unwrap(), 200);
    drop(server);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn connection_limit_flags_are_validated() {
    for (flag, value, valid) in [
        ("--idle-timeout", "5", "20..=86400"),
        ("--header-timeout", "0", "1..=3600"),
        ("--max-connections", "0", "1..=1000000"),
        ("--max-connections-per-address", "x", "invalid digit"),
        ("--shutdown-grace", "601", "0..=600"),
    ] {
        let out = Command::new(assert_cmd::cargo::cargo_bin("harbormaster"))
            .args(["serve", flag, value])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(
            err.contains(flag) && err.contains(valid),
            "{flag} {value}: {err}"
        );
    }
}

#[test]
fn a_low_open_file_limit_is_raised_to_fit_the_connection_cap() {
    let dir = tempdir("limits-nofile");
    let port = free_port();
    let bin = assert_cmd::cargo::cargo_bin("harbormaster");
    // `exec` keeps the pid: the server is the child.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -Sn 256 && exec \"$0\" serve --listen 127.0.0.1:{port} --mode connect --no-reverse-dns --max-connections 2000 --data-dir \"$1\""
        ))
        .arg(&bin)
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while get_from(1, addr, "/").is_none() {
        assert!(Instant::now() < deadline, "server did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (soft, hard) = (fields[3], fields[4]);
    let want = 2064.min(hard.parse::<u64>().unwrap_or(u64::MAX));
    assert_eq!(soft.parse::<u64>().unwrap(), want, "{line}");
}

/// The soft open-file limit of this process, raised to `want` (within the hard
/// limit) with util-linux `prlimit` if it is lower.
fn ensure_own_fd_limit(want: u64) {
    let soft = || -> u64 {
        std::fs::read_to_string("/proc/self/limits")
            .unwrap()
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
            .and_then(|v| v.parse().ok())
            .unwrap_or(u64::MAX)
    };
    if soft() < want {
        let _ = Command::new("prlimit")
            .args(["--pid", &std::process::id().to_string()])
            .arg(format!("--nofile={want}:"))
            .status();
    }
    assert!(
        soft() >= want,
        "this test needs {want} open files (ulimit -n); it has {}",
        soft()
    );
}

/// The reproduction against the default caps (1,024 in all, 32 per
/// address) and the usual soft open-file limit of 1,024: 1,200 idle
/// connections from 40 addresses used to exhaust the descriptors, so accept
/// failed for everyone; now another visitor is still served.
#[test]
fn twelve_hundred_idle_connections_at_the_default_caps_do_not_stop_a_visitor() {
    ensure_own_fd_limit(2048);
    let server = Loopback::start_with_nofile("limits-1200", &[], Some(1024));
    let mut idle = Vec::new();
    for host in 2..42 {
        for _ in 0..30 {
            idle.push(connect_from(host, server.addr));
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    let resp = get_from(200, server.addr, "/port/22").expect("a response");
    let took = t.elapsed();
    println!(
        "visitor served in {took:?} beside {} idle connections",
        idle.len()
    );
    assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp:.300}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    let rss = rss_kib(server.child.id());
    println!("server RSS with {} idle connections: {rss} KiB", idle.len());
    assert!(rss < 128 * 1024, "{rss} KiB");
}
