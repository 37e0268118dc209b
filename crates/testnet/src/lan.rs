//! A small LAN of test hosts: a hub namespace holding a bridge, and one
//! namespace per named host, each joined to the bridge by a veth pair, with
//! addresses 198.18.20.1, .2, … (/24) and optionally fd00:20::1, ::2, … (/64).
//! Nothing is routed anywhere else. Everything is removed on drop.
//!
//! Also [`Nginx`]: Debian's nginx running in one host with a generated
//! configuration, its pid, logs and temp files in a directory of its own.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::{COUNTER, Skip, prerequisites, run, run_stdin};

/// One host of a [`Lan`].
#[derive(Debug, Clone)]
pub struct Host {
    /// The name the test gave it ("server", "proxy", …).
    pub name: String,
    /// Its network namespace.
    pub ns: String,
    /// Its IPv4 address.
    pub ip: Ipv4Addr,
    /// Its IPv6 unique-local address.
    pub ip6: Ipv6Addr,
}

/// Hosts on one bridge, removed on drop.
#[derive(Debug)]
pub struct Lan {
    /// The namespace holding the bridge.
    pub hub_ns: String,
    /// The hosts, in the order they were named.
    pub hosts: Vec<Host>,
}

impl Lan {
    /// Creates one namespace per name in `names` on a shared bridge. The i-th
    /// host gets 198.18.20.(i+1)/24 and fd00:20::(i+1)/64.
    pub fn create(names: &[&str]) -> Result<Lan, Skip> {
        let skip = |why: String| -> Result<Lan, Skip> {
            if crate::required() {
                panic!("HARBORMASTER_REQUIRE_NETNS=1 but test hosts cannot be created: {why}");
            }
            Err(Skip(why))
        };
        if let Err(why) = prerequisites() {
            return skip(why);
        }
        assert!(names.len() < 200, "a /24 of hosts");
        let id = format!(
            "{}x{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut lan = Lan {
            hub_ns: format!("hm-hub{id}"),
            hosts: Vec::new(),
        };
        // On failure `lan` is dropped here, which removes whatever was created.
        match lan.build(&id, names) {
            Ok(()) => Ok(lan),
            Err(e) => skip(e),
        }
    }

    fn build(&mut self, id: &str, names: &[&str]) -> Result<(), String> {
        let hub = self.hub_ns.clone();
        run(&["ip", "netns", "add", &hub])?;
        run(&["ip", "-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        run(&["ip", "-n", &hub, "link", "set", "br0", "up"])?;
        run(&["ip", "-n", &hub, "link", "set", "lo", "up"])?;
        for (i, name) in names.iter().enumerate() {
            let n = u8::try_from(i + 1).map_err(|_| "too many hosts")?;
            let host = Host {
                name: name.to_string(),
                ns: format!("hm-{}{id}", &name[..name.len().min(4)]),
                ip: Ipv4Addr::new(198, 18, 20, n),
                ip6: Ipv6Addr::new(0xfd00, 0x20, 0, 0, 0, 0, 0, u16::from(n)),
            };
            run(&["ip", "netns", "add", &host.ns])?;
            // Pushed before it is wired up, so drop removes a half-built host too.
            self.hosts.push(host.clone());
            let port = format!("p{n}");
            run(&[
                "ip", "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", &host.ns,
            ])?;
            run(&["ip", "-n", &hub, "link", "set", &port, "master", "br0"])?;
            run(&["ip", "-n", &hub, "link", "set", &port, "up"])?;
            let ns = host.ns.as_str();
            // No duplicate-address detection: the addresses are usable at once.
            run(&[
                "ip",
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
            ])?;
            run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
            run(&["ip", "-n", ns, "link", "set", "eth0", "up"])?;
            let v4 = format!("{}/24", host.ip);
            run(&["ip", "-n", ns, "addr", "add", &v4, "dev", "eth0"])?;
            let v6 = format!("{}/64", host.ip6);
            run(&["ip", "-n", ns, "addr", "add", &v6, "dev", "eth0", "nodad"])?;
        }
        Ok(())
    }

    /// The host named `name`.
    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name}"))
    }

