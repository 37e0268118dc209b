//! Command-line grammar. Values are validated here, before any command runs, so
//! a bad argument always becomes a one-line usage error with exit code 2.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Harbormaster: what every TCP and UDP port is, and what your connection exposes.
#[derive(Debug, Parser)]
#[command(name = "harbormaster", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the knowledge page of one port (both transports unless narrowed).
    Port(PortArgs),
    /// Search names, descriptions and malware names, best match first.
    Search(SearchArgs),
    /// Probe a host's TCP ports: open, closed, filtered or stealth.
    Scan(ScanArgs),
    /// Run the web service: port pages and a probe of each visitor's own connection.
    Serve(ServeArgs),
    /// Work with the knowledge base as a whole.
    Db {
        /// What to do with it.
        #[command(subcommand)]
        command: DbCommand,
    },
}

/// `harbormaster port`.
#[derive(Debug, Args)]
pub struct PortArgs {
    /// Port number, 0–65535.
    #[arg(value_parser = parse_port, allow_negative_numbers = true)]
    pub port: u16,
    /// Show only the TCP entry.
    #[arg(long, conflicts_with = "udp")]
    pub tcp: bool,
    /// Show only the UDP entry.
    #[arg(long)]
    pub udp: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `harbormaster scan`.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// An IPv4/IPv6 address, a host name, or a CIDR block (at most a /16).
    pub target: String,
    /// Ports: 21, 20-25, 21,80,443, all (or -), common (the 26 ShieldsUP ports), service (0-1055). Default: service for TCP, the UDP exposure list (the reflectors and discovery services of `--udp`) for UDP.
    #[arg(short = 'p', long = "ports", allow_hyphen_values = true)]
    pub ports: Option<String>,
    /// auto uses SYN when raw sockets are allowed (root or CAP_NET_RAW), connect otherwise.
    #[arg(long, value_enum, default_value_t = ScanMode::Auto)]
    pub mode: ScanMode,
    /// Most probes per second (default: as fast as the path allows).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: Option<u32>,
    /// Tries per silent port before it is called stealth, 1-16 (default: at least 3, more when loss is measured).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=16))]
    pub tries: Option<u8>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Write the output to this file instead of standard output.
    #[arg(short = 'o', long = "output")]
    pub output: Option<std::path::PathBuf>,
    /// SYN mode: skip the check of open ports with real connections (up to 256) and of random high ports, which tells a proxy answering for every port.
    #[arg(long)]
    pub no_verify: bool,
    /// Probe UDP instead of TCP (the same as --proto udp): protocol requests to the exposure list by default, then each answering reflector's amplification.
    #[arg(long, conflicts_with = "proto")]
    pub udp: bool,
    /// Transports to probe, e.g. tcp, udp or tcp,udp (UDP needs raw sockets).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "tcp")]
    pub proto: Vec<ProtoArg>,
    /// SYN mode: seconds allowed for re-probing silent ports when the target rate-limits its ICMP errors or RSTs, 0-3600 (default 30; 0 only detects and reports the limit).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(0..=3600))]
    pub budget: Option<u32>,
}

/// A transport to probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProtoArg {
    /// TCP (SYN or connect).
    Tcp,
    /// UDP (raw datagrams with protocol payloads).
    Udp,
}

/// `harbormaster serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on ([::]:8080 takes IPv4 and IPv6).
    #[arg(long, default_value = "[::]:8080")]
    pub listen: std::net::SocketAddr,
    /// Where scan results are stored (default: $XDG_DATA_HOME/harbormaster or ~/.local/share/harbormaster).
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    /// A reverse proxy whose --proxy-header is believed (repeatable), e.g. 10.0.0.0/8.
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Also probe visitors from private, shared and reserved ranges (LAN deployments, tests).
    #[arg(long)]
    pub allow_private: bool,
    /// Offer the full 0-65535 test.
    #[arg(long)]
    pub allow_full: bool,
    /// Most ports in a custom test.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub custom_cap: u32,
    /// Tests one address may start per hour.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub scans_per_hour: u32,
    /// Tests running at once, all visitors together (at most 256 in SYN mode).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub max_concurrent: u32,
    /// Probe packets per second, shared fairly by all running tests (SYN probes and connection attempts together: IPv6 visitors of a SYN-mode server on a host without an IPv6 raw socket, probed by connect, draw from the same budget).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_rate: u32,
    /// Hours a finished test is kept before it is deleted.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..))]
    pub retention_hours: u32,
    /// auto uses SYN when raw sockets are allowed, connect otherwise.
    #[arg(long, value_enum, default_value_t = ScanMode::Auto)]
    pub mode: ScanMode,
    /// Do not look up visitors' reverse-DNS names.
    #[arg(long)]
    pub no_reverse_dns: bool,
    /// IPv6 visitors count as one per prefix of this length for every limit, 32-128.
    #[arg(long, default_value_t = 64, value_parser = parse_ipv6_prefix)]
    pub ipv6_prefix: u8,
    /// The one header the --trusted-proxy writes the client's address into; every other forwarding header is ignored.
    #[arg(long, value_enum, default_value_t = ProxyHeaderArg::XForwardedFor)]
    pub proxy_header: ProxyHeaderArg,
    /// HTTP connections open at once, all clients together.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
    /// HTTP connections open at once from one address (IPv6: one prefix).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections_per_address: u32,
    /// Seconds a client has to send a request's line and headers (and again for its body).
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub header_timeout: u32,
    /// Seconds a connection may stay silent before it is closed (at least 20: live result streams send a keep-alive every 15 s).
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u32).range(20..=86_400))]
    pub idle_timeout: u32,
    /// Seconds running requests and tests get to finish at shutdown; then the server exits anyway.
    #[arg(long, value_name = "SECS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=600))]
    pub shutdown_grace: u32,
    /// Another TCP port on this host that visitors reach the service through (a reverse proxy on the same machine, e.g. 443); repeatable. Their traffic to it is their own page load, not "unsolicited".
    #[arg(long = "public-port", value_name = "PORT")]
    pub public_ports: Vec<u16>,
    /// SYN mode: after the probes, open one ordinary connection to each port that answered (at most 256; closed without sending data) to tell a real service from a proxy or firewall answering for it. The start page says so.
    #[arg(long)]
    pub verify_open: bool,
}

