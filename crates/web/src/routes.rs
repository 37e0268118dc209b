//! HTTP handlers. Every error becomes a page (or, under `/api`, a JSON body)
//! through [`AppError`], which logs internal detail and never shows it.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::serve::IncomingStream;
use harbormaster_knowledge::{Proto, port_page};
use harbormaster_probe::{
    COMMON_PORTS, CapError, MAX_SPEC_CHARS, PortList, PortResult, SERVICE_PORTS,
};
use maud::{Markup, html};
use serde::Deserialize;
use tokio::sync::broadcast;

use crate::AppState;
use crate::csrf;
use crate::db::{Status, StoredResult, StoredScan};
use crate::limits::StreamGuard;
use crate::limits::limit_key;
use crate::policy;
use crate::render::{self, Frame, Offer, Visitor};
use crate::scans::{Live, LiveEvent, StartError, TestKind, verdict};

/// The two ends of an HTTP connection: who asked, and which of our addresses they reached.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The peer (the visitor, or a proxy).
    pub peer: SocketAddr,
    /// Our address the peer connected to.
    pub local: SocketAddr,
}

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for ConnInfo {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        let peer = *stream.remote_addr();
        let local = stream.io().local_addr().unwrap_or(peer);
        ConnInfo { peer, local }
    }
}

/// A failed request, rendered as a page.
#[derive(Debug)]
pub enum AppError {
    /// 400: malformed input; the message says what is valid.
    BadRequest(String),
    /// 403: the request is not allowed (bad token, refused address).
    Forbidden(String),
    /// 404.
    NotFound,
    /// 429: a limit; retry after the duration.
    TooMany {
        /// What limit.
        why: String,
        /// When to retry.
        retry_after: Duration,
        /// The visitor's running scan.
        running: Option<String>,
    },
    /// 500: logged, not shown.
    Internal(String),
    /// 413: the request body is over its limit; the message says the limit.
    TooLarge(String),
}

/// Most bytes of a `POST /scan` body: the consent form with a custom list of
/// [`MAX_SPEC_CHARS`] characters, URL-encoded, fits comfortably.
pub const FORM_LIMIT: usize = 8 * 1024;

/// Most bytes of any other request body (no other route reads one).
pub const BODY_LIMIT: usize = 1024;

/// The visitor's input, quoted, shortened to a readable length.
fn preview(spec: &str) -> String {
    const MAX: usize = 60;
    let spec = spec.trim();
    if spec.chars().count() <= MAX {
        format!("{spec:?}")
    } else {
        let head: String = spec.chars().take(MAX).collect();
        format!("{head:?}…")
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, heading, message, extra, retry) = match self {
            AppError::BadRequest(m) => (
                StatusCode::BAD_REQUEST,
                "That request was not understood",
                m,
                None,
                None,
            ),
            AppError::Forbidden(m) => (StatusCode::FORBIDDEN, "Not allowed", m, None, None),
            AppError::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing at this address. Scans are deleted after the retention period."
                    .to_string(),
                None,
                None,
            ),
            AppError::TooMany {
                why,
                retry_after,
                running,
            } => {
                let secs = retry_after.as_secs().max(1);
                let extra = running.map(|id| html! { p { a href=(format!("/scan/{id}")) { "Watch your running test" } } });
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    "Please wait",
                    format!("{why}. Try again in {secs} second(s)."),
                    extra,
                    Some(secs),
                )
            }
            AppError::TooLarge(m) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "That request was too large",
                m,
                None,
                None,
            ),
            AppError::Internal(detail) => {
                tracing::error!("internal error: {detail}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The server could not complete the request. It has been logged.".to_string(),
                    None,
                    None,
                )
            }
        };
        let body = render::page(
            Frame {
                title: heading,
                refresh: None,
            },
            render::error_body(heading, &message, extra),
        );
        let mut resp = (status, Html(body.into_string())).into_response();
        if let Some(secs) = retry {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// A failed API request, as JSON.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

fn html_page(title: &str, refresh: Option<u32>, body: Markup) -> Html<String> {
    Html(render::page(Frame { title, refresh }, body).into_string())
}

/// The address this request would probe (`None` when a trusted proxy named
/// no usable client), and why it can't be, if so.
fn visitor(
    state: &AppState,
    conn: &ConnInfo,
    headers: &HeaderMap,
) -> (Option<IpAddr>, Result<(), policy::Refusal>) {
    let cfg = state.config();
    let target = match policy::target(
        conn.peer.ip(),
        headers,
        &cfg.trusted_proxies,
        cfg.proxy_header,
    ) {
        Ok(t) => t,
        Err(refusal) => return (None, Err(refusal)),
    };
    let mut own = state.own_addresses().to_vec();
    own.push(conn.local.ip());
    let check = policy::check(target, &own, cfg.allow_private);
    (Some(target), check)
}

fn refusal_message(r: policy::Refusal) -> String {
    format!("{r}. Harbormaster probes only the public address a visit comes from.")
}

/// `GET /`.
pub async fn home(
    State(state): State<AppState>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    headers: HeaderMap,
) -> Html<String> {
    let (ip, check) = visitor(&state, &conn, &headers);
    let rdns = match ip {
        Some(ip) => state.rdns().name(ip).await,
        None => None,
    };
    let token = ip.map(|ip| state.csrf().issue(ip)).unwrap_or_default();
    let v = Visitor {
        ip: ip.map_or_else(|| "not known".to_string(), |ip| ip.to_string()),
        rdns,
        token: &token,
        refusal: check.err().map(refusal_message),
    };
    let offer = Offer {
        mode: state.scans().mode_for(ip.unwrap_or(conn.peer.ip())),
        custom_cap: state.config().custom_cap,
        allow_full: state.config().allow_full,
    };
    html_page("Probe your connection", None, render::home(&v, &offer))
}

fn parse_port(text: &str) -> Result<u16, String> {
    let t = text.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{t:?} is not a port number: enter a whole number from 0 to 65535."
        ));
    }
    t.parse()
        .map_err(|_| format!("Port {t} is out of range: ports run from 0 to 65535."))
}

