//! How the service probes: through any [`Scanner`] of the probe crate (the
//! same interface the CLI drives) — a `RawScanner` on the shared SYN engine,
//! a `ConnectScanner` when raw sockets are not allowed, or a scripted one in
//! tests. What is the service's own is the request: the visitor's address,
//! with the ping and unsolicited-packet watch (which SYN mode honours and
//! connect mode ignores).

use std::net::IpAddr;
use std::time::Duration;

pub use harbormaster_probe::{Cancel, ProbeMode, Scanner as Prober, cancelled_summary};
use harbormaster_probe::{PortList, Protocol, ScanRequest, Watch, WatchTail};

/// Echo requests per test.
const PINGS: u8 = 3;
/// How long the watch goes on: until the last ping has had one timeout of
/// the visitor's path (at least 100 ms, at most the second it used to be),
/// and 100 ms after the last result, for a busy machine's stragglers.
const WATCH_TAIL: WatchTail = WatchTail::Rto {
    min: Duration::from_millis(100),
    max: Duration::from_secs(1),
};

/// The request for a test of `ports` on `target`; `http_ports` are the
/// service's own ports, whose traffic with the visitor is never unsolicited.
pub fn request(target: IpAddr, ports: PortList, http_ports: &[u16]) -> ScanRequest {
    ScanRequest {
        target,
        ports,
        tries: None,
        rate: None,
        watch: Some(Watch {
            pings: PINGS,
            expected_tcp_ports: http_ports.to_vec(),
            tail: WATCH_TAIL,
        }),
        protocol: Protocol::Tcp,
        budget: None,
        rtt_hint: None,
    }
}
