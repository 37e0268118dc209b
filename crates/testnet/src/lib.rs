//! Test hosts for Harbormaster's integration tests and benchmarks: two network
//! namespaces joined by a veth pair, addresses from 198.18.0.0/15 (the
//! benchmarking range), nothing routed anywhere else.
//!
//! The target namespace gets TCP listeners for its open ports, nftables rules
//! that drop its stealth ports and reject its filtered ports with ICMP
//! admin-prohibited, and optionally random loss (`numgen random mod 100 < N
//! drop`, since the kernel has no netem) on the target's input chain (probes)
//! and output chain (replies). The reply loss must happen in the target: on the
//! scanner's side, packet sockets (ours, libpcap's) see a packet before any
//! netfilter hook could drop it, so a drop there would not be a loss to them.
//! Everything is removed on drop, also when a test fails.
//!
//! [`Lan`] builds more hosts on one bridge (server, proxy, attacker, victim, …)
//! and [`Nginx`] runs a real nginx on one of them.
//!
//! With [`TargetSpec::path`] set, the two namespaces are joined through a
//! third one instead, where a userspace delay line ([`path`]) emulates an
//! internet path: delay, jitter, loss, a bottleneck rate and its queue.
//!
//! Needs root and the `ip` and `nft` commands (and `ethtool` for a path). [`TestNet::create`] returns
//! [`Skip`] with the reason when they are missing; with the environment
//! variable `HARBORMASTER_REQUIRE_NETNS=1` (set by `scripts/test.sh` when run as
//! root) a missing prerequisite is a failure instead, so CI cannot skip silently.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sched::{CloneFlags, setns};

mod lan;
pub mod path;
pub use lan::{Host, Lan, NGINX, Nginx};
pub mod daemon;
pub use daemon::Daemon;
pub use path::{Direction, DirectionStats, PathSpec, QueueLimit};

/// The scanner's address inside its namespace.
pub const SCANNER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The target's (first) address inside its namespace.
pub const TARGET_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The scanner's IPv6 address (unique local, RFC 4193) with [`TargetSpec::ipv6`].
pub const SCANNER_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x198, 0x18, 0, 0, 0, 0, 1);
/// The target's IPv6 address with [`TargetSpec::ipv6`].
pub const TARGET_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x198, 0x18, 0, 0, 0, 0, 2);

/// What the target host does with its ports.
#[derive(Debug, Clone, Default)]
pub struct TargetSpec {
    /// Ports with a listener (answer SYN-ACK).
    pub open: Vec<u16>,
    /// Ports whose packets are dropped (stealth).
    pub dropped: Vec<u16>,
    /// Ports rejected with ICMP admin-prohibited (filtered).
    pub filtered: Vec<u16>,
    /// Drop everything that arrives unasked, pings included (a fully stealthed
    /// host); replies to connections the host opens still arrive.
    pub drop_all: bool,
    /// Random loss, in percent, in each direction.
    pub loss_percent: u8,
    /// Extra target addresses after [`TARGET_IP`] (198.18.0.3, …), for many-target tests.
    pub extra_addresses: u8,
    /// Extra scanner-side addresses (198.18.1.1, 198.18.1.2, …), for many-visitor tests.
    pub extra_scanner_addresses: u16,
    /// An emulated path between scanner and target; `None` is a direct veth.
    pub path: Option<PathSpec>,
    /// Drop every TCP port that is in neither `open` nor `closed`, and pings:
    /// a stealth-heavy host such as a home router.
    pub drop_unlisted: bool,
    /// With `drop_unlisted`: the ports that still answer closed (RST).
    pub closed: Vec<u16>,
    /// An nftables `synproxy` in front of every TCP port of the target: the
    /// kernel answers every SYN with a cookie SYN-ACK before any listener is
    /// asked, as SYN-flood protection appliances and some firewalls do. A
    /// scanner then sees every port "open"; only ports in `open` have a
    /// listener behind the proxy. Ports in `dropped`/`filtered` are still
    /// dropped/rejected first.
    pub synproxy: bool,
    /// Open ports whose listener greets each connection with this banner (and
    /// then closes it); every other open port accepts and stays silent.
    pub banners: Vec<(u16, String)>,
    /// Also give the scanner and the target IPv6 addresses ([`SCANNER_IP6`],
    /// [`TARGET_IP6`] in fd00:198:18::/64), with the same listeners and the
    /// same nftables rules (ICMPv6 admin-prohibited for `filtered`).
    /// Duplicate address detection is off so they work at once; neighbours are
    /// static, and neighbour discovery is still accepted by the rules.
    pub ipv6: bool,
    /// Keep the kernel's default ICMP rate limits (`icmp_ratelimit` 1000 ms,
    /// `icmp_ratemask` 0x1818: about 1 error per second to one destination
    /// after a burst of 6) instead of turning them off, as real Linux hosts do.
    pub kernel_icmp_limits: bool,
    /// Drop the target's TCP RSTs above this many per second (an nftables
    /// `limit rate` with a burst of 5), like FreeBSD's and macOS's limits on
    /// closed-port RSTs or a firewall's RST cap.
    pub rst_limit_per_sec: Option<u32>,
}