/// Query of the "Enter port" form.
#[derive(Debug, Deserialize)]
pub struct JumpQuery {
    n: Option<String>,
}

/// `GET /port?n=…`: the "Enter port" form.
pub async fn jump(Query(q): Query<JumpQuery>) -> Result<Redirect, AppError> {
    let n = parse_port(q.n.as_deref().unwrap_or("")).map_err(AppError::BadRequest)?;
    Ok(Redirect::to(&format!("/port/{n}")))
}

/// `GET /port/{n}`.
pub async fn port(
    State(state): State<AppState>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    headers: HeaderMap,
    Path(n): Path<String>,
) -> Result<Html<String>, AppError> {
    let n = parse_port(&n).map_err(AppError::BadRequest)?;
    let (ip, check) = visitor(&state, &conn, &headers);
    let token = ip
        .filter(|_| check.is_ok())
        .map(|ip| state.csrf().issue(ip));
    Ok(html_page(
        &format!("Port {n}"),
        None,
        render::port(n, token.as_deref()),
    ))
}

/// `GET /api/ports/{n}`.
pub async fn api_port(
    Path(n): Path<String>,
) -> Result<axum::Json<harbormaster_knowledge::PortPage>, ApiError> {
    let n = parse_port(&n).map_err(|m| ApiError(StatusCode::BAD_REQUEST, m))?;
    Ok(axum::Json(port_page(n, &Proto::ALL)))
}

/// The consent form.
#[derive(Debug, Deserialize)]
pub struct ScanForm {
    token: Option<String>,
    kind: Option<String>,
    port: Option<String>,
    ports: Option<String>,
}

