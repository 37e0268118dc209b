//! The Harbormaster web service: port pages for every port, and a probe of the
//! visitor's own connection with a live grid, a stealth verdict, reports and JSON.
//!
//! The probe target is always the requester (the connection's peer, or the
//! client a trusted proxy reports) — never a request parameter — so the service
//! cannot be used to scan anyone else.
//!
//! [`app`] builds the whole application as a value, so tests drive it with
//! `oneshot` requests; [`serve`] runs it on a listener until shutdown.

mod config;
mod csrf;
mod db;
mod forwarding;
mod limits;
mod policy;
mod prober;
mod rdns;
mod render;
mod report;
mod routes;
mod scans;
mod security;
pub mod server;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tower_http::compression::CompressionLayer;

pub use config::{Config, default_data_dir};
pub use csrf::CsrfKey;
pub use db::{Db, DbError, Status, StoredScan};
pub use limits::{StreamGuard, StreamRefusal, StreamSlots, limit_key};
pub use policy::{ChainError, Embedding, OwnAddresses, ProxyHeader, Refusal, is_private};
pub use prober::{Cancel, ProbeMode, Prober, cancelled_summary};
pub use rdns::ReverseDns;
pub use routes::ConnInfo;
pub use scans::{Scans, TestKind, Tone, Verdict};

/// Shared state of every handler.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    config: Config,
    scans: Arc<Scans>,
    csrf: CsrfKey,
    streams: Arc<StreamSlots>,
    rdns: ReverseDns,
    own: policy::OwnAddresses,
}

impl AppState {
    /// State over a database and a prober.
    pub fn new(config: Config, db: Db, prober: Arc<dyn Prober>) -> AppState {
        let scans = Arc::new(Scans::new(db, prober, config.clone()));
        let streams = StreamSlots::new(config.streams_per_scan, config.streams_per_address);
        let rdns = if config.reverse_dns {
            ReverseDns::new(config.dns_servers.as_deref())
        } else {
            ReverseDns::off()
        };
        AppState(Arc::new(Inner {
            config,
            scans,
            csrf: CsrfKey::random(),
            streams,
            rdns,
            own: policy::OwnAddresses::default(),
        }))
    }

    /// The server's own addresses (every interface, read at most a
    /// second ago), which are never probed.
    pub fn own_addresses(&self) -> Arc<[std::net::IpAddr]> {
        self.0.own.current()
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.0.config
    }

    /// The scans.
    pub fn scans(&self) -> &Arc<Scans> {
        &self.0.scans
    }

    /// The CSRF key.
    pub fn csrf(&self) -> &CsrfKey {
        &self.0.csrf
    }

    /// The open live event streams.
    pub fn streams(&self) -> &Arc<StreamSlots> {
        &self.0.streams
    }

    /// The reverse-DNS resolver.
    pub fn rdns(&self) -> &ReverseDns {
        &self.0.rdns
    }
}

/// The whole application.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(routes::home))
        .route("/port", get(routes::jump))
        .route("/port/{n}", get(routes::port))
        .route(
            "/scan",
            post(routes::start_scan).layer(DefaultBodyLimit::max(routes::FORM_LIMIT)),
        )
        .route("/scan/{id}", get(routes::scan_page))
        .route("/scan/{id}/events", get(routes::events))
        .route("/scan/{id}/report.txt", get(routes::report))
        .route("/api/ports/{n}", get(routes::api_port))
        .route("/api/scans/{id}", get(routes::api_scan))
        .route("/static/style.css", get(routes::style))
        .route("/static/live.js", get(routes::script))
        .route("/static/home.js", get(routes::home_script))
        .route("/static/icon.svg", get(routes::icon))
        .route("/favicon.ico", get(routes::icon))
        .route("/search", get(routes::search))
        .fallback(routes::not_found)
        .layer(DefaultBodyLimit::max(routes::BODY_LIMIT))
        .layer(axum::middleware::map_response(security::headers))
        // gzip for pages, JSON, CSS and JS; its default predicate leaves event
        // streams (and tiny bodies) uncompressed, so live results still flush.
        .layer(CompressionLayer::new())
        .with_state(state)
}

/// Serves `state` on `listener` until `shutdown` completes; then stops
/// accepting, cancels the running scans and waits until they are stored, and
/// closes connections, all within the configured shutdown grace (see
/// [`server::run`] for the connection limits). Expired scans are deleted every
/// minute.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let scans = state.scans().clone();
    let purger = {
        let scans = scans.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                let s = scans.clone();
                match tokio::task::spawn_blocking(move || s.purge()).await {
                    Ok(Ok(n)) if n > 0 => tracing::info!("deleted {n} expired scan(s)"),
                    Ok(Err(e)) => tracing::warn!("purging expired scans: {e}"),
                    _ => {}
                }
            }
        })
    };
    let limits = server::Limits::from_config(state.config());
    let grace = limits.shutdown_grace;
    let result = server::run(listener, app(state), limits, shutdown, async move {
        scans.shutdown(grace).await;
    })
    .await;
    purger.abort();
    result
}
