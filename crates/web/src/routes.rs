//! HTTP handlers. Every error becomes a page (or, under `/api`, a JSON body)
//! through [`AppError`], which logs internal detail and never shows it.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::ConnectInfo;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use harbormaster_knowledge::{Proto, port_page};
use harbormaster_probe::{
    COMMON_PORTS, CapError, MAX_SPEC_CHARS, PortList, PortResult, PortState, SERVICE_PORTS,
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
    /// 404 for an address no route serves (not a scan id): "No page at this address".
    NoPage,
    /// Any status with its own heading and, optionally, a form that keeps the
    /// visitor's input so it can be fixed and sent again.
    Titled {
        /// HTTP status.
        status: StatusCode,
        /// The page's heading, naming the problem.
        heading: &'static str,
        /// What was wrong and what is valid.
        message: String,
        /// A form or links below the message.
        extra: Option<Markup>,
    },
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
            AppError::Forbidden(m) => (
                StatusCode::FORBIDDEN,
                "This request was refused",
                m,
                None,
                None,
            ),
            AppError::NotFound => (
                StatusCode::NOT_FOUND,
                "No test at this address",
                "There is no test result here: the link may be mistyped, or the result was deleted when its keeping time ran out."
                    .to_string(),
                Some(html! { p { a href="/" { "Start a new test" } } }),
                None,
            ),
            AppError::NoPage => (
                StatusCode::NOT_FOUND,
                "No page at this address",
                "This server has no page here; the address may be mistyped.".to_string(),
                Some(html! {
                    ul {
                        li { a href="/" { "Test your connection" } " — the start page" }
                        li { a href="/search" { "Search ports" } " by number, name or malware" }
                        li { a href="/port/22" { "An example port page" } " (22, SSH)" }
                    }
                }),
                None,
            ),
            AppError::Titled {
                status,
                heading,
                message,
                extra,
            } => (status, heading, message, extra, None),
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

/// The visitor's words for a refusal: no server flags or settings (the
/// operator's detail goes to the log).
fn refusal_message(r: policy::Refusal) -> String {
    use policy::Refusal;
    tracing::info!("refused a visitor: {r}");
    let why = match r {
        Refusal::Private => "Your visit comes from a private address (a home, office or provider network), not from the internet, so there is nothing public to test. Visit this page from a connection to the internet, for example over mobile data, or ask whoever runs this server to test private networks".to_string(),
        Refusal::Documentation => "Your visit comes from an address reserved for documentation and testing, which this server does not test".to_string(),
        other => capitalized(&other.to_string()),
    };
    format!("{why}. Harbormaster probes only the public address a visit comes from.")
}

/// The visitor's words for a consent-token problem, with its own heading.
fn token_error(e: csrf::TokenError) -> AppError {
    let heading = match e {
        csrf::TokenError::Expired => "This form has expired",
        csrf::TokenError::Used => "This form was already used",
        _ => "This form cannot be used",
    };
    AppError::Titled {
        status: StatusCode::FORBIDDEN,
        heading,
        message: e.to_string(),
        extra: Some(html! { p { a href="/" { "Open a fresh start page" } } }),
    }
}

/// A bad port number: its own heading and a form to try again.
fn bad_port(message: String) -> AppError {
    AppError::Titled {
        status: StatusCode::BAD_REQUEST,
        heading: "That is not a port number",
        message,
        extra: Some(html! {
            form.retry action="/port" method="get" {
                label for="retry-n" { "Port (0–65535)" }
                input #retry-n name="n" type="number" min="0" max="65535" required;
                button { "Look it up" }
            }
        }),
    }
}

/// Presets a custom list may name within `cap`: never one the cap then rejects.
fn presets_within(cap: usize) -> String {
    let mut p = vec!["21", "20-25", "21,80,443"];
    if cap >= COMMON_PORTS.len() {
        p.push("common");
    }
    if cap > *SERVICE_PORTS.end() as usize {
        p.push("service");
    }
    if cap > u16::MAX as usize {
        p.push("all");
    }
    let (last, rest) = p.split_last().expect("never empty");
    format!("{} or {last}", rest.join(", "))
}

/// A rejected custom list: its own heading, the message, and the list given
/// back in a form (with the still unspent consent token) to fix and resend.
fn bad_custom(e: CapError, spec: &str, token: &str, cap: usize) -> AppError {
    let (heading, message) = match e {
        CapError::Spec(e) if e.spec.trim().is_empty() => (
            "No ports were given",
            format!(
                "The custom test's list is empty: type ports such as {}.",
                presets_within(cap)
            ),
        ),
        CapError::Spec(e) => (
            "That list could not be read",
            format!(
                "Invalid port list {:?}: {}; use e.g. {}.",
                e.spec,
                e.why,
                presets_within(cap)
            ),
        ),
        CapError::TooManyPorts { count, cap } => (
            "That list is too long",
            format!(
                "That list ({}) has {count} ports; a custom test may have at most {cap}. Shorten it, or run it as several tests.",
                preview(spec)
            ),
        ),
        e => (
            "That list is too long",
            format!("{}.", capitalized(&e.to_string())),
        ),
    };
    let kept: String = spec.chars().take(MAX_SPEC_CHARS).collect();
    AppError::Titled {
        status: StatusCode::BAD_REQUEST,
        heading,
        message,
        extra: Some(html! {
            form.retry method="post" action="/scan" {
                input type="hidden" name="token" value=(token);
                input type="hidden" name="kind" value="custom";
                label for="retry-ports" { "Ports for a custom test (at most " (cap) ")" }
                input #retry-ports name="ports" type="text" value=(kept) maxlength=(MAX_SPEC_CHARS) autocomplete="off" spellcheck="false";
                button.go { "Probe these ports" }
            }
        }),
    }
}

/// Query of the start page: `?test=service` ticks that test.
#[derive(Debug, Default, Deserialize)]
pub struct HomeQuery {
    test: Option<String>,
}

/// `GET /`.
pub async fn home(
    State(state): State<AppState>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    headers: HeaderMap,
    query: Result<Query<HomeQuery>, QueryRejection>,
) -> Html<String> {
    // A query names a test; one not offered here (or none) ticks Common.
    let asked = query
        .ok()
        .and_then(|Query(q)| q.test)
        .and_then(|name| TestKind::from_name(&name, || Err(())).ok().flatten());
    let selected = match asked {
        Some(TestKind::Full) if !state.config().allow_full => TestKind::Common,
        Some(t @ (TestKind::Service | TestKind::Custom | TestKind::Full)) => t,
        Some(TestKind::Common | TestKind::Port(_)) | None => TestKind::Common,
    };
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
        retention: state.config().retention,
        selected,
        verifies: state.config().verify_open,
    };
    Html(
        render::page_with(
            Frame {
                title: "Probe your connection",
                refresh: None,
            },
            render::Head {
                canonical: None,
                scripts: &["/static/home.js"],
            },
            render::home(&v, &offer),
        )
        .into_string(),
    )
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
    let n = parse_port(q.n.as_deref().unwrap_or("")).map_err(bad_port)?;
    Ok(Redirect::to(&format!("/port/{n}")))
}