impl TargetSpec {
    /// The benchmark host of issue 3: 200 open ports, about 2,000 dropped
    /// (stealth) and 100 rejected (filtered), spread over the whole range, every
    /// other port closed; ports 0–2 are dropped so port 0 is exercised too.
    pub fn benchmark(loss_percent: u8) -> TargetSpec {
        use std::collections::HashSet;
        let pick = |n: u32, mul: u32, add: u32| -> Vec<u16> {
            (0..n)
                .map(|i| ((i * mul + add) % 64_000 + 1024) as u16)
                .collect()
        };
        let open = pick(200, 317, 11);
        let mut taken: HashSet<u16> = open.iter().copied().collect();
        let filtered: Vec<u16> = pick(100, 631, 7)
            .into_iter()
            .filter(|p| taken.insert(*p))
            .collect();
        let mut dropped: Vec<u16> = pick(2000, 31, 3)
            .into_iter()
            .filter(|p| taken.insert(*p))
            .collect();
        dropped.extend([0, 1, 2]);
        TargetSpec {
            open,
            dropped,
            filtered,
            loss_percent,
            ..TargetSpec::default()
        }
    }

    /// A stealth-heavy host like a home router: 13 open ports (12 of them in
    /// the service test's 0–1055), 5 closed, every other port and pings
    /// dropped.
    pub fn home_router() -> TargetSpec {
        TargetSpec {
            open: vec![
                21, 22, 23, 53, 80, 139, 443, 445, 554, 631, 1024, 1055, 8080,
            ],
            closed: vec![25, 110, 113, 1000, 7547],
            drop_unlisted: true,
            ..TargetSpec::default()
        }
    }

    /// A Linux host with its kernel's default ICMP limits and, within the
    /// service test's 0–1055, 12 open ports, 24 ports rejected with ICMP
    /// admin-prohibited (4 of them among the common ports: 135, 139, 445,
    /// 1025), 200 dropped and the rest closed: a full-speed sweep sees only
    /// the first few rejections, the rest look stealth.
    pub fn icmp_limited() -> TargetSpec {
        let open: Vec<u16> = vec![21, 22, 25, 53, 80, 110, 143, 443, 587, 993, 995, 1055];
        let mut filtered: Vec<u16> = vec![135, 139, 445, 1025];
        let mut taken: std::collections::HashSet<u16> = open.iter().copied().collect();
        taken.extend(&filtered);
        let mut i = 0u32;
        while filtered.len() < 24 {
            let p = ((i * 43 + 5) % 1056) as u16;
            i += 1;
            if taken.insert(p) {
                filtered.push(p);
            }
        }
        let mut dropped = Vec::new();
        let mut i = 0u32;
        while dropped.len() < 200 {
            let p = ((i * 37 + 2) % 1056) as u16;
            i += 1;
            if taken.insert(p) {
                dropped.push(p);
            }
        }
        TargetSpec {
            open,
            filtered,
            dropped,
            kernel_icmp_limits: true,
            ..TargetSpec::default()
        }
    }