/// Which forwarding header a trusted proxy writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProxyHeaderArg {
    /// X-Forwarded-For (nginx $proxy_add_x_forwarded_for, Caddy, most proxies).
    XForwardedFor,
    /// RFC 7239 Forwarded: for=...
    Forwarded,
    /// X-Real-IP (a single address the proxy sets).
    XRealIp,
}

impl From<ProxyHeaderArg> for harbormaster_web::ProxyHeader {
    fn from(a: ProxyHeaderArg) -> Self {
        match a {
            ProxyHeaderArg::XForwardedFor => harbormaster_web::ProxyHeader::XForwardedFor,
            ProxyHeaderArg::Forwarded => harbormaster_web::ProxyHeader::Forwarded,
            ProxyHeaderArg::XRealIp => harbormaster_web::ProxyHeader::XRealIp,
        }
    }
}

/// How to probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScanMode {
    /// SYN when privileged, else connect.
    Auto,
    /// Raw-socket SYN probes (root or CAP_NET_RAW; IPv4).
    Syn,
    /// Ordinary connect() calls (no privilege; IPv4 and IPv6).
    Connect,
}

/// Scan output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Counts, then the ports worth a look, with what they are.
    Text,
    /// One document: scan metadata and every result.
    Json,
    /// One JSON object per port, streamed as results arrive.
    Ndjson,
    /// nmap-compatible XML (for ndiff and other nmap tooling).
    Xml,
}

/// `harbormaster search`.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Words to look for (all must match), e.g. `netbus` or `remote desktop`.
    #[arg(required_unless_present = "tag", num_args = 1..)]
    pub words: Vec<String>,
    /// Show at most this many results (0 shows all). Default: 20, or all when
    /// listing a tag without words.
    #[arg(long, short = 'n')]
    pub limit: Option<usize>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Only entries with this tag (e.g. `ics`, `remote-access`); alone, lists
    /// every entry that has it.
    #[arg(long)]
    pub tag: Option<String>,
}

/// `harbormaster db …`.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Write every registered or curated port/transport entry, with all fields.
    Export {
        /// Output format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Json)]
        format: ExportFormat,
    },
}

/// Formats `db export` can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// One JSON document (schema `harbormaster-kb/1`).
    Json,
    /// RFC 4180 CSV with a header row; lists joined with "; ".
    Csv,
}

/// Parses an IPv6 prefix length for the limits, naming the valid range when it is not one.
pub fn parse_ipv6_prefix(s: &str) -> Result<u8, String> {
    match s.trim().parse::<u8>() {
        Ok(n) if (32..=128).contains(&n) => Ok(n),
        _ => Err(format!(
            "{s:?} is not a usable prefix length: give a whole number from 32 to 128 (64 counts each /64 as one visitor)"
        )),
    }
}

/// Parses a port number, naming the valid range when it is not one.
pub fn parse_port(s: &str) -> Result<u16, String> {
    let t = s.trim();
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{t:?} is not a port number: give a whole number from 0 to 65535"
        ));
    }
    match t.strip_prefix('+').unwrap_or(t).parse::<u16>() {
        Ok(port) => Ok(port),
        Err(_) => Err(format!("port {t} is out of range: valid ports are 0–65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse_within_range_only() {
        assert_eq!(parse_port("0"), Ok(0));
        assert_eq!(parse_port("65535"), Ok(65535));
        assert_eq!(parse_port(" 21 "), Ok(21));
        assert!(parse_port("65536").unwrap_err().contains("0–65535"));
        assert!(parse_port("-1").unwrap_err().contains("out of range"));
        let huge = "9".repeat(60);
        assert!(parse_port(&huge).unwrap_err().contains("out of range"));
        assert_eq!(parse_port("+80"), Ok(80));
        assert!(parse_port("abc").unwrap_err().contains("not a port number"));
        assert!(parse_port("").is_err());
        assert!(parse_port("2.5").is_err());
    }

    #[test]
    fn grammar_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
