//! The accept loop (`server::run`) over real sockets on loopback: connection
//! caps per visitor and in total, the header timeout against slowloris, the
//! idle timeout (which a live event stream's keep-alives must survive), and a
//! shutdown bounded by its grace whatever the clients do. Clients come from
//! several loopback addresses (127.0.0.x) to stand for different visitors;
//! the IPv6 per-prefix test runs in a network namespace it creates (root).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use harbormaster_probe::ProbeError;
use harbormaster_web::server::{Limits, run};
use harbormaster_web::{AppState, Cancel, Config, ConnInfo, Db, ProbeMode, Prober, app};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct NoProbe;

impl Prober for NoProbe {
    fn mode(&self) -> ProbeMode {
        ProbeMode::Scripted
    }

    fn start(
        &self,
        _: harbormaster_probe::ScanRequest,
        _: harbormaster_probe::Sink,
    ) -> Result<Cancel, ProbeError> {
        Err(ProbeError::Unsupported("no probing in these tests"))
    }
}

fn limits() -> Limits {
    Limits {
        max_connections: 1024,
        max_per_address: 32,
        ipv6_prefix: 64,
        header_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(60),
        shutdown_grace: Duration::from_secs(5),
    }
}

/// The real application (port pages need no prober).
fn real_app() -> Router {
    let config = Config {
        reverse_dns: false,
        ..Config::default()
    };
    app(AppState::new(
        config,
        Db::in_memory().unwrap(),
        Arc::new(NoProbe),
    ))
}

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
    cleaned_up: Arc<AtomicBool>,
}

async fn start(router: Router, limits: Limits) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let cleaned_up = Arc::new(AtomicBool::new(false));
    let flag = cleaned_up.clone();
    let task = tokio::spawn(run(
        listener,
        router,
        limits,
        async move {
            let _ = rx.await;
        },
        async move { flag.store(true, Ordering::SeqCst) },
    ));
    Running {
        addr,
        stop: Some(tx),
        task,
        cleaned_up,
    }
}

/// A TCP connection from 127.0.0.`host`.
async fn connect_from(host: u8, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)),
        0,
    ))
    .unwrap();
    s.connect(to).await.unwrap()
}

/// Everything the server sends until it closes, or `None` if it is still
/// open (and silent) after `wait`.
async fn read_until_close(s: &mut TcpStream, wait: Duration) -> Option<String> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&out).into_owned()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// `GET path` from 127.0.0.`host` on a fresh connection; the whole response.
async fn http_get(host: u8, to: SocketAddr, path: &str) -> String {
    let mut s = connect_from(host, to).await;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    read_until_close(&mut s, Duration::from_secs(5))
        .await
        .expect("the response within 5 s")
}

