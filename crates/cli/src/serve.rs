//! `harbormaster serve`: the web service.

use std::sync::Arc;
use std::time::Duration;

use harbormaster_probe::{
    ConnectScanner, Engine, EngineConfig, RateBudget, RawScanner, RawTransport, source_address,
    verify::VerifyConfig,
};
use harbormaster_web::{AppState, Config, Db, DbError, Prober, default_data_dir};

use crate::Failure;
use crate::args::{ScanMode, ServeArgs};

/// Runs the service until SIGTERM or Ctrl-C.
pub fn run(args: &ServeArgs) -> Result<(), Failure> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .try_init();
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    let config = Config {
        data_dir: data_dir.clone(),
        trusted_proxies: args.trusted_proxies.clone(),
        allow_private: args.allow_private,
        allow_full: args.allow_full,
        custom_cap: args.custom_cap as usize,
        scans_per_hour: args.scans_per_hour as usize,
        max_concurrent: args.max_concurrent as usize,
        retention: Duration::from_secs(u64::from(args.retention_hours) * 3600),
        reverse_dns: !args.no_reverse_dns,
        http_ports: std::iter::once(args.listen.port())
            .chain(args.public_ports.iter().copied())
            .collect(),
        ipv6_prefix: args.ipv6_prefix,
        proxy_header: args.proxy_header.into(),
        max_connections: args.max_connections as usize,
        max_connections_per_address: args.max_connections_per_address as usize,
        header_timeout: Duration::from_secs(args.header_timeout.into()),
        idle_timeout: Duration::from_secs(args.idle_timeout.into()),
        shutdown_grace: Duration::from_secs(args.shutdown_grace.into()),
        verify_open: args.verify_open,
        ..Config::default()
    };
    let raw = match args.mode {
        ScanMode::Connect => None,
        ScanMode::Syn => Some(RawTransport::open().map_err(|e| Failure::Usage(e.to_string()))?),
        ScanMode::Auto => RawTransport::open().ok(),
    };
    // Only a SYN-mode server has handshakes to verify.
    let config = Config {
        verify_open: config.verify_open && raw.is_some(),
        ..config
    };
    let db = Db::open(&data_dir).map_err(|e| match e {
        DbError::InUse(dir) => Failure::Usage(format!(
            "the data directory {} is in use by another harbormaster serve; stop that one or choose another directory with --data-dir",
            dir.display()
        )),
        e => Failure::Runtime(anyhow::anyhow!(
            "{e} (data directory {})",
            data_dir.display()
        )),
    })?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(e.into()))?;
    rt.block_on(async move {
        let prober: Arc<dyn Prober> = match raw {
            Some(transport) => {
                // One budget for SYN probes and the connect-mode fallback
                // (IPv6 visitors when the host has no IPv6 raw socket), so
                // --max-rate caps them together.
                let budget = RateBudget::new(args.max_rate);
                let engine = Engine::start(
                    transport,
                    EngineConfig {
                        max_rate: Some(args.max_rate),
                        shared_budget: Some(budget.clone()),
                        ..EngineConfig::default()
                    },
                    source_address,
                );
                let fallback = ConnectScanner::new().concurrency(256).budget(budget);
                let scanner = RawScanner::new(engine, fallback);
                if config.verify_open {
                    Arc::new(scanner.verify(VerifyConfig {
                        // Only the ports the visitor chose: no random sample.
                        wildcard_sample: 0,
                        rate: Some(args.max_rate),
                        ..VerifyConfig::default()
                    }))
                } else {
                    Arc::new(scanner)
                }
            }
            None => Arc::new(
                ConnectScanner::new()
                    .concurrency(256)
                    .budget(RateBudget::new(args.max_rate)),
            ),
        };
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| {
                Failure::Runtime(anyhow::anyhow!("cannot listen on {}: {e}", args.listen))
            })?;
        eprintln!(
            "harbormaster: serving on http://{} ({} mode, data in {})",
            args.listen,
            prober.mode().as_str(),
            data_dir.display()
        );
        let state = AppState::new(config, db, prober);
        harbormaster_web::serve(listener, state, shutdown_signal())
            .await
            .map_err(|e| Failure::Runtime(e.into()))
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    eprintln!("harbormaster: shutting down; finishing running tests");
}
