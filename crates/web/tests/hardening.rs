//! Browser-facing hardening, driven through `app()` with `oneshot` (no
//! sockets) and a scripted prober: security headers on every response, pages
//! without inline script or style (so the CSP holds), gzip for pages and JSON
//! but never for event streams, request bodies over their limit, and API
//! errors that keep internal detail in the log.

use std::io::Read;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, StatusCode, header};
use harbormaster_probe::{PortList, PortState};
use harbormaster_web::{AppState, Config, ConnInfo, Db, TestKind, app};
use http_body_util::BodyExt;
use tower::ServiceExt;

mod common;

use common::slow;

const VISITOR: &str = "203.0.113.50";

fn config() -> Config {
    Config {
        allow_private: true,
        reverse_dns: false,
        http_ports: vec![8080],
        ..Config::default()
    }
}

fn state(delay: Duration) -> AppState {
    AppState::new(
        config(),
        Db::in_memory().unwrap(),
        slow(delay, |_| PortState::Closed),
    )
}

fn conn() -> ConnectInfo<ConnInfo> {
    ConnectInfo(ConnInfo {
        peer: SocketAddr::new(VISITOR.parse().unwrap(), 50_000),
        local: "192.0.2.1:8080".parse().unwrap(),
    })
}

fn get(path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::get(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let mut r = b.body(Body::empty()).unwrap();
    r.extensions_mut().insert(conn());
    r
}

fn post_form(body: impl Into<Body>) -> Request<Body> {
    let mut r = Request::post("/scan")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body.into())
        .unwrap();
    r.extensions_mut().insert(conn());
    r
}

async fn send(state: &AppState, req: Request<Body>) -> Response<Body> {
    app(state.clone()).oneshot(req).await.unwrap()
}

async fn bytes(resp: Response<Body>) -> Vec<u8> {
    resp.into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec()
}

async fn text(resp: Response<Body>) -> String {
    String::from_utf8(bytes(resp).await).unwrap()
}

fn gunzip(data: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(data)
        .read_to_string(&mut out)
        .expect("valid gzip");
    out
}

