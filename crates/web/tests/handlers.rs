//! Every route and every error page, driven through `app()` with `oneshot`
//! and a mocked connection (no sockets), probing with a scripted prober.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, StatusCode, header};
use harbormaster_probe::{PortState, ScanSummary};
use harbormaster_web::{AppState, Config, ConnInfo, Db, Prober, app, cancelled_summary};
use http_body_util::BodyExt;
use tower::ServiceExt;

const SERVER: &str = "192.0.2.1:8080";
const VISITOR: &str = "203.0.113.50";

mod common;

use common::{Scripted, slow};

/// Test visitors come from documentation ranges (nothing is ever sent to them:
/// the prober is scripted), which the policy treats as private, so allow them.
fn config() -> Config {
    Config {
        allow_private: true,
        reverse_dns: false,
        http_ports: vec![8080],
        ..Config::default()
    }
}

fn state_with(prober: Arc<dyn Prober>, config: Config) -> AppState {
    AppState::new(config, Db::in_memory().unwrap(), prober)
}

fn conn(peer: &str) -> ConnectInfo<ConnInfo> {
    let peer: IpAddr = peer.parse().unwrap();
    ConnectInfo(ConnInfo {
        peer: SocketAddr::new(peer, 50_000),
        local: SERVER.parse().unwrap(),
    })
}

async fn send(state: &AppState, req: Request<Body>) -> Response<Body> {
    app(state.clone()).oneshot(req).await.unwrap()
}

fn get(path: &str, peer: &str) -> Request<Body> {
    let mut r = Request::get(path).body(Body::empty()).unwrap();
    r.extensions_mut().insert(conn(peer));
    r
}

fn post(path: &str, peer: &str, form: &str, extra: &[(&str, &str)]) -> Request<Body> {
    let mut b =
        Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    let mut r = b.body(Body::from(form.to_string())).unwrap();
    r.extensions_mut().insert(conn(peer));
    r
}

/// Browsers keep only the first of two `class` attributes on one element.
fn assert_single_class_attributes(page: &str) {
    for tag in page.split('<') {
        let head = tag.split('>').next().unwrap_or("");
        assert!(
            head.matches(" class=").count() <= 1,
            "two class attributes: <{head}>"
        );
    }
}

