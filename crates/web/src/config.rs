//! Operator settings of the service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use crate::ProxyHeader;

/// Everything the operator can set. `Default` is what `harbormaster serve` uses.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the SQLite database lives.
    pub data_dir: PathBuf,
    /// Peers whose forwarding header ([`Config::proxy_header`]) is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Allow probing private, CGNAT, benchmarking and documentation ranges (LAN
    /// deployments and tests).
    pub allow_private: bool,
    /// Offer the full 0–65535 test.
    pub allow_full: bool,
    /// Most ports in a custom test.
    pub custom_cap: usize,
    /// Scans one address may start per hour.
    pub scans_per_hour: usize,
    /// Scans running at once, all visitors together.
    pub max_concurrent: usize,
    /// How long finished scans are kept.
    pub retention: Duration,
    /// Look up the visitor's reverse-DNS name (off in tests: it sends a DNS query).
    pub reverse_dns: bool,
    /// TCP ports the service itself listens on: traffic on them is the visitor's
    /// own HTTP connection, never "unsolicited".
    pub http_ports: Vec<u16>,
    /// IPv6 visitors are counted per prefix of this many bits for every limit
    /// (a host usually has a whole /64); 32..=128.
    pub ipv6_prefix: u8,
    /// Live event streams one scan may have open at once.
    pub streams_per_scan: usize,
    /// Live event streams one visitor (IPv6: one prefix) may have open at once.
    pub streams_per_address: usize,
    /// Name servers for reverse DNS; `None` reads /etc/resolv.conf.
    pub dns_servers: Option<Vec<SocketAddr>>,
    /// The one forwarding header read from a trusted proxy (`--proxy-header`).
    pub proxy_header: ProxyHeader,
    /// HTTP connections open at once, all clients together.
    pub max_connections: usize,
    /// HTTP connections open at once from one visitor (IPv4 address or IPv6 prefix).
    pub max_connections_per_address: usize,
    /// Time a client has to send a request's line and headers, and again for its body.
    pub header_timeout: Duration,
    /// A connection on which nothing moved for this long is closed. Keep it
    /// above the event streams' 15 s keep-alive interval.
    pub idle_timeout: Duration,
    /// Time running requests and scans get to finish at shutdown.
    pub shutdown_grace: Duration,
    /// The prober verifies open ports with a real connection (SYN mode,
    /// `--verify-open`): the start page must say so.
    pub verify_open: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: default_data_dir(),
            trusted_proxies: Vec::new(),
            allow_private: false,
            allow_full: false,
            custom_cap: 1024,
            scans_per_hour: 10,
            max_concurrent: 32,
            retention: Duration::from_secs(24 * 3600),
            reverse_dns: true,
            http_ports: Vec::new(),
            ipv6_prefix: 64,
            streams_per_scan: 4,
            streams_per_address: 8,
            dns_servers: None,
            proxy_header: ProxyHeader::default(),
            max_connections: 1024,
            max_connections_per_address: 32,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(5),
            verify_open: false,
        }
    }
}

/// `$XDG_DATA_HOME/harbormaster`, else `~/.local/share/harbormaster`, else `./harbormaster-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("harbormaster");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".local/share/harbormaster");
    }
    PathBuf::from("harbormaster-data")
}