/// `POST /scan`: consent given; start the chosen test against the requester.
pub async fn start_scan(
    State(state): State<AppState>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    headers: HeaderMap,
    form: Result<Form<ScanForm>, FormRejection>,
) -> Result<Redirect, AppError> {
    let Form(form) = form.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::TooLarge(format!(
                "The form was larger than the {FORM_LIMIT} bytes this server accepts. A custom list of up to {MAX_SPEC_CHARS} characters fits; write runs of ports as ranges, e.g. 8000-8100."
            ))
        } else {
            AppError::BadRequest("Start a test with the form on the start page.".into())
        }
    })?;
    csrf::check_origin(&headers).map_err(|e| AppError::Forbidden(e.to_string()))?;
    let (target, check) = visitor(&state, &conn, &headers);
    let Some(target) = target else {
        let why = check.err().map(refusal_message).unwrap_or_default();
        return Err(AppError::Forbidden(why));
    };
    let token = state
        .csrf()
        .check(target, form.token.as_deref())
        .map_err(|e| AppError::Forbidden(e.to_string()))?;
    check.map_err(|r| AppError::Forbidden(refusal_message(r)))?;
    let cfg = state.config();
    let (test, ports) = match form.kind.as_deref().unwrap_or("") {
        "common" => (
            TestKind::Common,
            PortList::from_ports(COMMON_PORTS.to_vec()),
        ),
        "service" => (
            TestKind::Service,
            PortList::from_ports(SERVICE_PORTS.collect()),
        ),
        "full" if cfg.allow_full => (
            TestKind::Full,
            PortList::from_ports((0..=u16::MAX).collect()),
        ),
        "full" => {
            return Err(AppError::Forbidden(
                "The full 0–65535 test is not enabled on this server.".into(),
            ));
        }
        "port" => {
            let n = parse_port(form.port.as_deref().unwrap_or("")).map_err(AppError::BadRequest)?;
            (TestKind::Port(n), PortList::from_ports(vec![n]))
        }
        "custom" => {
            let spec = form.ports.as_deref().unwrap_or("");
            // Length and port count are checked before any port is listed.
            let list = PortList::parse_capped(spec, cfg.custom_cap).map_err(|e| match e {
                CapError::Spec(e) => AppError::BadRequest(format!("{e}.")),
                CapError::TooManyPorts { count, cap } => AppError::BadRequest(format!(
                    "That list ({}) has {count} ports; a custom test may have at most {cap}.",
                    preview(spec)
                )),
                e => AppError::BadRequest(format!("{}.", capitalized(&e.to_string()))),
            })?;
            (TestKind::Custom, list)
        }
        other => {
            return Err(AppError::BadRequest(format!(
                "Unknown test {other:?}: choose common, service, custom or port."
            )));
        }
    };
    state
        .csrf()
        .consume(token)
        .map_err(|e| AppError::Forbidden(e.to_string()))?;
    let started = state.scans().start(target, test, ports);
    if started.is_err() {
        // No test started: the consent is still unspent.
        state.csrf().release(token);
    }
    match started {
        Ok(live) => Ok(Redirect::to(&format!("/scan/{}", live.id))),
        Err(StartError::Limited {
            why,
            retry_after,
            running,
        }) => Err(AppError::TooMany {
            why,
            retry_after,
            running,
        }),
        Err(e) => Err(AppError::Internal(e.to_string())),
    }
}

fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The scan as stored, with live results merged in while it runs.
async fn load(state: &AppState, id: &str) -> Result<(StoredScan, Vec<u16>), AppError> {
    if !valid_id(id) {
        return Err(AppError::NotFound);
    }
    let live = state.scans().live(id);
    let db = state.scans().db().clone();
    let key = id.to_string();
    // A scan whose outcome could not be stored is served from memory.
    let stored = match state.scans().kept(id) {
        Some(kept) => kept,
        None => tokio::task::spawn_blocking(move || db.load(&key))
            .await
            .map_err(|e| AppError::Internal(e.to_string()))?
            .map_err(|e| AppError::Internal(e.to_string()))?
            .ok_or(AppError::NotFound)?,
    };
    let mut stored = stored;
    if live.is_none() && stored.status == Status::Running {
        // Not running in this process, and its outcome could not be stored (and
        // is no longer in memory): never show it as running forever.
        stored.status = Status::Failed;
        stored.error = Some("the server could not store this test's outcome".into());
    }
    let ports = match &live {
        Some(l) => {
            let (results, _) = l.subscribe();
            stored.results = results.iter().map(stored_result).collect();
            stored.results.sort_by_key(|r| r.port);
            l.ports.ports().to_vec()
        }
        None => match PortList::parse(&stored.ports) {
            Ok(p) => p.ports().to_vec(),
            Err(_) => stored.results.iter().map(|r| r.port).collect(),
        },
    };
    Ok((stored, ports))
}