#[tokio::test]
async fn idle_connections_over_the_caps_do_not_lock_out_a_visitor() {
    let server = start(
        real_app(),
        Limits {
            max_connections: 8,
            max_per_address: 4,
            ..limits()
        },
    )
    .await;
    // One address opens 10 idle connections: 4 are kept, 6 refused at once.
    let mut first = Vec::new();
    for _ in 0..10 {
        first.push(connect_from(2, server.addr).await);
    }
    let mut refused = 0;
    let mut open = Vec::new();
    for mut s in first {
        match read_until_close(&mut s, Duration::from_millis(300)).await {
            Some(text) => {
                assert!(text.starts_with("HTTP/1.1 503 "), "{text:?}");
                assert!(text.contains("Too many connections"), "{text:?}");
                refused += 1;
            }
            None => open.push(s),
        }
    }
    assert_eq!((open.len(), refused), (4, 6));

    // Four more addresses, four idle connections each: 20 idle in all, over
    // the global cap of 8. The oldest that never sent a request make room.
    for host in 3..=6 {
        for _ in 0..4 {
            open.push(connect_from(host, server.addr).await);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A visitor from another address is served at once, with its ConnectInfo.
    let t = Instant::now();
    let resp = http_get(9, server.addr, "/port/80").await;
    let took = t.elapsed();
    assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp:.200}");
    assert!(resp.contains("Port 80"));
    println!("visitor served in {took:?} with 20 idle connections open");
    assert!(took < Duration::from_secs(2), "{took:?}");

    // Never more than the global cap held open.
    let mut still_open = 0;
    for s in &mut open {
        if read_until_close(s, Duration::from_millis(20))
            .await
            .is_none()
        {
            still_open += 1;
        }
    }
    println!("{still_open} of 20 idle connections still open");
    assert!(still_open <= 8, "{still_open} idle connections still open");
    assert!(still_open >= 4, "only {still_open}: the newest should stay");
}

#[tokio::test]
async fn a_slowloris_client_is_dropped_after_the_header_timeout() {
    let server = start(
        real_app(),
        Limits {
            header_timeout: Duration::from_secs(2),
            ..limits()
        },
    )
    .await;
    let s = connect_from(2, server.addr).await;
    let (mut rd, mut wr) = s.into_split();
    let started = Instant::now();
    // One header byte a second, for up to 10 s.
    let writer = tokio::spawn(async move {
        for b in b"GET / HTTP/1.1\r\nHost: slow.example\r\nX-A: b\r\n"
            .iter()
            .take(10)
        {
            if wr.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let mut buf = [0u8; 1024];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(10), rd.read(&mut buf)).await {
            Err(_) => panic!("still connected after 10 s"),
            Ok(Ok(0)) | Ok(Err(_)) => break started.elapsed(),
            Ok(Ok(_)) => {} // a 408 may precede the close
        }
    };
    writer.abort();
    println!("slowloris dropped after {closed:?}");
    assert!(
        closed >= Duration::from_millis(1800) && closed < Duration::from_secs(4),
        "{closed:?}"
    );
    // The server still serves others.
    assert!(
        http_get(3, server.addr, "/")
            .await
            .starts_with("HTTP/1.1 200")
    );
}

#[tokio::test]
async fn a_body_sent_a_byte_at_a_time_is_cut_off() {
    let server = start(
        real_app(),
        Limits {
            header_timeout: Duration::from_secs(2),
            ..limits()
        },
    )
    .await;
    let s = connect_from(2, server.addr).await;
    let (mut rd, mut wr) = s.into_split();
    wr.write_all(b"POST /scan HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        for b in b"kind=custom&ports=1".iter() {
            if wr.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(10), rd.read(&mut buf)).await {
            Err(_) => panic!("still connected after 10 s"),
            Ok(Ok(0)) | Ok(Err(_)) => break started.elapsed(),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    };
    writer.abort();
    let text = String::from_utf8_lossy(&got);
    println!("slow body cut off after {closed:?}");
    assert!(text.starts_with("HTTP/1.1 400 "), "{text:.300}");
    assert!(
        closed >= Duration::from_millis(1800) && closed < Duration::from_secs(4),
        "{closed:?}"
    );
}

#[tokio::test]
async fn a_live_event_stream_outlives_the_idle_timeout_and_a_silent_one_does_not() {
    let router = Router::new()
        .route(
            "/live",
            get(|| async {
                Sse::new(futures_util::stream::pending::<
                    Result<Event, std::convert::Infallible>,
                >())
                .keep_alive(KeepAlive::new().interval(Duration::from_millis(200)))
            }),
        )
        .route(
            "/silent",
            get(|| async {
                Body::from_stream(futures_util::stream::pending::<Result<Vec<u8>, io::Error>>())
            }),
        )
        .route(
            "/peer",
            get(|ConnectInfo(c): ConnectInfo<ConnInfo>| async move {
                format!("{} {}", c.peer.ip(), c.local)
            }),
        );
    let server = start(
        router,
        Limits {
            idle_timeout: Duration::from_secs(1),
            ..limits()
        },
    )
    .await;
    let peer = http_get(7, server.addr, "/peer").await;
    assert!(
        peer.ends_with(&format!("127.0.0.7 {}", server.addr)),
        "{peer}"
    );

    let mut live = connect_from(2, server.addr).await;
    live.write_all(b"GET /live HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut silent = connect_from(3, server.addr).await;
    silent
        .write_all(b"GET /silent HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();

    let silent_task = tokio::spawn(async move {
        let text = read_until_close(&mut silent, Duration::from_secs(5)).await;
        (text, started.elapsed())
    });
    // Three idle timeouts long, the stream stays open on keep-alives alone.
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while started.elapsed() < Duration::from_secs(3) {
        match tokio::time::timeout(Duration::from_millis(500), live.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => panic!(
                "the live stream was closed after {:?}: {}",
                started.elapsed(),
                String::from_utf8_lossy(&got)
            ),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(text.contains("text/event-stream"), "{text}");
    let keepalives = text.matches("\n:").count();
    assert!(keepalives >= 8, "{keepalives} keep-alives: {text}");

    let (silent_text, closed) = silent_task.await.unwrap();
    let silent_text = silent_text.expect("the silent response was closed");
    assert!(silent_text.starts_with("HTTP/1.1 200 OK"), "{silent_text}");
    println!(
        "silent response closed after {closed:?}; live stream sent {keepalives} keep-alives in 3 s"
    );
    assert!(
        closed >= Duration::from_millis(900) && closed < Duration::from_millis(2500),
        "{closed:?}"
    );
}

#[tokio::test]
async fn shutdown_finishes_requests_and_drops_slow_clients_within_the_grace() {
    let router = Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(800)).await;
                "finished"
            }),
        )
        .route("/", get(|| async { "hello" }));
    let mut server = start(
        router,
        Limits {
            shutdown_grace: Duration::from_secs(1),
            ..limits()
        },
    )
    .await;
    let addr = server.addr;
    // Slowloris clients, well within the 30 s header timeout.
    let mut slow = Vec::new();
    for host in 2..12 {
        let s = connect_from(host, addr).await;
        let (rd, mut wr) = s.into_split();
        slow.push(rd);
        tokio::spawn(async move {
            for b in b"GET / HTTP/1.1\r\nHost: slow\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaa" {
                if wr.write_all(&[*b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
    }
    // An idle keep-alive connection after one request.
    let mut keep = connect_from(20, addr).await;
    keep.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = keep.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).ends_with("hello"));
    // A request in flight when the signal comes (it needs 500 ms more).
    let in_flight = tokio::spawn(http_get(21, addr, "/slow"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!in_flight.is_finished());

    let t = Instant::now();
    server.stop.take().unwrap().send(()).unwrap();
    let keep_closed = read_until_close(&mut keep, Duration::from_secs(3)).await;
    let keep_after = t.elapsed();
    let result = tokio::time::timeout(Duration::from_secs(4), &mut server.task)
        .await
        .expect("run() returned within the grace")
        .unwrap();
    let took = t.elapsed();
    result.unwrap();
    println!(
        "shutdown with 10 slow clients: idle keep-alive closed after {keep_after:?}, run() returned after {took:?}"
    );
    assert!(keep_closed.is_some() && keep_after < Duration::from_millis(500));
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(1800),
        "{took:?}"
    );
    assert!(server.cleaned_up.load(Ordering::SeqCst), "on_shutdown ran");
    let resp = in_flight.await.unwrap();
    assert!(
        resp.starts_with("HTTP/1.1 200") && resp.ends_with("finished"),
        "{resp}"
    );
    // Every slow client was disconnected, and nothing listens any more.
    for mut rd in slow {
        let mut b = [0u8; 64];
        let r = tokio::time::timeout(Duration::from_secs(1), rd.read(&mut b)).await;
        assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "{r:?}");
    }
    assert!(TcpStream::connect(addr).await.is_err());
}

/// IPv6 visitors are counted per /64: a host that changes its address within
/// its prefix does not get more connections. Runs in a network namespace the
/// test creates (root), with addresses from fd00::/8 on its loopback.
#[test]
fn ipv6_connections_are_counted_per_prefix() {
    let net = harbormaster_testnet::testnet_or_skip!(&harbormaster_testnet::TargetSpec::default());
    let ns = net.target_ns.clone();
    for addr in [
        "fd00:8::1",
        "fd00:8::11",
        "fd00:8::12",
        "fd00:8::13",
        "fd00:9::11",
    ] {
        let ok = std::process::Command::new("ip")
            .args([
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/64"),
                "dev",
                "lo",
                "nodad",
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip addr add {addr}");
    }
    harbormaster_testnet::in_namespace(&ns, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = TcpListener::bind("[fd00:8::1]:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (tx, rx) = oneshot::channel::<()>();
            let server = tokio::spawn(run(
                listener,
                real_app(),
                Limits {
                    max_per_address: 4,
                    ..limits()
                },
                async move {
                    let _ = rx.await;
                },
                async {},
            ));
            let from = |src: &'static str| async move {
                let s = TcpSocket::new_v6().unwrap();
                s.bind(SocketAddr::new(src.parse().unwrap(), 0)).unwrap();
                s.connect(addr).await.unwrap()
            };
            // Three addresses of one /64, two connections each: 4 kept, 2 refused.
            let mut conns = Vec::new();
            for src in ["fd00:8::11", "fd00:8::12", "fd00:8::13"] {
                for _ in 0..2 {
                    conns.push(from(src).await);
                }
            }
            let mut refused = 0;
            for s in &mut conns {
                if let Some(text) = read_until_close(s, Duration::from_millis(300)).await {
                    assert!(text.starts_with("HTTP/1.1 503 "), "{text:?}");
                    refused += 1;
                }
            }
            assert_eq!(refused, 2, "the /64 is at its cap of 4");
            // Another /64 is another visitor.
            let mut s = from("fd00:9::11").await;
            s.write_all(b"GET /port/80 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let resp = read_until_close(&mut s, Duration::from_secs(5))
                .await
                .unwrap();
            assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp:.200}");
            tx.send(()).unwrap();
            server.await.unwrap().unwrap();
        });
    });
}