    /// What a correct scan reports for `port`: "open", "closed", "filtered" or
    /// "stealth"; "syn-proxied" for a port only the SYN proxy answers.
    pub fn truth(&self, port: u16) -> &'static str {
        let unlisted =
            self.drop_unlisted && !self.open.contains(&port) && !self.closed.contains(&port);
        if self.drop_all || unlisted || self.dropped.contains(&port) {
            "stealth"
        } else if self.open.contains(&port) {
            "open"
        } else if self.synproxy && !self.filtered.contains(&port) {
            "syn-proxied"
        } else if self.filtered.contains(&port) {
            "filtered"
        } else {
            "closed"
        }
    }
}

/// Creates the test hosts for `spec`, or prints why they were skipped and
/// returns from the calling test.
#[macro_export]
macro_rules! testnet_or_skip {
    ($spec:expr) => {
        match $crate::TestNet::create($spec) {
            Ok(net) => net,
            Err(skip) => {
                eprintln!("{skip}");
                return;
            }
        }
    };
}

/// Why the test hosts could not be created.
#[derive(Debug, Clone)]
pub struct Skip(pub String);

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "skipped: {}", self.0)
    }
}

/// Two namespaces joined by veth, removed on drop.
#[derive(Debug)]
pub struct TestNet {
    /// The scanner's namespace name.
    pub scanner_ns: String,
    /// The target's namespace name.
    pub target_ns: String,
    /// The middle namespace of an emulated path, if there is one.
    pub path_ns: Option<String>,
    forwarder: Option<path::Forwarder>,
    _listeners: Vec<TcpListener>,
    /// Tells the banner threads to stop.
    banner_stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Whether a missing prerequisite must fail the test (`HARBORMASTER_REQUIRE_NETNS=1`).
fn required() -> bool {
    std::env::var("HARBORMASTER_REQUIRE_NETNS").is_ok_and(|v| v == "1")
}

/// Root and the `ip` and `nft` commands, or why not.
fn prerequisites() -> Result<(), String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err("network-namespace tests need root (CI runs them as root)".into());
    }
    for tool in ["ip", "nft"] {
        if Command::new(tool).arg("-V").output().is_err() {
            return Err(format!(
                "`{tool}` is not installed (scripts/deps.sh installs it)"
            ));
        }
    }
    Ok(())
}

fn run(args: &[&str]) -> Result<(), String> {
    run_stdin(args, "")
}

/// Runs a command with `input` on its stdin; its stderr becomes the error.
fn run_stdin(args: &[&str], input: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new(args[0])
        .args(&args[1..])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    stdin
        .write_all(input.as_bytes())
        .map_err(|e| e.to_string())?;
    drop(stdin);
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} failed: {}\n{input}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn set(ports: &[u16]) -> String {
    if ports.is_empty() {
        return String::new();
    }
    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
    format!("elements = {{ {} }}", list.join(", "))
}

/// Runs `f` on a new thread that has entered network namespace `ns`; sockets
/// it creates belong to that namespace for their whole life.
pub fn in_namespace<R: Send>(ns: &str, f: impl FnOnce() -> R + Send) -> R {
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            setns(&file, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {ns}: {e}"));
            f()
        })
        .join()
        .expect("namespace thread panicked")
    })
}