fn stored_result(r: &PortResult) -> StoredResult {
    StoredResult {
        port: r.port,
        state: r.state.to_string(),
        reason: r.reason.to_string(),
        rtt_ms: r.rtt.map(|d| (d.as_secs_f64() * 1e6).round() / 1e3),
        tries: r.tries,
        ttl: r.ttl,
    }
}

/// `GET /scan/{id}`.
pub async fn scan_page(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Html<String>, AppError> {
    let (stored, ports) = load(&state, &id).await?;
    let running = stored.status == Status::Running;
    let v = (!running).then(|| verdict(&stored));
    // Without JavaScript the page reloads itself while the test runs; every few
    // seconds is enough to watch it progress (and each reload is a full page).
    Ok(html_page(
        "Test results",
        running.then_some(4),
        render::scan(&stored, &ports, v.as_ref()),
    ))
}

/// `GET /scan/{id}/report.txt`.
pub async fn report(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let (stored, _) = load(&state, &id).await?;
    if stored.status == Status::Running {
        return Err(AppError::TooMany {
            why: "the test is still running".into(),
            retry_after: Duration::from_secs(2),
            running: Some(stored.id),
        });
    }
    let text = crate::report::text(&stored, &verdict(&stored));
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

/// `GET /api/scans/{id}`.
pub async fn api_scan(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match load(&state, &id).await {
        Ok((stored, _)) => {
            let v = (stored.status != Status::Running).then(|| verdict(&stored));
            let counts: serde_json::Map<String, serde_json::Value> =
                ["open", "closed", "filtered", "stealth"]
                    .iter()
                    .map(|s| {
                        (
                            s.to_string(),
                            stored
                                .results
                                .iter()
                                .filter(|r| r.state == *s)
                                .count()
                                .into(),
                        )
                    })
                    .collect();
            Ok(axum::Json(serde_json::json!({
                "scan": stored,
                "counts": counts,
                "verdict": v,
            }))
            .into_response())
        }
        Err(AppError::NotFound) => Err(ApiError(StatusCode::NOT_FOUND, "no such scan".into())),
        Err(e) => {
            // The detail (paths, SQL errors) is for the log, not for the client.
            tracing::error!("GET /api/scans/{id}: {e:?}");
            Err(ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; it has been logged".into(),
            ))
        }
    }
}

/// Query of the event stream: `from` is the index of the first result the
/// page has not shown yet (it renders the ones before).
#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    from: Option<String>,
}

/// An event stream's position: results `next..` of the scan are still to send.
struct Cursor {
    live: Arc<Live>,
    rx: broadcast::Receiver<LiveEvent>,
    next: usize,
    pending: VecDeque<Event>,
    /// The scan has ended: send what is left, then `done`.
    scan_ended: bool,
    done_sent: bool,
    _slot: StreamGuard,
}

/// Stored results read into a stream at a time, so a stream of a full scan
/// holds a batch, not the whole replay, while its client reads.
const STREAM_BATCH: usize = 256;

impl Cursor {
    /// Queues up to [`STREAM_BATCH`] stored results from `next` on; false when
    /// there were none. The scan's result sequence is the source of truth, so
    /// a receiver that lagged loses nothing.
    fn fill(&mut self) -> bool {
        let results = self.live.results_range(self.next, STREAM_BATCH);
        for r in &results {
            self.pending.push_back(port_event(self.next, r));
            self.next += 1;
        }
        !results.is_empty()
    }

    /// The next event, waiting for the scan when everything stored is sent.
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            if self.fill() {
                continue;
            }
            if self.done_sent {
                return None;
            }
            if self.scan_ended {
                self.done_sent = true;
                return Some(Event::default().event("done").data("{}"));
            }
            match self.rx.recv().await {
                // New results (or missed notices): they are read from the sequence.
                Ok(LiveEvent::Port(_)) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Ok(LiveEvent::Done) | Err(broadcast::error::RecvError::Closed) => {
                    self.scan_ended = true
                }
            }
        }
    }
}

fn port_event(index: usize, r: &PortResult) -> Event {
    Event::default()
        .event("port")
        .id(index.to_string())
        .data(format!(
            "{{\"port\":{},\"state\":\"{}\",\"reason\":\"{}\",\"rtt_ms\":{},\"ttl\":{}}}",
            r.port,
            r.state,
            r.reason,
            // The page shows them per port, as the server-rendered rows do.
            r.rtt.map_or("null".to_string(), |d| format!(
                "{:.3}",
                d.as_secs_f64() * 1e3
            )),
            r.ttl.map_or("null".to_string(), |t| t.to_string()),
        ))
}

