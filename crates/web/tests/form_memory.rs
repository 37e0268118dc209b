//! What a hostile custom list costs the server. A list that repeats `all` used
//! to be expanded item by item before the cap was checked: 500 items of `all`
//! were 500 × 65,536 ports, 65 MB of `u16` before the first comparison.
//!
//! Memory is measured as the process's peak resident set (`VmHWM`), reset
//! through `/proc/self/clear_refs` before each request, minus the resident set
//! before it. One test in this binary, on one thread, so nothing else runs
//! meanwhile. What it proves: the request touched no more than a few MB of new
//! memory; RSS is page-granular and includes allocator slack, so the bound is
//! loose (8 MB) but far below what expansion costs. Linux only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use harbormaster_probe::ProbeError;
use harbormaster_web::{AppState, Cancel, Config, ConnInfo, Db, ProbeMode, Prober, app};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// `VmRSS` and `VmHWM` of this process, in KiB.
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/self/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets the peak resident set to the current one.
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("write /proc/self/clear_refs");
}

/// Never reached: every request here is refused before a scan starts.
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
        panic!("no scan may start");
    }
}

fn request(path: &str, method: &str, body: String) -> Request<Body> {
    let mut r = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    r.extensions_mut().insert(ConnectInfo(ConnInfo {
        peer: SocketAddr::new("203.0.113.50".parse().unwrap(), 50_000),
        local: "192.0.2.1:8080".parse().unwrap(),
    }));
    r
}

#[tokio::test(flavor = "current_thread")]
async fn hostile_custom_lists_cost_little_memory_and_time() {
    let config = Config {
        allow_private: true,
        reverse_dns: false,
        ..Config::default()
    };
    let state = AppState::new(config, Db::in_memory().unwrap(), Arc::new(NoProbe));
    let page = app(state.clone())
        .oneshot(request("/", "GET", String::new()))
        .await
        .unwrap();
    let page = String::from_utf8(
        page.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    let at = page.find("name=\"token\" value=\"").unwrap() + 20;
    let token = page[at..at + 64].to_string();

    let all_500 = vec!["all"; 500].join(",");
    let service_500 = vec!["service"; 500].join(",");
    let numbers_40k = (0..9000)
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(",");
    for (what, ports, status) in [
        ("warm-up", "1-2000".to_string(), StatusCode::BAD_REQUEST),
        ("500 × all", all_500, StatusCode::BAD_REQUEST),
        ("500 × service", service_500, StatusCode::BAD_REQUEST),
        ("40 KB of ports", numbers_40k, StatusCode::PAYLOAD_TOO_LARGE),
    ] {
        let body = format!("token={token}&kind=custom&ports={ports}");
        let len = body.len();
        let req = request("/scan", "POST", body);
        let router = app(state.clone());
        reset_peak();
        let (before, _) = rss_kib();
        let t = Instant::now();
        let resp = router.oneshot(req).await.unwrap();
        let elapsed = t.elapsed();
        let (_, peak) = rss_kib();
        let grew = peak.saturating_sub(before);
        assert_eq!(resp.status(), status, "{what}");
        println!("{what} ({len} bytes): {status} in {elapsed:?}, peak RSS +{grew} KiB");
        assert!(grew < 8 * 1024, "{what}: peak RSS grew by {grew} KiB");
        assert!(elapsed < Duration::from_secs(1), "{what}: {elapsed:?}");
    }
}