    /// A command that runs `program` in host `name`'s namespace.
    pub fn command(&self, name: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.host(name).ns]).arg(program);
        c
    }

    /// Adds `cidr` (e.g. `198.18.20.50/24`) to host `name`'s interface.
    pub fn add_address(&self, name: &str, cidr: &str) -> Result<(), String> {
        let ns = &self.host(name).ns;
        run(&["ip", "-n", ns, "addr", "add", cidr, "dev", "eth0", "nodad"])
    }

    /// Loads an nftables ruleset into host `name`.
    pub fn nft(&self, name: &str, ruleset: &str) -> Result<(), String> {
        let ns = &self.host(name).ns;
        run_stdin(&["ip", "netns", "exec", ns, "nft", "-f", "-"], ruleset)
    }

    /// Counts, in host `name`, every packet from `from` (IPv4 and IPv6
    /// address) except the replies on connections `name` itself opened to
    /// `from`'s TCP port `except_port` (a proxy's upstream HTTP): read it with
    /// [`Lan::counted`].
    pub fn count_from(&self, name: &str, from: &Host, except_port: u16) -> Result<(), String> {
        self.nft(
            name,
            &format!(
                "table inet hmcount {{
  counter probes {{ }}
  chain input {{
    type filter hook input priority -150; policy accept;
    ip saddr {v4} tcp sport {except_port} ct state established,related accept
    ip6 saddr {v6} tcp sport {except_port} ct state established,related accept
    ip saddr {v4} counter name probes
    ip6 saddr {v6} counter name probes
  }}
}}
",
                v4 = from.ip,
                v6 = from.ip6,
            ),
        )
    }

    /// The packets [`Lan::count_from`] has counted in host `name`.
    pub fn counted(&self, name: &str) -> u64 {
        let out = self
            .command(name, "nft")
            .args(["list", "counter", "inet", "hmcount", "probes"])
            .output()
            .expect("run nft");
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no counter in {name}: {text}"))
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Deleting a namespace removes its end of each veth pair, and with it the peer.
        for h in &self.hosts {
            let _ = run(&["ip", "netns", "del", &h.ns]);
        }
        let _ = run(&["ip", "netns", "del", &self.hub_ns]);
    }
}

/// Debian's nginx running in the foreground (`daemon off`) in one host of a
/// [`Lan`]; killed on drop, its directory removed.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    dir: PathBuf,
}

/// Where Debian installs nginx (scripts/deps.sh).
pub const NGINX: &str = "/usr/sbin/nginx";

impl Nginx {
    /// Starts nginx in host `name` with `http` as the body of its `http { }`
    /// block (server blocks, maps), and waits until it listens on `wait_for`.
    pub fn start(
        lan: &Lan,
        name: &str,
        http: &str,
        wait_for: std::net::SocketAddr,
    ) -> Result<Nginx, String> {
        if !std::path::Path::new(NGINX).exists() {
            let why = format!("{NGINX} is not installed (scripts/deps.sh installs it)");
            if crate::required() {
                panic!("HARBORMASTER_REQUIRE_NETNS=1 but {why}");
            }
            return Err(why);
        }
        let dir = std::env::temp_dir().join(format!(
            "hm-nginx-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let d = dir.display();
        let conf = format!(
            "daemon off;
master_process on;
worker_processes 1;
user root root;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
  access_log {d}/access.log;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
{http}
}}
"
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf).map_err(|e| e.to_string())?;
        let child = lan
            .command(name, NGINX)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start nginx: {e}"))?;
        let mut nginx = Nginx { child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        let ns = lan.host(name).ns.clone();
        loop {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                return Err(format!("nginx exited ({status}): {}", nginx.error_log()));
            }
            let up = crate::in_namespace(&ns, || {
                std::net::TcpStream::connect_timeout(&wait_for, Duration::from_millis(200)).is_ok()
            });
            if up {
                return Ok(nginx);
            }
            if Instant::now() > deadline {
                return Err(format!("nginx did not listen: {}", nginx.error_log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What nginx wrote to its error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    /// Its access log so far.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // `ip netns exec` execs nginx in place, so this is nginx's master; its
        // worker exits when the master does (SIGKILL gives it no chance to
        // stop it, so ask with SIGTERM first).
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