async fn text(resp: Response<Body>) -> String {
    String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

/// The CSRF token from the landing page served to `peer`.
async fn token(state: &AppState, peer: &str) -> String {
    let page = text(send(state, get("/", peer)).await).await;
    let at = page.find("name=\"token\" value=\"").expect("consent form") + 20;
    page[at..at + 64].to_string()
}

/// Posts the consent form; returns the scan id from the redirect.
async fn start(state: &AppState, peer: &str, form: &str) -> String {
    let t = token(state, peer).await;
    let resp = send(
        state,
        post("/scan", peer, &format!("token={t}&{form}"), &[]),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{}", text(resp).await);
    let loc = resp.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_string();
    loc.strip_prefix("/scan/").unwrap().to_string()
}

async fn api_scan(state: &AppState, id: &str) -> serde_json::Value {
    for _ in 0..200 {
        let resp = send(state, get(&format!("/api/scans/{id}"), VISITOR)).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&text(resp).await).unwrap();
        // Stored first, then its running slot is released: wait for both, so
        // a next start does not race the release.
        if v["scan"]["status"] != "running" && state.scans().live(id).is_none() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("scan {id} did not finish");
}

#[tokio::test]
async fn landing_page_shows_the_visitor_and_the_consent_form() {
    let state = state_with(Scripted::new(|_| PortState::Stealth), config());
    let resp = send(&state, get("/", VISITOR)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let page = text(resp).await;
    assert!(page.contains(VISITOR));
    assert!(page.contains("Probe my connection"));
    assert!(
        page.contains("value=\"common\"")
            && page.contains("value=\"service\"")
            && page.contains("value=\"custom\"")
    );
    assert!(
        !page.contains("value=\"full\""),
        "full sweep is off by default"
    );
    assert!(page.contains("A closed port is not a vulnerability"));
}

#[tokio::test]
async fn refused_addresses_get_no_form_and_no_scan() {
    let strict = state_with(
        Scripted::new(|_| PortState::Stealth),
        Config {
            allow_private: false,
            ..config()
        },
    );
    for peer in ["10.1.2.3", "198.18.0.2", VISITOR, "fd00::1"] {
        let page = text(send(&strict, get("/", peer)).await).await;
        assert!(page.contains("This address cannot be tested"), "{peer}");
        // The visitor reads why in plain words; server flags are for the log.
        assert!(!page.contains("--allow-private"), "{peer}: {page}");
        assert!(!page.contains("operator allows it"), "{peer}: {page}");
    }
    let state = state_with(Scripted::new(|_| PortState::Stealth), config());
    for peer in ["127.0.0.1", "169.254.9.9", "192.0.2.1", "::1", "224.0.0.9"] {
        let page = text(send(&state, get("/", peer)).await).await;
        assert!(page.contains("This address cannot be tested"), "{peer}");
        assert!(!page.contains("Probe my connection"), "{peer}");
    }
    // Even a valid token cannot make the server probe its own address.
    let t = state.csrf().issue("192.0.2.1".parse().unwrap());
    let resp = send(
        &state,
        post("/scan", "192.0.2.1", &format!("token={t}&kind=common"), &[]),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let page = text(resp).await;
    assert!(page.contains("own address"));
    assert!(
        page.contains("<h1>This address cannot be tested</h1>"),
        "{page}"
    );
}

#[tokio::test]
async fn port_pages_navigate_and_wrap() {
    let state = state_with(Scripted::new(|_| PortState::Stealth), config());
    let page = text(send(&state, get("/port/22", VISITOR)).await).await;
    assert!(page.contains("href=\"/port/21\"") && page.contains("href=\"/port/23\""));
    assert!(page.contains("Probe port 22"));
    assert!(page.contains("Enter port (0–65535)"));
    assert!(page.contains("TCP 22") && page.contains("UDP 22"));
    assert!(page.contains("Why exposure matters"));
    let zero = text(send(&state, get("/port/0", VISITOR)).await).await;
    assert!(zero.contains("href=\"/port/65535\"") && zero.contains("href=\"/port/1\""));
    let top = text(send(&state, get("/port/65535", VISITOR)).await).await;
    assert!(top.contains("href=\"/port/0\""));
}

#[tokio::test]
async fn port_pages_show_the_registration_tags_and_review_date() {
    let state = state_with(Scripted::new(|_| PortState::Stealth), config());
    // 66: current name sql-net, historic alias sql*net (IANA's CSV).
    let page = text(send(&state, get("/port/66", VISITOR)).await).await;
    assert!(
        page.contains("sql-net") && page.contains("Historic aliases"),
        "{page}"
    );
    assert!(page.contains("sql*net"));
    assert!(page.contains("Facts on this entry last checked: 2026-12."));
    // 3389: curated tags; 6003: IANA's unauthorized-use note for x11.
    let rdp = text(send(&state, get("/port/3389", VISITOR)).await).await;
    assert!(rdp.contains("Tags: remote-access, windows"), "{rdp}");
    let x11 = text(send(&state, get("/port/6003", VISITOR)).await).await;
    assert!(x11.contains("Unauthorized use reported to IANA"), "{x11}");
}

#[tokio::test]
async fn bad_ports_are_400_pages_naming_the_range() {
    let state = state_with(Scripted::new(|_| PortState::Stealth), config());
    for bad in [
        "/port/65536",
        "/port/-1",
        "/port/abc",
        "/port?n=99999",
        "/port?n=",
    ] {
        let resp = send(&state, get(bad, VISITOR)).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert!(text(resp).await.contains("65535"), "{bad}");
    }
    let resp = send(&state, get("/port?n=443", VISITOR)).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[header::LOCATION], "/port/443");
}

#[tokio::test]
async fn port_api_is_json() {
    let state = state_with(Scripted::new(|_| PortState::Stealth), config());
    let resp = send(&state, get("/api/ports/3389", VISITOR)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&text(resp).await).unwrap();
    assert_eq!(v["port"], 3389);
    assert_eq!(v["entries"][0]["iana_name"], "ms-wbt-server");
    let resp = send(&state, get("/api/ports/70000", VISITOR)).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v: serde_json::Value = serde_json::from_str(&text(resp).await).unwrap();
    assert!(v["error"].as_str().unwrap().contains("65535"));
}

#[tokio::test]
async fn a_scan_runs_and_reports_with_a_verdict() {
    let state = state_with(
        Scripted::new(|p| {
            if p == 80 {
                PortState::Open
            } else {
                PortState::Stealth
            }
        }),
        config(),
    );
    let id = start(&state, VISITOR, "kind=common").await;
    let v = api_scan(&state, &id).await;
    assert_eq!(v["scan"]["target"], VISITOR);
    assert_eq!(v["scan"]["status"], "done");
    assert_eq!(v["counts"]["open"], 1);
    assert_eq!(v["counts"]["stealth"], 25);
    assert_eq!(v["verdict"]["passed"], false);
    let page = text(send(&state, get(&format!("/scan/{id}"), VISITOR)).await).await;
    // Results first: the verdict leads with the risk, in the summary card.
    assert!(page.contains("<h2>1 port accepts connections from the internet</h2>"));
    assert!(page.contains("class=\"verdict fail t-risk\""));
    let (sum, findings, results) = (
        page.find("id=\"sum\"").unwrap(),
        page.find("id=\"findings\"").unwrap(),
        page.find("id=\"results\"").unwrap(),
    );
    assert!(sum < page.find("id=\"verdict\"").unwrap() && sum < findings && findings < results);
    assert_single_class_attributes(&page);
    // The finding: number, service, what it means, the first step, its page.
    assert!(page.contains("<a href=\"/port/80\">Port 80 · http</a>"));
    assert!(page.contains("What it means: ") && page.contains("First step: "));
    // NAT explained, open because something is open.
    assert!(page.contains("<details class=\"nat\" open>") && page.contains("port-forward"));
    // A small test says what it left out and offers the wider one.
    assert!(page.contains("Only 26 ports of the 65,536 TCP ports were tested"));
    assert!(page.contains("href=\"/?test=service#tests\""));
    // Every port as text, with its state as a word and the evidence.
    assert!(page.contains("id=\"p80\""));
    for p in harbormaster_probe::COMMON_PORTS {
        assert!(
            page.contains(&format!("<a href=\"/port/{p}\">{p}</a>")),
            "port {p} as text"
        );
    }
    assert!(page.contains("<tr class=\"so\" id=\"p80\">"));
    assert!(page.contains("</span> open</td><td>accepted (SYN-ACK)</td>"));
    // No expert words or raw data.
    for jargon in [
        "reply(ies)",
        "1 ports",
        "mode: syn",
        "unix time",
        "role=\"listitem\"",
        "(s)",
    ] {
        assert!(!page.contains(jargon), "{jargon:?} on the page");
    }
    assert!(page.contains("started <time datetime=\""), "human date");
    let report = send(&state, get(&format!("/scan/{id}/report.txt"), VISITOR)).await;
    assert_eq!(
        report.headers()[header::CONTENT_TYPE],
        "text/plain; charset=utf-8"
    );
    let report = text(report).await;
    assert!(report.contains("open:         1  80"), "{report}");
    assert!(report.contains("stealth:     25  0,21-23,25,79,110,113,119,135,139,143,389,443,445,1002,1024-1030,1720,5000"), "{report}");
    assert!(
        report.contains("Result:   1 port accepts connections from the internet"),
        "{report}"
    );
    assert!(
        report.contains("Test:     Common Ports (26 ports)"),
        "{report}"
    );
    assert!(report.contains("Stealth:  not passed"), "{report}");
    assert!(
        report.contains("Not tested:\n  - Only 26 ports"),
        "{report}"
    );
    assert!(report.contains(" UTC\n"), "{report}");
    for jargon in ["reply(ies)", "unix time", "Mode:", "(s)"] {
        assert!(!report.contains(jargon), "{jargon:?} in the report");
    }
}

#[tokio::test]
async fn an_all_stealth_quiet_visitor_passes() {
    let state = state_with(Scripted::new(|_| PortState::Stealth), config());
    let id = start(&state, VISITOR, "kind=service").await;
    let v = api_scan(&state, &id).await;
    assert_eq!(v["counts"]["stealth"], 1056);
    assert_eq!(v["verdict"]["passed"], true, "{v}");
    assert_eq!(v["verdict"]["tone"], "good", "{v}");
    let page = text(send(&state, get(&format!("/scan/{id}"), VISITOR)).await).await;
    assert!(page.contains("<h2>Nothing answered — your address looks invisible to this test</h2>"));
    assert!(page.contains("class=\"verdict pass t-good\""));
    assert!(page.contains("No port was open or filtered: there is nothing to close."));
    // The grid: every cell a link (no role replacing it) with a glyph and its
    // port and state in its label; labels on both axes; a skip link past it.
    assert_eq!(
        page.matches("<a class=\"ss\" id=\"p").count(),
        1056,
        "every cell a stealth link"
    );
    assert!(page.contains(
        "<a class=\"ss\" id=\"p1055\" href=\"/port/1055\" aria-label=\"1055: stealth, no answer"
    ));
    assert!(!page.contains("role=\"listitem\""));
    assert!(page.contains("<span class=\"gl\" aria-hidden=\"true\">+31</span>"));
    assert!(page.contains("<span class=\"gl rl\" aria-hidden=\"true\">1024</span>"));
    assert!(page.contains("<a class=\"skip\" href=\"#share\">") && page.contains("id=\"share\""));
    // What a Service test leaves out; no wider test offered (Full is the
    // operator's choice).
    assert!(page.contains("Ports 1056–65535"));
    assert!(page.contains("Service Ports (0–1055), 1056 ports"));
    assert!(!page.contains("/?test="));
    // NAT explained, folded when nothing is open.
    assert!(page.contains("<details class=\"nat\">"));
}

#[tokio::test]
async fn an_all_closed_small_test_says_good_and_offers_the_wider_test() {
    let state = state_with(Scripted::new(|_| PortState::Closed), config());
    let id = start(&state, VISITOR, "kind=common").await;
    let v = api_scan(&state, &id).await;
    assert_eq!(v["verdict"]["passed"], false, "{v}");
    assert_eq!(v["verdict"]["wider"], "service", "{v}");
    let page = text(send(&state, get(&format!("/scan/{id}"), VISITOR)).await).await;
    assert!(page.contains(
        "<h2>No port accepts connections — good; invisible (stealth) would be better</h2>"
    ));
    assert!(page.contains("class=\"verdict fail t-fair\""));
    assert!(page.contains("a firewall that drops instead of refusing would make it invisible"));
    assert!(page.contains("<a class=\"btn\" href=\"/?test=service#tests\">Run the wider Service Ports (0–1055) test</a>"));
    assert!(page.contains("<strong>26</strong> closed"));
    assert!(page.contains("</span> closed</td><td>refused (RST)</td>"));
    let report = text(send(&state, get(&format!("/scan/{id}/report.txt"), VISITOR)).await).await;
    assert!(report.contains(
        "Result:   No port accepts connections — good; invisible (stealth) would be better"
    ));
}

#[tokio::test]
async fn a_running_scan_page_shows_progress_and_refreshes_slowly_without_javascript() {
    let slow = slow(Duration::from_millis(50), |_| PortState::Stealth);
    let state = state_with(slow, config());
    let id = start(&state, VISITOR, "kind=common").await;
    let page = text(send(&state, get(&format!("/scan/{id}"), VISITOR)).await).await;
    assert!(page.contains("<progress id=\"prog\" max=\"26\""));
    assert!(page.contains("aria-live=\"polite\""));
    assert!(page.contains("<meta http-equiv=\"refresh\" content=\"4\">"));
    assert!(page.contains("data-running=\"true\" data-from=\""));
    assert!(page.contains(" ports tested so far."));
    assert!(!page.contains("id=\"verdict\""));
    assert_single_class_attributes(&page);
    api_scan(&state, &id).await;
}

#[tokio::test]
async fn custom_lists_are_validated() {
    let state = state_with(Scripted::new(|_| PortState::Stealth), config());
    let t = token(&state, VISITOR).await;
    for (form, status, needle) in [
        (
            "kind=custom&ports=1-2000",
            StatusCode::BAD_REQUEST,
            "at most 1024",
        ),
        (
            "kind=custom&ports=80-20",
            StatusCode::BAD_REQUEST,
            "backwards",
        ),
        ("kind=custom&ports=", StatusCode::BAD_REQUEST, "empty"),
        ("kind=full", StatusCode::FORBIDDEN, "not enabled"),
        ("kind=bogus", StatusCode::BAD_REQUEST, "Unknown test"),
        ("kind=port&port=65536", StatusCode::BAD_REQUEST, "65535"),
    ] {
        let resp = send(
            &state,
            post("/scan", VISITOR, &format!("token={t}&{form}"), &[]),
        )
        .await;
        assert_eq!(resp.status(), status, "{form}");
        assert!(text(resp).await.contains(needle), "{form}");
    }
    let id = start(&state, VISITOR, "kind=custom&ports=22%2C80%2C8000-8002").await;
    let v = api_scan(&state, &id).await;
    assert_eq!(v["scan"]["ports"], "22,80,8000-8002");
}

#[tokio::test]
async fn posts_without_a_valid_token_are_refused() {
    let prober = Scripted::new(|_| PortState::Stealth);
    let state = state_with(prober.clone(), config());
    let other = token(&state, "198.51.100.77").await;
    for form in [
        "kind=common".to_string(),
        "token=abc&kind=common".to_string(),
        format!("token={other}&kind=common"),
    ] {
        let resp = send(&state, post("/scan", VISITOR, &form, &[])).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{form}");
        assert!(text(resp).await.contains("security token"));
    }
    let mut r = Request::post("/scan")
        .body(Body::from("kind=common"))
        .unwrap();
    r.extensions_mut().insert(conn(VISITOR));
    assert_eq!(
        send(&state, r).await.status(),
        StatusCode::BAD_REQUEST,
        "not a form"
    );
    assert_eq!(
        prober.starts.load(Ordering::SeqCst),
        0,
        "nothing was probed"
    );
}

#[tokio::test]
async fn a_spoofed_forwarded_header_does_not_change_the_target() {
    let state = state_with(Scripted::new(|_| PortState::Stealth), config());
    let t = token(&state, VISITOR).await;
    let headers = [("x-forwarded-for", "8.8.8.8"), ("forwarded", "for=1.1.1.1")];
    let resp = send(
        &state,
        post(
            "/scan",
            VISITOR,
            &format!("token={t}&kind=common"),
            &headers,
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let id = resp.headers()[header::LOCATION].to_str().unwrap()[6..].to_string();
    assert_eq!(api_scan(&state, &id).await["scan"]["target"], VISITOR);
}

#[tokio::test]
async fn a_trusted_proxy_passes_the_client_address() {
    let proxy = "10.0.0.5";
    let state = state_with(
        Scripted::new(|_| PortState::Stealth),
        Config {
            trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
            ..config()
        },
    );
    let mut r = get("/", proxy);
    r.headers_mut()
        .insert("x-forwarded-for", "198.51.100.23".parse().unwrap());
    let page = text(send(&state, r).await).await;
    assert!(page.contains("198.51.100.23"));
}

#[tokio::test]
async fn one_running_scan_per_address_and_an_hourly_budget() {
    let slow = slow(Duration::from_millis(50), |_| PortState::Stealth);
    let state = state_with(
        slow,
        Config {
            scans_per_hour: 2,
            ..config()
        },
    );
    let first = start(&state, VISITOR, "kind=common").await;
    let t = token(&state, VISITOR).await;
    let resp = send(
        &state,
        post("/scan", VISITOR, &format!("token={t}&kind=common"), &[]),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().contains_key(header::RETRY_AFTER));
    let page = text(resp).await;
    assert!(page.contains("already running") && page.contains(&first));
    // A different visitor is not affected.
    let _ = start(&state, "203.0.113.51", "kind=port&port=22").await;
    api_scan(&state, &first).await;
    let _second = start(&state, VISITOR, "kind=port&port=80").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = token(&state, VISITOR).await;
    let resp = send(
        &state,
        post(
            "/scan",
            VISITOR,
            &format!("token={t}&kind=port&port=81"),
            &[],
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 3000, "an hour-based wait, got {retry}");
    assert!(text(resp).await.contains("in the last hour"));
}

#[tokio::test]
async fn the_global_concurrency_limit_answers_429() {
    let slow = slow(Duration::from_millis(200), |_| PortState::Stealth);
    let state = state_with(
        slow,
        Config {
            max_concurrent: 1,
            ..config()
        },
    );
    let _ = start(&state, VISITOR, "kind=common").await;
    let t = token(&state, "203.0.113.99").await;
    let resp = send(
        &state,
        post(
            "/scan",
            "203.0.113.99",
            &format!("token={t}&kind=common"),
            &[],
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(text(resp).await.contains("as many tests as it allows"));
}

#[tokio::test]
async fn live_events_stream_results_then_done() {
    let slow = slow(Duration::from_millis(5), |p| {
        if p == 22 {
            PortState::Open
        } else {
            PortState::Closed
        }
    });
    let state = state_with(slow, config());
    let id = start(&state, VISITOR, "kind=common").await;
    let resp = send(&state, get(&format!("/scan/{id}/events"), VISITOR)).await;
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
    let body = text(resp).await;
    assert_eq!(body.matches("event: port").count(), 26, "{body}");
    assert!(body.contains("{\"port\":22,\"state\":\"open\",\"reason\":\"syn-ack\",\"rtt_ms\":"));
    assert!(body.trim_end().ends_with("data: {}") && body.contains("event: done"));
    // While running, the page refreshes itself for browsers without JavaScript.
    let id2 = start(&state, "203.0.113.60", "kind=service").await;
    let page = text(send(&state, get(&format!("/scan/{id2}"), "203.0.113.60")).await).await;
    assert!(page.contains("http-equiv=\"refresh\""));
    assert!(page.contains("data-running=\"true\""));
}

#[tokio::test]
async fn unknown_scans_and_routes_are_404() {
    let state = state_with(Scripted::new(|_| PortState::Stealth), config());
    for path in [
        "/scan/nope",
        "/scan/0123456789abcdef0123456789abcdef",
        "/scan/zz/report.txt",
        "/nowhere",
    ] {
        let resp = send(&state, get(path, VISITOR)).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        let page = text(resp).await;
        // Only scan addresses talk about deleted results.
        if path.starts_with("/scan/") {
            assert!(page.contains("No test at this address"), "{path}: {page}");
        } else {
            assert!(page.contains("No page at this address"), "{path}: {page}");
            assert!(!page.contains("deleted"), "{path}: {page}");
            assert!(page.contains("href=\"/search\""), "{path}: {page}");
        }
    }
    let resp = send(
        &state,
        get("/api/scans/0123456789abcdef0123456789abcdef", VISITOR),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = send(&state, get("/static/style.css", VISITOR)).await;
    assert_eq!(
        resp.headers()[header::CONTENT_TYPE],
        "text/css; charset=utf-8"
    );
}

#[tokio::test]
async fn shutdown_cancels_running_scans_and_stores_them_consistently() {
    let slow = slow(Duration::from_millis(20), |_| PortState::Closed);
    let state = state_with(slow, config());
    let id = start(&state, VISITOR, "kind=service").await;
    // Wait for some results (not a fixed time: a loaded machine is slow).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while state
        .scans()
        .live(&id)
        .is_some_and(|l| l.subscribe().0.len() < 5)
    {
        assert!(std::time::Instant::now() < deadline, "no results arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    state.scans().shutdown(Duration::from_secs(5)).await;
    let stored = state.scans().db().load(&id).unwrap().unwrap();
    assert_eq!(stored.status, harbormaster_web::Status::Cancelled);
    assert!(
        !stored.results.is_empty() && stored.results.len() < 1056,
        "{}",
        stored.results.len()
    );
    assert!(stored.results.windows(2).all(|w| w[0].port < w[1].port));
    // New tests are refused while shutting down.
    let t = token(&state, "203.0.113.61").await;
    let resp = send(
        &state,
        post(
            "/scan",
            "203.0.113.61",
            &format!("token={t}&kind=common"),
            &[],
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let _: ScanSummary = cancelled_summary(VISITOR.parse().unwrap());
}

#[tokio::test]
async fn any_of_the_servers_own_addresses_is_refused() {
    let state = state_with(Scripted::new(|_| PortState::Stealth), config());
    let own = state
        .own_addresses()
        .iter()
        .find(|a| !a.is_loopback() && a.is_ipv4())
        .copied();
    let Some(own) = own else {
        eprintln!("skipped: this host has no non-loopback IPv4 address");
        return;
    };
    // The request reaches SERVER's address but comes from another of our own.
    let page = text(send(&state, get("/", &own.to_string())).await).await;
    assert!(page.contains("own address"), "{own}");
}

/// `GET path` from `peer` with extra headers.
fn get_with(path: &str, peer: &str, extra: &[(&str, &str)]) -> Request<Body> {
    let mut r = get(path, peer);
    for (k, v) in extra {
        r.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    r
}

/// The `id:` values of the `port` events of an SSE body, in order.
fn event_ids(body: &str) -> Vec<usize> {
    body.split("\n\n")
        .filter(|e| e.contains("event: port"))
        .map(|e| {
            let line = e.lines().find(|l| l.starts_with("id: ")).expect("an id");
            line[4..].parse().unwrap()
        })
        .collect()
}

#[tokio::test]
async fn event_streams_carry_ids_and_resume_after_last_event_id() {
    let slow = slow(Duration::from_millis(20), |_| PortState::Closed);
    let state = state_with(slow, config());
    let id = start(&state, VISITOR, "kind=common").await;
    let path = format!("/scan/{id}/events");
    let (full, resumed, from) = tokio::join!(
        send(&state, get(&path, VISITOR)),
        send(&state, get_with(&path, VISITOR, &[("last-event-id", "9")])),
        send(&state, get(&format!("{path}?from=20"), VISITOR)),
    );
    let (full, resumed, from) = (text(full).await, text(resumed).await, text(from).await);
    assert_eq!(event_ids(&full), (0..26).collect::<Vec<_>>(), "{full}");
    // A reconnect gets only what it missed: indexes 10.., nothing before.
    assert_eq!(
        event_ids(&resumed),
        (10..26).collect::<Vec<_>>(),
        "{resumed}"
    );
    assert_eq!(event_ids(&from), (20..26).collect::<Vec<_>>(), "{from}");
    for body in [&full, &resumed, &from] {
        assert!(
            body.trim_end().ends_with("data: {}"),
            "ends with done: {body}"
        );
    }
    // The ids are positions in the result sequence: the full stream's port
    // events from index 10 on are exactly the resumed stream's.
    let tail = |b: &str| -> Vec<String> {
        b.split("\n\n")
            .filter(|e| e.contains("event: port"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(tail(&full)[10..], tail(&resumed)[..]);
    // Nonsense ids start from the beginning rather than failing.
    let id2 = start(&state, "203.0.113.70", "kind=common").await;
    let junk = text(
        send(
            &state,
            get_with(
                &format!("/scan/{id2}/events"),
                VISITOR,
                &[("last-event-id", "x9")],
            ),
        )
        .await,
    )
    .await;
    assert_eq!(event_ids(&junk).first(), Some(&0));
}

#[tokio::test]
async fn a_lagging_stream_resumes_from_the_stored_results() {
    // 65,536 results arrive at once, far more than the broadcast buffer holds,
    // while the stream is not read: it must still deliver every one, once.
    let state = state_with(
        Scripted::new(|_| PortState::Closed),
        Config {
            allow_full: true,
            ..config()
        },
    );
    let t = token(&state, VISITOR).await;
    let resp = send(
        &state,
        post("/scan", VISITOR, &format!("token={t}&kind=full"), &[]),
    )
    .await;
    let id = resp.headers()[header::LOCATION].to_str().unwrap()[6..].to_string();
    let stream = send(&state, get(&format!("/scan/{id}/events"), VISITOR)).await;
    api_scan(&state, &id).await;
    let ids = event_ids(&text(stream).await);
    assert_eq!(ids, (0..65_536).collect::<Vec<_>>());
}

#[tokio::test]
async fn event_streams_are_capped_per_scan_and_per_address_and_freed_on_drop() {
    let slow = slow(Duration::from_millis(50), |_| PortState::Stealth);
    let state = state_with(slow, config());
    let scans = [
        start(&state, "203.0.113.80", "kind=service").await,
        start(&state, "203.0.113.81", "kind=service").await,
        start(&state, "203.0.113.82", "kind=service").await,
    ];
    let events = |i: usize| format!("/scan/{}/events", scans[i]);
    // Four streams of one scan, from four addresses: the fifth is refused.
    let mut held = Vec::new();
    for n in 0..4 {
        let r = send(&state, get(&events(0), &format!("198.51.100.{n}"))).await;
        assert_eq!(r.status(), StatusCode::OK);
        held.push(r);
    }
    let refused = send(&state, get(&events(0), "198.51.100.9")).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key(header::RETRY_AFTER));
    assert!(text(refused).await.contains("live views"));
    // A client that goes away frees its slot.
    drop(held.pop());
    assert_eq!(state.streams().open(), 3);
    let again = send(&state, get(&events(0), "198.51.100.9")).await;
    assert_eq!(again.status(), StatusCode::OK);
    held.push(again);
    drop(held);
    assert_eq!(state.streams().open(), 0);
    // Eight streams per visitor, IPv6 counted per /64: addresses of one /64
    // together get eight, over two scans; the ninth, on a third scan, is refused.
    let mut held = Vec::new();
    for n in 0..8 {
        let peer = format!("2001:db8:5:6::{:x}", n + 1);
        let r = send(&state, get(&events(n / 4), &peer)).await;
        assert_eq!(r.status(), StatusCode::OK, "{peer}");
        held.push(r);
    }
    let refused = send(&state, get(&events(2), "2001:db8:5:6:ffff::1")).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(text(refused).await.contains("your address"));
    let other = send(&state, get(&events(2), "2001:db8:5:7::1")).await;
    assert_eq!(
        other.status(),
        StatusCode::OK,
        "another /64 is another visitor"
    );
    drop(other);
    drop(held);
    assert_eq!(state.streams().open(), 0);
    // A finished scan's stream is a single `done`, whatever the caps.
    state.scans().shutdown(Duration::from_secs(5)).await;
    let body = text(send(&state, get(&events(0), "198.51.100.1")).await).await;
    assert_eq!(body.trim(), "event: done\ndata: {}");
}

#[tokio::test]
async fn ipv6_visitors_are_limited_per_prefix() {
    let slow = slow(Duration::from_millis(30), |_| PortState::Stealth);
    let state = state_with(
        slow.clone(),
        Config {
            scans_per_hour: 2,
            ..config()
        },
    );
    let first = start(&state, "2001:db8:1:2::a", "kind=common").await;
    // Another address of the same /64 cannot take a second running slot.
    let t = token(&state, "2001:db8:1:2::b").await;
    let resp = send(
        &state,
        post(
            "/scan",
            "2001:db8:1:2::b",
            &format!("token={t}&kind=common"),
            &[],
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(text(resp).await.contains(&first));
    // A different /64 can.
    let _ = start(&state, "2001:db8:1:3::a", "kind=port&port=22").await;
    api_scan(&state, &first).await;
    // The hourly budget is the /64's: a second one from a third address, then refused.
    let second = start(&state, "2001:db8:1:2::c", "kind=port&port=80").await;
    api_scan(&state, &second).await;
    let t = token(&state, "2001:db8:1:2:ffff:ffff:ffff:ffff").await;
    let resp = send(
        &state,
        post(
            "/scan",
            "2001:db8:1:2:ffff:ffff:ffff:ffff",
            &format!("token={t}&kind=port&port=81"),
            &[],
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(text(resp).await.contains("in the last hour"));
    assert_eq!(slow.starts.load(Ordering::SeqCst), 3);

    // A shorter prefix joins more addresses into one visitor.
    let state = state_with(
        Scripted::new(|_| PortState::Stealth),
        Config {
            scans_per_hour: 1,
            ipv6_prefix: 48,
            ..config()
        },
    );
    let id = start(&state, "2001:db8:1:2::a", "kind=port&port=22").await;
    api_scan(&state, &id).await;
    let t = token(&state, "2001:db8:1:ff::a").await;
    let resp = send(
        &state,
        post(
            "/scan",
            "2001:db8:1:ff::a",
            &format!("token={t}&kind=common"),
            &[],
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    // IPv4 stays per address.
    let _ = start(&state, "203.0.113.90", "kind=port&port=22").await;
    let _ = start(&state, "203.0.113.91", "kind=port&port=22").await;
}

#[tokio::test]
async fn a_consent_token_starts_one_test_only() {
    let prober = Scripted::new(|_| PortState::Stealth);
    let state = state_with(prober.clone(), config());
    let t = token(&state, VISITOR).await;
    let form = format!("token={t}&kind=port&port=22");
    let resp = send(&state, post("/scan", VISITOR, &form, &[])).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let id = resp.headers()[header::LOCATION].to_str().unwrap()[6..].to_string();
    api_scan(&state, &id).await;
    let replay = send(&state, post("/scan", VISITOR, &form, &[])).await;
    assert_eq!(replay.status(), StatusCode::FORBIDDEN);
    assert!(text(replay).await.contains("already been used"));
    assert_eq!(prober.starts.load(Ordering::SeqCst), 1);
    // A post refused by a limit does not use the token up.
    let state = state_with(
        slow(Duration::from_millis(20), |_| PortState::Stealth),
        Config {
            max_concurrent: 1,
            ..config()
        },
    );
    let running = start(&state, "203.0.113.95", "kind=common").await;
    let t = token(&state, VISITOR).await;
    let form = format!("token={t}&kind=port&port=22");
    let resp = send(&state, post("/scan", VISITOR, &form, &[])).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    api_scan(&state, &running).await;
    let resp = send(&state, post("/scan", VISITOR, &form, &[])).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn consent_tokens_expire_after_ten_minutes() {
    let prober = Scripted::new(|_| PortState::Stealth);
    let state = state_with(prober.clone(), config());
    let ip: IpAddr = VISITOR.parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let old = state.csrf().issue_at(ip, now - 11 * 60);
    let resp = send(
        &state,
        post("/scan", VISITOR, &format!("token={old}&kind=common"), &[]),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(text(resp).await.contains("expired"));
    assert_eq!(prober.starts.load(Ordering::SeqCst), 0);
    let recent = state.csrf().issue_at(ip, now - 9 * 60);
    let resp = send(
        &state,
        post(
            "/scan",
            VISITOR,
            &format!("token={recent}&kind=common"),
            &[],
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn cross_site_consent_posts_are_refused_with_the_reason() {
    let prober = Scripted::new(|_| PortState::Stealth);
    let state = state_with(prober.clone(), config());
    let t = token(&state, VISITOR).await;
    let form = format!("token={t}&kind=port&port=22");
    let cross: [&[(&str, &str)]; 4] = [
        &[("host", "scan.example"), ("origin", "https://evil.example")],
        &[
            ("host", "scan.example"),
            ("origin", "null"),
            ("sec-fetch-site", "cross-site"),
        ],
        &[("sec-fetch-site", "cross-site")],
        &[
            ("sec-fetch-site", "same-site"),
            ("origin", "https://scan.example"),
            ("host", "scan.example"),
        ],
    ];
    for headers in cross {
        let resp = send(&state, post("/scan", VISITOR, &form, headers)).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{headers:?}");
        let page = text(resp).await;
        assert!(page.contains("another site"), "{headers:?}: {page}");
    }
    assert_eq!(prober.starts.load(Ordering::SeqCst), 0);
    // Same-origin posts pass, and so do posts with neither header (curl, old browsers).
    let same = [
        ("host", "scan.example"),
        ("origin", "https://scan.example"),
        ("sec-fetch-site", "same-origin"),
    ];
    let resp = send(&state, post("/scan", VISITOR, &form, &same)).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{}", text(resp).await);
    let id = resp.headers()[header::LOCATION].to_str().unwrap()[6..].to_string();
    api_scan(&state, &id).await;
    let _ = start(&state, "203.0.113.96", "kind=common").await;
    assert_eq!(prober.starts.load(Ordering::SeqCst), 2);
}

/// A DNS server on loopback that answers every PTR query with `name`, counting
/// queries; the test's resolver asks only it.
async fn ptr_server(name: &'static str) -> (SocketAddr, Arc<AtomicUsize>) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let queries = Arc::new(AtomicUsize::new(0));
    let count = queries.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let q = &buf[..n];
            if q.len() < 12 {
                continue;
            }
            // The question: labels up to the root, then type and class.
            let mut end = 12;
            while end < q.len() && q[end] != 0 {
                end += 1 + q[end] as usize;
            }
            if end + 5 > q.len() {
                continue;
            }
            count.fetch_add(1, Ordering::SeqCst);
            let question = &q[12..end + 5];
            let mut rdata = Vec::new();
            for label in name.split('.') {
                rdata.push(label.len() as u8);
                rdata.extend_from_slice(label.as_bytes());
            }
            rdata.push(0);
            let mut resp = vec![q[0], q[1], 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
            resp.extend_from_slice(question);
            resp.extend_from_slice(&[0xc0, 0x0c, 0, 12, 0, 1, 0, 0, 0x0e, 0x10]);
            resp.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            resp.extend_from_slice(&rdata);
            let _ = sock.send_to(&resp, from).await;
        }
    });
    (addr, queries)
}

fn rdns_config(server: SocketAddr) -> Config {
    Config {
        reverse_dns: true,
        dns_servers: Some(vec![server]),
        ..config()
    }
}

#[tokio::test]
async fn the_visitors_name_comes_from_the_resolver_and_is_cached() {
    let (server, queries) = ptr_server("host-50.example.test").await;
    let state = state_with(Scripted::new(|_| PortState::Stealth), rdns_config(server));
    let page = text(send(&state, get("/", VISITOR)).await).await;
    assert!(page.contains("host-50.example.test"), "{page}");
    let again = text(send(&state, get("/", VISITOR)).await).await;
    assert!(again.contains("host-50.example.test"));
    assert_eq!(
        queries.load(Ordering::SeqCst),
        1,
        "the second visit is cached"
    );
    // No lookup at all when the operator turns it off.
    let state = state_with(
        Scripted::new(|_| PortState::Stealth),
        Config {
            reverse_dns: false,
            ..rdns_config(server)
        },
    );
    let page = text(send(&state, get("/", "203.0.113.51")).await).await;
    assert!(!page.contains("host-50.example.test"));
    assert_eq!(queries.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_name_server_slows_no_other_request() {
    // Bound but never read: every query goes unanswered.
    let hole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let state = state_with(
        Scripted::new(|_| PortState::Stealth),
        rdns_config(hole.local_addr().unwrap()),
    );
    let began = std::time::Instant::now();
    let homes: Vec<_> = (0..50)
        .map(|i| {
            let state = state.clone();
            tokio::spawn(async move {
                let resp = send(&state, get("/", &format!("203.0.113.{}", 100 + i))).await;
                assert_eq!(resp.status(), StatusCode::OK);
                text(resp).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let api_began = std::time::Instant::now();
    let resp = send(&state, get("/api/ports/22", VISITOR)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let api = api_began.elapsed();
    assert!(api < Duration::from_millis(250), "the API took {api:?}");
    for h in homes {
        let page = h.await.unwrap();
        assert!(page.contains("consent") || page.contains("token"));
    }
    let all = began.elapsed();
    assert!(
        all < Duration::from_millis(1500 + 1500),
        "50 home pages with a silent name server took {all:?}"
    );
    // The failure is remembered: the same visitor does not wait again.
    let again = std::time::Instant::now();
    let _ = text(send(&state, get("/", "203.0.113.100")).await).await;
    assert!(
        again.elapsed() < Duration::from_millis(200),
        "{:?}",
        again.elapsed()
    );
    drop(hole);
}

/// A state behind a trusted proxy at 10.0.0.5 that writes `header`.
fn behind_proxy(header: harbormaster_web::ProxyHeader) -> (AppState, Arc<Scripted>) {
    let prober = Scripted::new(|_| PortState::Stealth);
    let state = state_with(
        prober.clone(),
        Config {
            trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
            proxy_header: header,
            ..config()
        },
    );
    (state, prober)
}

const PROXY: &str = "10.0.0.5";

/// Extra request headers, as raw bytes (values may be non-ASCII).
type Headers<'a> = &'a [(&'a str, &'a [u8])];

fn with_headers(mut r: Request<Body>, headers: Headers) -> Request<Body> {
    for (k, v) in headers {
        r.headers_mut().append(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            axum::http::HeaderValue::from_bytes(v).unwrap(),
        );
    }
    r
}

#[tokio::test]
async fn behind_a_proxy_only_the_chosen_header_names_the_client() {
    use harbormaster_web::ProxyHeader;
    // Issue 8, item 1: nginx appends to X-Forwarded-For and passes the client's
    // own Forwarded header through; the client 198.51.100.11 must not be able
    // to have 198.51.100.12 probed.
    let (state, prober) = behind_proxy(ProxyHeader::XForwardedFor);
    let spoof: Headers = &[
        ("forwarded", b"for=198.51.100.12"),
        ("x-real-ip", b"198.51.100.12"),
        ("x-forwarded-for", b"198.51.100.11"),
    ];
    let page = text(send(&state, with_headers(get("/", PROXY), spoof)).await).await;
    assert!(page.contains("198.51.100.11") && !page.contains("198.51.100.12"));
    let at = page.find("name=\"token\" value=\"").expect("consent form") + 20;
    let t = page[at..at + 64].to_string();
    let r = with_headers(
        post("/scan", PROXY, &format!("token={t}&kind=port&port=22"), &[]),
        spoof,
    );
    let resp = send(&state, r).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let id = resp.headers()[header::LOCATION].to_str().unwrap()[6..].to_string();
    assert_eq!(
        api_scan(&state, &id).await["scan"]["target"],
        "198.51.100.11"
    );
    assert_eq!(prober.starts.load(Ordering::SeqCst), 1);

    // With X-Real-IP chosen, X-Forwarded-For is the one ignored.
    let (state, _) = behind_proxy(ProxyHeader::XRealIp);
    let page = text(send(&state, with_headers(get("/", PROXY), spoof)).await).await;
    assert!(page.contains("198.51.100.12") && !page.contains("198.51.100.11"));
}

#[tokio::test]
async fn a_trusted_proxy_without_a_usable_client_gets_a_refusal_page_not_a_probe() {
    use harbormaster_web::ProxyHeader;
    let cases: &[(ProxyHeader, Headers, &str)] = &[
        (ProxyHeader::XForwardedFor, &[], "missing"),
        (
            ProxyHeader::XForwardedFor,
            &[("forwarded", b"for=198.51.100.12")],
            "missing",
        ),
        (
            ProxyHeader::XForwardedFor,
            &[("x-forwarded-for", b"198.51.100.\xe9")],
            "not printable ASCII",
        ),
        (
            ProxyHeader::XForwardedFor,
            &[("x-forwarded-for", b"198.51.100.12, garbage")],
            "not an IP address",
        ),
        (
            ProxyHeader::XForwardedFor,
            &[("x-forwarded-for", b"10.0.0.5")],
            "trusted proxies",
        ),
        (
            ProxyHeader::Forwarded,
            &[("forwarded", b"for=10.0.0.5")],
            "trusted proxies",
        ),
        (
            ProxyHeader::Forwarded,
            &[("forwarded", b"for=unknown")],
            "unknown",
        ),
        (
            ProxyHeader::Forwarded,
            &[("forwarded", b"for=_hidden")],
            "obfuscated",
        ),
    ];
    for (header, headers, why) in cases {
        let (state, prober) = behind_proxy(*header);
        let resp = send(&state, with_headers(get("/", PROXY), headers)).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let page = text(resp).await;
        assert!(
            page.contains("This address cannot be tested") && page.contains(why),
            "{header:?} {headers:?}: {page}"
        );
        assert!(!page.contains(PROXY), "the proxy is never offered: {page}");
        assert!(!page.contains("name=\"token\""), "no consent form");
        // A token issued for the proxy's own address does not help either.
        let t = token(&state, "203.0.113.50").await;
        let r = with_headers(
            post("/scan", PROXY, &format!("token={t}&kind=common"), &[]),
            headers,
        );
        let resp = send(&state, r).await;
        assert_eq!(
            resp.status(),
            StatusCode::FORBIDDEN,
            "{header:?} {headers:?}"
        );
        assert!(text(resp).await.contains("reverse proxy"));
        assert_eq!(prober.starts.load(Ordering::SeqCst), 0, "nothing probed");
    }
}

#[tokio::test]
async fn embedded_ipv4_and_reserved_ranges_are_refused_even_with_allow_private() {
    let state = state_with(Scripted::new(|_| PortState::Stealth), config());
    for (peer, why) in [
        ("2002:c633:640b::1", "6to4 addresses embed another host"),
        ("64:ff9b::c633:640b", "NAT64 addresses embed another host"),
        ("2001:0:c633:640b::1", "Teredo addresses embed another host"),
        ("100::1", "reserved special-purpose range"),
        ("240.0.0.1", "reserved special-purpose range"),
    ] {
        let page = text(send(&state, get("/", peer)).await).await;
        assert!(page.contains(why), "{peer}: {page}");
        assert!(!page.contains("name=\"token\""), "{peer}: no consent form");
    }
}

/// The `<h1>` of a page.
fn heading(page: &str) -> &str {
    let at = page.find("<h1>").expect("a heading") + 4;
    &page[at..at + page[at..].find("</h1>").unwrap()]
}

#[tokio::test]
async fn non_canonical_port_addresses_redirect_permanently() {
    let state = state_with(Scripted::new(|_| PortState::Stealth), config());
    for path in ["/port/021", "/port/0021", "/port/00000021"] {
        let resp = send(&state, get(path, VISITOR)).await;
        assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT, "{path}");
        assert_eq!(resp.headers()[header::LOCATION], "/port/21", "{path}");
    }
    let page = text(send(&state, get("/port/21", VISITOR)).await).await;
    assert!(
        page.contains("<link rel=\"canonical\" href=\"/port/21\">"),
        "{page}"
    );
    assert!(page.contains("rel=\"icon\""));
}

#[tokio::test]
async fn the_search_page_finds_names_malware_and_tags() {
    let state = state_with(Scripted::new(|_| PortState::Stealth), config());
    let resp = send(&state, get("/search?q=remote+desktop", VISITOR)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let page = text(resp).await;
    assert!(page.contains("href=\"/port/3389#tcp\""), "{page}");
    let netbus = text(send(&state, get("/search?q=netbus", VISITOR)).await).await;
    assert!(netbus.contains("href=\"/port/12345#tcp\""), "{netbus}");
    // A tag alone lists its ports; with words, only tagged hits remain.
    let tagged = text(send(&state, get("/search?tag=remote-access", VISITOR)).await).await;
    assert!(tagged.contains("href=\"/port/3389#tcp\""), "{tagged}");
    assert!(!tagged.contains("href=\"/port/80#tcp\""), "{tagged}");
    // A bare port number goes to its page.
    let resp = send(&state, get("/search?q=443", VISITOR)).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[header::LOCATION], "/port/443");
    // Empty: a friendly page with the form, not an error.
    let resp = send(&state, get("/search", VISITOR)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(text(resp).await.contains("Type a word"));
    // Too long, or an unknown tag: 400 with the form and what is valid.
    let long = "a".repeat(500);
    let resp = send(&state, get(&format!("/search?q={long}"), VISITOR)).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let page = text(resp).await;
    assert!(page.contains("at most 100"), "{page}");
    assert!(!page.contains(&long), "the echo is cut to the limit");
    let resp = send(&state, get("/search?q=x&tag=nope", VISITOR)).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(text(resp).await.contains("remote-access"));
    // Bad encoding is not a crash either.
    let resp = send(&state, get("/search?q=%ff%fe", VISITOR)).await;
    assert!(resp.status().is_success() || resp.status() == StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn error_pages_name_the_problem_and_keep_the_input() {
    let state = state_with(Scripted::new(|_| PortState::Stealth), config());
    let page = text(send(&state, get("/port/abc", VISITOR)).await).await;
    assert_eq!(heading(&page), "That is not a port number");
    assert!(page.contains("name=\"n\""), "a form to try again");
    let t = token(&state, VISITOR).await;
    let resp = send(
        &state,
        post(
            "/scan",
            VISITOR,
            &format!("token={t}&kind=custom&ports=1-2000"),
            &[],
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let page = text(resp).await;
    assert_eq!(heading(&page), "That list is too long");
    assert!(
        page.contains("value=\"1-2000\""),
        "the list is kept: {page}"
    );
    assert!(
        page.contains(&format!("value=\"{t}\"")),
        "the unspent token is kept"
    );
    // Suggestions stay within the cap (1024): no `service` (1056) or `all`.
    let resp = send(
        &state,
        post(
            "/scan",
            VISITOR,
            &format!("token={t}&kind=custom&ports=22%2Cfoo"),
            &[],
        ),
    )
    .await;
    let page = text(resp).await;
    assert_eq!(heading(&page), "That list could not be read");
    assert!(
        page.contains("common") && !page.contains("service") && !page.contains(", all"),
        "{page}"
    );
    assert!(page.contains("value=\"22,foo\""), "{page}");
    // The kept form works: fixed and resent with the same token, it starts a test.
    let id = start(&state, VISITOR, "kind=custom&ports=22").await;
    api_scan(&state, &id).await;
    // An expired form says so.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let old = state
        .csrf()
        .issue_at(VISITOR.parse().unwrap(), now - 11 * 60);
    let page = text(
        send(
            &state,
            post("/scan", VISITOR, &format!("token={old}&kind=common"), &[]),
        )
        .await,
    )
    .await;
    assert_eq!(heading(&page), "This form has expired");
    // 429 says "Please wait".
    let slow_state = state_with(
        slow(Duration::from_millis(50), |_| PortState::Stealth),
        config(),
    );
    let _id = start(&slow_state, VISITOR, "kind=common").await;
    let t = token(&slow_state, VISITOR).await;
    let resp = send(
        &slow_state,
        post("/scan", VISITOR, &format!("token={t}&kind=common"), &[]),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(heading(&text(resp).await), "Please wait");
}

#[tokio::test]
async fn a_typed_list_with_common_still_ticked_runs_custom() {
    let state = state_with(Scripted::new(|_| PortState::Stealth), config());
    let id = start(&state, VISITOR, "kind=common&ports=22%2C8080").await;
    let v = api_scan(&state, &id).await;
    assert_eq!(v["scan"]["ports"], "22,8080", "{v}");
    // An empty (or blank) field leaves the common test as chosen.
    let id = start(&state, "203.0.113.51", "kind=common&ports=+").await;
    let v = api_scan(&state, &id).await;
    assert_ne!(v["scan"]["ports"], "", "{v}");
    assert!(v["scan"]["ports"].as_str().unwrap().contains("1720"), "{v}");
}

#[tokio::test]
async fn the_start_page_explains_and_preselects() {
    let state = state_with(Scripted::new(|_| PortState::Stealth), config());
    let page = text(send(&state, get("/", VISITOR)).await).await;
    assert!(page.contains("Recommended for a first visit"));
    assert!(page.contains("for 24 hours"), "retention in words: {page}");
    assert!(page.contains("anyone you give the result"));
    assert!(page.contains("src=\"/static/home.js\""));
    assert!(
        page.contains("value=\"common\" id=\"kind-common\" checked"),
        "{page}"
    );
    // The scan page's "run the wider test" links land on the choices.
    assert!(page.contains("id=\"tests\""), "{page}");
    let svc = text(send(&state, get("/?test=service", VISITOR)).await).await;
    assert!(
        svc.contains("value=\"service\" id=\"kind-service\" checked"),
        "{svc}"
    );
    assert!(!svc.contains("value=\"common\" id=\"kind-common\" checked"));
    // The full test cannot be preselected where it is off.
    let full = text(send(&state, get("/?test=full", VISITOR)).await).await;
    assert!(full.contains("value=\"common\" id=\"kind-common\" checked"));
    let js = send(&state, get("/static/home.js", VISITOR)).await;
    assert_eq!(
        js.headers()[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    for icon in ["/favicon.ico", "/static/icon.svg"] {
        let resp = send(&state, get(icon, VISITOR)).await;
        assert_eq!(resp.status(), StatusCode::OK, "{icon}");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "image/svg+xml");
        assert!(text(resp).await.starts_with("<svg"));
    }
}

#[tokio::test]
async fn empty_transports_collapse_and_references_are_titled() {
    let state = state_with(Scripted::new(|_| PortState::Stealth), config());
    let rdp = text(send(&state, get("/port/3389", VISITOR)).await).await;
    assert!(rdp.contains(">learn.microsoft.com › "), "{rdp}");
    assert!(
        !rdp.contains(">https://"),
        "no raw URLs as link text: {rdp}"
    );
    // A port with nothing on either transport: both collapse to a line.
    let page = text(send(&state, get("/port/4", VISITOR)).await).await;
    assert!(page.contains("<p class=\"noise\" id=\"tcp\">"), "{page}");
    assert!(page.contains("<p class=\"noise\" id=\"udp\">"), "{page}");
    assert!(!page.contains("Firewall rules that drop 4/tcp"), "{page}");
    // Port 22 keeps its full sections.
    let ssh = text(send(&state, get("/port/22", VISITOR)).await).await;
    assert!(
        ssh.contains("<section class=\"entry\" id=\"tcp\">"),
        "{ssh}"
    );
}

/// A database written before values were typed is served as before, and a
/// value no type has is an internal-error page (logged), never a panic;
/// the service keeps serving.
#[tokio::test]
async fn old_databases_are_served_and_unknown_stored_values_are_a_500() {
    let dir = std::env::temp_dir().join(format!("hm-handlers-typed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (good, bad) = ("a".repeat(32), "b".repeat(32));
    let old = rusqlite::Connection::open(dir.join("harbormaster.sqlite3")).unwrap();
    old.execute_batch(&format!(
        "CREATE TABLE scans (
            id TEXT PRIMARY KEY, target TEXT NOT NULL, test TEXT NOT NULL,
            ports TEXT NOT NULL, mode TEXT NOT NULL, status TEXT NOT NULL,
            created INTEGER NOT NULL, finished INTEGER, expires INTEGER NOT NULL,
            watch TEXT, error TEXT);
         CREATE TABLE results (
            scan_id TEXT NOT NULL REFERENCES scans(id) ON DELETE CASCADE,
            port INTEGER NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL,
            rtt_ms REAL, tries INTEGER NOT NULL, ttl INTEGER,
            PRIMARY KEY (scan_id, port));
         INSERT INTO scans VALUES
            ('{good}', '203.0.113.50', 'custom', '21-22', 'connect', 'done', 1, 3, 4102444800, NULL, NULL),
            ('{bad}', '203.0.113.50', 'custom', '21', 'syn', 'done', 1, 3, 4102444800, NULL, NULL);
         INSERT INTO results VALUES
            ('{good}', 21, 'open', 'connected', 0.5, 1, NULL),
            ('{good}', 22, 'filtered', 'icmpv6-1-4', NULL, 1, 60),
            ('{bad}', 21, 'half-open', 'syn-ack', NULL, 1, NULL);"
    ))
    .unwrap();
    drop(old);
    let state = AppState::new(
        config(),
        Db::open(&dir).unwrap(),
        Scripted::new(|_| PortState::Stealth),
    );
    let resp = send(&state, get(&format!("/api/scans/{good}"), VISITOR)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&text(resp).await).unwrap();
    assert_eq!(v["scan"]["test"], "custom");
    assert_eq!(v["scan"]["mode"], "connect");
    assert_eq!(v["scan"]["ports"], "21-22");
    assert_eq!(v["scan"]["results"][1]["state"], "filtered");
    assert_eq!(v["scan"]["results"][1]["reason"], "icmpv6-1-4");
    assert_eq!(v["scan"]["results"][1]["proto"], "tcp");
    assert_eq!(v["counts"]["open"], 1);
    assert_eq!(v["verdict"]["wider"], "service");
    let page = text(send(&state, get(&format!("/scan/{good}"), VISITOR)).await).await;
    assert!(page.contains("blocked (ICMPv6 1-4)"), "{page}");
    assert!(page.contains("connection accepted"), "{page}");
    let report = text(send(&state, get(&format!("/scan/{good}/report.txt"), VISITOR)).await).await;
    assert!(
        report.contains("Method:   full TCP connections"),
        "{report}"
    );

    for path in [
        format!("/scan/{bad}"),
        format!("/scan/{bad}/report.txt"),
        format!("/api/scans/{bad}"),
    ] {
        let resp = send(&state, get(&path, VISITOR)).await;
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        let body = text(resp).await;
        assert!(
            !body.contains("half-open"),
            "the detail stays in the log: {body}"
        );
    }
    // Still serving.
    let resp = send(&state, get(&format!("/api/scans/{good}"), VISITOR)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    drop(state);
    std::fs::remove_dir_all(&dir).unwrap();
}
