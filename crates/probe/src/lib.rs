//! The Harbormaster probe engine: tells, for each TCP port, what came back —
//! open (SYN-ACK), closed (RST), filtered (ICMP unreachable) or stealth
//! (nothing, after every retry) — quickly, and correctly when packets are lost.
//!
//! Two modes:
//! - **SYN** ([`Engine`] on [`RawTransport`]): raw sockets, stateless batched
//!   sends, every reply validated by a keyed cookie, adaptive timeouts and
//!   retries; one engine multiplexes many concurrent scans with a fair share of
//!   one packet budget. Needs root or CAP_NET_RAW. IPv4 and IPv6.
//! - **connect** ([`connect_scan`]): ordinary sockets, no privilege, IPv4 and IPv6.
//!
//! Results stream out as they become final ([`ScanEvent`]).

mod connect;
mod cookie;
mod engine;
mod error;
pub mod exposure;
mod filter;
pub mod module;
mod permute;
pub mod ratelimit;
mod raw;
pub mod sim;
mod spec;
mod sys;
mod target;
mod timing;
mod transport;
pub mod verify;

pub use connect::{ConnectConfig, connect_scan};
pub use cookie::CookieKey;
pub use engine::{
    DEFAULT_BUDGET, Engine, EngineConfig, MIN_TRIES, ScanEvent, ScanHandle, ScanRequest,
    ScanSummary, Sink, TRIES_PER_BLOCK, Watch, WatchReport, WatchTail,
};
pub use error::ProbeError;
pub use permute::Permutation;
pub use ratelimit::{LimitKind, RateLimitReport};
pub use raw::{RawTransport, raw_ipv6_available, raw_sockets_allowed, source_address};
pub use result::{PortResult, PortState, Reason, Transport as Protocol, UnknownName};
pub use spec::{
    COMMON_PORTS, CapError, MAX_SPEC_CHARS, MAX_SPEC_ITEMS, PortList, SERVICE_PORTS, SpecError,
    UDP_EXPOSURE_PORTS, compress_ranges,
};
pub use target::{MAX_TARGET_ADDRESSES, TargetError, resolve};
pub use timing::RateBudget;
pub use transport::{RecvBatch, SendBatch, Transport};

mod result;
mod scanner;
pub use scanner::{Cancel, ConnectScanner, ProbeMode, RawScanner, Scanner, cancelled_summary};