/// `GET /port/{n}`.
pub async fn port(
    State(state): State<AppState>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Result<Response, AppError> {
    let n = parse_port(&raw).map_err(bad_port)?;
    let canonical = format!("/port/{n}");
    if raw != n.to_string() {
        // `/port/021`, `/port/+21`: one address per page.
        return Ok(Redirect::permanent(&canonical).into_response());
    }
    let (ip, check) = visitor(&state, &conn, &headers);
    let token = ip
        .filter(|_| check.is_ok())
        .map(|ip| state.csrf().issue(ip));
    let title = format!("Port {n}");
    Ok(Html(
        render::page_with(
            Frame {
                title: &title,
                refresh: None,
            },
            render::Head {
                canonical: Some(&canonical),
                scripts: &[],
            },
            render::port(n, token.as_deref()),
        )
        .into_string(),
    )
    .into_response())
}

/// Query of the search page.
#[derive(Debug, Default, Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
    tag: Option<String>,
}

/// `GET /search?q=…&tag=…`: the knowledge base's ranked search (as the CLI's
/// `harbormaster search`), results linking to port pages. A bare port number
/// goes straight to its page.
pub async fn search(query: Result<Query<SearchQuery>, QueryRejection>) -> Response {
    let q = query.map(|Query(q)| q).unwrap_or_default();
    let text = q.q.unwrap_or_default();
    let tag = q.tag.filter(|t| !t.trim().is_empty());
    let words = text.trim();
    let page = |status: StatusCode,
                shown: &str,
                tag: Option<&str>,
                hits: Option<&[harbormaster_knowledge::SearchHit]>,
                problem: Option<&str>| {
        let body = render::search(&render::SearchView {
            q: shown,
            tag,
            hits,
            problem,
        });
        (status, html_page("Search ports", None, body)).into_response()
    };
    if text.chars().count() > render::MAX_QUERY || tag.as_ref().is_some_and(|t| t.len() > 40) {
        let shown: String = text.chars().take(render::MAX_QUERY).collect();
        let msg = format!(
            "That search is {} characters long; at most {} are accepted. A word or two is enough, e.g. \"remote desktop\".",
            text.chars().count(),
            render::MAX_QUERY
        );
        return page(StatusCode::BAD_REQUEST, &shown, None, None, Some(&msg));
    }
    if tag.is_none()
        && !words.is_empty()
        && words.bytes().all(|b| b.is_ascii_digit())
        && let Ok(n) = parse_port(words)
    {
        return Redirect::to(&format!("/port/{n}")).into_response();
    }
    let result = match tag.as_deref() {
        Some(t) => harbormaster_knowledge::search_tagged(words, t),
        None if words.is_empty() => {
            return page(
                StatusCode::OK,
                "",
                None,
                None,
                Some("Type a word, a name or a port number, or pick a tag."),
            );
        }
        None => harbormaster_knowledge::search(words),
    };
    match result {
        Ok(hits) => page(StatusCode::OK, words, tag.as_deref(), Some(&hits), None),
        Err(e) => {
            let msg = capitalized(&e.to_string().replace('`', "\""));
            page(StatusCode::BAD_REQUEST, words, None, None, Some(&msg))
        }
    }
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
        .map_err(token_error)?;
    check.map_err(|r| AppError::Titled {
        status: StatusCode::FORBIDDEN,
        heading: "This address cannot be tested",
        message: refusal_message(r),
        extra: None,
    })?;
    let cfg = state.config();
    // A typed custom list with "common" still ticked (no JavaScript to tick
    // Custom): the list is what the visitor meant, never silently ignored.
    let typed = form.ports.as_deref().is_some_and(|p| !p.trim().is_empty());
    // The form's text is parsed into the typed test here, at the edge; a
    // single-port test's number is read only for that test.
    let name = form.kind.as_deref().unwrap_or("");
    let kind = TestKind::from_name(name, || {
        parse_port(form.port.as_deref().unwrap_or("")).map_err(bad_port)
    })?
    .ok_or_else(|| {
        AppError::BadRequest(format!(
            "Unknown test {name:?}: choose common, service, custom or port."
        ))
    })?;
    let kind = match kind {
        TestKind::Common if typed => TestKind::Custom,
        k => k,
    };
    let (test, ports) = match kind {
        TestKind::Common => (
            TestKind::Common,
            PortList::from_ports(COMMON_PORTS.to_vec()),
        ),
        TestKind::Service => (
            TestKind::Service,
            PortList::from_ports(SERVICE_PORTS.collect()),
        ),
        TestKind::Full if cfg.allow_full => (
            TestKind::Full,
            PortList::from_ports((0..=u16::MAX).collect()),
        ),
        TestKind::Full => {
            return Err(AppError::Forbidden(
                "The full 0–65535 test is not enabled on this server.".into(),
            ));
        }
        TestKind::Port(n) => (TestKind::Port(n), PortList::from_ports(vec![n])),
        TestKind::Custom => {
            let spec = form.ports.as_deref().unwrap_or("");
            // Length and port count are checked before any port is listed.
            let list = PortList::parse_capped(spec, cfg.custom_cap).map_err(|e| {
                bad_custom(e, spec, form.token.as_deref().unwrap_or(""), cfg.custom_cap)
            })?;
            (TestKind::Custom, list)
        }
    };
    state.csrf().consume(token).map_err(token_error)?;
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
            stored.results = results.iter().map(StoredResult::from).collect();
            stored.results.sort_by_key(|r| r.port);
            l.ports.ports().to_vec()
        }
        None => stored.ports.ports().to_vec(),
    };
    Ok((stored, ports))
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
            let counts: serde_json::Map<String, serde_json::Value> = PortState::ALL
                .into_iter()
                .map(|s| {
                    (
                        s.to_string(),
                        stored
                            .results
                            .iter()
                            .filter(|r| r.state == s)
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

/// `GET /static/home.js`: ticks Custom while its field is used.
pub async fn home_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("assets/home.js"),
    )
        .into_response()
}

/// `GET /favicon.ico` and `/static/icon.svg`: the site icon, as SVG.
pub async fn icon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        render::ICON_SVG,
    )
        .into_response()
}

/// Anything else.
pub async fn not_found() -> AppError {
    AppError::NoPage
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