impl TestNet {
    /// Creates the namespaces and the target described by `spec`.
    pub fn create(spec: &TargetSpec) -> Result<TestNet, Skip> {
        let skip = |why: String| -> Result<TestNet, Skip> {
            if required() {
                panic!("HARBORMASTER_REQUIRE_NETNS=1 but test hosts cannot be created: {why}");
            }
            Err(Skip(why))
        };
        if let Err(why) = prerequisites() {
            return skip(why);
        }
        if spec.path.is_some() && Command::new("ethtool").arg("--version").output().is_err() {
            return skip("`ethtool` is not installed (scripts/deps.sh installs it)".into());
        }
        let id = format!(
            "{}x{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut net = TestNet {
            scanner_ns: format!("hm-s{id}"),
            target_ns: format!("hm-t{id}"),
            path_ns: spec.path.map(|_| format!("hm-p{id}")),
            forwarder: None,
            _listeners: Vec::new(),
            banner_stop: Default::default(),
        };
        // On failure `net` is dropped here, which removes whatever was created.
        match net.build(spec) {
            Ok(listeners) => net._listeners = listeners,
            Err(e) => return skip(e),
        }
        if let Err(e) = net.serve_banners(spec) {
            return skip(e);
        }
        if let (Some(p), Some(spec)) = (&net.path_ns, &spec.path) {
            match path::Forwarder::start(p, "pa", "pb", spec) {
                Ok(f) => net.forwarder = Some(f),
                Err(e) => return skip(e),
            }
        }
        Ok(net)
    }

    /// What the emulated path did so far, (scanner → target, target → scanner);
    /// `None` without a path.
    pub fn path_stats(&self) -> Option<(DirectionStats, DirectionStats)> {
        self.forwarder
            .as_ref()
            .map(|f| (f.to_target(), f.to_scanner()))
    }

    /// Joins the namespaces through the path namespace `p`, with every offload
    /// off on all four veth ends: a packet socket would otherwise see 64 KiB
    /// TSO frames it cannot resend, and TCP checksums left for hardware that
    /// the other side then finds wrong.
    fn link_through_path(s: &str, t: &str, p: &str) -> Result<(), String> {
        run(&["ip", "netns", "add", p])?;
        for key in ["all", "default"] {
            let k = format!("net.ipv6.conf.{key}.disable_ipv6=1");
            run(&["ip", "netns", "exec", p, "sysctl", "-qw", &k])?;
        }
        run(&[
            "ip", "-n", s, "link", "add", "veth0", "type", "veth", "peer", "name", "pa", "netns", p,
        ])?;
        run(&[
            "ip", "-n", p, "link", "add", "pb", "type", "veth", "peer", "name", "veth1", "netns", t,
        ])?;
        for (ns, dev) in [(s, "veth0"), (p, "pa"), (p, "pb"), (t, "veth1")] {
            run(&[
                "ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off", "sg", "off", "tso",
                "off", "gso", "off", "gro", "off",
            ])?;
        }
        run(&["ip", "-n", p, "link", "set", "lo", "up"])?;
        run(&["ip", "-n", p, "link", "set", "pa", "up"])?;
        run(&["ip", "-n", p, "link", "set", "pb", "up"])?;
        Ok(())
    }

