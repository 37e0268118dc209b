//! The SYN engine: one thread, one socket pair, many concurrent scans.
//!
//! A scan flows one way: plan (ports in keyed random order) → send (batched,
//! within the congestion window and the rate caps) → match (every reply checked
//! against its keyed cookie) → classify → stream each result as soon as it is
//! final. The loop interleaves the stages so sending never waits for replies:
//!
//! ```text
//! loop {
//!     take new scans / cancellations
//!     drain replies → match to a scan by source-port block → validate cookie → record
//!     expire probes older than the RTO → queue a retry, or call the port stealth
//!     fill one send batch, sharing it fairly between scans → send
//!     finished scans → summary
//!     idle? wait for a reply until the next deadline
//! }
//! ```
//!
//! Each scan owns a block of [`TRIES_PER_BLOCK`] source ports; the try number
//! is the offset in the block, so a reply says which try it answers and the RTT
//! sample is exact. The block also routes replies to their scan.

mod api;
mod event_loop;
mod scan;
mod timing_probes;

pub use api::{
    DEFAULT_BUDGET, EngineConfig, MIN_TRIES, ScanEvent, ScanRequest, ScanSummary, Sink, Watch,
    WatchReport, WatchTail,
};

use std::net::IpAddr;
use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::cookie::CookieKey;
use crate::error::ProbeError;
use crate::module::{ProbeModule, TcpSyn, UdpPayloads, UdpProbe, WirePayloads};
use crate::result::{PortResult, Transport as Protocol};
use crate::transport::Transport;
use scan::Scan;

/// First source port the engine uses. The range above it lies outside Linux's
/// default ephemeral range (32768–60999), so it does not collide with the
/// system's own connections.
pub const SOURCE_PORT_BASE: u16 = 61440;
/// Source ports per scan: the most tries a port can get.
pub const TRIES_PER_BLOCK: u16 = 16;
/// Scans one engine can run at once.
pub const MAX_SCANS: usize = ((65536 - SOURCE_PORT_BASE as u32) / TRIES_PER_BLOCK as u32) as usize;

enum Command {
    Submit(Box<Scan>),
    /// Cancels the scan in the block, if it is still the one with this id:
    /// a block is reused once its scan ends, and a late cancel must not
    /// stop (or free the block of) the next scan in it.
    Cancel(u16, u64),
    Shutdown,
}

/// A running SYN engine: a thread that owns the transport and all scans.
pub struct Engine {
    commands: mpsc::Sender<Command>,
    blocks: std::sync::Arc<std::sync::Mutex<Vec<bool>>>,
    thread: Option<JoinHandle<()>>,
    config: EngineConfig,
    source: std::sync::Mutex<Box<dyn FnMut(IpAddr) -> std::io::Result<IpAddr> + Send>>,
    ipv6: bool,
    udp_payloads: std::sync::Arc<dyn UdpPayloads>,
    /// Hosts that sent ICMP errors to earlier scans ([`crate::ratelimit`]).
    memory: std::sync::Arc<std::sync::Mutex<crate::ratelimit::HostMemory>>,
    /// The id of the next scan submitted.
    next_id: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.config)
            .finish()
    }
}

/// Cancels a scan; the scan then reports `Done` with `cancelled`.
#[derive(Debug, Clone)]
pub struct ScanHandle {
    block: u16,
    id: u64,
    commands: mpsc::Sender<Command>,
}

impl ScanHandle {
    /// Stops the scan. Results already reported stay valid.
    pub fn cancel(&self) {
        let _ = self.commands.send(Command::Cancel(self.block, self.id));
    }
}