/// A finished service-ports scan (1,056 closed ports) of the visitor.
async fn finished_scan(state: &AppState) -> String {
    let live = state
        .scans()
        .start(
            VISITOR.parse().unwrap(),
            TestKind::Service,
            PortList::parse("service").unwrap(),
        )
        .unwrap();
    let id = live.id.clone();
    drop(live);
    for _ in 0..500 {
        if state.scans().live(&id).is_none() {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("scan {id} did not finish");
}

fn assert_security_headers(resp: &Response<Body>, what: &str) {
    let h = resp.headers();
    assert_eq!(
        h[header::CONTENT_SECURITY_POLICY],
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        "{what}"
    );
    assert_eq!(h[header::X_FRAME_OPTIONS], "DENY", "{what}");
    assert_eq!(h[header::REFERRER_POLICY], "no-referrer", "{what}");
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{what}");
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let state = state(Duration::ZERO);
    let id = finished_scan(&state).await;
    let no_store = [
        "/".to_string(),
        "/port/80".into(),
        "/port/nope".into(),
        "/nowhere".into(),
        "/api/ports/80".into(),
        format!("/scan/{id}"),
        format!("/scan/{id}/report.txt"),
        format!("/scan/{id}/events"),
        format!("/api/scans/{id}"),
        "/api/scans/0123456789abcdef0123456789abcdef".into(),
    ];
    for path in &no_store {
        let resp = send(&state, get(path, &[])).await;
        assert_security_headers(&resp, path);
        assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store", "{path}");
    }
    // Error pages of the consent form too.
    let resp = send(&state, post_form("kind=common")).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_security_headers(&resp, "POST /scan");
    assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
    // Static assets keep their own caching.
    for path in ["/static/style.css", "/static/live.js"] {
        let resp = send(&state, get(path, &[])).await;
        assert_security_headers(&resp, path);
        assert_eq!(
            resp.headers()[header::CACHE_CONTROL],
            "public, max-age=3600",
            "{path}"
        );
    }
}

/// The CSP has no 'unsafe-inline': any inline script, style attribute or
/// event-handler attribute would be blocked in the browser.
#[tokio::test]
async fn pages_have_no_inline_script_or_style() {
    let state = state(Duration::ZERO);
    let done = finished_scan(&state).await;
    let slow = self::state(Duration::from_millis(50));
    let running = slow
        .scans()
        .start(
            "203.0.113.51".parse().unwrap(),
            TestKind::Common,
            PortList::parse("common").unwrap(),
        )
        .unwrap()
        .id
        .clone();
    for path in [
        "/".to_string(),
        "/port/80".into(),
        "/port/3389".into(),
        format!("/scan/{done}"),
        format!("/scan/{running}"),
        "/nowhere".into(),
    ] {
        let on = if path.contains(&running) {
            &slow
        } else {
            &state
        };
        let page = text(send(on, get(&path, &[])).await).await;
        assert!(page.contains("<script src=\"/static/live.js\""), "{path}");
        assert_eq!(
            page.matches("<script").count(),
            page.matches("<script src=").count(),
            "inline script on {path}"
        );
        assert!(!page.contains("<style"), "style element on {path}");
        for tag in page.split('<').skip(1) {
            let head = tag.split('>').next().unwrap_or("");
            assert!(
                !head.contains(" style="),
                "style attribute on {path}: <{head}>"
            );
            assert!(
                !head
                    .split_whitespace()
                    .any(|a| a.starts_with("on") && a.contains('=')),
                "event-handler attribute on {path}: <{head}>"
            );
            assert!(!head.contains("javascript:"), "javascript: URL on {path}");
        }
    }
    slow.scans().shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn pages_and_json_are_gzipped_and_event_streams_are_not() {
    let state = state(Duration::ZERO);
    let id = finished_scan(&state).await;
    let gzip = [("accept-encoding", "gzip")];
    for path in [
        "/".to_string(),
        "/port/80".into(),
        "/api/ports/80".into(),
        format!("/scan/{id}"),
        format!("/api/scans/{id}"),
        format!("/scan/{id}/report.txt"),
        "/static/style.css".into(),
        "/static/live.js".into(),
    ] {
        let plain = bytes(send(&state, get(&path, &[])).await).await;
        let resp = send(&state, get(&path, &gzip)).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert_eq!(resp.headers()[header::CONTENT_ENCODING], "gzip", "{path}");
        let packed = bytes(resp).await;
        // Consent tokens carry a fresh nonce on every render; compare the rest.
        let untokened = |page: &str| -> String {
            match page.find("name=\"token\" value=\"") {
                Some(at) => format!("{}{}", &page[..at], &page[at + 20 + 64..]),
                None => page.to_string(),
            }
        };
        assert_eq!(
            untokened(&gunzip(&packed)),
            untokened(&String::from_utf8_lossy(&plain)),
            "{path}"
        );
        assert!(packed.len() < plain.len(), "{path}");
        // For BENCHMARKS.md: `cargo test -p harbormaster-web --test hardening -- --nocapture`.
        println!("{path}: {} bytes, {} gzipped", plain.len(), packed.len());
    }
    // Without Accept-Encoding, nothing is compressed.
    let resp = send(&state, get("/port/80", &[])).await;
    assert!(resp.headers().get(header::CONTENT_ENCODING).is_none());

    // A live stream: not compressed, and the first result arrives while the
    // scan still runs (a compressor would hold it back in its buffer).
    let slow = self::state(Duration::from_millis(20));
    let live = slow
        .scans()
        .start(
            VISITOR.parse().unwrap(),
            TestKind::Service,
            PortList::parse("service").unwrap(),
        )
        .unwrap();
    let id = live.id.clone();
    drop(live);
    let resp = send(&slow, get(&format!("/scan/{id}/events"), &gzip)).await;
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
    assert!(
        resp.headers().get(header::CONTENT_ENCODING).is_none(),
        "{:?}",
        resp.headers()
    );
    let mut body = resp.into_body();
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("an event within 5 s")
        .unwrap()
        .unwrap();
    let first = String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap();
    assert!(first.contains("event: port"), "{first:?}");
    assert!(
        slow.scans().live(&id).is_some(),
        "the scan is still running"
    );
    slow.scans().shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn oversized_forms_and_lists_are_refused_before_parsing() {
    let state = state(Duration::ZERO);
    // 40 KB: over the 8 KiB body limit, refused while reading the body.
    let list = (0..9000)
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let form = format!("token=x&kind=custom&ports={list}");
    assert!(form.len() > 40_000);
    let t = Instant::now();
    let resp = send(&state, post_form(form)).await;
    let elapsed = t.elapsed();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_security_headers(&resp, "413");
    let page = text(resp).await;
    assert!(page.contains("larger than the 8192 bytes"), "{page}");
    assert!(page.contains("up to 4096 characters"), "{page}");
    println!("40 KB form: 413 in {elapsed:?}");

    // Under the body limit but over the list limits: 400 naming the limit.
    // These need a valid token, so take one from the landing page.
    let home = text(send(&state, get("/", &[])).await).await;
    let at = home.find("name=\"token\" value=\"").unwrap() + 20;
    let token = &home[at..at + 64];
    let long = vec!["all"; 1200].join(",");
    let many = vec!["7"; 600].join(",");
    let ranges = vec!["1-1000"; 400].join(",") + ",2000-2100";
    for (ports, needle) in [
        (long.as_str(), "4799 characters long; at most 4096"),
        (many.as_str(), "600 items; at most 512"),
        // Overlapping ranges count once: 1,101 ports.
        (
            ranges.as_str(),
            "has 1101 ports; a custom test may have at most 1024",
        ),
        ("22,80,x", "&quot;x&quot; is not a port number"),
    ] {
        let resp = send(
            &state,
            post_form(format!("token={token}&kind=custom&ports={ports}")),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{needle}");
        let page = text(resp).await;
        assert!(page.contains(needle), "{needle}: {page}");
    }
    // The visitor's own list is quoted back when it is wrong.
    let resp = send(
        &state,
        post_form(format!("token={token}&kind=custom&ports=22,80-70")),
    )
    .await;
    assert!(text(resp).await.contains("&quot;22,80-70&quot;"));
    let resp = send(
        &state,
        post_form(format!("token={token}&kind=custom&ports=1-2000")),
    )
    .await;
    assert!(
        text(resp)
            .await
            .contains("That list (&quot;1-2000&quot;) has 2000 ports")
    );
    let resp = send(
        &state,
        post_form(format!("token={token}&kind=custom&ports={ranges}")),
    )
    .await;
    let page = text(resp).await;
    assert!(page.contains("That list (&quot;1-1000,1-1000,"), "{page}");
    assert!(page.contains("&quot;…) has 1101 ports"), "{page}");
}

#[tokio::test]
async fn api_errors_do_not_show_internal_detail() {
    let dir = std::env::temp_dir().join(format!("hm-api-error-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = Db::open(&dir).unwrap();
    let state = AppState::new(config(), db, slow(Duration::ZERO, |_| PortState::Closed));
    // Break the storage under the running service.
    let conn = rusqlite::Connection::open(dir.join("harbormaster.sqlite3")).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!tables.is_empty());
    for t in &tables {
        conn.execute_batch(&format!("DROP TABLE \"{t}\"")).unwrap();
    }
    let resp = send(
        &state,
        get("/api/scans/0123456789abcdef0123456789abcdef", &[]),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
    let body = text(resp).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"error": "internal error; it has been logged"})
    );
    for leak in ["no such table", "Sqlite", "Internal", "sqlite3", &tables[0]] {
        assert!(!body.contains(leak), "{leak} in {body}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