    fn build(&self, spec: &TargetSpec) -> Result<Vec<TcpListener>, String> {
        let (s, t) = (self.scanner_ns.as_str(), self.target_ns.as_str());
        run(&["ip", "netns", "add", s])?;
        run(&["ip", "netns", "add", t])?;
        if let Some(p) = &self.path_ns {
            TestNet::link_through_path(s, t, p)?;
        } else {
            run(&[
                "ip", "-n", s, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1",
                "netns", t,
            ])?;
        }
        run(&[
            "ip",
            "-n",
            s,
            "addr",
            "add",
            "198.18.0.1/16",
            "dev",
            "veth0",
        ])?;
        run(&[
            "ip",
            "-n",
            t,
            "addr",
            "add",
            "198.18.0.2/16",
            "dev",
            "veth1",
        ])?;
        for i in 0..spec.extra_addresses {
            let a = format!("198.18.0.{}/16", 3 + u16::from(i));
            run(&["ip", "-n", t, "addr", "add", &a, "dev", "veth1"])?;
        }
        for i in 0..spec.extra_scanner_addresses {
            let a = format!("198.18.{}.{}/16", 1 + i / 250, 1 + i % 250);
            run(&["ip", "-n", s, "addr", "add", &a, "dev", "veth0"])?;
        }
        if spec.ipv6 {
            for (ns, dev, addr) in [(s, "veth0", SCANNER_IP6), (t, "veth1", TARGET_IP6)] {
                let k = format!("net.ipv6.conf.{dev}.disable_ipv6=0");
                run(&["ip", "netns", "exec", ns, "sysctl", "-qw", &k])?;
                let a = format!("{addr}/64");
                run(&["ip", "-n", ns, "addr", "add", &a, "dev", dev, "nodad"])?;
            }
        }
        for ns in [s, t] {
            run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        run(&["ip", "-n", s, "link", "set", "veth0", "up"])?;
        run(&["ip", "-n", t, "link", "set", "veth1", "up"])?;
        // Static neighbours: no ARP round trips to distort the first RTTs.
        let mac = |ns: &str, dev: &str| -> Result<String, String> {
            let out = Command::new("ip")
                .args(["-n", ns, "-o", "link", "show", dev])
                .output()
                .map_err(|e| e.to_string())?;
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            text.split_whitespace()
                .skip_while(|w| *w != "link/ether")
                .nth(1)
                .map(str::to_string)
                .ok_or(format!("no MAC for {dev}: {text}"))
        };
        let (mac0, mac1) = (mac(s, "veth0")?, mac(t, "veth1")?);
        run(&[
            "ip",
            "-n",
            s,
            "neigh",
            "replace",
            "198.18.0.2",
            "lladdr",
            &mac1,
            "dev",
            "veth0",
            "nud",
            "permanent",
        ])?;
        for i in 0..spec.extra_addresses {
            let a = format!("198.18.0.{}", 3 + u16::from(i));
            run(&[
                "ip",
                "-n",
                s,
                "neigh",
                "replace",
                &a,
                "lladdr",
                &mac1,
                "dev",
                "veth0",
                "nud",
                "permanent",
            ])?;
        }
        run(&[
            "ip",
            "-n",
            t,
            "neigh",
            "replace",
            "198.18.0.1",
            "lladdr",
            &mac0,
            "dev",
            "veth1",
            "nud",
            "permanent",
        ])?;
        if spec.ipv6 {
            for (ns, addr, mac, dev) in [
                (s, TARGET_IP6, &mac1, "veth0"),
                (t, SCANNER_IP6, &mac0, "veth1"),
            ] {
                let a = addr.to_string();
                run(&[
                    "ip",
                    "-n",
                    ns,
                    "neigh",
                    "replace",
                    &a,
                    "lladdr",
                    mac,
                    "dev",
                    dev,
                    "nud",
                    "permanent",
                ])?;
            }
            // ICMPv6 errors without rate limit either: an empty mask exempts
            // every type from both the per-peer and the global limit.
            run(&[
                "ip",
                "netns",
                "exec",
                t,
                "sysctl",
                "-qw",
                "net.ipv6.icmp.ratemask=",
            ])?;
        }
        // The target answers ICMP errors without the kernel's default rate limit,
        // so "filtered" stays observable at full speed (see BENCHMARKS.md),
        // unless the spec asks for a host as shipped. The defaults are set
        // explicitly: a namespace inherits nothing, but be sure.
        let ratemask = if spec.kernel_icmp_limits {
            "net.ipv4.icmp_ratemask=6168"
        } else {
            "net.ipv4.icmp_ratemask=0"
        };
        run(&["ip", "netns", "exec", t, "sysctl", "-qw", ratemask])?;
        if spec.kernel_icmp_limits {
            run(&[
                "ip",
                "netns",
                "exec",
                t,
                "sysctl",
                "-qw",
                "net.ipv4.icmp_ratelimit=1000",
            ])?;
        }
        let rst_limit = spec.rst_limit_per_sec.map_or(String::new(), |n| {
            format!("tcp flags & rst == rst limit rate over {n}/second burst 5 packets drop")
        });

        let loss = if spec.loss_percent > 0 {
            format!("numgen random mod 100 < {} drop", spec.loss_percent)
        } else {
            String::new()
        };
        // A fully stealthed host still gets answers to connections it opens itself
        // (a visitor loading the web service's pages).
        let drop_all = if spec.drop_all {
            "ct state established,related accept\n    drop".to_string()
        } else if spec.drop_unlisted {
            let mut answered = spec.open.clone();
            answered.extend(&spec.closed);
            format!(
                "ct state established,related accept\n    icmp type echo-request drop\n    icmpv6 type echo-request drop\n    tcp dport != {{ {} }} drop",
                answered
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            String::new()
        };
        // Neighbour discovery is the link working, not traffic under test:
        // neither lost nor dropped (a stealthed IPv6 host still resolves).
        let nd = if spec.ipv6 {
            "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert } accept"
        } else {
            ""
        };
        let target_rules = format!(
            "table inet hm {{
  set stealth {{ type inet_service; {stealth} }}
  set filtered {{ type inet_service; {filtered} }}
  chain input {{
    type filter hook input priority 0; policy accept;
    iif lo accept
    {nd}
    {loss}
    {drop_all}
    tcp dport @stealth drop
    meta nfproto ipv4 tcp dport @filtered reject with icmp type admin-prohibited
    meta nfproto ipv6 tcp dport @filtered reject with icmpv6 type admin-prohibited
  }}
  chain output {{
    type filter hook output priority 0; policy accept;
    oif lo accept
    {nd}
    {loss}
    {rst_limit}
  }}
}}
",
            stealth = set(&spec.dropped),
            filtered = set(&spec.filtered),
        );
        run_stdin(&["ip", "netns", "exec", t, "nft", "-f", "-"], &target_rules)?;
        if spec.synproxy {
            // The nftables wiki's recipe: SYNs bypass conntrack (raw priority,
            // before the stealth/filtered chain at priority 0 sees them as
            // new), so they arrive untracked and synproxy answers them with a
            // cookie; the client's ACK, invalid to a strict conntrack, is
            // checked and only then is the real listener asked.
            let rules = "table inet hmsyn {
  chain pre {
    type filter hook prerouting priority raw; policy accept;
    iif != lo tcp flags & (syn | ack) == syn notrack
  }
  chain input {
    type filter hook input priority 1; policy accept;
    iif != lo meta l4proto tcp ct state invalid,untracked synproxy mss 1460 wscale 7 timestamp sack-perm
    iif != lo ct state invalid drop
  }
}
";
            run_stdin(&["ip", "netns", "exec", t, "nft", "-f", "-"], rules)?;
            // Loose pickup would make the proxied ACK a tracked connection of
            // its own and bypass the proxy.
            run(&[
                "ip",
                "netns",
                "exec",
                t,
                "sysctl",
                "-qw",
                "net.netfilter.nf_conntrack_tcp_loose=0",
            ])?;
        }
        let mut ips = vec![IpAddr::V4(TARGET_IP)];
        ips.extend((0..spec.extra_addresses).map(|i| IpAddr::V4(Ipv4Addr::new(198, 18, 0, 3 + i))));
        if spec.ipv6 {
            ips.push(IpAddr::V6(TARGET_IP6));
        }
        in_namespace(t, || {
            let mut listeners = Vec::new();
            for ip in &ips {
                for &port in &spec.open {
                    let l = TcpListener::bind((*ip, port))
                        .map_err(|e| format!("listen on {ip}:{port}: {e}"))?;
                    listeners.push(l);
                }
            }
            Ok(listeners)
        })
    }

    /// Accepts on every banner port: each connection gets its banner, then EOF.
    fn serve_banners(&self, spec: &TargetSpec) -> Result<(), String> {
        for (port, banner) in &spec.banners {
            let mut on_port = self
                ._listeners
                .iter()
                .filter(|l| l.local_addr().is_ok_and(|a| a.port() == *port))
                .peekable();
            if on_port.peek().is_none() {
                return Err(format!("banner port {port} is not in `open`"));
            }
            // One thread per address (IPv4, extra addresses, IPv6).
            for listener in on_port {
                let listener = listener.try_clone().map_err(|e| e.to_string())?;
                listener.set_nonblocking(true).map_err(|e| e.to_string())?;
                let (stop, banner) = (self.banner_stop.clone(), banner.clone());
                std::thread::spawn(move || {
                    use std::io::Write;
                    while !stop.load(Ordering::Relaxed) {
                        match listener.accept() {
                            Ok((mut conn, _)) => {
                                let _ = conn.set_nonblocking(false);
                                let _ = conn.write_all(banner.as_bytes());
                            }
                            Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                        }
                    }
                });
            }
        }
        Ok(())
    }

    /// A command that runs `program` inside the scanner namespace.
    pub fn scanner_command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.scanner_ns]).arg(program);
        c
    }

    /// Runs `f` on a thread inside the scanner namespace.
    pub fn in_scanner<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        in_namespace(&self.scanner_ns, f)
    }

    /// Adds one nftables rule (words as `nft add rule` takes them, e.g.
    /// `udp dport 6000 drop`) to the target's input chain; panics if `nft`
    /// refuses it (a test set-up error).
    pub fn add_target_rule(&self, rule: &str) {
        let status = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.target_ns,
                "nft",
                "add",
                "rule",
                "inet",
                "hm",
                "input",
            ])
            .args(rule.split(' '))
            .status()
            .expect("running nft");
        assert!(status.success(), "nft add rule inet hm input {rule}");
    }

    /// A UDP service on `addr` in the target namespace for the life of the
    /// test process: it answers every datagram with `reply`, or echoes it
    /// when `reply` is `None`. Returns once the socket is bound.
    pub fn udp_responder(&self, addr: std::net::SocketAddr, reply: Option<&'static [u8]>) {
        let (ready_tx, ready) = std::sync::mpsc::channel();
        Self::spawn_in(&self.target_ns, move || {
            let sock = std::net::UdpSocket::bind(addr).expect("bind the UDP responder");
            let _ = ready_tx.send(());
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(reply.unwrap_or(&buf[..n]), from);
            }
        });
        ready.recv().expect("the UDP responder started");
    }

    /// Starts `f` on a long-lived thread inside namespace `ns` (for servers and
    /// clients that must outlive the call).
    pub fn spawn_in<R: Send + 'static>(
        ns: &str,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> std::thread::JoinHandle<R> {
        let path = format!("/run/netns/{ns}");
        std::thread::spawn(move || {
            let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            setns(&file, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns: {e}"));
            f()
        })
    }

    /// Runs `f` on a thread inside the target namespace.
    pub fn in_target<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        in_namespace(&self.target_ns, f)
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        self.banner_stop.store(true, Ordering::Relaxed);
        // The forwarder's sockets live in the path namespace: stop it first.
        drop(self.forwarder.take());
        if let Some(p) = &self.path_ns {
            let _ = run(&["ip", "netns", "del", p]);
        }
        // Deleting a namespace removes its end of the veth pair, and with it the peer.
        let _ = run(&["ip", "netns", "del", &self.scanner_ns]);
        let _ = run(&["ip", "netns", "del", &self.target_ns]);
    }
}