impl Engine {
    /// Starts the engine thread on `transport`. `route` tells which local address
    /// reaches a target (see [`crate::raw::source_address`]).
    pub fn start<T: Transport>(
        transport: T,
        config: EngineConfig,
        route: impl FnMut(IpAddr) -> std::io::Result<IpAddr> + Send + 'static,
    ) -> Engine {
        let ipv6 = transport.supports_ipv6();
        let (tx, rx) = mpsc::channel();
        let blocks = std::sync::Arc::new(std::sync::Mutex::new(vec![false; MAX_SCANS]));
        let loop_blocks = blocks.clone();
        let loop_config = config.clone();
        let thread = std::thread::Builder::new()
            .name("harbormaster-engine".into())
            .spawn(move || event_loop::run(transport, loop_config, rx, loop_blocks))
            .expect("spawning the engine thread");
        Engine {
            commands: tx,
            blocks,
            thread: Some(thread),
            config,
            source: std::sync::Mutex::new(Box::new(route)),
            ipv6,
            udp_payloads: std::sync::Arc::new(WirePayloads),
            memory: Default::default(),
            next_id: Default::default(),
        }
    }

    /// Uses `payloads` for the UDP scans submitted from now on (by default
    /// [`WirePayloads`]: protocol requests for the ports that have one).
    pub fn with_udp_payloads(mut self, payloads: std::sync::Arc<dyn UdpPayloads>) -> Engine {
        self.udp_payloads = payloads;
        self
    }

    /// Whether this engine can probe `target`: IPv6 needs the transport's
    /// IPv6 raw socket, which a host without IPv6 lacks.
    pub fn supports(&self, target: IpAddr) -> bool {
        target.is_ipv4() || self.ipv6
    }

    /// Starts a scan; its events go to `sink` as they happen.
    pub fn submit(&self, request: ScanRequest, sink: Sink) -> Result<ScanHandle, ProbeError> {
        if !self.supports(request.target) {
            return Err(ProbeError::Unsupported(
                "SYN mode cannot probe IPv6 targets here (no IPv6 raw socket); use connect mode for IPv6",
            ));
        }
        let source = {
            let mut route = self.source.lock().unwrap_or_else(|p| p.into_inner());
            route(request.target).map_err(|source| ProbeError::NoRoute {
                target: request.target,
                source,
            })?
        };
        let key = CookieKey::random();
        let (ttl, target) = (self.config.ttl, request.target);
        let module: Box<dyn ProbeModule> = match request.protocol {
            Protocol::Tcp => TcpSyn::new(source, target, ttl, key).map(|m| Box::new(m) as _),
            Protocol::Udp => UdpProbe::new(source, target, ttl, key, self.udp_payloads.clone())
                .map(|m| Box::new(m) as _),
        }
        .map_err(|_| ProbeError::Unsupported("source and target address families differ"))?;
        let block = {
            let mut blocks = self.blocks.lock().unwrap_or_else(|p| p.into_inner());
            let free = blocks
                .iter()
                .position(|used| !used)
                .ok_or(ProbeError::Busy(MAX_SCANS))?;
            blocks[free] = true;
            free as u16
        };
        let mut scan = Scan::new(block, source, module, key, request, &self.config, sink)
            .remembering(self.memory.clone());
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        scan.id = id;
        self.commands
            .send(Command::Submit(Box::new(scan)))
            .map_err(|_| ProbeError::Stopped)?;
        Ok(ScanHandle {
            block,
            id,
            commands: self.commands.clone(),
        })
    }

    /// Runs one scan to completion and returns its results (sorted by port) and summary.
    pub fn scan(&self, request: ScanRequest) -> Result<(Vec<PortResult>, ScanSummary), ProbeError> {
        let (tx, rx) = mpsc::channel();
        self.submit(
            request,
            Box::new(move |e| {
                let _ = tx.send(e);
            }),
        )?;
        let mut results = Vec::new();
        for event in rx {
            match event {
                ScanEvent::Port(r) => results.push(r),
                ScanEvent::Done(summary) => {
                    results.sort_by_key(|r| r.port);
                    return Ok((results, summary));
                }
            }
        }
        Err(ProbeError::Stopped)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_fit_the_source_port_space() {
        assert_eq!(MAX_SCANS, 256);
        let last = SOURCE_PORT_BASE as u32 + (MAX_SCANS as u32) * TRIES_PER_BLOCK as u32 - 1;
        assert_eq!(last, 65535);
    }
}