/// The first result index a client still needs: after its `Last-Event-ID`
/// (a reconnect), else `?from=` (a fresh page), else 0. Bad values count as absent.
fn resume_index(headers: &HeaderMap, from: Option<&str>) -> usize {
    let parse = |s: &str| -> Option<usize> {
        let t = s.trim();
        (!t.is_empty() && t.len() <= 10 && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(parse)
        .map(|n| n + 1);
    let from = from.and_then(parse);
    last.max(from).unwrap_or(0)
}

/// `GET /scan/{id}/events`: results as Server-Sent Events (`port` with the
/// result's index as its id, then `done`), from where the client left off.
/// Streams are capped per scan and per visitor; beyond that the answer is 429
/// and the page falls back to reloading itself.
pub async fn events(
    State(state): State<AppState>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, AppError> {
    if !valid_id(&id) {
        return Err(AppError::NotFound);
    }
    let done_now = || {
        let done = futures_util::stream::iter([Ok::<_, Infallible>(
            Event::default().event("done").data("{}"),
        )]);
        Sse::new(done).into_response()
    };
    let Some(live) = state.scans().live(&id) else {
        // Finished (or unknown): tell the page to reload.
        load(&state, &id).await?;
        return Ok(done_now());
    };
    // Without a readable client (a misconfigured proxy) every such stream
    // counts against the peer, so they share one visitor's cap.
    let (ip, _) = visitor(&state, &conn, &headers);
    let key = limit_key(ip.unwrap_or(conn.peer.ip()), state.config().ipv6_prefix);
    let slot = state
        .streams()
        .acquire(&id, key)
        .map_err(|why| AppError::TooMany {
            why: why.to_string(),
            retry_after: Duration::from_secs(10),
            running: None,
        })?;
    let rx = live.events_receiver();
    let mut cursor = Cursor {
        live,
        rx,
        next: resume_index(&headers, q.from.as_deref()),
        pending: VecDeque::new(),
        scan_ended: false,
        done_sent: false,
        _slot: slot,
    };
    // The scan may have ended between looking it up and subscribing; then its
    // `Done` was sent before we listened, and it is no longer live.
    cursor.scan_ended = state.scans().live(&id).is_none();
    let stream = futures_util::stream::unfold(cursor, |mut c| async move {
        let e = c.next_event().await?;
        Some((Ok::<_, Infallible>(e), c))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// `GET /static/style.css`.
pub async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        // One stylesheet, kept in two files: the frame and the start, port and
        // error pages (base.css), and the scan page's grid and verdict (scan.css).
        concat!(
            include_str!("assets/base.css"),
            include_str!("assets/scan.css")
        ),
    )
        .into_response()
}

/// `GET /static/live.js`.
pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("assets/live.js"),
    )
        .into_response()
}

/// Anything else.
pub async fn not_found() -> AppError {
    AppError::NotFound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_points_come_from_last_event_id_or_from() {
        let with = |id: &str| {
            let mut h = HeaderMap::new();
            h.insert("last-event-id", HeaderValue::from_str(id).unwrap());
            h
        };
        let none = HeaderMap::new();
        assert_eq!(resume_index(&none, None), 0);
        assert_eq!(resume_index(&with("41"), None), 42);
        assert_eq!(resume_index(&with(" 41 "), None), 42);
        assert_eq!(resume_index(&none, Some("7")), 7);
        // A reconnect of a page that started at ?from=7 resumes after its last id.
        assert_eq!(resume_index(&with("41"), Some("7")), 42);
        assert_eq!(resume_index(&with("3"), Some("7")), 7);
        for bad in ["", "-1", "1e3", "0x10", "99999999999", "4 2"] {
            assert_eq!(resume_index(&with(bad), None), 0, "{bad:?}");
            assert_eq!(resume_index(&none, Some(bad)), 0, "{bad:?}");
        }
        // The largest id a stream can have still resumes (no overflow).
        assert_eq!(resume_index(&with("9999999999"), None), 10_000_000_000);
    }
}
